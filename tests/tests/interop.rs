//! Cross-language end-to-end tests (`make test-e2e-interop`, feature
//! `e2e-interop`): Go plugins built with hashicorp/go-plugin and Python
//! plugins built with grpcio run under the real `plugboard`; the Go kvpeer
//! peer runs a Rust plugin and is run by the Rust launcher, plainly and with
//! AutoMTLS; `plugboard plugin check` passes every contrib plugin and catches
//! every deliberately broken one.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use plugboard_host::launcher::{AddressPolicy, LaunchConfig, LaunchError, PluginProcess};
use plugboard_kvpeer::pb::{self, key_value_client::KeyValueClient};
use plugboard_proto::goplugin::PluginAddress;
use plugboard_tests::*;

/// Where `make test-e2e-interop` put the Go and Python builds.
fn e2e_dir() -> PathBuf {
    let dir = std::env::var_os("PLUGBOARD_E2E_DIR")
        .map(PathBuf::from)
        .expect("PLUGBOARD_E2E_DIR is not set: run these tests with `make test-e2e-interop`");
    assert!(dir.is_dir(), "{} is missing: run `make test-e2e-interop`", dir.display());
    dir
}

fn e2e_bin(group: &str, name: &str) -> PathBuf {
    let path = e2e_dir().join(group).join("bin").join(name);
    assert!(path.exists(), "{} is missing: run `make test-e2e-interop`", path.display());
    path
}

/// A plugins dir with the given built plugins linked in.
fn plugins_dir(plugins: &[(&str, &str)]) -> TestDir {
    let dir = TestDir::new();
    for (group, name) in plugins {
        std::os::unix::fs::symlink(e2e_bin(group, name), dir.plugins().join(name)).expect("link plugin");
    }
    dir
}

/// Runs `plugboard run` with JSON debug logs; returns it and its stderr.
fn run_host(config: &std::path::Path) -> Running {
    let mut cmd = plugboard();
    cmd.args(["--log-format", "json", "--log-level", "info,plugboard_host=debug", "run", "--config"]).arg(config);
    Running::spawn(cmd)
}

fn pids_of(lines: &[String], message: &str) -> Vec<u32> {
    log_events(lines, message).iter().filter_map(|f| f["pid"].as_u64()).map(|p| p as u32).collect()
}

/// Sources and executors in another language under the real host: events
/// arrive by id, commands answer, and on host shutdown the plugins exit by
/// themselves after `Shutdown` (no kill).
fn source_and_executor_under_plugboard(group: &str, source: &str, executor: &str, source_config: &str) {
    let dir = plugins_dir(&[(group, &format!("plugboard-{source}")), (group, &format!("plugboard-{executor}"))]);
    // A generous grace period: the point is that they exit by themselves.
    let config = dir.write_config(&format!(
        "kill_grace: 10s\nsources:\n  - name: numbers\n    plugin: {source}\n    config: {source_config}\n\
         executors:\n  - name: cmd\n    plugin: {executor}\n"
    ));
    let mut host = run_host(&config);
    let lines = host.stdout.wait_until("3 events", DEADLINE, |l| l.len() >= 3);
    let events = parse_events(&lines);
    let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["numbers-0", "numbers-1", "numbers-2"]);
    assert!(events.iter().all(|e| e.source == format!("/plugboard/{source}/numbers")), "{events:?}");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(event_index(e), i as u64);
    }
    let started = host.stderr.wait_until("source and executor to start", DEADLINE, |l| {
        !pids_of(l, "source started").is_empty() && !pids_of(l, "executor started").is_empty()
    });
    let mut pids = pids_of(&started, "source started");
    pids.extend(pids_of(&started, "executor started"));

    // Commands go through `plugboard exec` with the same config.
    let words: &[&str] =
        if executor.contains("upper") { &["upper", "hello", "world"] } else { &["reverse", "a", "b", "c"] };
    let out = plugboard().arg("exec").arg("--config").arg(&config).arg("--").args(words).output().unwrap();
    let expected = if executor.contains("upper") { "HELLO WORLD\n" } else { "c b a\n" };
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected, "stderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0));

    host.signal(Signal::SIGTERM);
    let status = host.wait_exit(DEADLINE);
    assert!(status.success(), "host exit {status:?}; stderr:\n{}", host.stderr.text());
    assert!(wait_gone(&pids, DEADLINE).is_empty(), "plugins {pids:?} outlived the host");
    let stderr = host.stderr.text();
    assert!(!stderr.contains("failed to exit gracefully"), "a plugin had to be killed:\n{stderr}");
}

#[test]
fn go_source_and_executor_run_under_plugboard() {
    source_and_executor_under_plugboard("go", "go-counter", "go-upper", "{ interval: 20ms }");
}

#[test]
fn python_source_and_executor_run_under_plugboard() {
    source_and_executor_under_plugboard("python", "py-counter", "py-reverse", "{ interval_ms: 20 }");
}

#[test]
fn go_and_python_sources_resume_from_the_cursor_after_a_crash() {
    for (group, source, config) in
        [("go", "go-counter", "{ interval: 20ms }"), ("python", "py-counter", "{ interval_ms: 20 }")]
    {
        let dir = plugins_dir(&[(group, &format!("plugboard-{source}"))]);
        let config = dir.write_config(&format!(
            "restart: {{ initial_backoff: 10ms }}\nsources:\n  - name: n\n    plugin: {source}\n    config: {config}\n"
        ));
        let mut host = run_host(&config);
        let lines = host.stdout.wait_until("2 events", DEADLINE, |l| l.len() >= 2);
        // stdout and stderr are separate pipes: wait for the log line too.
        let started =
            host.stderr.wait_until("the source to start", DEADLINE, |l| !pids_of(l, "source started").is_empty());
        let first = pids_of(&started, "source started");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(first[0] as i32), Signal::SIGKILL).unwrap();
        host.stderr.wait_until("a restart", DEADLINE, |l| pids_of(l, "source started").len() >= 2);
        let seen = lines.len();
        let lines = host.stdout.wait_until("events after the restart", DEADLINE, |l| l.len() >= seen + 3);
        let indexes: Vec<u64> = parse_events(&lines).iter().map(event_index).collect();
        // The restarted plugin got the last forwarded cursor and went on
        // right after it: no gap, no repeat from 0.
        let expected: Vec<u64> = (0..indexes.len() as u64).collect();
        assert_eq!(indexes, expected, "{source}");
        // A clean stop removes the private socket directories.
        host.signal(Signal::SIGTERM);
        assert!(host.wait_exit(DEADLINE).success());
    }
}

#[test]
fn go_host_runs_the_rust_kvpeer_plugin_plain_and_with_automtls() {
    let host = e2e_bin("goplugin-peer", "kvpeer-host");
    let plugin = bin("kvpeer-rust-plugin");
    for extra in [&[][..], &["-automtls"][..]] {
        let out = Command::new(&host).arg("-plugin").arg(&plugin).args(extra).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stdout}\n{stderr}");
        assert!(stdout.starts_with("OK implementation=rust-kvpeer "), "{extra:?}: {stdout}");
        assert!(stdout.contains("protocol=grpc version=1 revision=1"), "{stdout}");
        // Our hclog JSON lines were understood and re-logged by go-plugin.
        assert!(stderr.contains("kvpeer-host.kvpeer-rust-plugin: write: "), "{stderr}");
    }
}

async fn kv_round_trip(process: &PluginProcess) -> i64 {
    let mut kv = KeyValueClient::new(process.channel());
    let info = kv.info(pb::InfoRequest {}).await.expect("Info").into_inner();
    assert_eq!(info.implementation, "go-kvpeer");
    let rev = kv.write(pb::WriteRequest { key: "k".into(), value: b"v1".to_vec() }).await.unwrap().into_inner();
    assert_eq!(rev.revision, 1);
    let read = kv.read(pb::ReadRequest { key: "k".into() }).await.unwrap().into_inner();
    assert!(read.found);
    assert_eq!(read.value, b"v1");
    let missing = kv.read(pb::ReadRequest { key: "nope".into() }).await.unwrap().into_inner();
    assert!(!missing.found);
    info.pid
}

fn kvpeer_config(auto_mtls: bool) -> LaunchConfig {
    let mut cfg = LaunchConfig::new("kvpeer", e2e_bin("goplugin-peer", "kvpeer-plugin"), plugboard_kvpeer::HANDSHAKE);
    cfg.start_timeout = DEADLINE;
    cfg.auto_mtls = auto_mtls;
    cfg
}

#[tokio::test]
async fn the_launcher_runs_the_go_kvpeer_plugin_plain_and_with_automtls() {
    for auto_mtls in [false, true] {
        let process = PluginProcess::launch(kvpeer_config(auto_mtls)).await.expect("launch kvpeer-plugin");
        let cert = process.handshake().server_cert.clone();
        assert_eq!(cert.is_some(), auto_mtls, "field 6 carries the Go plugin's certificate only with AutoMTLS");
        if let Some(der) = cert {
            // go-plugin's certificate: ECDSA P-521 (OID 1.3.132.0.35), signed ecdsa-with-SHA512.
            assert!(der.windows(7).any(|w| w == [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23]), "not a P-521 key");
        }
        // TMPDIR points at the private socket dir, so go-plugin 1.0.1 binds there.
        match &process.handshake().address {
            PluginAddress::Unix(path) => assert!(path.starts_with(std::env::temp_dir()), "{}", path.display()),
            other => panic!("expected a unix socket, got {other}"),
        }
        let pid = kv_round_trip(&process).await;
        assert_eq!(pid, i64::from(process.pid()));
        process.ping(Duration::from_secs(5)).await.expect("health plugin SERVING");
        let exit = process.shutdown().await;
        assert_eq!(exit.code(), Some(0), "go-plugin exits by itself after GRPCController.Shutdown: {exit}");
        assert!(!process_alive(process.pid()));
    }
}

#[tokio::test]
async fn a_go_plugin_socket_outside_the_private_dir_is_refused_unless_allowed() {
    let outside = tempfile::tempdir().unwrap();
    let mut cfg = kvpeer_config(false);
    // Our env comes last, so this TMPDIR wins: go-plugin 1.0.1 binds there.
    cfg.env.push(("TMPDIR".into(), outside.path().as_os_str().to_owned()));
    let err = PluginProcess::launch(cfg.clone()).await.unwrap_err();
    assert!(matches!(err, LaunchError::Address { .. }), "{err}");
    assert!(err.to_string().contains("which is not inside its private socket directory"), "{err}");

    cfg.address_policy = AddressPolicy { allow_socket_outside_dir: true, ..Default::default() };
    let process = PluginProcess::launch(cfg).await.expect("allowed by the policy");
    kv_round_trip(&process).await;
    process.shutdown().await;
}

/// `plugboard plugin check` on a plugin: (exit code, report).
fn check(path: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = plugboard().args(["plugin", "check"]).arg(path).args(args).output().unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), report)
}

#[test]
fn the_checker_passes_every_contrib_plugin_in_every_language() {
    let plugins: [(PathBuf, &[&str]); 7] = [
        (bin("plugboard-tick"), &[]),
        (bin("plugboard-range"), &["--config", r#"{"limit": 3}"#]),
        (bin("plugboard-echo"), &[]),
        (e2e_bin("go", "plugboard-go-counter"), &[]),
        (e2e_bin("go", "plugboard-go-upper"), &[]),
        (e2e_bin("python", "plugboard-py-counter"), &["--config", r#"{"interval_ms": 10}"#]),
        (e2e_bin("python", "plugboard-py-reverse"), &[]),
    ];
    for (plugin, args) in plugins {
        let (code, report) = check(&plugin, args);
        assert_eq!(code, Some(0), "{}:\n{report}", plugin.display());
        assert!(report.contains("PASS  health"), "{report}");
        assert!(!report.contains("FAIL"), "{report}");
    }
}

/// The deliberately broken Python plugin, in one mode.
fn broken(dir: &TestDir, mode: &str) -> PathBuf {
    let script = e2e_dir().join("python").join("lib").join("broken.py");
    assert!(script.exists(), "{} is missing: run `make test-e2e-interop`", script.display());
    let python = e2e_dir().join("venv").join("bin").join("python");
    dir.add_script(
        &format!("broken-{mode}"),
        &format!("BROKEN_MODE={mode} exec {} {}", python.display(), script.display()),
    )
}

#[test]
fn the_checker_catches_each_deliberately_broken_plugin() {
    let dir = TestDir::new();
    // (mode, kind, the report line that must fail)
    let cases = [
        ("ignores-cookie", "source", "FAIL  cookie"),
        ("wrong-version", "source", "FAIL  version negotiation"),
        ("socket-outside", "source", "FAIL  socket"),
        ("not-serving", "source", "FAIL  health"),
        ("bad-describe", "source", "FAIL  describe"),
        ("schema-rejects-config", "source", "FAIL  config schema"),
        ("invalid-event", "source", "FAIL  source stream"),
        ("no-result", "executor", "FAIL  executor execute"),
        ("ignores-shutdown", "source", "FAIL  shutdown"),
        ("stdout-noise", "source", "FAIL  stdout after handshake"),
        ("no-automtls", "source", "WARN  automtls"),
        ("no-stdio", "source", "WARN  stdio"),
        ("plain-logs", "source", "WARN  logging"),
    ];
    for (mode, kind, expected) in cases {
        let path = broken(&dir, mode);
        let (code, report) = check(&path, &["--kind", kind]);
        assert!(report.contains(expected), "{mode}: expected {expected:?} in:\n{report}");
        if expected.starts_with("FAIL") {
            assert_eq!(code, Some(1), "{mode}: a failed required item exits 1:\n{report}");
        } else {
            assert_eq!(code, Some(0), "{mode}: warnings alone exit 0:\n{report}");
        }
    }
}
