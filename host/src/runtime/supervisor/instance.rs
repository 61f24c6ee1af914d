//! One supervised instance: its phase (watched by everyone who needs its
//! process), what happened to it (for status and metrics), and the controls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ControlError, InstanceSpec, Kind, Lifecycle, Workload};
use crate::launcher::ExitReason;
use crate::plugin::PluginHandle;

/// Where an instance is in its life.
#[derive(Debug, Clone)]
pub enum Phase {
    Starting,
    Running(PluginHandle),
    /// Failed; starts again at `until`.
    Backoff {
        reason: String,
        until: Instant,
    },
    /// Too many failures: waits for an operator.
    Deactivated {
        reason: String,
    },
    /// A source that ended its stream cleanly: it has nothing more to send.
    Finished,
    Stopped,
}

/// [`Phase`] without its data, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Starting,
    Running,
    /// Waiting out the restart delay after a failure.
    Backoff,
    Deactivated,
    Finished,
    Stopped,
}

impl State {
    pub const ALL: [State; 6] =
        [State::Starting, State::Running, State::Backoff, State::Deactivated, State::Finished, State::Stopped];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Deactivated => "deactivated",
            State::Finished => "finished",
            State::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Phase {
    pub fn state(&self) -> State {
        match self {
            Phase::Starting => State::Starting,
            Phase::Running(_) => State::Running,
            Phase::Backoff { .. } => State::Backoff,
            Phase::Deactivated { .. } => State::Deactivated,
            Phase::Finished => State::Finished,
            Phase::Stopped => State::Stopped,
        }
    }
}

/// The outcome of the last health check of the running process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthState {
    /// No check since the process started, checks turned off, or no process.
    Unknown,
    Serving,
    Failing,
}

/// What `GET /v1/plugins` shows of one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceStatus {
    /// The instance name.
    pub name: String,
    pub kind: Kind,
    /// The plugin's described name.
    pub plugin: String,
    pub state: State,
    pub pid: Option<u32>,
    /// When the current process started (RFC 3339), while it runs.
    pub started_at: Option<String>,
    pub uptime_seconds: Option<f64>,
    /// Restarts after failures since the host started.
    pub restarts: u32,
    /// How the last process ended: "exit status 3", "killed by signal 9 (SIGKILL)".
    pub last_exit: Option<String>,
    pub last_exit_code: Option<i32>,
    pub last_exit_signal: Option<i32>,
    pub last_exit_at: Option<String>,
    /// Why the last run failed, in words.
    pub last_error: Option<String>,
    pub health: HealthState,
    /// Failed health checks in a row.
    pub health_failures: u32,
    pub health_error: Option<String>,
    /// The circuit is open: the instance waits for `plugins enable`.
    pub deactivated: bool,
    /// While in backoff: when the next start is due.
    pub retry_in_ms: Option<u64>,
    /// How each limit of the last started process is enforced: limit field
    /// (`memory`, `processes`, `cpu_time`...) to `cgroup-v2`, `cgroup-v1` or `rlimit`.
    #[serde(default)]
    pub limits: std::collections::BTreeMap<String, String>,
}

impl InstanceStatus {
    /// The last exit as one number: the exit code, or 128 + the signal
    /// (the shell's convention), for metrics.
    pub fn last_exit_number(&self) -> Option<i32> {
        self.last_exit_code.or(self.last_exit_signal.map(|s| 128 + s))
    }

    /// Whether a process runs and serves.
    pub fn up(&self) -> bool {
        self.state == State::Running
    }
}

#[derive(Debug, Clone)]
pub(super) struct HealthStatus {
    status: HealthState,
    failures: u32,
    error: Option<String>,
}

impl HealthStatus {
    const UNKNOWN: HealthStatus = HealthStatus { status: HealthState::Unknown, failures: 0, error: None };
}

#[derive(Debug)]
pub(super) struct Info {
    pid: Option<u32>,
    started: Option<(Instant, SystemTime)>,
    pub(super) restarts: u32,
    last_exit: Option<(Option<ExitReason>, SystemTime)>,
    last_error: Option<String>,
    health: HealthStatus,
    /// How the last started process's limits are enforced.
    limits: std::sync::Arc<crate::launcher::Enforcement>,
}

/// Controls delivered to the instance's task.
#[derive(Default)]
pub(super) struct Signals {
    pub(super) enable: Notify,
    pub(super) restart: Notify,
    pub(super) restart_reason: Mutex<Option<String>>,
    pub(super) fail: Notify,
    pub(super) fail_reason: Mutex<Option<String>>,
}

#[derive(Default)]
struct Run {
    /// Cancelled to stop this run of the task (a child of the group token).
    stop: CancellationToken,
    task: Option<JoinHandle<Box<dyn Workload>>>,
    /// The workload of a stopped instance, kept for [`Instance::start_again`].
    parked: Option<Box<dyn Workload>>,
}

pub struct Instance {
    pub(super) spec: InstanceSpec,
    pub(super) phase: watch::Sender<Phase>,
    pub(super) info: Mutex<Info>,
    pub(super) signals: Signals,
    pub(super) lifecycle: Lifecycle,
    /// The process was up once: a later start is a restart, answered at
    /// once rather than waited for.
    pub(super) was_running: AtomicBool,
    /// The current stop was asked for by an operator (reported as `stopped`).
    pub(super) operator_stop: AtomicBool,
    group: CancellationToken,
    run: Mutex<Run>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance").field("kind", &self.spec.kind).field("name", &self.spec.name).finish()
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Instance {
    pub(super) fn new(spec: InstanceSpec, lifecycle: Lifecycle, group: CancellationToken) -> Self {
        let health = HealthStatus::UNKNOWN;
        Self {
            spec,
            phase: watch::Sender::new(Phase::Starting),
            info: Mutex::new(Info {
                pid: None,
                started: None,
                restarts: 0,
                last_exit: None,
                last_error: None,
                health,
                limits: Default::default(),
            }),
            signals: Signals::default(),
            lifecycle,
            was_running: AtomicBool::new(false),
            operator_stop: AtomicBool::new(false),
            group,
            run: Mutex::new(Run::default()),
        }
    }

    pub fn kind(&self) -> Kind {
        self.spec.kind
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn spec(&self) -> &InstanceSpec {
        &self.spec
    }

    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// Watches the phase.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// The running process, if any.
    pub fn handle(&self) -> Option<PluginHandle> {
        match &*self.phase.borrow() {
            Phase::Running(h) if h.process().exit_reason().is_none() => Some(h.clone()),
            _ => None,
        }
    }

    pub(super) fn info(&self) -> std::sync::MutexGuard<'_, Info> {
        self.info.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running process, waiting (up to `start_wait`) while it starts
    /// for the first time; otherwise, at once, why it is not available.
    pub async fn ready(&self, start_wait: Duration) -> Result<PluginHandle, String> {
        let mut rx = self.phase.subscribe();
        if self.was_running.load(Ordering::SeqCst) && matches!(*rx.borrow(), Phase::Starting) {
            return Err("it crashed and is restarting; try again in a moment".into());
        }
        let waited = tokio::time::timeout(start_wait, rx.wait_for(|p| !matches!(p, Phase::Starting))).await;
        let phase = match waited {
            Err(_) => return Err("still starting".into()),
            Ok(Err(_)) => return Err("stopped".into()),
            Ok(Ok(phase)) => phase.clone(),
        };
        match phase {
            Phase::Running(handle) => match handle.process().exit_reason() {
                None => Ok(handle),
                Some(reason) => Err(format!("plugin process {} exited ({reason}); restarting", handle.process().pid())),
            },
            Phase::Backoff { reason, until } => {
                Err(format!("{reason}; restarting in {:?}", until.saturating_duration_since(Instant::now())))
            }
            Phase::Deactivated { reason } => Err(format!(
                "deactivated after repeated failures (last: {reason}); enable it with `plugboard plugins enable {}`",
                self.spec.name
            )),
            Phase::Finished => Err("finished".into()),
            Phase::Stopped => Err("stopped".into()),
            Phase::Starting => Err("still starting".into()),
        }
    }

    pub fn status(&self) -> InstanceStatus {
        let phase = self.phase.borrow().clone();
        let info = self.info();
        let running = matches!(phase, Phase::Running(_));
        let (pid, started_at, uptime) = match (running, info.started) {
            (true, Some((at, wall))) => (info.pid, Some(rfc3339(wall)), Some(at.elapsed().as_secs_f64())),
            _ => (None, None, None),
        };
        let (last_exit, code, signal, at) = match &info.last_exit {
            Some((reason, at)) => (
                Some(reason.map(|r| r.to_string()).unwrap_or_else(|| "did not start".into())),
                reason.and_then(|r| r.code()),
                reason.and_then(|r| r.signal()),
                Some(rfc3339(*at)),
            ),
            None => (None, None, None, None),
        };
        let retry_in_ms = match &phase {
            Phase::Backoff { until, .. } => {
                Some(until.saturating_duration_since(Instant::now()).as_millis().try_into().unwrap_or(u64::MAX))
            }
            _ => None,
        };
        let last_error = match &phase {
            Phase::Deactivated { reason } => Some(reason.clone()),
            _ => info.last_error.clone(),
        };
        InstanceStatus {
            name: self.spec.name.clone(),
            kind: self.spec.kind,
            plugin: self.spec.plugin.clone(),
            state: phase.state(),
            pid,
            started_at,
            uptime_seconds: uptime,
            restarts: info.restarts,
            last_exit,
            last_exit_code: code,
            last_exit_signal: signal,
            last_exit_at: at,
            last_error,
            health: if running { info.health.status } else { HealthState::Unknown },
            health_failures: info.health.failures,
            health_error: info.health.error.clone(),
            deactivated: matches!(phase, Phase::Deactivated { .. }),
            retry_in_ms,
            limits: info.limits.iter().map(|(what, by)| ((*what).to_owned(), by.as_str().to_owned())).collect(),
        }
    }

    pub(super) fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    pub(super) fn record_start(&self, pid: u32, limits: std::sync::Arc<crate::launcher::Enforcement>) {
        let mut info = self.info();
        info.pid = Some(pid);
        info.limits = limits;
        info.started = Some((Instant::now(), SystemTime::now()));
        info.health = HealthStatus::UNKNOWN;
    }

    pub(super) fn record_exit(&self, exit: Option<ExitReason>, error: Option<&str>) {
        let mut info = self.info();
        info.pid = None;
        info.started = None;
        info.last_exit = Some((exit, SystemTime::now()));
        if let Some(error) = error {
            info.last_error = Some(error.to_owned());
        }
    }

    pub(super) fn record_health(&self, result: &Result<(), String>, failures: u32) {
        let mut info = self.info();
        info.health = HealthStatus {
            status: if result.is_ok() { HealthState::Serving } else { HealthState::Failing },
            failures,
            error: result.as_ref().err().cloned(),
        };
    }

    /// Reports that the process misbehaves (e.g. a sink plugin that stopped
    /// answering Publish): it is restarted, counted as a failure.
    pub fn report_failure(&self, reason: impl Into<String>) {
        *self.signals.fail_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
        self.signals.fail.notify_one();
    }

    pub(super) fn enable(&self) -> Result<(), ControlError> {
        match self.phase.borrow().state() {
            State::Deactivated => {
                self.signals.enable.notify_one();
                Ok(())
            }
            state => Err(ControlError::NotDeactivated { kind: self.spec.kind, name: self.spec.name.clone(), state }),
        }
    }

    pub(super) fn request_restart(&self, reason: &str) -> Result<(), ControlError> {
        match self.phase.borrow().state() {
            State::Running | State::Backoff | State::Starting => {
                *self.signals.restart_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
                self.signals.restart.notify_one();
                Ok(())
            }
            state => Err(ControlError::Conflict { kind: self.spec.kind, name: self.spec.name.clone(), state }),
        }
    }

    fn run_slot(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the supervision task with `workload`.
    pub(super) fn launch(self: &Arc<Self>, workload: Box<dyn Workload>) {
        let stop = self.group.child_token();
        let span = tracing::info_span!(
            "plugin",
            instance = %self.spec.name,
            plugin = %self.spec.plugin,
            kind = self.spec.kind.as_str()
        );
        let task = tokio::spawn(tracing::Instrument::instrument(
            super::run::supervise(Arc::clone(self), workload, stop.clone()),
            span,
        ));
        let mut run = self.run_slot();
        run.stop = stop;
        run.task = Some(task);
    }

    /// Waits for the task to end (after its stop token was cancelled) and
    /// keeps its workload.
    pub(super) async fn join(&self) {
        let task = self.run_slot().task.take();
        if let Some(task) = task {
            match task.await {
                Ok(workload) => self.run_slot().parked = Some(workload),
                Err(e) => tracing::error!(instance = %self.spec.name, "supervision task failed: {e}"),
            }
        }
    }

    pub(super) async fn stop(&self, operator: bool) {
        self.operator_stop.store(operator, Ordering::SeqCst);
        self.run_slot().stop.cancel();
        self.join().await;
    }

    pub(super) fn start_again(self: &Arc<Self>) -> Result<(), ControlError> {
        let parked = {
            let mut run = self.run_slot();
            if run.task.is_some() || self.group.is_cancelled() {
                return Err(ControlError::Conflict {
                    kind: self.spec.kind,
                    name: self.spec.name.clone(),
                    state: self.phase.borrow().state(),
                });
            }
            run.parked.take()
        };
        let Some(workload) = parked else {
            return Err(ControlError::Conflict {
                kind: self.spec.kind,
                name: self.spec.name.clone(),
                state: self.phase.borrow().state(),
            });
        };
        self.operator_stop.store(false, Ordering::SeqCst);
        self.set_phase(Phase::Starting);
        self.launch(workload);
        Ok(())
    }
}
