//! Executor instances and the command path: resolve a command to an
//! instance, run it on that instance's plugin process with its timeout.
//!
//! Under `run` every instance is supervised: started at once, restarted with
//! backoff when it dies; a command for an instance that is down gets an
//! immediate, clear error instead of waiting. `exec` starts only the instance
//! a command needs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
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
    /// Replaced or removed by a reload: draining, takes no new command.
    retired: AtomicBool,
}

impl ExecutorInstance {
    fn new(plan: ExecutorPlan) -> Self {
        let config_json = serde_json::to_vec(&plan.config).unwrap_or_default();
        let slots = Arc::new(Semaphore::new(plan.max_concurrent.max(1)));
        Self { plan, config_json, supervised: OnceLock::new(), slots, retired: AtomicBool::new(false) }
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
    /// Replaced whole by a reload (hot plug); commands read a snapshot.
    instances: RwLock<Arc<BTreeMap<String, Arc<ExecutorInstance>>>>,
    table: RwLock<Arc<CommandTable>>,
    start: StartOptions,
    /// `exec`: processes started on demand, stopped by [`ExecutorPool::stop`].
    on_demand: tokio::sync::Mutex<BTreeMap<String, PluginHandle>>,
}

impl ExecutorPool {
    pub fn new(plan: &Plan) -> Self {
        let instances =
            plan.executors.iter().map(|e| (e.name.clone(), Arc::new(ExecutorInstance::new(e.clone())))).collect();
        Self {
            instances: RwLock::new(Arc::new(instances)),
            table: RwLock::new(Arc::new(plan.table.clone())),
            start: plan.start.clone(),
            on_demand: Default::default(),
        }
    }

    /// The command table commands resolve against now.
    pub fn table(&self) -> Arc<CommandTable> {
        Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the command table in one step (hot plug).
    pub fn set_table(&self, table: CommandTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    /// The instance called `name`.
    pub fn instance(&self, name: &str) -> Option<Arc<ExecutorInstance>> {
        self.snapshot().get(name).cloned()
    }

    fn snapshot(&self) -> Arc<BTreeMap<String, Arc<ExecutorInstance>>> {
        Arc::clone(&self.instances.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn supervise(&self, instance: &ExecutorInstance, supervisor: &Supervisor, group: &CancellationToken) {
        match supervisor.spawn(instance.spec(&self.start), Box::new(Serve), group) {
            Ok(supervised) => {
                let _ = instance.supervised.set(supervised);
            }
            Err(e) => tracing::error!(executor = %instance.name(), "{e}"),
        }
    }

    /// Starts every instance under `supervisor`, kept up until `group` is
    /// cancelled.
    pub fn supervise_all(&self, supervisor: &Supervisor, group: &CancellationToken) {
        for instance in self.snapshot().values() {
            self.supervise(instance, supervisor, group);
        }
    }

    /// Adds an instance supervised until `group` is cancelled (hot plug). An
    /// instance of that name must have been removed first.
    pub fn add(&self, plan: ExecutorPlan, supervisor: &Supervisor, group: &CancellationToken) {
        let instance = Arc::new(ExecutorInstance::new(plan));
        self.supervise(&instance, supervisor, group);
        let mut guard = self.instances.write().unwrap_or_else(|e| e.into_inner());
        let mut instances = BTreeMap::clone(&guard);
        instances.insert(instance.name().to_owned(), instance);
        *guard = Arc::new(instances);
    }

    /// Removes an instance and stops its process through the supervisor;
    /// a command for it gets "unavailable" until the table no longer names it.
    pub async fn remove(&self, name: &str, supervisor: &Supervisor) {
        {
            let mut guard = self.instances.write().unwrap_or_else(|e| e.into_inner());
            let mut instances = BTreeMap::clone(&guard);
            instances.remove(name);
            *guard = Arc::new(instances);
        }
        if let Err(e) = supervisor.remove(Kind::Executor, name).await {
            tracing::debug!(executor = %name, "nothing to stop: {e}");
        }
    }

    /// Starts `plan`'s instance in place of the running one of that name
    /// (hot plug: config changed or binary replaced). Commands looked up from
    /// now on get the new one; the old one is returned still running, for
    /// [`ExecutorPool::drain_retired`].
    pub fn replace(
        &self,
        plan: ExecutorPlan,
        supervisor: &Supervisor,
        group: &CancellationToken,
    ) -> Option<Arc<ExecutorInstance>> {
        // The old process leaves the supervisor's registry (freeing the name) but keeps running.
        supervisor.detach(Kind::Executor, &plan.name);
        let instance = Arc::new(ExecutorInstance::new(plan));
        self.supervise(&instance, supervisor, group);
        let mut guard = self.instances.write().unwrap_or_else(|e| e.into_inner());
        let mut instances = BTreeMap::clone(&guard);
        let old = instances.insert(instance.name().to_owned(), instance);
        *guard = Arc::new(instances);
        old
    }

    /// Takes an instance out of the command path (hot plug: removed, once
    /// the table no longer names it); returned still running, for
    /// [`ExecutorPool::drain_retired`].
    pub fn retire(&self, name: &str, supervisor: &Supervisor) -> Option<Arc<ExecutorInstance>> {
        supervisor.detach(Kind::Executor, name);
        let mut guard = self.instances.write().unwrap_or_else(|e| e.into_inner());
        let mut instances = BTreeMap::clone(&guard);
        let old = instances.remove(name);
        *guard = Arc::new(instances);
        old
    }

    /// Lets the commands running on a retired instance finish, for up to
    /// `drain` (`shutdown.drain_timeout`), then stops its process. Commands
    /// still running then end "unavailable", as at shutdown.
    pub async fn drain_retired(old: Arc<ExecutorInstance>, supervisor: &Supervisor, drain: Duration) {
        old.retired.store(true, Ordering::SeqCst);
        let all = u32::try_from(old.plan.max_concurrent.max(1)).unwrap_or(u32::MAX);
        let running = old.in_flight();
        if running > 0 {
            tracing::info!(executor = %old.name(), commands = running, "waiting up to {drain:?} for running commands before stopping the old instance");
        }
        match tokio::time::timeout(drain, Arc::clone(&old.slots).acquire_many_owned(all)).await {
            Ok(Ok(permits)) => permits.forget(),
            Ok(Err(_)) => {}
            Err(_) => tracing::warn!(
                executor = %old.name(),
                commands = old.in_flight(),
                "commands still running on the old instance after shutdown.drain_timeout ({drain:?}); its plugin is stopped and they end unavailable"
            ),
        }
        if let Some(supervised) = old.supervised.get() {
            supervisor.stop_detached(supervised).await;
        }
    }

    /// Commands running now, over every instance.
    pub fn in_flight(&self) -> usize {
        self.snapshot().values().map(|i| i.in_flight()).sum()
    }

    /// Returns once no command runs, and refuses new ones ("busy") from then on.
    pub async fn drain(&self) {
        for instance in self.snapshot().values() {
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
        let resolved = self.table().resolve(words)?;
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
        let instance = self.instance(&resolved.executor).ok_or_else(|| CommandError::Unavailable {
            executor: resolved.executor.clone(),
            reason: "no such instance (it was removed)".into(),
        })?;
        let busy = |instance: &ExecutorInstance| CommandError::Busy {
            executor: resolved.executor.clone(),
            limit: instance.plan.max_concurrent,
        };
        let (instance, _slot) = match Arc::clone(&instance.slots).try_acquire_owned() {
            Ok(slot) => (instance, slot),
            // Looked up just before a reload replaced it, and its drain took
            // every slot: its successor (if any) takes the command.
            Err(_) if instance.retired.load(Ordering::SeqCst) => {
                let successor = self
                    .instance(&resolved.executor)
                    .filter(|i| !i.retired.load(Ordering::SeqCst))
                    .ok_or_else(|| CommandError::Unavailable {
                        executor: resolved.executor.clone(),
                        reason: "no such instance (it was removed)".into(),
                    })?;
                let slot = Arc::clone(&successor.slots).try_acquire_owned().map_err(|_| busy(&successor))?;
                (successor, slot)
            }
            Err(_) => return Err(busy(&instance)),
        };
        let handle = if let Some(supervised) = instance.supervised.get() {
            instance.ready(supervised, self.start.start_timeout).await?
        } else {
            self.start_on_demand(&instance).await?
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
