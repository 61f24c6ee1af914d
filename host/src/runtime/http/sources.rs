//! `/v1/sources/{instance}` (and anything below it): forwards the request —
//! method, path, query, headers, body — to that source plugin's
//! `HandleExternalRequest`, stores the events it returns, and only then
//! replies with the plugin's status, headers and body (BotKube's incoming
//! webhook, acknowledged after storage).
//!
//! The plugin needs the request's credentials to check them (bearer tokens,
//! HMAC signatures), so they are forwarded; but their values never reach the
//! store: any occurrence in the returned events is redacted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use plugboard_proto::CloudEvent;
use plugboard_proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_proto::io::cloudevents::v1::cloud_event::cloud_event_attribute_value::Attr;
use plugboard_proto::plugboard::v1::ExternalRequest;

use super::events::read_body;
use super::{ApiError, check_bearer};
use crate::runtime::pipeline::{IngestError, Ingress};
use crate::runtime::sources::ClientSlot;

/// How long a source plugin may take to answer a forwarded request.
const HANDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// What replaces a credential found in an event.
pub const REDACTED: &str = "[REDACTED]";

/// One source instance reachable over HTTP.
pub struct SourceEndpoint {
    pub name: Arc<str>,
    pub plugin: String,
    pub config: serde_json::Value,
    /// Bearer token required (the source's `http_token`, else `http.token`).
    pub token: Option<String>,
    pub client: ClientSlot,
}

/// The source instances reachable now, by name: replaced whole by a
/// reload (a source it adds is reachable, one it removes answers 404).
/// Cheap to clone (clones share the map).
#[derive(Clone, Default)]
pub struct SourceMap(Arc<std::sync::RwLock<Arc<Endpoints>>>);

/// Source endpoints by instance name.
type Endpoints = HashMap<String, Arc<SourceEndpoint>>;

impl SourceMap {
    pub fn new(sources: HashMap<String, SourceEndpoint>) -> Self {
        let map = Self::default();
        map.set(sources);
        map
    }

    /// The map requests look up from now on.
    pub fn set(&self, sources: HashMap<String, SourceEndpoint>) {
        let sources = Arc::new(sources.into_iter().map(|(k, v)| (k, Arc::new(v))).collect());
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = sources;
    }

    fn snapshot(&self) -> Arc<Endpoints> {
        Arc::clone(&self.0.read().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct SourcesEndpoint {
    pub sources: SourceMap,
    pub ingress: Ingress,
}

pub fn router(endpoint: SourcesEndpoint) -> Router {
    let state = Arc::new(endpoint);
    Router::new()
        .route("/v1/sources/{instance}", axum::routing::any(forward))
        .route("/v1/sources/{instance}/{*rest}", axum::routing::any(forward_below))
        .with_state(state)
}

async fn forward(
    State(endpoint): State<Arc<SourcesEndpoint>>,
    Path(instance): Path<String>,
    request: Request,
) -> Response {
    handle(&endpoint, &instance, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn forward_below(
    State(endpoint): State<Arc<SourcesEndpoint>>,
    Path((instance, _rest)): Path<(String, String)>,
    request: Request,
) -> Response {
    handle(&endpoint, &instance, request).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(endpoint: &SourcesEndpoint, instance: &str, request: Request) -> Result<Response, ApiError> {
    let sources = endpoint.sources.snapshot();
    let Some(source) = sources.get(instance).cloned() else {
        let mut known: Vec<&str> = sources.keys().map(String::as_str).collect();
        known.sort_unstable();
        return Err(ApiError::not_found(format!(
            "no source instance {instance:?}; sources: {}",
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )));
    };
    let (parts, body) = request.into_parts();
    check_bearer(&parts.headers, source.token.as_deref())?;
    let body = read_body(body).await?;
    let client = source.client.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(mut client) = client else {
        return Err(ApiError::unavailable(format!(
            "source {instance:?} is not running (starting or restarting); try again"
        )));
    };
    let headers = forwarded_headers(&parts.headers);
    let secrets = secret_values(&parts.headers);
    let request = ExternalRequest {
        instance: instance.to_owned(),
        config: serde_json::to_vec(&source.config).unwrap_or_default(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers,
        body: body.to_vec(),
    };
    let response = match tokio::time::timeout(HANDLE_TIMEOUT, client.handle_external_request(request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(status)) => return Err(status_error(instance, &source.plugin, &status)),
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("source {instance:?} did not answer within {HANDLE_TIMEOUT:?}"),
            ));
        }
    };
    let mut events = response.events;
    for event in &mut events {
        if let Some(header) = redact(event, &secrets) {
            tracing::warn!(source = %instance, instance = %instance, plugin = %source.plugin, id = %event.id, "the event carried the value of the {header} header; redacted it");
        }
    }
    if !events.is_empty() {
        match endpoint.ingress.ingest(&source.name, events).await {
            Ok(report) => {
                tracing::debug!(source = %instance, instance = %instance, plugin = %source.plugin, stored = report.stored, duplicates = report.duplicates, "stored events from a forwarded request");
            }
            Err(e @ IngestError::Invalid { .. }) => {
                return Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "invalid_event",
                    format!("source {instance:?} returned an invalid event, nothing was stored: {e}"),
                ));
            }
            Err(IngestError::Store(e)) => return Err(ApiError::unavailable(format!("events not stored: {e}"))),
        }
    }
    let status = match response.status {
        0 => StatusCode::OK,
        code => StatusCode::from_u16(u16::try_from(code).unwrap_or(0)).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "bad_gateway",
                format!("source {instance:?} answered with HTTP status {code}"),
            )
        })?,
    };
    let mut reply = (status, response.body).into_response();
    for (name, value) in response.headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            (Ok(name), Ok(value)) if !is_hop_by_hop(&name) => {
                reply.headers_mut().insert(name, value);
            }
            _ => {
                tracing::debug!(source = %instance, instance = %instance, plugin = %source.plugin, header = %name, "dropped an invalid response header")
            }
        }
    }
    Ok(reply)
}

/// Header names lower case; repeated headers joined with ", " (the contract).
fn forwarded_headers(headers: &HeaderMap) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::with_capacity(headers.len());
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}

/// Whether a header carries a credential: authorization, cookies, API keys,
/// tokens and signatures (GitHub's `x-hub-signature-256`, GitLab's `x-gitlab-token`...).
pub fn is_secret_header(name: &str) -> bool {
    matches!(name, "authorization" | "proxy-authorization" | "cookie" | "x-api-key" | "api-key")
        || name.contains("signature")
        || name.contains("token")
        || name.contains("secret")
}

/// The credential values of a request (whole values and, for
/// `Scheme credentials`, the credentials alone), with the header each came from.
fn secret_values(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut secrets = Vec::new();
    for (name, value) in headers {
        if !is_secret_header(name.as_str()) {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        let value = value.trim();
        // Too short to search for without redacting ordinary text.
        if value.len() >= 6 {
            secrets.push((name.as_str().to_owned(), value.to_owned()));
        }
        if let Some((_, credentials)) = value.split_once(' ')
            && credentials.trim().len() >= 6
        {
            secrets.push((name.as_str().to_owned(), credentials.trim().to_owned()));
        }
    }
    // Longest first, so a whole value is replaced before its credential part.
    secrets.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    secrets
}

/// Replaces credential values in the event's text; returns the header of
/// the first one found.
fn redact(event: &mut CloudEvent, secrets: &[(String, String)]) -> Option<String> {
    let mut found = None;
    let mut scrub = |text: &mut String| {
        for (header, secret) in secrets {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), REDACTED);
                found.get_or_insert_with(|| header.clone());
            }
        }
    };
    scrub(&mut event.id);
    scrub(&mut event.source);
    scrub(&mut event.r#type);
    for value in event.attributes.values_mut() {
        if let Some(Attr::CeString(s) | Attr::CeUri(s) | Attr::CeUriRef(s)) = &mut value.attr {
            scrub(s);
        }
    }
    if let Some(Data::TextData(text)) = &mut event.data {
        scrub(text);
    }
    found
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "te" | "trailer" | "upgrade" | "content-length"
    )
}

fn status_error(instance: &str, plugin: &str, status: &tonic::Status) -> ApiError {
    let message = status.message();
    match status.code() {
        tonic::Code::Unimplemented => ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "not_implemented",
            format!("source {instance:?} (plugin {plugin:?}) does not handle HTTP requests"),
        ),
        tonic::Code::InvalidArgument => ApiError::bad_request(message.to_owned()),
        tonic::Code::Unauthenticated => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.to_owned()),
        tonic::Code::PermissionDenied => ApiError::new(StatusCode::FORBIDDEN, "forbidden", message.to_owned()),
        tonic::Code::NotFound => ApiError::not_found(message.to_owned()),
        tonic::Code::Unavailable => ApiError::unavailable(format!("source {instance:?} is unavailable: {message}")),
        tonic::Code::DeadlineExceeded => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("source {instance:?} timed out: {message}"))
        }
        _ => ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", format!("source {instance:?} failed: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_proto::event::string_attr;

    #[test]
    fn credentials_are_redacted_from_events() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer s3cr3t-token".parse().unwrap());
        headers.insert("x-hub-signature-256", "sha256=abcdef0123".parse().unwrap());
        headers.insert("x-request-id", "visible-1234".parse().unwrap());
        let secrets = secret_values(&headers);
        let mut event = CloudEvent {
            id: "1".into(),
            data: Some(Data::TextData(
                r#"{"auth":"Bearer s3cr3t-token","token":"s3cr3t-token","sig":"sha256=abcdef0123","id":"visible-1234"}"#
                    .into(),
            )),
            ..Default::default()
        };
        event.attributes.insert("sig".into(), string_attr("sha256=abcdef0123"));
        assert!(redact(&mut event, &secrets).is_some());
        let Some(Data::TextData(text)) = &event.data else { panic!() };
        assert_eq!(text, r#"{"auth":"[REDACTED]","token":"[REDACTED]","sig":"[REDACTED]","id":"visible-1234"}"#);
        assert_eq!(plugboard_proto::event::attribute(&event, "sig"), Some(REDACTED));
        assert_eq!(redact(&mut event, &secrets), None, "nothing left to redact");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let mut headers = HeaderMap::new();
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        assert_eq!(forwarded_headers(&headers)["x-a"], "1, 2");
    }
}
