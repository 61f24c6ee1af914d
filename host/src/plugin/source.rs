//! Client side of `plugboard.v1.Source`.

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{ExternalRequest, ExternalResponse, StreamRequest, source_client};
use tonic::transport::Channel;

/// One event as a source sent it.
#[derive(Debug, Clone)]
pub struct SourceEvent {
    pub event: CloudEvent,
    pub cursor: String,
}

#[derive(Debug, Clone)]
pub struct SourceClient {
    inner: source_client::SourceClient<Channel>,
}

impl SourceClient {
    pub fn new(channel: Channel) -> Self {
        Self::with_max_message_size(channel, super::MAX_MESSAGE_SIZE)
    }

    /// A client refusing messages over `max` bytes either way: an oversized
    /// message fails its own call or stream, nothing else.
    pub fn with_max_message_size(channel: Channel, max: usize) -> Self {
        Self {
            inner: source_client::SourceClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        }
    }

    /// Opens the event stream of one instance.
    pub async fn stream(
        &mut self,
        instance: &str,
        config: &serde_json::Value,
        resume_cursor: Option<&str>,
    ) -> Result<tonic::Streaming<plugboard_proto::plugboard::v1::StreamResponse>, tonic::Status> {
        let request = StreamRequest {
            instance: instance.to_owned(),
            config: serde_json::to_vec(config).unwrap_or_default(),
            resume_cursor: resume_cursor.unwrap_or_default().to_owned(),
        };
        Ok(self.inner.stream(request).await?.into_inner())
    }

    pub async fn handle_external_request(
        &mut self,
        request: ExternalRequest,
    ) -> Result<ExternalResponse, tonic::Status> {
        Ok(self.inner.handle_external_request(request).await?.into_inner())
    }
}
