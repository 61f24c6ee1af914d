//! `echo` executor: prints its arguments back.
//!
//! `echo --every 100ms a b c` streams one word per line, waiting the given
//! time between words (for streaming, timeout and cancellation tests). A
//! cancelled command (the caller went away or the host's timeout expired)
//! logs "echo cancelled" — the plugin's side of the cancellation.

use std::time::Duration;

use plugboard_sdk::prelude::*;

#[derive(Clone)]
struct Echo;

#[plugboard_sdk::async_trait]
impl Executor for Echo {
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError> {
        tracing::info!(user = %cmd.context.user, channel = %cmd.context.channel, command = %cmd.text, "echo running");
        match cmd.args.first().map(String::as_str) {
            Some("--every") => {
                let interval =
                    cmd.args.get(1).ok_or_else(|| PluginError::invalid_argument("--every needs a duration"))?;
                let interval = humantime::parse_duration(interval)
                    .map_err(|e| PluginError::invalid_argument(format!("--every {interval}: {e}")))?;
                stream(&cmd.args[2..], interval, &out).await?;
                Ok(Reply::done())
            }
            _ => {
                let mut text = cmd.args.join(" ");
                text.push('\n');
                Ok(Reply::text(text))
            }
        }
    }
}

/// Logs the cancellation if the command is dropped before it finished.
struct CancelGuard {
    sent: usize,
    total: usize,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            tracing::warn!(sent = self.sent, total = self.total, "echo cancelled");
        }
    }
}

async fn stream(words: &[String], interval: Duration, out: &Output) -> Result<(), PluginError> {
    let mut guard = CancelGuard { sent: 0, total: words.len(), done: false };
    for (i, word) in words.iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(interval).await;
        }
        out.write(format!("{word}\n")).await?;
        guard.sent += 1;
    }
    guard.done = true;
    Ok(())
}

fn main() {
    Plugin::new("echo", env!("CARGO_PKG_VERSION"))
        .description("prints its arguments back")
        .help(
            "usage: echo WORDS...\nPrints WORDS separated by single spaces.\n\
             usage: echo --every DURATION WORDS...\nStreams one word per line, DURATION apart (e.g. 100ms).",
        )
        .config_schema(serde_json::json!({"type": "object", "additionalProperties": false}))
        .executor(Echo, ["echo"])
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[tokio::test]
    async fn prints_arguments_joined_by_spaces() {
        let run = testing::execute(Echo, "echo", "echo hello   'big world'").await;
        assert_eq!(run.output, "hello big world\n");
        assert_eq!(run.exit_code, 0);
    }

    #[tokio::test]
    async fn streams_one_word_per_chunk() {
        let run = testing::execute(Echo, "echo", "echo --every 1ms a b c").await;
        assert_eq!(run.chunks, [b"a\n".to_vec(), b"b\n".to_vec(), b"c\n".to_vec()]);
        assert_eq!(run.exit_code, 0);
        let run = testing::execute(Echo, "echo", "echo --every soon a").await;
        assert_ne!(run.exit_code, 0);
        assert!(run.error.contains("--every soon"), "{}", run.error);
    }
}
