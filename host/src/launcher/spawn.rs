//! Starting plugin processes.
//!
//! Every plugin is spawned from one long-lived thread. On Linux the
//! parent-death signal fires when the *thread* that forked the child exits,
//! so spawning from short-lived runtime worker threads would kill plugins at
//! random (OpenDeck #329); a dedicated thread lives as long as the host.

use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Mutex, OnceLock, mpsc};

use tokio::process::{Child, Command};
use tokio::sync::oneshot;

struct SpawnRequest {
    command: Command,
    runtime: tokio::runtime::Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("plugin-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    // tokio registers the child with the runtime's process driver.
                    let _guard = req.runtime.enter();
                    let _ = req.reply.send(req.command.spawn());
                }
            })
            .expect("the plugin spawner thread must start");
        Mutex::new(tx)
    })
}

/// What the child process gets.
pub(crate) struct ProcessSpec<'a> {
    pub program: &'a Path,
    /// argv[0] when it differs from `program` (a pinned file run via /proc/self/fd).
    pub arg0: Option<&'a std::ffi::OsStr>,
    /// A descriptor the child keeps across exec (its CLOEXEC flag is cleared
    /// in the child only).
    pub keep_fd: Option<i32>,
    pub args: &'a [OsString],
    pub inherit_env: bool,
    pub env: Vec<(OsString, OsString)>,
    /// What the child does to itself before exec (limits, identity).
    pub setup: ChildSetup,
}

/// Applied in the child between fork and exec, in this order: join the
/// cgroups (while still privileged to write `cgroup.procs`), rlimits, drop to
/// the plugin's user, then the parent-death signal (a change of user clears it).
#[derive(Debug, Default)]
pub(crate) struct ChildSetup {
    /// `cgroup.procs` of each cgroup to join (one per hierarchy), opened by
    /// the parent (close-on-exec).
    pub cgroup_procs: Vec<i32>,
    pub rlimits: super::limits::Rlimits,
    pub run_as: Option<super::RunAs>,
}

/// Spawns the plugin in its own process group, with stdout and stderr piped,
/// stdin from /dev/null, and SIGKILL as its parent-death signal.
pub(crate) async fn spawn(spec: ProcessSpec<'_>) -> io::Result<Child> {
    let mut command = Command::new(spec.program);
    if let Some(arg0) = spec.arg0 {
        command.arg0(arg0);
    }
    let keep_fd = spec.keep_fd;
    let ChildSetup { cgroup_procs, rlimits, run_as } = spec.setup;
    let identity = run_as.map(|r| (r.uid as libc::uid_t, r.gid as libc::gid_t, r.groups));
    command
        .args(spec.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own group: killpg reaches the plugin's children, and a Ctrl-C in the
        // host's terminal does not hit plugins directly; the host decides.
        .process_group(0)
        .kill_on_drop(true);
    if !spec.inherit_env {
        command.env_clear();
    }
    // Appended after the inherited environment, so ours win.
    command.envs(spec.env);
    let host_pid = std::process::id();
    // SAFETY: only async-signal-safe calls (write, setrlimit, setgroups,
    // setgid, setuid, fcntl, prctl, getppid) between fork and exec, on data
    // prepared before the fork; nothing allocates.
    unsafe {
        command.pre_exec(move || {
            for &fd in &cgroup_procs {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            rlimits.apply()?;
            if let Some((uid, gid, groups)) = &identity
                && (libc::setgroups(groups.len(), groups.as_ptr()) != 0
                    || libc::setgid(*gid) != 0
                    || libc::setuid(*uid) != 0)
            {
                return Err(io::Error::last_os_error());
            }
            if let Some(fd) = keep_fd
                && libc::fcntl(fd, libc::F_SETFD, 0) != 0
            {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The host may have died before prctl took effect.
            if libc::getppid() as u32 != host_pid {
                return Err(io::Error::other("the host exited while the plugin was starting"));
            }
            Ok(())
        });
    }
    let (reply, rx) = oneshot::channel();
    let request = SpawnRequest { command, runtime: tokio::runtime::Handle::current(), reply };
    spawner()
        .lock()
        .map_err(|_| io::Error::other("plugin spawner poisoned"))?
        .send(request)
        .map_err(|_| io::Error::other("plugin spawner thread is gone"))?;
    rx.await.map_err(|_| io::Error::other("plugin spawner dropped the request"))?
}
