//! Chat-ops end to end: the command API (JSON and streaming), resolution,
//! help, permissions and audit, limits (timeout, concurrency, output cap)
//! and a crashed executor — the real host with real executor processes.

use nix::sys::signal::Signal;
use plugboard_tests::chatops::*;
use plugboard_tests::*;
use serde_json::json;

const ECHO: &str = "executors:\n  - name: echo\n    plugin: echo\n";

#[test]
fn the_api_answers_with_json_help_and_clear_errors() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, ECHO);

    let (status, reply) =
        host.command(json!({"command": "echo hello 'big world'", "user": "alice", "channel": "#ops"}));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["executor"], "echo");
    assert_eq!(reply["output"], "hello big world\n");
    assert_eq!(reply["exit_code"], 0);
    assert_eq!(reply["error"], "");
    assert_eq!(reply["status"], "ok");
    assert!(reply["duration_ms"].is_u64());

    let (status, reply) = host.command(json!({"command": "help"}));
    assert_eq!(status, 200);
    let help = reply["output"].as_str().unwrap();
    assert!(help.contains("echo  prints its arguments back"), "{help}");
    assert!(help.contains("help  this list"), "{help}");

    let (status, reply) = host.command(json!({"command": "echo help"}));
    assert_eq!(status, 200);
    assert!(reply["output"].as_str().unwrap().contains("usage: echo WORDS..."), "{reply}");

    let (status, reply) = host.command(json!({"command": "ecko hi"}));
    assert_eq!(status, 404);
    assert_eq!(reply["status"], "unknown");
    assert_eq!(reply["exit_code"], 127);
    assert!(reply["error"].as_str().unwrap().contains("(did you mean echo?)"), "{reply}");

    let (status, reply) = host.command(json!({"command": "echo 'open"}));
    assert_eq!(status, 400);
    assert!(reply["error"].as_str().unwrap().contains("cannot parse command"), "{reply}");

    let mut response = http_client().post(&host.url("/v1/commands")).send_json(json!({"cmd": "x"})).unwrap();
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "bad_request");

    // Every command is audited as an event, with who, where, what and how it ended.
    let audit = host.events_of_type("dev.plugboard.command.executed", 5);
    let first = &audit[0]["data"];
    assert_eq!(first["user"], "alice");
    assert_eq!(first["channel"], "#ops");
    assert_eq!(first["platform"], "http");
    assert_eq!(first["command"], "echo hello 'big world'");
    assert_eq!(first["executor"], "echo");
    assert_eq!(first["exit_code"], 0);
    assert!(first["duration_ms"].is_number());
    assert_eq!(audit[3]["data"]["exit_code"], 127);
}

#[test]
fn output_streams_as_server_sent_events_and_ends_with_the_result() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, ECHO);
    let events =
        SseStream::open(&host.url("/v1/commands"), json!({"command": "echo --every 10ms one two three"})).collect();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["output", "output", "output", "result"], "{events:?}");
    let chunks: Vec<&str> = events[..3].iter().map(|e| e.data["chunk"].as_str().unwrap()).collect();
    assert_eq!(chunks, ["one\n", "two\n", "three\n"]);
    assert_eq!(events[3].data["output"], "one\ntwo\nthree\n");
    assert_eq!(events[3].data["exit_code"], 0);
    assert_eq!(events[3].data["executor"], "echo");
}

#[test]
fn aliases_expand_first_and_the_longest_prefix_wins() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(
        &dir,
        "executors:\n  - name: say\n    plugin: echo\n    prefixes: [say]\n  - name: loud\n    plugin: echo\n    prefixes: [\"say loudly\"]\n    aliases: { s: say loudly, \"s q\": say }\n",
    );
    let executor = |command: &str| {
        let (status, reply) = host.command(json!({ "command": command }));
        assert_eq!(status, 200, "{command}: {reply}");
        (reply["executor"].as_str().unwrap().to_owned(), reply["output"].as_str().unwrap().to_owned())
    };
    assert_eq!(executor("say hi"), ("say".into(), "hi\n".into()));
    assert_eq!(executor("say loudly hi"), ("loud".into(), "hi\n".into()));
    assert_eq!(executor("s hi"), ("loud".into(), "hi\n".into()));
    assert_eq!(executor("s q hi"), ("say".into(), "hi\n".into()), "the longest alias wins");
    let (_, reply) = host.command(json!({"command": "help"}));
    assert!(reply["output"].as_str().unwrap().contains("Aliases: s → say loudly, s q → say"), "{reply}");
}

#[test]
fn policies_allow_deny_and_restrict_help_before_any_plugin_is_contacted() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(
        &dir,
        r##"executors:
  - name: echo
    plugin: echo
  - name: say
    plugin: echo
    prefixes: [say]
commands:
  groups:
    ops: [alice]
  policies:
    - name: ops-echo
      effect: allow
      groups: [ops]
      commands: [echo, say]
    - name: guests-echo
      effect: allow
      users: [bob]
      channels: ["#ops"]
      commands: ["echo*"]
    - name: no-secrets
      effect: deny
      commands: ["echo secret*"]
"##,
    );
    let running = |run: &Running| plugin_messages(&run.stderr.snapshot(), "echo running").len();

    let (status, reply) = host.run_as("alice", "echo hi");
    assert_eq!((status, reply["output"].as_str()), (200, Some("hi\n")), "{reply}");
    let (status, reply) = host.run_as("alice", "say hi");
    assert_eq!(status, 200, "{reply}");
    host.run
        .stderr
        .wait_until("the plugin's log of 2 commands", DEADLINE, |l| plugin_messages(l, "echo running").len() >= 2);
    // The executor saw who asked.
    let seen = plugin_messages(&host.run.stderr.snapshot(), "echo running");
    assert!(seen[0].contains("user=alice") && seen[0].contains("channel=#ops"), "{seen:?}");

    let (status, reply) = host.run_as("bob", "say hi");
    assert_eq!(status, 403, "{reply}");
    assert_eq!(reply["status"], "denied");
    assert_eq!(reply["exit_code"], 126);
    assert!(reply["error"].as_str().unwrap().contains("permission denied: bob may not run \"say hi\""), "{reply}");
    let (status, reply) = host.run_as("alice", "echo secret stuff");
    assert_eq!(status, 403);
    assert!(reply["error"].as_str().unwrap().contains("denied by policy \"no-secrets\""), "{reply}");
    let (status, _) = host.command(json!({"command": "echo hi", "user": "bob", "channel": "#random"}));
    assert_eq!(status, 403, "bob may only run commands in #ops");
    let (status, reply) = host.run_as("carol", "echo hi");
    assert_eq!(status, 403);
    assert!(reply["error"].as_str().unwrap().contains("no policy allows it"), "{reply}");

    // Help lists what the caller may run, never the rest.
    let (_, reply) = host.run_as("bob", "help");
    let help = reply["output"].as_str().unwrap();
    assert!(help.contains("echo  prints its arguments back"), "{help}");
    assert!(!help.contains("say"), "{help}");
    let (_, reply) = host.run_as("alice", "help");
    assert!(reply["output"].as_str().unwrap().contains("say "), "{reply}");
    let (_, reply) = host.run_as("carol", "help");
    assert_eq!(reply["output"], "You may not run any command here.\n");
    let (status, _) = host.run_as("bob", "say help");
    assert_eq!(status, 403);
    let (_, reply) = host.run_as("bob", "sai hi");
    assert!(
        !reply["error"].as_str().unwrap().contains("say"),
        "unknown-command hints hide forbidden prefixes: {reply}"
    );

    // One more allowed command as a barrier: the plugin logged exactly the allowed ones.
    host.run_as("bob", "echo last");
    host.run
        .stderr
        .wait_until("the plugin's log of 3 commands", DEADLINE, |l| plugin_messages(l, "echo running").len() >= 3);
    assert_eq!(running(&host.run), 3, "denied commands never reached the plugin");

    let denied = host.events_of_type("dev.plugboard.command.denied", 5);
    let users: Vec<&str> = denied.iter().map(|e| e["data"]["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["bob", "alice", "bob", "carol", "bob"]);
    assert_eq!(denied[0]["data"]["command"], "say hi");
    assert_eq!(denied[0]["source"], "/plugboard/host");
}

#[test]
fn a_timeout_cancels_the_command_and_the_plugin_sees_it() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, "executors:\n  - name: echo\n    plugin: echo\n    timeout: 2s\n");
    let mut stream = SseStream::open(&host.url("/v1/commands"), json!({"command": "echo --every 1h first never"}));
    let first = stream.next_event().expect("first chunk");
    assert_eq!((first.event.as_str(), first.data["chunk"].as_str()), ("output", Some("first\n")));
    let result = stream.next_event().expect("the result");
    assert_eq!(result.event, "result");
    assert_eq!(result.data["status"], "timeout");
    assert_eq!(result.data["exit_code"], 124);
    assert_eq!(result.data["output"], "first\n");
    assert!(result.data["error"].as_str().unwrap().contains("timed out after 2s and was cancelled"), "{}", result.data);
    // The plugin's own log says it was cancelled after one of two words.
    let lines = host.run.stderr.wait_until("the plugin to log the cancellation", DEADLINE, |l| {
        !plugin_messages(l, "echo cancelled").is_empty()
    });
    let cancelled = &plugin_messages(&lines, "echo cancelled")[0];
    assert!(cancelled.contains("sent=1 total=2"), "{cancelled}");
    let (status, reply) = host.command(json!({"command": "echo still here"}));
    assert_eq!((status, reply["output"].as_str()), (200, Some("still here\n")));
}

#[test]
fn a_full_executor_answers_busy() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, "executors:\n  - name: echo\n    plugin: echo\n    max_concurrent: 1\n");
    let mut stream = SseStream::open(&host.url("/v1/commands"), json!({"command": "echo --every 1h a b"}));
    assert_eq!(stream.next_event().unwrap().data["chunk"], "a\n");
    let (status, reply) = host.command(json!({"command": "echo hi"}));
    assert_eq!(status, 429, "{reply}");
    assert_eq!(reply["status"], "busy");
    assert_eq!(reply["exit_code"], 75);
    assert!(
        reply["error"].as_str().unwrap().contains("executor \"echo\" is busy: it already runs 1 commands"),
        "{reply}"
    );
}

#[test]
fn output_beyond_max_output_is_dropped_with_a_notice() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, "executors:\n  - name: echo\n    plugin: echo\n    max_output: 8\n");
    let (status, reply) = host.command(json!({"command": "echo 0123456789abcdef"}));
    assert_eq!(status, 200);
    assert_eq!(reply["output"], "01234567\n[output truncated: kept the first 8 bytes (max_output), dropped 9 more]\n");
}

#[test]
fn an_executor_killed_mid_command_is_answered_and_works_after_its_restart() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, &format!("restart: {{ initial_backoff: 50ms }}\n{ECHO}"));
    let pid = host.executor_pids("echo", 1)[0];
    let mut stream = SseStream::open(&host.url("/v1/commands"), json!({"command": "echo --every 1h a b"}));
    assert_eq!(stream.next_event().unwrap().data["chunk"], "a\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let result = stream.next_event().expect("a result, not silence");
    assert_eq!(result.event, "result");
    assert_eq!(result.data["status"], "unavailable", "{}", result.data);
    assert_eq!(result.data["output"], "a\n");
    let error = result.data["error"].as_str().unwrap();
    assert!(error.contains("executor \"echo\" is not available"), "{error}");

    let pids = host.executor_pids("echo", 2);
    assert_ne!(pids[0], pids[1]);
    let (status, reply) = host.command(json!({"command": "echo back again"}));
    assert_eq!((status, reply["output"].as_str()), (200, Some("back again\n")), "{reply}");
}

#[test]
fn a_token_is_required_when_configured() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, &format!("http: {{ token: s3cret }}\n{ECHO}"));
    let (status, body) = post_command(&host.url("/v1/commands"), json!({"command": "echo hi"}), None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, _) = post_command(&host.url("/v1/commands"), json!({"command": "echo hi"}), Some("wrong"));
    assert_eq!(status, 401);
    let (status, reply) = post_command(&host.url("/v1/commands"), json!({"command": "echo hi"}), Some("s3cret"));
    assert_eq!((status, reply["output"].as_str()), (200, Some("hi\n")));
}

#[test]
fn secret_config_values_are_masked_in_output() {
    let dir = TestDir::new();
    dir.add_plugin("exec");
    let host = start_host(
        &dir,
        "executors:\n  - name: exec\n    plugin: exec\n    config: { allow: [env, sh], env: { API_TOKEN: hunter2-very-secret } }\n",
    );
    let (status, reply) = host.command(json!({"command": "exec env"}));
    assert_eq!(status, 200, "{reply}");
    let output = reply["output"].as_str().unwrap();
    assert!(output.contains("API_TOKEN=********"), "{output}");
    assert!(!output.contains("hunter2"), "{output}");
    // Given back in arguments: masked in the output and in the plugin's forwarded log.
    let (_, reply) = host.command(json!({"command": "exec sh -c 'echo hunter2-very-secret >&2'"}));
    assert_eq!(reply["output"], "********\n", "{reply}");
    let lines = host
        .run
        .stderr
        .wait_until("the plugin's log of the command", DEADLINE, |l| plugin_messages(l, "exec running").len() >= 2);
    assert!(plugin_messages(&lines, "exec running")[1].contains("echo ******** >&2"), "{lines:?}");
    let audit = host.events_of_type("dev.plugboard.command.executed", 2);
    assert_eq!(audit[1]["data"]["command"], "exec sh -c 'echo ******** >&2'");
    assert!(!host.run.stdout.text().contains("hunter2") && !host.run.stderr.text().contains("hunter2"));
    let (status, reply) = host.command(json!({"command": "exec cat /etc/passwd"}));
    assert_eq!(status, 200);
    assert_eq!(reply["exit_code"], 126);
    assert!(reply["error"].as_str().unwrap().contains("\"cat\" is not on this executor's allow list"), "{reply}");
}

#[test]
fn the_http_executor_prints_status_headers_and_a_capped_body() {
    let dir = TestDir::new();
    dir.add_plugin("http");
    let site = Recorder::start("0123456789");
    let host = start_host(&dir, "executors:\n  - name: http\n    plugin: http\n    config: { max_body: 4 }\n");
    let (status, reply) = host.command(json!({ "command": format!("http get {}", site.url("/health")) }));
    assert_eq!(status, 200, "{reply}");
    let output = reply["output"].as_str().unwrap();
    assert!(output.starts_with("HTTP/1.1 200 OK\n"), "{output}");
    assert!(output.contains("x-recorder: yes\n"), "{output}");
    assert!(output.contains("\n\n0123\n[body truncated at 4 bytes]"), "{output}");
    assert_eq!(site.next().path, "/health");
}

#[test]
fn a_crashed_executor_waiting_to_restart_is_answered_at_once() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let host = start_host(&dir, &format!("restart: {{ initial_backoff: 1h, max_backoff: 1h }}\n{ECHO}"));
    let pid = host.executor_pids("echo", 1)[0];
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    host.run.stderr.wait_for("executor failed");
    let (status, reply) = host.command(json!({"command": "echo hi"}));
    assert_eq!(status, 503, "{reply}");
    assert_eq!(reply["status"], "unavailable");
    assert_eq!(reply["exit_code"], 69);
    let error = reply["error"].as_str().unwrap();
    assert!(error.contains(&format!("plugin process {pid} exited (killed by signal 9 (SIGKILL))")), "{error}");
    assert!(error.contains("restarting in"), "{error}");
}

#[test]
fn config_errors_never_show_secret_values() {
    let dir = TestDir::new();
    dir.add_plugin("exec");
    let config = dir.write_config(
        "executors:\n  - name: exec\n    plugin: exec\n    config: { allow: [env], env: { API_TOKEN: 987654321 } }\n",
    );
    let out = plugboard().args(["run", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("executors[0] \"exec\": config rejected by plugin \"exec\"'s schema: at /env/API_TOKEN"),
        "{stderr}"
    );
    assert!(stderr.contains("********"), "{stderr}");
    assert!(!stderr.contains("987654321"), "{stderr}");
}
