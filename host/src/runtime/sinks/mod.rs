//! Sinks: where routed events go. Each sink kind is one module; each
//! configured sink is driven by its own [`Dispatcher`] with its own delivery
//! cursor over the store, so a slow or failing sink delays nobody else.

mod automation;
pub mod config;
mod database;
pub mod dispatcher;
mod file;
mod http;
mod plugin;
mod stdout;

use std::sync::Arc;

pub use automation::{AUTOMATION_SINK_PREFIX, AutomationSlot};
pub use config::{RetryConfig, SinkConfig, SinkKind, SinkPlan};
pub use dispatcher::{Dispatcher, SinkStats};
pub use plugin::SinkSupervision;

use super::store::StoredEvent;
use crate::plugin::StartOptions;

/// Why a delivery did not (fully) happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryError {
    /// How many of the batch's leading events did get delivered.
    pub delivered: usize,
    pub message: String,
    /// Retrying cannot help (the receiver rejects the event itself): dead-letter it now.
    pub permanent: bool,
}

impl DeliveryError {
    pub fn retry(message: impl Into<String>) -> Self {
        Self { delivered: 0, message: message.into(), permanent: false }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { delivered: 0, message: message.into(), permanent: true }
    }
}

/// A destination for events. At-least-once: a batch may be delivered again
/// after a failure or a host restart.
#[tonic::async_trait]
pub trait Sink: Send {
    /// Delivers `events` (in store order); `Ok` means every one was taken.
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError>;

    /// Called once before the first delivery (plugin sinks start their process).
    async fn start(&mut self) {}

    /// Releases what the sink holds (connections, plugin processes).
    async fn close(&mut self) {}
}

/// Takes everything, keeps nothing.
struct Discard;

#[tonic::async_trait]
impl Sink for Discard {
    async fn deliver(&mut self, _events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// The sink for `plan`.
pub fn build(
    plan: &SinkPlan,
    start: &StartOptions,
    automations: &AutomationSlot,
    supervision: &SinkSupervision,
) -> Box<dyn Sink> {
    match &plan.kind {
        SinkKind::Automation { name } => {
            Box::new(automation::AutomationSink { name: name.clone(), slot: automations.clone() })
        }
        SinkKind::Stdout => Box::new(stdout::StdoutSink::new()),
        SinkKind::Discard => Box::new(Discard),
        SinkKind::File(c) => Box::new(file::FileSink::new(c.clone())),
        SinkKind::Http(c) => Box::new(http::HttpSink::new(c.clone())),
        SinkKind::Database(c) => Box::new(database::DatabaseSink::new(c.clone())),
        SinkKind::Plugin { plugin, path, config, restart, health } => Box::new(plugin::PluginSink::new(
            Arc::clone(&plan.name),
            path.clone(),
            Arc::clone(plugin),
            config.clone(),
            start.clone(),
            supervision.with_overrides(restart.as_ref(), health.as_ref()),
        )),
    }
}

/// Events as CloudEvents JSON lines into `out` (the stdout and file sinks).
fn json_lines(events: &[Arc<StoredEvent>], out: &mut Vec<u8>) {
    for stored in events {
        // Writing our own map of strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &plugboard_proto::event::Json(&stored.event));
        out.push(b'\n');
    }
}
