//! The operator's YAML configuration: typed, unknown fields refused, errors
//! with file, line and column.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::isolation::{ByteSize, Level, LimitsConfig, with_isolation_fields};

/// One plugboard configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of plugin executables; relative paths are relative to the
    /// config file. Default: `plugins` beside the plugboard executable.
    #[serde(default)]
    pub plugins_dir: Option<PathBuf>,
    /// From starting a plugin to it being healthy (default 60 s).
    #[serde(default, with = "humantime_serde")]
    pub start_timeout: Option<Duration>,
    /// How a plugin may take to exit after Shutdown before SIGKILL (default 2 s).
    #[serde(default, with = "humantime_serde")]
    pub kill_grace: Option<Duration>,
    /// Restart backoff for crashed plugins.
    #[serde(default)]
    pub restart: RestartConfig,
    /// Periodic health checks of running plugins.
    #[serde(default)]
    pub health: HealthConfig,
    /// How the host stops on SIGTERM/SIGINT.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// The HTTP API server.
    #[serde(default)]
    pub http: super::http::HttpConfig,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub executors: Vec<ExecutorConfig>,
    /// Where the host keeps its durable state (the event store); relative
    /// paths are relative to the config file. Default: see
    /// [`super::state::default_state_dir`].
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Which events go to which sinks; none: every event to every sink.
    #[serde(default)]
    pub routes: Vec<super::routing::RouteConfig>,
    /// Where events are delivered; none: one `stdout` sink.
    #[serde(default)]
    pub sinks: Vec<super::sinks::SinkConfig>,
    /// Chat-ops: permissions, groups, Slack and Mattermost slash commands.
    #[serde(default)]
    pub commands: super::commands::CommandsConfig,
    /// Chat-ops: commands run on events (event → command → output event).
    #[serde(default)]
    pub automations: Vec<super::commands::automation::AutomationConfig>,
    /// Per-executable launch settings (AutoMTLS, checksum pinning, address
    /// policy), keyed by the executable's file name in `plugins_dir`.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Resource limits of every plugin process (instances and `plugins:` entries override).
    #[serde(default)]
    pub limits: Option<LimitsConfig>,
    /// Host variables every plugin gets (when set).
    #[serde(default)]
    pub env_allow: Vec<String>,
    /// Give every plugin the host's whole environment (default: scrubbed).
    #[serde(default)]
    pub inherit_env: Option<bool>,
    /// Largest gRPC message to or from any plugin (default 64 MiB).
    #[serde(default)]
    pub max_message_size: Option<ByteSize>,
    /// Hot plug: watching the plugins directory and this file.
    #[serde(default)]
    pub reload: ReloadConfig,
}

/// Hot plug (`reload:`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Reload when the plugins directory or the config file changes (SIGHUP
    /// reloads either way).
    pub watch: bool,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self { watch: true }
    }
}

with_isolation_fields! {
/// How one plugin executable is launched.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// go-plugin AutoMTLS (default on): a per-launch certificate, TLS pinned
    /// to the plugin's own. Turn off for plugins that cannot do TLS.
    #[serde(default)]
    pub automtls: Option<bool>,
    /// Expected SHA-256 of the executable (64 hex digits): any other binary
    /// is refused, and the file that was hashed is the one executed.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Accept a Unix socket outside the private per-launch directory.
    #[serde(default)]
    pub allow_socket_outside_dir: bool,
    /// Accept a TCP address that is not loopback.
    #[serde(default)]
    pub allow_non_loopback_tcp: bool,
}
}

/// Exponential backoff with jitter between restarts of a crashed plugin, and
/// the circuit breaker: more than `max_restarts` failures within `window`
/// deactivate the instance until an operator enables it again.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartConfig {
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    pub multiplier: f64,
    /// A plugin that ran this long without failing starts again from
    /// `initial_backoff`, with its failures forgotten.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
    /// Restarts allowed within `window`; the next failure deactivates the instance.
    pub max_restarts: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
}

impl Default for RestartConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            reset_after: Duration::from_secs(60),
            max_restarts: 10,
            window: Duration::from_secs(600),
        }
    }
}

/// `restart:` of one instance: the fields it sets replace the top-level ones.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RestartOverride {
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Option<Duration>,
    pub multiplier: Option<f64>,
    #[serde(with = "humantime_serde")]
    pub reset_after: Option<Duration>,
    pub max_restarts: Option<u32>,
    #[serde(with = "humantime_serde")]
    pub window: Option<Duration>,
}

impl RestartOverride {
    pub fn apply(&self, base: &RestartConfig) -> RestartConfig {
        RestartConfig {
            initial_backoff: self.initial_backoff.unwrap_or(base.initial_backoff),
            max_backoff: self.max_backoff.unwrap_or(base.max_backoff),
            multiplier: self.multiplier.unwrap_or(base.multiplier),
            reset_after: self.reset_after.unwrap_or(base.reset_after),
            max_restarts: self.max_restarts.unwrap_or(base.max_restarts),
            window: self.window.unwrap_or(base.window),
        }
    }
}

/// go-plugin's `Ping` (grpc.health.v1 for service "plugin") every
/// `interval`: after `failures` failed checks in a row (no answer within
/// `timeout`, or not SERVING) the plugin is killed and restarted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Time between checks; 0 turns checks off.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub failures: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(10), timeout: Duration::from_secs(5), failures: 2 }
    }
}

/// `health:` of one instance: the fields it sets replace the top-level ones.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthOverride {
    #[serde(with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub failures: Option<u32>,
}

impl HealthOverride {
    pub fn apply(&self, base: &HealthConfig) -> HealthConfig {
        HealthConfig {
            interval: self.interval.unwrap_or(base.interval),
            timeout: self.timeout.unwrap_or(base.timeout),
            failures: self.failures.unwrap_or(base.failures),
        }
    }
}

/// Graceful stop: sources first, then in-flight commands and sink
/// deliveries get up to `drain_timeout`, then plugins are shut down through
/// their controller (`kill_grace` each) and killed if they linger.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self { drain_timeout: Duration::from_secs(10) }
    }
}

/// Problems with one restart/health pair (top level or an instance's).
pub fn supervision_problems(at: &str, restart: &RestartConfig, health: &HealthConfig) -> Vec<String> {
    let mut problems = Vec::new();
    if restart.multiplier < 1.0 || !restart.multiplier.is_finite() {
        problems.push(format!("{at}restart.multiplier must be at least 1, not {}", restart.multiplier));
    }
    if restart.window.is_zero() {
        problems.push(format!("{at}restart.window must be greater than zero"));
    }
    if !health.interval.is_zero() && health.timeout.is_zero() {
        problems.push(format!("{at}health.timeout must be greater than zero"));
    }
    if !health.interval.is_zero() && health.failures == 0 {
        problems.push(format!("{at}health.failures must be at least 1"));
    }
    problems
}

with_isolation_fields! {
/// A source instance: one plugin process streaming events.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    pub name: String,
    /// The plugin's described name (or its file name in `plugins_dir`).
    pub plugin: String,
    /// Handed to the plugin as JSON; validated against its config schema.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Event types dropped before they are stored: exact names or `prefix*`.
    #[serde(default)]
    pub drop_types: Vec<String>,
    /// Bearer token for `/v1/sources/{name}` (default: `http.token`).
    #[serde(default)]
    pub http_token: Option<String>,
    /// Restart policy of this instance (over the top-level `restart:`).
    #[serde(default)]
    pub restart: Option<RestartOverride>,
    /// Health checks of this instance (over the top-level `health:`).
    #[serde(default)]
    pub health: Option<HealthOverride>,
}
}

with_isolation_fields! {
/// An executor instance: one plugin process answering commands.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutorConfig {
    pub name: String,
    pub plugin: String,
    /// Command prefixes; default: the ones the plugin describes.
    #[serde(default)]
    pub prefixes: Option<Vec<String>>,
    /// Shorthands expanded before prefix resolution, e.g. `k: kubectl`.
    #[serde(default)]
    pub aliases: BTreeMap<String, String>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    /// Per-command timeout (default 60 s).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Commands this instance runs at once; more get a "busy" reply (default 64).
    #[serde(default)]
    pub max_concurrent: Option<usize>,
    /// Output kept per command, in bytes; the rest is dropped with a notice (default 1 MiB).
    #[serde(default)]
    pub max_output: Option<usize>,
    /// Restart policy of this instance (over the top-level `restart:`).
    #[serde(default)]
    pub restart: Option<RestartOverride>,
    /// Health checks of this instance (over the top-level `health:`).
    #[serde(default)]
    pub health: Option<HealthOverride>,
}
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid config {path}:\n{}", problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
}

impl Config {
    /// Reads and parses a config file; `plugins_dir` becomes absolute.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse { path: path.to_owned(), message })?;
        let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if let Some(dir) = &config.plugins_dir
            && dir.is_relative()
        {
            config.plugins_dir = Some(base.join(dir));
        }
        if let Some(dir) = &config.state_dir
            && dir.is_relative()
        {
            config.state_dir = Some(base.join(dir));
        }
        for sink in &mut config.sinks {
            sink.resolve_paths(base);
        }
        Ok(config)
    }

    /// Parses YAML text; the error says where (line and column) and what.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        serde_yaml::from_str(text).map_err(|e| match e.location() {
            Some(loc) => {
                let message = e.to_string();
                // yaml_serde appends " at line L column C"; say it first, once.
                let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
                format!("line {} column {}: {message}", loc.line(), loc.column())
            }
            None => e.to_string(),
        })
    }

    /// Problems that need no plugin to detect: duplicate names, bad prefixes.
    pub fn static_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            check_name(&mut problems, &mut seen, &format!("sources[{i}]"), &s.name);
            if [super::host_events::HOST_INSTANCE, super::pipeline::HTTP_INSTANCE].contains(&s.name.as_str()) {
                problems.push(format!(
                    "sources[{i}]: instance name {:?} is reserved (host events are stored as \"{}\", POST /v1/events as \"{}\")",
                    s.name,
                    super::host_events::HOST_INSTANCE,
                    super::pipeline::HTTP_INSTANCE
                ));
            }
            if let Err(e) = super::pipeline::DropTypes::new(&s.drop_types) {
                problems.push(format!("sources[{i}] {:?}: {e}", s.name));
            }
        }
        for (i, e) in self.executors.iter().enumerate() {
            let at = format!("executors[{i}]");
            check_name(&mut problems, &mut seen, &at, &e.name);
            for p in e.prefixes.iter().flatten() {
                if !crate::plugin::valid_prefix(p) {
                    problems.push(format!(
                        "{at} {:?}: prefix {p:?} must be words of letters, digits, '-', '_', '.', ':' or '/' separated by single spaces",
                        e.name
                    ));
                }
            }
            for (alias, expansion) in &e.aliases {
                if !crate::plugin::valid_prefix(alias) || expansion.split_whitespace().next().is_none() {
                    problems.push(format!("{at} {:?}: alias {alias:?} -> {expansion:?} is not a valid alias", e.name));
                }
            }
        }
        problems.extend(self.http.problems());
        problems.extend(self.commands.problems());
        problems.extend(super::commands::automation::problems(&self.automations));
        for (i, e) in self.executors.iter().enumerate() {
            if e.max_concurrent == Some(0) || e.max_output == Some(0) {
                problems.push(format!(
                    "executors[{i}] {:?}: max_concurrent and max_output must be greater than zero",
                    e.name
                ));
            }
        }
        for (name, settings) in &self.plugins {
            if let Some(Err(e)) = settings.sha256.as_deref().map(crate::launcher::Sha256::from_hex) {
                problems.push(format!("plugins.{name}.sha256: {e}"));
            }
        }
        problems.extend(supervision_problems("", &self.restart, &self.health));
        for (i, s) in self.sources.iter().enumerate() {
            let (restart, health) = self.supervision_of(s.restart.as_ref(), s.health.as_ref());
            problems.extend(supervision_problems(&format!("sources[{i}] {:?}: ", s.name), &restart, &health));
        }
        for (i, e) in self.executors.iter().enumerate() {
            let (restart, health) = self.supervision_of(e.restart.as_ref(), e.health.as_ref());
            problems.extend(supervision_problems(&format!("executors[{i}] {:?}: ", e.name), &restart, &health));
        }
        for (i, s) in self.sinks.iter().enumerate() {
            let (restart, health) = self.supervision_of(s.restart.as_ref(), s.health.as_ref());
            problems.extend(supervision_problems(&format!("sinks[{i}] {:?}: ", s.name), &restart, &health));
        }
        if self.shutdown.drain_timeout.is_zero() {
            problems.push("shutdown.drain_timeout must be greater than zero".into());
        }
        problems
    }
}

impl Config {
    /// The restart policy and health checks of an instance with these overrides.
    pub fn supervision_of(
        &self,
        restart: Option<&RestartOverride>,
        health: Option<&HealthOverride>,
    ) -> (RestartConfig, HealthConfig) {
        (
            restart.map(|r| r.apply(&self.restart)).unwrap_or_else(|| self.restart.clone()),
            health.map(|h| h.apply(&self.health)).unwrap_or_else(|| self.health.clone()),
        )
    }
}

impl Config {
    /// The top-level isolation defaults, as the most general level.
    pub fn isolation_level(&self) -> Level<'_> {
        Level {
            limits: self.limits.as_ref(),
            env: None,
            env_allow: &self.env_allow,
            inherit_env: self.inherit_env,
            run_as: None,
            max_message_size: self.max_message_size,
        }
    }
}

fn check_name(problems: &mut Vec<String>, seen: &mut BTreeMap<String, String>, at: &str, name: &str) {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        problems.push(format!("{at}: instance name {name:?} must be letters, digits, '-', '_' or '.'"));
    }
    if let Some(first) = seen.insert(name.to_owned(), at.to_owned()) {
        problems.push(format!("{at}: instance name {name:?} is already used by {first}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config() {
        let c = Config::parse(
            r#"
plugins_dir: ./plugins
start_timeout: 5s
restart: { initial_backoff: 100ms, max_backoff: 10s }
sources:
  - name: every-second
    plugin: tick
    config: { interval: 1s }
executors:
  - name: echo
    plugin: echo
    prefixes: [echo, "say it"]
    aliases: { e: echo }
    timeout: 30s
"#,
        )
        .unwrap();
        assert_eq!(c.start_timeout, Some(Duration::from_secs(5)));
        assert_eq!(c.restart.initial_backoff, Duration::from_millis(100));
        assert_eq!(c.restart.multiplier, 2.0);
        assert_eq!(c.sources[0].config, Some(serde_json::json!({"interval": "1s"})));
        assert_eq!(c.executors[0].prefixes.as_deref(), Some(&["echo".to_owned(), "say it".to_owned()][..]));
        assert_eq!(c.executors[0].aliases["e"], "echo");
        assert!(c.static_problems().is_empty());
    }

    #[test]
    fn unknown_fields_are_refused_with_line_and_column() {
        let err = Config::parse("sources:\n  - name: a\n    plugn: tick\n").unwrap_err();
        assert!(
            err.starts_with("line 2 column 5: sources[0]: unknown field `plugn`") || err.starts_with("line 3"),
            "{err}"
        );
        assert!(err.contains("unknown field `plugn`"), "{err}");
        assert!(err.contains("expected one of"), "{err}");
    }

    #[test]
    fn bad_durations_say_where() {
        let err = Config::parse("start_timeout: soon\n").unwrap_err();
        assert!(err.starts_with("line 1 column"), "{err}");
    }

    #[test]
    fn duplicate_names_and_bad_prefixes_are_reported() {
        let c = Config::parse(
            "sources: [{name: a, plugin: tick}]\nexecutors: [{name: a, plugin: echo, prefixes: ['bad  prefix']}]\n",
        )
        .unwrap();
        let problems = c.static_problems();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("already used by sources[0]"), "{problems:?}");
        assert!(problems[1].contains("prefix \"bad  prefix\""), "{problems:?}");
    }

    #[test]
    fn plugin_settings_parse_and_bad_digests_are_reported() {
        let c = Config::parse(&format!(
            "plugins:\n  plugboard-echo: {{ automtls: false, sha256: {} }}\n  other: {{ sha256: xyz }}\n",
            "ab".repeat(32)
        ))
        .unwrap();
        assert_eq!(c.plugins["plugboard-echo"].automtls, Some(false));
        let problems = c.static_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("plugins.other.sha256: \"xyz\" is not a SHA-256 digest"), "{problems:?}");
        let err = Config::parse("plugins:\n  x: { automtl: true }\n").unwrap_err();
        assert!(err.contains("unknown field `automtl`"), "{err}");
    }

    #[test]
    fn instance_restart_and_health_override_the_top_level_field_by_field() {
        let c = Config::parse(
            "restart: { initial_backoff: 1s, max_restarts: 5, window: 1m }\nhealth: { interval: 3s }\n\
             shutdown: { drain_timeout: 4s }\n\
             sources:\n  - { name: a, plugin: tick, restart: { max_restarts: 2 }, health: { interval: 0s } }\n  - { name: b, plugin: tick }\n",
        )
        .unwrap();
        assert!(c.static_problems().is_empty(), "{:?}", c.static_problems());
        let (restart, health) = c.supervision_of(c.sources[0].restart.as_ref(), c.sources[0].health.as_ref());
        assert_eq!(
            (restart.initial_backoff, restart.max_restarts, restart.window),
            (Duration::from_secs(1), 2, Duration::from_secs(60))
        );
        assert_eq!((health.interval, health.timeout), (Duration::ZERO, Duration::from_secs(5)));
        let (restart, health) = c.supervision_of(c.sources[1].restart.as_ref(), c.sources[1].health.as_ref());
        assert_eq!(restart.max_restarts, 5);
        assert_eq!(health.interval, Duration::from_secs(3));
        assert_eq!(c.shutdown.drain_timeout, Duration::from_secs(4));

        let bad = Config::parse(
            "restart: { multiplier: 0.5 }\nexecutors:\n  - { name: e, plugin: echo, health: { failures: 0 } }\n",
        )
        .unwrap();
        let problems = bad.static_problems();
        assert!(problems.iter().any(|p| p == "restart.multiplier must be at least 1, not 0.5"), "{problems:?}");
        assert!(problems.iter().any(|p| p == "executors[0] \"e\": health.failures must be at least 1"), "{problems:?}");
        let err = Config::parse("sources:\n  - { name: a, plugin: tick, restart: { max_restart: 2 } }\n").unwrap_err();
        assert!(err.contains("unknown field `max_restart`"), "{err}");
    }

    #[test]
    fn sink_restart_and_health_are_checked_like_the_instances() {
        let c = Config::parse(
            "restart: { max_restarts: 5 }\nsinks:\n  - { name: p, plugin: recorder, restart: { multiplier: 0.5 }, health: { failures: 0 } }\n",
        )
        .unwrap();
        let problems = c.static_problems();
        assert_eq!(
            problems,
            [
                "sinks[0] \"p\": restart.multiplier must be at least 1, not 0.5",
                "sinks[0] \"p\": health.failures must be at least 1"
            ]
        );
    }

    #[test]
    fn isolation_settings_parse_at_every_level() {
        let c = Config::parse(
            r#"
limits: { open_files: 1024, cgroup: "off" }
env_allow: [LANG]
max_message_size: 8MiB
plugins:
  plugboard-faulty: { limits: { memory: 512MiB }, run_as: "nobody:nogroup" }
executors:
  - name: f
    plugin: faulty
    limits: { memory: 256MiB, cpu_time: 60s, cpu_rate: 0.5, open_files: 256, processes: 64 }
    env: { GREETING: hello }
    env_allow: [RUST_LOG]
    max_message_size: 4194304
sources:
  - { name: s, plugin: tick, inherit_env: true }
sinks:
  - { name: p, plugin: faulty, max_message_size: 1M }
"#,
        )
        .unwrap();
        let limits = c.executors[0].limits.as_ref().unwrap();
        assert_eq!(limits.memory, Some(ByteSize(256 << 20)));
        assert_eq!(limits.cpu_time, Some(Duration::from_secs(60)));
        assert_eq!(limits.cpu_rate, Some(0.5));
        assert_eq!((limits.open_files, limits.processes), (Some(256), Some(64)));
        assert_eq!(c.executors[0].env["GREETING"], "hello");
        assert_eq!(c.executors[0].max_message_size, Some(ByteSize(4 << 20)));
        assert_eq!(c.plugins["plugboard-faulty"].run_as.as_deref(), Some("nobody:nogroup"));
        assert_eq!(c.sources[0].inherit_env, Some(true));
        assert_eq!(c.sinks[0].max_message_size, Some(ByteSize(1 << 20)));
        assert_eq!(c.max_message_size, Some(ByteSize(8 << 20)));
        assert_eq!(c.limits.as_ref().unwrap().cgroup.as_deref(), Some("off"));
    }

    #[test]
    fn unknown_fields_beside_the_isolation_fields_are_refused_with_line_and_column() {
        let cases = [
            (
                "sources:\n  - name: s\n    plugin: tick\n    limits: { open_files: 64 }\n    env_alow: [X]\n",
                "sources[0]",
            ),
            ("executors:\n  - name: e\n    plugin: echo\n    run_as: nobody\n    env_alow: [X]\n", "executors[0]"),
            ("plugins:\n  plugboard-echo:\n    inherit_env: true\n    env_alow: [X]\n", "plugins.plugboard-echo"),
            ("sinks:\n  - name: p\n    plugin: faulty\n    max_message_size: 1M\n    env_alow: [X]\n", "sinks[0]"),
        ];
        for (yaml, at) in cases {
            let err = Config::parse(yaml).unwrap_err();
            assert!(err.starts_with("line ") && err.contains(" column "), "{err}");
            assert!(err.contains(&format!("{at}: unknown field `env_alow`")), "{err}");
            assert!(err.contains("`max_message_size`"), "the isolation fields are expected there too: {err}");
        }
    }

    #[test]
    fn bad_limit_values_name_the_field_and_line() {
        let err =
            Config::parse("executors:\n  - name: f\n    plugin: faulty\n    limits: { memory: lots }\n").unwrap_err();
        assert!(err.starts_with("line 4 column "), "{err}");
        assert!(err.contains("executors[0].limits.memory: invalid size \"lots\""), "{err}");
        let err = Config::parse("sources:\n  - name: s\n    plugin: tick\n    limits:\n      cpu_time: forever\n")
            .unwrap_err();
        assert!(err.starts_with("line 5 column "), "{err}");
        assert!(err.contains("sources[0].limits.cpu_time"), "{err}");
        let err = Config::parse("limits: { open_files: many }\n").unwrap_err();
        assert!(err.starts_with("line 1 column ") && err.contains("limits.open_files: invalid type"), "{err}");
        let err = Config::parse("max_message_size: -3\n").unwrap_err();
        assert!(err.starts_with("line 1 column ") && err.contains("max_message_size: invalid size"), "{err}");
        let err = Config::parse("limits: { memroy: 1G }\n").unwrap_err();
        assert!(err.contains("unknown field `memroy`"), "{err}");
    }

    #[test]
    fn empty_file_is_an_empty_config() {
        let c = Config::parse("\n").unwrap();
        assert!(c.sources.is_empty());
    }
}
