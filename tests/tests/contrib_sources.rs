//! End-to-end tests of the contrib sources: url_check, file_watch and file
//! under the real `plugboard run`; webhook and alertmanager as real plugin
//! processes driven over gRPC with the host library (the host's HTTP ingress
//! forwards to exactly these calls).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hmac::{KeyInit, Mac};
use nix::sys::signal::Signal;
use plugboard_host::plugin::{self, PluginHandle, StartOptions};
use plugboard_proto::CloudEvent;
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_proto::plugboard::v1::{ExternalRequest, ExternalResponse, PluginKind};
use plugboard_tests::*;

fn data(event: &CloudEvent) -> serde_json::Value {
    match &event.data {
        Some(Data::TextData(t)) => {
            serde_json::from_str(t).unwrap_or_else(|e| panic!("{}: data is not JSON: {e}", event.id))
        }
        other => panic!("{}: no text data: {other:?}", event.id),
    }
}

fn subject(event: &CloudEvent) -> &str {
    plugboard_proto::event::attribute(event, "subject").unwrap_or_default()
}

fn run_config(config: &Path) -> Running {
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(config);
    Running::spawn(cmd)
}

/// Pids of the "source started" log lines of one source, in order.
fn started_pids(lines: &[String], source: &str) -> Vec<u32> {
    log_events(lines, "source started")
        .into_iter()
        .filter(|f| f["source"] == source)
        .filter_map(|f| f["pid"].as_u64().map(|p| p as u32))
        .collect()
}

// ---------------------------------------------------------------- url_check

/// A loopback HTTP server on its own runtime: `/ok` answers 200.
struct HttpServer {
    base: String,
    _runtime: tokio::runtime::Runtime,
}

fn http_server() -> HttpServer {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route("/ok", axum::routing::get(|| async { "ok" }));
    runtime.spawn(async move { axum::serve(listener, app).await });
    HttpServer { base, _runtime: runtime }
}

fn refused_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/health")
}

#[test]
fn url_check_reports_up_and_down_and_resumes_its_rounds_after_a_crash() {
    let server = http_server();
    let ok = format!("{}/ok", server.base);
    let refused = refused_url();
    let dir = TestDir::new();
    dir.add_plugin("url_check");
    let config = dir.write_config(&format!(
        "restart: {{ initial_backoff: 50ms }}\nsources:\n  - name: web\n    plugin: url_check\n    config: {{ urls: [\"{ok}\", \"{refused}\"], delay: 50ms, timeout: 5s }}\n"
    ));
    let run = run_config(&config);
    let checks_of = |lines: &[String], url: &str| -> Vec<u64> {
        parse_events(lines).iter().filter(|e| subject(e) == url).map(|e| data(e)["check"].as_u64().unwrap()).collect()
    };
    let lines = run.stdout.wait_until("two rounds", DEADLINE, |l| checks_of(l, &ok).len() >= 2);
    let events = parse_events(&lines);

    let up = events.iter().find(|e| subject(e) == ok).unwrap();
    assert_eq!(up.r#type, "dev.plugboard.url_check.up");
    assert_eq!(up.source, "/plugboard/url_check/web");
    assert_eq!(up.id, "web-0-0");
    let d = data(up);
    assert_eq!((d["status"].as_str(), d["status_code"].as_u64()), (Some("up"), Some(200)));
    assert!(d["latency_ms"].as_f64().is_some());

    let down = events.iter().find(|e| subject(e) == refused).unwrap();
    assert_eq!(down.r#type, "dev.plugboard.url_check.down");
    assert_eq!(down.id, "web-0-1");
    let error = data(down)["error_msg"].as_str().unwrap().to_owned();
    assert!(error.contains("Connection refused"), "{error}");

    // Kill the plugin: the host restarts it with the last cursor and the
    // rounds go on from there, so no event id is ever reused.
    let first = started_pids(&run.stderr.snapshot(), "web")[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first as i32), Signal::SIGKILL).unwrap();
    run.stderr.wait_until("the restart", DEADLINE, |l| started_pids(l, "web").len() >= 2);
    let before = checks_of(&run.stdout.snapshot(), &ok).len();
    let lines = run.stdout.wait_until("rounds after the restart", DEADLINE, |l| checks_of(l, &ok).len() >= before + 2);
    let checks = checks_of(&lines, &ok);
    assert!(checks.windows(2).all(|w| w[0] < w[1]), "rounds only go forward across the restart: {checks:?}");
    let ids: Vec<String> = parse_events(&lines).into_iter().map(|e| e.id).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id was reused: {ids:?}");
}

#[test]
fn a_config_the_schema_refuses_stops_the_host_before_anything_starts() {
    let dir = TestDir::new();
    dir.add_plugin("url_check").add_plugin("file_watch");
    let config = dir.write_config(
        "sources:\n  - name: web\n    plugin: url_check\n    config: { urls: [\"http://a/\"], dealy: 5 }\n  - name: w\n    plugin: file_watch\n    config: { recursive: true }\n",
    );
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sources[0] \"web\": config rejected by plugin \"url_check\"'s schema"), "{stderr}");
    assert!(stderr.contains("dealy"), "{stderr}");
    assert!(stderr.contains("sources[1] \"w\": config rejected by plugin \"file_watch\"'s schema"), "{stderr}");
}

#[test]
fn every_contrib_source_describes_itself() {
    let dir = TestDir::new();
    for name in ["webhook", "alertmanager", "url_check", "file_watch", "file"] {
        dir.add_plugin(name);
    }
    let out = plugboard().arg("plugins").env("PLUGBOARD_PLUGINS_DIR", dir.plugins()).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{table}\n{}", String::from_utf8_lossy(&out.stderr));
    for name in ["webhook", "alertmanager", "url_check", "file_watch", "file"] {
        assert!(table.lines().any(|l| l.starts_with(&format!("{name} ")) && l.contains("source")), "{name}: {table}");
    }
}

// --------------------------------------------------------------- file_watch

/// Whether `done` holds within `within` (polling, no panic): for retries.
fn seen_within(lines: &Lines, within: Duration, done: impl Fn(&[String]) -> bool) -> bool {
    let end = std::time::Instant::now() + within;
    loop {
        if done(&lines.snapshot()) {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn file_watch_reports_real_file_operations_under_plugboard_run() {
    let dir = TestDir::new();
    dir.add_plugin("file_watch");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).unwrap();
    let config = dir.write_config(&format!(
        "sources:\n  - name: files\n    plugin: file_watch\n    config: {{ path: \"{}\", recursive: true, debounce: 20ms }}\n",
        watched.display()
    ));
    let run = run_config(&config);
    let has = |lines: &[String], ty: &str, path: &Path| {
        parse_events(lines).iter().any(|e| e.r#type == ty && subject(e) == path.to_str().unwrap())
    };

    // The watch is live once a probe file is reported.
    let ready = std::time::Instant::now() + DEADLINE;
    for i in 0.. {
        assert!(std::time::Instant::now() < ready, "the watch never reported a probe:\n{}", run.stderr.text());
        let probe = watched.join(format!("probe-{i}"));
        std::fs::write(&probe, b"").unwrap();
        if seen_within(&run.stdout, Duration::from_millis(300), |l| has(l, "dev.plugboard.file_watch.created", &probe))
        {
            break;
        }
    }

    let sub = watched.join("sub");
    std::fs::create_dir(&sub).unwrap();
    run.stdout.wait_until("sub created", DEADLINE, |l| has(l, "dev.plugboard.file_watch.created", &sub));
    let a = sub.join("a.txt");
    std::fs::write(&a, b"hello").unwrap();
    run.stdout.wait_until("a.txt created", DEADLINE, |l| has(l, "dev.plugboard.file_watch.created", &a));
    let b = watched.join("b.txt");
    std::fs::rename(&a, &b).unwrap();
    let lines = run.stdout.wait_until("a.txt moved", DEADLINE, |l| has(l, "dev.plugboard.file_watch.moved", &a));
    let moved = parse_events(&lines).into_iter().find(|e| e.r#type == "dev.plugboard.file_watch.moved").unwrap();
    let d = data(&moved);
    assert_eq!(d["dest_path"], b.to_str().unwrap());
    assert_eq!(d["root_path"], watched.to_str().unwrap());
    assert_eq!(moved.source, "/plugboard/file_watch/files");
    std::fs::remove_file(&b).unwrap();
    run.stdout.wait_until("b.txt deleted", DEADLINE, |l| has(l, "dev.plugboard.file_watch.deleted", &b));
}

// --------------------------------------------------------------------- file

#[test]
fn file_loads_at_start_and_reloads_on_change_under_plugboard_run() {
    let dir = TestDir::new();
    dir.add_plugin("file");
    let facts = dir.path().join("facts.yaml");
    std::fs::write(&facts, "env: staging\nreplicas: 2\n").unwrap();
    let config = dir.write_config(&format!(
        "sources:\n  - name: facts\n    plugin: file\n    config: {{ files: [\"{}\"], debounce: 20ms }}\n",
        facts.display()
    ));
    let run = run_config(&config);
    let lines = run.stdout.wait_until("the first load", DEADLINE, |l| !l.is_empty());
    let first = &parse_events(&lines)[0];
    assert_eq!(first.r#type, "dev.plugboard.file.loaded");
    assert_eq!(first.source, "/plugboard/file/facts");
    assert_eq!(subject(first), facts.to_str().unwrap());
    assert_eq!(data(first), serde_json::json!({"env": "staging", "replicas": 2}));

    // Replaced the way deploy tools do: a new file renamed over the old.
    let tmp = dir.path().join("facts.yaml.new");
    std::fs::write(&tmp, "env: staging\nreplicas: 5\n").unwrap();
    std::fs::rename(&tmp, &facts).unwrap();
    let reloaded = |l: &[String]| {
        parse_events(l).iter().any(|e| e.r#type == "dev.plugboard.file.loaded" && data(e)["replicas"] == 5)
    };
    run.stdout.wait_until("the reload", DEADLINE, reloaded);

    let tmp = dir.path().join("facts.yaml.new");
    std::fs::write(&tmp, "replicas: [\n").unwrap();
    std::fs::rename(&tmp, &facts).unwrap();
    let lines = run.stdout.wait_until("the invalid file", DEADLINE, |l| {
        parse_events(l).iter().any(|e| e.r#type == "dev.plugboard.file.invalid")
    });
    let invalid = parse_events(&lines).into_iter().find(|e| e.r#type == "dev.plugboard.file.invalid").unwrap();
    assert!(data(&invalid)["error"].as_str().unwrap().starts_with("invalid YAML: "));
    // The plugin also logged why, and the host relayed it.
    run.stderr.wait_for(&format!("cannot load {}: invalid YAML", facts.display()));
}

// ------------------------------------------ webhook and alertmanager (gRPC)

async fn launch(plugin_name: &str) -> PluginHandle {
    let options = StartOptions { start_timeout: DEADLINE, ..Default::default() };
    let handle = plugin::launch(plugin_name, &bin(&format!("plugboard-{plugin_name}")), &options)
        .await
        .unwrap_or_else(|e| panic!("launch {plugin_name}: {e}"));
    assert_eq!(handle.info().name, plugin_name);
    assert!(handle.has_kind(PluginKind::Source));
    assert!(!handle.info().help.is_empty());
    handle
}

fn request(instance: &str, config: &serde_json::Value, headers: &[(&str, &str)], body: &[u8]) -> ExternalRequest {
    ExternalRequest {
        instance: instance.into(),
        config: serde_json::to_vec(config).unwrap(),
        method: "POST".into(),
        path: format!("/v1/sources/{instance}"),
        query: String::new(),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>(),
        body: body.to_vec(),
    }
}

fn error_message(resp: &ExternalResponse) -> String {
    let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    v["error"]["message"].as_str().unwrap_or_default().to_owned()
}

fn event_json(event: &CloudEvent) -> String {
    plugboard_proto::event::validate(event).unwrap_or_else(|e| panic!("invalid CloudEvent {}: {e}", event.id));
    serde_json::to_string(&plugboard_proto::event::Json(event)).unwrap()
}

#[tokio::test]
async fn webhook_turns_forwarded_requests_into_events_over_grpc() {
    let handle = launch("webhook").await;
    let config = serde_json::json!({
        "token": "t0k-s3cret",
        "hmac": {"secret": "hmac-s3cret"},
        "id_header": "x-github-delivery",
        "headers": {"x-github-event": "githubevent"}
    });
    let mut source = handle.source();
    // As under the host: the instance's stream is open while requests come in.
    let mut stream = source.stream("hook", &config, None).await.unwrap();

    let body = br#"{"ref":"refs/heads/main","commits":[{"id":"abc"}]}"#;
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(b"hmac-s3cret").unwrap();
    mac.update(body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let good = [
        ("authorization", "Bearer t0k-s3cret"),
        ("x-hub-signature-256", signature.as_str()),
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
    ];
    let resp = source.handle_external_request(request("hook", &config, &good, body)).await.unwrap();
    assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
    let [event] = resp.events.as_slice() else { panic!("one event: {:?}", resp.events) };
    assert_eq!(event.id, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(event.r#type, "dev.plugboard.webhook");
    assert_eq!(event.source, "/plugboard/webhook/hook");
    assert_eq!(data(event)["commits"][0]["id"], "abc");
    let json = event_json(event);
    assert!(json.contains(r#""githubevent":"push""#), "{json}");
    for secret in ["t0k-s3cret", signature.as_str(), "authorization", "x-hub-signature"] {
        assert!(!json.contains(secret), "{secret:?} leaked into {json}");
    }

    let mut wrong_token = good;
    wrong_token[0] = ("authorization", "Bearer guess");
    let resp = source.handle_external_request(request("hook", &config, &wrong_token, body)).await.unwrap();
    assert_eq!((resp.status, error_message(&resp).as_str()), (401, "invalid bearer token"));
    assert!(resp.events.is_empty());

    let resp = source.handle_external_request(request("hook", &config, &good, br#"{"ref":"tampered"}"#)).await.unwrap();
    assert_eq!(resp.status, 403);
    assert_eq!(error_message(&resp), "signature in x-hub-signature-256 does not match the body");
    assert!(resp.events.is_empty());

    let unsigned = serde_json::json!({});
    let resp = source.handle_external_request(request("hook", &unsigned, &[], b"not json")).await.unwrap();
    assert_eq!(resp.status, 400);
    assert!(
        error_message(&resp).starts_with("the body is not valid JSON: expected ident at line 1 column 2"),
        "{}",
        error_message(&resp)
    );

    // A config the plugin refuses is an error status, not a crash.
    let bad = serde_json::json!({"hmac": {"secret": "x", "algorithm": "md5"}});
    let status = source.handle_external_request(request("hook", &bad, &[], b"{}")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("unknown variant `md5`"), "{}", status.message());

    // Requests produced no stream events, and the stream is still open.
    let polled = tokio::time::timeout(Duration::ZERO, stream.message()).await;
    assert!(polled.is_err(), "the stream produced or ended: {polled:?}");

    let pid = handle.process().pid();
    assert_eq!(handle.shutdown().await.code(), Some(0));
    assert!(!process_alive(pid));
}

/// A notification exactly as a real Alertmanager (0.25) posted it: one alert
/// still firing, one resolved.
const NOTIFICATION: &str = include_str!("../../contrib/alertmanager/fixtures/am-0.25-one-resolved.json");

#[tokio::test]
async fn alertmanager_turns_a_notification_into_one_event_per_alert_over_grpc() {
    let handle = launch("alertmanager").await;
    let config = serde_json::json!({"token": "am-s3cret"});
    let mut source = handle.source();
    let mut stream = source.stream("am", &config, None).await.unwrap();
    // The headers Alertmanager sends.
    let headers = [
        ("authorization", "Bearer am-s3cret"),
        ("content-type", "application/json"),
        ("user-agent", "Alertmanager/0.25.0"),
    ];

    let resp = source.handle_external_request(request("am", &config, &headers, NOTIFICATION.as_bytes())).await.unwrap();
    assert_eq!(resp.status, 202, "{}", String::from_utf8_lossy(&resp.body));
    let ids: Vec<&str> = resp.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "efb0c6c488e007da:firing:2026-11-26T17:12:28.564273172Z",
            "db73c85864f826bb:resolved:2026-11-26T17:12:28.564273172Z:2026-11-26T17:12:29Z"
        ]
    );
    let reply: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(reply["accepted"], 2);
    let (firing, resolved) = (&resp.events[0], &resp.events[1]);
    assert_eq!(firing.r#type, "io.prometheus.alertmanager.alert.firing");
    assert_eq!(resolved.r#type, "io.prometheus.alertmanager.alert.resolved");
    assert_eq!(subject(firing), "DiskFull");
    let d = data(resolved);
    assert_eq!(d["alert"]["labels"]["instance"], "db2:9100");
    assert_eq!(d["alert"]["annotations"]["summary"], "disk / is 91% full");
    assert_eq!(d["alert"]["endsAt"], "2026-11-26T17:12:29Z");
    assert_eq!(d["groupKey"], "{}:{alertname=\"DiskFull\"}");
    assert_eq!(d["commonLabels"]["severity"], "critical");
    assert_eq!(d["receiver"], "pb");
    for event in &resp.events {
        assert!(!event_json(event).contains("am-s3cret"));
    }

    // Alertmanager retrying the same notification yields the same ids (the host stores them once).
    let again =
        source.handle_external_request(request("am", &config, &headers, NOTIFICATION.as_bytes())).await.unwrap();
    let again_ids: Vec<&str> = again.events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(again_ids, ids);

    let resp = source.handle_external_request(request("am", &config, &[], NOTIFICATION.as_bytes())).await.unwrap();
    assert_eq!((resp.status, resp.events.len()), (401, 0));
    let resp = source.handle_external_request(request("am", &config, &headers, br#"{"alerts": {}}"#)).await.unwrap();
    assert_eq!((resp.status, error_message(&resp).as_str()), (400, "\"alerts\" is not an array"));

    let polled = tokio::time::timeout(Duration::ZERO, stream.message()).await;
    assert!(polled.is_err(), "the stream produced or ended: {polled:?}");
    assert_eq!(handle.shutdown().await.code(), Some(0));
}
