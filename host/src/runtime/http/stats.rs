//! `GET /v1/stats`: what the pipeline did with each source's events and what
//! each sink delivered, since the host started (JSON).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::check_bearer;

type Snapshot = dyn Fn() -> serde_json::Value + Send + Sync;

struct StatsEndpoint {
    snapshot: Box<Snapshot>,
    token: super::LiveToken,
}

pub fn router(
    snapshot: impl Fn() -> serde_json::Value + Send + Sync + 'static,
    token: impl Into<super::LiveToken>,
) -> Router {
    let state = Arc::new(StatsEndpoint { snapshot: Box::new(snapshot), token: token.into() });
    Router::new().route("/v1/stats", axum::routing::get(stats)).with_state(state)
}

async fn stats(State(endpoint): State<Arc<StatsEndpoint>>, headers: HeaderMap) -> Response {
    match check_bearer(&headers, endpoint.token.get().as_deref()) {
        Ok(()) => axum::Json((endpoint.snapshot)()).into_response(),
        Err(e) => e.into_response(),
    }
}
