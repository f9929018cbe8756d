//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// `GET /health/live`: the process is up.
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "pass" }))
}

/// `GET /health/ready`: the store can take reads and writes.
pub async fn ready(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match crate::app::records::ready(&*app.store).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "pass" }))),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "fail", "output": "storage unavailable" })),
            )
        }
    }
}
