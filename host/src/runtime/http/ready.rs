//! `GET /readyz`: whether this host can take work — its event store is open,
//! its HTTP listener is up and it is not shutting down. 200 with every check
//! `ok`; 503 naming each check that fails, so a load balancer stops sending
//! traffic while the host drains. `GET /healthz` stays "process alive".

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What readiness is made of; components flip their part.
#[derive(Clone)]
pub struct Readiness(Arc<Inner>);

struct Inner {
    store_open: Box<dyn Fn() -> bool + Send + Sync>,
    /// Listeners serving now (two for a moment while a reload moves it).
    listening: std::sync::atomic::AtomicUsize,
    shutting_down: AtomicBool,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("checks", &self.checks()).finish()
    }
}

impl Readiness {
    /// `store_open` tells, when asked, whether the event store still takes writes.
    pub fn new(store_open: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(Inner {
            store_open: Box::new(store_open),
            listening: std::sync::atomic::AtomicUsize::new(0),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// A listener started (`true`) or stopped serving (`false`).
    pub fn set_listening(&self, listening: bool) {
        if listening {
            self.0.listening.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = self.0.listening.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    pub fn set_shutting_down(&self) {
        self.0.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Each check with `None` when it passes, else why not.
    pub fn checks(&self) -> [(&'static str, Option<&'static str>); 3] {
        let fails = |ok: bool, why| if ok { None } else { Some(why) };
        [
            ("store", fails((self.0.store_open)(), "the event store is closed")),
            ("http", fails(self.0.listening.load(Ordering::Relaxed) > 0, "the HTTP listener is not serving")),
            ("shutdown", fails(!self.0.shutting_down.load(Ordering::Relaxed), "the host is shutting down")),
        ]
    }

    pub fn is_ready(&self) -> bool {
        self.checks().iter().all(|(_, failed)| failed.is_none())
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new().route("/readyz", axum::routing::get(move || async move { answer(&readiness) }))
}

/// `{"ready": bool, "checks": {"store": "ok" | why, ...}, "not_ready": [names]}`.
fn answer(readiness: &Readiness) -> Response {
    let checks = readiness.checks();
    let not_ready: Vec<&str> = checks.iter().filter(|(_, f)| f.is_some()).map(|(name, _)| *name).collect();
    let body = serde_json::json!({
        "ready": not_ready.is_empty(),
        "checks": checks.iter().map(|(name, f)| (name.to_string(), serde_json::Value::from(f.unwrap_or("ok")))).collect::<serde_json::Map<_, _>>(),
        "not_ready": not_ready,
    });
    let status = if not_ready.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    async fn get(readiness: &Readiness) -> (StatusCode, serde_json::Value) {
        let response = answer(readiness);
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn ready_only_when_every_check_passes_and_the_body_names_what_fails() {
        let store = Arc::new(AtomicBool::new(true));
        let open = Arc::clone(&store);
        let readiness = Readiness::new(move || open.load(Ordering::Relaxed));
        let (status, body) = get(&readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["not_ready"], serde_json::json!(["http"]));

        readiness.set_listening(true);
        let (status, body) = get(&readiness).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            serde_json::json!({"ready": true, "checks": {"store": "ok", "http": "ok", "shutdown": "ok"}, "not_ready": []})
        );

        readiness.set_shutting_down();
        store.store(false, Ordering::Relaxed);
        let (status, body) = get(&readiness).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["ready"], false);
        assert_eq!(body["not_ready"], serde_json::json!(["store", "shutdown"]));
        assert_eq!(body["checks"]["shutdown"], "the host is shutting down");
        assert_eq!(body["checks"]["store"], "the event store is closed");
    }
}
