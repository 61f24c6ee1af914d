//! The [`Executor`] trait and its gRPC adapter.

use std::pin::Pin;
use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::{self as pb, executor_server};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::PluginError;
use crate::source::parse_config;

/// Who asked for a command.
#[derive(Debug, Clone, Default)]
pub struct CommandContext {
    pub user: String,
    pub channel: String,
    /// "cli", "http", "slack", "mattermost", "automation"...
    pub platform: String,
    /// The event that triggered the command, for automations.
    pub event: Option<CloudEvent>,
    /// Groups the host's config puts the user in.
    pub groups: Vec<String>,
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Command {
    pub instance: String,
    pub config: serde_json::Value,
    /// The whole command line, e.g. `echo hello world`.
    pub text: String,
    /// The prefix that selected this executor, e.g. `echo`.
    pub prefix: String,
    /// The words after the prefix, split like a shell splits them.
    pub args: Vec<String>,
    pub context: CommandContext,
}

impl Command {
    /// The instance config as the plugin's own type.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        Ok(T::deserialize(&self.config)?)
    }
}

/// Streams output to the caller as the command produces it.
#[derive(Debug, Clone)]
pub struct Output {
    tx: mpsc::Sender<Result<pb::ExecuteResponse, tonic::Status>>,
}

impl Output {
    /// Sends a chunk of output. Fails only when the caller has gone away,
    /// in which case the command should stop.
    pub async fn write(&self, chunk: impl Into<Vec<u8>>) -> Result<(), PluginError> {
        let chunk = chunk.into();
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Ok(pb::ExecuteResponse { response: Some(pb::execute_response::Response::Output(chunk)) }))
            .await
            .map_err(|_| PluginError::unavailable("the caller went away"))
    }
}

/// How a command ended: optional final text and an exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub exit_code: i32,
    /// A failure reason shown to the caller (empty on success).
    pub error: String,
}

impl Reply {
    /// Success with this output.
    pub fn text(text: impl Into<String>) -> Self {
        Self { text: text.into(), ..Self::default() }
    }
    /// Success with no further output (everything was streamed).
    pub fn done() -> Self {
        Self::default()
    }
    /// A failed command: exit code and reason.
    pub fn failed(exit_code: i32, error: impl Into<String>) -> Self {
        Self { text: String::new(), exit_code, error: error.into() }
    }
    pub fn with_exit_code(mut self, exit_code: i32) -> Self {
        self.exit_code = exit_code;
        self
    }
}

/// An executor runs commands people type.
#[crate::async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Runs one command. Write long output to `out` as it comes; return the
    /// final text (if any) and the exit code. The future is dropped if the
    /// caller cancels or the host's timeout expires.
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError>;
}

pub(crate) fn command_from_request(req: pb::ExecuteRequest) -> Result<Command, tonic::Status> {
    let ctx = req.context.unwrap_or_default();
    Ok(Command {
        instance: req.instance,
        config: parse_config(&req.config)?,
        text: req.command,
        prefix: req.prefix,
        args: req.args,
        context: CommandContext {
            user: ctx.user,
            channel: ctx.channel,
            platform: ctx.platform,
            event: ctx.event,
            groups: ctx.groups,
        },
    })
}

/// Serves an [`Executor`] as `plugboard.v1.Executor`.
pub(crate) struct ExecutorService {
    pub(crate) executor: Arc<dyn Executor>,
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<pb::ExecuteResponse, tonic::Status>> + Send>>;

/// Buffered output chunks before the command waits for the caller.
const OUTPUT_BUFFER: usize = 16;

pub(crate) async fn run_to_channel(
    executor: Arc<dyn Executor>,
    cmd: Command,
    tx: mpsc::Sender<Result<pb::ExecuteResponse, tonic::Status>>,
) {
    let out = Output { tx: tx.clone() };
    let run = std::panic::AssertUnwindSafe(executor.execute(cmd, out));
    let result = tokio::select! {
        r = futures_util::FutureExt::catch_unwind(run) => match r {
            Ok(r) => r,
            Err(panic) => Err(PluginError::internal(format!(
                "executor panicked: {}",
                crate::source::panic_message(&panic)
            ))),
        },
        _ = tx.closed() => return,
    };
    let (text, result) = match result {
        Ok(reply) => (reply.text, pb::ExecuteResult { exit_code: reply.exit_code, error: reply.error }),
        Err(e) => (String::new(), pb::ExecuteResult { exit_code: 1, error: e.to_string() }),
    };
    use pb::execute_response::Response;
    if !text.is_empty() {
        let _ = tx.send(Ok(pb::ExecuteResponse { response: Some(Response::Output(text.into_bytes())) })).await;
    }
    let _ = tx.send(Ok(pb::ExecuteResponse { response: Some(Response::Result(result)) })).await;
}

#[crate::async_trait]
impl executor_server::Executor for ExecutorService {
    type ExecuteStream = ResponseStream;

    async fn execute(
        &self,
        request: tonic::Request<pb::ExecuteRequest>,
    ) -> Result<tonic::Response<Self::ExecuteStream>, tonic::Status> {
        let cmd = command_from_request(request.into_inner())?;
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        tokio::spawn(run_to_channel(Arc::clone(&self.executor), cmd, tx));
        Ok(tonic::Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
