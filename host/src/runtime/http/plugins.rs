//! `GET /v1/plugins`: every supervised plugin instance with its state, pid,
//! uptime, restarts, last exit and health; `POST /v1/plugins/{name}/enable`
//! closes the circuit of a deactivated instance. Both need `http.token`.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{ApiError, check_bearer};
use crate::runtime::supervisor::{ControlError, Kind, Supervisor};

struct PluginsEndpoint {
    supervisor: Supervisor,
    token: super::LiveToken,
}

pub fn router(supervisor: Supervisor, token: impl Into<super::LiveToken>) -> Router {
    let state = Arc::new(PluginsEndpoint { supervisor, token: token.into() });
    Router::new()
        .route("/v1/plugins", axum::routing::get(list))
        .route("/v1/plugins/{name}/enable", axum::routing::post(enable))
        .with_state(state)
}

async fn list(State(endpoint): State<Arc<PluginsEndpoint>>, headers: HeaderMap) -> Response {
    if let Err(e) = check_bearer(&headers, endpoint.token.get().as_deref()) {
        return e.into_response();
    }
    axum::Json(serde_json::json!({ "plugins": endpoint.supervisor.statuses() })).into_response()
}

#[derive(Debug, Deserialize)]
struct KindQuery {
    /// Which instance when a source and a sink share a name.
    kind: Option<String>,
}

async fn enable(
    State(endpoint): State<Arc<PluginsEndpoint>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<KindQuery>,
) -> Response {
    if let Err(e) = check_bearer(&headers, endpoint.token.get().as_deref()) {
        return e.into_response();
    }
    let kind = match query.kind.as_deref().map(|k| Kind::parse(k).ok_or(k)).transpose() {
        Ok(kind) => kind,
        Err(k) => {
            return ApiError::bad_request(format!("kind {k:?} is not one of source, executor, sink")).into_response();
        }
    };
    match endpoint.supervisor.enable(&name, kind) {
        Ok(instance) => {
            tracing::info!(instance = %name, plugin = %instance.spec().plugin, "enabled by an operator through the API");
            axum::Json(serde_json::json!({ "enabled": name, "status": instance.status() })).into_response()
        }
        Err(e @ ControlError::NotFound(_)) => ApiError::not_found(e.to_string()).into_response(),
        Err(e @ ControlError::Ambiguous(..)) => ApiError::bad_request(e.to_string()).into_response(),
        Err(e) => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()).into_response(),
    }
}
