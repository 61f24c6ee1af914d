//! Plugin metrics, read at scrape time from a snapshot the supervisor
//! provides: up, restarts, deactivated, last exit code per instance.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// One plugin instance as the supervisor sees it at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSample {
    /// The instance name from the config.
    pub instance: String,
    /// `source`, `executor` or `sink`.
    pub kind: String,
    /// The plugin's described name.
    pub plugin: String,
    /// Its process is running and answering.
    pub up: bool,
    /// Restarts since the host started.
    pub restarts: u64,
    /// The restart policy gave up on it until an operator re-enables it.
    pub deactivated: bool,
    /// How its last process ended: the exit code, or 128 + the signal.
    pub last_exit_code: Option<i32>,
}

/// The snapshot provider: called once per scrape.
pub type PluginSamples = Arc<dyn Fn() -> Vec<PluginSample> + Send + Sync>;

pub struct PluginCollector {
    samples: PluginSamples,
}

impl PluginCollector {
    pub fn new(samples: PluginSamples) -> Self {
        Self { samples }
    }
}

impl std::fmt::Debug for PluginCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginCollector").finish_non_exhaustive()
    }
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let samples = (self.samples)();
        if samples.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "plugboard_plugin_up",
            "1 while the instance's process runs",
            None,
            MetricType::Gauge,
        )?;
        for s in &samples {
            let labels = [("instance", s.instance.as_str()), ("kind", s.kind.as_str()), ("plugin", s.plugin.as_str())];
            ConstGauge::new(i64::from(s.up)).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "plugboard_plugin_restarts",
            "Restarts of the instance since the host started",
            None,
            MetricType::Counter,
        )?;
        for s in &samples {
            let labels = [("instance", s.instance.as_str()), ("kind", s.kind.as_str())];
            ConstCounter::new(s.restarts).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "plugboard_plugin_deactivated",
            "1 while the restart policy keeps the instance deactivated",
            None,
            MetricType::Gauge,
        )?;
        for s in &samples {
            let labels = [("instance", s.instance.as_str()), ("kind", s.kind.as_str())];
            ConstGauge::new(i64::from(s.deactivated)).encode(family.encode_family(&labels)?)?;
        }
        if samples.iter().any(|s| s.last_exit_code.is_some()) {
            let mut family = encoder.encode_descriptor(
                "plugboard_plugin_last_exit_code",
                "How the instance's last process ended: its exit code, or 128 + the signal",
                None,
                MetricType::Gauge,
            )?;
            for s in &samples {
                let Some(code) = s.last_exit_code else { continue };
                let labels = [("instance", s.instance.as_str()), ("kind", s.kind.as_str())];
                ConstGauge::new(i64::from(code)).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::prometheus_text::encode;
    use prometheus_client::registry::Registry;

    fn sample(instance: &str, up: bool, restarts: u64, last_exit_code: Option<i32>) -> PluginSample {
        PluginSample {
            instance: instance.into(),
            kind: "source".into(),
            plugin: "range".into(),
            up,
            restarts,
            deactivated: !up && restarts > 2,
            last_exit_code,
        }
    }

    #[test]
    fn samples_are_read_at_every_scrape() {
        let state = Arc::new(std::sync::Mutex::new(vec![sample("a", true, 0, None)]));
        let provider = Arc::clone(&state);
        let mut registry = Registry::default();
        registry.register_collector(Box::new(PluginCollector::new(Arc::new(move || provider.lock().unwrap().clone()))));
        let scrape = || {
            let mut text = String::new();
            encode(&mut text, &registry).unwrap();
            text
        };
        let text = scrape();
        assert!(text.contains("plugboard_plugin_up{instance=\"a\",kind=\"source\",plugin=\"range\"} 1\n"), "{text}");
        assert!(text.contains("# TYPE plugboard_plugin_restarts_total counter\n"), "{text}");
        assert!(!text.contains("last_exit_code"), "no exit yet: {text}");

        *state.lock().unwrap() = vec![sample("a", false, 3, Some(139)), sample("b\"q", true, 0, None)];
        let text = scrape();
        assert!(text.contains("plugboard_plugin_up{instance=\"a\",kind=\"source\",plugin=\"range\"} 0\n"), "{text}");
        assert!(text.contains("plugboard_plugin_restarts_total{instance=\"a\",kind=\"source\"} 3\n"), "{text}");
        assert!(text.contains("plugboard_plugin_deactivated{instance=\"a\",kind=\"source\"} 1\n"), "{text}");
        assert!(text.contains("plugboard_plugin_last_exit_code{instance=\"a\",kind=\"source\"} 139\n"), "{text}");
        // Label values are escaped.
        assert!(
            text.contains("plugboard_plugin_up{instance=\"b\\\"q\",kind=\"source\",plugin=\"range\"} 1\n"),
            "{text}"
        );
    }
}
