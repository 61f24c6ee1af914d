//! Checks against a real HTTP server on loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use plugboard_sdk::proto::event::attribute;
use plugboard_sdk::proto::io::cloudevents::v1::cloud_event::Data;
use plugboard_sdk::testing;

use super::*;

/// A loopback server: `/ok` 200, `/fail` 503, `/slow` never answers.
struct Server {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn server() -> Server {
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new()
        .route(
            "/ok",
            get(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                async { "fine" }
            }),
        )
        .route("/fail", get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance") }))
        .route("/slow", get(std::future::pending::<&'static str>));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Server { base, hits, task }
}

/// A loopback URL nothing listens on (the port was bound, then released).
async fn refused_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/")
}

fn data(event: &CloudEvent) -> serde_json::Value {
    match &event.data {
        Some(Data::TextData(t)) => serde_json::from_str(t).unwrap(),
        other => panic!("no JSON data: {other:?}"),
    }
}

#[tokio::test]
async fn up_down_refused_and_timed_out_urls_each_get_an_event() {
    let server = server().await;
    let refused = refused_url().await;
    let urls = [
        format!("{}/ok", server.base),
        format!("{}/fail", server.base),
        refused.clone(),
        format!("{}/slow", server.base),
    ];
    let config = serde_json::json!({"urls": urls, "delay": "1h", "timeout": "300ms"});
    let events = testing::collect_events(UrlCheck, config, None, 4).await.unwrap();
    let by_url = |url: &str| {
        let (event, cursor) = events.iter().find(|(e, _)| attribute(e, "subject") == Some(url)).unwrap();
        assert_eq!(cursor, "0");
        (event.clone(), data(event))
    };

    let (ok, d) = by_url(&urls[0]);
    assert_eq!(ok.r#type, TYPE_UP);
    assert_eq!(ok.id, "test-0-0");
    assert_eq!(ok.source, "/plugboard/url_check/test");
    assert_eq!(
        (d["status"].as_str(), d["status_code"].as_u64(), d["check"].as_u64()),
        (Some("up"), Some(200), Some(0))
    );
    assert!(d["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(d.get("error_msg").is_none());

    let (fail, d) = by_url(&urls[1]);
    assert_eq!(fail.r#type, TYPE_DOWN);
    assert_eq!((d["status"].as_str(), d["status_code"].as_u64()), (Some("down"), Some(503)));

    let (down, d) = by_url(&refused);
    assert_eq!(down.r#type, TYPE_DOWN);
    assert!(d.get("status_code").is_none());
    let error = d["error_msg"].as_str().unwrap();
    assert!(error.starts_with("connection failed: ") && error.contains("Connection refused"), "{error}");

    let (slow, d) = by_url(&urls[3]);
    assert_eq!(slow.r#type, TYPE_DOWN);
    assert_eq!(d["error_msg"], "timed out after 300ms");
    assert_eq!(slow.id, "test-0-3");
}

#[tokio::test]
async fn rounds_repeat_every_delay_and_resume_after_the_cursor() {
    let server = server().await;
    let config = serde_json::json!({"urls": [format!("{}/ok", server.base)], "delay": "1ms"});
    let events = testing::collect_events(UrlCheck, config.clone(), None, 3).await.unwrap();
    let rounds: Vec<_> = events.iter().map(|(e, c)| (e.id.as_str(), c.as_str())).collect();
    assert_eq!(rounds, [("test-0-0", "0"), ("test-1-0", "1"), ("test-2-0", "2")]);
    assert!(server.hits.load(Ordering::SeqCst) >= 3);

    let resumed = testing::collect_events(UrlCheck, config, Some("41".into()), 1).await.unwrap();
    assert_eq!((resumed[0].0.id.as_str(), resumed[0].1.as_str()), ("test-42-0", "42"));
    assert_eq!(data(&resumed[0].0)["check"], 42);
}

#[tokio::test]
async fn head_requests_are_sent_when_asked() {
    let server = server().await;
    let config = serde_json::json!({"urls": [format!("{}/ok", server.base)], "method": "HEAD", "delay": "1h"});
    let events = testing::collect_events(UrlCheck, config, None, 1).await.unwrap();
    // axum answers HEAD on GET routes without a body.
    assert_eq!(data(&events[0].0)["status_code"], 200);
}

#[tokio::test]
async fn bad_configs_and_cursors_fail_clearly() {
    let err =
        testing::collect_events(UrlCheck, serde_json::json!({"urls": ["gopher://x/"]}), None, 1).await.unwrap_err();
    assert_eq!(err.to_string(), "invalid config: urls[0] \"gopher://x/\": the scheme must be http or https");
    let err = testing::collect_events(UrlCheck, serde_json::json!({}), None, 1).await.unwrap_err();
    assert!(err.to_string().contains("missing field `urls`"), "{err}");
    let config = serde_json::json!({"urls": ["http://127.0.0.1:1/"]});
    let err = testing::collect_events(UrlCheck, config, Some("x".into()), 1).await.unwrap_err();
    assert_eq!(err.to_string(), "resume cursor \"x\" is not a round number");
}
