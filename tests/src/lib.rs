//! Support for end-to-end tests: locate the built binaries, make plugin
//! directories (real plugins and deliberately broken scripts), run the real
//! `plugboard` binary and wait on what it prints.
//!
//! Binaries come from the workspace build (`make test` builds them first).
//! Every wait has a generous deadline and polls a condition: no fixed sleeps.

pub mod cgroups;
pub mod chatops;
pub mod lifecycle;
pub mod metrics;
pub mod procs;

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

/// Resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// Live processes whose command name is `name`: (pid, NUL-separated argv).
pub fn processes_named(name: &str) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| process_alive(*pid))
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name))
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok().map(|c| (pid, c)))
        .collect()
}
/// Polls `done` until it holds; panics naming `what` after `deadline`.
pub fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < end, "timed out after {deadline:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The JSON lines of a file (a missing file has none; a torn last line is skipped).
pub fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The `id` of each CloudEvent JSON value.
pub fn ids(events: &[serde_json::Value]) -> Vec<String> {
    events.iter().map(|e| e["id"].as_str().unwrap_or_default().to_owned()).collect()
}

/// `plugboard events list --json` for the store of `config`, parsed.
pub fn stored_events(config: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let out = plugboard().args(["events", "list", "--json", "--config"]).arg(config).args(extra).output().unwrap();
    assert!(out.status.success(), "events list failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("events list line is not JSON ({e}): {l}")))
        .collect()
}

/// Runs a `plugboard` subcommand; returns (exit code, stdout, stderr).
pub fn run_plugboard(args: &[&str]) -> (Option<i32>, String, String) {
    let out = plugboard().args(args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `plugboard --log-format json run --config <config>`.
pub fn run_host(config: &Path) -> Running {
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(config);
    Running::spawn(cmd)
}

/// `GET /v1/stats` of a running host.
pub fn stats(addr: &str) -> serde_json::Value {
    let mut response = http_client().get(&format!("http://{addr}/v1/stats")).call().unwrap();
    serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap()
}

pub mod http_server {
    //! A real HTTP server for sink tests: records every request, answers with
    //! the status the test sets (per path), on its own thread and runtime.

    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Request, State};
    use axum::http::StatusCode;

    /// One request the server got.
    #[derive(Debug, Clone)]
    pub struct Recorded {
        pub path: String,
        pub headers: HashMap<String, String>,
        pub body: Vec<u8>,
        /// The status it was answered with.
        pub status: u16,
    }

    #[derive(Default)]
    struct Shared {
        requests: Mutex<Vec<Recorded>>,
        status: Mutex<HashMap<String, u16>>,
    }

    pub struct TestServer {
        pub addr: SocketAddr,
        shared: Arc<Shared>,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl TestServer {
        pub fn start() -> Self {
            let shared = Arc::new(Shared::default());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
            let state = Arc::clone(&shared);
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    ready_tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = axum::Router::new().fallback(record).with_state(state);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop.await;
                        })
                        .await;
                });
            });
            let addr = ready_rx.recv().unwrap();
            Self { addr, shared, shutdown: Some(shutdown), thread: Some(thread) }
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        /// Answers requests to `path` with `status` from now on (default 200).
        pub fn set_status(&self, path: &str, status: u16) {
            self.shared.status.lock().unwrap().insert(path.to_owned(), status);
        }

        pub fn requests(&self) -> Vec<Recorded> {
            self.shared.requests.lock().unwrap().clone()
        }

        /// Requests to `path` answered with a 2xx status.
        pub fn accepted(&self, path: &str) -> Vec<Recorded> {
            self.requests().into_iter().filter(|r| r.path == path && (200..300).contains(&r.status)).collect()
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            if let Some(s) = self.shutdown.take() {
                let _ = s.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    async fn record(State(shared): State<Arc<Shared>>, request: Request) -> StatusCode {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default().to_vec();
        let path = parts.uri.path().to_owned();
        let status = shared.status.lock().unwrap().get(&path).copied().unwrap_or(200);
        let headers = parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        shared.requests.lock().unwrap().push(Recorded { path, headers, body, status });
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}
