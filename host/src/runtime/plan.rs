//! A configuration checked against the plugins that exist: which process to
//! start for each instance, with which config, answering which prefixes.
//! Every problem is found before anything starts.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use plugboard_proto::plugboard::v1::PluginKind;

use super::config::{Config, ConfigError, ExecutorConfig, HealthConfig, RestartConfig, ShutdownConfig, SourceConfig};
use super::pipeline::{DropTypes, HTTP_INSTANCE};
use super::registry::Registry;
use super::resolve::CommandTable;
use super::routing::Routing;
use super::sinks::SinkPlan;
use super::supervisor::Supervision;
use crate::plugin::{Described, StartOptions, kind_name};

/// Default time a command may run.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Default commands one executor instance runs at once.
pub const DEFAULT_MAX_CONCURRENT: usize = 64;
/// Default output bytes kept per command.
pub const DEFAULT_MAX_OUTPUT: usize = 1024 * 1024;

#[derive(Debug, Clone)]
pub struct SourcePlan {
    pub name: String,
    pub path: PathBuf,
    pub plugin: Arc<Described>,
    pub config: serde_json::Value,
    pub drop_types: DropTypes,
    /// Bearer token for `/v1/sources/{name}`, when it differs from `http.token`.
    pub http_token: Option<String>,
    /// Restart policy and health checks (top level with the instance's overrides).
    pub supervision: Supervision,
}

#[derive(Clone)]
pub struct ExecutorPlan {
    pub name: String,
    pub path: PathBuf,
    pub plugin: Arc<Described>,
    pub config: serde_json::Value,
    pub prefixes: Vec<String>,
    pub timeout: Duration,
    /// Commands run at once before callers get a "busy" reply.
    pub max_concurrent: usize,
    /// Output bytes kept per command.
    pub max_output: usize,
    /// Values of config fields the plugin's schema marks secret; masked in
    /// everything the host shows.
    pub secrets: Vec<String>,
    /// Restart policy and health checks (top level with the instance's overrides).
    pub supervision: Supervision,
}

/// Never prints secret config values.
impl std::fmt::Debug for ExecutorPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = super::secrets::mask_text(&self.config.to_string(), &self.secrets);
        f.debug_struct("ExecutorPlan")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("plugin", &self.plugin.info.name)
            .field("config", &config)
            .field("prefixes", &self.prefixes)
            .field("timeout", &self.timeout)
            .field("max_concurrent", &self.max_concurrent)
            .field("max_output", &self.max_output)
            .finish()
    }
}

/// Everything `run`, `exec` and `plugins` need, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sources: Vec<SourcePlan>,
    pub executors: Vec<ExecutorPlan>,
    pub table: CommandTable,
    pub start: StartOptions,
    pub restart: RestartConfig,
    /// Health checks of instances without their own (plugin sinks).
    pub health: HealthConfig,
    /// How the host stops.
    pub shutdown: ShutdownConfig,
    /// Where events go (at least one sink: `stdout` when none is configured).
    pub sinks: Vec<SinkPlan>,
    pub routing: Arc<Routing>,
}

impl Plan {
    pub fn executor(&self, name: &str) -> Option<&ExecutorPlan> {
        self.executors.iter().find(|e| e.name == name)
    }
}

/// The configuration used when no `--config` is given: one `tick` source
/// every second, and every executor found in the plugins directory.
pub fn embedded_default(registry: &Registry) -> Config {
    let mut executors: Vec<ExecutorConfig> = registry
        .described()
        .filter(|(_, d)| d.has_kind(PluginKind::Executor))
        .map(|(_, d)| ExecutorConfig { name: d.info.name.clone(), plugin: d.info.name.clone(), ..Default::default() })
        .collect();
    // Two executables of one name make one instance, which the plan then
    // reports as ambiguous (naming both files).
    let mut seen = std::collections::BTreeSet::new();
    executors.retain(|e| seen.insert(e.name.clone()));
    Config {
        plugins_dir: Some(registry.dir.clone()),
        sources: vec![SourceConfig {
            name: "tick".into(),
            plugin: "tick".into(),
            config: Some(serde_json::json!({ "interval": "1s" })),
            ..Default::default()
        }],
        executors,
        ..Config::default()
    }
}

/// Start options from the config's timeouts, launch settings and isolation
/// defaults (per instance isolation is added by [`plan`]).
pub fn start_options(config: &Config) -> StartOptions {
    start_options_checked(config, &mut Vec::new())
}

fn start_options_checked(config: &Config, problems: &mut Vec<String>) -> StartOptions {
    let defaults = StartOptions::default();
    let top = config.isolation_level();
    let isolation = crate::plugin::IsolationTable {
        default: super::isolation::resolve("top level", &[top], problems),
        executables: config
            .plugins
            .iter()
            .map(|(name, settings)| {
                let at = format!("plugins.{name}");
                (name.clone(), super::isolation::resolve(&at, &[top, settings.isolation_level()], problems))
            })
            .collect(),
        instances: Default::default(),
    };
    StartOptions {
        isolation: Arc::new(isolation),
        start_timeout: config.start_timeout.unwrap_or(defaults.start_timeout),
        kill_grace: config.kill_grace.unwrap_or(defaults.kill_grace),
        redact: Vec::new(),
        security: std::sync::Arc::new(
            config.plugins.iter().map(|(name, settings)| (name.clone(), launch_security(settings))).collect(),
        ),
        ..defaults
    }
}

/// A `plugins:` entry as launch settings (digests were checked by `static_problems`).
fn launch_security(settings: &super::config::PluginSettings) -> crate::plugin::LaunchSecurity {
    let defaults = crate::plugin::LaunchSecurity::default();
    crate::plugin::LaunchSecurity {
        auto_mtls: settings.automtls.unwrap_or(defaults.auto_mtls),
        sha256: settings.sha256.as_deref().and_then(|h| crate::launcher::Sha256::from_hex(h).ok()),
        address_policy: crate::launcher::AddressPolicy {
            allow_socket_outside_dir: settings.allow_socket_outside_dir,
            allow_non_loopback_tcp: settings.allow_non_loopback_tcp,
        },
    }
}

/// Checks `config` against the discovered plugins. `origin` names the file
/// (or "embedded default") in errors.
pub fn plan(config: &Config, registry: &Registry, origin: PathBuf) -> Result<Plan, ConfigError> {
    let root = config;
    let mut problems = config.static_problems();
    let mut start = start_options_checked(config, &mut problems);
    let isolation = instance_isolation(config, registry, &start, &mut problems);
    start.isolation = Arc::new(crate::plugin::IsolationTable { instances: isolation, ..(*start.isolation).clone() });
    for name in config.plugins.keys() {
        if !registry.entries.iter().any(|e| &e.file_name == name) {
            problems.push(format!(
                "plugins.{name}: no executable named {name:?} in {} (keys are file names of plugin executables)",
                registry.dir.display()
            ));
        }
    }
    let mut sources = Vec::new();
    let mut executors = Vec::new();
    let mut table = CommandTable::default();

    for (i, s) in config.sources.iter().enumerate() {
        let at = format!("sources[{i}] {:?}", s.name);
        let Some((path, plugin)) = find_plugin(registry, &at, &s.plugin, PluginKind::Source, &mut problems) else {
            continue;
        };
        let config = instance_config(&s.config);
        check_config(&at, &plugin, &config, &mut problems);
        // A bad pattern is reported by static_problems.
        let drop_types = DropTypes::new(&s.drop_types).unwrap_or_default();
        let http_token = s.http_token.clone().filter(|t| !t.is_empty());
        let (restart, health) = root.supervision_of(s.restart.as_ref(), s.health.as_ref());
        sources.push(SourcePlan {
            name: s.name.clone(),
            path,
            plugin,
            config,
            drop_types,
            http_token,
            supervision: Supervision { restart, health },
        });
    }

    for (i, e) in config.executors.iter().enumerate() {
        let at = format!("executors[{i}] {:?}", e.name);
        let Some((path, plugin)) = find_plugin(registry, &at, &e.plugin, PluginKind::Executor, &mut problems) else {
            continue;
        };
        let config = instance_config(&e.config);
        check_config(&at, &plugin, &config, &mut problems);
        let prefixes = e.prefixes.clone().unwrap_or_else(|| plugin.info.command_prefixes.clone());
        if prefixes.is_empty() {
            problems.push(format!("{at}: no command prefixes"));
        }
        for p in &prefixes {
            if let Err(err) = table.add_prefix(p, &e.name) {
                problems.push(format!("{at}: {err}"));
            }
        }
        for (alias, expansion) in &e.aliases {
            if let Err(err) = table.add_alias(alias, expansion, &e.name) {
                problems.push(format!("{at}: {err}"));
            }
        }
        if prefixes.iter().any(|p| p.split(' ').next() == Some(super::commands::HELP)) {
            problems.push(format!("{at}: the prefix {:?} is built in and cannot be claimed", super::commands::HELP));
        }
        let secrets = super::secrets::schema_secrets(&plugin.info.config_schema, &config);
        executors.push(ExecutorPlan {
            name: e.name.clone(),
            path,
            plugin,
            config,
            prefixes,
            timeout: e.timeout.unwrap_or(DEFAULT_COMMAND_TIMEOUT),
            max_concurrent: e.max_concurrent.unwrap_or(DEFAULT_MAX_CONCURRENT),
            max_output: e.max_output.unwrap_or(DEFAULT_MAX_OUTPUT),
            secrets,
            supervision: {
                let (restart, health) = root.supervision_of(e.restart.as_ref(), e.health.as_ref());
                Supervision { restart, health }
            },
        });
    }

    let sinks = super::sinks::config::plan_sinks(
        &config.sinks,
        |at, name, kind, problems| find_plugin(registry, at, name, kind, problems),
        &mut problems,
    );
    let mut source_names: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
    for pseudo in [super::host_events::HOST_INSTANCE, HTTP_INSTANCE] {
        if !source_names.contains(&pseudo) {
            source_names.push(pseudo);
        }
    }
    // Every configured name counts, even of a sink with problems of its own.
    let sink_names: Vec<&str> = if config.sinks.is_empty() {
        sinks.iter().map(|s| &*s.name).collect()
    } else {
        config.sinks.iter().map(|s| s.name.as_str()).collect()
    };
    let automation_names: Vec<&str> = config.automations.iter().map(|a| a.name.as_str()).collect();
    let routing = Routing::compile(&config.routes, &source_names, &sink_names, &automation_names, &mut problems);
    let mut sinks = sinks;
    sinks.extend(config.automations.iter().map(|a| super::sinks::SinkPlan {
        name: Arc::from(format!("{}{}", super::sinks::AUTOMATION_SINK_PREFIX, a.name)),
        kind: super::sinks::SinkKind::Automation { name: a.name.clone() },
        retry: Default::default(),
        batch_size: super::sinks::config::DEFAULT_BATCH_SIZE,
    }));

    if !problems.is_empty() {
        return Err(ConfigError::Invalid { path: origin, problems });
    }
    let plugin_names =
        Arc::new(registry.described().map(|(e, d)| (e.file_name.clone(), d.info.name.clone())).collect());
    Ok(Plan {
        sources,
        executors,
        table,
        start: StartOptions { plugin_names, ..start },
        restart: config.restart.clone(),
        health: config.health.clone(),
        shutdown: config.shutdown.clone(),
        sinks,
        routing: Arc::new(routing),
    })
}

/// Every instance's isolation: top level, then its executable's `plugins:`
/// entry, then its own settings. Checks that each can be enforced here and
/// logs how.
fn instance_isolation(
    config: &Config,
    registry: &Registry,
    start: &StartOptions,
    problems: &mut Vec<String>,
) -> std::collections::BTreeMap<String, crate::plugin::Isolation> {
    use super::config::PluginSettings;
    let exe_settings = |plugin: &str| -> Option<&PluginSettings> {
        let file_name = registry.find(plugin).map(|(entry, _)| entry.file_name.clone())?;
        config.plugins.get(&file_name)
    };
    let top = config.isolation_level();
    let mut instances: std::collections::BTreeMap<String, crate::plugin::Isolation> = Default::default();
    let mut add = |at: String,
                   name: &str,
                   plugin: &str,
                   own: super::isolation::Level<'_>,
                   problems: &mut Vec<String>| {
        let mut levels = vec![top];
        levels.extend(exe_settings(plugin).map(PluginSettings::isolation_level));
        levels.push(own);
        let isolation = super::isolation::resolve(&at, &levels, problems);
        let summary = super::isolation::describe(&at, &isolation, problems);
        tracing::info!(instance = %name, plugin = %plugin, "isolation: {summary}");
        match instances.get(name) {
            Some(other) if *other != isolation => problems.push(format!(
                "{at}: another instance is also named {name:?} with other limits, environment or run_as; give it a name of its own"
            )),
            _ => {
                instances.insert(name.to_owned(), isolation);
            }
        }
    };
    for (i, s) in config.sources.iter().enumerate() {
        add(format!("sources[{i}] {:?}", s.name), &s.name, &s.plugin, s.isolation_level(), problems);
    }
    for (i, e) in config.executors.iter().enumerate() {
        add(format!("executors[{i}] {:?}", e.name), &e.name, &e.plugin, e.isolation_level(), problems);
    }
    for (i, s) in config.sinks.iter().enumerate() {
        let at = format!("sinks[{i}] {:?}", s.name);
        match &s.plugin {
            Some(plugin) => add(at, &s.name, plugin, s.isolation_level(), problems),
            None if s.sets_isolation() => {
                problems.push(format!(
                    "{at}: limits, env, env_allow, inherit_env, run_as and max_message_size apply to plugin sinks only"
                ));
            }
            None => {}
        }
    }
    // Executables' own settings are checked once too (they apply when plugins are described).
    for (name, isolation) in &start.isolation.executables {
        super::isolation::describe(&format!("plugins.{name}"), isolation, problems);
    }
    instances
}

fn instance_config(config: &Option<serde_json::Value>) -> serde_json::Value {
    match config {
        None | Some(serde_json::Value::Null) => serde_json::Value::Object(Default::default()),
        Some(v) => v.clone(),
    }
}

fn find_plugin(
    registry: &Registry,
    at: &str,
    name: &str,
    kind: PluginKind,
    problems: &mut Vec<String>,
) -> Option<(PathBuf, Arc<Described>)> {
    if let Some(clash) = registry.ambiguous(name) {
        problems.push(format!("{at}: {clash}"));
        return None;
    }
    match registry.find(name) {
        Some((entry, described)) if described.has_kind(kind) => Some((entry.path.clone(), Arc::clone(described))),
        Some((_, described)) => {
            problems.push(format!(
                "{at}: plugin {name:?} is a {} plugin, not a {}",
                described.kinds_text(),
                kind_name(kind)
            ));
            None
        }
        None => {
            match registry.broken(name) {
                Some(entry) => problems.push(format!(
                    "{at}: plugin {name:?} ({}) could not be described: {}",
                    entry.path.display(),
                    entry.described.as_ref().err().map(String::as_str).unwrap_or_default()
                )),
                None => {
                    let known = registry.names();
                    problems.push(format!(
                        "{at}: unknown plugin {name:?}; plugins in {}: {}",
                        registry.dir.display(),
                        if known.is_empty() {
                            "none (run `make` to build and install the contrib plugins)".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ));
                }
            }
            None
        }
    }
}

fn check_config(at: &str, plugin: &Described, config: &serde_json::Value, problems: &mut Vec<String>) {
    if let Err(errors) = plugin.schema.validate(config) {
        // Schema errors quote the offending value: never a secret one.
        let secrets = super::secrets::schema_secrets(&plugin.info.config_schema, config);
        for e in errors {
            let e = super::secrets::mask_text(&e, &secrets);
            problems.push(format!("{at}: config rejected by plugin {:?}'s schema: {e}", plugin.info.name));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_settings_become_launch_security_by_file_name() {
        let config = Config::parse(&format!(
            "plugins:\n  plugboard-py-counter: {{ automtls: false, sha256: {}, allow_socket_outside_dir: true }}\n",
            "ab".repeat(32)
        ))
        .unwrap();
        let start = start_options(&config);
        let pinned = start.security_for(std::path::Path::new("/some/dir/plugboard-py-counter"));
        assert!(!pinned.auto_mtls);
        assert_eq!(pinned.sha256.map(|d| d.to_hex()), Some("ab".repeat(32)));
        assert!(pinned.address_policy.allow_socket_outside_dir);
        assert!(!pinned.address_policy.allow_non_loopback_tcp);
        // Everything else: AutoMTLS on, nothing pinned, strict addresses.
        let other = start.security_for(std::path::Path::new("/some/dir/plugboard-echo"));
        assert_eq!(other, crate::plugin::LaunchSecurity::default());
        assert!(other.auto_mtls);
    }
}
