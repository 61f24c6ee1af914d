//! Client side of `plugboard.v1.Executor`.

use std::time::Duration;

use plugboard_proto::plugboard::v1::{
    CommandContext, ExecuteRequest, ExecuteResult, execute_response::Response, executor_client,
};
use tonic::transport::Channel;

/// One command for one executor instance.
#[derive(Debug, Clone, Default)]
pub struct CommandRequest {
    pub instance: String,
    /// The instance config as JSON bytes.
    pub config: Vec<u8>,
    pub command: String,
    pub prefix: String,
    pub args: Vec<String>,
    pub context: CommandContext,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub exit_code: i32,
    pub error: String,
}

/// Why a command produced no result.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("command timed out after {0:?}")]
    Timeout(Duration),
    #[error("executor is unavailable: {0}")]
    Unavailable(String),
    #[error("executor failed the call: {0}")]
    Failed(String),
    #[error("executor ended its output stream without a result")]
    NoResult,
}

impl From<tonic::Status> for ExecuteError {
    fn from(status: tonic::Status) -> Self {
        match status.code() {
            // The connection is gone: the process died or is restarting.
            tonic::Code::Unavailable => ExecuteError::Unavailable(status.message().to_owned()),
            // The deadline sent as grpc-timeout expired (tonic's own timer, or
            // the plugin's) a moment before ours: the same timeout, reported
            // as one; `execute` fills in the duration.
            tonic::Code::DeadlineExceeded => ExecuteError::Timeout(Duration::ZERO),
            tonic::Code::Cancelled if status.message() == "Timeout expired" => ExecuteError::Timeout(Duration::ZERO),
            // tonic's text gives both sizes; say which setting governs them.
            _ if status.message().contains("message length too large") => {
                ExecuteError::Failed(format!("message over max_message_size: {}", status.message()))
            }
            _ => ExecuteError::Failed(status.message().to_owned()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ExecutorClient {
    inner: executor_client::ExecutorClient<Channel>,
}

impl ExecutorClient {
    pub fn new(channel: Channel) -> Self {
        Self::with_max_message_size(channel, super::MAX_MESSAGE_SIZE)
    }

    /// A client refusing messages over `max` bytes either way: an oversized
    /// message fails its own call or stream, nothing else.
    pub fn with_max_message_size(channel: Channel, max: usize) -> Self {
        Self {
            inner: executor_client::ExecutorClient::new(channel)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        }
    }

    /// Runs a command, handing each output chunk to `on_output` as it comes.
    /// On timeout the call is cancelled (the plugin sees its stream reset).
    pub async fn execute(
        &mut self,
        request: CommandRequest,
        timeout: Duration,
        mut on_output: impl FnMut(&[u8]),
    ) -> Result<CommandOutcome, ExecuteError> {
        let mut req = tonic::Request::new(ExecuteRequest {
            instance: request.instance,
            config: request.config,
            command: request.command,
            prefix: request.prefix,
            args: request.args,
            context: Some(request.context),
        });
        // The plugin sees the deadline too (grpc-timeout).
        req.set_timeout(timeout);
        let call = async {
            let mut stream = self.inner.execute(req).await?.into_inner();
            while let Some(msg) = stream.message().await? {
                match msg.response {
                    Some(Response::Output(chunk)) => on_output(&chunk),
                    Some(Response::Result(ExecuteResult { exit_code, error })) => {
                        return Ok(CommandOutcome { exit_code, error });
                    }
                    None => {}
                }
            }
            Err(ExecuteError::NoResult)
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Err(ExecuteError::Timeout(_))) | Err(_) => Err(ExecuteError::Timeout(timeout)),
            Ok(result) => result,
        }
    }
}
