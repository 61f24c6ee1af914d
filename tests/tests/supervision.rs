//! Supervision with the real host and real plugin processes: the restart
//! policy's circuit breaker and `plugins enable`, health checks that kill a
//! stopped or stalled plugin, lifecycle CloudEvents, `GET /v1/plugins` and
//! `plugins status`, and a graceful stop on SIGTERM.

use std::path::Path;

use nix::sys::signal::Signal;
use plugboard_tests::*;
use serde_json::Value;

/// `GET /v1/plugins` of a running host.
fn plugins(addr: &str) -> Vec<Value> {
    let mut response = http_client().get(&format!("http://{addr}/v1/plugins")).call().unwrap();
    let body = response.body_mut().read_to_string().unwrap();
    let reply: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    reply["plugins"].as_array().cloned().unwrap_or_default()
}

/// The `/v1/plugins` entry of `name`.
fn plugin(addr: &str, name: &str) -> Value {
    plugins(addr).into_iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("no instance {name}"))
}

/// Waits until `name` is in `state`; returns its entry.
fn wait_state(addr: &str, name: &str, state: &str) -> Value {
    let mut last = Value::Null;
    wait_for(&format!("{name} to be {state}"), DEADLINE, || {
        last = plugin(addr, name);
        last["state"] == state
    });
    last
}

/// Lifecycle events (from the stdout sink) about instance `name`, in order:
/// (transition, data).
fn lifecycle(lines: &[String], name: &str) -> Vec<(String, Value)> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["subject"] == name && e["source"] == "/plugboard/host")
        .filter_map(|e| {
            let transition = e["type"].as_str()?.strip_prefix("dev.plugboard.plugin.")?.to_owned();
            Some((transition, e["data"].clone()))
        })
        .collect()
}

fn transitions(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(t, _)| t.as_str()).collect()
}

/// A plugin executable that runs `faulty` with `prelude` run first (a shell
/// snippet), so one instance can misbehave without the others.
fn faulty_wrapper(dir: &TestDir, file_name: &str, prelude: &str) {
    let faulty = bin("plugboard-faulty");
    dir.add_script(file_name, &format!("{prelude}\nexec {} \"$@\"", faulty.display()));
}

fn pid_of(entry: &Value) -> u32 {
    entry["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {entry}")) as u32
}

fn kill(pid: u32, signal: Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

#[test]
fn a_crash_looping_instance_is_deactivated_and_plugins_enable_brings_it_back() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    let broken = dir.path().join("broken");
    // While `broken` exists the plugin exits with status 3 before its handshake.
    faulty_wrapper(&dir, "plugboard-flaky", &format!("[ -e {} ] && exit 3", broken.display()));
    let config = dir.write_config(
        r#"restart: { initial_backoff: 20ms, max_backoff: 100ms, max_restarts: 3, window: 1m }
sinks: [{ name: out, stdout: {} }]
routes: [{ sinks: [out] }, { sources: [plugboard], sinks: [out] }]
sources:
  - { name: crashy, plugin: faulty, config: { interval: 20ms } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
executors:
  - { name: echo, plugin: echo }
  - { name: fx, plugin: faulty }
"#,
    );
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let url = format!("http://{addr}");
    let first = wait_state(&addr, "crashy", "running");
    let first_pid = pid_of(&first);
    let fx_pid = pid_of(&wait_state(&addr, "fx", "running"));

    std::fs::write(&broken, "").unwrap();
    kill(first_pid, Signal::SIGKILL);
    kill(fx_pid, Signal::SIGKILL);
    let entry = wait_state(&addr, "crashy", "deactivated");
    assert_eq!(entry["deactivated"], true, "{entry}");
    assert_eq!(entry["pid"], Value::Null, "{entry}");
    assert_eq!(entry["restarts"], 3, "{entry}");
    assert_eq!(entry["last_exit"], "exit status 3", "{entry}");
    assert_eq!(wait_gone(&[first_pid], DEADLINE), Vec::<u32>::new());

    let lines = run.stdout.wait_until("the deactivated event", DEADLINE, |l| {
        transitions(&lifecycle(l, "crashy")).contains(&"deactivated")
    });
    let events = lifecycle(&lines, "crashy");
    let after_kill: Vec<&str> = transitions(&events).into_iter().skip_while(|t| *t != "exited").collect();
    assert_eq!(
        after_kill,
        ["exited", "restarting", "exited", "restarting", "exited", "restarting", "exited", "deactivated"],
        "{events:?}"
    );
    let (_, killed) = events.iter().find(|(t, _)| t == "exited").unwrap();
    assert_eq!(killed["pid"], first_pid, "{killed}");
    assert_eq!(killed["exit"]["signal"], 9, "{killed}");
    assert_eq!(killed["exit"]["text"], "killed by signal 9 (SIGKILL)", "{killed}");
    for (t, data) in &events {
        assert_eq!((data["instance"].as_str(), data["kind"].as_str()), (Some("crashy"), Some("source")), "{t}");
        assert_eq!(data["plugin"], "faulty", "{t}: {data}");
        match t.as_str() {
            "restarting" => assert!(data["delay_ms"].as_u64().is_some(), "{data}"),
            "exited" if data["pid"].is_null() => assert_eq!(data["exit"]["code"], 3, "{data}"),
            _ => {}
        }
    }
    let log = run.stderr.wait_for("source deactivated: 4 failures within 1m");
    let log: Value = serde_json::from_str(&log).unwrap();
    assert_eq!(log["span"]["instance"], "crashy", "{log}");
    assert_eq!(log["fields"]["plugin"], "faulty", "{log}");

    // The others never noticed.
    let ticks_before = run.stdout.snapshot().iter().filter(|l| l.contains("\"dev.plugboard.tick\"")).count();
    run.stdout.wait_until("more ticks after the deactivation", DEADLINE, |l| {
        l.iter().filter(|l| l.contains("\"dev.plugboard.tick\"")).count() > ticks_before + 3
    });
    let (code, out, err) = run_plugboard(&["exec", "--remote", &url, "--", "echo", "still", "here"]);
    assert_eq!((code, out.as_str()), (Some(0), "still here\n"), "{err}");
    // A command for the deactivated executor is answered at once, saying what to do.
    wait_state(&addr, "fx", "deactivated");
    let (code, _, err) = run_plugboard(&["exec", "--remote", &url, "--", "faulty", "ok"]);
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("deactivated after repeated failures"), "{err}");
    assert!(err.contains("plugboard plugins enable fx"), "{err}");
    assert_eq!(plugin(&addr, "steady")["state"], "running");

    // `plugins status` shows it.
    let (code, out, err) = run_plugboard(&["plugins", "status", "--remote", &url]);
    assert_eq!(code, Some(0), "{err}");
    let row = out.lines().find(|l| l.starts_with("crashy ")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("deactivated") && row.contains("exit status 3"), "{out}");
    let steady_pid = pid_of(&plugin(&addr, "steady"));
    let row = out.lines().find(|l| l.starts_with("steady ")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains("running") && row.contains(&steady_pid.to_string()), "{out}");

    // An operator fixes the cause and enables it again.
    let crashy_events = |l: &[String]| l.iter().filter(|l| l.contains("/plugboard/faulty/crashy")).count();
    let before = crashy_events(&run.stdout.snapshot());
    std::fs::remove_file(&broken).unwrap();
    let (code, out, err) = run_plugboard(&["plugins", "enable", "crashy", "--remote", &url]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("enabled crashy"), "{out}");
    let entry = wait_state(&addr, "crashy", "running");
    assert!(process_alive(pid_of(&entry)));
    let lines = run.stdout.wait_until("started after enabled", DEADLINE, |l| {
        let events = lifecycle(l, "crashy");
        let t = transitions(&events);
        t.ends_with(&["enabled", "started"])
    });
    let events = lifecycle(&lines, "crashy");
    assert_eq!(events.last().unwrap().1["pid"], pid_of(&entry));
    let (code, _, err) = run_plugboard(&["plugins", "enable", "fx", "--remote", &url]);
    assert_eq!(code, Some(0), "{err}");
    wait_state(&addr, "fx", "running");
    let (code, out, err) = run_plugboard(&["exec", "--remote", &url, "--", "faulty", "ok"]);
    assert_eq!((code, out.as_str()), (Some(0), "ok\n"), "{err}");
    // Its events flow again, resumed from its cursor.
    run.stdout.wait_until("events from crashy after enabling", DEADLINE, |l| crashy_events(l) >= before + 5);

    let (code, _, err) = run_plugboard(&["plugins", "enable", "crashy", "--remote", &url]);
    assert_ne!(code, Some(0));
    assert!(err.contains("409") && err.contains("is running, not deactivated"), "{err}");
    let (code, _, err) = run_plugboard(&["plugins", "enable", "nosuch", "--remote", &url]);
    assert_ne!(code, Some(0));
    assert!(err.contains("404") && err.contains("no plugin instance \"nosuch\""), "{err}");
}

#[test]
fn a_plugin_sink_is_deactivated_by_its_own_restart_policy_not_the_top_level_one() {
    let dir = TestDir::new();
    dir.add_plugin("range").add_plugin("recorder");
    // Both sinks exit with status 3 on the first publish of every process, so
    // each delivery (retried by the dispatcher) crashes a fresh process.
    let config = dir.write_config(&format!(
        r#"restart: {{ initial_backoff: 20ms, max_backoff: 100ms, max_restarts: 1000, window: 1m }}
sources:
  - {{ name: n, plugin: range, config: {{ limit: 3 }} }}
sinks:
  - name: own
    plugin: recorder
    config: {{ path: '{}', exit_on_publish: 1 }}
    restart: {{ max_restarts: 1, window: 1m }}
    retry: {{ max_attempts: 1000, initial_backoff: 20ms, max_backoff: 100ms }}
  - name: top
    plugin: recorder
    config: {{ path: '{}', exit_on_publish: 1 }}
    retry: {{ max_attempts: 1000, initial_backoff: 20ms, max_backoff: 100ms }}
"#,
        dir.path().join("own.jsonl").display(),
        dir.path().join("top.jsonl").display()
    ));
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);

    let own = wait_state(&addr, "own", "deactivated");
    assert_eq!(own["kind"], "sink", "{own}");
    assert_eq!(own["restarts"], 1, "{own}");
    assert_eq!(own["pid"], Value::Null, "{own}");
    assert_eq!(own["last_exit"], "exit status 3", "{own}");
    let log = run.stderr.wait_for("sink deactivated: 2 failures within 1m (max_restarts 1)");
    let log: Value = serde_json::from_str(&log).unwrap();
    assert_eq!(log["span"]["instance"], "own", "{log}");

    // The same crash under the top-level policy is restarted again and again.
    let mut top = Value::Null;
    wait_for("the top-level policy to restart `top` more than `own` was", DEADLINE, || {
        top = plugin(&addr, "top");
        top["restarts"].as_u64().is_some_and(|n| n > 3)
    });
    assert_ne!(top["state"], "deactivated", "{top}");
    assert_eq!(plugin(&addr, "own")["restarts"], 1);
}

#[test]
fn health_checks_kill_and_restart_a_stopped_or_stalled_plugin() {
    let dir = TestDir::new();
    dir.add_plugin("faulty").add_plugin("tick");
    let stalling = dir.path().join("stalling");
    // Stalls (answers nothing, health included, while alive) 300 ms after
    // start, once `stalling` exists: discovery runs before that.
    faulty_wrapper(
        &dir,
        "plugboard-stally",
        &format!("[ -e {} ] && export FAULTY_STALL_AFTER=300ms", stalling.display()),
    );
    // The wrapper describes itself as `faulty` too: give it its own directory.
    let stally_dir = dir.path().join("stally");
    std::fs::create_dir(&stally_dir).unwrap();
    std::fs::rename(dir.plugins().join("plugboard-stally"), stally_dir.join("plugboard-stally")).unwrap();
    let config = dir.write_config(
        r#"restart: { initial_backoff: 20ms, max_backoff: 200ms, max_restarts: 100 }
health: { interval: 200ms, timeout: 300ms, failures: 2 }
sinks: [{ name: out, stdout: {} }]
routes: [{ sinks: [out] }, { sources: [plugboard], sinks: [out] }]
sources:
  - { name: stopped, plugin: faulty, config: { interval: 50ms } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
"#,
    );
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let entry = wait_state(&addr, "stopped", "running");
    wait_for("a passing health check", DEADLINE, || plugin(&addr, "stopped")["health"] == "serving");
    let old = pid_of(&entry);
    kill(old, Signal::SIGSTOP);

    let lines = run
        .stdout
        .wait_until("the unhealthy event", DEADLINE, |l| transitions(&lifecycle(l, "stopped")).contains(&"unhealthy"));
    let events = lifecycle(&lines, "stopped");
    let (_, unhealthy) = events.iter().find(|(t, _)| t == "unhealthy").unwrap();
    assert_eq!(unhealthy["pid"], old, "{unhealthy}");
    assert!(unhealthy["reason"].as_str().unwrap().contains("health check failed 2 times in a row"), "{unhealthy}");
    assert_eq!(wait_gone(&[old], DEADLINE), Vec::<u32>::new(), "the stopped plugin is still there (or a zombie)");
    let entry = wait_state(&addr, "stopped", "running");
    let new = pid_of(&entry);
    assert_ne!(new, old);
    assert!(process_alive(new));
    let lines = run.stdout.snapshot();
    let exited = lifecycle(&lines, "stopped").into_iter().find(|(t, d)| t == "exited" && d["pid"] == old);
    let (_, exited) = exited.expect("an exited event for the stopped process");
    assert_eq!(exited["exit"]["signal"], 9, "{exited}");
    assert_eq!(plugin(&addr, "steady")["state"], "running");
    drop(run);
    assert_eq!(wait_gone(&[new], DEADLINE), Vec::<u32>::new());

    // The same for a plugin that stalls on its own (FAULTY_STALL_AFTER).
    let config = dir.write_config(&format!(
        r#"plugins_dir: {}
restart: {{ initial_backoff: 20ms, max_backoff: 200ms, max_restarts: 100 }}
health: {{ interval: 200ms, timeout: 300ms, failures: 2 }}
sinks: [{{ name: out, stdout: {{}} }}]
routes: [{{ sinks: [out] }}, {{ sources: [plugboard], sinks: [out] }}]
sources:
  - {{ name: stalls, plugin: faulty, config: {{ interval: 50ms }} }}
"#,
        stally_dir.display()
    ));
    let text = std::fs::read_to_string(&config).unwrap().replacen("plugins_dir: plugins\n", "", 1);
    std::fs::write(&config, text).unwrap();
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let first = pid_of(&wait_state(&addr, "stalls", "running"));
    std::fs::write(&stalling, "").unwrap();
    // The running process does not stall: replace it with one that does.
    kill(first, Signal::SIGKILL);
    let lines = run
        .stdout
        .wait_until("an unhealthy event", DEADLINE, |l| transitions(&lifecycle(l, "stalls")).contains(&"unhealthy"));
    let events = lifecycle(&lines, "stalls");
    let (_, unhealthy) = events.iter().find(|(t, _)| t == "unhealthy").unwrap();
    let stalled = unhealthy["pid"].as_u64().unwrap() as u32;
    assert_ne!(stalled, first);
    // The plugin's own log lines carry its instance too.
    let line: Value = serde_json::from_str(&run.stderr.wait_for("stalling: no more answers")).unwrap();
    assert_eq!(line["span"]["instance"], "stalls", "{line}");
    assert_eq!(line["span"]["plugin"], "faulty", "{line}");
    assert_eq!(wait_gone(&[stalled], DEADLINE), Vec::<u32>::new(), "the stalled plugin is still there");
    // A fresh process was started after it.
    std::fs::remove_file(&stalling).unwrap();
    let lines = run.stdout.wait_until("a start after the kill", DEADLINE, |l| {
        let events = lifecycle(l, "stalls");
        let at = events.iter().position(|(t, d)| t == "unhealthy" && d["pid"] == stalled);
        at.is_some_and(|at| events[at..].iter().any(|(t, _)| t == "started"))
    });
    let events = lifecycle(&lines, "stalls");
    let at = events.iter().position(|(t, d)| t == "unhealthy" && d["pid"] == stalled).unwrap();
    let (_, started) = events[at..].iter().find(|(t, _)| t == "started").unwrap();
    assert_ne!(started["pid"], stalled);
}

/// Every pid `GET /v1/plugins` shows, once all instances run.
fn running_pids(addr: &str, n: usize) -> Vec<u32> {
    let mut pids = Vec::new();
    wait_for(&format!("{n} running instances"), DEADLINE, || {
        let all = plugins(addr);
        pids = all.iter().filter(|p| p["state"] == "running").map(pid_of).collect();
        pids.len() == n
    });
    pids
}

fn stored_of(config: &Path, source: &str) -> Vec<Value> {
    stored_events(config, &["--source", source])
}

#[test]
fn sigterm_drains_stops_every_plugin_and_exits_zero() {
    let dir = TestDir::new();
    dir.add_plugin("tick").add_plugin("echo");
    // Ignores Shutdown and SIGTERM alike: only SIGKILL ends it.
    faulty_wrapper(&dir, "plugboard-stubborn", "export FAULTY_IGNORE_SHUTDOWN=1");
    let config = dir.write_config(
        r#"kill_grace: 500ms
shutdown: { drain_timeout: 5s }
sources:
  - { name: counter, plugin: faulty, config: { interval: 5ms } }
  - { name: steady, plugin: tick, config: { interval: 20ms } }
executors:
  - { name: echo, plugin: echo }
"#,
    );
    let mut run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let pids = running_pids(&addr, 3);
    run.stdout.wait_until("50 counter events delivered", DEADLINE, |l| {
        l.iter().filter(|l| l.contains("/plugboard/faulty/counter")).count() >= 50
    });
    let seen = run.stdout.snapshot().iter().filter(|l| l.contains("/plugboard/faulty/counter")).count();
    // A command in flight when the signal comes is drained, not cut off.
    let mut stream = plugboard_tests::chatops::SseStream::open(
        &format!("http://{addr}/v1/commands"),
        serde_json::json!({"command": "echo --every 300ms a b c"}),
    );
    assert_eq!(stream.next_event().unwrap().data["chunk"], "a\n");
    run.signal(Signal::SIGTERM);
    let result = std::iter::from_fn(|| stream.next_event()).find(|e| e.event == "result").expect("a result");
    assert_eq!(result.data["status"], "ok", "{}", result.data);
    assert_eq!(result.data["output"], "a\nb\nc\n", "{}", result.data);
    let status = run.wait_exit(DEADLINE);
    let stderr = run.stderr.text();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(wait_gone(&pids, DEADLINE), Vec::<u32>::new(), "plugin processes outlived the host");
    run.stderr.wait_for("plugin failed to exit gracefully; killing it");

    // Everything the source sent before it was stopped is stored, in order.
    let stored = stored_of(&config, "counter");
    assert!(stored.len() >= seen, "{} stored, {seen} seen", stored.len());
    let indexes: Vec<u64> = stored.iter().map(|s| s["event"]["data"]["index"].as_u64().unwrap()).collect();
    assert!(indexes.iter().enumerate().all(|(i, x)| *x == i as u64), "{indexes:?}");
    // So are the lifecycle events of the stop.
    let host = stored_of(&config, "plugboard");
    let stopped: Vec<&Value> = host
        .iter()
        .filter(|s| s["event"]["type"] == "dev.plugboard.plugin.exited" && s["event"]["data"]["during"] == "stop")
        .collect();
    let names: Vec<&str> = stopped.iter().filter_map(|s| s["event"]["subject"].as_str()).collect();
    assert!(names.contains(&"counter") && names.contains(&"echo"), "{names:?}");
    let counter = stopped.iter().find(|s| s["event"]["subject"] == "counter").unwrap();
    assert_eq!(counter["event"]["data"]["exit"]["signal"], 9, "{counter}");
}

#[test]
fn a_host_that_cannot_listen_exits_non_zero_and_leaves_no_plugin() {
    let dir = TestDir::new();
    dir.add_plugin("tick");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = dir.write_config("sources:\n  - { name: steady, plugin: tick, config: { interval: 20ms } }\n");
    let mut cmd = plugboard();
    cmd.env("PLUGBOARD_LISTEN", taken.local_addr().unwrap().to_string()).args(["run", "--config"]).arg(&config);
    let mut run = Running::spawn(cmd);
    let status = run.wait_exit(DEADLINE);
    // The reader thread may still be collecting the last lines.
    run.stderr.wait_for(&format!("cannot listen on {}", taken.local_addr().unwrap()));
    assert_eq!(status.code(), Some(1), "{}", run.stderr.text());
    let left =
        processes_named("plugboard-tick").into_iter().filter(|(_, args)| args.contains(dir.path().to_str().unwrap()));
    assert_eq!(left.count(), 0);
}

#[test]
fn the_plugins_api_needs_the_token_and_the_cli_takes_it_from_the_config() {
    let dir = TestDir::new();
    dir.add_plugin("tick");
    let config = dir.write_config(
        "http: { token: s3cret }\nsources:\n  - { name: steady, plugin: tick, config: { interval: 1s } }\n",
    );
    let run = run_host(&config);
    let addr = http_addr(&run.stderr);
    let url = format!("http://{addr}");
    for (method, path) in [("GET", "/v1/plugins"), ("POST", "/v1/plugins/steady/enable")] {
        let request = http_client();
        let response = match method {
            "GET" => request.get(&format!("{url}{path}")).call(),
            _ => request.post(&format!("{url}{path}")).send_empty(),
        };
        assert_eq!(response.unwrap().status(), 401, "{method} {path}");
    }
    let (code, _, err) = run_plugboard(&["plugins", "status", "--remote", &url]);
    assert_eq!(code, Some(1));
    assert!(err.contains("401") && err.contains("missing or wrong bearer token"), "{err}");
    wait_for("steady to run", DEADLINE, || {
        let (_, out, _) = run_plugboard(&["plugins", "status", "--json", "--remote", &url, "--token", "s3cret"]);
        serde_json::from_str::<Value>(&out).is_ok_and(|v| v["plugins"][0]["state"] == "running")
    });
    let (code, out, err) =
        run_plugboard(&["plugins", "status", "--remote", &url, "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.lines().any(|l| l.starts_with("steady ") && l.contains("running")), "{out}");
}
