//! Slash commands from chat platforms.
//!
//! - Slack (`POST /v1/chat/slack`): form-encoded payload, signed with the
//!   app's signing secret (`v0=` HMAC-SHA256 over `v0:<timestamp>:<body>`);
//!   requests older than 5 minutes are refused (replay protection).
//! - Mattermost (`POST /v1/chat/mattermost`): the same payload shape, checked
//!   against the slash command's token.
//!
//! Both answer within `ack_after` (Slack allows 3 s): with the result when
//! the command is done by then, otherwise with an acknowledgement, and the
//! result is posted to the payload's `response_url` when it is ready.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::{Caller, CommandReply, CommandRequest, CommandService, Status};
use crate::runtime::http::ApiError;
use crate::runtime::secrets::SecretString;

/// Requests older (or newer) than this are refused.
pub const MAX_REQUEST_AGE: Duration = Duration::from_secs(5 * 60);
/// Slack's answer budget.
pub const SLACK_BUDGET: Duration = Duration::from_secs(3);
/// Longest message text sent back (Slack truncates at 40,000 characters).
const MAX_MESSAGE_CHARS: usize = 39_000;

fn default_ack_after() -> Duration {
    Duration::from_millis(2500)
}

/// `commands.slack`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The Slack app's signing secret (Basic Information → App Credentials).
    pub signing_secret: SecretString,
    /// Answer with an acknowledgement when the command takes longer (≤ 3 s).
    #[serde(default = "default_ack_after", with = "humantime_serde")]
    pub ack_after: Duration,
    /// `in_channel` (everyone sees results) or `ephemeral` (only the caller).
    #[serde(default)]
    pub response_type: ResponseType,
}

/// `commands.mattermost`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MattermostConfig {
    /// The slash command's token (Integrations → Slash Commands).
    pub token: SecretString,
    #[serde(default = "default_ack_after", with = "humantime_serde")]
    pub ack_after: Duration,
    #[serde(default)]
    pub response_type: ResponseType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseType {
    #[default]
    InChannel,
    Ephemeral,
}

/// The slash-command payload fields plugboard uses (Slack and Mattermost).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SlashCommand {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub user_name: String,
    #[serde(default)]
    pub channel_id: String,
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub response_url: String,
}

/// The message posted back.
#[derive(Debug, Clone, Serialize)]
pub struct ChatMessage {
    pub response_type: ResponseType,
    pub text: String,
}

#[derive(Clone)]
struct ChatState {
    service: Arc<CommandService>,
    http: reqwest::Client,
    slack: Option<Arc<SlackEndpoint>>,
    mattermost: Option<Arc<MattermostEndpoint>>,
}

struct SlackEndpoint {
    secret: Vec<u8>,
    ack_after: Duration,
    response_type: ResponseType,
}

struct MattermostEndpoint {
    token: Vec<u8>,
    ack_after: Duration,
    response_type: ResponseType,
}

/// Problems with the chat sections.
pub fn problems(slack: Option<&SlackConfig>) -> Vec<String> {
    match slack {
        Some(s) if s.ack_after > SLACK_BUDGET => {
            vec![format!("commands.slack.ack_after must be at most 3s (Slack's budget), not {:?}", s.ack_after)]
        }
        _ => Vec::new(),
    }
}

pub fn router(service: Arc<CommandService>, config: &super::CommandsConfig) -> Router {
    let slack = config.slack.as_ref().and_then(|s| {
        let secret = s.signing_secret.resolve().ok().flatten()?;
        Some(Arc::new(SlackEndpoint {
            secret: secret.into_bytes(),
            ack_after: s.ack_after.min(SLACK_BUDGET),
            response_type: s.response_type,
        }))
    });
    let mattermost = config.mattermost.as_ref().and_then(|m| {
        let token = m.token.resolve().ok().flatten()?;
        Some(Arc::new(MattermostEndpoint {
            token: token.into_bytes(),
            ack_after: m.ack_after,
            response_type: m.response_type,
        }))
    });
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default();
    let state = ChatState { service, http, slack, mattermost };
    Router::new()
        .route("/v1/chat/slack", axum::routing::post(slack_command))
        .route("/v1/chat/mattermost", axum::routing::post(mattermost_command))
        .with_state(state)
}

async fn slack_command(State(state): State<ChatState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(slack) = state.slack.clone() else {
        return ApiError::not_found("Slack slash commands are not configured (set commands.slack.signing_secret)")
            .into_response();
    };
    // Slack checks the certificate with an unsigned `ssl_check=1` request: answer it, run nothing.
    if serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .is_ok_and(|pairs| pairs.iter().any(|(k, v)| k == "ssl_check" && v == "1"))
    {
        return axum::http::StatusCode::OK.into_response();
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    if let Err(e) = verify_slack(&slack.secret, &headers, &body, now) {
        tracing::warn!(error = %e.message, "refused a Slack request");
        return e.into_response();
    }
    let payload: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(e) => return ApiError::bad_request(format!("not a slash-command form payload: {e}")).into_response(),
    };
    respond(state, payload, "slack", slack.ack_after, slack.response_type).await
}

async fn mattermost_command(State(state): State<ChatState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(mm) = state.mattermost.clone() else {
        return ApiError::not_found("Mattermost slash commands are not configured (set commands.mattermost.token)")
            .into_response();
    };
    let payload: SlashCommand = match serde_urlencoded::from_bytes(&body) {
        Ok(p) => p,
        Err(e) => return ApiError::bad_request(format!("not a slash-command form payload: {e}")).into_response(),
    };
    // Mattermost sends the token in the form and as `Authorization: Token <t>`.
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Token "))
        .unwrap_or_default();
    let given = if payload.token.is_empty() { header_token } else { payload.token.as_str() };
    if !bool::from(given.as_bytes().ct_eq(&mm.token)) {
        tracing::warn!("refused a Mattermost request: wrong token");
        return ApiError::unauthorized().into_response();
    }
    respond(state, payload, "mattermost", mm.ack_after, mm.response_type).await
}

/// Checks Slack's request signature and timestamp.
pub fn verify_slack(secret: &[u8], headers: &HeaderMap, body: &[u8], now: u64) -> Result<(), ApiError> {
    let unauthorized = |m: &str| ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "unauthorized", m);
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let timestamp = header("x-slack-request-timestamp");
    let ts: u64 = timestamp.parse().map_err(|_| unauthorized("missing or malformed X-Slack-Request-Timestamp"))?;
    if now.abs_diff(ts) > MAX_REQUEST_AGE.as_secs() {
        return Err(unauthorized("stale request: X-Slack-Request-Timestamp is more than 5 minutes away from now"));
    }
    let signature = header("x-slack-signature");
    let given = signature
        .strip_prefix("v0=")
        .and_then(decode_hex)
        .ok_or_else(|| unauthorized("missing or malformed X-Slack-Signature"))?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).map_err(|_| unauthorized("bad signing secret"))?;
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| unauthorized("bad Slack signature"))
}

/// Slack's signature for a body (used by tests and clients).
pub fn slack_signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("v0={hex}")
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// Runs the command; answers with the result if it is ready within
/// `ack_after`, otherwise acknowledges and posts the result to `response_url`.
async fn respond(
    state: ChatState,
    payload: SlashCommand,
    platform: &'static str,
    ack_after: Duration,
    response_type: ResponseType,
) -> Response {
    let user = if payload.user_name.is_empty() { payload.user_id.clone() } else { payload.user_name.clone() };
    let caller = Caller {
        user,
        user_aliases: vec![payload.user_id.clone()].into_iter().filter(|u| !u.is_empty()).collect(),
        groups: Vec::new(),
        channel: if payload.channel_name.is_empty() {
            payload.channel_id.clone()
        } else {
            payload.channel_name.clone()
        },
        platform: platform.to_owned(),
    };
    let text = payload.text.trim().to_owned();
    let request = CommandRequest { command: text.clone(), caller, event: None };
    let service = Arc::clone(&state.service);
    let mut task = tokio::spawn(async move { service.run(request, |_| {}).await });
    let slash = payload.command.clone();
    let shown = text.clone();
    let message = move |reply: &CommandReply| ChatMessage {
        response_type: if reply.status == Status::Denied { ResponseType::Ephemeral } else { response_type },
        text: format_reply(platform, &slash, &shown, reply),
    };
    match tokio::time::timeout(ack_after, &mut task).await {
        Ok(Ok(reply)) => axum::Json(message(&reply)).into_response(),
        Ok(Err(e)) => ApiError::internal(format!("command task failed: {e}")).into_response(),
        Err(_) => {
            let response_url = payload.response_url.clone();
            let http = state.http.clone();
            let ack = ChatMessage {
                response_type: ResponseType::Ephemeral,
                text: format!("Running `{text}`… the result follows when it is done."),
            };
            tokio::spawn(async move {
                let reply = match task.await {
                    Ok(reply) => reply,
                    Err(e) => {
                        tracing::error!(error = %e, "command task failed");
                        return;
                    }
                };
                if response_url.is_empty() {
                    tracing::warn!(platform, "no response_url in the slash command: the late result is dropped");
                    return;
                }
                post_late(&http, &response_url, &message(&reply), platform).await;
            });
            axum::Json(ack).into_response()
        }
    }
}

async fn post_late(http: &reqwest::Client, url: &str, message: &ChatMessage, platform: &str) {
    for attempt in 1..=3u32 {
        match http.post(url).json(message).send().await {
            Ok(resp) if resp.status().is_success() => return,
            Ok(resp) => tracing::warn!(platform, status = %resp.status(), attempt, "response_url refused the result"),
            Err(e) => tracing::warn!(platform, error = %e, attempt, "cannot post the result to response_url"),
        }
        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
    }
}

/// The reply as chat text: the command, its output in a code block, and the
/// error if any.
pub fn format_reply(platform: &str, slash: &str, text: &str, reply: &CommandReply) -> String {
    let escape = |s: &str| -> String {
        let s = s.replace("```", "`\u{200b}``");
        if platform == "slack" { s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;") } else { s }
    };
    let shown = if slash.is_empty() { text.to_owned() } else { format!("{slash} {text}") };
    let mut out = format!("`{}`", escape(shown.trim()));
    let mut output = reply.output.clone();
    if output.chars().count() > MAX_MESSAGE_CHARS {
        output = output.chars().take(MAX_MESSAGE_CHARS).collect();
        output.push_str("\n[message truncated]");
    }
    if !output.trim().is_empty() {
        out.push_str(&format!("\n```\n{}\n```", escape(output.trim_end())));
    } else if reply.error.is_empty() {
        out.push_str(" — done (no output)");
    }
    if !reply.error.is_empty() {
        out.push_str(&format!("\n:warning: {} (exit code {})", escape(&reply.error), reply.exit_code));
    } else if reply.exit_code != 0 {
        out.push_str(&format!("\n:warning: exit code {}", reply.exit_code));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(ts: u64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-slack-request-timestamp", ts.to_string().parse().unwrap());
        h.insert("x-slack-signature", sig.parse().unwrap());
        h
    }

    #[test]
    fn slack_signatures_are_verified() {
        // Slack's documented example.
        let secret = b"8f742231b10e8888abcd99yyyzzz85a5";
        let body = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        let ts = 1531420618;
        let sig = slack_signature(secret, ts, body);
        assert_eq!(sig, "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503");
        assert!(verify_slack(secret, &headers(ts, &sig), body, ts + 10).is_ok());
        assert!(verify_slack(secret, &headers(ts, &sig), b"tampered", ts).is_err());
        let stale = verify_slack(secret, &headers(ts, &sig), body, ts + 301).unwrap_err();
        assert!(stale.message.contains("stale"), "{}", stale.message);
        assert!(verify_slack(secret, &headers(ts, "v0=zz"), body, ts).is_err());
    }

    #[test]
    fn replies_are_formatted_with_escaped_output() {
        let reply = CommandReply {
            executor: Some("echo".into()),
            output: "a < b\n".into(),
            exit_code: 0,
            error: String::new(),
            duration_ms: 1,
            status: Status::Ok,
        };
        assert_eq!(format_reply("slack", "/pb", "echo a < b", &reply), "`/pb echo a &lt; b`\n```\na &lt; b\n```");
    }
}
