//! Alertmanager's webhook payload (version 4) turned into one event per alert.
//!
//! Each event's data is the notification with its `alerts` array replaced by
//! the one `alert` (ansible.eda's shape): the alert's status, labels,
//! annotations, times, generatorURL and fingerprint, next to the grouping
//! fields (`receiver`, `status`, `groupKey`, `groupLabels`, `commonLabels`,
//! `commonAnnotations`, `externalURL`, `truncatedAlerts`, `version`).
//! Fields this version does not know are kept as they came.

use chrono::{DateTime, Utc};
use plugboard_sdk::{CloudEvent, EventBuilder};
use serde_json::{Map, Value};
use sha2::Digest as _;

pub const TYPE_FIRING: &str = "io.prometheus.alertmanager.alert.firing";
pub const TYPE_RESOLVED: &str = "io.prometheus.alertmanager.alert.resolved";

/// Why a body is not an Alertmanager notification (answered with 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PayloadError(String);

fn bad(message: impl Into<String>) -> PayloadError {
    PayloadError(message.into())
}

/// A parsed notification.
pub struct Notification {
    pub events: Vec<CloudEvent>,
    /// Alerts Alertmanager left out of this notification (`max_alerts`).
    pub truncated: u64,
}

/// Parses one webhook body into its events.
pub fn parse(body: &[u8], source: &str) -> Result<Notification, PayloadError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut group) = value else {
        return Err(bad("the body is not a JSON object: not an Alertmanager webhook notification"));
    };
    match group.get("version") {
        None => {}
        Some(Value::String(v)) if v == "4" => {}
        Some(other) => {
            return Err(bad(format!(
                "unsupported payload version {other}; this source reads Alertmanager's version \"4\""
            )));
        }
    }
    let alerts = match group.remove("alerts") {
        Some(Value::Array(alerts)) => alerts,
        Some(_) => return Err(bad("\"alerts\" is not an array")),
        None => return Err(bad("the body has no \"alerts\" array: not an Alertmanager webhook notification")),
    };
    let truncated = group.get("truncatedAlerts").and_then(Value::as_u64).unwrap_or(0);
    let events = alerts
        .into_iter()
        .enumerate()
        .map(|(i, alert)| alert_event(i, alert, &group, source))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Notification { events, truncated })
}

fn alert_event(
    index: usize,
    alert: Value,
    group: &Map<String, Value>,
    source: &str,
) -> Result<CloudEvent, PayloadError> {
    let at = |field: &str| format!("alerts[{index}].{field}");
    let Value::Object(mut alert) = alert else {
        return Err(bad(format!("alerts[{index}] is not an object")));
    };
    let status = match alert.get("status").and_then(Value::as_str) {
        Some(s @ ("firing" | "resolved")) => s.to_owned(),
        Some(other) => return Err(bad(format!("{} {other:?} is neither \"firing\" nor \"resolved\"", at("status")))),
        None => return Err(bad(format!("{} is missing", at("status")))),
    };
    let labels = match alert.get("labels") {
        Some(Value::Object(labels)) => labels,
        Some(_) => return Err(bad(format!("{} is not an object", at("labels")))),
        None => return Err(bad(format!("{} is missing", at("labels")))),
    };
    let starts_at = timestamp(&alert, "startsAt", &at)?.ok_or_else(|| bad(format!("{} is missing", at("startsAt"))))?;
    let ends_at = timestamp(&alert, "endsAt", &at)?;
    let alertname = labels.get("alertname").and_then(Value::as_str).map(str::to_owned);
    let fingerprint = match alert.get("fingerprint").and_then(Value::as_str) {
        Some(fp) if !fp.is_empty() => fp.to_owned(),
        // Alertmanager before 0.19 sent no fingerprint: derive one from the labels.
        _ => {
            let fp = labels_fingerprint(labels);
            alert.insert("fingerprint".into(), Value::String(fp.clone()));
            fp
        }
    };
    // One id per alert occurrence: a repeated or redelivered notification of
    // the same firing (same startsAt) or the same resolution (same endsAt)
    // carries the same id, so the host stores it once.
    let starts_text = text(&alert, "startsAt");
    let (ty, id, time) = if status == "firing" {
        (TYPE_FIRING, format!("{fingerprint}:firing:{starts_text}"), starts_at.0)
    } else {
        let (ends_at, ends_text) =
            ends_at.ok_or_else(|| bad(format!("{} is missing on a resolved alert", at("endsAt"))))?;
        (TYPE_RESOLVED, format!("{fingerprint}:resolved:{starts_text}:{ends_text}"), ends_at)
    };
    let mut data = group.clone();
    data.insert("alert".into(), Value::Object(alert));
    let mut event = EventBuilder::new(ty, source).id(id).time(time);
    if let Some(name) = alertname {
        event = event.subject(name);
    }
    Ok(event.json(&data).build())
}

fn text<'a>(alert: &'a Map<String, Value>, field: &str) -> &'a str {
    alert.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// A timestamp field, with its text as sent (ids use the text, so they do
/// not depend on how this code formats times).
fn timestamp(
    alert: &Map<String, Value>,
    field: &str,
    at: &dyn Fn(&str) -> String,
) -> Result<Option<(DateTime<Utc>, String)>, PayloadError> {
    match alert.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Some((t.with_timezone(&Utc), s.clone())))
            .map_err(|e| bad(format!("{} {s:?} is not an RFC 3339 timestamp: {e}", at(field)))),
        Some(other) => Err(bad(format!("{} {other} is not a timestamp string", at(field)))),
    }
}

/// Stable across label order: SHA-256 over the sorted `name=value` pairs.
fn labels_fingerprint(labels: &Map<String, Value>) -> String {
    let mut pairs: Vec<(&String, String)> =
        labels.iter().map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect();
    pairs.sort();
    let mut hasher = sha2::Sha256::new();
    for (k, v) in pairs {
        hasher.update(k.as_bytes());
        hasher.update([0xff]);
        hasher.update(v.as_bytes());
        hasher.update([0xfe]);
    }
    hex::encode(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use plugboard_sdk::proto::event::attribute;
    use plugboard_sdk::proto::io::cloudevents::v1::cloud_event::Data;

    use super::*;

    /// A notification as Alertmanager 0.27 sends it (one firing, one resolved).
    pub const SAMPLE: &str = r#"{
      "receiver": "plugboard",
      "status": "firing",
      "alerts": [
        {
          "status": "firing",
          "labels": {"alertname": "DiskFull", "instance": "db1:9100", "severity": "critical"},
          "annotations": {"summary": "disk / is 97% full"},
          "startsAt": "2026-11-20T10:00:00.123Z",
          "endsAt": "0001-01-01T00:00:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
          "fingerprint": "c0ffee0123456789"
        },
        {
          "status": "resolved",
          "labels": {"alertname": "DiskFull", "instance": "db2:9100", "severity": "critical"},
          "annotations": {},
          "startsAt": "2026-11-20T09:00:00Z",
          "endsAt": "2026-11-20T09:30:00Z",
          "generatorURL": "http://prometheus:9090/graph?g0.expr=disk",
          "fingerprint": "beef000000000001"
        }
      ],
      "groupLabels": {"alertname": "DiskFull"},
      "commonLabels": {"alertname": "DiskFull", "severity": "critical"},
      "commonAnnotations": {},
      "externalURL": "http://alertmanager:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"DiskFull\"}",
      "truncatedAlerts": 0
    }"#;

    fn data(event: &CloudEvent) -> Value {
        match &event.data {
            Some(Data::TextData(t)) => serde_json::from_str(t).unwrap(),
            other => panic!("no JSON data: {other:?}"),
        }
    }

    #[test]
    fn one_event_per_alert_with_the_grouping_fields() {
        let n = parse(SAMPLE.as_bytes(), "/plugboard/alertmanager/am").unwrap();
        assert_eq!(n.truncated, 0);
        let [firing, resolved] = n.events.as_slice() else { panic!("two events") };
        assert_eq!(firing.r#type, TYPE_FIRING);
        assert_eq!(firing.id, "c0ffee0123456789:firing:2026-11-20T10:00:00.123Z");
        assert_eq!(firing.source, "/plugboard/alertmanager/am");
        assert_eq!(attribute(firing, "subject"), Some("DiskFull"));
        let d = data(firing);
        assert_eq!(d["alert"]["labels"]["instance"], "db1:9100");
        assert_eq!(d["alert"]["annotations"]["summary"], "disk / is 97% full");
        assert_eq!(d["groupKey"], "{}:{alertname=\"DiskFull\"}");
        assert_eq!(d["commonLabels"]["severity"], "critical");
        assert_eq!(d["receiver"], "plugboard");
        assert_eq!(d["externalURL"], "http://alertmanager:9093");
        assert!(d.get("alerts").is_none(), "the other alerts are not repeated in each event");

        assert_eq!(resolved.r#type, TYPE_RESOLVED);
        assert_eq!(resolved.id, "beef000000000001:resolved:2026-11-20T09:00:00Z:2026-11-20T09:30:00Z");
        assert_eq!(data(resolved)["alert"]["endsAt"], "2026-11-20T09:30:00Z");
    }

    #[test]
    fn redelivery_gives_the_same_ids_and_a_new_firing_a_new_one() {
        let first = parse(SAMPLE.as_bytes(), "/s").unwrap();
        let again = parse(SAMPLE.as_bytes(), "/s").unwrap();
        let ids = |n: &Notification| n.events.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&first), ids(&again));
        let refired = SAMPLE.replace("2026-11-20T10:00:00.123Z", "2026-11-21T08:00:00Z");
        let refired = parse(refired.as_bytes(), "/s").unwrap();
        assert_ne!(refired.events[0].id, first.events[0].id);
    }

    #[test]
    fn a_missing_fingerprint_is_derived_from_the_labels_in_any_order() {
        let a = r#"{"alerts":[{"status":"firing","labels":{"a":"1","b":"2"},"startsAt":"2026-01-01T00:00:00Z"}]}"#;
        let b = r#"{"alerts":[{"status":"firing","labels":{"b":"2","a":"1"},"startsAt":"2026-01-01T00:00:00Z"}]}"#;
        let ea = &parse(a.as_bytes(), "/s").unwrap().events[0];
        let eb = &parse(b.as_bytes(), "/s").unwrap().events[0];
        assert_eq!(ea.id, eb.id);
        let fp = data(ea)["alert"]["fingerprint"].as_str().unwrap().to_owned();
        assert_eq!(fp.len(), 16);
        assert!(ea.id.starts_with(&fp));
    }

    #[test]
    fn malformed_notifications_say_what_is_wrong() {
        let cases = [
            ("{", "the body is not valid JSON: EOF while parsing an object at line 1 column 1"),
            ("[]", "the body is not a JSON object: not an Alertmanager webhook notification"),
            (
                r#"{"version":"5","alerts":[]}"#,
                "unsupported payload version \"5\"; this source reads Alertmanager's version \"4\"",
            ),
            (r#"{"receiver":"x"}"#, "the body has no \"alerts\" array: not an Alertmanager webhook notification"),
            (r#"{"alerts":[{"labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#, "alerts[0].status is missing"),
            (
                r#"{"alerts":[{"status":"pending","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#,
                "alerts[0].status \"pending\" is neither \"firing\" nor \"resolved\"",
            ),
            (r#"{"alerts":[{"status":"firing","labels":[],"startsAt":"x"}]}"#, "alerts[0].labels is not an object"),
            (
                r#"{"alerts":[{"status":"firing","labels":{},"startsAt":"yesterday"}]}"#,
                "alerts[0].startsAt \"yesterday\" is not an RFC 3339 timestamp: premature end of input",
            ),
            (
                r#"{"alerts":[{"status":"resolved","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}"#,
                "alerts[0].endsAt is missing on a resolved alert",
            ),
        ];
        for (body, expected) in cases {
            let err = parse(body.as_bytes(), "/s").err().unwrap_or_else(|| panic!("{body} parsed"));
            assert_eq!(err.to_string(), expected, "{body}");
        }
    }

    #[test]
    fn real_alertmanager_notifications_parse_and_a_repeated_alert_keeps_its_id() {
        let first = parse(include_bytes!("../fixtures/am-0.25-firing.json"), "/s").unwrap();
        let ids: Vec<&str> = first.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "efb0c6c488e007da:firing:2026-11-26T17:12:28.564273172Z",
                "db73c85864f826bb:firing:2026-11-26T17:12:28.564273172Z"
            ]
        );
        let next = parse(include_bytes!("../fixtures/am-0.25-one-resolved.json"), "/s").unwrap();
        let ids: Vec<(&str, &str)> = next.events.iter().map(|e| (e.r#type.as_str(), e.id.as_str())).collect();
        assert_eq!(
            ids,
            [
                // Sent again while still firing: the same id, so the host stores it once.
                (TYPE_FIRING, "efb0c6c488e007da:firing:2026-11-26T17:12:28.564273172Z"),
                (TYPE_RESOLVED, "db73c85864f826bb:resolved:2026-11-26T17:12:28.564273172Z:2026-11-26T17:12:29Z"),
            ]
        );
        let d = data(&next.events[1]);
        assert_eq!(d["alert"]["labels"]["instance"], "db2:9100");
        assert_eq!(d["status"], "firing", "the group's status stays beside the alert's");
        assert_eq!(d["alert"]["status"], "resolved");
    }

    #[test]
    fn truncated_alerts_are_reported() {
        let body = r#"{"version":"4","truncatedAlerts":3,"alerts":[]}"#;
        let n = parse(body.as_bytes(), "/s").unwrap();
        assert_eq!((n.events.len(), n.truncated), (0, 3));
    }
}
