//! Hot plug: the running host follows its plugins directory and config file.
//!
//! - [`watch`]: file changes (debounced until binaries are fully written) and
//!   SIGHUP become reload requests;
//! - [`discover`]: the plugins directory described again, only what changed;
//! - [`diff`]: the running plan against the new one, instance by instance;
//! - [`Reloader`]: loads, checks and applies a new plan through the narrow
//!   [`Instances`] seam — only the instances the diff names are touched.
//!
//! A config that does not parse or does not check against the plugins is
//! rejected as a whole (logged with file, line and column, and reported as
//! `dev.plugboard.config.rejected`): the running set stays as it is.

pub mod diff;
pub mod discover;
pub mod identity;
pub mod running;
pub mod settings;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use diff::{InstanceKey, Kind, PlanDiff};
pub use identity::{BinaryId, Identities};
pub use watch::{ReloadRequest, Trigger, WatchOptions};

use super::config::{Config, ConfigError};
use super::host_events::HostEvents;
use super::plan::{self, Plan};
use super::registry::Registry;
use super::sinks::SinkKind;

/// CloudEvent type of a reload that was applied.
pub const RELOADED: &str = "dev.plugboard.config.reloaded";
/// CloudEvent type of a reload that was refused.
pub const REJECTED: &str = "dev.plugboard.config.rejected";

/// Top-level config sections a reload applies; a change anywhere else takes
/// effect at the next start (and is said so).
const RELOADABLE: &[&str] = &[
    "sources",
    "executors",
    "sinks",
    "routes",
    "plugins",
    "plugins_dir",
    "start_timeout",
    "kill_grace",
    "restart",
    "health",
    "reload",
    "automations",
];

/// Sections a reload applies only in part: the keys listed apply live, a
/// change to any other key takes effect at the next start (reported as
/// `section.key`).
const PARTLY_RELOADABLE: &[(&str, &[&str])] = &[
    // Policies and groups are swapped in one step. The Slack and Mattermost
    // endpoints hold their secrets, ack budget and response type in the
    // router built at start (mounted only when configured), so a change
    // there waits for the next start.
    ("commands", &["groups", "policies"]),
    // Tokens are read per request; a new address or body limit moves the
    // listener. Turning the server on or off waits for the next start (the
    // router is built with the host).
    ("http", &["token", "events_token", "listen", "body_limit"]),
];

/// What the reloader needs from the running host: the controls of single
/// instances and the command path's table. Nothing else is touched.
#[tonic::async_trait]
pub trait Instances: Send + Sync {
    /// Starts the instance `key` as `plan` describes it.
    async fn start(&self, key: &InstanceKey, plan: &Arc<Plan>) -> Result<(), String>;
    /// Stops the instance `key` (its process is shut down through its
    /// controller) and forgets it.
    async fn stop(&self, key: &InstanceKey);
    /// Makes `plan`'s command table (prefixes, aliases) the one commands
    /// resolve against, in one step.
    fn swap_commands(&self, plan: &Arc<Plan>);
    /// Makes `plan`'s routes the ones every sink's dispatcher follows, in
    /// one step (from each dispatcher's next batch on; nothing restarts).
    fn swap_routes(&self, plan: &Arc<Plan>);
    /// Starts executor `key`'s new instance in place of the running one,
    /// which keeps its process (and the commands running on it) until
    /// [`Instances::drain_retired`].
    async fn replace_executor(&self, key: &InstanceKey, plan: &Arc<Plan>) -> Result<(), String> {
        self.stop(key).await;
        self.start(key, plan).await
    }
    /// Takes the removed executor `key` out of the command path (called once
    /// the table no longer names it); its process stays until
    /// [`Instances::drain_retired`].
    async fn retire_executor(&self, key: &InstanceKey) {
        self.stop(key).await;
    }
    /// Lets the commands of replaced and removed executors finish (up to
    /// `drain`), then stops their processes; in the background, so the next
    /// reload is not held up.
    fn drain_retired(&self, _drain: std::time::Duration) {}
    /// Applies the settings a reload changes in place: the command policy,
    /// the automations and the HTTP tokens. Called before any instance is
    /// touched, so an automation is known before its feed starts (and
    /// forgotten before its feed stops). In-flight commands and requests
    /// finish under the old ones.
    fn swap_settings(&self, _config: &Config) {}
    /// Publishes the `/v1/sources/{name}` endpoints of `plan`'s sources
    /// (after they started: a new one is reachable, a removed one is not).
    fn swap_source_endpoints(&self, _config: &Config, _plan: &Arc<Plan>) {}
    /// Moves the HTTP listener to `config`'s `http.listen` (and body limit)
    /// when they changed: the new one serves before the old one stops; an
    /// address that cannot be bound is an error and the old one keeps serving.
    async fn rebind_http(&self, _config: &Config) -> Result<(), String> {
        Ok(())
    }
}

/// Where the config comes from, and the command-line override that matters to a reload.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The config file; `None` runs the embedded default (every executor
    /// found in the plugins directory gets an instance).
    pub config: Option<PathBuf>,
    /// `--plugins-dir`, which wins over the config's `plugins_dir`.
    pub plugins_dir: Option<PathBuf>,
    /// `--listen`, which wins over the config's `http.listen`.
    pub listen: Option<std::net::SocketAddr>,
}

impl Origin {
    /// The origin name used in errors.
    fn name(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(|| PathBuf::from("<embedded default>"))
    }
}

/// What is running: the plan and what it was made from.
#[derive(Debug, Clone)]
pub struct Current {
    pub plan: Arc<Plan>,
    pub registry: Registry,
    pub ids: Identities,
    /// The config file as YAML (to tell which sections changed).
    pub yaml: Option<serde_yaml::Value>,
}

/// What the files were when `run` loaded them: taken right after loading,
/// so a change made while the host starts is noticed once it runs.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub registry: Registry,
    pub ids: Identities,
    pub yaml: Option<serde_yaml::Value>,
}

impl Loaded {
    pub fn take(registry: Registry, origin: &Origin) -> Self {
        let ids = identity::snapshot(&registry.dir).unwrap_or_default();
        let yaml = origin.config.as_deref().and_then(|p| read_yaml(p).ok());
        Self { registry, ids, yaml }
    }
}

impl Current {
    pub fn new(plan: Arc<Plan>, loaded: Loaded) -> Self {
        Self { plan, registry: loaded.registry, ids: loaded.ids, yaml: loaded.yaml }
    }
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum Rejected {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
}

/// Loads, checks and applies new plans.
pub struct Reloader {
    origin: Origin,
    current: Current,
    instances: Arc<dyn Instances>,
    events: Option<HostEvents>,
    /// Whether files are watched (only for the log).
    watching: bool,
}

/// What a reload did (also the data of `config.reloaded`).
#[derive(Debug, Clone)]
pub struct Applied {
    pub diff: PlanDiff,
    /// Instances whose plugin executable is gone: stopped, waiting for it.
    pub missing: Vec<String>,
    /// Changed sections that take effect at the next start.
    pub needs_restart: Vec<String>,
    /// Instances that could not be started.
    pub failed: Vec<String>,
    /// Why the new `http.listen` was not taken (the old listener serves on).
    pub http_error: Option<String>,
}

impl Reloader {
    pub fn new(origin: Origin, current: Current, instances: Arc<dyn Instances>, events: Option<HostEvents>) -> Self {
        Self { origin, current, instances, events, watching: true }
    }

    /// The running plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.current.plan
    }

    /// Whether the files changed since they were loaded (before anything watched them).
    fn stale(&self) -> bool {
        let ids = identity::snapshot(&self.current.registry.dir).unwrap_or_default();
        let yaml = self.origin.config.as_deref().and_then(|p| read_yaml(p).ok());
        ids != self.current.ids || yaml != self.current.yaml
    }

    /// Serves reload requests until `shutdown`.
    pub async fn run(mut self, mut requests: tokio::sync::mpsc::Receiver<ReloadRequest>, shutdown: CancellationToken) {
        if self.stale() {
            let request = ReloadRequest { triggers: [Trigger::Startup].into() };
            tokio::select! {
                _ = self.reload(&request) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        tracing::info!(watch = self.watching, "hot plug ready: SIGHUP reloads");
        loop {
            let request = tokio::select! {
                r = requests.recv() => match r { Some(r) => r, None => return },
                _ = shutdown.cancelled() => return,
            };
            // A reload half-applied at shutdown is harmless: everything stops.
            tokio::select! {
                _ = self.reload(&request) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One reload: logged, reported as a host event, applied or refused.
    pub async fn reload(&mut self, request: &ReloadRequest) -> Result<Applied, Rejected> {
        let reason = request.reason();
        let origin = self.origin.name();
        match self.try_reload().await {
            Ok(applied) => {
                let diff = &applied.diff;
                tracing::info!(config = %origin.display(), trigger = %reason, "config reloaded: {}", diff.summary());
                for r in &diff.restarted {
                    tracing::info!(instance = %r.key.name, kind = r.key.kind.as_str(), "restarted by reload: {}", r.reason);
                }
                if !applied.needs_restart.is_empty() {
                    tracing::warn!(
                        config = %origin.display(),
                        "changes to {} take effect at the next start of plugboard",
                        applied.needs_restart.join(", ")
                    );
                }
                self.emit(RELOADED, reloaded_data(&origin, &reason, &applied)).await;
                Ok(applied)
            }
            Err(e) => {
                tracing::error!(
                    config = %origin.display(),
                    trigger = %reason,
                    "config rejected, the running plugins are kept: {e}"
                );
                let data = json!({ "config": origin.display().to_string(), "trigger": reason, "error": e.to_string() });
                self.emit(REJECTED, data).await;
                Err(e)
            }
        }
    }

    async fn emit(&self, ty: &str, data: serde_json::Value) {
        let Some(events) = &self.events else { return };
        events.emit(super::commands::audit::json_event(ty, &data)).await;
    }

    async fn try_reload(&mut self) -> Result<Applied, Rejected> {
        let (mut config, yaml) = match &self.origin.config {
            Some(path) => (Config::load(path)?, read_yaml(path).ok()),
            None => (Config::default(), None),
        };
        if let Some(dir) = &self.origin.plugins_dir {
            config.plugins_dir = Some(dir.clone());
        }
        let dir = config.plugins_dir.clone().unwrap_or_else(|| self.current.registry.dir.clone());
        let start = plan::start_options(&config);
        let (registry, ids) = discover::rediscover(&self.current.registry, &self.current.ids, &dir, &start).await?;
        let missing = if self.origin.config.is_some() {
            set_aside_missing(&mut config, &registry, &self.current.plan)
        } else {
            config = plan::embedded_default(&registry);
            Vec::new()
        };
        if let Some(listen) = self.origin.listen {
            config.http.listen = listen;
        }
        let new = Arc::new(plan::plan(&config, &registry, self.origin.name())?);
        let needs_restart = changed_sections(self.current.yaml.as_ref(), yaml.as_ref());
        let diff = diff::diff(&self.current.plan, &self.current.ids, &new, &ids);
        self.instances.swap_settings(&config);
        let failed = self.apply(&diff, &new).await;
        self.instances.swap_source_endpoints(&config, &new);
        let http_error = self.instances.rebind_http(&config).await.err();
        if let Some(e) = &http_error {
            tracing::error!(config = %self.origin.name().display(), "http.listen not applied: {e}");
        }
        self.current = Current { plan: new, registry, ids, yaml };
        Ok(Applied { diff, missing, needs_restart, failed, http_error })
    }

    /// Stops what goes or changes, swaps the routes, starts what comes or
    /// changed (sinks first, so a sink and a source added together miss
    /// none of its events), then swaps the command table: commands never
    /// resolve to an instance that is not there, except for the moment a
    /// restarted one starts again.
    ///
    /// Executors are not stopped first: a restarted one's successor takes
    /// new commands at once, a removed one leaves with the table swap, and
    /// both old processes keep running until their commands finished (up to
    /// `shutdown.drain_timeout`).
    async fn apply(&self, diff: &PlanDiff, new: &Arc<Plan>) -> Vec<String> {
        let executor = |key: &&InstanceKey| key.kind == Kind::Executor;
        for key in diff.removed.iter().chain(diff.restarted.iter().map(|r| &r.key)).filter(|k| !executor(k)) {
            self.instances.stop(key).await;
        }
        // New routes before new sinks: a sink added with its route reads
        // through it from its first batch.
        if diff.routes_changed {
            self.instances.swap_routes(new);
        }
        let mut failed = Vec::new();
        let restarted_executors = diff.restarted.iter().map(|r| &r.key).filter(executor);
        for key in restarted_executors {
            if let Err(e) = self.instances.replace_executor(key, new).await {
                tracing::error!(instance = %key.name, kind = key.kind.as_str(), "cannot start after reload: {e}");
                failed.push(key.name.clone());
            }
        }
        let restarted_others = diff.restarted.iter().map(|r| &r.key).filter(|k| !executor(k));
        let mut starts: Vec<&InstanceKey> = diff.added.iter().chain(restarted_others).collect();
        starts.sort_by_key(|k| k.kind != Kind::Sink);
        for key in starts {
            if let Err(e) = self.instances.start(key, new).await {
                tracing::error!(instance = %key.name, kind = key.kind.as_str(), "cannot start after reload: {e}");
                failed.push(key.name.clone());
            }
        }
        if diff.table_changed || !diff.added.is_empty() || !diff.removed.is_empty() || !diff.restarted.is_empty() {
            self.instances.swap_commands(new);
        }
        for key in diff.removed.iter().filter(executor) {
            self.instances.retire_executor(key).await;
        }
        self.instances.drain_retired(new.shutdown.drain_timeout);
        failed
    }
}

/// An instance that runs now but whose plugin executable is gone from the
/// plugins directory is stopped, not a reason to refuse the config: it is
/// taken out of the plan (and comes back when its binary does). A new
/// instance naming a missing plugin is still an error.
fn set_aside_missing(config: &mut Config, registry: &Registry, running: &Plan) -> Vec<String> {
    let mut missing = Vec::new();
    let present = |plugin: &str| registry.find(plugin).is_some() || registry.broken(plugin).is_some();
    config.sources.retain(|s| {
        let keep = present(&s.plugin) || !running.sources.iter().any(|r| r.name == s.name);
        if !keep {
            tracing::warn!(source = %s.name, plugin = %s.plugin, dir = %registry.dir.display(), "the plugin executable is gone: instance stopped until it is back");
            missing.push(s.name.clone());
        }
        keep
    });
    config.executors.retain(|e| {
        let keep = present(&e.plugin) || running.executor(&e.name).is_none();
        if !keep {
            tracing::warn!(executor = %e.name, plugin = %e.plugin, dir = %registry.dir.display(), "the plugin executable is gone: instance stopped until it is back");
            missing.push(e.name.clone());
        }
        keep
    });
    missing.extend(set_aside_missing_sinks(config, &present, running, &registry.dir));
    let running_files: Vec<&Path> = running
        .sources
        .iter()
        .map(|s| s.path.as_path())
        .chain(running.executors.iter().map(|e| e.path.as_path()))
        .chain(running.sinks.iter().filter_map(|s| match &s.kind {
            SinkKind::Plugin { path, .. } => Some(path.as_path()),
            _ => None,
        }))
        .collect();
    config.plugins.retain(|file, _| {
        registry.entries.iter().any(|e| &e.file_name == file)
            || !running_files.iter().any(|p| p.file_name().is_some_and(|n| n == file.as_str()))
    });
    missing
}

/// [`set_aside_missing`] for plugin sinks: a running one whose executable is
/// gone is taken out with its place in routes (a route left with nothing to
/// feed goes too), unless it is the only sink (the plan would put the
/// default stdout sink in its place): then the config is refused as before.
fn set_aside_missing_sinks(
    config: &mut Config,
    present: &dyn Fn(&str) -> bool,
    running: &Plan,
    dir: &Path,
) -> Vec<String> {
    let gone: Vec<String> = config
        .sinks
        .iter()
        .filter(|s| s.plugin.as_deref().is_some_and(|p| !present(p)))
        .filter(|s| running.sinks.iter().any(|r| *r.name == *s.name))
        .map(|s| s.name.clone())
        .collect();
    if gone.is_empty() || gone.len() == config.sinks.len() {
        return Vec::new();
    }
    for name in &gone {
        tracing::warn!(sink = %name, dir = %dir.display(), "the plugin executable is gone: instance stopped until it is back");
    }
    config.sinks.retain(|s| !gone.contains(&s.name));
    for route in &mut config.routes {
        route.sinks.retain(|s| !gone.contains(s));
    }
    config.routes.retain(|r| !r.sinks.is_empty() || !r.automations.is_empty());
    gone
}

fn read_yaml(path: &Path) -> Result<serde_yaml::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_yaml::from_str(&text).map_err(|e| e.to_string())
}

/// Top-level sections outside [`RELOADABLE`] whose value changed.
fn changed_sections(old: Option<&serde_yaml::Value>, new: Option<&serde_yaml::Value>) -> Vec<String> {
    let keys = |v: Option<&serde_yaml::Value>| -> std::collections::BTreeMap<String, serde_yaml::Value> {
        v.and_then(|v| v.as_mapping())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone()))).collect())
            .unwrap_or_default()
    };
    let (old, new) = (keys(old), keys(new));
    let mut names: Vec<String> = old.keys().chain(new.keys()).cloned().collect();
    names.sort();
    names.dedup();
    names.retain(|k| !RELOADABLE.contains(&k.as_str()) && old.get(k) != new.get(k));
    names
        .into_iter()
        .flat_map(|name| match PARTLY_RELOADABLE.iter().find(|(section, _)| *section == name) {
            Some((_, live)) => changed_keys(&name, old.get(&name), new.get(&name), live),
            None => vec![name],
        })
        .collect()
}

/// Keys of `section` outside `live` whose value changed, as `section.key`.
fn changed_keys(
    section: &str,
    old: Option<&serde_yaml::Value>,
    new: Option<&serde_yaml::Value>,
    live: &[&str],
) -> Vec<String> {
    let keys = |v: Option<&serde_yaml::Value>| -> std::collections::BTreeMap<String, serde_yaml::Value> {
        v.and_then(|v| v.as_mapping())
            .map(|m| m.iter().filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.clone()))).collect())
            .unwrap_or_default()
    };
    let (old, new) = (keys(old), keys(new));
    let mut names: Vec<&String> = old.keys().chain(new.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|k| !live.contains(&k.as_str()) && old.get(*k) != new.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

fn reloaded_data(origin: &Path, reason: &str, applied: &Applied) -> serde_json::Value {
    let keys = |keys: &[InstanceKey]| -> Vec<serde_json::Value> {
        keys.iter().map(|k| json!({ "instance": k.name, "kind": k.kind.as_str() })).collect()
    };
    let diff = &applied.diff;
    json!({
        "config": origin.display().to_string(),
        "trigger": reason,
        "added": keys(&diff.added),
        "removed": keys(&diff.removed),
        "restarted": diff.restarted.iter()
            .map(|r| json!({ "instance": r.key.name, "kind": r.key.kind.as_str(), "reason": r.reason }))
            .collect::<Vec<_>>(),
        "unchanged": diff.unchanged.len(),
        "routes_changed": diff.routes_changed,
        "missing_plugin": applied.missing,
        "needs_restart": applied.needs_restart,
        "failed": applied.failed,
        "http_error": applied.http_error,
    })
}

/// Starts watching (per `reload.watch`) and serving reloads until `shutdown`.
pub fn spawn(
    reloader: Reloader,
    options: WatchOptions,
    hup: tokio::signal::unix::Signal,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, watch::WatchError> {
    let watching = options.watch_files;
    let requests = watch::spawn(options, hup, shutdown.clone())?;
    Ok(tokio::spawn(Reloader { watching, ..reloader }.run(requests, shutdown)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_instance_whose_binary_is_gone_is_set_aside_but_a_new_one_is_not() {
        let full = diff::tests::registry();
        let yaml = "executors: [{ name: e1, plugin: echo }, { name: e2, plugin: echo2 }]\n";
        let running = plan::plan(&Config::parse(yaml).unwrap(), &full, "test.yaml".into()).unwrap();
        let mut without_echo2 = full.clone();
        without_echo2.entries.retain(|e| e.file_name != "plugboard-echo2");

        let mut config = Config::parse(yaml).unwrap();
        assert_eq!(set_aside_missing(&mut config, &without_echo2, &running), ["e2"]);
        assert_eq!(config.executors.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["e1"]);
        assert!(plan::plan(&config, &without_echo2, "test.yaml".into()).is_ok());

        // A new instance naming a missing plugin stays, and the plan says what is wrong.
        let mut config =
            Config::parse("executors: [{ name: e1, plugin: echo }, { name: e3, plugin: nosuch }]\n").unwrap();
        assert!(set_aside_missing(&mut config, &without_echo2, &running).is_empty());
        let err = plan::plan(&config, &without_echo2, "test.yaml".into()).unwrap_err().to_string();
        assert!(err.contains("executors[1] \"e3\": unknown plugin \"nosuch\""), "{err}");
    }

    #[test]
    fn a_running_plugin_sink_whose_binary_is_gone_is_set_aside_with_its_routes() {
        let full = diff::tests::registry();
        let yaml = "
sinks: [{ name: rec, plugin: rec }, { name: out, stdout: {} }]
routes: [{ name: both, sinks: [rec, out] }, { name: only-rec, sinks: [rec] }]
";
        let running = plan::plan(&Config::parse(yaml).unwrap(), &full, "test.yaml".into()).unwrap();
        let mut without_rec = full.clone();
        without_rec.entries.retain(|e| e.file_name != "plugboard-rec");

        let mut config = Config::parse(yaml).unwrap();
        assert_eq!(set_aside_missing(&mut config, &without_rec, &running), ["rec"]);
        let new = plan::plan(&config, &without_rec, "test.yaml".into()).unwrap();
        assert_eq!(new.sinks.iter().map(|s| &*s.name).collect::<Vec<_>>(), ["out"]);
        let routes: Vec<(&str, &[String])> =
            new.routing.routes().iter().map(|r| (r.name.as_str(), r.sinks.as_slice())).collect();
        assert_eq!(routes, [("both", &["out".to_owned()][..])]);

        // The only sink is not replaced by the default one: the config is refused.
        let only = "sinks: [{ name: rec, plugin: rec }]\n";
        let running = plan::plan(&Config::parse(only).unwrap(), &full, "test.yaml".into()).unwrap();
        let mut config = Config::parse(only).unwrap();
        assert!(set_aside_missing(&mut config, &without_rec, &running).is_empty());
        let err = plan::plan(&config, &without_rec, "test.yaml".into()).unwrap_err().to_string();
        assert!(err.contains("sinks[0] \"rec\": unknown plugin \"rec\""), "{err}");
    }

    #[test]
    fn only_sections_a_reload_cannot_apply_are_reported() {
        let old: serde_yaml::Value =
            serde_yaml::from_str("sources: []\nhttp: { listen: '127.0.0.1:1' }\nsinks: [{name: a}]\n").unwrap();
        let new: serde_yaml::Value = serde_yaml::from_str(
            "sources: [{name: x}]\nhttp: { listen: '127.0.0.1:2' }\nroutes: [{sinks: [b]}]\nsinks: [{name: b}]\n",
        )
        .unwrap();
        // Sinks, routes and the listener apply live.
        assert!(changed_sections(Some(&old), Some(&new)).is_empty(), "{:?}", changed_sections(Some(&old), Some(&new)));
        assert!(changed_sections(Some(&old), Some(&old)).is_empty());
    }

    #[test]
    fn commands_automations_and_http_apply_live_but_chat_and_turning_http_off_do_not() {
        let old: serde_yaml::Value = serde_yaml::from_str(
            "http: { token: a, events_token: b }\ncommands: { policies: [], groups: {} }\nautomations: []\n",
        )
        .unwrap();
        let new: serde_yaml::Value = serde_yaml::from_str(
            "http: { token: c, events_token: d }\ncommands: { policies: [{effect: allow}], groups: {ops: [x]} }\nautomations: [{name: a, command: echo}]\n",
        )
        .unwrap();
        assert!(changed_sections(Some(&old), Some(&new)).is_empty(), "{:?}", changed_sections(Some(&old), Some(&new)));
        let chat: serde_yaml::Value = serde_yaml::from_str(
            "http: { token: c, listen: '127.0.0.1:9', enabled: false }\ncommands: { slack: { signing_secret: s } }\n",
        )
        .unwrap();
        assert_eq!(changed_sections(Some(&old), Some(&chat)), ["commands.slack", "http.enabled"]);
    }
}
