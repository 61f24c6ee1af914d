//! Plugin sinks: any plugin of kind SINK, through `Sink.Publish`. The
//! process runs under the supervisor like every plugin (restart policy,
//! health checks, lifecycle events); a delivery uses the running process,
//! and one that finds it down fails at once and is retried by the
//! dispatcher. A plugin that stops answering Publish is reported to the
//! supervisor, which restarts it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{DeliveryError, Sink};
use crate::plugin::{Described, StartOptions};
use crate::runtime::config::{HealthOverride, RestartOverride};
use crate::runtime::store::StoredEvent;
use crate::runtime::supervisor::{Instance, InstanceSpec, Kind, Serve, Supervision, Supervisor};

/// How long one `Publish` may take.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a health check may take when telling a refusal from a crash.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Where plugin sinks run their processes.
#[derive(Clone, Default)]
pub struct SinkSupervision {
    pub supervisor: Supervisor,
    /// Cancelled after the pipeline has drained.
    pub group: CancellationToken,
    pub supervision: Supervision,
}

impl SinkSupervision {
    /// These settings with one sink's own `restart:` and `health:` over the top-level ones.
    pub fn with_overrides(&self, restart: Option<&RestartOverride>, health: Option<&HealthOverride>) -> Self {
        let top = &self.supervision;
        let supervision = Supervision {
            restart: restart.map_or_else(|| top.restart.clone(), |r| r.apply(&top.restart)),
            health: health.map_or_else(|| top.health.clone(), |h| h.apply(&top.health)),
        };
        Self { supervision, ..self.clone() }
    }
}

pub struct PluginSink {
    name: Arc<str>,
    config: serde_json::Value,
    spec: InstanceSpec,
    supervision: SinkSupervision,
    instance: Option<Arc<Instance>>,
}

impl PluginSink {
    pub fn new(
        name: Arc<str>,
        path: PathBuf,
        plugin: Arc<Described>,
        config: serde_json::Value,
        start: StartOptions,
        supervision: SinkSupervision,
    ) -> Self {
        let spec = InstanceSpec {
            kind: Kind::Sink,
            name: name.to_string(),
            plugin: plugin.info.name.clone(),
            path,
            start,
            supervision: supervision.supervision.clone(),
        };
        Self { name, config, spec, supervision, instance: None }
    }

    fn instance(&mut self) -> Result<Arc<Instance>, DeliveryError> {
        if self.instance.is_none() {
            let spawned =
                self.supervision.supervisor.spawn(self.spec.clone(), Box::new(Serve), &self.supervision.group);
            self.instance = Some(spawned.map_err(|e| DeliveryError::retry(e.to_string()))?);
        }
        self.instance.clone().ok_or_else(|| DeliveryError::retry("sink plugin not running"))
    }
}

#[tonic::async_trait]
impl Sink for PluginSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        let instance = self.instance()?;
        let handle = instance
            .ready(self.spec.start.start_timeout)
            .await
            .map_err(|reason| DeliveryError::retry(format!("sink plugin is not available: {reason}")))?;
        let batch = events.iter().map(|e| e.event.clone()).collect();
        let mut client = handle.sink();
        let process = handle.process();
        let failure = tokio::select! {
            result = tokio::time::timeout(PUBLISH_TIMEOUT, client.publish(&self.name, &self.config, batch)) => match result {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(status)) => {
                    // A plugin that still answers its health check refused
                    // the batch: retry without restarting it.
                    if process.exit_reason().is_none() && process.ping(PING_TIMEOUT).await.is_ok() {
                        return Err(DeliveryError::retry(format!("sink plugin refused the batch: {}", status.message())));
                    }
                    match process.exit_reason() {
                        // The supervisor sees the exit itself.
                        Some(reason) => return Err(DeliveryError::retry(format!("sink plugin process {} exited ({reason})", process.pid()))),
                        None => format!("sink plugin does not answer: {}", status.message()),
                    }
                }
                Err(_) => format!("sink plugin did not answer within {PUBLISH_TIMEOUT:?}"),
            },
            reason = process.wait() => return Err(DeliveryError::retry(format!("sink plugin process {} exited ({reason})", process.pid()))),
        };
        instance.report_failure(failure.clone());
        Err(DeliveryError::retry(failure))
    }

    async fn start(&mut self) {
        if let Err(e) = self.instance() {
            tracing::warn!(sink = %self.name, plugin = %self.spec.plugin, "{}", e.message);
        }
    }

    async fn close(&mut self) {
        if self.instance.take().is_some() {
            // Stops only this sink's process, through its controller.
            let _ = self.supervision.supervisor.stop(Kind::Sink, &self.name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::config::{HealthConfig, RestartConfig};

    #[test]
    fn a_sinks_own_settings_replace_the_top_level_ones_field_by_field() {
        let top = SinkSupervision {
            supervision: Supervision {
                restart: RestartConfig { max_restarts: 100, ..Default::default() },
                health: HealthConfig { interval: Duration::from_secs(3), ..Default::default() },
            },
            ..Default::default()
        };
        let restart = RestartOverride { max_restarts: Some(1), ..Default::default() };
        let own = top.with_overrides(Some(&restart), None).supervision;
        assert_eq!(own.restart, RestartConfig { max_restarts: 1, ..top.supervision.restart.clone() });
        assert_eq!(own.health, top.supervision.health);
        let health = HealthOverride { failures: Some(7), ..Default::default() };
        let own = top.with_overrides(None, Some(&health)).supervision;
        assert_eq!(own.restart, top.supervision.restart);
        assert_eq!(own.health, HealthConfig { failures: 7, ..top.supervision.health.clone() });
    }
}
