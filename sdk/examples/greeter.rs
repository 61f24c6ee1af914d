//! The plugin shown in README.md: an executor and a source in one binary.
//! Kept compiling (and tested) so the README stays true.

use plugboard_sdk::prelude::*;

/// An executor: answers `greet NAME`.
struct Greet;

#[plugboard_sdk::async_trait]
impl Executor for Greet {
    async fn execute(&self, cmd: Command, out: Output) -> Result<Reply, PluginError> {
        // Long-running commands stream with `out.write(...)`; this one just replies.
        let _ = out;
        match cmd.args.first() {
            Some(name) => Ok(Reply::text(format!("hello, {name} (from {})\n", cmd.context.user))),
            None => Ok(Reply::failed(2, "usage: greet NAME")),
        }
    }
}

/// A source: one event per second, resuming after the last stored cursor.
struct Heartbeat;

#[plugboard_sdk::async_trait]
impl Source for Heartbeat {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let mut n: u64 = ctx.resume_cursor.as_deref().and_then(|c| c.parse().ok()).map_or(0, |c: u64| c + 1);
        loop {
            let event = EventBuilder::new("com.example.heartbeat", format!("/heartbeat/{}", ctx.instance))
                .json(&serde_json::json!({ "n": n }))
                .build();
            events.send(event, n.to_string()).await?; // waits when the host is slow
            n += 1;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
}

fn main() {
    Plugin::new("greeter", env!("CARGO_PKG_VERSION"))
        .description("greets people and beats")
        .config_schema(serde_json::json!({ "type": "object" }))
        .executor(Greet, ["greet"])
        .source(Heartbeat)
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[tokio::test]
    async fn the_readme_example_works() {
        let run = testing::execute(Greet, "greet", "greet 'Ada Lovelace'").await;
        assert_eq!(run.output, "hello, Ada Lovelace (from )\n");
        let run = testing::execute(Greet, "greet", "greet").await;
        assert_eq!((run.exit_code, run.error.as_str()), (2, "usage: greet NAME"));
        let events = testing::collect_events(Heartbeat, serde_json::json!({}), Some("41".into()), 1).await.unwrap();
        assert_eq!(events[0].1, "42");
    }
}
