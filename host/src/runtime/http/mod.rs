//! The host's one HTTP server (axum). Components contribute routers; this
//! module owns listening, body limits, bearer-token checks and the JSON error
//! shape, so every endpoint answers alike.
//!
//! Endpoints: [`events`] (`POST /v1/events`), [`sources`]
//! (`/v1/sources/{instance}`), [`stats`] (`GET /v1/stats`), [`metrics`]
//! (`GET /metrics`), `/healthz` (process alive) and [`ready`] (`GET /readyz`).

pub mod binding;
pub mod events;
pub mod listener;
pub mod metrics;
pub mod plugins;
pub mod ready;
pub mod sources;
pub mod stats;

pub use ready::Readiness;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::net::SocketAddr;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8787";

/// `http:` in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on; port 0 picks a free port (logged at start).
    pub listen: SocketAddr,
    /// Bearer token required on API endpoints. Required whenever `listen`
    /// is not a loopback address.
    pub token: Option<String>,
    /// Bearer token for `POST /v1/events` only (default: `token`).
    pub events_token: Option<String>,
    /// Largest request body accepted, in bytes (413 beyond).
    pub body_limit: usize,
    /// Set false to run without an HTTP server.
    pub enabled: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8787))),
            token: None,
            events_token: None,
            body_limit: 1024 * 1024,
            enabled: true,
        }
    }
}

impl HttpConfig {
    /// Problems with this section (reported with the rest of the config).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled && !self.listen.ip().is_loopback() && self.token.as_deref().unwrap_or_default().is_empty() {
            problems.push(format!(
                "http.listen {} is not a loopback address: set http.token so the API is not open to the network",
                self.listen
            ));
        }
        if self.body_limit == 0 {
            problems.push("http.body_limit must be greater than zero".into());
        }
        problems
    }
}

/// The JSON error every endpoint returns: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token")
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

/// Checks `Authorization: Bearer <token>` in constant time; `None` means no token is required.
pub fn check_bearer(headers: &HeaderMap, expected: Option<&str>) -> Result<(), ApiError> {
    let Some(expected) = expected.filter(|t| !t.is_empty()) else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if given.as_bytes().ct_eq(expected.as_bytes()).into() { Ok(()) } else { Err(ApiError::unauthorized()) }
}

/// A bearer token a reload can change: read per request. Cheap to clone
/// (clones share the value).
#[derive(Debug, Clone, Default)]
pub struct LiveToken(std::sync::Arc<std::sync::RwLock<Option<std::sync::Arc<str>>>>);

impl LiveToken {
    /// The token required now (none or empty: no check).
    pub fn get(&self) -> Option<std::sync::Arc<str>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the token; requests checked from now on need the new one.
    pub fn set(&self, token: Option<String>) {
        let token = token.filter(|t| !t.is_empty()).map(std::sync::Arc::from);
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = token;
    }
}

impl From<Option<String>> for LiveToken {
    fn from(token: Option<String>) -> Self {
        let live = Self::default();
        live.set(token);
        live
    }
}

/// The body limit layer answers 413 on its own (plain text) when
/// Content-Length is too large: answer in the API's JSON error shape instead.
async fn json_payload_too_large(response: Response) -> Response {
    let is_json =
        response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return events::payload_too_large().into_response();
    }
    response
}

/// Routes every host has: liveness.
pub fn base_router() -> Router {
    Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }))
}

/// Binds `config.listen` and serves `router` until `shutdown`; returns the
/// bound address (useful with port 0). `readiness` knows while it serves.
pub async fn serve(
    config: &HttpConfig,
    router: Router,
    shutdown: CancellationToken,
    readiness: &Readiness,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let router = router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(tower_http::limit::RequestBodyLimitLayer::new(config.body_limit))
        .layer(axum::middleware::map_response(json_payload_too_large));
    let readiness = readiness.clone();
    readiness.set_listening(true);
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await;
        readiness.set_listening(false);
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server failed");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        let mut headers = HeaderMap::new();
        assert!(check_bearer(&headers, None).is_ok());
        assert!(check_bearer(&headers, Some("s3cret")).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(check_bearer(&headers, Some("s3cret")).unwrap_err().status, StatusCode::UNAUTHORIZED);
        headers.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(check_bearer(&headers, Some("s3cret")).is_ok());
    }

    #[test]
    fn a_public_listener_needs_a_token() {
        let config = HttpConfig { listen: "0.0.0.0:80".parse().unwrap(), ..HttpConfig::default() };
        assert_eq!(config.problems().len(), 1);
        let config = HttpConfig { token: Some("t".into()), ..config };
        assert!(config.problems().is_empty());
    }
}
