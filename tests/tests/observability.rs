//! Observability end to end, with the real `plugboard` binary: `GET /metrics`
//! parsed as Prometheus text and checked value by value against what the
//! host was made to do (events from a `range` source into a file sink,
//! duplicates, invalid and dropped events, a sink that refuses everything,
//! commands that succeed, are refused, are unknown or time out); its bearer
//! token; `GET /readyz` while running and while shutting down; and the
//! `plugin`/`instance` fields on a plugin's relayed log lines.

use std::collections::BTreeMap;
use std::net::TcpListener;

use plugboard_tests::chatops::post_command;
use plugboard_tests::http_server::TestServer;
use plugboard_tests::*;
use serde_json::{Value, json};

const TOKEN: &str = "s3cret";

/// One sample of a scrape: metric name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed `GET /metrics` answer.
#[derive(Debug)]
struct Scrape {
    samples: Vec<Sample>,
    /// `# TYPE` per family name.
    types: BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the Prometheus text format (0.0.4); panics on a malformed line.
    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut types = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').unwrap_or_else(|| panic!("bad TYPE line: {line}"));
                types.insert(name.to_owned(), ty.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|e| panic!("bad value in {line}: {e}")),
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line}"));
                    (name.to_owned(), parse_labels(body, line))
                }
            };
            samples.push(Sample { name, labels, value });
        }
        Self { samples, types }
    }

    /// The value of the sample with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.samples.iter().find(|s| s.name == name && s.labels == want).map(|s| s.value)
    }

    /// Like `get`, panicking with the scrape when the sample is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{:#?}", self.named(name)))
    }

    fn named(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// Sum over every sample of `name`.
    fn sum(&self, name: &str) -> f64 {
        self.named(name).iter().map(|s| s.value).sum()
    }
}

/// `a="x",b="y\"z"` → map, with the format's escapes.
fn parse_labels(body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "label value not quoted: {line}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("dangling escape: {line}"),
                },
                Some('"') => break,
                Some(c) => value.push(c),
                None => panic!("unterminated label value: {line}"),
            }
        }
        labels.insert(key.trim_start_matches(',').to_owned(), value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    labels
}

/// `GET path` with an optional bearer token: (status, content type, body).
fn get(addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = http_client().get(&format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.header("authorization", &format!("Bearer {t}"));
    }
    let mut response = request.call().expect("GET");
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap_or_default())
}

fn scrape(addr: &str) -> Scrape {
    let (status, content_type, body) = get(addr, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "content type {content_type}");
    Scrape::parse(&body)
}

/// POSTs a structured CloudEvent to `/v1/events`: (status, body).
fn post_event(addr: &str, event: &Value) -> (u16, Value) {
    let mut response = http_client()
        .post(&format!("http://{addr}/v1/events"))
        .header("authorization", &format!("Bearer {TOKEN}"))
        .header("content-type", "application/cloudevents+json")
        .send(event.to_string())
        .expect("POST /v1/events");
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn command(addr: &str, command: &str) -> Value {
    let (status, reply) =
        post_command(&format!("http://{addr}/v1/commands"), json!({ "command": command }), Some(TOKEN));
    assert!(status == 200 || status >= 400, "{status}: {reply}");
    reply
}

#[test]
fn metrics_count_what_the_pipeline_and_the_commands_did() {
    const N: usize = 25;
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("echo").add_plugin("faulty");
    let refusing = TestServer::start();
    refusing.set_status("/hook", 400);
    let out = dir.path().join("out.jsonl");
    let config = dir.write_config(&format!(
        r#"http:
  token: {TOKEN}
sources:
  - name: nums
    plugin: range
    config: {{ limit: {N} }}
  - name: unwanted
    plugin: range
    config: {{ limit: 3 }}
    drop_types: [dev.plugboard.range]
sinks:
  - name: out
    file: {{ path: {out} }}
  - name: hook
    http: {{ url: "{hook}" }}
executors:
  - name: say
    plugin: echo
    prefixes: [say]
  - name: slow
    plugin: faulty
    prefixes: [slow]
    timeout: 1s
commands:
  policies:
    - name: no-shouting
      effect: deny
      commands: ["say loudly*"]
    - name: everyone
      effect: allow
      commands: ["*"]
"#,
        out = out.display(),
        hook = refusing.url("/hook"),
    ));
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);

    // The token rule of /v1/stats; the probes need none.
    assert_eq!(get(&addr, "/metrics", None).0, 401);
    assert_eq!(get(&addr, "/metrics", Some("wrong")).0, 401);
    assert_eq!(get(&addr, "/healthz", None).0, 200);
    let (status, _, body) = get(&addr, "/readyz", None);
    assert_eq!(status, 200, "{body}");

    // A duplicate, and an event that is not a valid CloudEvent.
    let event = json!({"specversion": "1.0", "id": "dup-1", "source": "/obs/test", "type": "com.example.obs"});
    for expect_stored in [1, 0] {
        let (status, reply) = post_event(&addr, &event);
        assert_eq!((status, reply["stored"].as_u64()), (202, Some(expect_stored)), "{reply}");
    }
    let (status, reply) = post_event(&addr, &json!({"specversion": "1.0", "id": "bad-1", "type": "com.example.obs"}));
    assert_eq!(status, 400, "{reply}");

    // Commands: ok twice, refused by policy, unknown, timed out, ok on the slow one.
    let outcomes: Vec<(String, String)> =
        ["say hello", "say there", "say loudly now", "nosuch thing", "slow sleep 30s", "slow ok"]
            .iter()
            .map(|c| {
                let reply = command(&addr, c);
                (c.to_string(), reply["status"].as_str().unwrap_or_default().to_owned())
            })
            .collect();
    let statuses: Vec<&str> = outcomes.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(statuses, ["ok", "ok", "denied", "unknown", "timeout", "ok"], "{outcomes:?}");

    // Everything stored reaches the file: N range events, dup-1, 6 audit events.
    wait_for("every event in the file sink", DEADLINE, || {
        let lines = json_lines(&out);
        let ids = ids(&lines);
        (0..N).all(|i| ids.contains(&format!("nums-{i}")))
            && ids.iter().any(|id| id == "dup-1")
            && lines
                .iter()
                .filter(|e| e["type"].as_str().is_some_and(|t| t.starts_with("dev.plugboard.command.")))
                .count()
                == 6
    });
    let in_file = json_lines(&out).len() as f64;
    let mut metrics = scrape(&addr);
    wait_for("the counters to catch up with the file and the dropping source", DEADLINE, || {
        metrics = scrape(&addr);
        metrics.get("plugboard_events_delivered_total", &[("sink", "out")]) == Some(in_file)
            && metrics.get("plugboard_events_dead_lettered_total", &[("sink", "hook")]) == Some(in_file)
            && metrics.get("plugboard_events_dropped_total", &[("source", "unwanted")]) == Some(3.0)
    });
    let m = metrics;

    // Sources: per instance, exactly.
    let source =
        |name: &str, instance: &str| m.value(&format!("plugboard_events_{name}_total"), &[("source", instance)]);
    assert_eq!(
        ["received", "stored", "deduplicated", "rejected", "dropped"].map(|n| source(n, "nums")),
        [N as f64, N as f64, 0.0, 0.0, 0.0]
    );
    assert_eq!(
        ["received", "stored", "deduplicated", "rejected", "dropped"].map(|n| source(n, "unwanted")),
        [3.0, 0.0, 0.0, 0.0, 3.0]
    );
    assert_eq!(
        ["received", "stored", "deduplicated", "rejected", "dropped"].map(|n| source(n, "http")),
        [3.0, 1.0, 1.0, 1.0, 0.0]
    );
    // The host's own instance holds the 6 audit events (counted in the file
    // above) and lifecycle events, which no route sends to these sinks.
    let host_stored = source("stored", "plugboard");
    assert!(host_stored >= 6.0, "one audit event per command, plus lifecycle events: {host_stored}");
    // What the sources stored is exactly what each sink dealt with.
    assert_eq!(m.sum("plugboard_events_stored_total") - host_stored, in_file - 6.0);
    assert_eq!(m.value("plugboard_events_dead_lettered_total", &[("sink", "out")]), 0.0);
    assert_eq!(m.value("plugboard_events_delivered_total", &[("sink", "hook")]), 0.0);
    for sink in ["out", "hook"] {
        assert_eq!(m.value("plugboard_sink_backlog", &[("sink", sink)]), 0.0, "{sink}");
    }
    for instance in ["nums", "unwanted", "http", "plugboard"] {
        assert_eq!(m.value("plugboard_queue_depth", &[("source", instance)]), 0.0, "{instance}");
    }
    assert_eq!(m.types["plugboard_events_received_total"], "counter");
    assert_eq!(m.types["plugboard_sink_backlog"], "gauge");

    // Commands: one count per command, by executor and outcome.
    let commands = |executor: &str, outcome: &str| {
        m.value("plugboard_commands_total", &[("executor", executor), ("outcome", outcome)])
    };
    assert_eq!(commands("say", "ok"), 2.0);
    assert_eq!(commands("say", "denied"), 1.0);
    assert_eq!(commands("", "unknown"), 1.0);
    assert_eq!(commands("slow", "timeout"), 1.0);
    assert_eq!(commands("slow", "ok"), 1.0);
    assert_eq!(m.sum("plugboard_commands_total"), 6.0);

    // Latency: commands that reached their executor (the refusal did not).
    assert_eq!(m.types["plugboard_command_duration_seconds"], "histogram");
    for (executor, count) in [("say", 2.0), ("slow", 2.0)] {
        let labels = [("executor", executor)];
        assert_eq!(m.value("plugboard_command_duration_seconds_count", &labels), count, "{executor}");
        let buckets: Vec<&Sample> = m
            .named("plugboard_command_duration_seconds_bucket")
            .into_iter()
            .filter(|s| s.labels["executor"] == executor)
            .collect();
        assert!(buckets.len() > 5, "{buckets:?}");
        assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value), "buckets are cumulative: {buckets:?}");
        let inf = buckets.iter().find(|s| s.labels["le"] == "+Inf").expect("+Inf bucket");
        assert_eq!(inf.value, count);
    }
    // The timed-out command took its whole 1 s timeout.
    assert!(m.value("plugboard_command_duration_seconds_sum", &[("executor", "slow")]) >= 1.0);

    // Plugins: the executors run; the range sources finished their streams.
    let up = |instance: &str, kind: &str, plugin: &str| {
        m.value("plugboard_plugin_up", &[("instance", instance), ("kind", kind), ("plugin", plugin)])
    };
    assert_eq!(up("say", "executor", "echo"), 1.0);
    assert_eq!(up("slow", "executor", "faulty"), 1.0);
    assert_eq!(m.value("plugboard_plugin_deactivated", &[("instance", "say"), ("kind", "executor")]), 0.0);
    wait_for("the range sources to finish", DEADLINE, || {
        let m = scrape(&addr);
        m.get("plugboard_plugin_up", &[("instance", "nums"), ("kind", "source"), ("plugin", "range")]) == Some(0.0)
    });

    // The echo plugin's own log line, relayed with the plugin and the instance.
    let relayed: Vec<Value> = run
        .stderr
        .snapshot()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v.get("fields").cloned())
        .filter(|f| f["message"].as_str().is_some_and(|m| m.starts_with("echo running")))
        .collect();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    for fields in &relayed {
        assert_eq!((&fields["plugin"], &fields["instance"]), (&json!("echo"), &json!("say")), "{fields}");
    }
}

#[test]
fn readyz_says_ready_while_running_and_names_what_is_not_while_shutting_down() {
    let dir = TestDir::new();
    // A sink whose receiver never answers keeps the shutdown draining for a while.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.write_config(&format!(
        "http:\n  token: {TOKEN}\nsinks:\n  - name: stuck\n    http: {{ url: \"http://{}/never\", timeout: 10s }}\n",
        silent.local_addr().unwrap()
    ));
    let mut run = run_host(&config);
    let addr = http_addr(&run.stderr);

    let (status, content_type, body) = get(&addr, "/readyz", None);
    assert_eq!(status, 200, "{body}");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"ready": true, "checks": {"store": "ok", "http": "ok", "shutdown": "ok"}, "not_ready": []})
    );

    let event = json!({"specversion": "1.0", "id": "held-1", "source": "/obs/test", "type": "com.example.obs"});
    assert_eq!(post_event(&addr, &event).0, 202);
    wait_for("the stuck sink's backlog", DEADLINE, || {
        scrape(&addr).get("plugboard_sink_backlog", &[("sink", "stuck")]) == Some(1.0)
    });

    run.signal(nix::sys::signal::Signal::SIGTERM);
    let mut answer = (0, Value::Null);
    wait_for("/readyz to answer 503", DEADLINE, || {
        let (status, _, body) = get(&addr, "/readyz", None);
        answer = (status, serde_json::from_str(&body).unwrap_or(Value::String(body)));
        status == 503
    });
    let (_, body) = answer;
    assert_eq!(body["ready"], false, "{body}");
    assert_eq!(body["checks"]["shutdown"], "the host is shutting down", "{body}");
    assert!(body["not_ready"].as_array().unwrap().contains(&json!("shutdown")), "{body}");
    // Still draining: the event is neither delivered nor lost.
    assert_eq!(scrape(&addr).value("plugboard_events_delivered_total", &[("sink", "stuck")]), 0.0);

    run.wait_exit(DEADLINE);
    assert!(get_refused(&addr), "the HTTP server closed with the host");
    drop(silent);
}

/// Whether connecting to `addr` is refused.
fn get_refused(addr: &str) -> bool {
    std::net::TcpStream::connect(addr).is_err()
}
