//! `POST /v1/commands`: run a command over HTTP. JSON in, JSON out; with
//! `Accept: text/event-stream` the output streams as server-sent events
//! (`event: output`, data `{"chunk": "..."}`) and ends with `event: result`.
//! Slack and Mattermost slash commands are mounted beside it (chat.rs).

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};

use super::{Caller, CommandReply, CommandRequest, CommandService, Status};
use crate::runtime::http::{ApiError, LiveToken, check_bearer};

/// The JSON body of `POST /v1/commands`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub command: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
}

impl CommandBody {
    fn into_request(self) -> CommandRequest {
        let caller = Caller {
            user: self.user.filter(|u| !u.is_empty()).unwrap_or_else(|| "api".into()),
            channel: self.channel.filter(|c| !c.is_empty()).unwrap_or_else(|| "api".into()),
            platform: self.platform.filter(|p| !p.is_empty()).unwrap_or_else(|| "http".into()),
            ..Caller::default()
        };
        CommandRequest { command: self.command, caller, event: None }
    }
}

#[derive(Clone)]
struct ApiState {
    service: Arc<CommandService>,
    token: LiveToken,
}

/// The command API (`/v1/commands`) and the chat endpoints. `token`: the
/// bearer token `/v1/commands` requires (the host's `http.token`).
pub fn router(service: Arc<CommandService>, token: impl Into<LiveToken>, chat: &super::CommandsConfig) -> Router {
    let state = ApiState { service: Arc::clone(&service), token: token.into() };
    Router::new()
        .route("/v1/commands", axum::routing::post(run_command))
        .with_state(state)
        .merge(super::chat::router(service, chat))
}

/// The HTTP status a reply is sent with (the body is the reply either way).
pub fn http_status(status: Status) -> StatusCode {
    match status {
        Status::Ok | Status::Failed => StatusCode::OK,
        Status::Denied => StatusCode::FORBIDDEN,
        Status::Unknown => StatusCode::NOT_FOUND,
        Status::Invalid => StatusCode::BAD_REQUEST,
        Status::Busy => StatusCode::TOO_MANY_REQUESTS,
        Status::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Status::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Status::Error => StatusCode::BAD_GATEWAY,
    }
}

async fn run_command(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<axum::Json<CommandBody>, JsonRejection>,
) -> Response {
    if let Err(e) = check_bearer(&headers, state.token.get().as_deref()) {
        return e.into_response();
    }
    let body = match body {
        Ok(axum::Json(body)) => body,
        Err(rejection) => {
            return ApiError::bad_request(format!(
                "expected a JSON body {{\"command\": \"...\", \"user\": \"...\", \"channel\": \"...\", \"platform\": \"...\"}}: {}",
                rejection.body_text()
            ))
            .into_response();
        }
    };
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let request = body.into_request();
    if wants_stream {
        return Sse::new(stream_command(state.service, request)).keep_alive(KeepAlive::default()).into_response();
    }
    // Run in its own task: a caller that hangs up does not cut the command
    // (and its audit record) short.
    let service = state.service;
    match tokio::spawn(async move { service.run(request, |_| {}).await }).await {
        Ok(reply) => (http_status(reply.status), axum::Json(reply)).into_response(),
        Err(e) => ApiError::internal(format!("command task failed: {e}")).into_response(),
    }
}

/// Output chunks as SSE `output` events, then the `result` event.
fn stream_command(
    service: Arc<CommandService>,
    request: CommandRequest,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = mpsc::unbounded_channel::<Event>();
    tokio::spawn(async move {
        let mut text = Utf8Chunks::default();
        let reply = service
            .run(request, |chunk| {
                let chunk = text.push(chunk);
                if !chunk.is_empty() {
                    let _ = tx.send(output_event(&chunk));
                }
            })
            .await;
        let rest = text.finish();
        if !rest.is_empty() {
            let _ = tx.send(output_event(&rest));
        }
        let _ = tx.send(result_event(&reply));
    });
    UnboundedReceiverStream::new(rx).map(Ok)
}

fn output_event(chunk: &str) -> Event {
    Event::default().event("output").data(serde_json::json!({ "chunk": chunk }).to_string())
}

fn result_event(reply: &CommandReply) -> Event {
    Event::default().event("result").data(serde_json::to_string(reply).unwrap_or_default())
}

/// Turns byte chunks into text without splitting a UTF-8 character across
/// two events.
#[derive(Default)]
pub struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An incomplete character at the end waits for the next chunk.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                let text = String::from_utf8_lossy(&self.pending).into_owned();
                self.pending.clear();
                return text;
            }
        };
        let rest = self.pending.split_off(valid);
        String::from_utf8(std::mem::replace(&mut self.pending, rest)).unwrap_or_default()
    }

    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_characters_are_never_split() {
        let mut c = Utf8Chunks::default();
        let bytes = "é€".as_bytes();
        assert_eq!(c.push(&bytes[..1]), "");
        assert_eq!(c.push(&bytes[1..3]), "é");
        assert_eq!(c.push(&bytes[3..]), "€");
        assert_eq!(c.finish(), "");
    }
}
