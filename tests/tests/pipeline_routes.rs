//! Routes end to end: every CloudEvents Subscriptions API filter dialect, the
//! CEL data condition, source selection, and config mistakes.

use plugboard_tests::*;
use serde_json::json;

/// The five events every routing case is judged on.
fn events() -> serde_json::Value {
    json!([
        {"specversion": "1.0", "id": "e1", "source": "/mon/prod", "type": "com.example.alert", "subject": "disk",
         "team": "db", "data": {"severity": "critical", "value": 95}},
        {"specversion": "1.0", "id": "e2", "source": "/mon/prod", "type": "com.example.alert", "subject": "cpu",
         "data": {"severity": "warning", "value": 70}},
        {"specversion": "1.0", "id": "e3", "source": "/ci/prod", "type": "com.example.deploy.done"},
        {"specversion": "1.0", "id": "e4", "source": "/ci/staging", "type": "org.other.thing", "subject": "disk"},
        {"specversion": "1.0", "id": "e5", "source": "/mon/prod", "type": "com.example.alert.resolved",
         "data": {"severity": "critical"}}
    ])
}

#[test]
fn each_filter_dialect_and_the_data_condition_select_the_right_events() {
    let cases: &[(&str, &str, &[&str])] = &[
        ("exact", "filters: [{ exact: { type: com.example.alert } }]", &["e1", "e2"]),
        ("exact2", "filters: [{ exact: { type: com.example.alert, subject: cpu } }]", &["e2"]),
        ("prefix", "filters: [{ prefix: { type: com.example. } }]", &["e1", "e2", "e3", "e5"]),
        ("suffix", "filters: [{ suffix: { source: /staging } }]", &["e4"]),
        ("ext", "filters: [{ exact: { team: db } }]", &["e1"]),
        ("all", "filters: [{ all: [{ prefix: { type: com.example. } }, { exact: { subject: disk } }] }]", &["e1"]),
        ("any", "filters: [{ any: [{ exact: { subject: cpu } }, { suffix: { type: .done } }] }]", &["e2", "e3"]),
        ("not", "filters: [{ not: { prefix: { type: com.example. } } }]", &["e4"]),
        ("and", "filters: [{ prefix: { source: /mon/ } }, { not: { exact: { subject: cpu } } }]", &["e1", "e5"]),
        ("critical", "condition: 'has(data.severity) && data.severity == \"critical\"'", &["e1", "e5"]),
        ("hot", "filters: [{ exact: { type: com.example.alert } }]\n    condition: 'data.value > 90'", &["e1"]),
        ("attrs", "condition: 'event.subject == \"disk\" && event.source.startsWith(\"/ci/\")'", &["e4"]),
        ("http", "sources: [http]", &["e1", "e2", "e3", "e4", "e5"]),
        ("host", "sources: [plugboard]", &[]),
    ];
    let mut yaml = String::from("sinks:\n");
    for (name, _, _) in cases {
        yaml.push_str(&format!("  - name: {name}\n    file: {{ path: {name}.jsonl }}\n"));
    }
    yaml.push_str("  - name: orphan\n    file: { path: orphan.jsonl }\nroutes:\n");
    for (name, route, _) in cases {
        yaml.push_str(&format!("  - name: to-{name}\n    {route}\n    sinks: [{name}]\n"));
    }
    let dir = TestDir::new();
    let config = dir.write_config(&yaml);
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    run.stderr.wait_for("no route names this sink: it receives no events");

    let mut response = http_client()
        .post(&format!("http://{addr}/v1/events"))
        .header("content-type", "application/cloudevents-batch+json")
        .send(events().to_string().as_bytes())
        .unwrap();
    assert_eq!(response.status(), 202, "{}", response.body_mut().read_to_string().unwrap());
    wait_for("every sink to have looked at all 5 events", DEADLINE, || {
        let s = stats(&addr);
        s["sinks"].as_object().unwrap().values().all(|sink| sink["cursor"] == 5)
    });
    for (name, _, expected) in cases {
        let got = ids(&json_lines(&dir.path().join(format!("{name}.jsonl"))));
        assert_eq!(got, *expected, "sink {name}");
    }
    assert!(json_lines(&dir.path().join("orphan.jsonl")).is_empty());
    let s = stats(&addr);
    assert_eq!(s["sinks"]["prefix"]["delivered"], 4);
    assert_eq!(s["sinks"]["prefix"]["skipped"], 1);
}

#[test]
fn routes_select_source_instances_and_without_routes_every_sink_gets_everything() {
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(
        "sources:\n  - { name: a, plugin: range, config: { limit: 3 } }\n  - { name: b, plugin: range, config: { limit: 3 } }\n\
         sinks:\n  - { name: only-a, file: { path: a.jsonl } }\n  - { name: both, file: { path: both.jsonl } }\n\
         routes:\n  - { sources: [a], sinks: [only-a] }\n  - { sources: [a, b], sinks: [both] }\n",
    );
    let _run = run_host(&config);
    wait_for("6 events in the 'both' sink", DEADLINE, || json_lines(&dir.path().join("both.jsonl")).len() == 6);
    wait_for("3 events in the 'only-a' sink", DEADLINE, || json_lines(&dir.path().join("a.jsonl")).len() == 3);
    assert_eq!(ids(&json_lines(&dir.path().join("a.jsonl"))), ["a-0", "a-1", "a-2"]);
    let mut both = ids(&json_lines(&dir.path().join("both.jsonl")));
    both.sort();
    assert_eq!(both, ["a-0", "a-1", "a-2", "b-0", "b-1", "b-2"]);

    // No routes: evbus fan-out.
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(
        "sources:\n  - { name: n, plugin: range, config: { limit: 3 } }\n\
         sinks:\n  - { name: x, file: { path: x.jsonl } }\n  - { name: y, file: { path: y.jsonl } }\n",
    );
    let _run = run_host(&config);
    for f in ["x.jsonl", "y.jsonl"] {
        wait_for(f, DEADLINE, || json_lines(&dir.path().join(f)).len() == 3);
        assert_eq!(ids(&json_lines(&dir.path().join(f))), ["n-0", "n-1", "n-2"]);
    }
}

#[test]
fn mistakes_in_routes_and_sinks_are_reported_before_anything_starts() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("echo");
    let config = dir.write_config(
        "sources:\n  - { name: n, plugin: range, config: { limit: 3 }, drop_types: ['a*b'] }\n  - { name: http, plugin: range, config: { limit: 1 } }\n\
         sinks:\n  - { name: out, stdout: {} }\n  - { name: p, plugin: echo }\n  - { name: h, http: { url: 'not a url' } }\n\
         routes:\n  - name: r\n    sources: [nosuch]\n    filters: [{ all: [] }, { exact: { type: '' } }]\n    condition: 'data.x =='\n    sinks: [out, nowhere]\n",
    );
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for expected in [
        "sources[0] \"n\": drop_types pattern \"a*b\" must be an event type or a prefix followed by a single trailing '*'",
        "sources[1]: instance name \"http\" is reserved",
        "sinks[1] \"p\": plugin \"echo\" is a executor plugin, not a sink",
        "sinks[2] \"h\": http.url \"not a url\" is not a URL",
        "routes[0] \"r\": unknown source \"nosuch\"; sources: n, http, plugboard",
        "routes[0] \"r\": unknown sink \"nowhere\"; sinks: out, p, h",
        "routes[0] \"r\".filters[0]: `all` needs at least one filter expression",
        "routes[0] \"r\".filters[1]: `exact` value for \"type\" must not be empty",
        "routes[0] \"r\": condition does not compile",
    ] {
        assert!(stderr.contains(expected), "missing {expected:?} in:\n{stderr}");
    }
    let config = dir.write_config("routes:\n  - sinks: [stdout]\n    filters: [{ exact: { type: a }, sql: \"x\" }]\n");
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 5 column") && stderr.contains("unknown field `sql`"), "{stderr}");
}
