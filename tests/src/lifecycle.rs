//! The host's log lines and lifecycle CloudEvents about one plugin instance:
//! which pids it ran as, why it failed, what the supervisor announced.

use serde_json::Value;

/// The `fields` of JSON log lines whose message starts with `prefix`.
pub fn logs_starting_with(lines: &[String], prefix: &str) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
        .collect()
}

/// Pids the host logged as started for instance `name` of `kind`
/// (`source` or `executor`), in order.
pub fn started_pids(lines: &[String], kind: &str, name: &str) -> Vec<u32> {
    crate::log_events(lines, &format!("{kind} started"))
        .into_iter()
        .filter(|f| f[kind] == name)
        .filter_map(|f| f["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Messages of the host's "<kind> failed: ..." warnings for instance `name`.
pub fn failures(lines: &[String], kind: &str, name: &str) -> Vec<String> {
    logs_starting_with(lines, &format!("{kind} failed: "))
        .into_iter()
        .filter(|f| f[kind] == name)
        .filter_map(|f| f["message"].as_str().map(str::to_owned))
        .collect()
}

/// CloudEvents (JSON values) of type `dev.plugboard.plugin.<what>` about
/// instance `name` (its `subject`), in order.
pub fn plugin_events<'a>(events: &'a [Value], what: &str, name: &str) -> Vec<&'a Value> {
    let ty = format!("dev.plugboard.plugin.{what}");
    events.iter().filter(|e| e["type"] == ty.as_str() && e["subject"] == name).collect()
}

/// The supervisor's lifecycle transitions of instance `name`, in order:
/// (`started`, `exited`, `restarting`, ... without the type prefix, data).
pub fn transitions(events: &[Value], name: &str) -> Vec<(String, Value)> {
    events
        .iter()
        .filter(|e| e["subject"] == name && e["source"] == "/plugboard/host")
        .filter_map(|e| {
            let what = e["type"].as_str()?.strip_prefix("dev.plugboard.plugin.")?;
            Some((what.to_owned(), e["data"].clone()))
        })
        .collect()
}

/// Whether `events` hold `exited` of `old`, then `restarting`, then
/// `started` of `new`, in that order (other transitions may come between).
pub fn restart_announced(events: &[(String, Value)], old: u32, new: u32) -> bool {
    let Some(exited) = events.iter().position(|(t, d)| t == "exited" && d["pid"] == old) else { return false };
    let rest = &events[exited..];
    let Some(restarting) = rest.iter().position(|(t, _)| t == "restarting") else { return false };
    rest[restarting..].iter().any(|(t, d)| t == "started" && d["pid"] == new)
}

/// Stdout lines that are JSON objects (the stdout sink's CloudEvents).
pub fn json_events(lines: &[String]) -> Vec<Value> {
    lines.iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(Value::is_object).collect()
}

/// The `data.index` of the events from `source` (its CloudEvent `source`
/// attribute ends with `/<source>`) of type `ty`, in arrival order.
pub fn indexes(events: &[Value], ty: &str, source: &str) -> Vec<u64> {
    let suffix = format!("/{source}");
    events
        .iter()
        .filter(|e| e["type"] == ty && e["source"].as_str().is_some_and(|s| s.ends_with(&suffix)))
        .filter_map(|e| e["data"]["index"].as_u64())
        .collect()
}

/// Whether `v` is exactly 0, 1, 2, ... (nothing lost, nothing repeated).
pub fn contiguous(v: &[u64]) -> bool {
    v.iter().enumerate().all(|(i, x)| *x == i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_pids_failures_and_events_per_instance() {
        let lines: Vec<String> = [
            r#"{"fields":{"message":"source started","source":"a","pid":10}}"#,
            r#"{"fields":{"message":"source started","source":"b","pid":11}}"#,
            r#"{"fields":{"message":"source failed: boom; restarting in 20ms","source":"a"}}"#,
            r#"{"fields":{"message":"source started","source":"a","pid":12}}"#,
            "not json",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(started_pids(&lines, "source", "a"), [10, 12]);
        assert_eq!(failures(&lines, "source", "a"), ["source failed: boom; restarting in 20ms"]);
        assert!(failures(&lines, "source", "b").is_empty());
        let events = vec![
            serde_json::json!({"type": "dev.plugboard.plugin.exited", "subject": "a"}),
            serde_json::json!({"type": "dev.plugboard.plugin.exited", "subject": "b"}),
            serde_json::json!({"type": "x", "source": "/plugboard/faulty/a", "data": {"index": 0}}),
            serde_json::json!({"type": "x", "source": "/plugboard/faulty/a", "data": {"index": 1}}),
        ];
        assert_eq!(plugin_events(&events, "exited", "a").len(), 1);
        assert_eq!(indexes(&events, "x", "a"), [0, 1]);
        assert!(contiguous(&[0, 1, 2]) && !contiguous(&[0, 2]) && !contiguous(&[1]));
        let host = |t: &str, pid: u32| serde_json::json!({"type": format!("dev.plugboard.plugin.{t}"), "source": "/plugboard/host", "subject": "a", "data": {"pid": pid}});
        let seq = [host("started", 1), host("exited", 1), host("restarting", 0), host("started", 2)];
        let t = transitions(&seq, "a");
        assert_eq!(
            t.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
            ["started", "exited", "restarting", "started"]
        );
        assert!(restart_announced(&t, 1, 2));
        assert!(!restart_announced(&t, 2, 1));
        assert!(!restart_announced(&t[..3], 1, 2));
    }
}
