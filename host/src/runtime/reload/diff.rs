//! What a reload changes: the running plan against the new one, instance by
//! instance. Pure: no process is touched here.
//!
//! An instance is restarted when anything its process depends on differs:
//! its binary (path or identity), its config, its prefixes and limits, or
//! the launch settings it is started with. Everything else keeps running.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::identity::Identities;
use crate::runtime::pipeline::DropTypes;
use crate::runtime::plan::{ExecutorPlan, Plan, SourcePlan};

/// Which kind of instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Source,
    Executor,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Executor => "executor",
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
}

impl PlanDiff {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.restarted.is_empty() && !self.table_changed
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
    path: PathBuf,
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
    Fingerprint { path: s.path.clone(), fields, drop_types: Some(s.drop_types.clone()) }
}

fn executor_fingerprint(plan: &Plan, e: &ExecutorPlan) -> Fingerprint {
    let mut fields = BTreeMap::new();
    fields.insert("config", e.config.to_string());
    fields.insert("prefixes", format!("{:?}", e.prefixes));
    fields.insert("timeout", format!("{:?}", e.timeout));
    fields.insert("max_concurrent", e.max_concurrent.to_string());
    fields.insert("max_output", e.max_output.to_string());
    launch_fields(plan, &e.name, &e.path, &e.supervision, &mut fields);
    Fingerprint { path: e.path.clone(), fields, drop_types: None }
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
    sources.chain(executors).collect()
}

/// Compares the running plan (with the identities its binaries had when it
/// was made) with a new plan (and the identities now).
pub fn diff(old: &Plan, old_ids: &Identities, new: &Plan, new_ids: &Identities) -> PlanDiff {
    let before = fingerprints(old);
    let after = fingerprints(new);
    let mut out = PlanDiff { table_changed: old.table != new.table, ..PlanDiff::default() };
    for (key, was) in &before {
        let Some(now) = after.get(key) else {
            out.removed.push(key.clone());
            continue;
        };
        let mut reasons = Vec::new();
        if was.path != now.path {
            reasons.push(format!("plugin executable is now {}", now.path.display()));
        } else if old_ids.get(&was.path) != new_ids.get(&now.path) {
            reasons.push(format!("binary {} was replaced", now.path.display()));
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
    const ALL: &[(&str, u64)] = &[("plugboard-tick", 1), ("plugboard-echo", 2), ("plugboard-echo2", 3)];

    #[test]
    fn the_same_plan_and_binaries_change_nothing() {
        let d = diff(&plan(BASE), &ids(ALL), &plan(BASE), &ids(ALL));
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.unchanged, [key(Kind::Source, "t1"), key(Kind::Source, "t2"), key(Kind::Executor, "e1")]);
    }

    #[test]
    fn a_replaced_binary_restarts_only_its_instances() {
        let replaced = ids(&[("plugboard-tick", 10), ("plugboard-echo", 2), ("plugboard-echo2", 3)]);
        let d = diff(&plan(BASE), &ids(ALL), &plan(BASE), &replaced);
        let restarted: Vec<&InstanceKey> = d.restarted.iter().map(|r| &r.key).collect();
        assert_eq!(restarted, [&key(Kind::Source, "t1"), &key(Kind::Source, "t2")]);
        assert_eq!(d.restarted[0].reason, "binary /plugins/plugboard-tick was replaced");
        assert_eq!(d.unchanged, [key(Kind::Executor, "e1")]);
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
        assert_eq!(d.unchanged, [key(Kind::Source, "t1"), key(Kind::Executor, "e1")]);
        assert!(d.table_changed, "e2 brings the prefix echo2");
        assert_eq!(
            d.summary(),
            "added: source \"t3\", executor \"e2\"; removed: source \"t2\"; restarted: -; unchanged: 2"
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
        assert!(d.unchanged.is_empty());
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
}
