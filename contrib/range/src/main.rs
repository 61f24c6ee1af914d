//! `range` source: events with index 0..limit-1, then the stream ends (like
//! ansible-rulebook's `range`). Resumes after the last stored index.

use plugboard_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    limit: u64,
    /// Optional pause between events, e.g. "10ms".
    #[serde(default)]
    interval: Option<String>,
}

#[derive(Clone)]
struct Range;

#[plugboard_sdk::async_trait]
impl Source for Range {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: Config = ctx.config()?;
        let pause = config
            .interval
            .as_deref()
            .map(humantime::parse_duration)
            .transpose()
            .map_err(|e| PluginError::invalid_config(format!("interval: {e}")))?;
        let start = match ctx.resume_cursor.as_deref() {
            None => 0,
            Some(c) => {
                c.parse::<u64>()
                    .map_err(|_| PluginError::invalid_argument(format!("resume cursor {c:?} is not an index")))?
                    + 1
            }
        };
        let source = format!("/plugboard/range/{}", ctx.instance);
        for i in start..config.limit {
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
            let event = EventBuilder::new("dev.plugboard.range", source.as_str())
                .id(format!("{}-{i}", ctx.instance))
                .json(&serde_json::json!({ "index": i }))
                .build();
            events.send(event, i.to_string()).await?;
        }
        Ok(())
    }
}

fn main() {
    Plugin::new("range", env!("CARGO_PKG_VERSION"))
        .description("emits events with index 0 to limit-1, then ends")
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 0, "description": "number of events"},
                "interval": {"type": "string", "description": "pause between events, e.g. \"10ms\""}
            },
            "required": ["limit"],
            "additionalProperties": false
        }))
        .source(Range)
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[tokio::test]
    async fn yields_limit_events_then_ends() {
        let events = testing::collect_events(Range, serde_json::json!({"limit": 3}), None, 10).await.unwrap();
        let ids: Vec<_> = events.iter().map(|(e, _)| e.id.as_str()).collect();
        assert_eq!(ids, ["test-0", "test-1", "test-2"]);
    }

    #[tokio::test]
    async fn resumes_after_the_cursor() {
        let events =
            testing::collect_events(Range, serde_json::json!({"limit": 3}), Some("1".into()), 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1, "2");
    }
}
