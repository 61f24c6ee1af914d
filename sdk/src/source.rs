//! The [`Source`] trait and its gRPC adapter.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{self as pb, source_server};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::PluginError;

/// What a source instance is asked to do.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The configured instance name.
    pub instance: String,
    /// The instance config (JSON), already validated by the host against the
    /// plugin's config schema.
    pub config: serde_json::Value,
    /// The cursor of the last event the host stored for this instance. A
    /// source that can resume continues right after it.
    pub resume_cursor: Option<String>,
}

impl SourceContext {
    /// The config as the plugin's own type.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        Ok(T::deserialize(&self.config)?)
    }
}

/// Hands events to the host, in order. `send` waits when the host is slow
/// (back-pressure) and fails once the host has gone away.
#[derive(Debug, Clone)]
pub struct EventSender {
    tx: mpsc::Sender<Result<pb::StreamResponse, tonic::Status>>,
}

/// The host stopped reading this stream; the source should return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the host closed the event stream")]
pub struct StreamClosed;

impl From<StreamClosed> for PluginError {
    fn from(e: StreamClosed) -> Self {
        PluginError::unavailable(e)
    }
}

impl EventSender {
    pub(crate) fn new(tx: mpsc::Sender<Result<pb::StreamResponse, tonic::Status>>) -> Self {
        Self { tx }
    }

    /// Sends one event with the cursor that marks its position (may be empty
    /// for sources that cannot resume).
    pub async fn send(&self, event: CloudEvent, cursor: impl Into<String>) -> Result<(), StreamClosed> {
        self.tx
            .send(Ok(pb::StreamResponse { event: Some(event), cursor: cursor.into() }))
            .await
            .map_err(|_| StreamClosed)
    }
}

/// An HTTP request forwarded by the host to this source instance.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lower-case names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

/// The reply to an [`HttpRequest`] and the events it produced.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub events: Vec<CloudEvent>,
}

/// A source pushes events to the host.
#[crate::async_trait]
pub trait Source: Send + Sync + 'static {
    /// Produces events until done (return `Ok`) or failed. The host reopens a
    /// stream that fails, with the last stored cursor.
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError>;

    /// Turns an HTTP request the host received for this instance into events.
    async fn handle_request(&self, _ctx: SourceContext, _req: HttpRequest) -> Result<HttpResponse, PluginError> {
        Err(PluginError::unimplemented("HandleExternalRequest"))
    }
}

pub(crate) fn parse_config(bytes: &[u8]) -> Result<serde_json::Value, tonic::Status> {
    if bytes.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(bytes).map_err(|e| tonic::Status::invalid_argument(format!("config is not JSON: {e}")))
}

/// Runs one stream of `source` into `tx` until it ends, fails or the host
/// goes away. Errors and panics end the stream with an error status.
pub(crate) async fn run_stream(
    source: Arc<dyn Source>,
    ctx: SourceContext,
    tx: mpsc::Sender<Result<pb::StreamResponse, tonic::Status>>,
) {
    let sender = EventSender::new(tx.clone());
    // A panicking source fails its stream (the host restarts it); it must not
    // look like a stream that ended normally. Dropping the source's future
    // when the host goes away is how it learns of cancellation.
    let run = std::panic::AssertUnwindSafe(source.stream(ctx, sender));
    tokio::select! {
        result = futures_util::FutureExt::catch_unwind(run) => {
            let error = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(tonic::Status::from(e)),
                Err(panic) => Some(tonic::Status::internal(format!("source panicked: {}", panic_message(&panic)))),
            };
            if let Some(status) = error {
                tracing::warn!(error = %status.message(), "source stream failed");
                let _ = tx.send(Err(status)).await;
            }
        }
        _ = tx.closed() => tracing::debug!("host closed the event stream"),
    }
}

/// Serves a [`Source`] as `plugboard.v1.Source`.
pub(crate) struct SourceService {
    pub(crate) source: Arc<dyn Source>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::StreamResponse, tonic::Status>> + Send>>;

/// Events buffered between the source and the gRPC stream; beyond this the
/// source waits (gRPC flow control carries the back-pressure to the host).
const STREAM_BUFFER: usize = 64;

#[crate::async_trait]
impl source_server::Source for SourceService {
    type StreamStream = EventStream;

    async fn stream(
        &self,
        request: tonic::Request<pb::StreamRequest>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        let req = request.into_inner();
        let ctx = SourceContext {
            instance: req.instance,
            config: parse_config(&req.config)?,
            resume_cursor: (!req.resume_cursor.is_empty()).then_some(req.resume_cursor),
        };
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(run_stream(Arc::clone(&self.source), ctx, tx));
        // The stream ends when the plugin is told to stop, so shutdown is prompt.
        let stream = futures_util::StreamExt::take_until(
            ReceiverStream::new(rx),
            crate::goplugin::shutdown_signal().cancelled_owned(),
        );
        Ok(tonic::Response::new(Box::pin(stream)))
    }

    async fn handle_external_request(
        &self,
        request: tonic::Request<pb::ExternalRequest>,
    ) -> Result<tonic::Response<pb::ExternalResponse>, tonic::Status> {
        let req = request.into_inner();
        let ctx = SourceContext { instance: req.instance, config: parse_config(&req.config)?, resume_cursor: None };
        let http = HttpRequest {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers.into_iter().collect(),
            body: req.body,
        };
        let resp = self.source.handle_request(ctx, http).await?;
        Ok(tonic::Response::new(pb::ExternalResponse {
            status: u32::from(resp.status),
            headers: resp.headers.into_iter().collect(),
            body: resp.body,
            events: resp.events,
        }))
    }
}

/// The text of a panic payload.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
