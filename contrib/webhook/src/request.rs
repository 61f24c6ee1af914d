//! One forwarded HTTP request: authenticate it, turn its body into one
//! event, and answer.

use std::collections::HashMap;

use plugboard_sdk::{CloudEvent, EventBuilder, HttpRequest, HttpResponse};

use crate::config::Settings;
use crate::verify::{self, Refusal};

/// The event of an accepted request, or the reply to a refused one.
pub fn handle(settings: &Settings, instance: &str, req: &HttpRequest) -> HttpResponse {
    match accept(settings, instance, req) {
        Ok(event) => {
            let body = serde_json::json!({ "accepted": 1, "id": event.id });
            let mut resp = json_response(202, &body);
            resp.events.push(event);
            resp
        }
        Err(refused) => {
            tracing::info!(status = refused.status, path = %req.path, "refused request: {}", refused.message);
            let mut resp = error_response(refused.status, refused.code, &refused.message);
            if refused.status == 401 && settings.token.is_some() {
                resp.headers.insert("www-authenticate".into(), "Bearer".into());
            }
            if refused.status == 405 {
                resp.headers.insert("allow".into(), "POST".into());
            }
            resp
        }
    }
}

struct Refused {
    status: u16,
    code: &'static str,
    message: String,
}

impl Refused {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Unauthenticated(m) => Refused::new(401, "unauthorized", m),
            Refusal::Forbidden(m) => Refused::new(403, "forbidden", m),
        }
    }
}

fn accept(settings: &Settings, instance: &str, req: &HttpRequest) -> Result<CloudEvent, Refused> {
    if !req.method.eq_ignore_ascii_case("POST") {
        return Err(Refused::new(405, "method_not_allowed", format!("method {} is not allowed; use POST", req.method)));
    }
    if let Some(token) = &settings.token {
        verify::check_bearer(header(req, "authorization"), token)?;
    }
    if let Some(hmac) = &settings.hmac {
        hmac.verify(header(req, hmac.header()), &req.body)?;
    }
    let mut event = EventBuilder::new(settings.event_type.as_str(), format!("/plugboard/webhook/{instance}"));
    if let Some(id) = settings.id_header.as_deref().and_then(|h| header(req, h)).filter(|v| !v.is_empty()) {
        event = event.id(id);
    }
    // Only the headers the operator named; credential headers were refused
    // when the config was checked, so none can get here.
    for (name, extension) in &settings.headers {
        if let Some(value) = header(req, name) {
            event = event.extension(extension.as_str(), value);
        }
    }
    Ok(with_body(event, settings.require_json, header(req, "content-type"), &req.body)?.build())
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers.get(name).map(String::as_str)
}

fn is_json_type(essence: &str) -> bool {
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// The body as event data: JSON when it is (or must be) JSON, else text or
/// binary under the request's content type.
fn with_body(
    event: EventBuilder,
    require_json: bool,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<EventBuilder, Refused> {
    let essence = content_type.map(|ct| ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
    let must_be_json = require_json || essence.as_deref().is_some_and(is_json_type);
    if must_be_json {
        return match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => Ok(event.json(&value)),
            Err(_) if body.is_empty() => Err(Refused::new(400, "bad_request", "the body is empty; JSON is required")),
            Err(e) => Err(Refused::new(400, "bad_request", format!("the body is not valid JSON: {e}"))),
        };
    }
    match (content_type, essence.as_deref()) {
        (None, _) => Ok(match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(value) => event.json(&value),
            Err(_) => event.binary("application/octet-stream", body),
        }),
        (Some(ct), Some(essence)) if essence.starts_with("text/") => match std::str::from_utf8(body) {
            Ok(text) => Ok(event.text(ct, text)),
            Err(_) => Ok(event.binary(ct, body)),
        },
        (Some(ct), _) => Ok(event.binary(ct, body)),
    }
}

fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    let mut headers = HashMap::new();
    headers.insert("content-type".to_owned(), "application/json".to_owned());
    HttpResponse { status, headers, body: body.to_string().into_bytes(), events: Vec::new() }
}

/// The host's error shape: `{"error": {"code": ..., "message": ...}}`.
fn error_response(status: u16, code: &str, message: &str) -> HttpResponse {
    json_response(status, &serde_json::json!({ "error": { "code": code, "message": message } }))
}

#[cfg(test)]
mod tests {
    use plugboard_sdk::proto::event::attribute;
    use plugboard_sdk::proto::io::cloudevents::v1::cloud_event::Data;

    use super::*;
    use crate::config::Config;
    use crate::verify::{Algorithm, sign};

    fn settings(config: serde_json::Value) -> Settings {
        serde_json::from_value::<Config>(config).unwrap().check().unwrap()
    }

    fn post(headers: &[(&str, &str)], body: &[u8]) -> HttpRequest {
        HttpRequest {
            method: "POST".into(),
            path: "/v1/sources/hook".into(),
            query: String::new(),
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            body: body.to_vec(),
        }
    }

    fn error_message(resp: &HttpResponse) -> String {
        let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        v["error"]["message"].as_str().unwrap().to_owned()
    }

    #[test]
    fn json_body_becomes_the_data_and_only_named_headers_are_kept() {
        let s = settings(serde_json::json!({
            "token": "t0k",
            "id_header": "x-github-delivery",
            "headers": {"X-GitHub-Event": "githubevent"}
        }));
        let req = post(
            &[
                ("authorization", "Bearer t0k"),
                ("content-type", "application/json"),
                ("x-github-event", "push"),
                ("x-github-delivery", "d-1"),
                ("x-other", "dropped"),
            ],
            br#"{"ref":"main"}"#,
        );
        let resp = handle(&s, "hook", &req);
        assert_eq!(resp.status, 202);
        let [event] = resp.events.as_slice() else { panic!("one event: {:?}", resp.events) };
        assert_eq!(event.id, "d-1");
        assert_eq!(event.source, "/plugboard/webhook/hook");
        assert_eq!(event.r#type, "dev.plugboard.webhook");
        assert_eq!(attribute(event, "githubevent"), Some("push"));
        assert_eq!(event.data, Some(Data::TextData(r#"{"ref":"main"}"#.into())));
        let text = format!("{event:?}");
        assert!(!text.contains("t0k") && !text.contains("dropped"), "{text}");
    }

    #[test]
    fn bad_json_is_a_400_and_produces_nothing() {
        let s = settings(serde_json::json!({}));
        let resp = handle(&s, "hook", &post(&[("content-type", "text/plain")], b"{nope"));
        assert_eq!(resp.status, 400);
        assert!(resp.events.is_empty());
        assert!(
            error_message(&resp).starts_with("the body is not valid JSON: key must be a string at line 1 column 2")
        );
        let resp = handle(&s, "hook", &post(&[], b""));
        assert_eq!(error_message(&resp), "the body is empty; JSON is required");
    }

    #[test]
    fn without_require_json_bodies_keep_their_content_type() {
        let s = settings(serde_json::json!({"require_json": false}));
        let resp = handle(&s, "hook", &post(&[("content-type", "text/plain; charset=utf-8")], b"hello"));
        assert_eq!(resp.events[0].data, Some(Data::TextData("hello".into())));
        assert_eq!(attribute(&resp.events[0], "datacontenttype"), Some("text/plain; charset=utf-8"));
        let resp = handle(&s, "hook", &post(&[("content-type", "application/x-protobuf")], &[0, 159, 146]));
        assert_eq!(resp.events[0].data, Some(Data::BinaryData(vec![0, 159, 146])));
        assert_eq!(attribute(&resp.events[0], "datacontenttype"), Some("application/x-protobuf"));
        // A body that says it is JSON still has to be.
        let resp = handle(&s, "hook", &post(&[("content-type", "application/vnd.api+json")], b"{"));
        assert_eq!(resp.status, 400);
    }

    #[test]
    fn token_and_signature_are_both_checked() {
        let s = settings(serde_json::json!({"token": "t0k", "hmac": {"secret": "shh"}}));
        let body = br#"{"a":1}"#;
        let sig = format!("sha256={}", hex::encode(sign(Algorithm::Sha256, b"shh", body)));

        let resp = handle(&s, "hook", &post(&[("x-hub-signature-256", &sig)], body));
        assert_eq!(resp.status, 401);
        assert_eq!(resp.headers.get("www-authenticate").map(String::as_str), Some("Bearer"));
        assert!(error_message(&resp).contains("missing bearer token"));

        let resp = handle(&s, "hook", &post(&[("authorization", "Bearer nope"), ("x-hub-signature-256", &sig)], body));
        assert_eq!((resp.status, error_message(&resp).as_str()), (401, "invalid bearer token"));

        let resp = handle(&s, "hook", &post(&[("authorization", "Bearer t0k")], body));
        assert_eq!((resp.status, error_message(&resp).as_str()), (401, "missing signature header x-hub-signature-256"));

        let resp = handle(&s, "hook", &post(&[("authorization", "Bearer t0k"), ("x-hub-signature-256", &sig)], b"{}"));
        assert_eq!(resp.status, 403);
        assert!(resp.events.is_empty());

        let resp = handle(&s, "hook", &post(&[("authorization", "Bearer t0k"), ("x-hub-signature-256", &sig)], body));
        assert_eq!(resp.status, 202);
        assert_eq!(resp.events.len(), 1);
    }

    #[test]
    fn only_post_is_accepted() {
        let s = settings(serde_json::json!({}));
        let mut req = post(&[], b"{}");
        req.method = "GET".into();
        let resp = handle(&s, "hook", &req);
        assert_eq!(resp.status, 405);
        assert_eq!(resp.headers.get("allow").map(String::as_str), Some("POST"));
    }
}
