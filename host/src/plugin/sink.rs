//! Client side of `plugboard.v1.Sink`.

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{PublishRequest, sink_client};
use prost::Message;
use tonic::transport::Channel;

#[derive(Debug, Clone)]
pub struct SinkClient {
    inner: sink_client::SinkClient<Channel>,
    max_message_size: usize,
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
            max_message_size: max,
        }
    }

    /// Delivers a batch; any error means "not delivered, retry". A batch
    /// whose request would exceed the message size limit goes in smaller
    /// parts, in order; only an event too large on its own fails it.
    pub async fn publish(
        &mut self,
        instance: &str,
        config: &serde_json::Value,
        events: Vec<CloudEvent>,
    ) -> Result<(), tonic::Status> {
        let config = serde_json::to_vec(config).unwrap_or_default();
        // Last in, first out: the earlier half is always on top.
        let mut pending = vec![events];
        while let Some(events) = pending.pop() {
            let request = PublishRequest { instance: instance.to_owned(), config: config.clone(), events };
            let len = request.encoded_len();
            if len > self.max_message_size {
                let mut first = request.events;
                if first.len() > 1 {
                    let second = first.split_off(first.len() / 2);
                    pending.push(second);
                    pending.push(first);
                    continue;
                }
                let id = first.first().map(|e| e.id.as_str()).unwrap_or_default();
                return Err(tonic::Status::out_of_range(format!(
                    "event {id:?} is {len} bytes as a publish request, over max_message_size ({} bytes)",
                    self.max_message_size
                )));
            }
            self.inner.publish(request).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use plugboard_proto::plugboard::v1::sink_server::{Sink, SinkServer};
    use plugboard_proto::plugboard::v1::{PublishRequest, PublishResponse};

    use super::*;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<String>>>>);

    #[tonic::async_trait]
    impl Sink for Recorder {
        async fn publish(
            &self,
            request: tonic::Request<PublishRequest>,
        ) -> Result<tonic::Response<PublishResponse>, tonic::Status> {
            let ids = request.into_inner().events.into_iter().map(|e| e.id).collect();
            self.0.lock().unwrap().push(ids);
            Ok(tonic::Response::new(PublishResponse::default()))
        }
    }

    fn event(id: &str, bytes: usize) -> CloudEvent {
        use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
        CloudEvent {
            id: id.into(),
            source: "/t".into(),
            spec_version: "1.0".into(),
            r#type: "t".into(),
            data: Some(Data::BinaryData(vec![b'x'; bytes])),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn batches_over_the_limit_go_in_parts_and_only_an_oversized_event_fails() {
        let recorder = Recorder::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .add_service(SinkServer::new(recorder.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
        let server = tokio::spawn(server);
        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
        let mut client = SinkClient::with_max_message_size(channel, 10_000);
        let config = serde_json::json!({});

        let batch: Vec<_> = (0..8).map(|i| event(&i.to_string(), 3_000)).collect();
        client.publish("s", &config, batch).await.unwrap();
        let calls = recorder.0.lock().unwrap().clone();
        assert!(calls.len() > 1 && calls.iter().all(|c| c.len() <= 3), "{calls:?}");
        let order: Vec<String> = calls.concat();
        assert_eq!(order, ["0", "1", "2", "3", "4", "5", "6", "7"]);

        let err = client.publish("s", &config, vec![event("big", 20_000)]).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::OutOfRange);
        assert!(err.message().contains("event \"big\" is 200"), "{}", err.message());
        assert!(err.message().contains("over max_message_size (10000 bytes)"), "{}", err.message());
        server.abort();
    }
}
