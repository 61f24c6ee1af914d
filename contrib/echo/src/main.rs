//! `echo` executor: prints its arguments back.

use plugboard_sdk::prelude::*;

#[derive(Clone)]
struct Echo;

#[plugboard_sdk::async_trait]
impl Executor for Echo {
    async fn execute(&self, cmd: Command, _out: Output) -> Result<Reply, PluginError> {
        let mut text = cmd.args.join(" ");
        text.push('\n');
        Ok(Reply::text(text))
    }
}

fn main() {
    Plugin::new("echo", env!("CARGO_PKG_VERSION"))
        .description("prints its arguments back")
        .help("usage: echo WORDS...\nPrints WORDS separated by single spaces.")
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
}
