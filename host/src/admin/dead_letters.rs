//! The dead-letter routes (SPEC §15): `GET /dead_letters[?plugin=NAME]`
//! lists the kept dead letters, oldest first; `POST
//! /dead_letters/{id}/replay` delivers one's event again to its plugin. A
//! refused replay ([`ReplayError`]) maps to its status: 404 for an unknown
//! id, 409 for a truncated letter or a plugin that does not take events,
//! 503 while the host shuts down.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::errors::ApiError;
use super::extract::Segment;
use super::routes::{Shared, check_name, refuse_when_shutting_down};
use crate::dead_letters::ReplayError;

/// `GET /dead_letters[?plugin=NAME]`: the kept letters, oldest first.
pub(super) async fn list(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let plugin = plugin_filter(query.as_deref())?;
    if let Some(name) = &plugin {
        check_name(name)?;
    }
    let letters = state.host.dead_letters().list(plugin.as_deref());
    // Written straight to the body: a JSON tree of every letter would
    // cost many times the letters' size.
    let mut body = Vec::with_capacity(letters.iter().map(|l| l.size() + 256).sum::<usize>() + 2);
    body.push(b'[');
    for (i, letter) in letters.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        letter.write_json(&mut body);
    }
    body.push(b']');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// `POST /dead_letters/{id}/replay`: the letter's event goes to its plugin again.
pub(super) async fn replay(
    State(state): State<Shared>,
    Segment(id): Segment,
) -> Result<Json<Value>, ApiError> {
    refuse_when_shutting_down(&state)?;
    match state.host.replay_dead_letter(&id).await {
        Ok(done) => Ok(Json(json!({
            "id": done.id,
            "plugin": done.plugin,
            "event_id": done.event_id,
        }))),
        Err(e) => Err(ApiError::new(status(&e), e.to_string())),
    }
}

/// The status a refused replay answers.
fn status(e: &ReplayError) -> StatusCode {
    match e {
        ReplayError::Unknown(_) => StatusCode::NOT_FOUND,
        ReplayError::Truncated(_)
        | ReplayError::NotRunning { .. }
        | ReplayError::QueueFull { .. } => StatusCode::CONFLICT,
        ReplayError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// `?plugin=NAME` (or nothing); any other parameter is an error.
fn plugin_filter(query: Option<&str>) -> Result<Option<String>, ApiError> {
    let mut plugin = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair.split_once('=') {
            Some(("plugin", name)) => plugin = Some(decode(name)),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query `{pair}`: the only parameter is `plugin=NAME`"
                )));
            }
        }
    }
    Ok(plugin)
}

/// A query value with `%XX` escapes and `+` decoded (plugin names need
/// none, but a client may escape anyway).
fn decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&value[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                    continue;
                }
                Err(_) => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_filter_is_the_only_parameter() {
        assert_eq!(plugin_filter(None).unwrap(), None);
        assert_eq!(plugin_filter(Some("")).unwrap(), None);
        assert_eq!(
            plugin_filter(Some("plugin=orders")).unwrap().as_deref(),
            Some("orders")
        );
        assert_eq!(
            plugin_filter(Some("plugin=my%2Dplugin"))
                .unwrap()
                .as_deref(),
            Some("my-plugin")
        );
        let e = plugin_filter(Some("name=x")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("`name=x`"), "{}", e.message);
    }

    #[test]
    fn a_bad_escape_is_kept_as_written() {
        assert_eq!(decode("a%zz"), "a%zz");
        assert_eq!(decode("a%2"), "a%2");
        assert_eq!(decode("a%41"), "aA");
    }

    #[test]
    fn refusals_map_to_their_status() {
        assert_eq!(
            status(&ReplayError::Unknown("x".into())),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(&ReplayError::Truncated("x".into())),
            StatusCode::CONFLICT
        );
        let not_running = ReplayError::NotRunning {
            id: "x".into(),
            plugin: "p".into(),
            state: "disabled",
        };
        assert_eq!(status(&not_running), StatusCode::CONFLICT);
        assert!(not_running.to_string().contains("`p` is disabled"));
        assert_eq!(
            status(&ReplayError::ShuttingDown),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
