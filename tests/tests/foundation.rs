//! End-to-end tests of the foundation: the real `plugboard` binary with real
//! plugin processes.

use std::time::Duration;

use nix::sys::signal::Signal;
use plugboard_tests::*;

const COOKIE: (&str, &str) = ("PLUGBOARD_PLUGIN", "7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41");

#[test]
fn source_events_reach_stdout_as_valid_cloudevents() {
    let dir = TestDir::new();
    dir.add_plugin("range");
    let config = dir.write_config("sources:\n  - name: numbers\n    plugin: range\n    config: { limit: 5 }\n");
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let run = Running::spawn(cmd);
    let lines = run.stdout.wait_until("5 events", DEADLINE, |l| l.len() >= 5);
    let events = parse_events(&lines);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["numbers-0", "numbers-1", "numbers-2", "numbers-3", "numbers-4"]);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.r#type, "dev.plugboard.range");
        assert_eq!(e.source, "/plugboard/range/numbers");
        assert_eq!(e.spec_version, "1.0");
        assert_eq!(event_index(e), i as u64);
    }
    run.stderr.wait_for("source finished its stream");
}

#[test]
fn embedded_default_runs_the_tick_source() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let mut cmd = plugboard();
    cmd.env("PLUGBOARD_PLUGINS_DIR", dir.plugins()).env("PLUGBOARD_STATE_DIR", dir.state()).arg("run");
    let run = Running::spawn(cmd);
    let lines = run.stdout.wait_until("2 tick events", DEADLINE, |l| l.len() >= 2);
    let events = parse_events(&lines);
    assert_eq!(events[0].r#type, "dev.plugboard.tick");
    assert_eq!(event_index(&events[0]), 0);
    assert_eq!(event_index(&events[1]), 1);
}

#[test]
fn exec_echo_prints_its_arguments_and_exits_zero() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let out = plugboard()
        .env("PLUGBOARD_PLUGINS_DIR", dir.plugins())
        .args(["exec", "--", "echo", "hello", "world"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello world\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn exec_resolves_aliases_and_configured_prefixes() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let config = dir.write_config(
        "executors:\n  - name: say\n    plugin: echo\n    prefixes: [say, \"say loudly\"]\n    aliases: { s: say loudly }\n",
    );
    let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "s", "hi", "there"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n", "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
    // "echo" is not a prefix here: only the configured ones are.
    let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "echo", "x"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn unknown_command_exits_non_zero_listing_the_prefixes() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let out = plugboard()
        .env("PLUGBOARD_PLUGINS_DIR", dir.plugins())
        .args(["exec", "--", "frobnicate", "now"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "stderr: {stderr}");
    assert!(stderr.contains("unknown command \"frobnicate now\""), "{stderr}");
    assert!(stderr.contains("Known prefixes: echo"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn a_plugin_killed_mid_stream_is_restarted_and_resumes_from_its_cursor() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let config = dir.write_config(
        "restart: { initial_backoff: 50ms }\nsources:\n  - name: fast\n    plugin: tick\n    config: { interval: 20ms }\n  - name: slow\n    plugin: tick\n    config: { interval: 50ms }\n",
    );
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);

    let started = |lines: &[String]| {
        log_events(lines, "source started")
            .into_iter()
            .filter(|f| f["source"] == "fast")
            .filter_map(|f| f["pid"].as_u64())
            .collect::<Vec<_>>()
    };
    let lines = run.stderr.wait_until("the fast source to start", DEADLINE, |l| !started(l).is_empty());
    let first_pid = started(&lines)[0] as u32;
    let fast_events =
        |lines: &[String]| parse_events(lines).into_iter().filter(|e| e.source.ends_with("/fast")).count();
    run.stdout.wait_until("3 fast events", DEADLINE, |l| fast_events(l) >= 3);

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid as i32), Signal::SIGKILL).unwrap();

    let lines = run.stderr.wait_until("a restart with a new pid", DEADLINE, |l| started(l).len() >= 2);
    let second_pid = started(&lines)[1] as u32;
    assert_ne!(first_pid, second_pid);
    assert!(
        run.stderr.text().contains(&format!("plugin process {first_pid} exited (killed by signal 9 (SIGKILL))")),
        "stderr:\n{}",
        run.stderr.text()
    );
    let before = fast_events(&run.stdout.snapshot());
    run.stdout.wait_until("fast events after the restart", DEADLINE, |l| fast_events(l) >= before + 5);

    // The restarted plugin resumed right after the last event the host got:
    // indexes continue with neither a gap nor a repeat.
    let indexes: Vec<u64> =
        parse_events(&run.stdout.snapshot()).iter().filter(|e| e.source.ends_with("/fast")).map(event_index).collect();
    let expected: Vec<u64> = (0..indexes.len() as u64).collect();
    assert_eq!(indexes, expected);
    // The other source and the host were untouched.
    assert!(run.is_running());
    let slow: Vec<u64> =
        parse_events(&run.stdout.snapshot()).iter().filter(|e| e.source.ends_with("/slow")).map(event_index).collect();
    assert!(!slow.is_empty());
    assert_eq!(slow, (0..slow.len() as u64).collect::<Vec<_>>());
    assert_eq!(started(&run.stderr.snapshot()).len(), 2, "only the killed source restarted");
}

/// Broken plugins next to a good one: each gets go-plugin's diagnostic, the
/// host keeps running and the good source keeps streaming.
#[test]
fn broken_handshakes_are_diagnosed_and_the_host_keeps_running() {
    let dir = TestDir::new();
    dir.add_plugin("tick");
    dir.add_script("garbage", "echo 'hello from init'; sleep 30");
    dir.add_script("silent", "sleep 30");
    dir.add_script("quitter", "echo 'cannot start: no database' >&2; exit 3");
    dir.add_script("oldversion", "echo '1|9|unix|/tmp/x.sock|grpc|'; sleep 30");
    let config = dir.write_config(
        "start_timeout: 1s\nsources:\n  - name: ticks\n    plugin: tick\n    config: { interval: 50ms }\n",
    );
    let mut cmd = plugboard();
    cmd.args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);

    run.stderr.wait_for("Unrecognized remote plugin message: \"hello from init\"");
    run.stderr.wait_for("timeout while waiting for plugin to start");
    run.stderr.wait_for("plugin exited before we could connect (exit status 3)");
    run.stderr.wait_for("cannot start: no database");
    run.stderr.wait_for("Incompatible API version with plugin. Plugin version: 9, Client versions: [1]");
    run.stdout.wait_until("tick events", DEADLINE, |l| l.len() >= 3);
    assert!(run.is_running());

    // `plugins` lists the good one and says why each broken one failed.
    let out = plugboard().arg("plugins").arg("--config").arg(&config).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.lines().any(|l| l.starts_with("tick ") && l.contains("source")), "{table}");
    assert!(table.contains("error: Unrecognized remote plugin message: \"hello from init\""), "{table}");
    assert!(table.contains("error: timeout while waiting for plugin to start"), "{table}");
    assert!(table.contains("error: plugin exited before we could connect (exit status 3)"), "{table}");
    assert_eq!(out.status.code(), Some(2), "broken plugins make `plugins` exit 2");
}

#[test]
fn configuring_a_broken_plugin_fails_before_anything_starts() {
    let dir = TestDir::new();
    dir.add_plugin("tick");
    dir.add_script("quitter", "exit 3");
    let config = dir.write_config("sources:\n  - name: q\n    plugin: quitter\n");
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains(&format!("invalid config {}", config.display())), "{stderr}");
    assert!(stderr.contains("sources[0] \"q\": plugin \"quitter\""), "{stderr}");
    assert!(
        stderr.contains("could not be described: plugin exited before we could connect (exit status 3)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn config_errors_name_the_file_the_instance_and_the_reason() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let config = dir.write_config(
        "sources:\n  - name: t\n    plugin: tick\n    config: { interval: 5 }\n  - name: u\n    plugin: nosuch\nexecutors:\n  - name: e1\n    plugin: echo\n  - name: e2\n    plugin: echo\n",
    );
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("invalid config {}", config.display())), "{stderr}");
    assert!(stderr.contains("sources[0] \"t\": config rejected by plugin \"tick\"'s schema: at /interval"), "{stderr}");
    assert!(stderr.contains("sources[1] \"u\": unknown plugin \"nosuch\"; plugins in"), "{stderr}");
    assert!(stderr.contains("echo, tick"), "{stderr}");
    assert!(
        stderr
            .contains("executors[1] \"e2\": prefix \"echo\" of executor \"e2\" is already claimed by executor \"e1\""),
        "{stderr}"
    );

    let config = dir.write_config("sources:\n  - name: t\n    plugin: tick\n    confg: {}\n");
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 6 column 5: sources[0]: unknown field `confg`"), "{stderr}");
    assert!(stderr.contains("unknown field `confg`"), "{stderr}");
}

#[test]
fn a_plugin_run_by_hand_says_it_is_a_plugin_and_exits_1() {
    for name in ["plugboard-tick", "plugboard-echo", "plugboard-range"] {
        let out = std::process::Command::new(bin(name)).env_remove(COOKIE.0).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "This binary is a plugin. These are not meant to be executed directly.\n\
             Please execute the program that consumes these plugins, which will\n\
             load any plugins automatically\n"
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn no_plugin_survives_a_sigkilled_host() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let config = dir.write_config(
        "sources:\n  - { name: a, plugin: tick, config: { interval: 50ms } }\n  - { name: b, plugin: tick }\nexecutors:\n  - { name: echo, plugin: echo }\n",
    );
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    let pids = |lines: &[String]| {
        let mut pids: Vec<u32> = log_events(lines, "source started")
            .into_iter()
            .chain(log_events(lines, "executor started"))
            .filter_map(|f| f["pid"].as_u64().map(|p| p as u32))
            .collect();
        pids.sort();
        pids
    };
    let lines = run.stderr.wait_until("three plugin processes", DEADLINE, |l| pids(l).len() >= 3);
    let plugin_pids = pids(&lines);
    for pid in &plugin_pids {
        assert!(process_alive(*pid), "plugin {pid} should run");
    }
    run.signal(Signal::SIGKILL);
    run.wait_exit(DEADLINE);
    let survivors = wait_gone(&plugin_pids, DEADLINE);
    assert!(survivors.is_empty(), "plugins survived the host: {survivors:?}");
}

#[test]
fn sigterm_stops_the_host_and_its_plugins_cleanly() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let mut cmd = plugboard();
    cmd.env("PLUGBOARD_PLUGINS_DIR", dir.plugins()).env("PLUGBOARD_STATE_DIR", dir.state()).args([
        "--log-format",
        "json",
        "run",
    ]);
    let mut run = Running::spawn(cmd);
    let lines = run.stderr.wait_until("the tick source", DEADLINE, |l| !log_events(l, "source started").is_empty());
    let pid = log_events(&lines, "source started")[0]["pid"].as_u64().unwrap() as u32;
    run.stdout.wait_until("an event", DEADLINE, |l| !l.is_empty());
    let addr = http_addr(&run.stderr);
    let mut health = http_client().get(&format!("http://{addr}/healthz")).call().unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.body_mut().read_to_string().unwrap(), "ok\n");
    let mut missing = http_client().get(&format!("http://{addr}/nope")).call().unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = serde_json::from_str(&missing.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    run.signal(Signal::SIGTERM);
    let status = run.wait_exit(DEADLINE);
    assert_eq!(status.code(), Some(0), "stderr:\n{}", run.stderr.text());
    assert!(wait_gone(&[pid], Duration::from_secs(5)).is_empty());
}
