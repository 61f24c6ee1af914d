//! `tick` source: one event every `interval`, with an increasing index
//! (like ansible-rulebook's `tick`). Resumes after the last stored index.

use std::time::Duration;

use plugboard_sdk::prelude::*;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// "1s", "250ms", "2m"...
    #[serde(default = "default_interval")]
    interval: String,
}

fn default_interval() -> String {
    "1s".to_owned()
}

#[derive(Clone)]
struct Tick;

/// The index after a cursor: cursors are the index of the last event.
fn first_index(resume_cursor: Option<&str>) -> Result<u64, PluginError> {
    match resume_cursor {
        None => Ok(0),
        Some(c) => c
            .parse::<u64>()
            .map(|i| i + 1)
            .map_err(|_| PluginError::invalid_argument(format!("resume cursor {c:?} is not an index"))),
    }
}

#[plugboard_sdk::async_trait]
impl Source for Tick {
    async fn stream(&self, ctx: SourceContext, events: EventSender) -> Result<(), PluginError> {
        let config: Config = ctx.config()?;
        let interval = humantime::parse_duration(&config.interval)
            .map_err(|e| PluginError::invalid_config(format!("interval {:?}: {e}", config.interval)))?;
        if interval.is_zero() {
            return Err(PluginError::invalid_config("interval must be greater than zero"));
        }
        let source = format!("/plugboard/tick/{}", ctx.instance);
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut index = first_index(ctx.resume_cursor.as_deref())?;
        loop {
            ticker.tick().await;
            let event = EventBuilder::new("dev.plugboard.tick", source.as_str())
                .id(format!("{}-{index}", ctx.instance))
                .subject(index.to_string())
                .json(&serde_json::json!({ "index": index }))
                .build();
            events.send(event, index.to_string()).await?;
            index += 1;
        }
    }
}

fn main() {
    Plugin::new("tick", env!("CARGO_PKG_VERSION"))
        .description("emits an event every interval with an increasing index")
        .config_schema(serde_json::json!({
            "type": "object",
            "properties": {
                "interval": {
                    "type": "string",
                    "description": "time between events, e.g. \"1s\", \"250ms\"",
                    "default": "1s",
                    "pattern": "^[0-9]+(\\.[0-9]+)?\\s*[a-z]+$"
                }
            },
            "additionalProperties": false
        }))
        .source(Tick)
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    #[tokio::test]
    async fn emits_increasing_indexes_and_resumes_after_the_cursor() {
        let config = serde_json::json!({"interval": "1ms"});
        let events = testing::collect_events(Tick, config.clone(), None, 3).await.unwrap();
        let cursors: Vec<_> = events.iter().map(|(_, c)| c.as_str()).collect();
        assert_eq!(cursors, ["0", "1", "2"]);
        assert_eq!(events[2].0.r#type, "dev.plugboard.tick");
        assert_eq!(events[2].0.id, "test-2");
        let resumed = testing::collect_events(Tick, config, Some("2".into()), 1).await.unwrap();
        assert_eq!(resumed[0].1, "3");
    }

    #[tokio::test]
    async fn bad_interval_is_a_config_error() {
        let err = testing::collect_events(Tick, serde_json::json!({"interval": "soon"}), None, 1).await.unwrap_err();
        assert!(err.to_string().contains("interval \"soon\""), "{err}");
    }
}
