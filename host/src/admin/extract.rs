//! Request guards of the admin endpoint that answer in JSON: a path segment
//! decoded or refused as `{"error": …}`, and a body refused by its declared
//! length before it is read.

use axum::extract::{FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::BODY_LIMIT;
use super::errors::ApiError;

/// One path parameter (a plugin name, a topic), percent-decoded; a segment
/// that is not UTF-8 once decoded is a JSON 400 like every other error.
#[derive(Debug)]
pub(crate) struct Segment(pub(crate) String);

impl<S: Send + Sync> FromRequestParts<S> for Segment {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(s)) => Ok(Segment(s)),
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// Answers 413 at once for a request that declares a body over the limit,
/// instead of waiting for bytes that may never come.
pub(crate) async fn limit_declared_length(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {BODY_LIMIT} bytes"),
        )
        .into_response();
    }
    next.run(request).await
}
