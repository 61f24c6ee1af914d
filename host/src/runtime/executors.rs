//! Executor instances and the command path: resolve a command to an
//! instance, run it on that instance's plugin process with its timeout.
//!
//! Under `run` every instance is supervised: started at once, restarted with
//! backoff when it dies; a command for an instance that is down gets an
//! immediate, clear error instead of waiting. `exec` starts only the instance
//! a command needs.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use plugboard_proto::plugboard::v1::CommandContext;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::RestartConfig;
use super::plan::{ExecutorPlan, Plan};
use super::resolve::{CommandTable, ResolveError, Resolved};
use crate::plugin::{self, CommandOutcome, CommandRequest, ExecuteError, PluginHandle, StartOptions};

/// How long a failed call waits for the plugin's exit to show.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// Why a command produced no result.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("executor {executor:?} is not available: {reason}")]
    Unavailable { executor: String, reason: String },
    #[error("executor {executor:?}: {source}")]
    Execute { executor: String, source: ExecuteError },
    #[error("executor {executor:?} is busy: it already runs {limit} commands (its max_concurrent); try again shortly")]
    Busy { executor: String, limit: usize },
    #[error("command timed out after {} and was cancelled (executor {executor:?} timeout)", humantime::format_duration(*after))]
    Timeout { executor: String, after: Duration },
}

/// The state of one executor instance's process.
#[derive(Debug, Clone)]
enum State {
    Starting,
    Ready(PluginHandle),
    Down { reason: String, retry_in: Duration },
    Stopped,
}

pub struct ExecutorInstance {
    plan: ExecutorPlan,
    config_json: Vec<u8>,
    state: watch::Sender<State>,
    /// Set once the process was ready: a later `Starting` is a restart,
    /// answered at once instead of waited for.
    was_ready: AtomicBool,
    /// One permit per command running (`max_concurrent`).
    slots: Arc<Semaphore>,
}

impl ExecutorInstance {
    fn new(plan: ExecutorPlan) -> Self {
        let config_json = serde_json::to_vec(&plan.config).unwrap_or_default();
        let slots = Arc::new(Semaphore::new(plan.max_concurrent.max(1)));
        Self { plan, config_json, state: watch::Sender::new(State::Starting), was_ready: AtomicBool::new(false), slots }
    }

    pub fn name(&self) -> &str {
        &self.plan.name
    }

    pub fn plan(&self) -> &ExecutorPlan {
        &self.plan
    }

    /// Whether its process is up and running now (metrics).
    pub fn is_running(&self) -> bool {
        matches!(&*self.state.borrow(), State::Ready(h) if h.process().exit_reason().is_none())
    }

    /// Keeps the instance's process running until `shutdown`.
    async fn supervise(self: Arc<Self>, mut start: StartOptions, restart: RestartConfig, shutdown: CancellationToken) {
        start.redact = self.plan.secrets.clone();
        let mut backoff = Backoff::new(restart);
        loop {
            self.state.send_replace(State::Starting);
            let started = Instant::now();
            let reason = tokio::select! {
                launched = plugin::launch(&self.plan.name, &self.plan.path, &start) => match launched {
                    Ok(handle) => {
                        self.state.send_replace(State::Ready(handle.clone()));
                        self.was_ready.store(true, Ordering::SeqCst);
                        // Logged once commands reach it: "started" means usable.
                        tracing::info!(executor = %self.plan.name, pid = handle.process().pid(), "executor started");
                        tokio::select! {
                            reason = handle.process().wait() => format!("plugin process {} exited ({reason})", handle.process().pid()),
                            _ = shutdown.cancelled() => {
                                self.state.send_replace(State::Stopped);
                                handle.shutdown().await;
                                return;
                            }
                        }
                    }
                    Err(e) => format!("cannot start plugin {:?}: {e}", self.plan.plugin.info.name),
                },
                _ = shutdown.cancelled() => {
                    self.state.send_replace(State::Stopped);
                    return;
                }
            };
            let delay = backoff.next_delay(started.elapsed());
            tracing::warn!(executor = %self.plan.name, restarts = backoff.failures(), "executor failed: {reason}; restarting in {delay:?}");
            self.state.send_replace(State::Down { reason, retry_in: delay });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {
                    self.state.send_replace(State::Stopped);
                    return;
                }
            }
        }
    }

    /// The running process, waiting while it starts (bounded by `start_wait`).
    async fn ready(&self, start_wait: Duration) -> Result<PluginHandle, CommandError> {
        let unavailable = |reason: String| CommandError::Unavailable { executor: self.plan.name.clone(), reason };
        let mut rx = self.state.subscribe();
        if self.was_ready.load(Ordering::SeqCst) && matches!(*rx.borrow(), State::Starting) {
            return Err(unavailable("it crashed and is restarting; try again in a moment".into()));
        }
        let waited = tokio::time::timeout(start_wait, rx.wait_for(|s| !matches!(s, State::Starting))).await;
        let state = match waited {
            Err(_) => return Err(unavailable("still starting".into())),
            Ok(Err(_)) => return Err(unavailable("stopped".into())),
            Ok(Ok(state)) => state.clone(),
        };
        match state {
            State::Ready(handle) if handle.process().exit_reason().is_none() => Ok(handle),
            State::Ready(handle) => Err(unavailable(format!(
                "plugin process {} exited ({}); restarting",
                handle.process().pid(),
                handle.process().exit_reason().map(|r| r.to_string()).unwrap_or_default()
            ))),
            State::Down { reason, retry_in } => Err(unavailable(format!("{reason}; restarting in {retry_in:?}"))),
            State::Stopped => Err(unavailable("stopped".into())),
            State::Starting => Err(unavailable("still starting".into())),
        }
    }

    async fn execute(
        &self,
        handle: &PluginHandle,
        resolved: Resolved,
        context: CommandContext,
        on_output: impl FnMut(&[u8]),
    ) -> Result<CommandOutcome, CommandError> {
        let request = CommandRequest {
            instance: self.plan.name.clone(),
            config: self.config_json.clone(),
            command: resolved.command,
            prefix: resolved.prefix,
            args: resolved.args,
            context,
        };
        let result = handle.executor().execute(request, self.plan.timeout, on_output).await;
        let source = match result {
            Ok(outcome) => return Ok(outcome),
            Err(source) => source,
        };
        // A broken call often arrives just before the process's exit is
        // noticed: give the exit a moment, so a crash is reported as one.
        if !matches!(source, ExecuteError::Timeout(_)) && handle.process().exit_reason().is_none() {
            let _ = tokio::time::timeout(EXIT_GRACE, handle.process().wait()).await;
        }
        Err({
            // A process that died mid-call is reported as such, not as a transport error.
            match (handle.process().exit_reason(), source) {
                (_, ExecuteError::Timeout(after)) => CommandError::Timeout { executor: self.plan.name.clone(), after },
                (Some(reason), _) => CommandError::Unavailable {
                    executor: self.plan.name.clone(),
                    reason: format!("plugin process {} exited ({reason}) during the command", handle.process().pid()),
                },
                (None, ExecuteError::Unavailable(message)) => CommandError::Unavailable {
                    executor: self.plan.name.clone(),
                    reason: format!("the plugin connection broke during the command ({message})"),
                },
                (None, source) => CommandError::Execute { executor: self.plan.name.clone(), source },
            }
        })
    }
}

/// All executor instances of a plan and the table that picks one per command.
pub struct ExecutorPool {
    instances: BTreeMap<String, Arc<ExecutorInstance>>,
    table: CommandTable,
    start: StartOptions,
    /// Set once [`ExecutorPool::supervise_all`] runs the instances.
    supervised: AtomicBool,
    /// `exec`: processes started on demand, stopped by [`ExecutorPool::stop`].
    on_demand: tokio::sync::Mutex<BTreeMap<String, PluginHandle>>,
}

impl ExecutorPool {
    pub fn new(plan: &Plan) -> Self {
        let instances =
            plan.executors.iter().map(|e| (e.name.clone(), Arc::new(ExecutorInstance::new(e.clone())))).collect();
        Self {
            instances,
            table: plan.table.clone(),
            start: plan.start.clone(),
            supervised: AtomicBool::new(false),
            on_demand: Default::default(),
        }
    }

    pub fn table(&self) -> &CommandTable {
        &self.table
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&Arc<ExecutorInstance>> {
        self.instances.get(name)
    }

    /// Starts and supervises every instance until `shutdown`.
    pub fn supervise_all(
        &self,
        restart: &RestartConfig,
        shutdown: &CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        self.supervised.store(true, Ordering::SeqCst);
        self.instances
            .values()
            .map(|i| tokio::spawn(Arc::clone(i).supervise(self.start.clone(), restart.clone(), shutdown.clone())))
            .collect()
    }

    /// Resolves and runs one command. Under supervision the instance must be
    /// up; otherwise its process is started for the command.
    pub async fn run_words(
        &self,
        words: Vec<String>,
        context: CommandContext,
        on_output: impl FnMut(&[u8]),
    ) -> Result<(String, CommandOutcome), CommandError> {
        let resolved = self.table.resolve(words)?;
        self.run_resolved(resolved, context, on_output).await
    }

    /// Runs an already resolved command (the command service resolves
    /// first, to check permissions). A full instance answers "busy" at once.
    pub async fn run_resolved(
        &self,
        resolved: Resolved,
        context: CommandContext,
        on_output: impl FnMut(&[u8]),
    ) -> Result<(String, CommandOutcome), CommandError> {
        let instance = self.instances.get(&resolved.executor).ok_or_else(|| CommandError::Unavailable {
            executor: resolved.executor.clone(),
            reason: "no such instance".into(),
        })?;
        let _slot = Arc::clone(&instance.slots).try_acquire_owned().map_err(|_| CommandError::Busy {
            executor: resolved.executor.clone(),
            limit: instance.plan.max_concurrent,
        })?;
        let handle = if self.supervised.load(Ordering::SeqCst) {
            instance.ready(self.start.start_timeout).await?
        } else {
            self.start_on_demand(instance).await?
        };
        let executor = resolved.executor.clone();
        let outcome = instance.execute(&handle, resolved, context, on_output).await?;
        Ok((executor, outcome))
    }

    async fn start_on_demand(&self, instance: &ExecutorInstance) -> Result<PluginHandle, CommandError> {
        let mut started = self.on_demand.lock().await;
        if let Some(handle) = started.get(instance.name())
            && handle.process().exit_reason().is_none()
        {
            return Ok(handle.clone());
        }
        let start = StartOptions { redact: instance.plan.secrets.clone(), ..self.start.clone() };
        let handle = plugin::launch(instance.name(), &instance.plan.path, &start)
            .await
            .map_err(|e| CommandError::Unavailable { executor: instance.name().to_owned(), reason: e.to_string() })?;
        started.insert(instance.name().to_owned(), handle.clone());
        Ok(handle)
    }

    /// Stops the processes started on demand.
    pub async fn stop(&self) {
        let started = std::mem::take(&mut *self.on_demand.lock().await);
        for handle in started.values() {
            handle.shutdown().await;
        }
    }
}
