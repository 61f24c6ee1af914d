//! The cgroups of one plugin launch: made before the spawn, joined by the
//! child between fork and exec, emptied (SIGKILL to whatever is left) and
//! removed once the plugin is gone. Their names carry the host's pid
//! (`plugboard-<host pid>-<seq>-<instance>`), so a host can tell the
//! leftovers of hosts that were killed hard from those of live ones and
//! remove only the former.

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::detect::{Controller, Support, Version};
use super::{Limits, LimitsError, cgroup_v1, cgroup_v2, write_file};

const PREFIX: &str = "plugboard-";

/// Plugin cgroups not yet removed in this process (see [`settle`]).
static LIVE: AtomicUsize = AtomicUsize::new(0);

#[derive(Debug)]
struct Dir {
    path: PathBuf,
    version: Version,
}

/// One plugin launch's cgroups; removed by [`PluginCgroups::finish`] (or on drop).
#[derive(Debug)]
pub(crate) struct PluginCgroups {
    dirs: Vec<Dir>,
    /// The memory limit and the directory enforcing it.
    memory: Option<(u64, usize)>,
    removed: bool,
}

impl PluginCgroups {
    /// Makes and configures the cgroups of a launch of `name` and opens
    /// their `cgroup.procs` for the child to join. `None` when no cgroup is
    /// needed.
    pub fn create(support: &Support, name: &str, limits: &Limits) -> Result<Option<(Self, Vec<OwnedFd>)>, LimitsError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let v1: Vec<Controller> =
            Controller::ALL.into_iter().filter(|c| support.v1_parent(*c).is_some() && wanted(limits, *c)).collect();
        if support.v2.is_none() && v1.is_empty() {
            return Ok(None);
        }
        let clean: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '_' }).collect();
        let leaf = format!("{PREFIX}{}-{}-{clean}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        LIVE.fetch_add(1, Ordering::SeqCst);
        // Whatever fails from here on, drop removes what was made.
        let mut cgroups = Self { dirs: Vec::new(), memory: None, removed: false };
        if let Some(parent) = &support.v2 {
            let dir = cgroups.mkdir(&parent.path.join(&leaf), Version::V2)?;
            let on = |c: Controller| support.version(c) == Some(Version::V2);
            let fail = |reason| LimitsError::Cgroup { path: dir.clone(), reason };
            if let (Some(bytes), true) = (limits.memory, on(Controller::Memory)) {
                cgroup_v2::set_memory(&dir, bytes).map_err(fail)?;
                cgroups.memory = Some((bytes, 0));
            }
            if let (Some(n), true) = (limits.processes, on(Controller::Pids)) {
                cgroup_v2::set_pids(&dir, n).map_err(fail)?;
            }
            if let (Some(rate), true) = (limits.cpu_rate, on(Controller::Cpu)) {
                cgroup_v2::set_cpu_rate(&dir, rate).map_err(fail)?;
            }
        }
        for c in v1 {
            let Some(parent) = support.v1_parent(c) else { continue };
            let dir = cgroups.mkdir(&parent.join(&leaf), Version::V1)?;
            let fail = |reason| LimitsError::Cgroup { path: dir.clone(), reason };
            match (c, limits.memory, limits.processes, limits.cpu_rate) {
                (Controller::Memory, Some(bytes), _, _) => {
                    cgroup_v1::set_memory(&dir, bytes).map_err(fail)?;
                    cgroups.memory = Some((bytes, cgroups.dirs.len() - 1));
                }
                (Controller::Pids, _, Some(n), _) => cgroup_v1::set_pids(&dir, n).map_err(fail)?,
                (Controller::Cpu, _, _, Some(rate)) => cgroup_v1::set_cpu_rate(&dir, rate).map_err(fail)?,
                _ => {}
            }
        }
        let mut procs = Vec::with_capacity(cgroups.dirs.len());
        for dir in &cgroups.dirs {
            let file = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(dir.path.join("cgroup.procs"))
                .map_err(|e| LimitsError::Cgroup {
                    path: dir.path.clone(),
                    reason: format!("cannot open cgroup.procs: {e}"),
                })?;
            procs.push(file.into());
        }
        Ok(Some((cgroups, procs)))
    }

    fn mkdir(&mut self, path: &Path, version: Version) -> Result<PathBuf, LimitsError> {
        fs::create_dir(path)
            .map_err(|e| LimitsError::Cgroup { path: path.to_owned(), reason: format!("cannot create it: {e}") })?;
        self.dirs.push(Dir { path: path.to_owned(), version });
        Ok(path.to_owned())
    }

    /// The memory limit and whether the cgroup's OOM killer ended the
    /// plugin (read before the cgroup is removed).
    pub fn memory_oom(&self, sigkill: bool) -> Option<(u64, Version)> {
        let (limit, index) = self.memory?;
        let dir = &self.dirs[index];
        let killed = match dir.version {
            Version::V2 => cgroup_v2::oom_kills(&dir.path) > 0,
            Version::V1 => cgroup_v1::oom_killed(&dir.path, sigkill),
        };
        killed.then_some((limit, dir.version))
    }

    /// CPU time used by everything that ran in the plugin's v2 cgroup.
    pub fn cpu_usage(&self) -> Option<Duration> {
        self.dirs.iter().find(|d| d.version == Version::V2).and_then(|d| cgroup_v2::cpu_usage(&d.path))
    }

    /// Kills whatever is left in the cgroups (children that left the
    /// plugin's process group) and removes them.
    pub async fn finish(mut self) {
        for _ in 0..100 {
            if self.try_remove() {
                return;
            }
            // EBUSY while the killed processes are still exiting.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for dir in &self.dirs {
            tracing::warn!(cgroup = %dir.path.display(), "cannot remove a plugin cgroup: processes remain in it");
        }
    }

    /// One round of kill and rmdir over what is left; true when all are gone.
    fn try_remove(&mut self) -> bool {
        self.dirs.retain(|dir| !remove(&dir.path));
        if self.dirs.is_empty() && !self.removed {
            self.removed = true;
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
        self.removed
    }
}

impl Drop for PluginCgroups {
    fn drop(&mut self) {
        // Reached when the launch failed or the runtime is going away: a
        // short blocking wait for the killed processes beats a leftover.
        for _ in 0..50 {
            if self.try_remove() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Whether `limits` has a limit enforced by controller `c`.
fn wanted(limits: &Limits, c: Controller) -> bool {
    match c {
        Controller::Memory => limits.memory.is_some(),
        Controller::Pids => limits.processes.is_some(),
        Controller::Cpu => limits.cpu_rate.is_some(),
    }
}

/// Waits (up to `timeout`) until every plugin cgroup of this process is
/// removed, so a host that stops leaves none behind.
pub async fn settle(timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    while LIVE.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Kills what is in `dir` (and cgroups made inside it), then removes it;
/// true when it is gone.
fn remove(dir: &Path) -> bool {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&entry.path());
            }
        }
    }
    kill_all(dir);
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// SIGKILL to every process in the cgroup: `cgroup.kill` (cgroup v2, Linux
/// 5.14+), else one by one from `cgroup.procs`.
fn kill_all(dir: &Path) {
    if write_file(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Removes the plugin cgroups in `parent` left by hosts that are gone
/// (killed hard, so they could not clean up). Returns what it removed.
pub fn remove_stale(parent: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(parent) else { return Vec::new() };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(host) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)).and_then(|n| n.split('-').next()) else {
            continue;
        };
        let Ok(host) = host.parse::<i32>() else { continue };
        if host as u32 == std::process::id() || host <= 0 {
            continue;
        }
        // Only "no such process" means gone: EPERM is a live process of another user.
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(host), None) == Err(nix::errno::Errno::ESRCH);
        if gone {
            let path = entry.path();
            let mut done = remove(&path);
            for _ in 0..50 {
                if done {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
                done = remove(&path);
            }
            match done {
                true => removed.push(path),
                false => tracing::warn!(cgroup = %path.display(), "cannot remove a stale plugin cgroup"),
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cgroups_of_hosts_that_are_gone_are_stale() {
        let parent = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let names = [
            format!("plugboard-{dead}-0-gone"),
            format!("plugboard-{}-0-mine", std::process::id()),
            "plugboard-1-3-init_is_alive".to_owned(),
            "plugboard-notapid-0-x".to_owned(),
            "someone-else".to_owned(),
        ];
        for name in &names {
            fs::create_dir(parent.path().join(name)).unwrap();
        }
        // A cgroup the dead host's plugin made inside its own goes too.
        fs::create_dir(parent.path().join(&names[0]).join("nested")).unwrap();
        let removed = remove_stale(parent.path());
        assert_eq!(removed, [parent.path().join(&names[0])]);
        let left: std::collections::BTreeSet<String> =
            fs::read_dir(parent.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(left, names[1..].iter().cloned().collect());
    }
}
