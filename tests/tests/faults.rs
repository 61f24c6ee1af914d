//! Fault injection with the `faulty` plugin: whatever one plugin does, the
//! host stays up, the other plugins carry on, and no event is lost.

use std::time::Duration;

use plugboard_tests::*;

/// Indexes of the events from one faulty source instance.
fn indexes(lines: &[String], instance: &str) -> Vec<u64> {
    let suffix = format!("/faulty/{instance}");
    parse_events(lines)
        .iter()
        .filter(|e| e.source.ends_with(&suffix) && e.r#type == "dev.plugboard.faulty.event")
        .map(event_index)
        .collect()
}

fn contiguous(v: &[u64]) -> bool {
    v.iter().enumerate().all(|(i, x)| *x == i as u64)
}

#[test]
fn crashing_sources_are_restarted_and_lose_no_event() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("tick");
    let config = dir.write_config(
        r#"restart: { initial_backoff: 20ms }
sources:
  - { name: panics, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: panic, once: true } }
  - { name: segfaults, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: segv, once: true } }
  - { name: exits, plugin: faulty, config: { interval: 5ms, fault_at: 5, fault: exit, arg: "3", once: true } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
"#,
    );
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    run.stdout.wait_until("20 events from each faulty source after its crash", DEADLINE, |l| {
        ["panics", "segfaults", "exits"].iter().all(|i| indexes(l, i).len() >= 20)
    });
    let lines = run.stdout.snapshot();
    for instance in ["panics", "segfaults", "exits"] {
        let got = indexes(&lines, instance);
        assert!(contiguous(&got), "{instance}: events lost or repeated across the restart: {got:?}");
    }
    let stderr = run.stderr.text();
    assert!(stderr.contains("source panicked: faulty: injected panic"), "{stderr}");
    assert!(stderr.contains("killed by signal 11 (SIGSEGV)"), "{stderr}");
    assert!(stderr.contains("exited (exit status 3)"), "{stderr}");
    assert!(run.is_running());
    let ticks = parse_events(&lines).iter().filter(|e| e.r#type == "dev.plugboard.tick").count();
    assert!(ticks > 0, "the healthy source kept streaming");
}

#[test]
fn floods_on_stderr_and_stdout_neither_block_nor_bloat_the_host() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("tick");
    let config = dir.write_config(
        r#"sources:
  - { name: loud, plugin: faulty, config: { interval: 1ms, fault_at: 2, fault: flood-stderr, arg: 100M } }
  - { name: chatty, plugin: faulty, config: { interval: 1ms, fault_at: 2, fault: flood-stdout, arg: 100M } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
"#,
    );
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    // Events after the flood prove each plugin's pipe was drained.
    run.stdout.wait_until("both flooding sources past their flood", Duration::from_secs(120), |l| {
        indexes(l, "loud").len() >= 20 && indexes(l, "chatty").len() >= 20
    });
    assert!(run.is_running());
    let rss = rss_kib(run.pid()).expect("host rss");
    assert!(rss < 200 * 1024, "host resident memory grew to {rss} KiB during 200 MB of floods");
    let lines = run.stdout.snapshot();
    assert!(contiguous(&indexes(&lines, "loud")));
    assert!(contiguous(&indexes(&lines, "chatty")));
}

#[test]
fn an_oversized_event_fails_only_that_stream() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("tick");
    let config = dir.write_config(
        r#"restart: { initial_backoff: 20ms }
sources:
  - { name: big, plugin: faulty, config: { interval: 5ms, fault_at: 3, fault: oversize, arg: 80M, once: true } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
"#,
    );
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    run.stdout.wait_until("events after the oversized one", DEADLINE, |l| indexes(l, "big").len() >= 10);
    let failure = run.stderr.wait_for("source failed");
    assert!(failure.contains("source=big"), "{failure}");
    assert!(failure.contains("decoded message length too large: found 83886"), "{failure}");
    assert!(contiguous(&indexes(&run.stdout.snapshot(), "big")));
    assert!(run.is_running());
}

#[test]
fn a_hanging_command_times_out_and_a_crash_leaves_no_grandchild() {
    let dir = TestDir::new();
    dir.add_plugin("faulty");
    let config = dir.write_config("executors:\n  - { name: f, plugin: faulty, timeout: 500ms }\n");
    for mode in ["hang", "hang-hard"] {
        let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "faulty", mode]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(124), "{mode}: {stderr}");
        assert!(stderr.contains("command timed out after 500ms and was cancelled"), "{mode}: {stderr}");
    }
    let out =
        plugboard().arg("exec").arg("--config").arg(&config).args(["--", "faulty", "grandchild"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("exited (exit status 3) during the command"), "{stderr}");
    // The plugin's `sleep 3600` shared its process group, which the host killed.
    let sleeps = processes_named("sleep").into_iter().filter(|(_, args)| args == "sleep\u{0}3600\u{0}").count();
    assert_eq!(sleeps, 0, "a grandchild survived the plugin");
}
