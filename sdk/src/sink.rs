//! The [`Sink`] trait and its gRPC adapter.

use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{self as pb, sink_server};
use serde::de::DeserializeOwned;

use crate::PluginError;
use crate::source::parse_config;

/// The sink instance a batch is for.
#[derive(Debug, Clone)]
pub struct SinkContext {
    pub instance: String,
    pub config: serde_json::Value,
}

impl SinkContext {
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        Ok(T::deserialize(&self.config)?)
    }
}

/// A sink receives routed events. Returning an error means "not delivered":
/// the host retries the batch later (at-least-once), so be idempotent on
/// (source, id).
#[crate::async_trait]
pub trait Sink: Send + Sync + 'static {
    async fn publish(&self, ctx: SinkContext, events: Vec<CloudEvent>) -> Result<(), PluginError>;
}

pub(crate) struct SinkService {
    pub(crate) sink: Arc<dyn Sink>,
}

#[crate::async_trait]
impl sink_server::Sink for SinkService {
    async fn publish(
        &self,
        request: tonic::Request<pb::PublishRequest>,
    ) -> Result<tonic::Response<pb::PublishResponse>, tonic::Status> {
        let req = request.into_inner();
        let ctx = SinkContext { instance: req.instance, config: parse_config(&req.config)? };
        self.sink.publish(ctx, req.events).await?;
        Ok(tonic::Response::new(pb::PublishResponse {}))
    }
}
