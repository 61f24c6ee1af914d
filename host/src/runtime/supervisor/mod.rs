//! Supervision of plugin instances, one piece of code for every kind.
//!
//! Each instance (a source, an executor, a plugin sink) gets one task that
//! starts its plugin process, hands it to the kind's [`Workload`], and
//! watches it: process exit, failed health checks ([`health`]), a failed
//! workload. A failure goes through the instance's [`RestartPolicy`]
//! (backoff with jitter, forgotten after a healthy run, a circuit breaker
//! that deactivates the instance after too many failures in a window) and
//! every transition is logged and reported as a lifecycle CloudEvent
//! ([`lifecycle`]).
//!
//! The [`Supervisor`] is the registry of instances: status for the API and
//! metrics, and the controls an operator (or the hot-plug reload) uses on a
//! single instance — enable, restart, stop, start, remove — without touching
//! the others.

mod health;
mod instance;
pub mod lifecycle;
pub mod policy;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use instance::{HealthState, Instance, InstanceStatus, Phase, State};
pub use lifecycle::{Lifecycle, LifecycleBinder};
pub use policy::{Decision, RestartPolicy};

use crate::plugin::{PluginHandle, StartOptions};
use crate::runtime::config::{HealthConfig, RestartConfig};

/// What an instance is to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Source,
    Executor,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Executor => "executor",
            Kind::Sink => "sink",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "source" => Some(Kind::Source),
            "executor" => Some(Kind::Executor),
            "sink" => Some(Kind::Sink),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The lifecycle transitions reported as `dev.plugboard.plugin.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Started,
    Exited,
    Restarting,
    Deactivated,
    Enabled,
    /// Failed its health checks; being killed.
    Unhealthy,
    /// A source ended its stream for good.
    Finished,
    /// Stopped by an operator (or a reload), not by a failure.
    Stopped,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Started => "started",
            Transition::Exited => "exited",
            Transition::Restarting => "restarting",
            Transition::Deactivated => "deactivated",
            Transition::Enabled => "enabled",
            Transition::Unhealthy => "unhealthy",
            Transition::Finished => "finished",
            Transition::Stopped => "stopped",
        }
    }
}

/// The restart policy and health checks of one instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Supervision {
    pub restart: RestartConfig,
    pub health: HealthConfig,
}

/// What to supervise.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    pub kind: Kind,
    /// The instance name (from the config).
    pub name: String,
    /// The plugin's described name.
    pub plugin: String,
    pub path: PathBuf,
    pub start: StartOptions,
    pub supervision: Supervision,
}

/// How a workload's run on one process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkEnd {
    /// Nothing more to do, ever (a source that ended for good).
    Finished,
    /// The workload failed while the process still runs: restart it.
    Failed(String),
}

/// What a kind does with a running plugin process.
#[tonic::async_trait]
pub trait Workload: Send + 'static {
    /// Uses the process until it is done or fails. Dropped (cancelled)
    /// whenever the process exits, fails its health checks, or the
    /// instance stops; it must leave nothing half-done that matters then.
    async fn run(&mut self, plugin: &PluginHandle) -> WorkEnd;

    /// The process is gone (restarting or stopping).
    fn detached(&mut self) {}
}

/// A workload that only keeps the process up: callers use it through
/// [`Instance::ready`] (executors, plugin sinks).
pub struct Serve;

#[tonic::async_trait]
impl Workload for Serve {
    async fn run(&mut self, _plugin: &PluginHandle) -> WorkEnd {
        std::future::pending().await
    }
}

/// Why a control request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no plugin instance {0:?}")]
    NotFound(String),
    #[error("{kind} instance {name:?} is {state}, not deactivated")]
    NotDeactivated { kind: Kind, name: String, state: State },
    #[error("{kind} instance {name:?} is {state}")]
    Conflict { kind: Kind, name: String, state: State },
    #[error("a {kind} instance {name:?} already exists")]
    Exists { kind: Kind, name: String },
    #[error("{0:?} names more than one instance ({1}); say which kind")]
    Ambiguous(String, String),
}

/// The registry of supervised instances. Cheap to clone.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    instances: RwLock<BTreeMap<(Kind, String), Arc<Instance>>>,
    lifecycle: Lifecycle,
    /// Instances taken out of the registry (hot plug) but still running
    /// until their work drained: shutdown waits for them too.
    detached: std::sync::Mutex<Vec<Arc<Instance>>>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor").field("instances", &self.read().len()).finish()
    }
}

impl Supervisor {
    pub fn new(lifecycle: Lifecycle) -> Self {
        Self { inner: Arc::new(Inner { instances: RwLock::default(), lifecycle, detached: Default::default() }) }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<(Kind, String), Arc<Instance>>> {
        self.inner.instances.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts supervising a new instance: its process starts at once and is
    /// kept up until `stop` is cancelled (a group token: the host's
    /// sources, executors or sinks) or [`Supervisor::stop`] names it.
    pub fn spawn(
        &self,
        spec: InstanceSpec,
        workload: Box<dyn Workload>,
        stop: &CancellationToken,
    ) -> Result<Arc<Instance>, ControlError> {
        let key = (spec.kind, spec.name.clone());
        let mut instances = self.inner.instances.write().unwrap_or_else(|e| e.into_inner());
        if instances.contains_key(&key) {
            return Err(ControlError::Exists { kind: spec.kind, name: spec.name });
        }
        let instance = Arc::new(Instance::new(spec, self.inner.lifecycle.clone(), stop.clone()));
        instance.launch(workload);
        instances.insert(key, Arc::clone(&instance));
        Ok(instance)
    }

    /// Where the instances report their transitions.
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.lifecycle
    }

    pub fn get(&self, kind: Kind, name: &str) -> Option<Arc<Instance>> {
        self.read().get(&(kind, name.to_owned())).cloned()
    }

    /// The instance called `name`, of `kind` when given (names are unique
    /// per kind; a source and a sink may share one).
    pub fn find(&self, name: &str, kind: Option<Kind>) -> Result<Arc<Instance>, ControlError> {
        let found: Vec<Arc<Instance>> = self
            .read()
            .iter()
            .filter(|((k, n), _)| n == name && kind.is_none_or(|want| want == *k))
            .map(|(_, i)| Arc::clone(i))
            .collect();
        match found.len() {
            0 => Err(ControlError::NotFound(name.to_owned())),
            1 => Ok(found.into_iter().next().unwrap_or_else(|| unreachable!())),
            _ => Err(ControlError::Ambiguous(
                name.to_owned(),
                found.iter().map(|i| i.kind().as_str()).collect::<Vec<_>>().join(", "),
            )),
        }
    }

    /// Every instance, sorted by kind and name.
    pub fn instances(&self) -> Vec<Arc<Instance>> {
        self.read().values().cloned().collect()
    }

    pub fn statuses(&self) -> Vec<InstanceStatus> {
        self.read().values().map(|i| i.status()).collect()
    }

    /// Closes the circuit of a deactivated instance: it starts again with
    /// a fresh restart policy.
    pub fn enable(&self, name: &str, kind: Option<Kind>) -> Result<Arc<Instance>, ControlError> {
        let instance = self.find(name, kind)?;
        instance.enable()?;
        Ok(instance)
    }

    /// Restarts a running (or restarting) instance at once; not counted as a failure.
    pub fn restart(&self, name: &str, kind: Option<Kind>, reason: &str) -> Result<Arc<Instance>, ControlError> {
        let instance = self.find(name, kind)?;
        instance.request_restart(reason)?;
        Ok(instance)
    }

    /// Stops one instance (its process is shut down through its
    /// controller); it stays listed as stopped and can be started again.
    pub async fn stop(&self, kind: Kind, name: &str) -> Result<(), ControlError> {
        let instance = self.get(kind, name).ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        instance.stop(true).await;
        Ok(())
    }

    /// Starts a stopped instance again, with the workload it had.
    pub fn start(&self, kind: Kind, name: &str) -> Result<(), ControlError> {
        let instance = self.get(kind, name).ok_or_else(|| ControlError::NotFound(name.to_owned()))?;
        instance.start_again()
    }

    /// Stops an instance and forgets it (its name can be spawned again).
    pub async fn remove(&self, kind: Kind, name: &str) -> Result<(), ControlError> {
        self.stop(kind, name).await?;
        self.inner.instances.write().unwrap_or_else(|e| e.into_inner()).remove(&(kind, name.to_owned()));
        Ok(())
    }

    /// Takes an instance out of the registry without stopping it, so a
    /// successor can be spawned under its name while it finishes its work
    /// (hot plug: an executor drains its commands). Stop it with
    /// [`Supervisor::stop_detached`]; until then shutdown waits for it too.
    pub fn detach(&self, kind: Kind, name: &str) -> Option<Arc<Instance>> {
        let instance =
            self.inner.instances.write().unwrap_or_else(|e| e.into_inner()).remove(&(kind, name.to_owned()))?;
        self.inner.detached.lock().unwrap_or_else(|e| e.into_inner()).push(Arc::clone(&instance));
        Some(instance)
    }

    /// Stops an instance taken out by [`Supervisor::detach`] (through its controller).
    pub async fn stop_detached(&self, instance: &Arc<Instance>) {
        instance.stop(true).await;
        self.inner.detached.lock().unwrap_or_else(|e| e.into_inner()).retain(|i| !Arc::ptr_eq(i, instance));
    }

    /// Waits until every instance of `kind` has stopped (after their group
    /// token was cancelled).
    pub async fn join(&self, kind: Kind) {
        let detached: Vec<Arc<Instance>> = self
            .inner
            .detached
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|i| i.kind() == kind)
            .cloned()
            .collect();
        let instances: Vec<Arc<Instance>> =
            self.read().values().filter(|i| i.kind() == kind).cloned().chain(detached).collect();
        let joins = instances.iter().map(|i| i.join());
        futures_util::future::join_all(joins).await;
    }
}

/// Logs with the instance's kind-specific field (`source=`, `executor=`,
/// `sink=`) beside `instance=` and `plugin=`.
macro_rules! instance_log {
    ($level:ident, $spec:expr, $($rest:tt)*) => {{
        let spec: &$crate::runtime::supervisor::InstanceSpec = $spec;
        match spec.kind {
            $crate::runtime::supervisor::Kind::Source => tracing::$level!(source = %spec.name, plugin = %spec.plugin, $($rest)*),
            $crate::runtime::supervisor::Kind::Executor => tracing::$level!(executor = %spec.name, plugin = %spec.plugin, $($rest)*),
            $crate::runtime::supervisor::Kind::Sink => tracing::$level!(sink = %spec.name, plugin = %spec.plugin, $($rest)*),
        }
    }};
}
pub(crate) use instance_log;
