//! Run a plugin's logic in a unit test, without a host or a process.
//!
//! ```
//! use plugboard_sdk::prelude::*;
//! use plugboard_sdk::testing;
//!
//! struct Echo;
//! #[plugboard_sdk::async_trait]
//! impl Executor for Echo {
//!     async fn execute(&self, cmd: Command, _out: Output) -> Result<Reply, PluginError> {
//!         Ok(Reply::text(cmd.args.join(" ")))
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let run = testing::execute(Echo, "echo", "echo 'hello   world' again").await;
//! assert_eq!(run.output, "hello   world again");
//! assert_eq!(run.exit_code, 0);
//! # });
//! ```

use std::sync::Arc;

use plugboard_proto::CloudEvent;
use plugboard_proto::plugboard::v1::execute_response::Response;
use tokio::sync::mpsc;

use crate::executor::{Command, CommandContext, run_to_channel};
use crate::source::run_stream;
use crate::{Executor, PluginError, Source, SourceContext};

/// What a command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRun {
    /// All output chunks, concatenated (lossy UTF-8).
    pub output: String,
    /// The chunks as they were streamed.
    pub chunks: Vec<Vec<u8>>,
    pub exit_code: i32,
    pub error: String,
}

/// Runs `command_line` on `executor` the way the host would: the words after
/// `prefix` become the arguments (shell-style splitting).
pub async fn execute<E: Executor>(executor: E, prefix: &str, command_line: &str) -> CommandRun {
    execute_with(executor, prefix, command_line, serde_json::json!({}), CommandContext::default()).await
}

/// [`execute`] with an instance config and caller context.
pub async fn execute_with<E: Executor>(
    executor: E,
    prefix: &str,
    command_line: &str,
    config: serde_json::Value,
    context: CommandContext,
) -> CommandRun {
    let words = shell_split(command_line);
    let prefix_words = prefix.split_whitespace().count();
    let cmd = Command {
        instance: "test".into(),
        config,
        text: command_line.into(),
        prefix: prefix.into(),
        args: words.into_iter().skip(prefix_words).collect(),
        context,
    };
    let (tx, mut rx) = mpsc::channel(16);
    tokio::spawn(run_to_channel(Arc::new(executor), cmd, tx));
    let mut run = CommandRun { output: String::new(), chunks: Vec::new(), exit_code: -1, error: String::new() };
    while let Some(Ok(msg)) = rx.recv().await {
        match msg.response {
            Some(Response::Output(chunk)) => {
                run.output.push_str(&String::from_utf8_lossy(&chunk));
                run.chunks.push(chunk);
            }
            Some(Response::Result(r)) => {
                run.exit_code = r.exit_code;
                run.error = r.error;
            }
            None => {}
        }
    }
    run
}

/// Collects up to `limit` events (with their cursors) from a source, then
/// stops it. Returns early when the source ends; an error it returns comes back.
pub async fn collect_events<S: Source>(
    source: S,
    config: serde_json::Value,
    resume_cursor: Option<String>,
    limit: usize,
) -> Result<Vec<(CloudEvent, String)>, PluginError> {
    let (tx, mut rx) = mpsc::channel(limit.max(1));
    let ctx = SourceContext { instance: "test".into(), config, resume_cursor };
    // The same code path as the gRPC adapter: errors and panics become an error.
    let task = tokio::spawn(run_stream(Arc::new(source), ctx, tx));
    let mut events = Vec::new();
    while events.len() < limit {
        match rx.recv().await {
            Some(Ok(resp)) => events.push((resp.event.unwrap_or_default(), resp.cursor)),
            Some(Err(status)) => return Err(PluginError::from_status(&status)),
            None => break,
        }
    }
    drop(rx);
    task.abort();
    Ok(events)
}

fn shell_split(line: &str) -> Vec<String> {
    shell_words::split(line).unwrap_or_else(|_| line.split_whitespace().map(str::to_owned).collect())
}

/// A source started with [`start_source`], read one event at a time while
/// the test acts on the world (writes files, serves HTTP...). Dropping it
/// stops the source, as the host closing the stream would.
pub struct RunningSource {
    rx: mpsc::Receiver<Result<plugboard_proto::plugboard::v1::StreamResponse, tonic::Status>>,
    task: tokio::task::JoinHandle<()>,
}

/// Starts `source` in the background with instance name `test`, on the same
/// code path as the gRPC adapter (errors and panics end it with an error).
pub fn start_source<S: Source>(source: S, config: serde_json::Value, resume_cursor: Option<String>) -> RunningSource {
    let (tx, rx) = mpsc::channel(64);
    let ctx = SourceContext { instance: "test".into(), config, resume_cursor };
    let task = tokio::spawn(run_stream(Arc::new(source), ctx, tx));
    RunningSource { rx, task }
}

impl RunningSource {
    /// The next event and its cursor; `Ok(None)` once the source ended
    /// cleanly, its error once it failed. Waits as long as it takes: wrap it
    /// in a timeout.
    pub async fn next(&mut self) -> Result<Option<(CloudEvent, String)>, PluginError> {
        match self.rx.recv().await {
            Some(Ok(resp)) => Ok(Some((resp.event.unwrap_or_default(), resp.cursor))),
            Some(Err(status)) => Err(PluginError::from_status(&status)),
            None => Ok(None),
        }
    }
}

impl Drop for RunningSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CommandContext as Ctx, EventSender, Output, Reply};

    struct Panicky;

    #[crate::async_trait]
    impl Source for Panicky {
        async fn stream(&self, _: SourceContext, _: EventSender) -> Result<(), PluginError> {
            panic!("boom at event 3")
        }
    }

    #[crate::async_trait]
    impl Executor for Panicky {
        async fn execute(&self, _: Command, _: Output) -> Result<Reply, PluginError> {
            panic!("boom in execute")
        }
    }

    #[tokio::test]
    async fn a_panicking_source_fails_its_stream_instead_of_ending_it() {
        let err = collect_events(Panicky, serde_json::json!({}), None, 5).await.unwrap_err();
        assert_eq!(err.message(), "source panicked: boom at event 3");
        assert_eq!(err.code(), tonic::Code::Internal);
    }

    #[tokio::test]
    async fn a_panicking_executor_answers_with_an_error() {
        let run = execute_with(Panicky, "p", "p x", serde_json::json!({}), Ctx::default()).await;
        assert_eq!((run.exit_code, run.error.as_str()), (1, "executor panicked: boom in execute"));
    }
}
