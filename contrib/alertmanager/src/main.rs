//! `alertmanager` source: Prometheus Alertmanager's webhook notifications,
//! forwarded by the host (`POST /v1/sources/{instance}`), become one event
//! per alert (like ansible.eda's `alertmanager`, plus an optional bearer
//! token, which Alertmanager's `http_config.authorization` can send).

mod payload;

use std::collections::HashMap;

use plugboard_sdk::prelude::*;
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq;

const HELP: &str = "\
alertmanager: receives Alertmanager webhook notifications (payload version 4) that the host
forwards from POST /v1/sources/<instance>, and emits one event per alert.

Config:
  token   optional; require `Authorization: Bearer <token>` (Alertmanager:
          webhook_configs[].http_config.authorization.credentials)

Events: type io.prometheus.alertmanager.alert.firing or .resolved; subject = the alertname
label; time = startsAt (firing) or endsAt (resolved); id = <fingerprint>:firing:<startsAt> or
<fingerprint>:resolved:<startsAt>:<endsAt>, so Alertmanager's repeats and retries of the same
occurrence are stored once. data = the notification with `alerts` replaced by this `alert`
(status, labels, annotations, startsAt, endsAt, generatorURL, fingerprint) beside receiver,
status, groupKey, groupLabels, commonLabels, commonAnnotations, externalURL, truncatedAlerts.
Replies 202 {\"accepted\":N,\"ids\":[...]}; 400 names what is wrong with a payload; 401 for a
missing or wrong token. Headers are never copied into events.
Cursors: none (events come with requests; Alertmanager retries failed deliveries).";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    token: Option<String>,
}

fn config(ctx: &SourceContext) -> Result<Config, PluginError> {
    let config: Config = ctx.config()?;
    if config.token.as_deref().is_some_and(str::is_empty) {
        return Err(PluginError::invalid_config("token must not be empty (leave it out to accept any request)"));
    }
    Ok(config)
}

fn schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "token": {
                "type": "string", "minLength": 1, "writeOnly": true,
                "description": "require `Authorization: Bearer <token>` (compared in constant time)"
            }
        },
        "additionalProperties": false
    })
}

struct Alertmanager;

#[plugboard_sdk::async_trait]
impl Source for Alertmanager {
    /// Checks the config, then waits: events come only with requests.
    async fn stream(&self, ctx: SourceContext, _events: EventSender) -> Result<(), PluginError> {
        let config = config(&ctx)?;
        tracing::info!(
            instance = %ctx.instance,
            token = config.token.is_some(),
            "alertmanager ready for notifications on POST /v1/sources/{}",
            ctx.instance
        );
        std::future::pending::<()>().await;
        Ok(())
    }

    async fn handle_request(&self, ctx: SourceContext, req: HttpRequest) -> Result<HttpResponse, PluginError> {
        let config = config(&ctx)?;
        Ok(handle(&config, &ctx.instance, &req))
    }
}

fn handle(config: &Config, instance: &str, req: &HttpRequest) -> HttpResponse {
    if !req.method.eq_ignore_ascii_case("POST") {
        let mut resp = error(405, "method_not_allowed", &format!("method {} is not allowed; use POST", req.method));
        resp.headers.insert("allow".into(), "POST".into());
        return resp;
    }
    if let Some(token) = &config.token
        && let Err(message) = check_bearer(req.headers.get("authorization").map(String::as_str), token)
    {
        tracing::info!(path = %req.path, "refused notification: {message}");
        let mut resp = error(401, "unauthorized", message);
        resp.headers.insert("www-authenticate".into(), "Bearer".into());
        return resp;
    }
    match payload::parse(&req.body, &format!("/plugboard/alertmanager/{instance}")) {
        Ok(notification) => {
            if notification.truncated > 0 {
                tracing::warn!(
                    truncated = notification.truncated,
                    "Alertmanager left {} alerts out of this notification (its max_alerts)",
                    notification.truncated
                );
            }
            let ids: Vec<&str> = notification.events.iter().map(|e| e.id.as_str()).collect();
            tracing::debug!(alerts = ids.len(), "notification accepted");
            let body = serde_json::json!({ "accepted": ids.len(), "ids": ids });
            let mut resp = json(202, &body);
            resp.events = notification.events;
            resp
        }
        Err(e) => {
            tracing::info!(path = %req.path, "refused notification: {e}");
            error(400, "bad_request", &e.to_string())
        }
    }
}

/// Both sides are hashed first so the comparison takes the same time whatever the lengths.
fn check_bearer(authorization: Option<&str>, expected: &str) -> Result<(), &'static str> {
    let given = match authorization.and_then(|v| v.split_once(' ')) {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return Err("missing bearer token (Authorization: Bearer <token>)"),
    };
    let a = sha2::Sha256::digest(given.as_bytes());
    let b = sha2::Sha256::digest(expected.as_bytes());
    if bool::from(a.as_slice().ct_eq(b.as_slice())) { Ok(()) } else { Err("invalid bearer token") }
}

fn json(status: u16, body: &serde_json::Value) -> HttpResponse {
    let headers = HashMap::from([("content-type".to_owned(), "application/json".to_owned())]);
    HttpResponse { status, headers, body: body.to_string().into_bytes(), events: Vec::new() }
}

fn error(status: u16, code: &str, message: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

fn main() {
    Plugin::new("alertmanager", env!("CARGO_PKG_VERSION"))
        .description("turns Prometheus Alertmanager webhook notifications into one event per alert")
        .help(HELP)
        .config_schema(schema())
        .source(Alertmanager)
        .serve()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugboard_sdk::testing;

    fn request(headers: &[(&str, &str)], body: &str) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/v1/sources/am".into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn body(resp: &HttpResponse) -> serde_json::Value {
        serde_json::from_slice(&resp.body).unwrap()
    }

    const ONE: &str = r#"{"version":"4","status":"firing","receiver":"r","groupKey":"g","alerts":[
        {"status":"firing","labels":{"alertname":"Up"},"annotations":{},"startsAt":"2026-01-01T00:00:00Z",
         "endsAt":"0001-01-01T00:00:00Z","fingerprint":"0123456789abcdef"}]}"#;

    #[test]
    fn accepted_notifications_list_their_event_ids() {
        let resp = handle(&Config { token: None }, "am", &request(&[], ONE));
        assert_eq!(resp.status, 202);
        assert_eq!(
            body(&resp),
            serde_json::json!({"accepted": 1, "ids": ["0123456789abcdef:firing:2026-01-01T00:00:00Z"]})
        );
        assert_eq!(resp.events[0].source, "/plugboard/alertmanager/am");
    }

    #[test]
    fn the_token_is_required_when_configured_and_never_lands_in_events() {
        let config = Config { token: Some("am-s3cret".into()) };
        let resp = handle(&config, "am", &request(&[], ONE));
        assert_eq!(resp.status, 401);
        assert!(resp.events.is_empty());
        assert_eq!(body(&resp)["error"]["message"], "missing bearer token (Authorization: Bearer <token>)");
        let resp = handle(&config, "am", &request(&[("authorization", "Bearer wrong")], ONE));
        assert_eq!((resp.status, body(&resp)["error"]["message"].as_str()), (401, Some("invalid bearer token")));
        let resp = handle(&config, "am", &request(&[("authorization", "Bearer am-s3cret")], ONE));
        assert_eq!(resp.status, 202);
        assert!(!format!("{:?}", resp.events).contains("am-s3cret"));
    }

    #[test]
    fn a_bad_payload_is_a_400_naming_the_problem() {
        let resp = handle(&Config { token: None }, "am", &request(&[], r#"{"alerts": 3}"#));
        assert_eq!(resp.status, 400);
        assert_eq!(body(&resp)["error"]["message"], "\"alerts\" is not an array");
        assert!(resp.events.is_empty());
    }

    #[tokio::test]
    async fn a_bad_config_fails_the_stream_clearly() {
        let err = testing::collect_events(Alertmanager, serde_json::json!({"port": 5000}), None, 1).await.unwrap_err();
        assert!(err.to_string().contains("unknown field `port`, expected `token`"), "{err}");
        let err = testing::collect_events(Alertmanager, serde_json::json!({"token": ""}), None, 1).await.unwrap_err();
        assert_eq!(err.to_string(), "invalid config: token must not be empty (leave it out to accept any request)");
    }

    #[tokio::test]
    async fn the_stream_stays_open_until_the_host_closes_it() {
        let mut run = testing::start_source(Alertmanager, serde_json::json!({}), None);
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        let polled = tokio::time::timeout(std::time::Duration::ZERO, run.next()).await;
        assert!(polled.is_err(), "the stream produced or ended: {polled:?}");
    }
}
