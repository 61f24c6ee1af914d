//! HTTP ingress end to end: `POST /v1/events` in every content mode, every
//! kind of malformed event, body limits and tokens; `plugboard send`; and
//! `/v1/sources/{instance}` forwarding to a source plugin. Every rejected
//! request is checked to have stored nothing.

use plugboard_tests::*;
use serde_json::{Value, json};

/// A host with no plugin sources, its HTTP address and the config path.
fn host(dir: &TestDir, yaml: &str) -> (Running, String, std::path::PathBuf) {
    let config = dir.write_config(yaml);
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    (run, addr, config)
}

/// POSTs `body` with `headers`; returns (status, JSON body).
fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut request = http_client().post(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let mut response = request.send(body).unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

const STRUCTURED: (&str, &str) = ("content-type", "application/cloudevents+json");
const BATCH: (&str, &str) = ("content-type", "application/cloudevents-batch+json");

/// Ids of the stored events (`plugboard events list` filtered by `filter`), in store order.
fn stored_ids(config: &std::path::Path, filter: &[&str]) -> Vec<String> {
    stored_events(config, filter).iter().map(|e| e["event"]["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn every_content_mode_is_stored_before_the_202() {
    let dir = TestDir::new();
    let (_run, addr, config) = host(&dir, "sinks:\n  - name: all\n    file: { path: all.jsonl }\n");
    let url = format!("http://{addr}/v1/events");

    // Binary mode: attributes in percent-encoded ce- headers, data as the body.
    let (status, reply) = post(
        &url,
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "bin-1"),
            ("ce-source", "/test/binary"),
            ("ce-type", "com.example.binary"),
            ("ce-subject", "caf%C3%A9 au lait"),
            ("ce-team", "db"),
            ("content-type", "application/json"),
        ],
        br#"{"n":1}"#,
    );
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["stored"], 1);
    // 202 means durable: the event is in the store right now.
    let stored = stored_events(&config, &[]);
    assert_eq!(stored.len(), 1);
    let e = &stored[0];
    assert_eq!(e["instance"], "http");
    assert_eq!(e["seq"], reply["seqs"][0]);
    assert_eq!(e["event"]["subject"], "café au lait");
    assert_eq!(e["event"]["team"], "db");
    assert_eq!(e["event"]["data"], json!({"n": 1}));

    // Structured mode.
    let event = json!({"specversion": "1.0", "id": "str-1", "source": "/test/structured", "type": "com.example.structured",
                       "time": "2026-11-26T10:00:00Z", "data": {"ok": true}});
    let (status, reply) = post(&url, &[STRUCTURED], event.to_string().as_bytes());
    assert_eq!(status, 202, "{reply}");

    // Batched mode.
    let batch = json!([
        {"specversion": "1.0", "id": "bat-1", "source": "/test/batch", "type": "com.example.batch"},
        {"specversion": "1.0", "id": "bat-2", "source": "/test/batch", "type": "com.example.batch", "data_base64": "AAEC"},
    ]);
    let (status, reply) = post(&url, &[BATCH], batch.to_string().as_bytes());
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["stored"], 2);

    assert_eq!(stored_ids(&config, &[]), ["bin-1", "str-1", "bat-1", "bat-2"]);
    let stored = stored_events(&config, &["--type", "com.example.batch"]);
    assert_eq!(stored[1]["event"]["data_base64"], "AAEC");
    // ... and the sink got them.
    wait_for("the file sink to get 4 events", DEADLINE, || json_lines(&dir.path().join("all.jsonl")).len() == 4);
    assert_eq!(ids(&json_lines(&dir.path().join("all.jsonl"))), ["bin-1", "str-1", "bat-1", "bat-2"]);
}

#[test]
fn duplicates_are_acknowledged_and_stored_once() {
    let dir = TestDir::new();
    let (_run, addr, config) = host(&dir, "");
    let url = format!("http://{addr}/v1/events");
    let event = json!({"specversion": "1.0", "id": "same", "source": "/dup", "type": "t"}).to_string();
    let (status, first) = post(&url, &[STRUCTURED], event.as_bytes());
    assert_eq!((status, first["stored"].clone(), first["duplicates"].clone()), (202, json!(1), json!(0)));
    let (status, second) = post(&url, &[STRUCTURED], event.as_bytes());
    assert_eq!((status, second["stored"].clone(), second["duplicates"].clone()), (202, json!(0), json!(1)));
    // Same id from another source is another event.
    let other = json!({"specversion": "1.0", "id": "same", "source": "/other", "type": "t"}).to_string();
    assert_eq!(post(&url, &[STRUCTURED], other.as_bytes()).0, 202);
    let stored = stored_events(&config, &[]);
    let pairs: Vec<(&str, &str)> =
        stored.iter().map(|e| (e["event"]["source"].as_str().unwrap(), e["event"]["id"].as_str().unwrap())).collect();
    assert_eq!(pairs, [("/dup", "same"), ("/other", "same")]);
    let stats = stats(&addr);
    assert_eq!(stats["sources"]["http"]["duplicates"], 1);
    assert_eq!(stats["sources"]["http"]["stored"], 2);
}

#[test]
fn malformed_events_get_400_naming_the_problem_and_nothing_is_stored() {
    let dir = TestDir::new();
    let (_run, addr, config) = host(&dir, "");
    let url = format!("http://{addr}/v1/events");
    let good = json!({"specversion": "1.0", "id": "good", "source": "/s", "type": "t"});
    let with = |key: &str, value: Value| {
        let mut e = good.clone();
        e[key] = value;
        e
    };
    let without = |key: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(key);
        e
    };
    // (what, request headers, body, what the error message must mention)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, &'a str);
    let cases: Vec<Case> = vec![
        ("not JSON", vec![STRUCTURED], b"{\"specversion\": ".to_vec(), "not a CloudEvent in the JSON format"),
        ("no id", vec![STRUCTURED], without("id").to_string().into(), "id"),
        ("no source", vec![STRUCTURED], without("source").to_string().into(), "source"),
        ("no type", vec![STRUCTURED], without("type").to_string().into(), "type"),
        ("no specversion", vec![STRUCTURED], without("specversion").to_string().into(), "specversion"),
        ("empty id", vec![STRUCTURED], with("id", json!("")).to_string().into(), "missing required attribute \"id\""),
        (
            "spec 0.3",
            vec![STRUCTURED],
            with("specversion", json!("0.3")).to_string().into(),
            "unsupported specversion \"0.3\"",
        ),
        ("spec 2.0", vec![STRUCTURED], with("specversion", json!("2.0")).to_string().into(), "2.0"),
        ("bad extension name", vec![STRUCTURED], with("Bad_Ext", json!("x")).to_string().into(), "Bad_Ext"),
        ("bad time", vec![STRUCTURED], with("time", json!("yesterday")).to_string().into(), "yesterday"),
        ("integer out of range", vec![STRUCTURED], with("big", json!(1u64 << 40)).to_string().into(), "32-bit"),
        ("batch not an array", vec![BATCH], good.to_string().into(), "a batch is a JSON array of events"),
        (
            "second event of a batch",
            vec![BATCH],
            json!([good, {"specversion": "1.0", "id": "b2", "source": "/s"}]).to_string().into(),
            "event 1:",
        ),
        ("binary without ce- headers", vec![("content-type", "application/json")], b"{}".to_vec(), "no ce- headers"),
        (
            "binary without ce-id",
            vec![("ce-specversion", "1.0"), ("ce-source", "/s"), ("ce-type", "t")],
            b"".to_vec(),
            "missing required attribute \"id\"",
        ),
        (
            "binary with a bad ce-time",
            vec![("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-source", "/s"), ("ce-type", "t"), ("ce-time", "noon")],
            b"".to_vec(),
            "header ce-time \"noon\" is not an RFC 3339 timestamp",
        ),
        (
            "binary with a bad extension name",
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("ce-bad_name", "x"),
            ],
            b"".to_vec(),
            "invalid attribute name \"bad_name\"",
        ),
        (
            "binary with invalid percent-encoding",
            vec![("ce-specversion", "1.0"), ("ce-id", "%C3%28"), ("ce-source", "/s"), ("ce-type", "t")],
            b"".to_vec(),
            "header ce-id is not valid UTF-8 after percent-decoding",
        ),
        (
            "binary with JSON that is not UTF-8",
            vec![
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "/s"),
                ("ce-type", "t"),
                ("content-type", "application/json"),
            ],
            vec![b'"', 0xff, b'"'],
            "not valid UTF-8",
        ),
    ];
    for (what, headers, body, expected) in &cases {
        let (status, reply) = post(&url, headers, body);
        assert_eq!(status, 400, "{what}: {reply}");
        assert_eq!(reply["error"]["code"], "invalid_event", "{what}: {reply}");
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{what}: {message:?} should mention {expected:?}");
    }
    let (status, reply) = post(&url, &[("content-type", "application/cloudevents+xml")], b"<event/>");
    assert_eq!(status, 415, "{reply}");
    assert_eq!(reply["error"]["code"], "unsupported_media_type");
    let (status, _) = post(&url, &[("content-type", "application/cloudevents-batch+protobuf")], b"\x0a\x00");
    assert_eq!(status, 415);

    assert!(stored_events(&config, &[]).is_empty(), "rejected requests stored something");
    // The endpoint still works, and counted what it rejected.
    assert_eq!(post(&url, &[STRUCTURED], good.to_string().as_bytes()).0, 202);
    assert_eq!(stored_ids(&config, &[]), ["good"]);
    assert!(stats(&addr)["sources"]["http"]["invalid"].as_u64().unwrap() >= 15);
}

#[test]
fn an_oversized_body_gets_413_and_nothing_is_stored() {
    let dir = TestDir::new();
    let (_run, addr, config) = host(&dir, "http:\n  body_limit: 2048\n");
    let url = format!("http://{addr}/v1/events");
    let big = json!({"specversion": "1.0", "id": "big", "source": "/s", "type": "t", "data": "x".repeat(4096)});
    let (status, reply) = post(&url, &[STRUCTURED], big.to_string().as_bytes());
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error"]["code"], "payload_too_large");
    assert!(reply["error"]["message"].as_str().unwrap().contains("http.body_limit"), "{reply}");
    let small = json!({"specversion": "1.0", "id": "small", "source": "/s", "type": "t"});
    assert_eq!(post(&url, &[STRUCTURED], small.to_string().as_bytes()).0, 202);
    assert_eq!(stored_ids(&config, &[]), ["small"]);
}

#[test]
fn a_missing_or_wrong_token_gets_401_and_nothing_is_stored() {
    let dir = TestDir::new();
    let (_run, addr, config) = host(&dir, "http:\n  token: api-secret\n  events_token: ingest-secret\n");
    let url = format!("http://{addr}/v1/events");
    let event = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}).to_string();
    for auth in [None, Some("Bearer wrong"), Some("Bearer api-secret"), Some("ingest-secret")] {
        let mut headers = vec![STRUCTURED];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let (status, reply) = post(&url, &headers, event.as_bytes());
        assert_eq!(status, 401, "{auth:?}: {reply}");
        assert_eq!(reply["error"]["code"], "unauthorized");
    }
    assert!(stored_events(&config, &[]).is_empty());
    let (status, _) = post(&url, &[STRUCTURED, ("authorization", "Bearer ingest-secret")], event.as_bytes());
    assert_eq!(status, 202);
    // /v1/stats uses http.token.
    let unauthorized = http_client().get(&format!("http://{addr}/v1/stats")).call().unwrap();
    assert_eq!(unauthorized.status(), 401);
    let authorized = http_client()
        .get(&format!("http://{addr}/v1/stats"))
        .header("authorization", "Bearer api-secret")
        .call()
        .unwrap();
    assert_eq!(authorized.status(), 200);
    assert_eq!(stored_ids(&config, &[]), ["1"]);
}

#[test]
fn plugboard_send_posts_one_event_to_a_running_host() {
    let dir = TestDir::new();
    let (run, addr, config) = host(&dir, "http:\n  events_token: t0ken\n");
    let url = format!("http://{addr}");
    let deploy = ["--token", "t0ken", "--type", "com.example.deploy", "--source", "/ci", "--id", "deploy-7"];
    // (what, arguments after `send --url URL`, exit code, what stdout (0) or stderr (1) must say)
    let cases: [(&str, Vec<&str>, i32, &[&str]); 4] = [
        (
            "a new event",
            [&deploy[..], &["--data", r#"{"service":"api"}"#]].concat(),
            0,
            &["stored event deploy-7 (seq 1)"],
        ),
        // Sending it again is acknowledged as a duplicate.
        ("the same event again", deploy.to_vec(), 0, &["event deploy-7 was already stored"]),
        // Errors say what the host said.
        ("no token", vec!["--type", "t", "--source", "/s"], 1, &["401", "missing or wrong bearer token"]),
        (
            "data that is not JSON",
            vec!["--token", "t0ken", "--type", "t", "--source", "/s", "--data", "{oops"],
            1,
            &["--data is not JSON"],
        ),
    ];
    for (what, args, expected_code, expected) in cases {
        let (code, stdout, stderr) = run_plugboard(&[&["send", "--url", &url][..], &args].concat());
        assert_eq!(code, Some(expected_code), "{what}: {stdout}{stderr}");
        let said = if expected_code == 0 { &stdout } else { &stderr };
        assert!(expected.iter().all(|e| said.contains(e)), "{what}: {said:?} should say {expected:?}");
    }
    let stored = stored_events(&config, &[]);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["event"]["type"], "com.example.deploy");
    assert_eq!(stored[0]["event"]["data"], json!({"service": "api"}));
    // The default stdout sink prints it.
    run.stdout.wait_for("\"id\":\"deploy-7\"");
}

#[test]
fn source_requests_are_forwarded_and_their_events_stored_before_the_reply() {
    let dir = TestDir::new();
    dir.add_plugin("recorder").add_plugin("tick");
    let (run, addr, config) = host(
        &dir,
        "http:\n  token: api\nsources:\n  - name: hooks\n    plugin: recorder\n    http_token: hook-secret\n  - name: numbers\n    plugin: tick\n    config: { interval: 1h }\n",
    );
    let base = format!("http://{addr}/v1/sources");
    wait_for("the hooks source to be running", DEADLINE, || {
        // A request that yields no event.
        post(&format!("{base}/hooks"), &[("authorization", "Bearer hook-secret"), ("x-event-count", "0")], b"").0 != 503
    });

    let mut response = http_client()
        .post(&format!("{base}/hooks/github/push?x=1&y=2"))
        .header("authorization", "Bearer hook-secret")
        .header("x-hub-signature-256", "sha256=0123456789abcdef")
        .header("x-event-id", "push-1")
        .header("x-event-type", "com.github.push")
        .header("x-reply-status", "201")
        .send(&br#"{"ref":"main"}"#[..])
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers().get("x-recorded").unwrap(), "push-1");
    assert_eq!(response.body_mut().read_to_string().unwrap(), "recorded push-1\n");
    // Stored before the reply came back.
    let stored = stored_events(&config, &["--source", "hooks"]);
    assert_eq!(stored.len(), 1);
    let event = &stored[0]["event"];
    assert_eq!(event["id"], "push-1");
    assert_eq!(event["type"], "com.github.push");
    let data = &event["data"];
    assert_eq!(data["method"], "POST");
    assert_eq!(data["path"], "/v1/sources/hooks/github/push");
    assert_eq!(data["query"], "x=1&y=2");
    assert_eq!(data["body"], r#"{"ref":"main"}"#);
    assert_eq!(data["headers"]["x-event-id"], "push-1");
    // The plugin saw the credentials (and copied them); the store did not keep them.
    let text = stored[0].to_string();
    assert!(!text.contains("hook-secret"), "{text}");
    assert!(!text.contains("0123456789abcdef"), "{text}");
    assert_eq!(data["headers"]["authorization"], "[REDACTED]");
    assert_eq!(data["headers"]["x-hub-signature-256"], "[REDACTED]");
    run.stderr.wait_for("carried the value of the");

    // Several events per request.
    let (status, _) = post(
        &format!("{base}/hooks"),
        &[("authorization", "Bearer hook-secret"), ("x-event-id", "many"), ("x-event-count", "3")],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(stored_events(&config, &["--source", "hooks"]).len(), 4);

    // The source's token, not the API token, opens its endpoint.
    let (status, reply) = post(&format!("{base}/hooks"), &[("authorization", "Bearer api")], b"");
    assert_eq!(status, 401, "{reply}");
    // An invalid event from the plugin: 502, nothing of that request stored.
    let (status, reply) = post(
        &format!("{base}/hooks"),
        &[("authorization", "Bearer hook-secret"), ("x-event-id", "with-bad"), ("x-invalid", "1")],
        b"",
    );
    assert_eq!(status, 502, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("returned an invalid event, nothing was stored"));
    // A source that does not handle requests.
    wait_for("the numbers source to be running", DEADLINE, || {
        post(&format!("{base}/numbers"), &[("authorization", "Bearer api")], b"").0 != 503
    });
    let (status, reply) = post(&format!("{base}/numbers"), &[("authorization", "Bearer api")], b"");
    assert_eq!(status, 501, "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("does not handle HTTP requests"), "{reply}");
    // No such instance.
    let (status, reply) = post(&format!("{base}/nosuch"), &[], b"");
    assert_eq!(status, 404, "{reply}");
    assert_eq!(reply["error"]["message"], "no source instance \"nosuch\"; sources: hooks, numbers");
    assert_eq!(stored_ids(&config, &["--source", "hooks"]), ["push-1", "many-0", "many-1", "many-2"]);
}

#[test]
fn invalid_duplicate_and_dropped_source_events_are_counted_and_not_stored() {
    let dir = TestDir::new();
    dir.add_plugin("recorder");
    let script = json!([
        {"id": "1", "source": "/r", "type": "com.example.keep"},
        {"id": "", "source": "/r", "type": "com.example.keep"},
        {"id": "2", "source": "/r", "type": "com.example.debug.trace"},
        {"id": "3", "source": "/r", "type": "com.example.noise"},
        {"id": "1", "source": "/r", "type": "com.example.keep"},
        {"id": "4", "source": "/r", "type": "com.example.keep", "specversion": "0.3"},
        {"id": "5", "source": "/r", "type": "com.example.keep", "attributes": {"Bad": "x"}},
        {"id": "6", "source": "/r", "type": "com.example.keep"}
    ]);
    let (run, addr, config) = host(
        &dir,
        &format!(
            "sources:\n  - name: scripted\n    plugin: recorder\n    drop_types: [com.example.noise, 'com.example.debug.*']\n    config: {{ script: {script} }}\n"
        ),
    );
    // `received` is counted as events arrive, `stored` and `duplicates` once the store has committed them.
    wait_for("8 events received and each one accounted for", DEADLINE, || {
        let s = &stats(&addr)["sources"]["scripted"];
        let accounted: u64 = ["invalid", "dropped", "stored", "duplicates"].iter().filter_map(|k| s[*k].as_u64()).sum();
        s["received"] == 8 && accounted == 8
    });
    let s = stats(&addr)["sources"]["scripted"].clone();
    assert_eq!(s, json!({"received": 8, "invalid": 3, "dropped": 2, "stored": 2, "duplicates": 1}));
    assert_eq!(stored_ids(&config, &["--source", "scripted"]), ["1", "6"]);
    // Each invalid event was logged with its reason.
    let lines = run.stderr.wait_until("three invalid-event warnings", DEADLINE, |l| {
        log_events(l, "rejected an invalid event: missing required attribute \"id\"").len() == 1
            && log_events(l, "rejected an invalid event: unsupported specversion \"0.3\": only \"1.0\" is accepted")
                .len()
                == 1
    });
    assert_eq!(
        log_events(&lines, "rejected an invalid event: invalid attribute name \"Bad\": CloudEvents attribute names are lower-case ASCII letters and digits")
            .len(),
        1
    );
}
