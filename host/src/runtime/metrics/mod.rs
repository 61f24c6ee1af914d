//! `GET /metrics`: the host's counters in the Prometheus text format
//! (`prometheus-client`, one [`Registry`] per host, no global state).
//!
//! Nothing is counted twice: the pipeline's own atomic counters, the store's
//! per-instance counts, the sinks' stats, the queues' permits and the
//! supervisor's plugin states are read when Prometheus scrapes, by custom
//! collectors ([`pipeline`], [`plugins`]). Only commands are recorded as they
//! end ([`commands`]): once per command, off the event path.
//!
//! Metric names and labels are fixed by issue 5's contract (see README,
//! "Operating plugboard").

pub mod commands;
pub mod pipeline;
pub mod plugins;

use std::sync::Arc;

use prometheus_client::encoding::prometheus_text;
use prometheus_client::registry::Registry;

pub use commands::CommandMetrics;
pub use pipeline::PipelineCollector;
pub use plugins::{PluginCollector, PluginSample, PluginSamples};

/// The `Content-Type` of `GET /metrics`.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// Every metric of one host.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: Arc<CommandMetrics>,
}

impl Metrics {
    /// Metrics read from `pipeline` and `plugins` at scrape time, plus
    /// `commands`, which the command service records into.
    pub fn new(pipeline: PipelineCollector, plugins: PluginSamples, commands: Arc<CommandMetrics>) -> Self {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(pipeline));
        registry.register_collector(Box::new(PluginCollector::new(plugins)));
        commands.register(&mut registry);
        Self { registry, commands }
    }

    /// Where the command service records each command.
    pub fn commands(&self) -> Arc<CommandMetrics> {
        Arc::clone(&self.commands)
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail; a collector's error would be ours.
        if let Err(e) = prometheus_text::encode(&mut text, &self.registry) {
            tracing::error!("cannot encode the metrics: {e}");
        }
        text
    }
}
