//! Which cgroup controllers the host can use for its plugins, one by one:
//! cgroup v2 with the controller enabled, else a writable cgroup v1
//! hierarchy with the controller, else none (the caller falls back to an
//! rlimit).
//!
//! Everything is read from the texts of `/proc/self/mountinfo` and
//! `/proc/self/cgroup` plus the directories they name, so the logic runs
//! unchanged over a fake tree in a test (the v1 and v2 layouts cannot both
//! exist on one machine).

use std::fs;
use std::path::{Path, PathBuf};

use super::write_file;

/// A controller plugin limits use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// Its name in both versions (`cgroup.controllers`, mount options).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The cgroup v2 directory plugin cgroups are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Parent {
    pub path: PathBuf,
    /// Controllers enabled for its sub-cgroups, by [`Controller`].
    pub enabled: [bool; 3],
}

/// What this host can do with cgroups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Support {
    /// Writable cgroup v2 directory: every limited plugin gets a cgroup in
    /// it (it also catches processes that left the plugin's process group),
    /// with whichever controllers it offers.
    pub v2: Option<V2Parent>,
    /// Per [`Controller`]: the host's own cgroup in a writable v1 hierarchy
    /// with that controller, used when v2 does not have it.
    pub v1: [Option<PathBuf>; 3],
    /// Why a controller is not available (for logs and errors).
    pub notes: Vec<String>,
}

/// How a controller is available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl Support {
    /// Which version enforces `c`, v2 first.
    pub fn version(&self, c: Controller) -> Option<Version> {
        if self.v2.as_ref().is_some_and(|p| p.enabled[c.index()]) {
            Some(Version::V2)
        } else if self.v1[c.index()].is_some() {
            Some(Version::V1)
        } else {
            None
        }
    }

    /// The v1 directory the plugin cgroup for `c` is made in, when v1 enforces `c`.
    pub fn v1_parent(&self, c: Controller) -> Option<&Path> {
        match self.version(c) {
            Some(Version::V1) => self.v1[c.index()].as_deref(),
            _ => None,
        }
    }

    /// Every directory plugin cgroups may be made in.
    pub fn parents(&self) -> impl Iterator<Item = &Path> {
        self.v2.iter().map(|p| p.path.as_path()).chain(self.v1.iter().flatten().map(PathBuf::as_path))
    }

    /// Nothing usable: no cgroups at all.
    pub fn is_empty(&self) -> bool {
        self.v2.is_none() && self.v1.iter().all(Option::is_none)
    }

    pub fn why_not(&self, c: Controller) -> String {
        let notes: Vec<&str> = self.notes.iter().filter(|n| n.contains(c.name())).map(String::as_str).collect();
        if notes.is_empty() { format!("no usable {} controller", c.name()) } else { notes.join("; ") }
    }
}

/// A cgroup mount from mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The directory of the hierarchy mounted there (`/` unless a sub-tree is bind-mounted).
    root: String,
    point: PathBuf,
    /// v1 only: the controllers of the hierarchy (`cpu,cpuacct`).
    controllers: Vec<String>,
}

/// cgroup2 and cgroup (v1) mounts.
fn mounts(mountinfo: &str) -> (Vec<Mount>, Vec<Mount>) {
    let (mut v2, mut v1) = (Vec::new(), Vec::new());
    for line in mountinfo.lines() {
        // Fields: id parent dev root mountpoint options ... - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut right = right.split_whitespace();
        let (Some(fstype), _, options) = (right.next(), right.next(), right.next().unwrap_or_default()) else {
            continue;
        };
        let mut f = left.split_whitespace();
        let (Some(root), Some(point)) = (f.nth(3), f.next()) else { continue };
        let mount = Mount { root: root.to_owned(), point: PathBuf::from(point), controllers: Vec::new() };
        match fstype {
            "cgroup2" => v2.push(mount),
            "cgroup" => {
                let controllers = options.split(',').map(str::to_owned).collect();
                v1.push(Mount { controllers, ..mount });
            }
            _ => {}
        }
    }
    // /sys/fs/cgroup itself (pure cgroup v2) before a hybrid setup's /sys/fs/cgroup/unified.
    v2.sort_by_key(|m| m.point != Path::new("/sys/fs/cgroup"));
    (v2, v1)
}

/// The directory of cgroup `own` (a path in the hierarchy) under `mount`.
fn locate(mount: &Mount, own: &str) -> PathBuf {
    let relative = own.strip_prefix(mount.root.trim_end_matches('/')).unwrap_or(own).trim_start_matches('/');
    if relative.is_empty() { mount.point.clone() } else { mount.point.join(relative) }
}

/// Whether the host can make cgroups in `dir` and move processes into them.
pub fn writable(dir: &Path) -> Result<(), String> {
    use nix::unistd::{AccessFlags, access};
    if access(dir, AccessFlags::W_OK).is_err() || access(&dir.join("cgroup.procs"), AccessFlags::W_OK).is_err() {
        return Err(format!("{} is not writable by this user", dir.display()));
    }
    Ok(())
}

/// Finds the host's own cgroups (from `self_cgroup`, the text of
/// `/proc/self/cgroup`) in the mounted hierarchies and what each offers.
/// Enables v2 controllers for sub-cgroups where it can (a side effect, as
/// the kernel wants). `usable` says whether a directory may be written.
pub fn discover(mountinfo: &str, self_cgroup: &str, usable: impl Fn(&Path) -> Result<(), String>) -> Support {
    let (v2_mounts, v1_mounts) = mounts(mountinfo);
    let mut support = Support::default();
    // `N:controllers:path`; the v2 line is `0::path`.
    let own: Vec<(&str, &str)> = self_cgroup
        .lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            rest.split_once(':')
        })
        .collect();
    match (v2_mounts.first(), own.iter().find(|(c, _)| c.is_empty())) {
        (None, _) => support.notes.push("no cgroup v2 hierarchy is mounted".into()),
        (Some(_), None) => {
            support.notes.push("this process is in no cgroup v2 (no 0:: line in /proc/self/cgroup)".into())
        }
        (Some(mount), Some((_, path))) => {
            let dir = locate(mount, path);
            match usable(&dir) {
                Ok(()) => {
                    let enabled = enable_controllers(&dir, &mut support.notes);
                    support.v2 = Some(V2Parent { path: dir, enabled });
                }
                Err(reason) => support.notes.push(format!("cgroup v2: {reason}")),
            }
        }
    }
    for c in Controller::ALL {
        if support.version(c) == Some(Version::V2) {
            continue;
        }
        let Some(mount) = v1_mounts.iter().find(|m| m.controllers.iter().any(|x| x == c.name())) else {
            support.notes.push(format!("no cgroup v1 hierarchy with the {} controller is mounted", c.name()));
            continue;
        };
        let line = own.iter().find(|(list, _)| list.split(',').any(|x| x == c.name()));
        let Some((_, path)) = line else {
            support.notes.push(format!("this process is in no cgroup v1 {} hierarchy", c.name()));
            continue;
        };
        let dir = locate(mount, path);
        match usable(&dir) {
            Ok(()) => support.v1[c.index()] = Some(dir),
            Err(reason) => support.notes.push(format!("cgroup v1 {}: {reason}", c.name())),
        }
    }
    support
}

/// A delegated cgroup v2 directory (`cgroup: PATH`), with the controllers
/// it can enable for sub-cgroups; v1 is not used then.
pub fn delegated(dir: &Path) -> Support {
    let mut notes = Vec::new();
    let enabled = enable_controllers(dir, &mut notes);
    Support { v2: Some(V2Parent { path: dir.to_owned(), enabled }), v1: Default::default(), notes }
}

/// Enables memory, pids and cpu for the sub-cgroups of `dir`, as far as the
/// hierarchy offers them and `dir` may delegate them.
fn enable_controllers(dir: &Path, notes: &mut Vec<String>) -> [bool; 3] {
    let read = |file: &str| fs::read_to_string(dir.join(file)).unwrap_or_default();
    let available = read("cgroup.controllers");
    let subtree = read("cgroup.subtree_control");
    Controller::ALL.map(|c| {
        let name = c.name();
        if !available.split_whitespace().any(|x| x == name) {
            notes.push(format!("no {name} controller in {}/cgroup.controllers", dir.display()));
            return false;
        }
        if subtree.split_whitespace().any(|x| x == name) {
            return true;
        }
        match write_file(&dir.join("cgroup.subtree_control"), &format!("+{name}")) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                notes.push(format!(
                    "cannot enable {name} for sub-cgroups of {}: it holds processes (give plugboard a delegated cgroup with `cgroup: PATH`)",
                    dir.display()
                ));
                false
            }
            Err(e) => {
                notes.push(format!("cannot enable {name} in {}/cgroup.subtree_control: {e}", dir.display()));
                false
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cgroup tree: `dirs` made under a temp dir, each with a `cgroup.procs`.
    struct Tree {
        dir: tempfile::TempDir,
    }

    impl Tree {
        fn new() -> Self {
            Self { dir: tempfile::tempdir().unwrap() }
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }
        fn cgroup(&self, rel: &str, files: &[(&str, &str)]) -> &Self {
            let dir = self.path(rel);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("cgroup.procs"), "").unwrap();
            for (name, text) in files {
                fs::write(dir.join(name), text).unwrap();
            }
            self
        }
        fn mount(&self, id: u32, rel: &str, fstype: &str, options: &str) -> String {
            format!("{id} 23 0:{id} / {} rw,relatime - {fstype} {fstype} {options}\n", self.path(rel).display())
        }
    }

    /// Writable unless the directory's name says otherwise (root may write anything).
    fn usable(dir: &Path) -> Result<(), String> {
        match dir.to_string_lossy().contains("readonly") || !dir.join("cgroup.procs").exists() {
            true => Err(format!("{} is not writable by this user", dir.display())),
            false => Ok(()),
        }
    }

    const HYBRID_SELF: &str = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    /// This machine: v1 memory/pids/cpu, a v2 mount with no controllers.
    fn hybrid(tree: &Tree) -> String {
        tree.cgroup("unified", &[("cgroup.controllers", ""), ("cgroup.subtree_control", "")])
            .cgroup("memory/process_api/abc", &[])
            .cgroup("pids", &[])
            .cgroup("cpu", &[])
            .cgroup("cpuacct", &[]);
        [
            tree.mount(32, "cpu", "cgroup", "rw,cpu"),
            tree.mount(33, "cpuacct", "cgroup", "rw,cpuacct"),
            tree.mount(35, "memory", "cgroup", "rw,memory"),
            tree.mount(39, "pids", "cgroup", "rw,pids"),
            tree.mount(41, "unified", "cgroup2", "rw"),
        ]
        .concat()
    }

    #[test]
    fn hybrid_v1_hierarchies_take_every_controller_under_the_hosts_own_cgroup() {
        let tree = Tree::new();
        let support = discover(&hybrid(&tree), HYBRID_SELF, usable);
        assert_eq!(support.v2, Some(V2Parent { path: tree.path("unified"), enabled: [false; 3] }));
        assert_eq!(support.version(Controller::Memory), Some(Version::V1));
        assert_eq!(support.v1_parent(Controller::Memory), Some(tree.path("memory/process_api/abc").as_path()));
        assert_eq!(support.v1_parent(Controller::Pids), Some(tree.path("pids").as_path()));
        assert_eq!(support.v1_parent(Controller::Cpu), Some(tree.path("cpu").as_path()));
    }

    #[test]
    fn co_mounted_v1_controllers_are_found_by_their_mount_options() {
        let tree = Tree::new();
        tree.cgroup("cpu,cpuacct/host", &[]);
        let mountinfo = tree.mount(32, "cpu,cpuacct", "cgroup", "rw,cpu,cpuacct");
        let support = discover(&mountinfo, "3:cpu,cpuacct:/host\n", usable);
        assert_eq!(support.v1_parent(Controller::Cpu), Some(tree.path("cpu,cpuacct/host").as_path()));
        assert_eq!(support.version(Controller::Memory), None);
        assert!(support.why_not(Controller::Memory).contains("no cgroup v1 hierarchy with the memory controller"));
    }

    #[test]
    fn v2_with_controllers_wins_and_v1_fills_in_only_what_it_lacks() {
        let tree = Tree::new();
        tree.cgroup("v2/host", &[("cgroup.controllers", "cpuset memory pids"), ("cgroup.subtree_control", "")])
            .cgroup("cpu/host", &[]);
        let mountinfo = [tree.mount(30, "v2", "cgroup2", "rw"), tree.mount(32, "cpu", "cgroup", "rw,cpu")].concat();
        let support = discover(&mountinfo, "1:cpu:/host\n0::/host\n", usable);
        assert_eq!(support.version(Controller::Memory), Some(Version::V2));
        assert_eq!(support.version(Controller::Pids), Some(Version::V2));
        assert_eq!(support.version(Controller::Cpu), Some(Version::V1));
        assert_eq!(support.v1_parent(Controller::Memory), None);
        // Enabled for the sub-cgroups, as the kernel wants.
        let subtree = fs::read_to_string(tree.path("v2/host/cgroup.subtree_control")).unwrap();
        assert!(subtree.contains("+pids"), "{subtree}");
    }

    #[test]
    fn pure_v2_without_controllers_leaves_limits_to_rlimits() {
        let tree = Tree::new();
        tree.cgroup("v2/user", &[("cgroup.controllers", ""), ("cgroup.subtree_control", "")]);
        let support = discover(&tree.mount(30, "v2", "cgroup2", "rw"), "0::/user\n", usable);
        assert!(support.v2.is_some());
        for c in Controller::ALL {
            assert_eq!(support.version(c), None, "{c:?}");
        }
        assert!(support.why_not(Controller::Memory).contains("no memory controller in"), "{:?}", support.notes);
    }

    #[test]
    fn read_only_hierarchies_are_not_used() {
        let tree = Tree::new();
        tree.cgroup("readonly-v2", &[("cgroup.controllers", "memory pids cpu")]).cgroup("readonly-memory", &[]);
        let mountinfo =
            [tree.mount(30, "readonly-v2", "cgroup2", "rw"), tree.mount(35, "readonly-memory", "cgroup", "rw,memory")]
                .concat();
        let support = discover(&mountinfo, "4:memory:/\n0::/\n", usable);
        assert!(support.is_empty(), "{support:?}");
        assert!(support.why_not(Controller::Memory).contains("is not writable"), "{:?}", support.notes);
    }

    #[test]
    fn no_cgroup_mounts_at_all() {
        let support = discover("22 1 0:21 / /proc rw - proc proc rw\n", "", usable);
        assert!(support.is_empty());
        assert!(support.notes.iter().any(|n| n == "no cgroup v2 hierarchy is mounted"), "{:?}", support.notes);
    }

    #[test]
    fn a_bind_mounted_sub_tree_is_located_relative_to_its_root() {
        let tree = Tree::new();
        tree.cgroup("memory/inner", &[]);
        let mountinfo =
            format!("35 31 0:32 /docker/c1 {} rw - cgroup cgroup rw,memory\n", tree.path("memory").display());
        let support = discover(&mountinfo, "4:memory:/docker/c1/inner\n", usable);
        assert_eq!(support.v1_parent(Controller::Memory), Some(tree.path("memory/inner").as_path()));
    }
}
