//! `GET /health`: 200 once the model is loaded, 503 before.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;

use crate::state::AppState;

/// Health probe (never authenticated).
pub async fn health(State(state): State<AppState>) -> impl IntoResponse {
    if state.engine.get().is_some() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ok"})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"status": "loading"})),
        )
    }
}
