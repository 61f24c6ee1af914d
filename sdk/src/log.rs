//! Logging the go-plugin way: one hclog JSON object per line on stderr
//! (`@level`, `@message`, `@module`, `@timestamp` with six fractional digits,
//! then the event's fields), which go-plugin hosts and plugboard re-log under
//! the plugin's name.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Environment variable with a `tracing` filter for the plugin's own logs
/// (default `info`).
pub const LOG_ENV: &str = "PLUGBOARD_PLUGIN_LOG";

/// Installs the hclog JSON logger as the global `tracing` subscriber, once.
pub fn init(module: &str) {
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry().with(filter).with(HclogLayer { module: module.to_owned() }).try_init();
}

/// A `tracing` layer writing hclog JSON lines to stderr.
#[derive(Debug, Clone)]
pub struct HclogLayer {
    module: String,
}

impl HclogLayer {
    pub fn new(module: impl Into<String>) -> Self {
        Self { module: module.into() }
    }

    /// Formats one hclog line (without the newline).
    pub fn format(&self, level: &Level, message: &str, fields: Map<String, Value>) -> String {
        let mut obj = Map::with_capacity(fields.len() + 4);
        obj.insert("@level".into(), Value::String(hclog_level(level).into()));
        obj.insert("@message".into(), Value::String(message.to_owned()));
        obj.insert("@module".into(), Value::String(self.module.clone()));
        obj.insert("@timestamp".into(), Value::String(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()));
        for (k, v) in fields {
            // hclog's own keys must stay strings; never let a field shadow them.
            if !k.starts_with('@') {
                obj.insert(k, v);
            }
        }
        Value::Object(obj).to_string()
    }
}

fn hclog_level(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for FieldCollector {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.fields.insert(field.name().to_owned(), Value::String(value.to_owned()));
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.fields.insert(field.name().to_owned(), Value::String(format!("{value:?}")));
        }
    }
}

impl<S: Subscriber> Layer<S> for HclogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut collector = FieldCollector::default();
        event.record(&mut collector);
        let mut line = self.format(event.metadata().level(), &collector.message, collector.fields);
        line.push('\n');
        // A closed stderr (host gone) must not kill the plugin by panic.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_hclog_json_with_six_fraction_digits() {
        let mut fields = Map::new();
        fields.insert("index".into(), Value::from(3));
        fields.insert("@level".into(), Value::from(9));
        let line = HclogLayer::new("tick").format(&Level::WARN, "slow", fields);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "slow");
        assert_eq!(v["@module"], "tick");
        assert_eq!(v["index"], 3);
        let ts = v["@timestamp"].as_str().unwrap();
        let frac = ts.rsplit('.').next().unwrap();
        assert_eq!(frac.len(), 7, "six digits and Z: {ts}");
        assert!(ts.ends_with('Z'));
    }
}
