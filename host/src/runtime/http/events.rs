//! `POST /v1/events`: the CloudEvents HTTP protocol binding into the store.
//!
//! - binary mode: attributes in `ce-` headers, data in the body;
//! - structured mode: `Content-Type: application/cloudevents+json`;
//! - batched mode: `Content-Type: application/cloudevents-batch+json` (a JSON array).
//!
//! 202 only once every event is durably stored (duplicates of stored events
//! are acknowledged, not stored again); 400 naming the problem when any event
//! is malformed, 413 past `http.body_limit`, 415 for other event formats,
//! 401 without the right bearer token. A rejected request stores nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiError, binding, check_bearer};
use crate::runtime::pipeline::{HTTP_INSTANCE, IngestError, Ingress};

/// The events endpoint's state.
pub struct EventsEndpoint {
    pub ingress: Ingress,
    /// Bearer token required (`http.events_token`, else `http.token`).
    pub token: super::LiveToken,
    instance: Arc<str>,
}

impl EventsEndpoint {
    pub fn new(ingress: Ingress, token: impl Into<super::LiveToken>) -> Self {
        Self { ingress, token: token.into(), instance: Arc::from(HTTP_INSTANCE) }
    }
}

pub fn router(endpoint: EventsEndpoint) -> Router {
    Router::new().route("/v1/events", axum::routing::post(post_events)).with_state(Arc::new(endpoint))
}

async fn post_events(State(endpoint): State<Arc<EventsEndpoint>>, request: Request) -> Response {
    match accept(&endpoint, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn accept(endpoint: &EventsEndpoint, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    check_bearer(&parts.headers, endpoint.token.get().as_deref())?;
    let body = read_body(body).await?;
    let events = parse(&parts.headers, &body).inspect_err(|e| {
        if e.code == "invalid_event" {
            endpoint.ingress.count_invalid(&endpoint.instance, 1);
        }
    })?;
    match endpoint.ingress.ingest(&endpoint.instance, events).await {
        Ok(report) => Ok((StatusCode::ACCEPTED, axum::Json(report)).into_response()),
        Err(e @ IngestError::Invalid { .. }) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", e.to_string()))
        }
        Err(IngestError::Store(e)) => Err(ApiError::unavailable(format!("events not stored: {e}"))),
    }
}

/// The whole body (the server's body limit applies), or 413.
pub async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if too_large {
            payload_too_large()
        } else {
            ApiError::bad_request(format!("cannot read the request body: {e}"))
        }
    })
}

pub fn payload_too_large() -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than http.body_limit")
}

/// The events in a request, by content mode.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Vec<plugboard_proto::CloudEvent>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or_default().trim().to_ascii_lowercase())
        .unwrap_or_default();
    let invalid = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_event", message);
    let unsupported = |what: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "{what} {content_type:?} is not supported: use application/cloudevents+json, application/cloudevents-batch+json or binary mode"
            ),
        )
    };
    if content_type.starts_with("application/cloudevents-batch") {
        if !content_type.starts_with("application/cloudevents-batch+json") {
            return Err(unsupported("batch format"));
        }
        plugboard_proto::event::batch_from_json_slice(body).map_err(|(index, e)| {
            let values = serde_json::from_slice::<Vec<serde_json::Value>>(body);
            match (e, values) {
                (e, Err(_)) if index == 0 => invalid(format!("a batch is a JSON array of events: {e}")),
                (e, Ok(values)) => invalid(format!("event {index}: {}", explain(values.get(index), e))),
                (e, Err(_)) => invalid(format!("event {index}: {e}")),
            }
        })
    } else if content_type.starts_with("application/cloudevents") {
        if !content_type.starts_with("application/cloudevents+json") {
            return Err(unsupported("event format"));
        }
        plugboard_proto::event::from_json_slice(body)
            .map(|e| vec![e])
            .map_err(|e| invalid(explain(serde_json::from_slice::<serde_json::Value>(body).ok().as_ref(), e)))
    } else {
        let event = binding::decode(headers, body).map_err(|e| invalid(e.to_string()))?;
        plugboard_proto::event::validate(&event).map_err(|e| invalid(e.to_string()))?;
        Ok(vec![event])
    }
}

/// A clearer reason than the JSON parser's for the usual mistakes in an event
/// that did not parse: a missing or mistyped required attribute, a `time`
/// that is not RFC 3339, a bad attribute name.
fn explain(event: Option<&serde_json::Value>, error: plugboard_proto::event::EventError) -> String {
    use plugboard_proto::event::{EventError, validate_attribute_name};
    let Some(event) = event else { return error.to_string() };
    let Some(object) = event.as_object() else { return "an event in the JSON format is a JSON object".into() };
    for name in ["id", "source", "specversion", "type"] {
        match object.get(name) {
            None => return EventError::Missing(name).to_string(),
            Some(serde_json::Value::String(_)) => {}
            Some(other) => return format!("attribute {name:?} must be a string, not {other}"),
        }
    }
    if let Some(time) = object.get("time") {
        let valid = time.as_str().is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok());
        if !valid {
            return format!("attribute \"time\": {time} is not an RFC 3339 timestamp");
        }
    }
    for name in object.keys() {
        if matches!(name.as_str(), "id" | "source" | "specversion" | "type" | "data" | "data_base64") {
            continue;
        }
        if let Err(e) = validate_attribute_name(name) {
            return e.to_string();
        }
    }
    error.to_string()
}
