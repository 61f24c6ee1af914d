//! No event lost, none stored twice: a 100,000-event `range` source with the
//! host SIGKILLed twice mid-stream and restarted, checked by event id in the
//! store and in every sink; and a clean restart that resumes sources and
//! sinks with no repeat at all.

use std::collections::BTreeSet;
use std::path::Path;

use nix::sys::signal::Signal;
use plugboard_tests::*;
use serde_json::Value;

const EVENTS: u64 = 100_000;

fn line_count(path: &Path) -> usize {
    std::fs::read(path).map(|b| bytecount(&b)).unwrap_or(0)
}

fn bytecount(bytes: &[u8]) -> usize {
    bytes.iter().filter(|b| **b == b'\n').count()
}

fn id_set(path: &Path) -> BTreeSet<String> {
    ids(&json_lines(path)).into_iter().collect()
}

fn expected_ids() -> BTreeSet<String> {
    (0..EVENTS).map(|i| format!("numbers-{i}")).collect()
}

/// Waits until this run of the host has stored at least `n` events, checks
/// the source is still streaming, then SIGKILLs the host.
fn kill_mid_stream(mut run: Running, n: u64) {
    let addr = http_addr(&run.stderr);
    wait_for(&format!("{n} events stored by this run"), DEADLINE * 2, || {
        stats(&addr)["sources"]["numbers"]["stored"].as_u64().unwrap_or(0) >= n
    });
    assert!(
        !run.stderr.text().contains("source finished its stream"),
        "the source finished before the kill: the kill would not be mid-stream"
    );
    run.signal(Signal::SIGKILL);
    let status = run.wait_exit(DEADLINE);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
}

#[test]
fn a_range_of_100000_survives_two_sigkills_with_each_event_stored_once_and_delivered_everywhere() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("recorder");
    let (file, db, rec) = (dir.path().join("file.jsonl"), dir.path().join("sink.db"), dir.path().join("rec.jsonl"));
    let config = dir.write_config(&format!(
        "sources:\n  - name: numbers\n    plugin: range\n    config: {{ limit: {EVENTS} }}\n\
         sinks:\n  - name: file\n    file: {{ path: file.jsonl }}\n\
         \x20 - name: db\n    database: {{ path: sink.db }}\n\
         \x20 - name: rec\n    plugin: recorder\n    config: {{ path: '{}' }}\n    batch_size: 1000\n",
        rec.display()
    ));

    kill_mid_stream(run_host(&config), 25_000);
    kill_mid_stream(run_host(&config), 25_000);
    let mut run = run_host(&config);

    let db_count = || -> i64 {
        rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT count(DISTINCT id) FROM events", [], |r| r.get(0)))
            .unwrap_or(0)
    };
    wait_for("every sink to have every event", DEADLINE * 4, || {
        line_count(&file) >= EVENTS as usize && line_count(&rec) >= EVENTS as usize && db_count() == EVENTS as i64
    });
    wait_for("the file sink to have every id", DEADLINE, || id_set(&file) == expected_ids());
    wait_for("the plugin sink to have every id", DEADLINE, || id_set(&rec) == expected_ids());

    // The store holds each event exactly once, in seq order (the host's own
    // lifecycle events take seqs in between).
    let stored = stored_events(&config, &["--source", "numbers"]);
    assert_eq!(stored.len(), EVENTS as usize, "stored events");
    let stored_ids: Vec<&str> = stored.iter().map(|e| e["event"]["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<String> = stored_ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(unique.len(), EVENTS as usize, "an event was stored twice");
    assert_eq!(unique, expected_ids());
    let seqs: Vec<u64> = stored.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "seqs out of order");
    // Stored in source order: the resumed streams neither skipped nor repeated.
    let indexes: Vec<u64> = stored.iter().map(|e: &Value| e["event"]["data"]["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..EVENTS).collect::<Vec<_>>());

    // The database sink kept one row per event however often it was handed one.
    let rows: i64 =
        rusqlite::Connection::open(&db).unwrap().query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, EVENTS as i64);

    run.signal(Signal::SIGTERM);
    assert_eq!(run.wait_exit(DEADLINE).code(), Some(0), "{}", run.stderr.text());
}

#[test]
fn a_clean_restart_resumes_sources_and_sinks_without_a_repeat() {
    let dir = TestDir::new();
    dir.add_plugin("tick");
    let config = dir.write_config(
        "sources:\n  - name: t\n    plugin: tick\n    config: { interval: 20ms }\nsinks:\n  - name: out\n    file: { path: out.jsonl }\n",
    );
    let out = dir.path().join("out.jsonl");
    for round in 1..=2 {
        let mut run = run_host(&config);
        wait_for("10 more events", DEADLINE, || json_lines(&out).len() >= 10 * round);
        run.signal(Signal::SIGTERM);
        assert_eq!(run.wait_exit(DEADLINE).code(), Some(0), "{}", run.stderr.text());
    }
    // Every event the sources sent before each stop was stored and delivered
    // at shutdown; the restarted tick went on from its stored cursor.
    let delivered = ids(&json_lines(&out));
    let expected: Vec<String> = (0..delivered.len()).map(|i| format!("t-{i}")).collect();
    assert_eq!(delivered, expected);
    let stored: Vec<String> = stored_events(&config, &["--source", "t"])
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(stored, expected);
}

#[test]
fn a_second_host_on_the_same_state_dir_is_refused() {
    let dir = TestDir::new();
    let config = dir.write_config("");
    let first = run_host(&config);
    http_addr(&first.stderr);
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "state directory {} is in use by another plugboard host (pid {})",
            dir.state().display(),
            first.pid()
        )),
        "{stderr}"
    );
}
