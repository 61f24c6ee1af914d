//! Support for end-to-end tests: locate the built binaries, make plugin
//! directories (real plugins and deliberately broken scripts), run the real
//! `plugboard` binary and wait on what it prints.
//!
//! Binaries come from the workspace build (`make test` builds them first).
//! Every wait has a generous deadline and polls a condition: no fixed sleeps.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Deadline for anything that should happen "soon" on a busy 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The directory holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test> -> target/debug
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    assert!(
        dir.join("plugboard").exists(),
        "{} has no plugboard binary: build the workspace first (`make test` does: cargo build --workspace)",
        dir.display()
    );
    dir
}

/// Path of a built binary, e.g. `plugboard` or `plugboard-echo`.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(path.exists(), "missing binary {}: run `cargo build --workspace`", path.display());
    path
}

/// A `plugboard` command with a clean logging setup.
pub fn plugboard() -> Command {
    let mut cmd = Command::new(bin("plugboard"));
    cmd.env_remove("PLUGBOARD_LOG")
        .env_remove("PLUGBOARD_PLUGINS_DIR")
        .env_remove("PLUGBOARD_STATE_DIR")
        .env_remove("PLUGBOARD_URL")
        .env_remove("PLUGBOARD_TOKEN")
        .env_remove("RUST_LOG");
    // Tests run in parallel: every host gets its own free port.
    cmd.env("PLUGBOARD_LISTEN", "127.0.0.1:0");
    cmd
}

/// A temporary plugins directory (plus room for a config file).
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl Default for TestDir {
    fn default() -> Self {
        Self::new()
    }
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("pbtest-").tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("plugins")).expect("plugins dir");
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Links a contrib plugin (`tick`, `range`, `echo`...) into the plugins dir.
    pub fn add_plugin(&self, name: &str) -> &Self {
        let target = bin(&format!("plugboard-{name}"));
        std::os::unix::fs::symlink(target, self.plugins().join(format!("plugboard-{name}"))).expect("symlink plugin");
        self
    }

    /// Writes an executable script into the plugins dir.
    pub fn add_script(&self, file_name: &str, body: &str) -> PathBuf {
        let path = self.plugins().join(file_name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// The host's state directory for this test (the event store).
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// Writes `plugboard.yaml` (with `plugins_dir: plugins` and `state_dir:
    /// state`, so every test has its own event store) and returns its path.
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.dir.path().join("plugboard.yaml");
        std::fs::write(&path, format!("plugins_dir: plugins\nstate_dir: state\n{yaml}")).expect("write config");
        path
    }
}

/// Lines a child wrote, shared with the reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<(Mutex<Vec<String>>, Condvar)>);

impl Lines {
    fn collect<R: Read + Send + 'static>(reader: R) -> Self {
        let lines = Lines::default();
        let shared = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                let (lock, cvar) = &*shared.0;
                lock.lock().unwrap().push(line);
                cvar.notify_all();
            }
        });
        lines
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.0.0.lock().unwrap().clone()
    }

    pub fn text(&self) -> String {
        self.snapshot().join("\n")
    }

    /// Waits until `done` holds for the lines so far; panics with them after `deadline`.
    pub fn wait_until(&self, what: &str, deadline: Duration, mut done: impl FnMut(&[String]) -> bool) -> Vec<String> {
        let end = Instant::now() + deadline;
        let (lock, cvar) = &*self.0;
        let mut lines = lock.lock().unwrap();
        loop {
            if done(&lines) {
                return lines.clone();
            }
            let now = Instant::now();
            if now >= end {
                panic!("timed out after {deadline:?} waiting for {what}; lines so far:\n{}", lines.join("\n"));
            }
            lines = cvar.wait_timeout(lines, (end - now).min(Duration::from_millis(200))).unwrap().0;
        }
    }

    /// Waits for a line containing `needle`.
    pub fn wait_for(&self, needle: &str) -> String {
        let lines = self
            .wait_until(&format!("a line containing {needle:?}"), DEADLINE, |l| l.iter().any(|x| x.contains(needle)));
        lines.into_iter().find(|x| x.contains(needle)).unwrap_or_default()
    }
}

/// A running `plugboard` process; killed (SIGKILL) when dropped.
pub struct Running {
    pub child: Child,
    pub stdout: Lines,
    pub stderr: Lines,
}

impl Running {
    /// Starts `cmd` with piped stdout/stderr collected line by line.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child =
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn plugboard");
        let stdout = Lines::collect(child.stdout.take().unwrap());
        let stderr = Lines::collect(child.stderr.take().unwrap());
        Self { child, stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (not exited).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends a signal to the process.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal).expect("signal plugboard");
    }

    /// Waits for the exit status, within the deadline.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < end,
                "plugboard did not exit within {deadline:?}; stderr:\n{}",
                self.stderr.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Parses `--log-format json` lines and returns the `fields` objects whose
/// message equals `message`.
pub fn log_events(lines: &[String], message: &str) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f.get("message").and_then(|m| m.as_str()) == Some(message))
        .collect()
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat.rsplit_once(')').map(|(_, rest)| !rest.trim_start().starts_with('Z')).unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive; returns the ones still alive at the deadline.
pub fn wait_gone(pids: &[u32], deadline: Duration) -> Vec<u32> {
    let end = Instant::now() + deadline;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| process_alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= end {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Parses stdout lines as CloudEvents (JSON format), validating each.
pub fn parse_events(lines: &[String]) -> Vec<plugboard_proto::CloudEvent> {
    lines
        .iter()
        .map(|l| {
            plugboard_proto::event::from_json_slice(l.as_bytes())
                .unwrap_or_else(|e| panic!("stdout line is not a valid CloudEvent ({e}): {l}"))
        })
        .collect()
}

/// The `index` in an event's JSON data.
pub fn event_index(event: &plugboard_proto::CloudEvent) -> u64 {
    use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
    match &event.data {
        Some(Data::TextData(t)) => serde_json::from_str::<serde_json::Value>(t).ok().and_then(|v| v["index"].as_u64()),
        _ => None,
    }
    .unwrap_or_else(|| panic!("event {} has no index", event.id))
}

/// The HTTP address a `--log-format json` host logged ("http listening").
pub fn http_addr(stderr: &Lines) -> String {
    let lines =
        stderr.wait_until("the HTTP server to listen", DEADLINE, |l| !log_events(l, "http listening").is_empty());
    log_events(&lines, "http listening")[0]["addr"].as_str().expect("addr field").to_owned()
}

/// A blocking HTTP client that reports every status as a response, not an error.
pub fn http_client() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}
