//! The bearer token: what counts as one, and the check, in constant time.
//!
//! A token is the variable's value with surrounding whitespace removed; a
//! value that is empty or only whitespace is no token at all, so it can
//! neither open a non-loopback listen address nor lock loopback out.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
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

/// Whether `headers` carry `Authorization: Bearer TOKEN` with `token`; only
/// the bearer scheme counts, spelt in any case.
pub(crate) fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(strip_bearer)
        .map(str::trim)
        .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()))
}

/// The credentials after the `Bearer ` scheme, whose name is matched in
/// any case (RFC 7235 §2.1); `None` for another scheme.
fn strip_bearer(value: &str) -> Option<&str> {
    const SCHEME: &str = "Bearer ";
    let head = value.get(..SCHEME.len())?;
    head.eq_ignore_ascii_case(SCHEME)
        .then(|| &value[SCHEME.len()..])
}

/// Refuses (401) a request without `Authorization: Bearer TOKEN` when a
/// token is set: with JSON, or for the dashboard (`GET /`) with the page
/// that asks for the token (SPEC §15).
pub(crate) async fn require_token(
    State(state): State<Arc<super::State>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.token
        && !bearer_matches(request.headers(), token)
    {
        let page =
            request.uri().path() == "/" && matches!(*request.method(), Method::GET | Method::HEAD);
        let mut response = if page {
            super::dashboard::sign_in_page()
        } else {
            ApiError::new(StatusCode::UNAUTHORIZED, "missing or wrong bearer token").into_response()
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::{bearer_matches, constant_time_eq, token_from};

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

    #[test]
    fn only_the_bearer_scheme_with_the_token_counts() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        assert!(bearer_matches(&with("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(&with("Bearer s3cret  "), "s3cret"));
        assert!(!bearer_matches(&with("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(&with("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(&with("s3cret"), "s3cret"));
        assert!(!bearer_matches(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn the_scheme_is_matched_in_any_case() {
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            h
        };
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            assert!(bearer_matches(&with(&format!("{scheme} s3cret")), "s3cret"));
        }
        // The token itself is still compared exactly.
        assert!(!bearer_matches(&with("bearer S3CRET"), "s3cret"));
        assert!(!bearer_matches(&with("bearers3cret"), "s3cret"));
        assert!(!bearer_matches(&with("béarer s3cret"), "s3cret"));
    }
}
