//! A JSON body extractor whose rejections are OpenAI-style errors: malformed JSON and wrong
//! types get a 400 with serde's explanation and the path of the field, an oversized body 413.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// `Json<T>` with OpenAI errors.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large(state.max_body_bytes)
            } else {
                ApiError::bad_request(format!("could not read the request body: {e}"))
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON, reporting the failing field's path as `param`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let kind = if inner.is_syntax() || inner.is_eof() {
            "We could not parse the JSON body of your request"
        } else {
            "Invalid request body"
        };
        let err = ApiError::bad_request(format!("{kind}: {inner}"));
        if path.is_empty() || path == "." {
            err
        } else {
            err.with_param(path)
        }
    })
}
