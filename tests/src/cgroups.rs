//! The cgroups of processes as the kernel shows them (`/proc/<pid>/cgroup`
//! and the mounted hierarchies), read independently of plugboard, so the
//! limits tests can check what the host claims against the filesystem.

use std::path::{Path, PathBuf};

/// A mounted cgroup hierarchy: v2 (`controllers` empty) or v1.
#[derive(Debug, Clone)]
struct Mount {
    v2: bool,
    root: String,
    point: PathBuf,
    controllers: Vec<String>,
}

fn mounts() -> Vec<Mount> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<Mount> = text
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let options = right.nth(1).unwrap_or_default();
            let mut f = left.split_whitespace();
            let root = f.nth(3)?.to_owned();
            let point = PathBuf::from(f.next()?);
            match fstype {
                "cgroup2" => Some(Mount { v2: true, root, point, controllers: Vec::new() }),
                "cgroup" => {
                    Some(Mount { v2: false, root, point, controllers: options.split(',').map(str::to_owned).collect() })
                }
                _ => None,
            }
        })
        .collect();
    mounts.sort_by_key(|m| m.point != Path::new("/sys/fs/cgroup"));
    mounts
}

fn locate(mount: &Mount, own: &str) -> PathBuf {
    let relative = own.strip_prefix(mount.root.trim_end_matches('/')).unwrap_or(own).trim_start_matches('/');
    mount.point.join(relative)
}

/// `(controllers, path)` of every line of `/proc/<pid>/cgroup` (`""` for v2).
fn own(pid: u32) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (list, path) = rest.split_once(':')?;
            Some((list.to_owned(), path.to_owned()))
        })
        .collect()
}

/// The directory of `pid`'s cgroup v2 (`controller` None) or of its v1
/// hierarchy with `controller`.
pub fn dir_of(pid: u32, controller: Option<&str>) -> Option<PathBuf> {
    let mounts = mounts();
    let own = own(pid);
    match controller {
        None => {
            let mount = mounts.iter().find(|m| m.v2)?;
            own.iter().find(|(list, _)| list.is_empty()).map(|(_, path)| locate(mount, path))
        }
        Some(c) => {
            let mount = mounts.iter().find(|m| !m.v2 && m.controllers.iter().any(|x| x == c))?;
            let (_, path) = own.iter().find(|(list, _)| list.split(',').any(|x| x == c))?;
            Some(locate(mount, path))
        }
    }
}

/// Every plugboard-made cgroup directory `pid` is in: v2 (None) and the v1
/// hierarchy of each controller plugboard uses.
pub fn plugboard_dirs_by_hierarchy(pid: u32) -> Vec<(Option<&'static str>, PathBuf)> {
    let mut dirs: Vec<(Option<&'static str>, PathBuf)> = [None, Some("memory"), Some("pids"), Some("cpu")]
        .into_iter()
        .filter_map(|c| Some((c, dir_of(pid, c)?)))
        .filter(|(_, d)| d.file_name().is_some_and(|n| n.to_string_lossy().starts_with("plugboard-")))
        .collect();
    dirs.dedup_by(|a, b| a.1 == b.1);
    dirs
}

/// [`plugboard_dirs_by_hierarchy`] without the hierarchies.
pub fn plugboard_dirs(pid: u32) -> Vec<PathBuf> {
    plugboard_dirs_by_hierarchy(pid).into_iter().map(|(_, d)| d).collect()
}

fn writable(dir: &Path) -> bool {
    use nix::unistd::{AccessFlags, access};
    access(dir, AccessFlags::W_OK).is_ok() && access(&dir.join("cgroup.procs"), AccessFlags::W_OK).is_ok()
}

/// What should enforce `controller` (`memory`, `pids`, `cpu`) for plugins
/// of the host `host_pid` on this machine, once that host has started:
/// `cgroup-v2` where its v2 cgroup has the controller enabled for
/// sub-cgroups, else `cgroup-v1` where a v1 hierarchy with the controller is
/// mounted and the host's cgroup there is writable, else `rlimit`.
pub fn expected_enforcer(host_pid: u32, controller: &str) -> &'static str {
    if let Some(v2) = dir_of(host_pid, None)
        && writable(&v2)
        && std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
    {
        return "cgroup-v2";
    }
    match dir_of(host_pid, Some(controller)) {
        Some(dir) if writable(&dir) => "cgroup-v1",
        _ => "rlimit",
    }
}
