//! go-plugin's security features on real processes: AutoMTLS between the
//! host's launcher and SDK plugins, checksum pinning, handshake hardening;
//! and gRPC reflection over the plugin's socket.

use std::time::Duration;

use plugboard_host::launcher::{self, LaunchConfig, LaunchError, PluginProcess, Sha256};
use plugboard_proto::goplugin::PluginAddress;
use plugboard_proto::handshake::HANDSHAKE;
use plugboard_tests::*;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

fn echo(auto_mtls: bool) -> LaunchConfig {
    let mut cfg = LaunchConfig::new("echo", bin("plugboard-echo"), HANDSHAKE);
    cfg.start_timeout = DEADLINE;
    cfg.auto_mtls = auto_mtls;
    cfg
}

async fn health_over(channel: tonic::transport::Channel) -> Result<(), String> {
    let mut health = HealthClient::new(channel);
    let request = HealthCheckRequest { service: "plugin".into() };
    match tokio::time::timeout(Duration::from_secs(10), health.check(request)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(status)) => Err(status.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

#[tokio::test]
async fn automtls_pins_both_certificates_and_refuses_strangers() {
    let plugin = PluginProcess::launch(echo(true)).await.expect("launch with AutoMTLS");
    let cert = plugin.handshake().server_cert.clone().expect("field 6 carries the plugin certificate");
    plugin.ping(Duration::from_secs(5)).await.expect("healthy over TLS");
    let address = plugin.handshake().address.clone();

    // Another local process speaking plaintext gets nothing.
    let plain = launcher::connect_channel(&address, Duration::from_secs(5), None).await;
    if let Ok(channel) = plain {
        let err = health_over(channel).await.expect_err("plaintext must be refused");
        assert!(!err.is_empty());
    }
    // Nor does one with TLS and the right server pin but its own client certificate.
    let stranger = launcher::tls::HostIdentity::generate().unwrap();
    let tls = stranger.client_config(cert.clone()).unwrap();
    let refused = match launcher::connect_channel(&address, Duration::from_secs(5), Some(tls)).await {
        Ok(channel) => health_over(channel).await.is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client certificate other than PLUGIN_CLIENT_CERT must be refused");
    assert_eq!(plugin.shutdown().await.code(), Some(0));
}

#[tokio::test]
async fn without_automtls_the_handshake_has_no_certificate() {
    let plugin = PluginProcess::launch(echo(false)).await.expect("launch plaintext");
    assert_eq!(plugin.handshake().server_cert, None);
    assert!(plugin.handshake_text().ends_with("|grpc|"), "{}", plugin.handshake_text());
    plugin.ping(Duration::from_secs(5)).await.expect("healthy");
    plugin.shutdown().await;
}

#[tokio::test]
async fn a_plugin_that_ignores_automtls_is_refused_with_a_hint() {
    let dir = TestDir::new();
    let script = dir.add_script("plain", r#"echo "1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/p.sock|grpc|"; exec sleep 30"#);
    let mut cfg = LaunchConfig::new("plain", script, HANDSHAKE);
    cfg.auto_mtls = true;
    let err = PluginProcess::launch(cfg).await.unwrap_err();
    assert!(matches!(err, LaunchError::Tls { .. }), "{err}");
    assert!(err.to_string().contains("printed no certificate in field 6"), "{err}");
    assert!(err.to_string().contains("turn automtls off for this plugin"), "{err}");
}

#[tokio::test]
async fn handshake_addresses_outside_the_socket_dir_or_off_loopback_are_refused() {
    let dir = TestDir::new();
    let outside = dir.add_script("outside", "echo '1|1|unix|/tmp/someone-elses.sock|grpc|'; exec sleep 30");
    let err = PluginProcess::launch(LaunchConfig::new("outside", outside, HANDSHAKE)).await.unwrap_err();
    assert!(matches!(err, LaunchError::Address { .. }), "{err}");
    assert!(err.to_string().contains("/tmp/someone-elses.sock"), "{err}");
    assert!(err.to_string().contains("not inside its private socket directory"), "{err}");

    // Refused before any connection is attempted.
    let remote = dir.add_script("remote", "echo '1|1|tcp|10.1.2.3:1234|grpc|'; exec sleep 30");
    let err = PluginProcess::launch(LaunchConfig::new("remote", remote, HANDSHAKE)).await.unwrap_err();
    assert!(err.to_string().contains("TCP address 10.1.2.3:1234, which is not loopback"), "{err}");
}

fn sha256_of(path: &std::path::Path) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_owned()
}

#[tokio::test]
async fn a_pinned_binary_runs_from_the_file_that_was_hashed() {
    let path = bin("plugboard-echo");
    let mut cfg = echo(true);
    cfg.sha256 = Some(Sha256::from_hex(&sha256_of(&path)).unwrap());
    let plugin = PluginProcess::launch(cfg).await.expect("the right digest runs");
    let pid = plugin.pid();
    // argv[0] is still the real path, and the process runs that binary.
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let arg0 = cmdline.split(|b| *b == 0).next().unwrap();
    assert_eq!(arg0, path.as_os_str().as_encoded_bytes());
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), path.canonicalize().unwrap());
    plugin.shutdown().await;
}

#[test]
fn the_host_refuses_a_binary_whose_checksum_differs() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let wrong = "0".repeat(64);
    let config = dir.write_config(&format!(
        "plugins:\n  plugboard-echo: {{ sha256: {wrong} }}\nexecutors:\n  - name: echo\n    plugin: echo\n"
    ));
    let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "echo", "hi"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(stderr.contains("does not match its pinned checksum"), "{stderr}");
    assert!(stderr.contains(&format!("expected sha256 {wrong}")), "{stderr}");
    assert!(stderr.contains(&sha256_of(&bin("plugboard-echo"))), "names the actual digest: {stderr}");

    let right = sha256_of(&bin("plugboard-echo"));
    let config = dir.write_config(&format!(
        "plugins:\n  plugboard-echo: {{ sha256: {right}, automtls: false }}\nexecutors:\n  - name: echo\n    plugin: echo\n"
    ));
    let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "echo", "hi"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_plugins_entry_naming_no_executable_is_a_config_error() {
    let dir = TestDir::new();
    dir.add_plugin("echo");
    let config = dir.write_config("plugins:\n  plugboard-ecko: { automtls: false }\n");
    let out = plugboard().arg("exec").arg("--config").arg(&config).args(["--", "echo", "hi"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("plugins.plugboard-ecko: no executable named \"plugboard-ecko\""), "{stderr}");
}

#[tokio::test]
async fn reflection_lists_the_services_of_a_running_sdk_plugin() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let plugin = PluginProcess::launch(echo(true)).await.expect("launch");
    let mut client = ServerReflectionClient::new(plugin.channel());
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses =
        client.server_reflection_info(tokio_stream::iter([request])).await.expect("reflection call").into_inner();
    let response = responses.message().await.expect("a response").expect("not empty");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in ["plugboard.v1.Plugin", "plugboard.v1.Executor", "grpc.health.v1.Health", "plugin.GRPCController"] {
        assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
    }
    match &plugin.handshake().address {
        PluginAddress::Unix(path) => assert!(path.exists()),
        other => panic!("{other}"),
    }
    plugin.shutdown().await;
}
