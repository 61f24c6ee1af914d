//! What a reload changes: the running plan against the new one, instance by
//! instance. Pure: no process is touched here.
//!
//! An instance is restarted when anything its process depends on differs:
//! its binary (path or identity), its config, its prefixes and limits, or
//! the launch settings it is started with. Everything else keeps running.
//!
//! Sinks are instances too (builtin ones have no binary: their settings
//! decide); routes are not: a change to them is swapped in, nothing restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::identity::Identities;
use crate::runtime::pipeline::DropTypes;
use crate::runtime::plan::{ExecutorPlan, Plan, SourcePlan};
use crate::runtime::sinks::{SinkKind, SinkPlan};

/// Which kind of instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Source,
    Executor,
    Sink,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Executor => "executor",
            Kind::Sink => "sink",
        }
    }
}

/// One instance, by kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InstanceKey {
    pub kind: Kind,
    pub name: String,
}

impl std::fmt::Display for InstanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind.as_str(), self.name)
    }
}

/// An instance that must be restarted, and why (for the log and the
/// `config.reloaded` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Restart {
    pub key: InstanceKey,
    pub reason: String,
}

/// How the new plan differs from the running one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDiff {
    pub added: Vec<InstanceKey>,
    pub removed: Vec<InstanceKey>,
    pub restarted: Vec<Restart>,
    pub unchanged: Vec<InstanceKey>,
    /// The command table (prefixes, aliases) differs and must be swapped.
    pub table_changed: bool,
    /// The routes differ and must be swapped.
    pub routes_changed: bool,
}

impl PlanDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.removed.is_empty()
            && self.restarted.is_empty()
            && !self.table_changed
            && !self.routes_changed
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        let list = |keys: &mut dyn Iterator<Item = &InstanceKey>| {
            let names: Vec<String> = keys.map(|k| k.to_string()).collect();
            if names.is_empty() { "-".to_owned() } else { names.join(", ") }
        };
        format!(
            "added: {}; removed: {}; restarted: {}; unchanged: {}",
            list(&mut self.added.iter()),
            list(&mut self.removed.iter()),
            list(&mut self.restarted.iter().map(|r| &r.key)),
            self.unchanged.len()
        )
    }
}

/// What an instance's process depends on, field by field (compared as text,
/// named in the restart reason).
struct Fingerprint {
    /// The plugin executable (none for builtin sinks).
    path: Option<PathBuf>,
    fields: BTreeMap<&'static str, String>,
    /// Compared as a value: its Debug text has no stable order.
    drop_types: Option<DropTypes>,
}

fn launch_fields(
    plan: &Plan,
    name: &str,
    path: &std::path::Path,
    supervision: &crate::runtime::supervisor::Supervision,
    fields: &mut BTreeMap<&'static str, String>,
) {
    fields.insert("start_timeout", format!("{:?}", plan.start.start_timeout));
    fields.insert("kill_grace", format!("{:?}", plan.start.kill_grace));
    fields.insert("launch security", format!("{:?}", plan.start.security_for(path)));
    fields.insert("limits, environment or run_as", format!("{:?}", plan.start.isolation_for(name, path)));
    fields.insert("restart policy", format!("{:?}", supervision.restart));
    fields.insert("health checks", format!("{:?}", supervision.health));
}

fn source_fingerprint(plan: &Plan, s: &SourcePlan) -> Fingerprint {
    let mut fields = BTreeMap::new();
    fields.insert("config", s.config.to_string());
    fields.insert("http_token", format!("{:?}", s.http_token));
    launch_fields(plan, &s.name, &s.path, &s.supervision, &mut fields);
    Fingerprint { path: Some(s.path.clone()), fields, drop_types: Some(s.drop_types.clone()) }
}

fn executor_fingerprint(plan: &Plan, e: &ExecutorPlan) -> Fingerprint {
    let mut fields = BTreeMap::new();
    fields.insert("config", e.config.to_string());
    fields.insert("prefixes", format!("{:?}", e.prefixes));
    fields.insert("timeout", format!("{:?}", e.timeout));
    fields.insert("max_concurrent", e.max_concurrent.to_string());
    fields.insert("max_output", e.max_output.to_string());
    launch_fields(plan, &e.name, &e.path, &e.supervision, &mut fields);
    Fingerprint { path: Some(e.path.clone()), fields, drop_types: None }
}

/// A sink's settings, and for a plugin sink what its process is launched
/// with and supervised by.
fn sink_fingerprint(plan: &Plan, s: &SinkPlan) -> Fingerprint {
    let mut fields = BTreeMap::new();
    fields.insert("kind", s.kind.name().to_owned());
    fields.insert("retry", format!("{:?}", s.retry));
    fields.insert("batch_size", s.batch_size.to_string());
    let path = match &s.kind {
        SinkKind::Plugin { path, config, restart, health, .. } => {
            fields.insert("config", config.to_string());
            // What the sink runs under: its own restart/health over the top-level ones.
            let supervision = crate::runtime::supervisor::Supervision {
                restart: restart.as_ref().map_or_else(|| plan.restart.clone(), |r| r.apply(&plan.restart)),
                health: health.as_ref().map_or_else(|| plan.health.clone(), |h| h.apply(&plan.health)),
            };
            launch_fields(plan, &s.name, path, &supervision, &mut fields);
            Some(path.clone())
        }
        // Builtin settings have no maps whose Debug order could vary.
        SinkKind::File(c) => {
            fields.insert("file", format!("{c:?}"));
            None
        }
        SinkKind::Http(c) => {
            fields.insert("http", format!("{c:?}"));
            None
        }
        SinkKind::Database(c) => {
            fields.insert("database", format!("{c:?}"));
            None
        }
        SinkKind::Automation { name } => {
            fields.insert("automation", name.clone());
            None
        }
        SinkKind::Stdout | SinkKind::Discard => None,
    };
    Fingerprint { path, fields, drop_types: None }
}

fn fingerprints(plan: &Plan) -> BTreeMap<InstanceKey, Fingerprint> {
    let sources = plan
        .sources
        .iter()
        .map(|s| (InstanceKey { kind: Kind::Source, name: s.name.clone() }, source_fingerprint(plan, s)));
    let executors = plan
        .executors
        .iter()
        .map(|e| (InstanceKey { kind: Kind::Executor, name: e.name.clone() }, executor_fingerprint(plan, e)));
    let sinks = plan
        .sinks
        .iter()
        .map(|s| (InstanceKey { kind: Kind::Sink, name: s.name.to_string() }, sink_fingerprint(plan, s)));
    sources.chain(executors).chain(sinks).collect()
}

/// Compares the running plan (with the identities its binaries had when it
/// was made) with a new plan (and the identities now).
pub fn diff(old: &Plan, old_ids: &Identities, new: &Plan, new_ids: &Identities) -> PlanDiff {
    let before = fingerprints(old);
    let after = fingerprints(new);
    let mut out = PlanDiff {
        table_changed: old.table != new.table,
        routes_changed: old.routing != new.routing,
        ..PlanDiff::default()
    };
    for (key, was) in &before {
        let Some(now) = after.get(key) else {
            out.removed.push(key.clone());
            continue;
        };
        let mut reasons = Vec::new();
        match (&was.path, &now.path) {
            (Some(was), Some(now)) if was != now => reasons.push(format!("plugin executable is now {}", now.display())),
            (Some(was), Some(now)) if old_ids.get(was) != new_ids.get(now) => {
                reasons.push(format!("binary {} was replaced", now.display()))
            }
            (None, Some(now)) => reasons.push(format!("plugin executable is now {}", now.display())),
            _ => {}
        }
        let mut changed: Vec<&str> =
            was.fields.iter().filter(|(field, value)| now.fields.get(*field) != Some(value)).map(|(f, _)| *f).collect();
        if was.drop_types != now.drop_types {
            changed.push("drop_types");
        }
        if !changed.is_empty() {
            reasons.push(format!("{} changed", changed.join(", ")));
        }
        if reasons.is_empty() {
            out.unchanged.push(key.clone());
        } else {
            out.restarted.push(Restart { key: key.clone(), reason: reasons.join("; ") });
        }
    }
    out.added = after.keys().filter(|k| !before.contains_key(*k)).cloned().collect();
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use plugboard_proto::plugboard::v1::{PluginInfo, PluginKind};

    use super::super::identity::BinaryId;
    use super::*;
    use crate::plugin::{ConfigSchema, Described};
    use crate::runtime::config::Config;
    use crate::runtime::registry::{Entry, Registry};

    pub(crate) fn described(name: &str, kind: PluginKind, prefixes: &[&str]) -> Arc<Described> {
        Arc::new(Described {
            info: PluginInfo {
                name: name.into(),
                version: "1.0.0".into(),
                command_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            },
            kinds: vec![kind],
            schema: ConfigSchema::compile("").unwrap(),
        })
    }

    pub(crate) fn registry() -> Registry {
        let entry = |file: &str, d: Arc<Described>| Entry {
            path: Path::new("/plugins").join(file),
            file_name: file.into(),
            described: Ok(d),
        };
        Registry {
            dir: "/plugins".into(),
            entries: vec![
                entry("plugboard-tick", described("tick", PluginKind::Source, &[])),
                entry("plugboard-echo", described("echo", PluginKind::Executor, &["echo"])),
                entry("plugboard-echo2", described("echo2", PluginKind::Executor, &["echo2"])),
                entry("plugboard-rec", described("rec", PluginKind::Sink, &[])),
            ],
        }
    }

    fn plan(yaml: &str) -> Plan {
        let config = Config::parse(yaml).unwrap();
        crate::runtime::plan::plan(&config, &registry(), "test.yaml".into()).unwrap()
    }

    fn ids(sizes: &[(&str, u64)]) -> Identities {
        sizes
            .iter()
            .map(|(file, size)| {
                (Path::new("/plugins").join(file), BinaryId { dev: 1, ino: *size, size: *size, mtime_ns: 0 })
            })
            .collect()
    }

    fn key(kind: Kind, name: &str) -> InstanceKey {
        InstanceKey { kind, name: name.into() }
    }

    const BASE: &str = "
sources: [{ name: t1, plugin: tick, config: { interval: 1s } }, { name: t2, plugin: tick }]
executors: [{ name: e1, plugin: echo }]
";
    const ALL: &[(&str, u64)] =
        &[("plugboard-tick", 1), ("plugboard-echo", 2), ("plugboard-echo2", 3), ("plugboard-rec", 4)];

    #[test]
    fn the_same_plan_and_binaries_change_nothing() {
        let d = diff(&plan(BASE), &ids(ALL), &plan(BASE), &ids(ALL));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(
            d.unchanged,
            [key(Kind::Source, "t1"), key(Kind::Source, "t2"), key(Kind::Executor, "e1"), key(Kind::Sink, "stdout")]
        );
    }

    #[test]
    fn a_replaced_binary_restarts_only_its_instances() {
        let replaced =
            ids(&[("plugboard-tick", 10), ("plugboard-echo", 2), ("plugboard-echo2", 3), ("plugboard-rec", 4)]);
        let d = diff(&plan(BASE), &ids(ALL), &plan(BASE), &replaced);
        let restarted: Vec<&InstanceKey> = d.restarted.iter().map(|r| &r.key).collect();
        assert_eq!(restarted, [&key(Kind::Source, "t1"), &key(Kind::Source, "t2")]);
        assert_eq!(d.restarted[0].reason, "binary /plugins/plugboard-tick was replaced");
        assert_eq!(d.unchanged, [key(Kind::Executor, "e1"), key(Kind::Sink, "stdout")]);
        assert!(d.added.is_empty() && d.removed.is_empty() && !d.table_changed);
    }

    #[test]
    fn added_and_removed_instances_leave_the_others_alone() {
        let new = "
sources: [{ name: t1, plugin: tick, config: { interval: 1s } }, { name: t3, plugin: tick }]
executors: [{ name: e1, plugin: echo }, { name: e2, plugin: echo2 }]
";
        let d = diff(&plan(BASE), &ids(ALL), &plan(new), &ids(ALL));
        assert_eq!(d.added, [key(Kind::Source, "t3"), key(Kind::Executor, "e2")]);
        assert_eq!(d.removed, [key(Kind::Source, "t2")]);
        assert!(d.restarted.is_empty());
        assert_eq!(d.unchanged, [key(Kind::Source, "t1"), key(Kind::Executor, "e1"), key(Kind::Sink, "stdout")]);
        assert!(d.table_changed, "e2 brings the prefix echo2");
        assert_eq!(
            d.summary(),
            "added: source \"t3\", executor \"e2\"; removed: source \"t2\"; restarted: -; unchanged: 3"
        );
    }

    #[test]
    fn config_prefix_and_limit_changes_restart_the_instance_and_name_what_changed() {
        let new = "
sources: [{ name: t1, plugin: tick, config: { interval: 2s } }, { name: t2, plugin: tick, drop_types: [x.*] }]
executors: [{ name: e1, plugin: echo, prefixes: [say], timeout: 5s }]
";
        let d = diff(&plan(BASE), &ids(ALL), &plan(new), &ids(ALL));
        let reasons: Vec<(String, String)> =
            d.restarted.iter().map(|r| (r.key.name.clone(), r.reason.clone())).collect();
        assert_eq!(
            reasons,
            [
                ("t1".into(), "config changed".into()),
                ("t2".into(), "drop_types changed".into()),
                ("e1".into(), "prefixes, timeout changed".into()),
            ]
        );
        assert!(d.table_changed);
        assert_eq!(d.unchanged, [key(Kind::Sink, "stdout")]);
    }

    #[test]
    fn a_limit_or_environment_change_restarts_only_that_instance() {
        let new = BASE.replace("{ name: e1, plugin: echo }", "{ name: e1, plugin: echo, limits: { open_files: 128 } }");
        assert_ne!(new, BASE, "the base plan names e1 as expected");
        let d = diff(&plan(BASE), &ids(ALL), &plan(&new), &ids(ALL));
        let reasons: Vec<(String, String)> =
            d.restarted.iter().map(|r| (r.key.name.clone(), r.reason.clone())).collect();
        assert_eq!(reasons, [("e1".into(), "limits, environment or run_as changed".into())]);
    }

    #[test]
    fn an_alias_change_swaps_the_table_without_restarting() {
        let new = "
sources: [{ name: t1, plugin: tick, config: { interval: 1s } }, { name: t2, plugin: tick }]
executors: [{ name: e1, plugin: echo, aliases: { e: echo } }]
";
        let d = diff(&plan(BASE), &ids(ALL), &plan(new), &ids(ALL));
        assert!(d.restarted.is_empty() && d.added.is_empty() && d.removed.is_empty(), "{d:?}");
        assert!(d.table_changed);
        assert!(!d.is_empty());
    }

    #[test]
    fn launch_settings_restart_the_instances_they_apply_to() {
        let new = format!("{BASE}plugins:\n  plugboard-echo: {{ automtls: false }}\n");
        let d = diff(&plan(BASE), &ids(ALL), &plan(&new), &ids(ALL));
        assert_eq!(d.restarted.len(), 1, "{d:?}");
        assert_eq!(d.restarted[0].key, key(Kind::Executor, "e1"));
        assert_eq!(d.restarted[0].reason, "launch security changed");

        let new = format!("{BASE}restart: {{ initial_backoff: 1s }}\n");
        let d = diff(&plan(BASE), &ids(ALL), &plan(&new), &ids(ALL));
        assert_eq!(d.restarted.len(), 3, "a global restart policy touches every instance: {d:?}");
    }

    #[test]
    fn a_binary_that_vanished_from_the_identities_counts_as_replaced() {
        let d = diff(&plan(BASE), &ids(ALL), &plan(BASE), &ids(&[("plugboard-tick", 1)]));
        assert_eq!(d.restarted.len(), 1);
        assert_eq!(d.restarted[0].key, key(Kind::Executor, "e1"));
    }

    const SINKS: &str = "
sources: [{ name: t1, plugin: tick }]
sinks:
  - { name: out, file: { path: /tmp/out.jsonl } }
  - { name: rec, plugin: rec, config: { path: /tmp/rec.jsonl } }
  - { name: gone, stdout: {} }
  - { name: hook, http: { url: 'http://127.0.0.1:1/e' } }
routes:
  - { sinks: [out, rec, gone, hook] }
";

    fn sink_names(keys: &[InstanceKey]) -> Vec<&str> {
        keys.iter().filter(|k| k.kind == Kind::Sink).map(|k| k.name.as_str()).collect()
    }

    /// Sink names: added, removed, restarted (with the reason), unchanged.
    type SinkChanges<'a> = (Vec<&'a str>, Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

    fn sinks(d: &PlanDiff) -> SinkChanges<'_> {
        let names = sink_names;
        let restarted =
            d.restarted.iter().filter(|r| r.key.kind == Kind::Sink).map(|r| (r.key.name.as_str(), r.reason.as_str()));
        (names(&d.added), names(&d.removed), restarted.collect(), names(&d.unchanged))
    }

    #[test]
    fn unchanged_sinks_and_routes_are_left_alone() {
        let d = diff(&plan(SINKS), &ids(ALL), &plan(SINKS), &ids(ALL));
        assert!(d.is_empty(), "{d:?}");
        assert!(!d.routes_changed);
        assert_eq!(sinks(&d), (vec![], vec![], vec![], vec!["gone", "hook", "out", "rec"]));
    }

    #[test]
    fn sinks_are_added_removed_and_restarted_by_their_settings() {
        let new = SINKS
            .replace("/tmp/out.jsonl", "/tmp/out2.jsonl")
            .replace("{ path: /tmp/rec.jsonl }", "{ path: /tmp/rec2.jsonl }")
            .replace("  - { name: gone, stdout: {} }\n", "  - { name: db, database: { path: /tmp/x.db } }\n")
            .replace("[out, rec, gone, hook]", "[out, rec, db, hook]");
        let d = diff(&plan(SINKS), &ids(ALL), &plan(&new), &ids(ALL));
        assert_eq!(
            sinks(&d),
            (vec!["db"], vec!["gone"], vec![("out", "file changed"), ("rec", "config changed")], vec!["hook"])
        );
        assert!(d.routes_changed, "the route names db instead of gone");
        assert_eq!(d.unchanged, [key(Kind::Source, "t1"), key(Kind::Sink, "hook")]);
    }

    #[test]
    fn a_replaced_sink_binary_restarts_only_that_sink() {
        let replaced =
            ids(&[("plugboard-tick", 1), ("plugboard-echo", 2), ("plugboard-echo2", 3), ("plugboard-rec", 40)]);
        let d = diff(&plan(SINKS), &ids(ALL), &plan(SINKS), &replaced);
        assert_eq!(
            sinks(&d),
            (vec![], vec![], vec![("rec", "binary /plugins/plugboard-rec was replaced")], vec!["gone", "hook", "out"])
        );
        assert!(!d.routes_changed);
        assert_eq!(d.restarted.len(), 1, "{d:?}");
    }

    #[test]
    fn retry_batch_and_launch_settings_restart_sinks_they_concern() {
        let new = SINKS.replace(
            "{ name: hook, http: { url: 'http://127.0.0.1:1/e' } }",
            "{ name: hook, http: { url: 'http://127.0.0.1:1/e' }, retry: { max_attempts: 3 } }",
        );
        let d = diff(&plan(SINKS), &ids(ALL), &plan(&new), &ids(ALL));
        assert_eq!(sinks(&d).2, [("hook", "retry changed")]);

        // The restart policy concerns plugin processes only: the plugin sink, not the builtin ones.
        let new = format!("{SINKS}restart: {{ initial_backoff: 1s }}\n");
        let d = diff(&plan(SINKS), &ids(ALL), &plan(&new), &ids(ALL));
        let restarted: Vec<&str> = d.restarted.iter().map(|r| r.key.name.as_str()).collect();
        assert_eq!(restarted, ["t1", "rec"], "{d:?}");
    }

    #[test]
    fn a_plugin_sinks_own_restart_policy_restarts_only_that_sink() {
        let new = SINKS.replace(
            "{ name: rec, plugin: rec, config: { path: /tmp/rec.jsonl } }",
            "{ name: rec, plugin: rec, config: { path: /tmp/rec.jsonl }, restart: { max_restarts: 1 } }",
        );
        let d = diff(&plan(SINKS), &ids(ALL), &plan(&new), &ids(ALL));
        assert_eq!(sinks(&d).2, [("rec", "restart policy changed")], "{d:?}");
        assert_eq!(d.restarted.len(), 1, "{d:?}");
    }

    #[test]
    fn a_route_change_swaps_the_routes_and_restarts_nothing() {
        let new = SINKS.replace(
            "  - { sinks: [out, rec, gone, hook] }",
            "  - { sinks: [out, rec, gone, hook], sources: [t1], filters: [{ prefix: { type: dev. } }] }",
        );
        let d = diff(&plan(SINKS), &ids(ALL), &plan(&new), &ids(ALL));
        assert!(d.routes_changed);
        assert!(!d.is_empty());
        assert!(d.added.is_empty() && d.removed.is_empty() && d.restarted.is_empty(), "{d:?}");
        let condition = SINKS.replace("[out, rec, gone, hook] }", "[out, rec, gone, hook], condition: 'data.x == 1' }");
        let d = diff(&plan(&condition), &ids(ALL), &plan(&condition), &ids(ALL));
        assert!(!d.routes_changed, "the same condition compiled twice is the same route");
        let other = condition.replace("data.x == 1", "data.x == 2");
        assert!(diff(&plan(&condition), &ids(ALL), &plan(&other), &ids(ALL)).routes_changed);
    }
}
