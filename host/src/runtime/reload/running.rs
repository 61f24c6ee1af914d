//! The [`Instances`] seam over `run`'s host: source tasks with their own
//! stop tokens, the executor pool, and the pipeline's queue maker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{InstanceKey, Instances, Kind};
use crate::runtime::executors::ExecutorPool;
use crate::runtime::pipeline::{QueueMaker, SOURCE_QUEUE, SourceQueue};
use crate::runtime::plan::{Plan, SourcePlan};
use crate::runtime::sources::{ClientSlot, SourceSupervisor};

/// One running source task: stopped alone by its token, returns its last cursor.
type SourceTask = (CancellationToken, JoinHandle<Option<String>>);

/// The host's source instances, each stoppable on its own.
#[derive(Default)]
pub struct SourceTasks {
    tasks: Mutex<BTreeMap<String, SourceTask>>,
}

impl SourceTasks {
    /// Supervises `plan` until `shutdown` or [`SourceTasks::stop`].
    pub fn spawn(
        &self,
        plan: SourcePlan,
        host: &Plan,
        cursor: Option<String>,
        queue: SourceQueue,
        slot: ClientSlot,
        shutdown: &CancellationToken,
    ) {
        let stop = shutdown.child_token();
        let name = plan.name.clone();
        let supervisor =
            SourceSupervisor::new(plan, host.start.clone(), host.restart.clone(), cursor).with_client_slot(slot);
        let task = tokio::spawn(supervisor.run(queue, stop.clone()));
        self.lock().insert(name, (stop, task));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceTask>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops one source (its plugin shut down through its controller);
    /// returns where its stream was.
    pub async fn stop(&self, name: &str) -> Option<String> {
        let (stop, task) = self.lock().remove(name)?;
        stop.cancel();
        task.await.ok().flatten()
    }

    /// Waits for every source to stop (after `shutdown`).
    pub async fn join(&self) {
        let tasks = std::mem::take(&mut *self.lock());
        for (_, (_, task)) in tasks {
            let _ = task.await;
        }
    }
}

/// `run`'s host as the reloader sees it.
pub struct HostInstances {
    pub executors: Arc<ExecutorPool>,
    pub sources: Arc<SourceTasks>,
    pub queues: QueueMaker,
    /// Where each source's stream was: from the store at start, then from
    /// each stopped instance (a restarted one resumes there).
    pub cursors: Mutex<HashMap<String, String>>,
    /// The HTTP forwarding slot of each source configured at start (new
    /// sources get a slot nothing reads: `/v1/sources/{name}` is fixed at start).
    pub slots: HashMap<String, ClientSlot>,
    pub shutdown: CancellationToken,
}

#[tonic::async_trait]
impl Instances for HostInstances {
    async fn start(&self, key: &InstanceKey, plan: &Arc<Plan>) -> Result<(), String> {
        match key.kind {
            Kind::Source => {
                let source = plan.sources.iter().find(|s| s.name == key.name).ok_or("not in the new plan")?;
                let queue = self
                    .queues
                    .queue(Arc::from(source.name.as_str()), SOURCE_QUEUE, source.drop_types.clone())
                    .ok_or("the event pipeline has shut down")?;
                let cursor = self.cursors.lock().unwrap_or_else(|e| e.into_inner()).get(&key.name).cloned();
                let slot = self.slots.get(&key.name).cloned().unwrap_or_default();
                self.sources.spawn(source.clone(), plan, cursor, queue, slot, &self.shutdown);
            }
            Kind::Executor => {
                let executor = plan.executor(&key.name).ok_or("not in the new plan")?;
                self.executors.add(executor.clone(), &plan.restart, &self.shutdown);
            }
        }
        Ok(())
    }

    async fn stop(&self, key: &InstanceKey) {
        match key.kind {
            Kind::Source => {
                if let Some(cursor) = self.sources.stop(&key.name).await {
                    self.cursors.lock().unwrap_or_else(|e| e.into_inner()).insert(key.name.clone(), cursor);
                }
            }
            Kind::Executor => self.executors.remove(&key.name).await,
        }
    }

    fn swap_commands(&self, plan: &Arc<Plan>) {
        self.executors.set_table(plan.table.clone());
    }
}
