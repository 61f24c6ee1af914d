//! `plugboard plugin check`: a conformance checker for plugin authors.
//!
//! It launches the executable the way the host does (same environment,
//! handshake, private socket directory, AutoMTLS, health check) and reports
//! item by item what the plugin gets right and wrong, with a one-line fix for
//! every problem. Required items fail the check; optional go-plugin services
//! (stdio, controller) only warn.

mod kinds;
mod logging;
mod raw;
mod report;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use plugboard_proto::goplugin::{self, PluginAddress};
use plugboard_proto::handshake::HANDSHAKE;
use plugboard_proto::plugboard::v1::{DescribeRequest, PluginKind, plugin_client::PluginClient};
use plugboard_proto::plugin::{
    Empty, grpc_controller_client::GrpcControllerClient, grpc_stdio_client::GrpcStdioClient,
};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::launcher::{LaunchConfig, LaunchError, PluginProcess};
use crate::plugin::{ConfigSchema, Described, validate_info};

pub use report::{Item, Outcome, Report};

/// What to check and how patiently.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub path: PathBuf,
    /// The instance config the plugin's schema must accept.
    pub config: serde_json::Value,
    /// Which kind to exercise; default: the first the plugin declares.
    pub kind: Option<PluginKind>,
    /// Start-up, the first event, a command's result.
    pub timeout: Duration,
    /// How long the plugin may take to exit after `Shutdown` (go-plugin: 2 s).
    pub kill_grace: Duration,
}

impl CheckOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            config: serde_json::json!({}),
            kind: None,
            timeout: Duration::from_secs(10),
            kill_grace: Duration::from_secs(2),
        }
    }
}

/// Events read from a source before the stream item passes.
const EVENTS_TO_READ: usize = 3;

/// Runs every check; never panics on anything the plugin does.
pub async fn check(options: &CheckOptions) -> Report {
    let mut report = Report { path: options.path.display().to_string(), ..Default::default() };
    raw::check_cookie(options, &mut report).await;
    raw::check_version_negotiation(options, &mut report).await;

    let Some(process) = launch(options, &mut report).await else {
        report.skip(
            &[
                "health",
                "describe",
                "config schema",
                "kind",
                "stdio",
                "controller",
                "shutdown",
                "stdout after handshake",
                "logging",
            ],
            "the plugin did not start",
        );
        return report;
    };
    check_socket(&process, &mut report);
    let healthy = check_health(&process, options.timeout, &mut report).await;
    if healthy && let Some(described) = check_describe(&process, options, &mut report).await {
        kinds::check_kind(&process, &described, options, &mut report).await;
    } else if !healthy {
        report.skip(&["describe", "config schema", "kind"], "the plugin is not healthy");
    }
    check_stdio(&process, options.timeout, &mut report).await;
    check_shutdown(&process, options, &mut report).await;
    check_stdout(&process, &mut report).await;
    logging::check_logging(&process, &mut report);
    report
}

fn launch_config(options: &CheckOptions, auto_mtls: bool) -> LaunchConfig {
    let name = options.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut cfg = LaunchConfig::new(name, &options.path, HANDSHAKE);
    cfg.start_timeout = options.timeout;
    cfg.kill_grace = options.kill_grace;
    cfg.auto_mtls = auto_mtls;
    cfg
}

/// Launches as the host does, AutoMTLS first; items handshake, socket, automtls.
async fn launch(options: &CheckOptions, report: &mut Report) -> Option<PluginProcess> {
    let result = match PluginProcess::launch(launch_config(options, true)).await {
        Err(LaunchError::Tls { reason, .. }) => {
            report.warn(
                "automtls",
                reason,
                "when PLUGIN_CLIENT_CERT is set, serve TLS that accepts only that certificate and print yours \
                 (DER, unpadded base64) in field 6; until then set `automtls: false` for this plugin",
            );
            PluginProcess::launch(launch_config(options, false)).await
        }
        other => {
            if other.is_ok() {
                report.pass("automtls", "TLS with the certificate from field 6, client certificate required");
            }
            other
        }
    };
    match result {
        Ok(process) => {
            report.pass("handshake", handshake_summary(process.handshake_text()));
            Some(process)
        }
        Err(e) => {
            let (item, hint) = match &e {
                LaunchError::Address { .. } => (
                    "socket",
                    "listen on a Unix socket inside PLUGIN_UNIX_SOCKET_DIR (or loopback TCP), and print that address",
                ),
                LaunchError::Unhealthy { .. } => {
                    ("health", "serve grpc.health.v1.Health with service \"plugin\" SERVING")
                }
                LaunchError::Tls { .. } => ("automtls", "serve TLS with the certificate you print in field 6"),
                LaunchError::Spawn { .. } => {
                    ("handshake", "make the file executable, with a valid #! line for scripts")
                }
                _ => (
                    "handshake",
                    "with the cookie set, listen, then print exactly one line 1|1|unix|SOCKET|grpc| on stdout, first",
                ),
            };
            if report.outcome("automtls").is_none() {
                report.skip(&["automtls"], "the plugin did not start");
            }
            if item != "handshake" {
                report.pass("handshake", "a well-formed handshake line");
            }
            report.fail(item, e.to_string(), hint);
            None
        }
    }
}

/// The line with a long certificate field shortened.
fn handshake_summary(line: &str) -> String {
    let mut fields: Vec<String> = line.split('|').map(str::to_owned).collect();
    if let Some(cert) = fields.get_mut(5)
        && cert.len() > 24
    {
        *cert = format!("{}...({} base64 characters)", &cert[..16], cert.len());
    }
    format!("{:?}", fields.join("|"))
}

fn check_socket(process: &PluginProcess, report: &mut Report) {
    const ITEM: &str = "socket";
    match &process.handshake().address {
        PluginAddress::Tcp(addr) => report.warn(
            ITEM,
            format!("loopback TCP {addr}: any local user can connect"),
            "prefer a Unix socket in PLUGIN_UNIX_SOCKET_DIR (private to the host's user)",
        ),
        PluginAddress::Unix(path) => {
            let meta = std::fs::metadata(path);
            let dir_mode =
                path.parent().and_then(|d| std::fs::metadata(d).ok()).map(|m| m.permissions().mode() & 0o777);
            match meta {
                Ok(m)
                    if m.file_type().is_socket()
                        && m.uid() == nix::unistd::getuid().as_raw()
                        && dir_mode == Some(0o700) =>
                {
                    report.pass(
                        ITEM,
                        format!(
                            "Unix socket {} in the private per-launch directory (mode {:o})",
                            path.display(),
                            dir_mode.unwrap_or_default()
                        ),
                    )
                }
                Ok(m) if m.file_type().is_socket() => report.fail(
                    ITEM,
                    format!(
                        "{} is in a directory of mode {:o}, not the private 0700 one",
                        path.display(),
                        dir_mode.unwrap_or_default()
                    ),
                    "bind the socket in PLUGIN_UNIX_SOCKET_DIR",
                ),
                Ok(_) => report.fail(ITEM, format!("{} is not a socket", path.display()), "bind the socket yourself"),
                Err(e) => report.fail(ITEM, format!("{}: {e}", path.display()), "keep the socket until you exit"),
            }
        }
    }
}

async fn check_health(process: &PluginProcess, timeout: Duration, report: &mut Report) -> bool {
    const ITEM: &str = "health";
    const HINT: &str = "serve grpc.health.v1.Health and set service \"plugin\" to SERVING";
    let mut health = HealthClient::new(process.channel());
    let request = HealthCheckRequest { service: goplugin::HEALTH_SERVICE.to_owned() };
    match tokio::time::timeout(timeout, health.check(request)).await {
        Ok(Ok(resp)) if resp.get_ref().status == ServingStatus::Serving as i32 => {
            report.pass(ITEM, "grpc.health.v1.Health: \"plugin\" is SERVING");
            true
        }
        Ok(Ok(resp)) => {
            report.fail(ITEM, format!("\"plugin\" is {:?}", resp.get_ref().status()), HINT);
            false
        }
        Ok(Err(status)) => {
            report.fail(ITEM, format!("Health/Check failed: {:?} {}", status.code(), status.message()), HINT);
            false
        }
        Err(_) => {
            report.fail(ITEM, format!("Health/Check did not answer within {timeout:?}"), HINT);
            false
        }
    }
}

async fn check_describe(process: &PluginProcess, options: &CheckOptions, report: &mut Report) -> Option<Described> {
    let mut client = PluginClient::new(process.channel());
    let info = match tokio::time::timeout(options.timeout, client.describe(DescribeRequest {})).await {
        Ok(Ok(resp)) => resp.into_inner(),
        Ok(Err(status)) => {
            report.fail(
                "describe",
                format!("Describe failed: {:?} {}", status.code(), status.message()),
                "serve plugboard.v1.Plugin/Describe",
            );
            report.skip(&["config schema", "kind"], "no description");
            return None;
        }
        Err(_) => {
            report.fail(
                "describe",
                format!("Describe did not answer within {:?}", options.timeout),
                "answer Describe at once",
            );
            report.skip(&["config schema", "kind"], "no description");
            return None;
        }
    };
    // The schema is its own item: check the rest without it first.
    let schema_text = info.config_schema.clone();
    let mut without_schema = info.clone();
    without_schema.config_schema.clear();
    let described = match validate_info(without_schema) {
        Ok(d) => d,
        Err(e) => {
            report.fail(
                "describe",
                e.to_string(),
                "name: lower-case; version: semver (1.2.3); kinds: SOURCE/EXECUTOR/SINK; executors: command prefixes",
            );
            report.skip(&["config schema", "kind"], "the description is invalid");
            return None;
        }
    };
    let prefixes = if described.info.command_prefixes.is_empty() {
        String::new()
    } else {
        format!(", prefixes {}", described.info.command_prefixes.join(", "))
    };
    report.pass(
        "describe",
        format!("{} {} ({}{prefixes})", described.info.name, described.info.version, described.kinds_text()),
    );
    let schema = match ConfigSchema::compile(&schema_text) {
        Ok(schema) => schema,
        Err(e) => {
            report.fail("config schema", e.to_string(), "config_schema must be a JSON Schema document as JSON text");
            return None;
        }
    };
    match schema.validate(&options.config) {
        Ok(()) => report.pass(
            "config schema",
            if schema_text.trim().is_empty() {
                "no schema: any config is accepted".to_owned()
            } else {
                format!("a valid JSON Schema that accepts {}", options.config)
            },
        ),
        Err(errors) => {
            report.fail(
                "config schema",
                format!("rejects the config {}: {}", options.config, errors.join("; ")),
                "pass the config your plugin needs with --config JSON, or make the schema accept it",
            );
            return None;
        }
    }
    Some(Described { schema, ..described })
}

async fn check_stdio(process: &PluginProcess, timeout: Duration, report: &mut Report) {
    const ITEM: &str = "stdio";
    let mut client = GrpcStdioClient::new(process.channel());
    match tokio::time::timeout(timeout.min(Duration::from_secs(3)), client.stream_stdio(())).await {
        // The launcher already holds the one StreamStdio call; a plugin that
        // refuses a second one still serves it.
        Ok(Ok(_)) => report.pass(ITEM, "plugin.GRPCStdio is served"),
        Ok(Err(s)) if s.code() == tonic::Code::FailedPrecondition => report.pass(ITEM, "plugin.GRPCStdio is served"),
        Ok(Err(s)) => report.warn(
            ITEM,
            format!("plugin.GRPCStdio/StreamStdio: {:?} {}", s.code(), s.message()),
            "serve plugin.GRPCStdio (it may send nothing and hold the stream) so hosts log no warning",
        ),
        Err(_) => report.warn(
            ITEM,
            "StreamStdio sent no response headers",
            "send the response headers at once (grpcio: context.send_initial_metadata(())), then hold the stream",
        ),
    }
}

async fn check_shutdown(process: &PluginProcess, options: &CheckOptions, report: &mut Report) {
    let mut controller = GrpcControllerClient::new(process.channel());
    let asked = Instant::now();
    let answer = tokio::time::timeout(options.kill_grace, controller.shutdown(Empty {})).await;
    let exited = tokio::time::timeout(options.kill_grace, process.wait()).await.ok();
    let unimplemented = matches!(&answer, Ok(Err(s)) if s.code() == tonic::Code::Unimplemented);
    match (&answer, &exited) {
        (Ok(Ok(_)), _) => report.pass("controller", "plugin.GRPCController/Shutdown answered"),
        // go-plugin 1.0.1 stops its server before the answer is written.
        (Ok(Err(_)), Some(_)) if !unimplemented => {
            report.pass("controller", "plugin.GRPCController/Shutdown stopped the plugin before it answered")
        }
        (Ok(Err(s)), _) => report.warn(
            "controller",
            format!("plugin.GRPCController/Shutdown: {:?} {}", s.code(), s.message()),
            "serve plugin.GRPCController: on Shutdown stop serving and exit 0",
        ),
        (Err(_), _) => report.warn("controller", "Shutdown did not answer", "answer Shutdown at once, then stop"),
    }
    match exited {
        Some(exit) if exit.success() => {
            report.pass("shutdown", format!("exited ({exit}) {:?} after Shutdown", asked.elapsed()))
        }
        Some(exit) => {
            report.warn("shutdown", format!("exited with {exit} after Shutdown"), "exit 0 after a requested Shutdown")
        }
        None if !unimplemented => {
            process.kill();
            report.fail(
                "shutdown",
                format!("still running {:?} after Shutdown: hosts kill it", options.kill_grace),
                "on Shutdown stop the gRPC server, end open streams and exit within the grace period",
            );
        }
        None => {
            process.kill();
            report.warn(
                "shutdown",
                format!("no controller, so it was killed after {:?}", options.kill_grace),
                "serve plugin.GRPCController/Shutdown",
            );
        }
    }
    process.shutdown().await;
}

async fn check_stdout(process: &PluginProcess, report: &mut Report) {
    const ITEM: &str = "stdout after handshake";
    // The drain task sees EOF shortly after the exit.
    tokio::time::sleep(Duration::from_millis(50)).await;
    match process.stdout_bytes_after_handshake() {
        0 => report.pass(ITEM, "nothing written to stdout after the handshake line"),
        n => report.fail(
            ITEM,
            format!("{n} bytes written to stdout after the handshake line; go-plugin hosts drop them unread"),
            "log to stderr (hclog JSON lines); stdout carries only the handshake line",
        ),
    }
}
