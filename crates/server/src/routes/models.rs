//! `GET /v1/models` and `GET /v1/models/{id}` in OpenAI's list shape.

use axum::extract::{Path, State};
use axum::Json;

use crate::error::ApiError;
use crate::openai::response::{ModelCard, ModelList};
use crate::state::AppState;

fn card(state: &AppState, id: &str) -> ModelCard {
    ModelCard {
        id: id.to_string(),
        object: "model",
        created: state.started,
        owned_by: "vlm-server",
    }
}

/// Lists the served model names.
pub async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list",
        data: state.served_names.iter().map(|n| card(&state, n)).collect(),
    })
}

/// One served model, or 404 `model_not_found`.
pub async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ModelCard>, ApiError> {
    if state.is_served(&id) {
        Ok(Json(card(&state, &id)))
    } else {
        Err(ApiError::model_not_found(&id))
    }
}
