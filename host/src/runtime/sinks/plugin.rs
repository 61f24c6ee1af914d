//! Plugin sinks: any plugin of kind SINK, through `Sink.Publish`. The process
//! is started with the host; when it crashes or stops answering, the failed
//! delivery drops it and the next attempt (after the sink's retry backoff)
//! starts a fresh one, so a sink plugin is restarted with backoff like every
//! other plugin.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{DeliveryError, Sink};
use crate::plugin::{self, Described, PluginHandle, StartOptions};
use crate::runtime::store::StoredEvent;

/// How long one `Publish` may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a health check may take when telling a refusal from a crash.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub struct PluginSink {
    name: Arc<str>,
    path: PathBuf,
    plugin: Arc<Described>,
    config: serde_json::Value,
    start: StartOptions,
    handle: Option<PluginHandle>,
}

impl PluginSink {
    pub fn new(
        name: Arc<str>,
        path: PathBuf,
        plugin: Arc<Described>,
        config: serde_json::Value,
        start: StartOptions,
    ) -> Self {
        Self { name, path, plugin, config, start, handle: None }
    }

    async fn handle(&mut self) -> Result<&PluginHandle, DeliveryError> {
        if self.handle.is_none() {
            let handle = plugin::launch(&self.name, &self.path, &self.start).await.map_err(|e| {
                DeliveryError::retry(format!("cannot start sink plugin {:?}: {e}", self.plugin.info.name))
            })?;
            tracing::info!(sink = %self.name, plugin = %handle.info().name, pid = handle.process().pid(), "sink started");
            self.handle = Some(handle);
        }
        self.handle.as_ref().ok_or_else(|| DeliveryError::retry("sink plugin not running"))
    }
}

#[tonic::async_trait]
impl Sink for PluginSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        let name = Arc::clone(&self.name);
        let config = self.config.clone();
        let handle = self.handle().await?.clone();
        let batch = events.iter().map(|e| e.event.clone()).collect();
        let mut client = handle.sink();
        let process = handle.process();
        let failure = tokio::select! {
            result = tokio::time::timeout(PUBLISH_TIMEOUT, client.publish(&name, &config, batch)) => match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) => {
                    // A plugin that still answers its health check refused
                    // the batch: retry without restarting it.
                    if process.exit_reason().is_none() && process.ping(PING_TIMEOUT).await.is_ok() {
                        return Err(DeliveryError::retry(format!("sink plugin refused the batch: {}", status.message())));
                    }
                    match process.exit_reason() {
                        Some(reason) => format!("sink plugin process {} exited ({reason})", process.pid()),
                        None => format!("sink plugin does not answer: {}", status.message()),
                    }
                }
                Err(_) => format!("sink plugin did not answer within {PUBLISH_TIMEOUT:?}"),
            },
            reason = process.wait() => format!("sink plugin process {} exited ({reason})", process.pid()),
        };
        tracing::warn!(sink = %self.name, "{failure}; restarting it for the next attempt");
        handle.shutdown().await;
        self.handle = None;
        Err(DeliveryError::retry(failure))
    }

    async fn start(&mut self) {
        if let Err(e) = self.handle().await {
            tracing::warn!(sink = %self.name, "{}; retrying with the first delivery", e.message);
        }
    }

    async fn close(&mut self) {
        if let Some(handle) = self.handle.take() {
            let reason = handle.shutdown().await;
            tracing::debug!(sink = %self.name, "sink plugin stopped ({reason})");
        }
    }
}
