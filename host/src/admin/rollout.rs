//! The rollout routes (SPEC §13): `POST /plugins/{name}/promote`,
//! `POST /plugins/{name}/rollback` and `POST /plugins/{name}/rollout` with
//! `{"percent": N}`. Each asks the host for the change, answers the plugin's
//! description once it is in effect, and maps a refused verb
//! ([`RolloutError`]) to its status: 404 for a plugin the host does not
//! know, 400 for a share out of 1 to 100, 409 for every refusal that comes
//! from the plugin's state (no rollout, not a gradual one, a candidate that
//! cannot take over).

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::Value;

use super::State as AdminState;
use super::errors::ApiError;
use super::extract::Segment;
use super::routes::{Shared, body_error, check_name, describe, refuse_when_shutting_down, unknown};
use crate::rollout::RolloutError;

/// The shape of `POST /plugins/{name}/rollout`'s body, for error messages.
const PERCENT_BODY: &str = r#"{"percent": N} with N from 1 to 100"#;

/// `POST /plugins/{name}/promote`: the candidate becomes the running version.
pub(super) async fn promote(
    State(state): State<Shared>,
    Segment(name): Segment,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    refuse_when_shutting_down(&state)?;
    let done = state.host.promote(&name).await;
    settle(&state, &name, done)
}

/// `POST /plugins/{name}/rollback`: the candidate is discarded.
pub(super) async fn rollback(
    State(state): State<Shared>,
    Segment(name): Segment,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    refuse_when_shutting_down(&state)?;
    let done = state.host.rollback(&name).await;
    settle(&state, &name, done)
}

/// `POST /plugins/{name}/rollout` with `{"percent": N}`: a gradual
/// candidate's new share (100 promotes it).
pub(super) async fn set_percent(
    State(state): State<Shared>,
    Segment(name): Segment,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    let percent = percent_from(&body.map_err(body_error)?)?;
    refuse_when_shutting_down(&state)?;
    let done = state.host.set_rollout_percent(&name, percent).await;
    settle(&state, &name, done)
}

/// The answer once the host has carried out (or refused) a verb: the
/// plugin's description as `GET /plugins/{name}` gives it, or the refusal.
fn settle(
    state: &AdminState,
    name: &str,
    done: Result<(), RolloutError>,
) -> Result<Json<Value>, ApiError> {
    match done {
        Ok(()) => describe(state, name).map(Json).ok_or_else(|| unknown(name)),
        Err(e) => {
            let known = state.host.catalog().find(name).is_some();
            Err(refusal(&e, known))
        }
    }
}

/// The JSON error for a refused verb. `known`: the host's catalog knows the
/// plugin, which is then stopped or disabled rather than unknown.
fn refusal(e: &RolloutError, known: bool) -> ApiError {
    match e {
        RolloutError::UnknownPlugin(name) if known => ApiError::new(
            StatusCode::CONFLICT,
            format!("plugin `{name}` is not running, so it has no rollout in progress"),
        ),
        RolloutError::UnknownPlugin(name) => unknown(name),
        RolloutError::Percent(_) => ApiError::bad_request(e.to_string()),
        // The request is sound and the host well: the plugin's state stands
        // in the way, and the operator changes it (a new save, a rollback).
        // A 5xx would call the host broken and invite retries that fail alike.
        RolloutError::NoRollout(_)
        | RolloutError::NotGradual { .. }
        | RolloutError::Candidate { .. } => ApiError::new(StatusCode::CONFLICT, e.to_string()),
    }
}

/// The share asked for by the body `{"percent": N}`. The range (1 to 100)
/// is the host's to check; a number that is not even a `u32` is refused here
/// with the host's words.
fn percent_from(body: &[u8]) -> Result<u32, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(format!(
            "the body is empty: send {PERCENT_BODY}"
        )));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body is not JSON: {e}; send {PERCENT_BODY}"))
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(format!(
            "the body must be a JSON object, found `{value}`: send {PERCENT_BODY}"
        )));
    };
    if let Some(other) = fields.keys().find(|k| *k != "percent") {
        return Err(ApiError::bad_request(format!(
            "unknown field `{other}`: send {PERCENT_BODY}"
        )));
    }
    let percent = fields.get("percent").ok_or_else(|| {
        ApiError::bad_request(format!("`percent` is missing: send {PERCENT_BODY}"))
    })?;
    if let Some(n) = percent.as_u64() {
        return u32::try_from(n).map_err(|_| ApiError::bad_request(share_out_of_range(percent)));
    }
    if percent.is_i64() {
        return Err(ApiError::bad_request(share_out_of_range(percent)));
    }
    Err(ApiError::bad_request(format!(
        "`percent` must be a whole number from 1 to 100, found `{percent}`"
    )))
}

/// The host's words for a share out of range, for a number too large or
/// too small to hand to it.
fn share_out_of_range(percent: &Value) -> String {
    format!("a rollout's share is 1 to 100 percent, found {percent}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Strategy;

    fn refused(body: &str) -> String {
        let e = percent_from(body.as_bytes()).expect_err(body);
        assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body}");
        e.message
    }

    #[test]
    fn the_body_gives_the_share() {
        assert_eq!(percent_from(br#"{"percent": 25}"#), Ok(25));
        assert_eq!(percent_from(b" {\"percent\":100}\n"), Ok(100));
        // The host checks the range and answers with its own words.
        assert_eq!(percent_from(br#"{"percent": 0}"#), Ok(0));
        assert_eq!(percent_from(br#"{"percent": 250}"#), Ok(250));
    }

    #[test]
    fn a_bad_body_is_refused_saying_what_is_wrong() {
        assert!(refused("").contains("the body is empty"));
        assert!(refused("  \n").contains("the body is empty"));
        assert!(refused("{percent: 5}").contains("the body is not JSON"));
        assert!(refused("25").contains("must be a JSON object, found `25`"));
        assert!(refused("{}").contains("`percent` is missing"));
        assert!(refused(r#"{"percent": 5, "pct": 5}"#).contains("unknown field `pct`"));
        assert!(refused(r#"{"percent": "10"}"#).contains("whole number from 1 to 100"));
        assert!(refused(r#"{"percent": 12.5}"#).contains("found `12.5`"));
        assert!(refused(r#"{"percent": null}"#).contains("whole number"));
        assert_eq!(
            refused(r#"{"percent": -1}"#),
            "a rollout's share is 1 to 100 percent, found -1"
        );
        assert!(refused(r#"{"percent": 4294967296}"#).contains("1 to 100 percent"));
        // Every message shows the body to send.
        assert!(refused("{}").contains(r#"{"percent": N} with N from 1 to 100"#));
    }

    #[test]
    fn refusals_map_to_their_statuses() {
        let status = |e: RolloutError, known: bool| refusal(&e, known).status;
        let unknown = RolloutError::UnknownPlugin("echo".into());
        assert_eq!(status(unknown.clone(), false), StatusCode::NOT_FOUND);
        assert_eq!(refusal(&unknown, false).message, "no plugin named `echo`");
        // Known to the catalog but not running: it has no rollout.
        assert_eq!(status(unknown.clone(), true), StatusCode::CONFLICT);
        assert!(refusal(&unknown, true).message.contains("is not running"));
        assert_eq!(
            status(RolloutError::NoRollout("echo".into()), true),
            StatusCode::CONFLICT
        );
        let not_gradual = RolloutError::NotGradual {
            plugin: "echo".into(),
            strategy: Strategy::Shadow,
        };
        assert_eq!(status(not_gradual, true), StatusCode::CONFLICT);
        let candidate = RolloutError::Candidate {
            plugin: "echo".into(),
            error: "main.lua:3:1: boom (in init)".into(),
        };
        assert_eq!(status(candidate.clone(), true), StatusCode::CONFLICT);
        assert!(
            refusal(&candidate, true)
                .message
                .contains("main.lua:3:1: boom")
        );
        assert_eq!(
            status(RolloutError::Percent(0), true),
            StatusCode::BAD_REQUEST
        );
    }
}
