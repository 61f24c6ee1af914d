//! The [`Instances`] seam over `run`'s host: the [`Supervisor`]'s
//! per-instance controls, the executor pool's table, the pipeline's
//! queue maker for sources that did not exist at start, and its running
//! sinks and routes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{InstanceKey, Instances, Kind};
use crate::runtime::config::Config;
use crate::runtime::executors::{ExecutorInstance, ExecutorPool};
use crate::runtime::pipeline::{QueueMaker, SOURCE_QUEUE, SinkSet};
use crate::runtime::plan::Plan;
use crate::runtime::routing::SinkRoutes;
use crate::runtime::sinks::{self, AutomationSlot, SinkSupervision};
use crate::runtime::sources::{self, ClientSlot, CursorCell, SourceWorkload};
use crate::runtime::supervisor::{self, Supervision, Supervisor};

/// `run`'s host as the reloader sees it.
pub struct HostInstances {
    pub supervisor: Supervisor,
    pub executors: Arc<ExecutorPool>,
    pub queues: QueueMaker,
    /// The stop tokens of the source and executor groups (shutdown order).
    pub source_group: CancellationToken,
    pub executor_group: CancellationToken,
    /// Per source instance: its HTTP forwarding slot (`/v1/sources/{name}`
    /// reads it once [`Instances::swap_settings`] published it) and where it
    /// left its cursor (a restarted instance resumes there).
    pub sources: Mutex<HashMap<String, (ClientSlot, CursorCell)>>,
    /// Source cursors in the store when it was opened.
    pub stored_cursors: HashMap<String, String>,
    /// The pipeline's running sinks and their routes.
    pub sinks: SinkSet,
    /// What sinks are built with: the automation runner, and where plugin
    /// sinks run (its supervision is replaced by the new plan's).
    pub automations: AutomationSlot,
    pub sink_supervision: SinkSupervision,
    /// What a reload swaps in place (policy, automations, tokens, source endpoints).
    pub settings: super::settings::LiveSettings,
    /// Executor instances replaced or removed, still running until drained.
    pub retired: Mutex<Vec<Arc<ExecutorInstance>>>,
    /// The HTTP listener (none when `http.enabled` is false).
    pub http: Option<Arc<crate::runtime::http::listener::Listener>>,
}

#[tonic::async_trait]
impl Instances for HostInstances {
    async fn start(&self, key: &InstanceKey, plan: &Arc<Plan>) -> Result<(), String> {
        match key.kind {
            Kind::Source => {
                let source = plan.sources.iter().find(|s| s.name == key.name).ok_or("not in the new plan")?;
                let queue = self
                    .queues
                    .queue(
                        Arc::from(source.name.as_str()),
                        SOURCE_QUEUE,
                        source.drop_types.clone(),
                        Some(Arc::from(source.plugin.info.name.as_str())),
                    )
                    .ok_or("the event pipeline has shut down")?;
                let (slot, cursor) = {
                    let known = self.sources.lock().unwrap_or_else(|e| e.into_inner());
                    match known.get(&key.name) {
                        Some((slot, cell)) => {
                            (Arc::clone(slot), cell.lock().unwrap_or_else(|e| e.into_inner()).clone())
                        }
                        None => (ClientSlot::default(), self.stored_cursors.get(&key.name).cloned()),
                    }
                };
                let cell = CursorCell::new(Mutex::new(cursor.clone()));
                let workload = SourceWorkload::new(source.clone(), cursor, queue, Arc::clone(&slot))
                    .with_cursor_cell(Arc::clone(&cell));
                self.supervisor
                    .spawn(sources::spec(source, &plan.start), Box::new(workload), &self.source_group)
                    .map_err(|e| e.to_string())?;
                self.sources.lock().unwrap_or_else(|e| e.into_inner()).insert(key.name.clone(), (slot, cell));
            }
            Kind::Executor => {
                let executor = plan.executor(&key.name).ok_or("not in the new plan")?;
                self.executors.add(executor.clone(), &self.supervisor, &self.executor_group);
            }
            Kind::Sink => {
                let sink = plan.sinks.iter().find(|s| *s.name == *key.name).ok_or("not in the new plan")?;
                if let SinkRoutes::Routes(routes) = plan.routing.for_sink(&sink.name)
                    && routes.is_empty()
                {
                    tracing::warn!(sink = %sink.name, "no route names this sink: it receives no events");
                }
                let supervision = SinkSupervision {
                    supervision: Supervision { restart: plan.restart.clone(), health: plan.health.clone() },
                    ..self.sink_supervision.clone()
                };
                let built = sinks::build(sink, &plan.start, &self.automations, &supervision);
                self.sinks.start(sink, built).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    async fn stop(&self, key: &InstanceKey) {
        match key.kind {
            Kind::Source => {
                if let Err(e) = self.supervisor.remove(supervisor::Kind::Source, &key.name).await {
                    tracing::debug!(source = %key.name, "nothing to stop: {e}");
                }
            }
            Kind::Executor => self.executors.remove(&key.name, &self.supervisor).await,
            Kind::Sink => {
                if !self.sinks.stop(&key.name).await {
                    tracing::debug!(sink = %key.name, "nothing to stop: not running");
                }
                // The dispatcher stopped its plugin (if any) as it closed;
                // forgetting it frees the name for a restarted sink.
                if self.supervisor.get(supervisor::Kind::Sink, &key.name).is_some()
                    && let Err(e) = self.supervisor.remove(supervisor::Kind::Sink, &key.name).await
                {
                    tracing::debug!(sink = %key.name, "nothing to stop: {e}");
                }
            }
        }
    }

    fn swap_commands(&self, plan: &Arc<Plan>) {
        self.executors.set_table(plan.table.clone());
    }

    fn swap_routes(&self, plan: &Arc<Plan>) {
        self.sinks.swap_routes(Arc::clone(&plan.routing));
    }

    async fn replace_executor(&self, key: &InstanceKey, plan: &Arc<Plan>) -> Result<(), String> {
        let executor = plan.executor(&key.name).ok_or("not in the new plan")?;
        if let Some(old) = self.executors.replace(executor.clone(), &self.supervisor, &self.executor_group) {
            self.retired.lock().unwrap_or_else(|e| e.into_inner()).push(old);
        }
        Ok(())
    }

    async fn retire_executor(&self, key: &InstanceKey) {
        if let Some(old) = self.executors.retire(&key.name, &self.supervisor) {
            self.retired.lock().unwrap_or_else(|e| e.into_inner()).push(old);
        }
    }

    fn drain_retired(&self, drain: std::time::Duration) {
        let retired = std::mem::take(&mut *self.retired.lock().unwrap_or_else(|e| e.into_inner()));
        for old in retired {
            let supervisor = self.supervisor.clone();
            tokio::spawn(async move { ExecutorPool::drain_retired(old, &supervisor, drain).await });
        }
    }

    fn swap_settings(&self, config: &Config) {
        self.settings.apply(config);
    }

    async fn rebind_http(&self, config: &Config) -> Result<(), String> {
        let Some(http) = &self.http else { return Ok(()) };
        // `http.enabled` itself waits for the next start (reported by the reloader).
        if !config.http.enabled {
            return Ok(());
        }
        http.rebind(&config.http).await.map(|_| ()).map_err(|e| e.to_string())
    }

    fn swap_source_endpoints(&self, config: &Config, plan: &Arc<Plan>) {
        let slots: HashMap<String, ClientSlot> = self
            .sources
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, (slot, _))| (name.clone(), Arc::clone(slot)))
            .collect();
        self.settings.sources.set(super::settings::endpoints(plan, config, &slots));
    }
}
