//! Serving any tonic service as a hashicorp/go-plugin plugin.
//!
//! This module knows nothing about plugboard: give it a [`HandshakeConfig`]
//! and tonic [`Routes`] and it behaves like go-plugin's `plugin.Serve` — so a
//! Go host built on go-plugin can run a Rust plugin, and plugboard's own
//! [`crate::Plugin`] is a thin layer on top.

mod lazy;
mod listener;
mod services;
mod stdout;
mod tls;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

pub use plugboard_proto::goplugin::HandshakeConfig;
use plugboard_proto::goplugin::{
    self, CORE_PROTOCOL_VERSION, HEALTH_SERVICE, HandshakeLine, NOT_A_PLUGIN_MESSAGE, PluginAddress,
};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;

/// How the plugin serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// After `Shutdown` or SIGTERM, how long in-flight calls may finish before
    /// the server stops hard (go-plugin hosts kill after 2 s).
    pub shutdown_grace: Duration,
    /// Encoded `FileDescriptorSet`s served by gRPC reflection (v1 and v1alpha),
    /// so grpcurl can list and call the plugin.
    pub reflection: Vec<&'static [u8]>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self { shutdown_grace: Duration::from_millis(500), reflection: Vec::new() }
    }
}

/// Why serving failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen: {0}")]
    Listen(String),
    #[error("gRPC server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error("cannot write the handshake line to stdout: {0}")]
    Handshake(std::io::Error),
    #[error("AutoMTLS: {0}")]
    Tls(String),
}

/// Cancelled when the plugin is asked to stop (`Shutdown` or SIGTERM).
/// Long-lived streams end when it fires, so the server stops promptly.
pub fn shutdown_signal() -> CancellationToken {
    static SHUTDOWN: std::sync::OnceLock<CancellationToken> = std::sync::OnceLock::new();
    SHUTDOWN.get_or_init(CancellationToken::new).clone()
}

/// Exits with go-plugin's message and status 1 unless the host set the magic
/// cookie, i.e. when someone runs the plugin binary by hand.
pub fn check_cookie_or_exit(handshake: &HandshakeConfig) {
    if std::env::var(handshake.magic_cookie_key).as_deref() != Ok(handshake.magic_cookie_value) {
        let _ = std::io::stderr().write_all(NOT_A_PLUGIN_MESSAGE.as_bytes());
        std::process::exit(1);
    }
}

/// The plugin's runtime: two workers are plenty for a plugin and start fast.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap_or_else(|e| {
        eprintln!("cannot start the async runtime: {e}");
        std::process::exit(1)
    })
}

/// Checks the cookie, serves `routes` until the host shuts the plugin down,
/// then exits the process (0 on a clean stop, 1 on failure).
pub fn serve(handshake: HandshakeConfig, routes: Routes, options: ServeOptions) -> ! {
    check_cookie_or_exit(&handshake);
    let rt = runtime();
    let result = rt.block_on(serve_async(handshake, routes, options));
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!(error = %e, "plugin failed");
            1
        }
    };
    // Do not wait for tasks blocked on a host that is gone.
    rt.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code)
}

/// Serves `routes` plus go-plugin's internal services on a fresh Unix socket,
/// prints the handshake line and returns once shut down. The caller checks the
/// cookie first.
pub async fn serve_async(handshake: HandshakeConfig, routes: Routes, options: ServeOptions) -> Result<(), ServeError> {
    let app_version = goplugin::negotiate_version(
        std::env::var(goplugin::env::PLUGIN_PROTOCOL_VERSIONS).ok().as_deref(),
        handshake.app_protocol_versions,
    );
    // AutoMTLS when the host sent its certificate.
    let tls = tls::from_env().map_err(ServeError::Tls)?;
    let socket = listener::bind().map_err(|e| ServeError::Listen(e.to_string()))?;
    let shutdown = shutdown_signal();
    spawn_signal_handlers(shutdown.clone());

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving).await;
    let stdio = services::StdioService::new(shutdown.clone());
    let stdio_feed = stdio.feed();

    let mut router = Server::builder()
        .add_routes(routes)
        .add_service(health)
        .add_service(services::controller(shutdown.clone()))
        .add_service(stdio.into_server())
        .add_service(services::broker(shutdown.clone()));
    if !options.reflection.is_empty() {
        let sets: Arc<[&'static [u8]]> = options.reflection.clone().into();
        let v1_sets = Arc::clone(&sets);
        router = router
            .add_service(lazy::Lazy::new(move || reflection(&v1_sets).build_v1().ok()))
            .add_service(lazy::Lazy::new(move || reflection(&sets).build_v1alpha().ok()));
    }

    let (tls_config, server_cert) = match tls {
        Some(t) => (Some(t.config), Some(t.cert_der)),
        None => (None, None),
    };
    let incoming = tls::incoming(socket.listener, tls_config);
    let server = router.serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned());
    tokio::pin!(server);

    // The socket is bound and accepting (connections queue in the backlog),
    // so the host may connect as soon as it reads the line.
    let line = HandshakeLine {
        core_version: CORE_PROTOCOL_VERSION,
        app_version,
        address: PluginAddress::Unix(socket.path.clone()),
        protocol: "grpc".to_owned(),
        server_cert,
    };
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line.format()).map_err(ServeError::Handshake)?;
        out.flush().map_err(ServeError::Handshake)?;
    }
    // From here on, anything written to stdout goes to the host over GRPCStdio.
    if let Err(e) = stdout::capture(stdio_feed) {
        tracing::warn!(error = %e, "cannot capture stdout; output written to stdout is lost");
    }
    tracing::debug!(address = %socket.path.display(), network = "unix", "plugin address");

    let result = tokio::select! {
        r = &mut server => r.map_err(ServeError::from),
        _ = async {
            shutdown.cancelled().await;
            tokio::time::sleep(options.shutdown_grace).await;
        } => Ok(()),
    };
    drop(socket.cleanup);
    result
}

fn reflection(sets: &[&'static [u8]]) -> tonic_reflection::server::Builder<'static> {
    sets.iter().fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, fds| builder.register_encoded_file_descriptor_set(fds),
    )
}

/// go-plugin plugins ignore SIGINT (a Ctrl-C in the host's terminal reaches
/// the whole process group; the host decides) and stop on SIGTERM.
fn spawn_signal_handlers(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            term.recv().await;
            tracing::debug!("SIGTERM: shutting down");
            shutdown.cancel();
        });
    }
    if let Ok(mut int) = signal(SignalKind::interrupt()) {
        tokio::spawn(async move {
            while int.recv().await.is_some() {
                tracing::trace!("ignoring SIGINT");
            }
        });
    }
}
