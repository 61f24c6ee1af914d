//! Supervised source instances: start the plugin, open its stream with the
//! last cursor, forward its events; when the plugin crashes or the stream
//! fails, restart it with backoff and resume from the last cursor. The host
//! and the other instances carry on untouched.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::config::RestartConfig;
use super::pipeline::SourceQueue;
use super::plan::SourcePlan;
use crate::plugin::{self, SourceClient, StartOptions};

/// Where a supervisor publishes the client of its running plugin, so HTTP
/// requests for the instance can be forwarded (`None` while it restarts).
pub type ClientSlot = Arc<RwLock<Option<SourceClient>>>;

/// How one run of the plugin ended.
enum RunEnd {
    /// The source ended its stream cleanly: nothing more to read.
    Finished,
    /// The host is shutting down.
    Shutdown,
    /// Crashed, exited, or the stream failed: restart.
    Failed(String),
}

pub struct SourceSupervisor {
    plan: SourcePlan,
    start: StartOptions,
    backoff: Backoff,
    name: Arc<str>,
    cursor: Option<String>,
    slot: Option<ClientSlot>,
}

impl SourceSupervisor {
    pub fn new(plan: SourcePlan, start: StartOptions, restart: RestartConfig, cursor: Option<String>) -> Self {
        let name = Arc::from(plan.name.as_str());
        Self { plan, start, backoff: Backoff::new(restart), name, cursor, slot: None }
    }

    /// Publishes the running plugin's client in `slot`.
    pub fn with_client_slot(mut self, slot: ClientSlot) -> Self {
        self.slot = Some(slot);
        self
    }

    fn publish_client(&self, client: Option<SourceClient>) {
        if let Some(slot) = &self.slot {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = client;
        }
    }

    /// Runs until the source finishes or `shutdown` is cancelled; returns
    /// the last cursor (a restarted instance resumes from it).
    pub async fn run(mut self, out: SourceQueue, shutdown: CancellationToken) -> Option<String> {
        loop {
            let started = Instant::now();
            match self.run_once(&out, &shutdown).await {
                RunEnd::Finished => {
                    tracing::info!(source = %self.name, "source finished its stream");
                    return self.cursor;
                }
                RunEnd::Shutdown => return self.cursor,
                RunEnd::Failed(reason) => {
                    let delay = self.backoff.next_delay(started.elapsed());
                    tracing::warn!(
                        source = %self.name,
                        restarts = self.backoff.failures(),
                        "source failed: {reason}; restarting in {delay:?} from cursor {:?}",
                        self.cursor.as_deref().unwrap_or("")
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.cancelled() => return self.cursor,
                    }
                }
            }
        }
    }

    async fn run_once(&mut self, out: &SourceQueue, shutdown: &CancellationToken) -> RunEnd {
        let handle = tokio::select! {
            h = plugin::launch(&self.plan.name, &self.plan.path, &self.start) => match h {
                Ok(h) => h,
                Err(e) => return RunEnd::Failed(format!("cannot start plugin {:?}: {e}", self.plan.plugin.info.name)),
            },
            _ = shutdown.cancelled() => return RunEnd::Shutdown,
        };
        let process = handle.process();
        tracing::info!(source = %self.name, plugin = %handle.info().name, pid = process.pid(), "source started");
        let mut client = handle.source();
        self.publish_client(Some(client.clone()));
        let end = 'run: {
            let mut stream = match client.stream(&self.plan.name, &self.plan.config, self.cursor.as_deref()).await {
                Ok(s) => s,
                Err(status) => {
                    break 'run RunEnd::Failed(format!("cannot open the event stream: {}", status.message()));
                }
            };
            loop {
                tokio::select! {
                    msg = stream.message() => match msg {
                        Ok(Some(resp)) => {
                            let Some(event) = resp.event else {
                                tracing::warn!(source = %self.name, "rejected a stream message without an event");
                                continue;
                            };
                            // Validation, drop_types and dedupe happen in the pipeline.
                            let cursor = resp.cursor;
                            // Back-pressure: while this source's queue is full its stream is not read.
                            tokio::select! {
                                sent = out.send(event, cursor.clone()) => if sent.is_err() { break 'run RunEnd::Shutdown },
                                _ = shutdown.cancelled() => break 'run RunEnd::Shutdown,
                            }
                            if !cursor.is_empty() {
                                self.cursor = Some(cursor);
                            }
                        }
                        Ok(None) => break 'run RunEnd::Finished,
                        Err(status) => {
                            // A dead process shows up here first; prefer its exit status.
                            let exited = tokio::time::timeout(Duration::from_millis(500), process.wait()).await;
                            break 'run match exited {
                                Ok(reason) => RunEnd::Failed(format!("plugin process {} exited ({reason})", process.pid())),
                                Err(_) => RunEnd::Failed(format!("event stream failed: {}", status.message())),
                            };
                        }
                    },
                    reason = process.wait() => {
                        break 'run RunEnd::Failed(format!("plugin process {} exited ({reason})", process.pid()));
                    }
                    _ = shutdown.cancelled() => break 'run RunEnd::Shutdown,
                }
            }
        };
        self.publish_client(None);
        match &end {
            RunEnd::Failed(_) => {
                // Make sure nothing of the failed run is left behind.
                handle.shutdown().await;
            }
            RunEnd::Finished | RunEnd::Shutdown => {
                let reason = handle.shutdown().await;
                tracing::debug!(source = %self.name, "plugin stopped ({reason})");
            }
        }
        end
    }
}
