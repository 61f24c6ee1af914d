//! Command metrics, recorded by the command service once per command:
//! `plugboard_commands_total{executor,outcome}` and the
//! `plugboard_command_duration_seconds{executor}` histogram.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// Upper bounds of the latency buckets, in seconds: from a quick built-in
/// answer to the longest command timeouts people configure.
const BUCKETS: [f64; 15] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    executor: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExecutorLabels {
    executor: String,
}

type DurationFamily = Family<ExecutorLabels, Histogram, fn() -> Histogram>;

#[derive(Debug)]
pub struct CommandMetrics {
    total: Family<CommandLabels, Counter>,
    duration: DurationFamily,
}

impl Default for CommandMetrics {
    fn default() -> Self {
        Self { total: Family::default(), duration: Family::new_with_constructor(|| Histogram::new(BUCKETS)) }
    }
}

impl CommandMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "plugboard_commands",
            "Commands answered, by executor instance (empty: none resolved) and outcome",
            self.total.clone(),
        );
        registry.register_with_unit(
            "plugboard_command_duration",
            "Time from a command reaching its executor instance to its result",
            Unit::Seconds,
            self.duration.clone(),
        );
    }

    /// Counts one answered command. `executor`: the instance it resolved to
    /// (`""` when none did); `outcome`: its status (`ok`, `denied`, ...).
    pub fn command(&self, executor: &str, outcome: &'static str) {
        self.total.get_or_create(&CommandLabels { executor: executor.to_owned(), outcome }).inc();
    }

    /// Records how long `executor` took on a command it was given.
    pub fn duration(&self, executor: &str, took: Duration) {
        self.duration.get_or_create(&ExecutorLabels { executor: executor.to_owned() }).observe(took.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;

    #[test]
    fn commands_are_counted_by_outcome_and_timed_per_executor() {
        let metrics = CommandMetrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        metrics.command("say", "ok");
        metrics.command("say", "ok");
        metrics.command("", "unknown");
        metrics.duration("say", Duration::from_millis(30));
        metrics.duration("say", Duration::from_secs(3));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        assert!(text.contains("plugboard_commands_total{executor=\"say\",outcome=\"ok\"} 2\n"), "{text}");
        assert!(text.contains("plugboard_commands_total{executor=\"\",outcome=\"unknown\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE plugboard_command_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_count{executor=\"say\"} 2\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_sum{executor=\"say\"} 3.03\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_bucket{executor=\"say\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_bucket{executor=\"say\",le=\"0.05\"} 1\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_bucket{executor=\"say\",le=\"2.5\"} 1\n"), "{text}");
        assert!(text.contains("plugboard_command_duration_seconds_bucket{executor=\"say\",le=\"5\"} 2\n"), "{text}");
    }
}
