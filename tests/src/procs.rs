//! The process table as /proc shows it: who is whose child, which process
//! group, zombie or not. Fault tests use it to prove that no plugin process
//! (or anything a plugin started) outlives its run.

use std::time::{Duration, Instant};

/// One line of /proc/<pid>/stat, the fields the tests need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    pub pid: u32,
    /// The command name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
    /// R, S, D, T (stopped), Z (zombie)...
    pub state: char,
    pub ppid: u32,
    pub pgid: u32,
}

impl ProcStat {
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Reads /proc/<pid>/stat; None once the process is gone (reaped).
pub fn stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses a stat line. The command name may hold spaces and parentheses, so
/// the fields after it are found from the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_owned();
    let mut rest = text[close + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    Some(ProcStat { pid, comm, state, ppid, pgid })
}

/// Every process visible in /proc.
pub fn all() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).filter_map(stat).collect()
}

/// The children of `parent` (zombies included).
pub fn children_of(parent: u32) -> Vec<ProcStat> {
    all().into_iter().filter(|p| p.ppid == parent).collect()
}

/// Live (non-zombie) children of `parent`: a host's running plugin processes.
pub fn live_children(parent: u32) -> Vec<u32> {
    children_of(parent).into_iter().filter(|p| !p.is_zombie()).map(|p| p.pid).collect()
}

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// What is left of a set of plugin processes that should be gone.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Children of the host in state Z: exited but never reaped.
    pub zombies: Vec<ProcStat>,
    /// Processes of `gone` still running as the host's children.
    pub alive: Vec<ProcStat>,
    /// Processes in the process group of one of `gone` (a plugin's own
    /// children, reparented once the plugin died).
    pub orphans: Vec<ProcStat>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.zombies.is_empty() && self.alive.is_empty() && self.orphans.is_empty()
    }
}

/// Zombie children of `host`, and whatever is left of the plugin processes
/// `gone` (pids the host started and that should have ended). A pid reused
/// by an unrelated process is neither the host's child nor in a plugin's
/// group, so it is not counted.
pub fn leftovers(host: u32, gone: &[u32]) -> Leftovers {
    let mut found = Leftovers::default();
    for p in all() {
        if p.ppid == host && p.is_zombie() {
            found.zombies.push(p);
        } else if p.is_zombie() {
            continue;
        } else if gone.contains(&p.pid) && (p.ppid == host || p.pgid == p.pid) {
            found.alive.push(p);
        } else if gone.contains(&p.pgid) {
            found.orphans.push(p);
        }
    }
    found
}

/// Waits (up to `crate::DEADLINE`) until `host` has no zombie child and none
/// of the plugin processes `gone`, nor anything in their process groups, is
/// left; panics listing what is.
pub fn assert_no_zombie_or_orphan(host: u32, gone: &[u32]) {
    let end = Instant::now() + crate::DEADLINE;
    loop {
        let found = leftovers(host, gone);
        if found.is_empty() {
            return;
        }
        assert!(Instant::now() < end, "processes left behind by plugins {gone:?} of host {host}: {found:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_command_names() {
        let p = parse_stat("4242 (a b) (c)) Z 17 4200 4200 0 -1 4194560").unwrap();
        assert_eq!(p, ProcStat { pid: 4242, comm: "a b) (c)".into(), state: 'Z', ppid: 17, pgid: 4200 });
        assert!(p.is_zombie());
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn this_process_is_found_with_its_parent() {
        let me = stat(std::process::id()).expect("own stat");
        assert!(!me.is_zombie());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert!(children_of(me.ppid).iter().any(|c| c.pid == me.pid));
        assert!(open_fds(me.pid).unwrap() >= 3);
    }

    #[test]
    fn a_reaped_child_is_no_leftover_and_a_live_one_is() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let me = std::process::id();
        let found = leftovers(me, &[child.id()]);
        assert_eq!(found.alive.iter().map(|p| p.pid).collect::<Vec<_>>(), [child.id()]);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(leftovers(me, &[child.id()]).alive.is_empty());
    }
}
