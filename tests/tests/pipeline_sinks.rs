//! Sinks end to end: a real HTTP server that is down then up, binary and
//! structured HTTP delivery, dead letters and replays, the database sink read
//! back with SQLite, and a plugin sink that fails and is killed.

use std::collections::BTreeSet;

use nix::sys::signal::Signal;
use plugboard_tests::http_server::TestServer;
use plugboard_tests::*;
use serde_json::Value;

fn range_ids(name: &str, n: u64) -> Vec<String> {
    (0..n).map(|i| format!("{name}-{i}")).collect()
}

fn request_ids(requests: &[http_server::Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| match r.headers.get("ce-id") {
            Some(id) => id.clone(),
            None => serde_json::from_slice::<Value>(&r.body).unwrap()["id"].as_str().unwrap().to_owned(),
        })
        .collect()
}

#[test]
fn a_down_http_sink_gets_every_event_once_it_is_up_and_other_sinks_do_not_wait_for_it() {
    let server = TestServer::start();
    server.set_status("/hook", 503);
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(&format!(
        "sources:\n  - name: numbers\n    plugin: range\n    config: {{ limit: 300 }}\n\
         sinks:\n  - name: hook\n    http: {{ url: '{}', timeout: 5s }}\n    retry: {{ max_attempts: 100000, initial_backoff: 20ms, max_backoff: 200ms }}\n\
         \x20 - name: archive\n    file: {{ path: archive.jsonl }}\n\
         \x20 - name: db\n    database: {{ path: sink.db }}\n",
        server.url("/hook")
    ));
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);

    // While the HTTP sink is down, the other sinks get everything.
    let archive = dir.path().join("archive.jsonl");
    wait_for("the file sink to get all 300 events", DEADLINE, || json_lines(&archive).len() == 300);
    assert_eq!(ids(&json_lines(&archive)), range_ids("numbers", 300));
    wait_for("the database sink to get all 300 events", DEADLINE, || stats(&addr)["sinks"]["db"]["delivered"] == 300);
    wait_for("the HTTP sink to be retried", DEADLINE, || server.requests().len() >= 3);
    assert!(server.accepted("/hook").is_empty());
    let hook = stats(&addr)["sinks"]["hook"].clone();
    assert_eq!(hook["delivered"], 0, "{hook}");
    assert!(hook["last_error"].as_str().unwrap().contains("503"), "{hook}");

    // Up again: every event arrives, in order, once.
    server.set_status("/hook", 200);
    wait_for("the HTTP sink to get all 300 events", DEADLINE, || server.accepted("/hook").len() >= 300);
    assert_eq!(request_ids(&server.accepted("/hook")), range_ids("numbers", 300));
    assert_eq!(stats(&addr)["sinks"]["hook"]["dead_lettered"], 0);
}

#[test]
fn http_sinks_speak_the_binary_and_structured_bindings() {
    let server = TestServer::start();
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(&format!(
        "sources:\n  - name: n\n    plugin: range\n    config: {{ limit: 2 }}\n\
         sinks:\n  - name: bin\n    http: {{ url: '{}', mode: binary, headers: {{ Authorization: Bearer sink-token }} }}\n\
         \x20 - name: str\n    http: {{ url: '{}' }}\n",
        server.url("/binary"),
        server.url("/structured")
    ));
    let _run = run_host(&config);
    wait_for("both sinks to get both events", DEADLINE, || {
        server.accepted("/binary").len() == 2 && server.accepted("/structured").len() == 2
    });
    let binary = &server.accepted("/binary")[1];
    assert_eq!(binary.headers["ce-id"], "n-1");
    assert_eq!(binary.headers["ce-specversion"], "1.0");
    assert_eq!(binary.headers["ce-type"], "dev.plugboard.range");
    assert_eq!(binary.headers["ce-source"], "/plugboard/range/n");
    assert!(binary.headers.contains_key("ce-time"));
    assert_eq!(binary.headers["content-type"], "application/json");
    assert_eq!(binary.headers["authorization"], "Bearer sink-token");
    assert_eq!(serde_json::from_slice::<Value>(&binary.body).unwrap(), serde_json::json!({"index": 1}));
    let structured = &server.accepted("/structured")[0];
    assert!(structured.headers["content-type"].starts_with("application/cloudevents+json"));
    let event: Value = serde_json::from_slice(&structured.body).unwrap();
    assert_eq!(event["id"], "n-0");
    assert_eq!(event["data"]["index"], 0);
}

#[test]
fn failed_events_are_dead_lettered_listed_and_replayed() {
    let server = TestServer::start();
    server.set_status("/flaky", 500);
    server.set_status("/strict", 422);
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(&format!(
        "sources:\n  - name: n\n    plugin: range\n    config: {{ limit: 5 }}\n\
         sinks:\n  - name: flaky\n    http: {{ url: '{}' }}\n    retry: {{ max_attempts: 2, initial_backoff: 10ms }}\n\
         \x20 - name: strict\n    http: {{ url: '{}' }}\n    retry: {{ max_attempts: 50, initial_backoff: 10ms }}\n",
        server.url("/flaky"),
        server.url("/strict")
    ));
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    wait_for("every event to be dead-lettered for both sinks", DEADLINE, || {
        let s = stats(&addr);
        s["sinks"]["flaky"]["dead_lettered"] == 5 && s["sinks"]["strict"]["dead_lettered"] == 5
    });
    let config_arg = config.to_str().unwrap();
    let (code, stdout, stderr) =
        run_plugboard(&["events", "dead-letters", "--sink", "flaky", "--json", "--config", config_arg]);
    assert_eq!(code, Some(0), "{stderr}");
    let dead: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(dead.iter().map(|d| d["event"]["id"].as_str().unwrap()).collect::<Vec<_>>(), range_ids("n", 5));
    for d in &dead {
        assert_eq!(d["sink"], "flaky");
        assert_eq!(d["attempts"], 2, "{d}");
        assert!(d["error"].as_str().unwrap().contains("500 Internal Server Error"), "{d}");
    }
    // 422: the receiver refuses the event itself, so no retries.
    let (_, stdout, _) =
        run_plugboard(&["events", "dead-letters", "--sink", "strict", "--json", "--config", config_arg]);
    let strict: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(strict.len(), 5);
    assert!(strict.iter().all(|d| d["attempts"] == 1), "{strict:?}");
    let (_, table, _) = run_plugboard(&["events", "dead-letters", "--config", config_arg]);
    assert!(table.starts_with("SINK"), "{table}");
    assert_eq!(table.lines().count(), 11, "{table}");

    // The receiver is fixed: replay the dead letters of one sink.
    server.set_status("/flaky", 200);
    let (code, stdout, stderr) = run_plugboard(&["events", "replay", "--sink", "flaky", "--config", config_arg]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("sink \"flaky\" gets its 5 dead letters again"), "{stdout}");
    wait_for("the replayed events to arrive", DEADLINE, || server.accepted("/flaky").len() == 5);
    assert_eq!(request_ids(&server.accepted("/flaky")), range_ids("n", 5));
    wait_for("the replayed dead letters to be cleared", DEADLINE, || {
        run_plugboard(&["events", "dead-letters", "--sink", "flaky", "--json", "--config", config_arg]).1.is_empty()
    });
    let (_, stdout, _) =
        run_plugboard(&["events", "dead-letters", "--sink", "strict", "--json", "--config", config_arg]);
    assert_eq!(stdout.lines().count(), 5, "the other sink's dead letters stay");

    let (code, _, stderr) = run_plugboard(&["events", "replay", "--sink", "nosuch", "--config", config_arg]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no sink named \"nosuch\" has run with this store; sinks: flaky, strict"), "{stderr}");
}

#[test]
fn replay_since_delivers_stored_events_to_one_sink_again() {
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(
        "sources:\n  - name: n\n    plugin: range\n    config: { limit: 10 }\n\
         sinks:\n  - name: a\n    file: { path: a.jsonl }\n  - name: b\n    file: { path: b.jsonl }\n",
    );
    let _run = run_host(&config);
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    wait_for("both sinks to get 10 events", DEADLINE, || json_lines(&a).len() == 10 && json_lines(&b).len() == 10);
    // The host's own lifecycle events are stored too: find n-3's seq.
    let stored = stored_events(&config, &[]);
    let since = stored.iter().find(|e| e["event"]["id"] == "n-3").expect("n-3 stored")["seq"].to_string();
    let (code, stdout, stderr) =
        run_plugboard(&["events", "replay", "--sink", "a", "--since", &since, "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains(&format!("every event from seq {since} on")), "{stdout}");
    wait_for("sink a to get seq 4..10 again", DEADLINE, || json_lines(&a).len() == 17);
    let mut expected = range_ids("n", 10);
    expected.extend(range_ids("n", 10).into_iter().skip(3));
    assert_eq!(ids(&json_lines(&a)), expected);
    assert_eq!(json_lines(&b).len(), 10, "the other sink is untouched");
}

#[test]
fn the_database_sink_writes_a_table_sqlite_can_query() {
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(
        "sources:\n  - name: numbers\n    plugin: range\n    config: { limit: 50 }\n\
         sinks:\n  - name: db\n    database: { path: out/events.db, table: ce_events }\n    batch_size: 7\n",
    );
    std::fs::create_dir(dir.path().join("out")).unwrap();
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    wait_for("50 events in the database", DEADLINE, || stats(&addr)["sinks"]["db"]["delivered"] == 50);
    let db = rusqlite::Connection::open(dir.path().join("out/events.db")).unwrap();
    let (count, distinct): (i64, i64) =
        db.query_row("SELECT count(*), count(DISTINCT id) FROM ce_events", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((count, distinct), (50, 50));
    let (instance, ty, index, data_index): (String, String, i64, i64) = db
        .query_row(
            "SELECT instance, type, json_extract(event, '$.data.index'), json_extract(data, '$.index') \
             FROM ce_events WHERE id = 'numbers-7'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((instance.as_str(), ty.as_str(), index, data_index), ("numbers", "dev.plugboard.range", 7, 7));
    let time: String = db.query_row("SELECT time FROM ce_events WHERE id = 'numbers-0'", [], |r| r.get(0)).unwrap();
    assert!(chrono_like(&time), "{time}");
}

fn chrono_like(time: &str) -> bool {
    time.len() >= 20 && time.as_bytes()[4] == b'-' && time.contains('T')
}

#[test]
fn a_plugin_sink_that_fails_and_is_killed_still_gets_every_event() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("recorder");
    let recorded = dir.path().join("recorded.jsonl");
    let config = dir.write_config(&format!(
        "restart: {{ initial_backoff: 50ms }}\n\
         sources:\n  - name: n\n    plugin: range\n    config: {{ limit: 200, interval: 5ms }}\n\
         sinks:\n  - name: rec\n    plugin: recorder\n    config: {{ path: '{}', fail_first: 2 }}\n    batch_size: 10\n    retry: {{ max_attempts: 1000, initial_backoff: 20ms, max_backoff: 100ms }}\n",
        recorded.display()
    ));
    let mut run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let started = |lines: &[String]| {
        log_events(lines, "sink started").into_iter().filter_map(|f| f["pid"].as_u64()).collect::<Vec<_>>()
    };
    let lines = run.stderr.wait_until("the sink plugin to start", DEADLINE, |l| !started(l).is_empty());
    let first_pid = started(&lines)[0] as u32;
    wait_for("some events recorded", DEADLINE, || json_lines(&recorded).len() >= 20);
    assert!(stats(&addr)["sinks"]["rec"]["failed_attempts"].as_u64().unwrap() >= 2);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid as i32), Signal::SIGKILL).unwrap();
    let lines = run.stderr.wait_until("the sink plugin to be restarted", DEADLINE, |l| started(l).len() >= 2);
    assert_ne!(started(&lines)[1] as u32, first_pid);
    wait_for("every event recorded", DEADLINE, || {
        ids(&json_lines(&recorded)).into_iter().collect::<BTreeSet<_>>().len() == 200
    });
    let got: BTreeSet<String> = ids(&json_lines(&recorded)).into_iter().collect();
    assert_eq!(got, range_ids("n", 200).into_iter().collect());
    assert!(run.is_running());
}
