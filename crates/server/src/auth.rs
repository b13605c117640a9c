//! Bearer-token authentication with constant-time comparison.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Whether `presented` equals one of `keys`; every key is compared in constant time.
pub fn key_matches(keys: &[String], presented: &str) -> bool {
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        ok |= k.as_bytes().ct_eq(presented.as_bytes());
    }
    ok.into()
}

/// Middleware: when keys are configured, requires `Authorization: Bearer KEY`.
pub async fn require_api_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if state.api_keys.is_empty() {
        return next.run(req).await;
    }
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token = header.and_then(|h| {
        h.strip_prefix("Bearer ")
            .or_else(|| h.strip_prefix("bearer "))
    });
    match token {
        Some(t) if key_matches(&state.api_keys, t.trim()) => next.run(req).await,
        Some(_) => ApiError::unauthorized("Incorrect API key provided.").into_response(),
        None => ApiError::unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer KEY`.",
        )
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::key_matches;

    #[test]
    fn matches_exactly_and_case_sensitively() {
        let keys = vec!["sk-one".to_string(), "sk-two".to_string()];
        assert!(key_matches(&keys, "sk-two"));
        assert!(!key_matches(&keys, "SK-TWO"));
        assert!(!key_matches(&keys, "sk-tw"));
        assert!(!key_matches(&keys, ""));
        assert!(!key_matches(&[], "sk-one"));
    }
}
