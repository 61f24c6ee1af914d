//! Client side of `plugboard.v1.Sink`.

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{PublishRequest, sink_client};
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct SinkClient {
    inner: sink_client::SinkClient<Channel>,
}

impl SinkClient {
    pub fn new(channel: Channel) -> Self {
        Self::with_max_message_size(channel, super::MAX_MESSAGE_SIZE)
    }

    /// A client refusing messages over `max` bytes either way: an oversized
    /// message fails its own call or stream, nothing else.
    pub fn with_max_message_size(channel: Channel, max: usize) -> Self {
        Self {
            inner: sink_client::SinkClient::new(channel).max_decoding_message_size(max).max_encoding_message_size(max),
        }
    }

    /// Delivers a batch; any error means "not delivered, retry".
    pub async fn publish(
        &mut self,
        instance: &str,
        config: &serde_json::Value,
        events: Vec<CloudEvent>,
    ) -> Result<(), tonic::Status> {
        let request = PublishRequest {
            instance: instance.to_owned(),
            config: serde_json::to_vec(config).unwrap_or_default(),
            events,
        };
        self.inner.publish(request).await.map(|_| ())
    }
}
