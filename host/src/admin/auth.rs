//! The bearer token: what counts as one, and the check, in constant time.
//!
//! A token is the variable's value with surrounding whitespace removed; a
//! value that is empty or only whitespace is no token at all, so it can
//! neither open a non-loopback listen address nor lock loopback out.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::errors::ApiError;

/// The token an environment variable's value gives: trimmed, `None` when
/// blank.
pub(crate) fn token_from(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Whether `a` and `b` are equal, in time that depends only on their
/// lengths: `subtle`'s comparison, which the optimiser cannot turn back
/// into an early exit.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// Refuses (401) a request without `Authorization: Bearer TOKEN` when a token is set.
pub(crate) async fn require_token(
    State(state): State<Arc<super::State>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
        if !ok {
            let mut response =
                ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token")
                    .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::{constant_time_eq, token_from};

    #[test]
    fn a_blank_value_is_no_token() {
        assert_eq!(token_from(None), None);
        assert_eq!(token_from(Some(String::new())), None);
        assert_eq!(token_from(Some("   \t\n".into())), None);
        assert_eq!(token_from(Some(" s3cret \n".into())), Some("s3cret".into()));
    }

    #[test]
    fn compares_tokens() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secre"));
        assert!(constant_time_eq(b"", b""));
    }
}
