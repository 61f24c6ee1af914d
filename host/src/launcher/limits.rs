//! Per-plugin resource limits, applied to the child before it runs any of
//! its own code.
//!
//! Where the host can make cgroups (a writable cgroup v2 hierarchy), every
//! limited plugin gets a cgroup of its own: memory (`memory.max`, swap off,
//! the whole group killed together on OOM), processes (`pids.max`) and a CPU
//! rate (`cpu.max`) come from its controllers, and the cgroup also catches
//! processes that left the plugin's process group (`cgroup.kill` when it is
//! gone). Whatever a controller cannot do falls back to an rlimit:
//! `RLIMIT_AS` for memory (address space, not resident memory), `RLIMIT_NPROC`
//! for processes (which counts every process of the plugin's *user*, and is
//! not enforced for root). CPU time (`RLIMIT_CPU`) and open files
//! (`RLIMIT_NOFILE`) are always rlimits.
//!
//! The child moves itself into its cgroup between fork and exec (it writes
//! `0` to a `cgroup.procs` descriptor the parent opened), so no instruction of
//! the plugin ever runs outside it and nothing it forks can escape: writing
//! the pid from the parent after spawn would leave a window in which the
//! plugin runs, allocates and forks unconstrained. (`clone3` with
//! `CLONE_INTO_CGROUP` would do the same from the parent, but std's
//! `Command` cannot clone that way.)

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Resource limits for one plugin process (and whatever it starts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory: cgroup `memory.max`, else `RLIMIT_AS` (address space).
    pub memory: Option<u64>,
    /// Total CPU time; the kernel sends SIGXCPU, then SIGKILL 2 s later (`RLIMIT_CPU`).
    pub cpu_time: Option<Duration>,
    /// CPUs' worth of time per period (0.5 = half a CPU): cgroup `cpu.max` only.
    pub cpu_rate: Option<f64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes and threads: cgroup `pids.max`, else `RLIMIT_NPROC`.
    pub processes: Option<u64>,
    /// Where plugin cgroups are made.
    pub cgroups: CgroupMode,
}

impl Limits {
    /// No limit set: the plugin is started exactly as without this module.
    pub fn is_empty(&self) -> bool {
        self.memory.is_none()
            && self.cpu_time.is_none()
            && self.cpu_rate.is_none()
            && self.open_files.is_none()
            && self.processes.is_none()
    }
}

/// Where per-plugin cgroups live.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum CgroupMode {
    /// The host's own cgroup v2 (from `/proc/self/cgroup`) when it is
    /// writable; rlimits only otherwise.
    #[default]
    Auto,
    /// Never make cgroups: rlimits only.
    Off,
    /// A delegated cgroup v2 directory holding no processes; an error if unusable.
    Under(PathBuf),
}

/// How a limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enforcer {
    Cgroup,
    Rlimit,
}

/// A limit the plugin ran into, as far as its exit tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Killed by the cgroup's OOM killer (`memory.events` counted an
    /// `oom_kill`), or (rlimit) died after reporting a failed allocation.
    Memory { limit: u64, by: Enforcer },
    /// Killed by SIGXCPU, or SIGKILL after using up its CPU time.
    CpuTime { limit: Duration },
}

impl LimitHit {
    /// The config field of the limit: `memory` or `cpu_time` (for events and metrics labels).
    pub fn field(&self) -> &'static str {
        match self {
            LimitHit::Memory { .. } => "memory",
            LimitHit::CpuTime { .. } => "cpu_time",
        }
    }
}

impl fmt::Display for LimitHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitHit::Memory { limit, by: Enforcer::Cgroup } => write!(
                f,
                "memory limit exceeded: {} (cgroup memory.max; the kernel's OOM killer ended it)",
                format_bytes(*limit)
            ),
            LimitHit::Memory { limit, by: Enforcer::Rlimit } => write!(
                f,
                "memory limit exceeded: an allocation failed against the {} address-space limit (RLIMIT_AS)",
                format_bytes(*limit)
            ),
            LimitHit::CpuTime { limit } => {
                write!(f, "CPU time limit exceeded: {} (RLIMIT_CPU)", humantime::format_duration(*limit))
            }
        }
    }
}

/// `268435456` → `256 MiB`; exact multiples only, else bytes.
pub fn format_bytes(n: u64) -> String {
    for (unit, shift) in [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n >= 1 << shift && n.is_multiple_of(1 << shift) {
            return format!("{} {unit}", n >> shift);
        }
    }
    format!("{n} bytes")
}

/// Why limits cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits: {0}")]
    Unsupported(String),
    #[error("limits: cgroup {path}: {reason}")]
    Cgroup { path: PathBuf, reason: String },
}

/// Which cgroup v2 controllers plugin cgroups get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Controllers {
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
}

/// A cgroup v2 directory the host makes plugin cgroups in.
#[derive(Debug)]
pub struct CgroupParent {
    pub path: PathBuf,
    /// Controllers enabled for the plugin cgroups.
    pub controllers: Controllers,
    /// Why some controllers are missing (for the log and errors).
    pub missing_reason: Option<String>,
}

/// What the host can do on this machine in `mode`: `Ok(None)` when it
/// makes no cgroups (off, or auto without a usable hierarchy: the reason).
pub fn cgroup_support(mode: &CgroupMode) -> Result<Option<Arc<CgroupParent>>, LimitsError> {
    type Cache = Mutex<HashMap<CgroupMode, Result<Option<Arc<CgroupParent>>, LimitsError>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(mode.clone())
        .or_insert_with(|| {
            let found = detect(mode);
            match &found {
                Ok(Some(parent)) => tracing::info!(
                    cgroup = %parent.path.display(),
                    memory = parent.controllers.memory,
                    pids = parent.controllers.pids,
                    cpu = parent.controllers.cpu,
                    "plugin limits: cgroup v2 in use{}",
                    parent.missing_reason.as_deref().map(|r| format!("; rlimits for the rest: {r}")).unwrap_or_default()
                ),
                Ok(None) => {}
                Err(e) => tracing::warn!("plugin limits: {e}"),
            }
            found
        })
        .clone()
}

/// Why `Auto` found no usable cgroup v2 (for `plugboard` to explain), or `None`.
pub fn auto_cgroup_unavailable_reason() -> Option<String> {
    detect_auto_parent().err()
}

fn detect(mode: &CgroupMode) -> Result<Option<Arc<CgroupParent>>, LimitsError> {
    let path = match mode {
        CgroupMode::Off => return Ok(None),
        CgroupMode::Auto => match detect_auto_parent() {
            Ok(path) => path,
            Err(reason) => {
                tracing::info!("plugin limits: no cgroups ({reason}); rlimits only");
                return Ok(None);
            }
        },
        CgroupMode::Under(path) => {
            check_cgroup2_dir(path).map_err(|reason| LimitsError::Cgroup { path: path.clone(), reason })?;
            path.clone()
        }
    };
    remove_stale(&path);
    let (controllers, missing_reason) = enable_controllers(&path);
    if matches!(mode, CgroupMode::Under(_))
        && let Some(reason) = &missing_reason
        && controllers == Controllers::default()
    {
        return Err(LimitsError::Cgroup { path, reason: reason.clone() });
    }
    Ok(Some(Arc::new(CgroupParent { path, controllers, missing_reason })))
}

/// The host's own cgroup in the cgroup v2 hierarchy, if it is writable.
fn detect_auto_parent() -> Result<PathBuf, String> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    // Fields: id parent dev root mountpoint options ... - fstype source superoptions
    let mount = mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let mut f = left.split_whitespace();
            let root = f.nth(3)?;
            let point = f.next()?;
            (fstype == "cgroup2").then(|| (root.to_owned(), PathBuf::from(point)))
        })
        // /sys/fs/cgroup itself (pure cgroup v2) before a hybrid setup's /sys/fs/cgroup/unified.
        .min_by_key(|(_, point)| point != Path::new("/sys/fs/cgroup"));
    let Some((root, point)) = mount else {
        return Err("no cgroup v2 hierarchy is mounted".into());
    };
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let Some(own) = own.lines().find_map(|l| l.strip_prefix("0::")) else {
        return Err("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)".into());
    };
    let relative = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own).trim_start_matches('/');
    let path = if relative.is_empty() { point } else { point.join(relative) };
    check_cgroup2_dir(&path)?;
    Ok(path)
}

fn check_cgroup2_dir(path: &Path) -> Result<(), String> {
    let stat = nix::sys::statfs::statfs(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if stat.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
        return Err(format!("{} is not a cgroup v2 directory", path.display()));
    }
    if nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_err()
        || nix::unistd::access(&path.join("cgroup.procs"), nix::unistd::AccessFlags::W_OK).is_err()
    {
        return Err(format!("{} is not writable by this user", path.display()));
    }
    Ok(())
}

/// Enables memory, pids and cpu for the children of `path`, as far as the
/// hierarchy offers them and `path` may delegate them.
fn enable_controllers(path: &Path) -> (Controllers, Option<String>) {
    let read = |file: &str| fs::read_to_string(path.join(file)).unwrap_or_default();
    let available = read("cgroup.controllers");
    let mut reasons = Vec::new();
    let mut enable = |name: &str| -> bool {
        if !available.split_whitespace().any(|c| c == name) {
            reasons.push(format!("no {name} controller in {}/cgroup.controllers", path.display()));
            return false;
        }
        if read("cgroup.subtree_control").split_whitespace().any(|c| c == name) {
            return true;
        }
        match write_file(&path.join("cgroup.subtree_control"), &format!("+{name}")) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                reasons.push(format!(
                    "cannot enable {name} for sub-cgroups of {}: it holds processes (give plugboard a delegated cgroup with `cgroup: PATH`)",
                    path.display()
                ));
                false
            }
            Err(e) => {
                reasons.push(format!("cannot enable {name} in {}/cgroup.subtree_control: {e}", path.display()));
                false
            }
        }
    };
    let controllers = Controllers { memory: enable("memory"), pids: enable("pids"), cpu: enable("cpu") };
    (controllers, (!reasons.is_empty()).then(|| reasons.join("; ")))
}

const PREFIX: &str = "plugboard-";

/// Removes plugin cgroups left by hosts that are gone (killed hard).
fn remove_stale(parent: &Path) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.split('-').next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else { continue };
        if pid as u32 != std::process::id() && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
            kill_all(&entry.path());
            let _ = fs::remove_dir(entry.path());
        }
    }
}

fn write_file(path: &Path, text: &str) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

/// rlimits as `(soft, hard)`, applied in the child.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rlimits {
    pub address_space: Option<(u64, u64)>,
    pub cpu: Option<(u64, u64)>,
    pub open_files: Option<(u64, u64)>,
    pub processes: Option<(u64, u64)>,
}

/// Limits made ready for one launch: the cgroup exists and is configured,
/// `procs` is where the child writes itself.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub rlimits: Rlimits,
    pub procs: Option<OwnedFd>,
    pub watch: ExitWatch,
}

/// What to look at when the plugin is gone.
#[derive(Debug, Default)]
pub(crate) struct ExitWatch {
    pub cgroup: Option<PluginCgroup>,
    /// Memory limit enforced as an rlimit: look for a failed allocation.
    pub memory_rlimit: Option<u64>,
    pub cpu_time: Option<Duration>,
}

/// Checks `limits` for a plugin that will run as `uid` and returns how each
/// is enforced, without creating anything (for `plugboard` to validate configs).
pub fn check(limits: &Limits, uid: u32) -> Result<Vec<(&'static str, Enforcer)>, LimitsError> {
    let parent = if limits.is_empty() { None } else { cgroup_support(&limits.cgroups)? };
    plan(limits, parent.as_deref(), uid)
}

fn plan(
    limits: &Limits,
    parent: Option<&CgroupParent>,
    uid: u32,
) -> Result<Vec<(&'static str, Enforcer)>, LimitsError> {
    let controllers = parent.map(|p| p.controllers).unwrap_or_default();
    let why_not = || match parent {
        None => match &limits.cgroups {
            CgroupMode::Off => "cgroups are off (`cgroup: off`)".to_owned(),
            _ => auto_cgroup_unavailable_reason().unwrap_or_else(|| "no usable cgroup v2".into()),
        },
        Some(p) => p.missing_reason.clone().unwrap_or_default(),
    };
    let mut how = Vec::new();
    if let Some(memory) = limits.memory {
        if memory < 4096 {
            return Err(LimitsError::Unsupported(format!("memory {memory} is below one page (4 KiB)")));
        }
        how.push(("memory", if controllers.memory { Enforcer::Cgroup } else { Enforcer::Rlimit }));
    }
    if let Some(rate) = limits.cpu_rate {
        if !(rate.is_finite() && rate >= 0.001) {
            return Err(LimitsError::Unsupported(format!("cpu_rate {rate} must be at least 0.001 CPUs")));
        }
        if !controllers.cpu {
            return Err(LimitsError::Unsupported(format!(
                "cpu_rate needs the cgroup v2 cpu controller, which this host cannot use ({}); a rate has no rlimit equivalent (use cpu_time for a total)",
                why_not()
            )));
        }
        how.push(("cpu_rate", Enforcer::Cgroup));
    }
    if let Some(t) = limits.cpu_time {
        if t < Duration::from_secs(1) {
            return Err(LimitsError::Unsupported(
                "cpu_time must be at least 1s (RLIMIT_CPU counts whole seconds)".into(),
            ));
        }
        how.push(("cpu_time", Enforcer::Rlimit));
    }
    if let Some(n) = limits.open_files {
        if n < 16 {
            return Err(LimitsError::Unsupported(format!(
                "open_files {n} is too few for a gRPC plugin to start (at least 16)"
            )));
        }
        how.push(("open_files", Enforcer::Rlimit));
    }
    if let Some(n) = limits.processes {
        if n == 0 {
            return Err(LimitsError::Unsupported("processes must be at least 1".into()));
        }
        if controllers.pids {
            how.push(("processes", Enforcer::Cgroup));
        } else if uid == 0 {
            return Err(LimitsError::Unsupported(format!(
                "processes needs the cgroup v2 pids controller, which this host cannot use ({}); the fallback, RLIMIT_NPROC, is not enforced for root: set run_as to an unprivileged user",
                why_not()
            )));
        } else {
            how.push(("processes", Enforcer::Rlimit));
        }
    }
    Ok(how)
}

/// Sets up the limits of one launch: creates and configures its cgroup (if
/// any) and computes the rlimits.
pub(crate) fn prepare(name: &str, limits: &Limits, uid: u32) -> Result<Prepared, LimitsError> {
    if limits.is_empty() {
        return Ok(Prepared::default());
    }
    let parent = cgroup_support(&limits.cgroups)?;
    let how = plan(limits, parent.as_deref(), uid)?;
    let by = |what: &str| how.iter().find(|(w, _)| *w == what).map(|(_, e)| *e);
    let mut prepared = Prepared::default();
    let r = &mut prepared.rlimits;
    if let (Some(memory), Some(Enforcer::Rlimit)) = (limits.memory, by("memory")) {
        r.address_space = Some((memory, memory));
        prepared.watch.memory_rlimit = Some(memory);
    }
    if let Some(t) = limits.cpu_time {
        // Whole seconds, rounded up; SIGXCPU at the soft limit, SIGKILL at the hard one.
        let secs = t.as_secs() + u64::from(t.subsec_nanos() > 0);
        r.cpu = Some((secs, secs + 2));
        prepared.watch.cpu_time = Some(t);
    }
    if let Some(n) = limits.open_files {
        r.open_files = Some((n, n));
    }
    if let (Some(n), Some(Enforcer::Rlimit)) = (limits.processes, by("processes")) {
        r.processes = Some((n, n));
    }
    if let Some(parent) = parent {
        let cgroup = PluginCgroup::create(&parent, name, limits)?;
        let procs = fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(cgroup.path.join("cgroup.procs"))
            .map_err(|e| cgroup.error(format!("cannot open cgroup.procs: {e}")))?;
        prepared.procs = Some(procs.into());
        prepared.watch.cgroup = Some(cgroup);
    }
    Ok(prepared)
}

/// One plugin launch's cgroup; removed by [`PluginCgroup::finish`] (or on drop).
#[derive(Debug)]
pub(crate) struct PluginCgroup {
    pub path: PathBuf,
    memory: Option<u64>,
    removed: bool,
}

impl PluginCgroup {
    fn create(parent: &CgroupParent, name: &str, limits: &Limits) -> Result<Self, LimitsError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let clean: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
        let dir = format!("{PREFIX}{}-{}-{clean}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let path = parent.path.join(dir);
        fs::create_dir(&path)
            .map_err(|e| LimitsError::Cgroup { path: path.clone(), reason: format!("cannot create it: {e}") })?;
        let mut cgroup = Self { path, memory: None, removed: false };
        let c = parent.controllers;
        if let (Some(memory), true) = (limits.memory, c.memory) {
            cgroup.set("memory.max", &memory.to_string())?;
            // Swap would let the plugin run past its limit instead of dying.
            if cgroup.path.join("memory.swap.max").exists() {
                cgroup.set("memory.swap.max", "0")?;
            }
            // The plugin and its children go together: no half-dead plugin.
            cgroup.set("memory.oom.group", "1")?;
            cgroup.memory = Some(memory);
        }
        if let (Some(n), true) = (limits.processes, c.pids) {
            cgroup.set("pids.max", &n.to_string())?;
        }
        if let (Some(rate), true) = (limits.cpu_rate, c.cpu) {
            const PERIOD: u64 = 100_000;
            let quota = ((rate * PERIOD as f64).round() as u64).max(1000);
            cgroup.set("cpu.max", &format!("{quota} {PERIOD}"))?;
        }
        Ok(cgroup)
    }

    fn set(&self, file: &str, value: &str) -> Result<(), LimitsError> {
        write_file(&self.path.join(file), value)
            .map_err(|e| self.error(format!("cannot write {value:?} to {file}: {e}")))
    }

    fn error(&self, reason: String) -> LimitsError {
        LimitsError::Cgroup { path: self.path.clone(), reason }
    }

    /// How many times the kernel's OOM killer killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let events = fs::read_to_string(self.path.join("memory.events")).unwrap_or_default();
        events.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    }

    /// CPU time used by everything that ran in the cgroup (`cpu.stat`
    /// exists without the cpu controller).
    pub fn cpu_usage(&self) -> Option<Duration> {
        let stat = fs::read_to_string(self.path.join("cpu.stat")).ok()?;
        let usec = stat.lines().find_map(|l| l.strip_prefix("usage_usec "))?.trim().parse().ok()?;
        Some(Duration::from_micros(usec))
    }

    pub fn memory_limit(&self) -> Option<u64> {
        self.memory
    }

    /// Kills whatever is left in the cgroup (children that left the
    /// plugin's process group) and removes it.
    pub async fn finish(mut self) {
        for _ in 0..100 {
            kill_all(&self.path);
            match fs::remove_dir(&self.path) {
                Ok(()) => {
                    self.removed = true;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    self.removed = true;
                    return;
                }
                // EBUSY while the killed processes are still exiting.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        tracing::warn!(cgroup = %self.path.display(), "cannot remove a plugin cgroup: processes remain in it");
    }
}

impl Drop for PluginCgroup {
    fn drop(&mut self) {
        if !self.removed {
            kill_all(&self.path);
            let _ = fs::remove_dir(&self.path);
        }
    }
}

/// SIGKILL to every process in the cgroup: `cgroup.kill` (Linux 5.14+),
/// else one by one from `cgroup.procs`.
fn kill_all(path: &Path) {
    if write_file(&path.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(path.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Words with which Rust, Go, Python and C runtimes report a failed allocation.
const ALLOCATION_FAILED: &[&str] =
    &["memory allocation of", "out of memory", "MemoryError", "Cannot allocate memory", "std::bad_alloc"];

impl ExitWatch {
    /// Which limit (if any) explains how the plugin ended. `stderr` is its
    /// last stderr lines.
    pub async fn classify(&self, status: std::process::ExitStatus, stderr: impl Fn() -> String) -> Option<LimitHit> {
        use std::os::unix::process::ExitStatusExt;
        let signal = status.signal();
        if let Some(cgroup) = &self.cgroup
            && let Some(limit) = cgroup.memory_limit()
            && cgroup.oom_kills() > 0
        {
            return Some(LimitHit::Memory { limit, by: Enforcer::Cgroup });
        }
        if let Some(limit) = self.cpu_time {
            let used_up = signal == Some(libc::SIGKILL)
                && self.cgroup.as_ref().and_then(PluginCgroup::cpu_usage).is_some_and(|used| used >= limit);
            if signal == Some(libc::SIGXCPU) || used_up {
                return Some(LimitHit::CpuTime { limit });
            }
        }
        if let Some(limit) = self.memory_rlimit
            && !status.success()
        {
            // stderr is read concurrently: give its last lines a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let text = stderr();
            if ALLOCATION_FAILED.iter().any(|w| text.contains(w)) {
                return Some(LimitHit::Memory { limit, by: Enforcer::Rlimit });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_format_in_binary_units() {
        assert_eq!(format_bytes(256 << 20), "256 MiB");
        assert_eq!(format_bytes(3 << 30), "3 GiB");
        assert_eq!(format_bytes(1000), "1000 bytes");
        assert_eq!(format_bytes(1536), "1536 bytes");
    }

    #[test]
    fn without_cgroups_rlimits_cover_memory_and_processes_of_non_root_users() {
        let limits = Limits {
            memory: Some(64 << 20),
            processes: Some(10),
            open_files: Some(64),
            cpu_time: Some(Duration::from_secs(5)),
            ..Default::default()
        };
        let how = plan(&limits, None, 1000).unwrap();
        assert_eq!(
            how,
            [
                ("memory", Enforcer::Rlimit),
                ("cpu_time", Enforcer::Rlimit),
                ("open_files", Enforcer::Rlimit),
                ("processes", Enforcer::Rlimit)
            ]
        );
        let root = plan(&limits, None, 0).unwrap_err().to_string();
        assert!(root.contains("RLIMIT_NPROC, is not enforced for root: set run_as"), "{root}");
    }

    #[test]
    fn controllers_take_over_what_they_can() {
        let parent = CgroupParent {
            path: "/x".into(),
            controllers: Controllers { memory: true, pids: true, cpu: false },
            missing_reason: Some("no cpu controller".into()),
        };
        let limits = Limits { memory: Some(64 << 20), processes: Some(10), ..Default::default() };
        assert_eq!(
            plan(&limits, Some(&parent), 0).unwrap(),
            [("memory", Enforcer::Cgroup), ("processes", Enforcer::Cgroup)]
        );
        let rate = Limits { cpu_rate: Some(0.5), ..Default::default() };
        let err = plan(&rate, Some(&parent), 0).unwrap_err().to_string();
        assert!(
            err.contains("cpu_rate needs the cgroup v2 cpu controller") && err.contains("no cpu controller"),
            "{err}"
        );
    }

    #[test]
    fn nonsense_values_are_refused() {
        for limits in [
            Limits { memory: Some(100), ..Default::default() },
            Limits { open_files: Some(3), ..Default::default() },
            Limits { cpu_time: Some(Duration::from_millis(10)), ..Default::default() },
            Limits { processes: Some(0), ..Default::default() },
        ] {
            assert!(plan(&limits, None, 1000).is_err(), "{limits:?}");
        }
    }

    #[test]
    fn limit_hits_say_which_limit_and_how_it_was_enforced() {
        let hit = LimitHit::Memory { limit: 256 << 20, by: Enforcer::Cgroup };
        assert_eq!(
            hit.to_string(),
            "memory limit exceeded: 256 MiB (cgroup memory.max; the kernel's OOM killer ended it)"
        );
        let hit = LimitHit::CpuTime { limit: Duration::from_secs(60) };
        assert_eq!(hit.to_string(), "CPU time limit exceeded: 1m (RLIMIT_CPU)");
        assert_eq!(hit.field(), "cpu_time");
    }
}
