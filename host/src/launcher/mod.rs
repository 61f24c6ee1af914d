//! Layer 1: a generic hashicorp/go-plugin-compatible launcher.
//!
//! It starts an executable, hands it go-plugin's environment, reads and
//! validates the handshake line, connects a gRPC channel to the announced
//! socket, checks health, mirrors the plugin's stdio and logs, and stops it the
//! go-plugin way (`GRPCController.Shutdown`, a grace period, then SIGKILL of
//! its process group). It knows nothing about sources, executors or sinks:
//! it can host any go-plugin gRPC plugin.
//!
//! go-plugin's security features are options of [`LaunchConfig`]: AutoMTLS
//! ([`tls`]), checksum pinning with no check-to-exec window
//! ([`VerifiedExecutable`]) and the address policy ([`AddressPolicy`]) that
//! keeps the handshake from pointing the host anywhere but the plugin's
//! private socket directory or loopback.

mod address;
mod checksum;
mod connect;
pub mod limits;
mod output;
mod run_as;
mod spawn;
pub mod tls;

use std::ffi::OsString;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugboard_proto::goplugin::{self, HandshakeConfig, HandshakeError, HandshakeLine};
use plugboard_proto::plugin::{
    Empty, grpc_controller_client::GrpcControllerClient, grpc_stdio_client::GrpcStdioClient,
};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
use tracing::Instrument as _;

pub use address::{AddressError, AddressPolicy};
pub use checksum::{ChecksumError, Sha256, VerifiedExecutable};
pub use connect::connect as connect_channel;
pub use limits::{CgroupMode, Enforcement, Enforcer, LimitHit, Limits, LimitsError};
pub use output::StderrTail;
pub use run_as::{RunAs, RunAsError};

/// `PATH` of a plugin that does not inherit the host's environment, unless
/// its `env` sets one: the system directories, nothing user-writable.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How to launch one plugin process.
#[derive(Debug, Clone)]
pub struct LaunchConfig {
    /// Name used in logs (the `instance` field) and errors.
    pub name: String,
    /// What the process is an instance of, for logs (the `plugin` field);
    /// `name` when not set.
    pub plugin: Option<String>,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub handshake: HandshakeConfig,
    /// Give the plugin the host's environment (go-plugin's default). Either
    /// way the handshake variables and `env` are set on top. Without it the
    /// plugin gets only the handshake variables, the host's values of
    /// `env_allow`, and `env`; `PATH` is [`DEFAULT_PATH`] unless one of those sets it.
    pub inherit_env: bool,
    /// Variables copied from the host's environment (when set there) if
    /// `inherit_env` is off.
    pub env_allow: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Resource limits of the process and everything it starts.
    pub limits: Limits,
    /// Run the plugin as this user and group (the host must be root); its
    /// private socket directory is handed to that user, still mode 0700.
    pub run_as: Option<RunAs>,
    /// From spawn to a healthy connection (go-plugin: 1 minute).
    pub start_timeout: Duration,
    /// How long a plugin may take to exit after `Shutdown` before SIGKILL (go-plugin: 2 s).
    pub kill_grace: Duration,
    /// Where the private per-launch socket directory is made (default: the temp dir).
    pub socket_dir_base: Option<PathBuf>,
    /// Strings (secrets the plugin was given) replaced by `********` in the
    /// plugin's forwarded log lines and error excerpts.
    pub redact: Vec<String>,
    /// go-plugin AutoMTLS: mint a per-launch certificate, require the plugin's
    /// in handshake field 6, and speak TLS pinned to it (see [`tls`]).
    pub auto_mtls: bool,
    /// Refuse to run the executable unless its SHA-256 is this.
    pub sha256: Option<Sha256>,
    /// Which announced addresses are accepted beyond the safe ones.
    pub address_policy: AddressPolicy,
}

impl LaunchConfig {
    pub fn new(name: impl Into<String>, program: impl Into<PathBuf>, handshake: HandshakeConfig) -> Self {
        Self {
            name: name.into(),
            plugin: None,
            program: program.into(),
            args: Vec::new(),
            handshake,
            inherit_env: true,
            env_allow: Vec::new(),
            env: Vec::new(),
            limits: Limits::default(),
            run_as: None,
            start_timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(2),
            socket_dir_base: None,
            redact: Vec::new(),
            auto_mtls: false,
            sha256: None,
            address_policy: AddressPolicy::default(),
        }
    }
}

/// How a plugin process ended, and which of its limits explains it when one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReason {
    pub status: ExitStatus,
    pub limit: Option<LimitHit>,
}

impl From<ExitStatus> for ExitReason {
    fn from(status: ExitStatus) -> Self {
        Self { status, limit: None }
    }
}

impl ExitReason {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
    pub fn signal(&self) -> Option<i32> {
        self.status.signal()
    }
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

impl fmt::Display for ExitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status.code(), self.status.signal()) {
            (Some(code), _) => write!(f, "exit status {code}")?,
            (None, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by signal {sig} ({})", s.as_str())?,
                Err(_) => write!(f, "killed by signal {sig}")?,
            },
            (None, None) => f.write_str("unknown exit status")?,
        }
        match &self.limit {
            Some(limit) => write!(f, ": {limit}"),
            None => Ok(()),
        }
    }
}

/// The last stderr lines, appended to an error message when there are any.
#[derive(Debug, Clone, Default)]
pub struct StderrExcerpt(pub String);

impl fmt::Display for StderrExcerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("\nplugin stderr (last lines):")?;
        for line in self.0.lines() {
            write!(f, "\n  {line}")?;
        }
        Ok(())
    }
}

/// Why a plugin could not be started. Texts follow go-plugin's.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot start plugin {path}: {source}{note}")]
    Spawn { path: PathBuf, source: std::io::Error, note: &'static str },
    #[error("{error}{stderr}")]
    Handshake { error: HandshakeError, stderr: StderrExcerpt },
    #[error("timeout while waiting for plugin to start: no handshake line within {timeout:?}{stderr}")]
    Timeout { timeout: Duration, stderr: StderrExcerpt },
    #[error("plugin exited before we could connect ({reason}){stderr}")]
    ExitedEarly { reason: ExitReason, stderr: StderrExcerpt },
    #[error("plugin closed its stdout without printing a handshake line{stderr}")]
    NoHandshake { stderr: StderrExcerpt },
    #[error("cannot connect to the plugin at {address}: {reason}{stderr}")]
    Connect { address: String, reason: String, stderr: StderrExcerpt },
    #[error("plugin did not report healthy: {reason}{stderr}")]
    Unhealthy { reason: String, stderr: StderrExcerpt },
    #[error("cannot create a socket directory: {0}")]
    SocketDir(String),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("{error}{stderr}")]
    Address { error: AddressError, stderr: StderrExcerpt },
    #[error("AutoMTLS: {reason}{stderr}")]
    Tls { reason: String, stderr: StderrExcerpt },
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    RunAs(#[from] RunAsError),
}

/// Linux's `sun_path` holds 107 bytes plus NUL; plugins add a file name of up to 24.
const MAX_SOCKET_DIR_LEN: usize = 107 - 24;

/// A running plugin process and its gRPC channel.
///
/// Dropping it kills the process group at once; [`PluginProcess::shutdown`]
/// stops it gracefully first.
pub struct PluginProcess {
    name: Arc<str>,
    plugin: Arc<str>,
    pid: u32,
    handshake: HandshakeLine,
    handshake_text: String,
    stdout_after_handshake: Arc<std::sync::atomic::AtomicU64>,
    channel: Channel,
    exit: watch::Receiver<Option<ExitReason>>,
    stderr: StderrTail,
    shutdown_requested: AtomicBool,
    kill_grace: Duration,
    started_at: Instant,
    limits: Arc<Enforcement>,
    // Removed (with the socket in it) when the process handle goes away.
    _socket_dir: tempfile::TempDir,
}

impl fmt::Debug for PluginProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginProcess").field("name", &self.name).field("pid", &self.pid).finish()
    }
}

/// Kills the group if launch fails half-way.
struct KillOnFailure {
    pid: u32,
    armed: bool,
}

impl Drop for KillOnFailure {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pid);
        }
    }
}

fn kill_group(pid: u32) {
    // The plugin leads its own process group (pgid == pid).
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
}

fn spawn_note(e: &std::io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::ENOENT) => " (no such file; check the path and, for scripts, the #! interpreter)",
        Some(libc::EACCES) => " (permission denied: is the file executable by this user?)",
        Some(libc::ENOEXEC) => " (exec format error: built for another architecture, or a script without #!)",
        _ => "",
    }
}

async fn wait_exited(exit: &mut watch::Receiver<Option<ExitReason>>) -> ExitReason {
    match exit.wait_for(Option::is_some).await {
        Ok(v) => v.unwrap_or(ExitReason::from(ExitStatus::from_raw(0))),
        // The watcher task ended without a status: the runtime is going away.
        Err(_) => ExitReason::from(ExitStatus::from_raw(0)),
    }
}

impl PluginProcess {
    /// Starts the plugin and returns once it is connected and healthy.
    pub async fn launch(cfg: LaunchConfig) -> Result<Self, LaunchError> {
        Self::launch_with(cfg, |_| async {}).await.map(|(process, ())| process)
    }

    /// Like [`PluginProcess::launch`], and runs `first_call` on the new
    /// channel concurrently with the health check (saving a round trip at
    /// start, e.g. for an application's describe call). Its result is
    /// returned with the process once both are done.
    pub async fn launch_with<F, Fut, T>(cfg: LaunchConfig, first_call: F) -> Result<(Self, T), LaunchError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = T>,
    {
        let started_at = Instant::now();
        let deadline = started_at + cfg.start_timeout;
        if cfg.run_as.is_some() {
            RunAs::check_privilege()?;
        }
        let uid = cfg.run_as.as_ref().map(|r| r.uid).unwrap_or_else(|| nix::unistd::geteuid().as_raw());
        let limits = limits::prepare(&cfg.name, &cfg.limits, uid)?;
        let socket_dir = make_socket_dir(cfg.socket_dir_base.as_deref())?;
        if let Some(run_as) = &cfg.run_as {
            // Still 0700: only the plugin's user (and root, the host) enter it.
            nix::unistd::chown(
                socket_dir.path(),
                Some(nix::unistd::Uid::from_raw(run_as.uid)),
                Some(nix::unistd::Gid::from_raw(run_as.gid)),
            )
            .map_err(|e| {
                LaunchError::SocketDir(format!("cannot hand {} to {run_as}: {e}", socket_dir.path().display()))
            })?;
        }
        let verified = cfg.sha256.as_ref().map(|sha| VerifiedExecutable::open(&cfg.program, sha)).transpose()?;
        let identity = match cfg.auto_mtls {
            true => Some(
                tls::HostIdentity::generate()
                    .map_err(|e| LaunchError::Tls { reason: e.to_string(), stderr: StderrExcerpt::default() })?,
            ),
            false => None,
        };

        let mut env = Vec::new();
        if !cfg.inherit_env {
            if !cfg.env.iter().any(|(k, _)| k == "PATH") && !cfg.env_allow.iter().any(|k| k == "PATH") {
                env.push(("PATH".into(), DEFAULT_PATH.into()));
            }
            env.extend(cfg.env_allow.iter().filter_map(|k| Some((k.clone(), std::env::var_os(k)?))));
        }
        env.extend([
            (OsString::from(cfg.handshake.magic_cookie_key), OsString::from(cfg.handshake.magic_cookie_value)),
            (goplugin::env::PLUGIN_MIN_PORT.into(), goplugin::env::DEFAULT_MIN_PORT.to_string().into()),
            (goplugin::env::PLUGIN_MAX_PORT.into(), goplugin::env::DEFAULT_MAX_PORT.to_string().into()),
            (goplugin::env::PLUGIN_PROTOCOL_VERSIONS.into(), cfg.handshake.protocol_versions_env().into()),
            (goplugin::env::PLUGIN_UNIX_SOCKET_DIR.into(), socket_dir.path().as_os_str().to_owned()),
            // go-plugin before 1.5 ignores PLUGIN_UNIX_SOCKET_DIR but makes its
            // socket in TMPDIR: this keeps old Go plugins inside the private dir.
            ("TMPDIR".into(), socket_dir.path().as_os_str().to_owned()),
        ]);
        if let Some(identity) = &identity {
            env.push((goplugin::env::PLUGIN_CLIENT_CERT.into(), identity.cert_pem().into()));
        }
        env.extend(cfg.env.iter().cloned());

        let exec_path = verified.as_ref().map(VerifiedExecutable::exec_path);
        let spec = spawn::ProcessSpec {
            program: exec_path.as_deref().unwrap_or(&cfg.program),
            arg0: exec_path.is_some().then_some(cfg.program.as_os_str()),
            keep_fd: verified.as_ref().map(VerifiedExecutable::fd),
            args: &cfg.args,
            inherit_env: cfg.inherit_env,
            env,
            setup: spawn::ChildSetup {
                cgroup_procs: limits.procs.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect(),
                rlimits: limits.rlimits,
                run_as: cfg.run_as.clone(),
            },
        };
        let mut child = spawn::spawn(spec).await.map_err(|source| LaunchError::Spawn {
            path: cfg.program.clone(),
            note: spawn_note(&source),
            source,
        })?;
        let pid = child.id().unwrap_or_default();
        drop(limits.procs);
        let name: Arc<str> = Arc::from(cfg.name.as_str());
        let plugin: Arc<str> = Arc::from(cfg.plugin.as_deref().unwrap_or(&cfg.name));
        if !limits.enforcement.is_empty() {
            let how = limits::describe_enforcement(&cfg.limits, &limits.enforcement);
            tracing::info!(plugin = %plugin, instance = %name, pid, "limits: {how}");
        }
        tracing::trace!(plugin = %plugin, instance = %name, pid, elapsed = ?started_at.elapsed(), "spawned");
        let mut guard = KillOnFailure { pid, armed: true };
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(LaunchError::NoHandshake { stderr: StderrExcerpt::default() });
        };
        drop(verified);
        let stdout_after_handshake = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let labels = output::LogLabels { instance: Arc::clone(&name), plugin: Arc::clone(&plugin) };
        let first_line = output::read_stdout(stdout, labels.clone(), Arc::clone(&stdout_after_handshake));
        let tail = StderrTail::default();
        output::read_stderr(stderr, labels.clone(), tail.clone(), cfg.redact.clone());

        // Exit is detected by waiting on the process, never by pipe EOF, so a
        // grandchild holding the pipes cannot hide it.
        let (exit_tx, mut exit) = watch::channel(None);
        let exit_watch = limits.watch;
        let watch_tail = tail.clone();
        tokio::spawn(async move {
            let status = child.wait().await.unwrap_or_else(|_| ExitStatus::from_raw(0));
            let limit = exit_watch.classify(status, || watch_tail.text()).await;
            let _ = exit_tx.send(Some(ExitReason { status, limit }));
            // What the plugin left in its cgroups dies with it.
            if let Some(cgroups) = exit_watch.cgroups {
                cgroups.finish().await;
            }
        });

        let excerpt = |tail: &StderrTail| StderrExcerpt(tail.text());
        let line = tokio::select! {
            biased;
            line = first_line => match line.unwrap_or(output::FirstLine::Eof(String::new())) {
                output::FirstLine::Line(line) => line,
                output::FirstLine::TooLong => {
                    return Err(LaunchError::Handshake {
                        error: HandshakeError::Unrecognized { line: "<a line longer than 64 KiB>".into() },
                        stderr: excerpt(&tail),
                    });
                }
                output::FirstLine::Eof(partial) => {
                    // stdout closed: give the process a moment to report its exit.
                    let exited = tokio::time::timeout(Duration::from_secs(1), wait_exited(&mut exit)).await;
                    return Err(match exited {
                        Ok(reason) if partial.is_empty() => {
                            LaunchError::ExitedEarly { reason, stderr: settle(&tail).await }
                        }
                        _ if !partial.is_empty() => LaunchError::Handshake {
                            error: HandshakeError::Unrecognized { line: partial },
                            stderr: excerpt(&tail),
                        },
                        _ => LaunchError::NoHandshake { stderr: excerpt(&tail) },
                    });
                }
            },
            reason = wait_exited(&mut exit) => {
                return Err(LaunchError::ExitedEarly { reason, stderr: settle(&tail).await });
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                return Err(LaunchError::Timeout { timeout: cfg.start_timeout, stderr: excerpt(&tail) });
            }
        };
        tracing::trace!(plugin = %plugin, instance = %name, elapsed = ?started_at.elapsed(), "handshake line read");
        let handshake = HandshakeLine::parse(&line, cfg.handshake.app_protocol_versions)
            .map_err(|error| LaunchError::Handshake { error, stderr: excerpt(&tail) })?;
        address::check(&handshake.address, socket_dir.path(), cfg.address_policy)
            .map_err(|error| LaunchError::Address { error, stderr: excerpt(&tail) })?;
        let tls = match (&identity, &handshake.server_cert) {
            (None, _) => None,
            (Some(identity), Some(der)) => Some(
                identity
                    .client_config(der.clone())
                    .map_err(|e| LaunchError::Tls { reason: e.to_string(), stderr: excerpt(&tail) })?,
            ),
            (Some(_), None) => {
                return Err(LaunchError::Tls {
                    reason: "the plugin was given PLUGIN_CLIENT_CERT but printed no certificate in field 6 of its \
                             handshake line; it does not support AutoMTLS (turn automtls off for this plugin)"
                        .into(),
                    stderr: excerpt(&tail),
                });
            }
        };

        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
        let channel = match connect::connect(&handshake.address, remaining, tls).await {
            Ok(channel) => channel,
            Err(e) => {
                return Err(LaunchError::Connect {
                    address: handshake.address.to_string(),
                    reason: error_chain(&e),
                    stderr: excerpt(&tail),
                });
            }
        };

        tracing::trace!(plugin = %plugin, instance = %name, elapsed = ?started_at.elapsed(), "connected");
        let (health, first) = tokio::join!(check_health(&channel, remaining), first_call(channel.clone()));
        if health.map_err(|reason| LaunchError::Unhealthy { reason, stderr: excerpt(&tail) })?
            == Answer::NoHealthService
        {
            // Said once per launch: its periodic checks still need an answer in
            // time (Unimplemented is one), so a hung plugin is still caught.
            tracing::warn!(plugin = %plugin, instance = %name, "plugin serves no grpc.health.v1.Health; its health checks only prove it answers");
        }
        mirror_stdio(channel.clone(), labels);

        guard.armed = false;
        tracing::debug!(plugin = %plugin, instance = %name, pid, address = %handshake.address, elapsed = ?started_at.elapsed(), "plugin started");
        let process = Self {
            name,
            plugin,
            pid,
            handshake,
            handshake_text: line.trim().to_owned(),
            stdout_after_handshake,
            channel,
            exit,
            stderr: tail,
            shutdown_requested: AtomicBool::new(false),
            kill_grace: cfg.kill_grace,
            started_at,
            limits: Arc::new(limits.enforcement),
            _socket_dir: socket_dir,
        };
        Ok((process, first))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The handshake the plugin printed (negotiated version, address...).
    pub fn handshake(&self) -> &HandshakeLine {
        &self.handshake
    }

    /// The handshake line exactly as printed (whitespace-trimmed).
    pub fn handshake_text(&self) -> &str {
        &self.handshake_text
    }

    /// Bytes the plugin wrote to stdout after its handshake line (drained and
    /// dropped, as go-plugin does).
    pub fn stdout_bytes_after_handshake(&self) -> u64 {
        self.stdout_after_handshake.load(Ordering::Relaxed)
    }

    /// The gRPC channel to the plugin; cheap to clone.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// How each of its limits is enforced (empty without limits).
    pub fn limits(&self) -> &Enforcement {
        &self.limits
    }

    /// [`PluginProcess::limits`], shared (for status reports that outlive the process).
    pub fn limits_shared(&self) -> Arc<Enforcement> {
        Arc::clone(&self.limits)
    }

    /// The plugin's last stderr lines.
    pub fn stderr_tail(&self) -> String {
        self.stderr.text()
    }

    /// How the process ended, if it has.
    pub fn exit_reason(&self) -> Option<ExitReason> {
        *self.exit.borrow()
    }

    /// Waits until the process has exited and been reaped.
    pub async fn wait(&self) -> ExitReason {
        wait_exited(&mut self.exit.clone()).await
    }

    /// go-plugin's `Ping`: `grpc.health.v1.Health/Check` for service `plugin`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        check_health(&self.channel, timeout).await.map(|_| ())
    }

    /// Stops the plugin: `GRPCController.Shutdown`, up to the grace period for
    /// it to exit, then SIGKILL to its process group. Safe to call repeatedly
    /// and concurrently; every call returns once the process is gone.
    pub async fn shutdown(&self) -> ExitReason {
        if self.exit_reason().is_none() && !self.shutdown_requested.swap(true, Ordering::SeqCst) {
            let mut controller = GrpcControllerClient::new(self.channel.clone());
            // Plugins without a controller (the non-Go guide) just take the kill path.
            let _ = tokio::time::timeout(self.kill_grace, controller.shutdown(Empty {})).await;
        }
        let reason = match tokio::time::timeout(self.kill_grace, self.wait()).await {
            Ok(reason) => reason,
            Err(_) => {
                tracing::warn!(plugin = %self.plugin, instance = %self.name, pid = self.pid, "plugin failed to exit gracefully; killing it");
                kill_group(self.pid);
                self.wait().await
            }
        };
        // Children the plugin left behind share its process group.
        kill_group(self.pid);
        reason
    }

    /// SIGKILL to the plugin's process group, now. Idempotent.
    pub fn kill(&self) {
        kill_group(self.pid);
    }
}

impl Drop for PluginProcess {
    fn drop(&mut self) {
        // Whatever happened, a dropped handle leaves no process behind.
        kill_group(self.pid);
    }
}

/// stderr is read concurrently; give the last lines a moment to arrive so the
/// error shows why the plugin died.
async fn settle(tail: &StderrTail) -> StderrExcerpt {
    tokio::time::sleep(Duration::from_millis(20)).await;
    StderrExcerpt(tail.text())
}

/// An error with its causes ("error sending request: connection refused").
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// How a plugin answered a health check it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    Serving,
    /// It answered `Unimplemented`: alive and serving gRPC, with no health service.
    NoHealthService,
}

async fn check_health(channel: &Channel, timeout: Duration) -> Result<Answer, String> {
    let mut health = HealthClient::new(channel.clone());
    let request = HealthCheckRequest { service: goplugin::HEALTH_SERVICE.to_owned() };
    match tokio::time::timeout(timeout, health.check(request)).await {
        Err(_) => Err(format!("health check timed out after {timeout:?}")),
        Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::Serving as i32 => Ok(Answer::Serving),
        Ok(Ok(resp)) => Err(format!("health service \"plugin\" is {:?}", resp.get_ref().status())),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            // go-plugin's start does not require health either; Ping would fail.
            Ok(Answer::NoHealthService)
        }
        Ok(Err(status)) => Err(format!("health check failed: {}", status.message())),
    }
}

/// Calls `plugin.GRPCStdio/StreamStdio` once and logs what the plugin wrote
/// to its stdout/stderr after the handshake.
fn mirror_stdio(channel: Channel, labels: output::LogLabels) {
    let output::LogLabels { instance, plugin } = labels;
    let task = async move {
        let mut client = GrpcStdioClient::new(channel);
        let mut stream = match client.stream_stdio(()).await {
            Ok(resp) => resp.into_inner(),
            Err(status) => {
                tracing::debug!(plugin = %plugin, instance = %instance, code = ?status.code(), "stdio service not available");
                return;
            }
        };
        while let Ok(Some(chunk)) = stream.message().await {
            let text = String::from_utf8_lossy(&chunk.data);
            for line in text.lines().filter(|l| !l.is_empty()) {
                tracing::info!(plugin = %plugin, instance = %instance, channel = chunk.channel, "{line}");
            }
        }
    };
    tokio::spawn(task.in_current_span());
}

fn make_socket_dir(base: Option<&Path>) -> Result<tempfile::TempDir, LaunchError> {
    let base = base.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir);
    // 0700: only the host (and the plugin, same user) enter it. tempfile
    // would otherwise leave the mode to the umask (usually 0755).
    let dir = tempfile::Builder::new()
        .prefix("pb-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(&base)
        .map_err(|e| LaunchError::SocketDir(format!("{}: {e}", base.display())))?;
    let len = dir.path().as_os_str().len();
    if len > MAX_SOCKET_DIR_LEN {
        return Err(LaunchError::SocketDir(format!(
            "{} is {len} bytes long; Unix socket paths are limited to 107 bytes, so use a directory of at most {MAX_SOCKET_DIR_LEN} bytes (set TMPDIR)",
            dir.path().display()
        )));
    }
    Ok(dir)
}
