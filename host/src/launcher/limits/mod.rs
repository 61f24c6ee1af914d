//! Per-plugin resource limits, applied to the child before it runs any of
//! its own code.
//!
//! Each limit goes to the best mechanism this machine offers, controller by
//! controller ([`detect`]): cgroup v2 with the controller enabled, else a
//! writable cgroup v1 hierarchy with it, else an rlimit. Memory is
//! `memory.max` / `memory.limit_in_bytes` (swap off, the kernel's OOM
//! killer ends the plugin) or `RLIMIT_AS` (address space, not resident
//! memory); processes are `pids.max` or `RLIMIT_NPROC` (which counts every
//! process of the plugin's *user*, and is not enforced for root); a CPU rate
//! is `cpu.max` / `cpu.cfs_quota_us` and has no rlimit. CPU time
//! (`RLIMIT_CPU`) and open files (`RLIMIT_NOFILE`) are always rlimits.
//! Where cgroup v2 is writable every limited plugin also gets a v2 cgroup,
//! controllers or not: it catches processes that left the plugin's process
//! group (`cgroup.kill` when it is gone) and counts its CPU time.
//!
//! The child moves itself into its cgroups between fork and exec (it writes
//! `0` to `cgroup.procs` descriptors the parent opened, one per hierarchy),
//! so no instruction of the plugin ever runs outside them and nothing it
//! forks can escape: writing the pid from the parent after spawn would leave
//! a window in which the plugin runs, allocates and forks unconstrained.
//! (`clone3` with `CLONE_INTO_CGROUP` would do the same from the parent for
//! v2 only, and std's `Command` cannot clone that way.)

mod cgroup;
mod cgroup_v1;
mod cgroup_v2;
pub mod detect;
mod rlimit;

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

pub(crate) use cgroup::PluginCgroups;
pub use cgroup::settle;
use detect::{Controller, Support, Version};
pub(crate) use rlimit::Rlimits;

/// Resource limits for one plugin process (and whatever it starts).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Bytes of memory: a cgroup memory controller, else `RLIMIT_AS` (address space).
    pub memory: Option<u64>,
    /// Total CPU time; the kernel sends SIGXCPU, then SIGKILL 2 s later (`RLIMIT_CPU`).
    pub cpu_time: Option<Duration>,
    /// CPUs' worth of time per period (0.5 = half a CPU): a cgroup cpu controller only.
    pub cpu_rate: Option<f64>,
    /// Open file descriptors (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// Processes and threads: a cgroup pids controller, else `RLIMIT_NPROC`.
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
    /// Beneath the host's own cgroups (from `/proc/self/cgroup`): cgroup v2
    /// where it is writable and has the controller, else cgroup v1; rlimits
    /// for what neither offers.
    #[default]
    Auto,
    /// Never make cgroups: rlimits only.
    Off,
    /// A delegated cgroup v2 directory holding no processes; an error if unusable.
    Under(PathBuf),
}

/// How a limit is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Enforcer {
    CgroupV2,
    CgroupV1,
    Rlimit,
}

impl Enforcer {
    /// `cgroup-v2`, `cgroup-v1` or `rlimit`: what `GET /v1/plugins` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcer::CgroupV2 => "cgroup-v2",
            Enforcer::CgroupV1 => "cgroup-v1",
            Enforcer::Rlimit => "rlimit",
        }
    }

    pub fn is_cgroup(self) -> bool {
        self != Enforcer::Rlimit
    }

    /// The kernel interface behind `field` (a [`Limits`] field name) when
    /// this enforces it: `cgroup memory.max`, `rlimit RLIMIT_AS`...
    pub fn mechanism(self, field: &str) -> &'static str {
        match (field, self) {
            ("memory", Enforcer::CgroupV2) => "cgroup memory.max",
            ("memory", Enforcer::CgroupV1) => "cgroup v1 memory.limit_in_bytes",
            ("memory", Enforcer::Rlimit) => "rlimit RLIMIT_AS",
            ("processes", Enforcer::CgroupV2) => "cgroup pids.max",
            ("processes", Enforcer::CgroupV1) => "cgroup v1 pids.max",
            ("processes", Enforcer::Rlimit) => "rlimit RLIMIT_NPROC",
            ("cpu_rate", Enforcer::CgroupV1) => "cgroup v1 cpu.cfs_quota_us",
            ("cpu_rate", _) => "cgroup cpu.max",
            ("cpu_time", _) => "rlimit RLIMIT_CPU",
            ("open_files", _) => "rlimit RLIMIT_NOFILE",
            _ => "",
        }
    }
}

impl fmt::Display for Enforcer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Version> for Enforcer {
    fn from(v: Version) -> Self {
        match v {
            Version::V1 => Enforcer::CgroupV1,
            Version::V2 => Enforcer::CgroupV2,
        }
    }
}

/// How each limit set for a plugin is enforced, in [`Limits`] field order.
pub type Enforcement = Vec<(&'static str, Enforcer)>;

/// A limit the plugin ran into, as far as its exit tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitHit {
    /// Killed by the cgroup's OOM killer (its OOM kill count went up), or
    /// (rlimit) died after reporting a failed allocation.
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
            LimitHit::Memory { limit, by: Enforcer::Rlimit } => write!(
                f,
                "memory limit exceeded: an allocation failed against the {} address-space limit (RLIMIT_AS)",
                format_bytes(*limit)
            ),
            LimitHit::Memory { limit, by } => write!(
                f,
                "memory limit exceeded: {} reached ({by} {}; the kernel's OOM killer ended it)",
                format_bytes(*limit),
                by.mechanism("memory").trim_start_matches("cgroup v1 ").trim_start_matches("cgroup "),
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

/// What the host can do with cgroups in `mode` on this machine, found once
/// per mode (and leftovers of dead hosts removed then).
pub fn cgroup_support(mode: &CgroupMode) -> Result<Arc<Support>, LimitsError> {
    type Cache = Mutex<HashMap<CgroupMode, Result<Arc<Support>, LimitsError>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(mode.clone())
        .or_insert_with(|| {
            let found = support_in(mode).map(Arc::new);
            match &found {
                Ok(support) => {
                    for parent in support.parents() {
                        for stale in cgroup::remove_stale(parent) {
                            tracing::info!(cgroup = %stale.display(), "removed a plugin cgroup left by a host that is gone");
                        }
                    }
                    log_support(support);
                }
                Err(e) => tracing::warn!("plugin limits: {e}"),
            }
            found
        })
        .clone()
}

fn log_support(support: &Support) {
    if support.is_empty() {
        tracing::info!("plugin limits: no cgroups ({}); rlimits only", support.notes.join("; "));
        return;
    }
    let mut parts = Vec::new();
    for c in Controller::ALL {
        let part = match (support.version(c), support.v1_parent(c), &support.v2) {
            (Some(Version::V1), Some(dir), _) => format!("{} cgroup-v1 ({})", c.name(), dir.display()),
            (Some(Version::V2), _, Some(v2)) => format!("{} cgroup-v2 ({})", c.name(), v2.path.display()),
            _ => format!("{} rlimit or none", c.name()),
        };
        parts.push(part);
    }
    if let Some(v2) = &support.v2 {
        parts.push(format!("process tracking cgroup-v2 ({})", v2.path.display()));
    }
    // Only what is missing in the end: v1 may have made up for v2.
    let missing: Vec<&str> = support
        .notes
        .iter()
        .filter(|n| Controller::ALL.iter().any(|c| support.version(*c).is_none() && n.contains(c.name())))
        .map(String::as_str)
        .collect();
    let missing = missing.join("; ");
    tracing::info!(
        "plugin limits: cgroups in use: {}{}",
        parts.join(", "),
        if missing.is_empty() { String::new() } else { format!(" (not available: {missing})") }
    );
}

fn support_in(mode: &CgroupMode) -> Result<Support, LimitsError> {
    match mode {
        CgroupMode::Off => Ok(Support { notes: vec!["cgroups are off (`cgroup: off`)".into()], ..Default::default() }),
        CgroupMode::Auto => {
            let read = |path: &str| fs::read_to_string(path).unwrap_or_default();
            Ok(detect::discover(&read("/proc/self/mountinfo"), &read("/proc/self/cgroup"), detect::writable))
        }
        CgroupMode::Under(path) => {
            let error = |reason| LimitsError::Cgroup { path: path.clone(), reason };
            let stat = nix::sys::statfs::statfs(path).map_err(|e| error(e.to_string()))?;
            if stat.filesystem_type() != nix::sys::statfs::CGROUP2_SUPER_MAGIC {
                return Err(error("not a cgroup v2 directory".into()));
            }
            detect::writable(path).map_err(error)?;
            let support = detect::delegated(path);
            if Controller::ALL.iter().all(|c| support.version(*c).is_none()) {
                return Err(error(support.notes.join("; ")));
            }
            Ok(support)
        }
    }
}

pub(crate) fn write_file(path: &Path, text: &str) -> io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.write_all(text.as_bytes())
}

/// CPU controller period: 100 ms, the kernel's default.
const CPU_PERIOD_US: u64 = 100_000;

/// The quota per [`CPU_PERIOD_US`] for `rate` CPUs (at least the kernel's 1 ms).
fn cpu_quota_us(rate: f64) -> u64 {
    ((rate * CPU_PERIOD_US as f64).round() as u64).max(1000)
}

/// Limits made ready for one launch: the cgroups exist and are configured,
/// `procs` is where the child writes itself.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub rlimits: Rlimits,
    pub procs: Vec<OwnedFd>,
    pub watch: ExitWatch,
    pub enforcement: Enforcement,
}

/// What to look at when the plugin is gone.
#[derive(Debug, Default)]
pub(crate) struct ExitWatch {
    pub cgroups: Option<PluginCgroups>,
    /// Memory limit enforced as an rlimit: look for a failed allocation.
    pub memory_rlimit: Option<u64>,
    pub cpu_time: Option<Duration>,
}

/// Checks `limits` for a plugin that will run as `uid` and returns how each
/// is enforced, without creating anything (for `plugboard` to validate configs).
pub fn check(limits: &Limits, uid: u32) -> Result<Enforcement, LimitsError> {
    if limits.is_empty() {
        return Ok(Vec::new());
    }
    plan(limits, &*cgroup_support(&limits.cgroups)?, uid)
}

fn plan(limits: &Limits, support: &Support, uid: u32) -> Result<Enforcement, LimitsError> {
    let by = |c: Controller| support.version(c).map(Enforcer::from);
    let mut how = Vec::new();
    if let Some(memory) = limits.memory {
        if memory < 4096 {
            return Err(LimitsError::Unsupported(format!("memory {memory} is below one page (4 KiB)")));
        }
        how.push(("memory", by(Controller::Memory).unwrap_or(Enforcer::Rlimit)));
    }
    if let Some(rate) = limits.cpu_rate {
        if !(rate.is_finite() && rate >= 0.001) {
            return Err(LimitsError::Unsupported(format!("cpu_rate {rate} must be at least 0.001 CPUs")));
        }
        let Some(enforcer) = by(Controller::Cpu) else {
            return Err(LimitsError::Unsupported(format!(
                "cpu_rate needs a cgroup cpu controller (v2 or v1), which this host cannot use ({}); a rate has no rlimit equivalent (use cpu_time for a total)",
                support.why_not(Controller::Cpu)
            )));
        };
        how.push(("cpu_rate", enforcer));
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
        match by(Controller::Pids) {
            Some(enforcer) => how.push(("processes", enforcer)),
            None if uid == 0 => {
                return Err(LimitsError::Unsupported(format!(
                    "processes needs a cgroup pids controller (v2 or v1), which this host cannot use ({}); the fallback, RLIMIT_NPROC, is not enforced for root: set run_as to an unprivileged user",
                    support.why_not(Controller::Pids)
                )));
            }
            None => how.push(("processes", Enforcer::Rlimit)),
        }
    }
    Ok(how)
}

/// Sets up the limits of one launch: creates and configures its cgroups (if
/// any) and computes the rlimits.
pub(crate) fn prepare(name: &str, limits: &Limits, uid: u32) -> Result<Prepared, LimitsError> {
    if limits.is_empty() {
        return Ok(Prepared::default());
    }
    let support = cgroup_support(&limits.cgroups)?;
    let how = plan(limits, &support, uid)?;
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
    if let Some((cgroups, procs)) = PluginCgroups::create(&support, name, limits)? {
        prepared.procs = procs;
        prepared.watch.cgroups = Some(cgroups);
    }
    prepared.enforcement = how;
    Ok(prepared)
}

/// `memory 64 MiB by cgroup-v1, cpu_time 1s by rlimit`, for the log line at plugin start.
pub fn describe_enforcement(limits: &Limits, how: &[(&'static str, Enforcer)]) -> String {
    let value = |what: &str| match what {
        "memory" => limits.memory.map(format_bytes),
        "cpu_time" => limits.cpu_time.map(|t| humantime::format_duration(t).to_string()),
        "cpu_rate" => limits.cpu_rate.map(|r| format!("{r} CPUs")),
        "open_files" => limits.open_files.map(|n| n.to_string()),
        "processes" => limits.processes.map(|n| n.to_string()),
        _ => None,
    };
    how.iter()
        .map(|(what, by)| format!("{what} {} by {by} ({})", value(what).unwrap_or_default(), by.mechanism(what)))
        .collect::<Vec<_>>()
        .join(", ")
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
        if let Some(cgroups) = &self.cgroups
            && let Some((limit, version)) = cgroups.memory_oom(signal == Some(libc::SIGKILL))
        {
            return Some(LimitHit::Memory { limit, by: version.into() });
        }
        if let Some(limit) = self.cpu_time {
            let used_up = signal == Some(libc::SIGKILL)
                && self.cgroups.as_ref().and_then(PluginCgroups::cpu_usage).is_some_and(|used| used >= limit);
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

    fn none() -> Support {
        Support { notes: vec!["no cgroup v2 hierarchy is mounted".into()], ..Default::default() }
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
        let how = plan(&limits, &none(), 1000).unwrap();
        assert_eq!(
            how,
            [
                ("memory", Enforcer::Rlimit),
                ("cpu_time", Enforcer::Rlimit),
                ("open_files", Enforcer::Rlimit),
                ("processes", Enforcer::Rlimit)
            ]
        );
        let root = plan(&limits, &none(), 0).unwrap_err().to_string();
        assert!(root.contains("RLIMIT_NPROC, is not enforced for root: set run_as"), "{root}");
    }

    #[test]
    fn controllers_take_over_what_they_can_v2_before_v1() {
        let support = Support {
            v2: Some(detect::V2Parent { path: "/v2".into(), enabled: [true, false, false] }),
            v1: [Some("/v1/memory".into()), Some("/v1/pids".into()), None],
            notes: vec!["no cpu controller in /v2/cgroup.controllers".into()],
        };
        let limits = Limits { memory: Some(64 << 20), processes: Some(10), ..Default::default() };
        assert_eq!(
            plan(&limits, &support, 0).unwrap(),
            [("memory", Enforcer::CgroupV2), ("processes", Enforcer::CgroupV1)]
        );
        let rate = Limits { cpu_rate: Some(0.5), ..Default::default() };
        let err = plan(&rate, &support, 0).unwrap_err().to_string();
        assert!(err.contains("cpu_rate needs a cgroup cpu controller") && err.contains("no cpu controller"), "{err}");
        let v1 = Support { v1: [None, None, Some("/v1/cpu".into())], ..Default::default() };
        assert_eq!(plan(&rate, &v1, 0).unwrap(), [("cpu_rate", Enforcer::CgroupV1)]);
        assert_eq!(
            describe_enforcement(&rate, &plan(&rate, &v1, 0).unwrap()),
            "cpu_rate 0.5 CPUs by cgroup-v1 (cgroup v1 cpu.cfs_quota_us)"
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
            assert!(plan(&limits, &none(), 1000).is_err(), "{limits:?}");
        }
    }

    #[test]
    fn limit_hits_say_which_limit_and_how_it_was_enforced() {
        let hit = LimitHit::Memory { limit: 256 << 20, by: Enforcer::CgroupV2 };
        assert_eq!(
            hit.to_string(),
            "memory limit exceeded: 256 MiB reached (cgroup-v2 memory.max; the kernel's OOM killer ended it)"
        );
        let hit = LimitHit::Memory { limit: 64 << 20, by: Enforcer::CgroupV1 };
        assert_eq!(
            hit.to_string(),
            "memory limit exceeded: 64 MiB reached (cgroup-v1 memory.limit_in_bytes; the kernel's OOM killer ended it)"
        );
        let hit = LimitHit::CpuTime { limit: Duration::from_secs(60) };
        assert_eq!(hit.to_string(), "CPU time limit exceeded: 1m (RLIMIT_CPU)");
        assert_eq!(hit.field(), "cpu_time");
    }
}
