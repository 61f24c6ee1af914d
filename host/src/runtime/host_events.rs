//! Events the host itself produces — command audit records, plugin lifecycle
//! transitions — enter the same pipeline as source events, so operators can
//! route them to any sink.

use plugboard_proto::CloudEvent;

use super::pipeline::SourceQueue;

/// The pseudo source instance under which host events are stored.
pub const HOST_INSTANCE: &str = "plugboard";
/// The CloudEvents `source` of host events.
pub const HOST_SOURCE: &str = "/plugboard/host";

/// Hands host events to the pipeline. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HostEvents {
    queue: SourceQueue,
}

impl HostEvents {
    /// Host events enter through `queue` (the pipeline's queue for [`HOST_INSTANCE`]).
    pub fn new(queue: SourceQueue) -> Self {
        Self { queue }
    }

    /// Queues an event, waiting while the pipeline is full. Returns false
    /// once the pipeline has shut down.
    pub async fn emit(&self, event: CloudEvent) -> bool {
        self.queue.send(event, String::new()).await.is_ok()
    }

    /// A builder for a host event of `ty` with the host's source, a fresh id
    /// and the current time.
    pub fn event(ty: &str) -> CloudEvent {
        let mut attributes = std::collections::BTreeMap::new();
        attributes.insert("time".to_owned(), plugboard_proto::event::timestamp_attr(chrono_now()));
        CloudEvent {
            id: uuid_v7(),
            source: HOST_SOURCE.to_owned(),
            spec_version: plugboard_proto::event::SPEC_VERSION.to_owned(),
            r#type: ty.to_owned(),
            attributes,
            data: None,
        }
    }
}

fn chrono_now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

fn uuid_v7() -> String {
    uuid::Uuid::now_v7().to_string()
}
