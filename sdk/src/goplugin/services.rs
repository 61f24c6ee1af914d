//! go-plugin's internal services, plugin side.

use std::pin::Pin;
use std::sync::{Arc, Mutex};

use plugboard_proto::plugin::{
    ConnInfo, Empty, StdioData,
    grpc_broker_server::{GrpcBroker, GrpcBrokerServer},
    grpc_controller_server::{GrpcController, GrpcControllerServer},
    grpc_stdio_server::{GrpcStdio, GrpcStdioServer},
};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt, wrappers::ReceiverStream};
use tokio_util::sync::CancellationToken;

/// `plugin.GRPCController`: Shutdown stops the server.
pub(super) struct Controller {
    shutdown: CancellationToken,
}

pub(super) fn controller(shutdown: CancellationToken) -> GrpcControllerServer<Controller> {
    GrpcControllerServer::new(Controller { shutdown })
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _: tonic::Request<Empty>) -> Result<tonic::Response<Empty>, tonic::Status> {
        tracing::debug!("shutdown requested by the host");
        self.shutdown.cancel();
        Ok(tonic::Response::new(Empty {}))
    }
}

/// Stdout chunks waiting for the host.
const STDIO_BUFFER: usize = 256;

/// `plugin.GRPCStdio`: the captured stdout, streamed to the one host call.
pub(super) struct StdioService {
    tx: mpsc::Sender<StdioData>,
    rx: Arc<Mutex<Option<mpsc::Receiver<StdioData>>>>,
    shutdown: CancellationToken,
}

impl StdioService {
    pub fn new(shutdown: CancellationToken) -> Self {
        let (tx, rx) = mpsc::channel(STDIO_BUFFER);
        Self { tx, rx: Arc::new(Mutex::new(Some(rx))), shutdown }
    }

    pub fn feed(&self) -> mpsc::Sender<StdioData> {
        self.tx.clone()
    }
    pub fn into_server(self) -> GrpcStdioServer<Self> {
        GrpcStdioServer::new(self)
    }
}

type StdioStream = Pin<Box<dyn Stream<Item = Result<StdioData, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl GrpcStdio for StdioService {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(
        &self,
        _: tonic::Request<()>,
    ) -> Result<tonic::Response<Self::StreamStdioStream>, tonic::Status> {
        let rx = self.rx.lock().map_err(|_| tonic::Status::internal("stdio state poisoned"))?.take();
        match rx {
            Some(rx) => {
                let stream = futures_util::StreamExt::take_until(
                    ReceiverStream::new(rx).map(Ok),
                    self.shutdown.clone().cancelled_owned(),
                );
                Ok(tonic::Response::new(Box::pin(stream)))
            }
            None => Err(tonic::Status::failed_precondition("StreamStdio may be called only once")),
        }
    }
}

/// `plugin.GRPCBroker`: accepted and held open. This SDK offers no brokered
/// connections, but go-plugin hosts open the stream right after connecting.
pub(super) struct Broker {
    shutdown: CancellationToken,
}

pub(super) fn broker(shutdown: CancellationToken) -> GrpcBrokerServer<Broker> {
    GrpcBrokerServer::new(Broker { shutdown })
}

type BrokerStream = Pin<Box<dyn Stream<Item = Result<ConnInfo, tonic::Status>> + Send>>;

#[tonic::async_trait]
impl GrpcBroker for Broker {
    type StartStreamStream = BrokerStream;

    async fn start_stream(
        &self,
        request: tonic::Request<tonic::Streaming<ConnInfo>>,
    ) -> Result<tonic::Response<Self::StartStreamStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel::<Result<ConnInfo, tonic::Status>>(1);
        tokio::spawn(async move {
            while let Some(Ok(info)) = inbound.next().await {
                tracing::debug!(service_id = info.service_id, "broker offer ignored: no brokered services");
            }
            drop(tx);
        });
        let stream =
            futures_util::StreamExt::take_until(ReceiverStream::new(rx), self.shutdown.clone().cancelled_owned());
        Ok(tonic::Response::new(Box::pin(stream)))
    }
}
