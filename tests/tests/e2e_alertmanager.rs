//! `make test-e2e`: a real Prometheus Alertmanager (Debian's
//! prometheus-alertmanager, installed by the Makefile target when missing)
//! posts its webhook to the `alertmanager` source through the host's
//! `POST /v1/sources/{instance}`; the alerts arrive as events in a sink,
//! firing and then resolved.

use std::process::{Command, Stdio};
use std::time::Duration;

use plugboard_tests::*;

/// A free loopback port (bound and released; Alertmanager binds it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Alertmanager(std::process::Child);

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_real_alertmanager_delivers_firing_and_resolved_alerts_as_events() {
    let dir = TestDir::new();
    dir.add_plugin("alertmanager");
    let out = dir.path().join("alerts.jsonl");
    let config = dir.write_config(&format!(
        "sources:\n  - {{ name: am, plugin: alertmanager, config: {{ token: s3cret-token }} }}\n\
         sinks:\n  - {{ name: alerts, file: {{ path: {} }} }}\n",
        out.display()
    ));
    let host = run_host(&config);
    let plugboard_addr = http_addr(&host.stderr);

    // Alertmanager's own config: one webhook receiver pointing at the host,
    // with the token the source requires, and short waits so the test is quick.
    let am_port = free_port();
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        format!(
            "route:\n  receiver: plugboard\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: plugboard\n    webhook_configs:\n      - url: http://{plugboard_addr}/v1/sources/am\n        send_resolved: true\n        http_config:\n          authorization: {{ credentials: s3cret-token }}\n"
        ),
    )
    .unwrap();
    let am = Alertmanager(
        Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!("--storage.path={}", dir.path().join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run prometheus-alertmanager (make test-e2e installs it)"),
    );
    let api = format!("http://127.0.0.1:{am_port}/api/v2");
    wait_for("Alertmanager to answer", DEADLINE, || {
        http_client().get(&format!("{api}/status")).call().is_ok_and(|r| r.status() == 200)
    });

    // Fire an alert through Alertmanager's API, as Prometheus would.
    let post = |body: serde_json::Value| {
        let mut resp = http_client().post(&format!("{api}/alerts")).send_json(&body).unwrap();
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "Alertmanager refused {body}: {text}");
    };
    let starts = rfc3339_from_now(-60);
    post(serde_json::json!([{
        "labels": { "alertname": "DiskFull", "severity": "critical", "instance": "db-1" },
        "annotations": { "summary": "disk 97% full on db-1" },
        "startsAt": starts,
    }]));
    let firing = |events: &[serde_json::Value]| {
        events.iter().find(|e| e["type"] == "io.prometheus.alertmanager.alert.firing").cloned()
    };
    wait_for("the firing alert in the sink", DEADLINE, || firing(&json_lines(&out)).is_some());
    let event = firing(&json_lines(&out)).unwrap();
    assert_eq!(event["subject"], "DiskFull");
    assert_eq!(event["data"]["alert"]["labels"]["instance"], "db-1");
    assert_eq!(event["data"]["alert"]["annotations"]["summary"], "disk 97% full on db-1");
    assert!(!event.to_string().contains("s3cret-token"), "the token never reaches an event: {event}");

    // Resolve it: Alertmanager sends the resolved notification.
    post(serde_json::json!([{
        "labels": { "alertname": "DiskFull", "severity": "critical", "instance": "db-1" },
        "annotations": { "summary": "disk 97% full on db-1" },
        "startsAt": starts,
        "endsAt": rfc3339_from_now(-1),
    }]));
    wait_for("the resolved alert in the sink", Duration::from_secs(60), || {
        json_lines(&out).iter().any(|e| e["type"] == "io.prometheus.alertmanager.alert.resolved")
    });
    // Each notification was stored once per alert occurrence, whatever Alertmanager repeated.
    let ids = ids(&json_lines(&out));
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(ids.len(), unique.len(), "no duplicate events: {ids:?}");
    drop(am);
    drop(host);
}

/// RFC 3339 UTC time `offset_secs` from now.
fn rfc3339_from_now(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::TimeDelta::seconds(offset_secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
