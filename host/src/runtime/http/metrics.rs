//! `GET /metrics`: every metric in the Prometheus text format. It follows
//! the rule of `GET /v1/stats`: when `http.token` is set, scrapers send it
//! as a bearer token (Prometheus: `authorization: { credentials: ... }`).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use super::check_bearer;
use crate::runtime::metrics::{CONTENT_TYPE, Metrics};

struct MetricsEndpoint {
    metrics: Arc<Metrics>,
    token: super::LiveToken,
}

pub fn router(metrics: Arc<Metrics>, token: impl Into<super::LiveToken>) -> Router {
    let state = Arc::new(MetricsEndpoint { metrics, token: token.into() });
    Router::new().route("/metrics", axum::routing::get(scrape)).with_state(state)
}

async fn scrape(State(endpoint): State<Arc<MetricsEndpoint>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_bearer(&headers, endpoint.token.get().as_deref()) {
        return e.into_response();
    }
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], endpoint.metrics.encode()).into_response()
}
