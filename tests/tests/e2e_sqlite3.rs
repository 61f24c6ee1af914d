//! `make test-e2e`: the database sink's table and the event store, read by
//! the real `sqlite3` tool (Debian's sqlite3, installed by the Makefile
//! target when missing).

use std::process::Command;

use plugboard_tests::*;

fn sqlite3(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3").arg(db).arg(sql).output().expect("run sqlite3 (make test-e2e installs it)");
    assert!(out.status.success(), "sqlite3 {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn sqlite3_queries_the_database_sink_and_the_store() {
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config(
        "sources:\n  - name: n\n    plugin: range\n    config: { limit: 20 }\nsinks:\n  - name: db\n    database: { path: sink.db }\n",
    );
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    wait_for("20 events in the database sink", DEADLINE, || stats(&addr)["sinks"]["db"]["delivered"] == 20);
    let db = dir.path().join("sink.db");
    assert_eq!(sqlite3(&db, "SELECT count(*), count(DISTINCT id) FROM events"), "20|20");
    assert_eq!(sqlite3(&db, "SELECT json_extract(event, '$.data.index') FROM events WHERE id = 'n-7'"), "7");
    assert_eq!(sqlite3(&db, "SELECT DISTINCT type FROM events"), "dev.plugboard.range");
    // The store itself is an ordinary SQLite database too (its seqs are shared
    // with the host's lifecycle events).
    assert_eq!(
        sqlite3(&dir.state().join("events.db"), "SELECT count(*), count(DISTINCT id) FROM events WHERE instance = 'n'"),
        "20|20"
    );
}
