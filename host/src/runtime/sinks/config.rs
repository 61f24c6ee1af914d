//! `sinks:` in the config: one entry per sink, naming its kind by the key
//! it sets (`stdout`, `file`, `http`, `database`, `discard`, or `plugin`),
//! plus delivery settings every kind shares.
//!
//! ```yaml
//! sinks:
//!   - name: out
//!     stdout: {}
//!   - name: archive
//!     file: { path: events.jsonl }
//!   - name: hook
//!     http: { url: "https://example.com/events", mode: binary, timeout: 5s }
//!     retry: { max_attempts: 20, initial_backoff: 500ms, max_backoff: 1m }
//!   - name: db
//!     database: { path: events.db }
//!   - name: custom
//!     plugin: my-sink            # any plugin of kind SINK
//!     config: { ... }
//!     restart: { max_restarts: 3 }  # its process's own policy (and `health:`)
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use plugboard_proto::plugboard::v1::PluginKind;
use serde::{Deserialize, Deserializer};

use crate::plugin::Described;
use crate::runtime::config::{HealthOverride, RestartOverride};
use crate::runtime::isolation::with_isolation_fields;

/// Events handed to a sink per delivery when its kind has no limit of its own.
pub const DEFAULT_BATCH_SIZE: usize = 512;
/// The sink a config without `sinks:` gets.
pub const DEFAULT_SINK: &str = "stdout";

with_isolation_fields! {
/// A sink; the isolation fields apply to plugin sinks only.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    /// Structured-mode CloudEvents JSON lines on the host's stdout.
    #[serde(default, deserialize_with = "present")]
    pub stdout: Option<StdoutSinkConfig>,
    /// JSON lines appended to a file.
    #[serde(default, deserialize_with = "present")]
    pub file: Option<FileSinkConfig>,
    /// The CloudEvents HTTP binding, one request per event.
    #[serde(default, deserialize_with = "present")]
    pub http: Option<HttpSinkConfig>,
    /// An `events` table in an SQLite file of your choosing.
    #[serde(default, deserialize_with = "present")]
    pub database: Option<DatabaseSinkConfig>,
    /// Takes every event and keeps none (benchmarks, smoke tests).
    #[serde(default, deserialize_with = "present")]
    pub discard: Option<DiscardSinkConfig>,
    /// A plugin of kind SINK (its described name or file name).
    #[serde(default)]
    pub plugin: Option<String>,
    /// The plugin's instance config (checked against its schema).
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Most events per delivery (default 512; http sinks send one per request).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Restart policy of a plugin sink's process (over the top-level `restart:`).
    #[serde(default)]
    pub restart: Option<RestartOverride>,
    /// Health checks of a plugin sink's process (over the top-level `health:`).
    #[serde(default)]
    pub health: Option<HealthOverride>,
}
}

/// `key:` with no value (YAML null) means "this kind, default settings".
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<Option<T>, D::Error> {
    Ok(Some(Option::<T>::deserialize(d)?.unwrap_or_default()))
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutSinkConfig {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardSinkConfig {}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Relative paths are relative to the config file.
    pub path: PathBuf,
    /// fsync after every batch, so a delivered event survives a power cut.
    #[serde(default)]
    pub fsync: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HttpMode {
    /// The whole event as `application/cloudevents+json`.
    #[default]
    Structured,
    /// Data as the body, attributes as `ce-` headers.
    Binary,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSinkConfig {
    pub url: String,
    #[serde(default)]
    pub mode: HttpMode,
    /// Per request (default 10 s).
    #[serde(default = "default_http_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Extra request headers, e.g. `Authorization`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Default for HttpSinkConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            mode: HttpMode::default(),
            timeout: default_http_timeout(),
            headers: BTreeMap::new(),
        }
    }
}

fn default_http_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSinkConfig {
    /// The SQLite file; relative paths are relative to the config file.
    pub path: PathBuf,
    /// Table name (default `events`).
    #[serde(default)]
    pub table: Option<String>,
}

/// Failed deliveries retry with exponential backoff and jitter; after
/// `max_attempts` the events are dead-lettered for this sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

impl RetryConfig {
    /// The pause after the `attempt`-th failure (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let factor = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.initial_backoff.as_secs_f64() * factor).min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// `base_delay` with "equal jitter": between half and all of it, so
    /// sinks that failed together do not retry together.
    pub fn delay(&self, attempt: u32) -> Duration {
        use rand::Rng;
        let base = self.base_delay(attempt);
        base.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}

/// What kind of sink, with its settings resolved.
#[derive(Debug, Clone)]
pub enum SinkKind {
    Stdout,
    Discard,
    File(FileSinkConfig),
    Http(HttpSinkConfig),
    Database(DatabaseSinkConfig),
    Plugin {
        plugin: Arc<Described>,
        path: PathBuf,
        config: serde_json::Value,
        /// Its own `restart:` and `health:`, over the top-level ones.
        restart: Option<RestartOverride>,
        health: Option<HealthOverride>,
    },
    /// An entry of `automations:`, fed through the store like a sink.
    Automation {
        name: String,
    },
}

impl SinkKind {
    pub fn name(&self) -> &'static str {
        match self {
            SinkKind::Stdout => "stdout",
            SinkKind::Discard => "discard",
            SinkKind::File(_) => "file",
            SinkKind::Http(_) => "http",
            SinkKind::Database(_) => "database",
            SinkKind::Plugin { .. } => "plugin",
            SinkKind::Automation { .. } => "automation",
        }
    }
}

/// A checked sink.
#[derive(Debug, Clone)]
pub struct SinkPlan {
    pub name: Arc<str>,
    pub kind: SinkKind,
    pub retry: RetryConfig,
    pub batch_size: usize,
}

impl SinkConfig {
    /// Makes relative file paths relative to `base` (the config's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(f) = &mut self.file
            && f.path.is_relative()
        {
            f.path = base.join(&f.path);
        }
        if let Some(d) = &mut self.database
            && d.path.is_relative()
        {
            d.path = base.join(&d.path);
        }
    }
}

/// Checks `configs` (or supplies the default stdout sink when there are
/// none) against the plugins in `find_plugin`'s reach.
pub fn plan_sinks(
    configs: &[SinkConfig],
    mut find_plugin: impl FnMut(&str, &str, PluginKind, &mut Vec<String>) -> Option<(PathBuf, Arc<Described>)>,
    problems: &mut Vec<String>,
) -> Vec<SinkPlan> {
    if configs.is_empty() {
        return vec![SinkPlan {
            name: Arc::from(DEFAULT_SINK),
            kind: SinkKind::Stdout,
            retry: RetryConfig::default(),
            batch_size: DEFAULT_BATCH_SIZE,
        }];
    }
    let mut plans = Vec::with_capacity(configs.len());
    let mut seen = std::collections::BTreeMap::new();
    for (i, c) in configs.iter().enumerate() {
        let at = format!("sinks[{i}] {:?}", c.name);
        let valid_name =
            !c.name.is_empty() && c.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !valid_name {
            problems.push(format!("sinks[{i}]: sink name {:?} must be letters, digits, '-', '_' or '.'", c.name));
        }
        if let Some(first) = seen.insert(c.name.clone(), i) {
            problems.push(format!("{at}: sink name {:?} is already used by sinks[{first}]", c.name));
        }
        let retry = c.retry.clone();
        if retry.max_attempts == 0 {
            problems.push(format!("{at}: retry.max_attempts must be at least 1"));
        }
        if retry.multiplier < 1.0 || !retry.multiplier.is_finite() {
            problems.push(format!("{at}: retry.multiplier must be at least 1, not {}", retry.multiplier));
        }
        if c.batch_size == Some(0) {
            problems.push(format!("{at}: batch_size must be at least 1"));
        }
        let set: Vec<&str> = [
            c.stdout.as_ref().map(|_| "stdout"),
            c.file.as_ref().map(|_| "file"),
            c.http.as_ref().map(|_| "http"),
            c.database.as_ref().map(|_| "database"),
            c.discard.as_ref().map(|_| "discard"),
            c.plugin.as_ref().map(|_| "plugin"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if set.len() != 1 {
            problems.push(format!(
                "{at}: set exactly one of stdout, file, http, database, discard or plugin (found {})",
                if set.is_empty() { "none".to_owned() } else { set.join(", ") }
            ));
            continue;
        }
        if c.config.is_some() && c.plugin.is_none() {
            problems.push(format!(
                "{at}: `config` is for plugin sinks; set the {} sink's settings under `{}`",
                set[0], set[0]
            ));
        }
        if (c.restart.is_some() || c.health.is_some()) && c.plugin.is_none() {
            problems.push(format!(
                "{at}: restart and health apply to plugin sinks only (a {} sink runs in the host, with no process to restart or check)",
                set[0]
            ));
        }
        let kind = if c.stdout.is_some() {
            SinkKind::Stdout
        } else if c.discard.is_some() {
            SinkKind::Discard
        } else if let Some(f) = &c.file {
            if f.path.as_os_str().is_empty() {
                problems.push(format!("{at}: file.path is required"));
            }
            SinkKind::File(f.clone())
        } else if let Some(h) = &c.http {
            match reqwest::Url::parse(&h.url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                Ok(url) => {
                    problems.push(format!("{at}: http.url {:?} must be http or https, not {}", h.url, url.scheme()))
                }
                Err(e) => problems.push(format!("{at}: http.url {:?} is not a URL: {e}", h.url)),
            }
            if h.timeout.is_zero() {
                problems.push(format!("{at}: http.timeout must be greater than zero"));
            }
            for (name, value) in &h.headers {
                if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(value).is_err()
                {
                    problems.push(format!("{at}: http.headers {name:?} is not a valid HTTP header"));
                }
            }
            SinkKind::Http(h.clone())
        } else if let Some(d) = &c.database {
            if d.path.as_os_str().is_empty() {
                problems.push(format!("{at}: database.path is required"));
            }
            if let Some(t) = &d.table
                && (t.is_empty()
                    || !t.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
                    || t.starts_with(|ch: char| ch.is_ascii_digit()))
            {
                problems.push(format!("{at}: database.table {t:?} must be letters, digits and '_'"));
            }
            SinkKind::Database(d.clone())
        } else if let Some(name) = &c.plugin {
            let Some((path, plugin)) = find_plugin(&at, name, PluginKind::Sink, problems) else { continue };
            let config = match &c.config {
                None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
                Some(v) => v.clone(),
            };
            if let Err(errors) = plugin.schema.validate(&config) {
                for e in errors {
                    problems.push(format!("{at}: config rejected by plugin {:?}'s schema: {e}", plugin.info.name));
                }
            }
            SinkKind::Plugin { plugin, path, config, restart: c.restart.clone(), health: c.health.clone() }
        } else {
            continue;
        };
        let batch_size = match kind {
            SinkKind::Http(_) => 1,
            _ => c.batch_size.unwrap_or(DEFAULT_BATCH_SIZE).max(1),
        };
        plans.push(SinkPlan { name: Arc::from(c.name.as_str()), kind, retry, batch_size });
    }
    plans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(yaml: &str) -> Result<Vec<SinkPlan>, Vec<String>> {
        let configs: Vec<SinkConfig> = serde_yaml::from_str(yaml).map_err(|e| vec![e.to_string()])?;
        let mut problems = Vec::new();
        let plans = plan_sinks(
            &configs,
            |at, name, _, problems| {
                problems.push(format!("{at}: unknown plugin {name:?}"));
                None
            },
            &mut problems,
        );
        if problems.is_empty() { Ok(plans) } else { Err(problems) }
    }

    #[test]
    fn kinds_are_named_by_their_key() {
        let plans = plan(
            "- name: out\n  stdout:\n- name: f\n  file: { path: /tmp/x }\n- name: h\n  http: { url: 'http://localhost:1/e', mode: binary, timeout: 2s }\n  retry: { max_attempts: 3 }\n- name: d\n  database: { path: /tmp/y.db }\n",
        )
        .unwrap();
        let kinds: Vec<_> = plans.iter().map(|p| p.kind.name()).collect();
        assert_eq!(kinds, ["stdout", "file", "http", "database"]);
        let SinkKind::Http(h) = &plans[2].kind else { panic!() };
        assert_eq!(h.mode, HttpMode::Binary);
        assert_eq!(h.timeout, Duration::from_secs(2));
        assert_eq!(plans[2].retry.max_attempts, 3);
        assert_eq!(plans[2].batch_size, 1);
        assert_eq!(plans[0].batch_size, DEFAULT_BATCH_SIZE);
    }

    #[test]
    fn no_sinks_means_one_stdout_sink() {
        let plans = plan("[]").unwrap();
        assert_eq!(plans.len(), 1);
        assert_eq!(&*plans[0].name, DEFAULT_SINK);
        assert!(matches!(plans[0].kind, SinkKind::Stdout));
    }

    #[test]
    fn mistakes_are_reported_per_sink() {
        let problems = plan(
            "- name: a\n- name: a\n  stdout: {}\n  file: { path: x }\n- name: h\n  http: { url: 'ftp://x' }\n- name: p\n  plugin: nosuch\n- name: 'bad name'\n  discard: {}\n  retry: { max_attempts: 0 }\n",
        )
        .unwrap_err();
        assert!(
            problems.contains(
                &"sinks[0] \"a\": set exactly one of stdout, file, http, database, discard or plugin (found none)"
                    .to_owned()
            ),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.contains("sinks[1] \"a\": sink name \"a\" is already used by sinks[0]")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("(found stdout, file)")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("must be http or https, not ftp")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("sinks[3] \"p\": unknown plugin \"nosuch\"")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("sink name \"bad name\" must be")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("retry.max_attempts must be at least 1")), "{problems:?}");
    }

    #[test]
    fn plugin_sinks_take_their_own_restart_and_health_and_builtin_sinks_refuse_them() {
        let configs: Vec<SinkConfig> = serde_yaml::from_str(
            "- name: p\n  plugin: recorder\n  restart: { max_restarts: 1, window: 1m }\n  health: { interval: 0s }\n\
             - name: q\n  plugin: recorder\n\
             - name: out\n  stdout: {}\n  restart: { max_restarts: 1 }\n\
             - name: f\n  file: { path: /tmp/x }\n  health: { interval: 1s }\n",
        )
        .unwrap();
        let sink_plugin = Arc::new(Described {
            info: plugboard_proto::plugboard::v1::PluginInfo { name: "recorder".into(), ..Default::default() },
            kinds: vec![PluginKind::Sink],
            schema: crate::plugin::ConfigSchema::compile("").unwrap(),
        });
        let mut problems = Vec::new();
        let plans = plan_sinks(
            &configs,
            |_, _, _, _| Some((PathBuf::from("/plugins/plugboard-recorder"), Arc::clone(&sink_plugin))),
            &mut problems,
        );
        assert_eq!(
            problems,
            [
                "sinks[2] \"out\": restart and health apply to plugin sinks only (a stdout sink runs in the host, with no process to restart or check)",
                "sinks[3] \"f\": restart and health apply to plugin sinks only (a file sink runs in the host, with no process to restart or check)",
            ]
        );
        let SinkKind::Plugin { restart, health, .. } = &plans[0].kind else { panic!("{:?}", plans[0].kind) };
        let restart = restart.as_ref().unwrap();
        assert_eq!(
            (restart.max_restarts, restart.window, restart.initial_backoff),
            (Some(1), Some(Duration::from_secs(60)), None)
        );
        assert_eq!(health.as_ref().unwrap().interval, Some(Duration::ZERO));
        let SinkKind::Plugin { restart, health, .. } = &plans[1].kind else { panic!("{:?}", plans[1].kind) };
        assert_eq!((restart, health), (&None, &None));

        let err =
            serde_yaml::from_str::<Vec<SinkConfig>>("- name: p\n  plugin: recorder\n  restart: { max_restart: 1 }\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("unknown field `max_restart`"), "{err}");
    }

    #[test]
    fn retry_delays_grow_to_the_cap_with_jitter() {
        let r = RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            multiplier: 2.0,
        };
        assert_eq!(r.base_delay(1), Duration::from_millis(100));
        assert_eq!(r.base_delay(3), Duration::from_millis(400));
        assert_eq!(r.base_delay(30), Duration::from_secs(1));
        for attempt in 1..10 {
            let d = r.delay(attempt);
            assert!(d >= r.base_delay(attempt) / 2 && d <= r.base_delay(attempt), "{d:?}");
        }
    }
}
