//! Automations as sinks: routed events are offered to an automation through
//! the store, with a delivery cursor like any sink, so a trigger that was
//! stored is acted on even after a host restart (at least once).

use std::sync::{Arc, OnceLock};

use super::{DeliveryError, Sink};
use crate::runtime::commands::automation::AutomationRunner;
use crate::runtime::store::StoredEvent;

/// Prefix of the sink names automations get (no configured sink can use it:
/// ':' is not allowed in sink names).
pub const AUTOMATION_SINK_PREFIX: &str = "automation:";

/// The automation runner, bound once the command service exists (it needs
/// the host's event queue, which the pipeline creates after its sinks).
#[derive(Clone, Default)]
pub struct AutomationSlot(Arc<OnceLock<Arc<AutomationRunner>>>);

impl AutomationSlot {
    pub fn bind(&self, runner: Arc<AutomationRunner>) {
        let _ = self.0.set(runner);
    }
}

pub(super) struct AutomationSink {
    pub name: String,
    pub slot: AutomationSlot,
}

#[tonic::async_trait]
impl Sink for AutomationSink {
    async fn deliver(&mut self, events: &[Arc<StoredEvent>]) -> Result<(), DeliveryError> {
        let Some(runner) = self.slot.0.get() else {
            return Err(DeliveryError::retry("automations are not running yet"));
        };
        for stored in events {
            // Starts the command (if `when` and throttling admit it); never waits for it.
            runner.offer(&self.name, &stored.event);
        }
        Ok(())
    }
}
