//! The generic launcher (layer 1) against real plugin processes.

use std::time::Duration;

use plugboard_host::launcher::{LaunchConfig, LaunchError, PluginProcess};
use plugboard_proto::handshake::HANDSHAKE;
use plugboard_tests::*;

fn config(name: &str) -> LaunchConfig {
    let mut cfg = LaunchConfig::new(name, bin(&format!("plugboard-{name}")), HANDSHAKE);
    cfg.start_timeout = DEADLINE;
    cfg
}

#[tokio::test]
async fn shutdown_is_graceful_idempotent_and_leaves_no_socket_dir() {
    let plugin = PluginProcess::launch(config("echo")).await.expect("launch echo");
    let pid = plugin.pid();
    let socket = match &plugin.handshake().address {
        plugboard_proto::goplugin::PluginAddress::Unix(p) => p.clone(),
        other => panic!("expected a unix socket, got {other}"),
    };
    assert!(socket.exists());
    let socket_dir = socket.parent().unwrap().to_path_buf();
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket_dir).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o700, "the per-launch socket dir is private");
    plugin.ping(Duration::from_secs(5)).await.expect("healthy");

    // Concurrent and repeated stops all return once the process is gone.
    let (a, b) = tokio::join!(plugin.shutdown(), plugin.shutdown());
    assert_eq!(a, b);
    assert_eq!(a.code(), Some(0), "Shutdown over the controller is a clean exit, not a kill: {a}");
    assert_eq!(plugin.shutdown().await.code(), Some(0));
    assert!(!process_alive(pid));
    drop(plugin);
    assert!(!socket_dir.exists(), "the private socket dir is removed with the process handle");
}

#[tokio::test]
async fn dropping_a_handle_kills_the_process() {
    let plugin = PluginProcess::launch(config("echo")).await.expect("launch echo");
    let pid = plugin.pid();
    drop(plugin);
    assert!(wait_gone(&[pid], DEADLINE).is_empty());
}

#[tokio::test]
async fn the_plugin_gets_the_handshake_environment() {
    let dir = TestDir::new();
    let out = dir.path().join("env.txt");
    let script = dir.add_script("envdump", &format!("env > {}; exit 0", out.display()));
    let mut cfg = LaunchConfig::new("envdump", script, HANDSHAKE);
    cfg.env.push(("EXTRA".into(), "1".into()));
    let err = PluginProcess::launch(cfg).await.unwrap_err();
    assert!(matches!(err, LaunchError::ExitedEarly { .. }), "{err}");
    let env = std::fs::read_to_string(out).unwrap();
    let has = |line: &str| env.lines().any(|l| l == line);
    assert!(has("PLUGBOARD_PLUGIN=7c2e5d0a-1f4b-4c8e-9a3d-5b6f0e2c8d41"), "{env}");
    assert!(has("PLUGIN_PROTOCOL_VERSIONS=1"), "{env}");
    assert!(has("PLUGIN_MIN_PORT=10000") && has("PLUGIN_MAX_PORT=25000"), "{env}");
    assert!(has("EXTRA=1"), "{env}");
    let socket_dir = env.lines().find_map(|l| l.strip_prefix("PLUGIN_UNIX_SOCKET_DIR=")).expect("socket dir set");
    assert!(!std::path::Path::new(socket_dir).exists(), "removed after a failed launch");
    assert!(!env.contains("PLUGIN_MULTIPLEX_GRPC"), "never offered: no yamux broker");
}

#[tokio::test]
async fn a_missing_or_non_executable_file_is_explained() {
    let err = PluginProcess::launch(LaunchConfig::new("x", "/nonexistent/plugin", HANDSHAKE)).await.unwrap_err();
    assert!(err.to_string().starts_with("cannot start plugin /nonexistent/plugin: "), "{err}");
    assert!(err.to_string().contains("no such file"), "{err}");

    let dir = TestDir::new();
    let path = dir.path().join("not-executable");
    std::fs::write(&path, "#!/bin/sh\n").unwrap();
    let err = PluginProcess::launch(LaunchConfig::new("x", &path, HANDSHAKE)).await.unwrap_err();
    assert!(err.to_string().contains("permission denied"), "{err}");
}

#[tokio::test]
async fn a_plugin_that_holds_its_pipes_through_a_grandchild_is_still_seen_exiting() {
    // go-plugin waits for pipe EOF before it notices an exit; we wait on the process.
    let dir = TestDir::new();
    let script = dir.add_script("forker", "sleep 30 & exit 4");
    let mut cfg = LaunchConfig::new("forker", script, HANDSHAKE);
    cfg.start_timeout = DEADLINE;
    let started = std::time::Instant::now();
    let err = PluginProcess::launch(cfg).await.unwrap_err();
    assert!(err.to_string().contains("plugin exited before we could connect (exit status 4)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "exit noticed without waiting for the grandchild");
}

#[tokio::test]
async fn stderr_is_kept_for_diagnostics() {
    let dir = TestDir::new();
    let script = dir.add_script("crash", "echo '{\"@level\":\"error\",\"@message\":\"config missing\",\"@timestamp\":\"2026-11-22T09:32:02.529743Z\"}' >&2; exit 2");
    let err = PluginProcess::launch(LaunchConfig::new("crash", script, HANDSHAKE)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("plugin exited before we could connect (exit status 2)"), "{text}");
    assert!(text.contains("config missing"), "{text}");
}
