//! Executor instances and the command path: resolve a command to an
//! instance, run it on that instance's plugin process with its timeout.
//!
//! Under `run` every instance is supervised: started at once, restarted with
//! backoff when it dies; a command for an instance that is down gets an
//! immediate, clear error instead of waiting. `exec` starts only the instance
//! a command needs.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plugboard_proto::plugboard::v1::CommandContext;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::plan::{ExecutorPlan, Plan};
use super::resolve::{CommandTable, ResolveError, Resolved};
use super::supervisor::{Instance, InstanceSpec, Kind, Serve, Supervisor};
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

pub struct ExecutorInstance {
    plan: ExecutorPlan,
    config_json: Vec<u8>,
    /// Its supervised process, under `run`.
    supervised: OnceLock<Arc<Instance>>,
    /// One permit per command running (`max_concurrent`).
    slots: Arc<Semaphore>,
}

impl ExecutorInstance {
    fn new(plan: ExecutorPlan) -> Self {
        let config_json = serde_json::to_vec(&plan.config).unwrap_or_default();
        let slots = Arc::new(Semaphore::new(plan.max_concurrent.max(1)));
        Self { plan, config_json, supervised: OnceLock::new(), slots }
    }

    pub fn name(&self) -> &str {
        &self.plan.name
    }

    pub fn plan(&self) -> &ExecutorPlan {
        &self.plan
    }

    /// Commands running now.
    pub fn in_flight(&self) -> usize {
        self.plan.max_concurrent.max(1) - self.slots.available_permits()
    }

    /// What the supervisor needs to run this instance's process.
    fn spec(&self, start: &StartOptions) -> InstanceSpec {
        InstanceSpec {
            kind: Kind::Executor,
            name: self.plan.name.clone(),
            plugin: self.plan.plugin.info.name.clone(),
            path: self.plan.path.clone(),
            start: StartOptions { redact: self.plan.secrets.clone(), ..start.clone() },
            supervision: self.plan.supervision.clone(),
        }
    }

    /// The running process, waiting while it starts for the first time
    /// (bounded by `start_wait`); a crashed, restarting or deactivated
    /// instance answers at once.
    async fn ready(&self, instance: &Instance, start_wait: Duration) -> Result<PluginHandle, CommandError> {
        instance
            .ready(start_wait)
            .await
            .map_err(|reason| CommandError::Unavailable { executor: self.plan.name.clone(), reason })
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
    /// `exec`: processes started on demand, stopped by [`ExecutorPool::stop`].
    on_demand: tokio::sync::Mutex<BTreeMap<String, PluginHandle>>,
}

impl ExecutorPool {
    pub fn new(plan: &Plan) -> Self {
        let instances =
            plan.executors.iter().map(|e| (e.name.clone(), Arc::new(ExecutorInstance::new(e.clone())))).collect();
        Self { instances, table: plan.table.clone(), start: plan.start.clone(), on_demand: Default::default() }
    }

    pub fn table(&self) -> &CommandTable {
        &self.table
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<&Arc<ExecutorInstance>> {
        self.instances.get(name)
    }

    /// Starts every instance under `supervisor`, kept up until `group` is
    /// cancelled.
    pub fn supervise_all(&self, supervisor: &Supervisor, group: &CancellationToken) {
        for instance in self.instances.values() {
            match supervisor.spawn(instance.spec(&self.start), Box::new(Serve), group) {
                Ok(supervised) => {
                    let _ = instance.supervised.set(supervised);
                }
                Err(e) => tracing::error!(executor = %instance.name(), "{e}"),
            }
        }
    }

    /// Commands running now, over every instance.
    pub fn in_flight(&self) -> usize {
        self.instances.values().map(|i| i.in_flight()).sum()
    }

    /// Returns once no command runs, and refuses new ones ("busy") from then on.
    pub async fn drain(&self) {
        for instance in self.instances.values() {
            let all = u32::try_from(instance.plan.max_concurrent.max(1)).unwrap_or(u32::MAX);
            if let Ok(permits) = instance.slots.acquire_many(all).await {
                permits.forget();
            }
        }
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
        let handle = if let Some(supervised) = instance.supervised.get() {
            instance.ready(supervised, self.start.start_timeout).await?
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
