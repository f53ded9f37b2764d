//! `GET /healthz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::app::AppState;

/// 200 `{"status":"ok"}` once the database answers, 503 `{"status":"unavailable"}` while not.
pub async fn healthz(State(app): State<AppState>) -> (StatusCode, Json<Value>) {
    match app.tenantry.db.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ok" }))),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable" })),
            )
        }
    }
}
