//! Source instances: the [`Workload`] the supervisor runs on a source's
//! plugin process. It opens the stream with the last cursor and forwards
//! events into the source's pipeline queue; the supervisor restarts the
//! process (with backoff, resuming from the cursor) when it crashes, hangs
//! or its stream fails.
//!
//! A stream that ends cleanly while the process lives is reopened from the
//! last cursor after the restart backoff, as long as each stream made
//! progress (moved the cursor). A stream that ends without progress means the
//! source has nothing more to send: it is finished (`range` with a `limit`
//! finishes after one empty reopen), so a finite source never spins.

use std::sync::{Arc, RwLock};
use std::time::Instant;

use super::backoff::Backoff;
use super::pipeline::SourceQueue;
use super::plan::SourcePlan;
use super::supervisor::{InstanceSpec, Kind, WorkEnd, Workload};
use crate::plugin::{PluginHandle, SourceClient, StartOptions};

/// Where a source publishes the client of its running plugin, so HTTP
/// requests for the instance can be forwarded (`None` while it restarts).
pub type ClientSlot = Arc<RwLock<Option<SourceClient>>>;

/// What the supervisor needs to run `plan`'s process.
pub fn spec(plan: &SourcePlan, start: &StartOptions) -> InstanceSpec {
    InstanceSpec {
        kind: Kind::Source,
        name: plan.name.clone(),
        plugin: plan.plugin.info.name.clone(),
        path: plan.path.clone(),
        start: start.clone(),
        supervision: plan.supervision.clone(),
    }
}

/// Streams one source's events into its queue.
pub struct SourceWorkload {
    plan: SourcePlan,
    cursor: Option<String>,
    out: SourceQueue,
    slot: ClientSlot,
    /// Delay between reopening streams that ended cleanly.
    reopen: Backoff,
}

impl SourceWorkload {
    pub fn new(plan: SourcePlan, cursor: Option<String>, out: SourceQueue, slot: ClientSlot) -> Self {
        let reopen = Backoff::new(plan.supervision.restart.clone());
        Self { plan, cursor, out, slot, reopen }
    }

    fn publish_client(&self, client: Option<SourceClient>) {
        *self.slot.write().unwrap_or_else(|e| e.into_inner()) = client;
    }

    /// Reads one stream to its end; `Err` when it failed.
    async fn stream_once(&mut self, client: &mut SourceClient) -> Result<(), String> {
        let mut stream = client
            .stream(&self.plan.name, &self.plan.config, self.cursor.as_deref())
            .await
            .map_err(|status| format!("cannot open the event stream: {}", status.message()))?;
        loop {
            match stream.message().await {
                Ok(Some(resp)) => {
                    let Some(event) = resp.event else {
                        tracing::warn!(source = %self.plan.name, "rejected a stream message without an event");
                        continue;
                    };
                    // Validation, drop_types and dedupe happen in the pipeline.
                    // Back-pressure: while this source's queue is full its
                    // stream is not read. The cursor moves only once the event
                    // is queued, so a run cut short resumes before it.
                    if self.out.send(event, resp.cursor.clone()).await.is_err() {
                        // The pipeline has stopped: the host is shutting down
                        // and stops this instance next.
                        return std::future::pending().await;
                    }
                    if !resp.cursor.is_empty() {
                        self.cursor = Some(resp.cursor);
                    }
                }
                Ok(None) => return Ok(()),
                Err(status) => return Err(format!("event stream failed: {}", status.message())),
            }
        }
    }
}

#[tonic::async_trait]
impl Workload for SourceWorkload {
    async fn run(&mut self, plugin: &PluginHandle) -> WorkEnd {
        let mut client = plugin.source();
        self.publish_client(Some(client.clone()));
        loop {
            let opened = Instant::now();
            let before = self.cursor.clone();
            if let Err(reason) = self.stream_once(&mut client).await {
                return WorkEnd::Failed(reason);
            }
            if self.cursor == before {
                return WorkEnd::Finished;
            }
            let delay = self.reopen.next_delay(opened.elapsed());
            tracing::info!(
                source = %self.plan.name,
                plugin = %self.plan.plugin.info.name,
                "the event stream ended while the plugin runs; reopening it in {delay:?} from cursor {:?}",
                self.cursor.as_deref().unwrap_or("")
            );
            tokio::time::sleep(delay).await;
        }
    }

    fn detached(&mut self) {
        self.publish_client(None);
    }
}
