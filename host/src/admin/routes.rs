//! The routes and their handlers: each reads the host, or asks it for a
//! change and answers once the change is in effect. The rollout verbs'
//! handlers are in `admin::rollout`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::extract::Segment;
use super::{BODY_LIMIT, State as AdminState};
use crate::PublishError;
use crate::reload::{ReloadOutcome, ToggleError};

/// The handlers' shared state, as axum hands it to them.
pub(super) type Shared = Arc<AdminState>;

pub(crate) fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(super::dashboard::page))
        .route("/health", get(health))
        .route("/plugins", get(plugins))
        .route("/plugins/{name}", get(plugin))
        .route("/plugins/{name}/reload", post(reload))
        .route("/plugins/{name}/enable", post(enable))
        .route("/plugins/{name}/disable", post(disable))
        .route("/plugins/{name}/promote", post(super::rollout::promote))
        .route("/plugins/{name}/rollback", post(super::rollout::rollback))
        .route("/plugins/{name}/rollout", post(super::rollout::set_percent))
        .route("/events/{topic}", post(publish))
        .route("/metrics", get(metrics))
        .route("/dead_letters", get(super::dead_letters::list))
        .route(
            "/dead_letters/{id}/replay",
            post(super::dead_letters::replay),
        )
        .route("/overview", get(super::overview::overview))
        .route("/overview/stream", get(super::overview::overview_stream))
        .route("/stream", get(super::stream::stream))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::auth::require_token,
        ))
        .layer(axum::middleware::from_fn(
            super::extract::limit_declared_length,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::guard::browser_rules,
        ))
        .with_state(state)
}

async fn health(State(state): State<Shared>) -> Response {
    let plugins: Map<String, Value> = names(&state)
        .into_iter()
        .map(|n| {
            let s = plugin_state(&state, &n);
            (n, json!(s))
        })
        .collect();
    let mut body = json!({"plugins": plugins});
    if let Some(cluster) = state.host.cluster_status() {
        body["cluster"] = json!(cluster);
    }
    if state.shutting_down.load(Ordering::SeqCst) {
        body["status"] = json!("shutting_down");
        (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
    } else {
        body["status"] = json!("ok");
        Json(body).into_response()
    }
}

async fn plugins(State(state): State<Shared>) -> Json<Value> {
    Json(Value::Array(
        names(&state)
            .iter()
            .filter_map(|n| describe(&state, n))
            .collect(),
    ))
}

async fn plugin(
    State(state): State<Shared>,
    Segment(name): Segment,
) -> Result<Json<Value>, ApiError> {
    check_name(&name)?;
    describe(&state, &name)
        .map(Json)
        .ok_or_else(|| unknown(&name))
}

async fn reload(State(state): State<Shared>, Segment(name): Segment) -> Result<Response, ApiError> {
    check_name(&name)?;
    refuse_when_shutting_down(&state)?;
    let outcome = match state.host.reload_plugin(&name).await {
        Some(o) => o,
        None => {
            // Known but not running (failed to start, or stopped): try its folder again.
            let dir = state
                .host
                .plugin_folder(&name)
                .ok_or_else(|| unknown(&name))?;
            state.host.reload_folder(&dir, true).await
        }
    };
    Ok(answer(&state, &name, outcome, json!({})))
}

/// `POST /plugins/{name}/enable[?persist=true]`.
async fn enable(
    State(state): State<Shared>,
    Segment(name): Segment,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    toggle(&state, &name, true, query.as_deref()).await
}

/// `POST /plugins/{name}/disable[?persist=true]`.
async fn disable(
    State(state): State<Shared>,
    Segment(name): Segment,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    toggle(&state, &name, false, query.as_deref()).await
}

async fn toggle(
    state: &Shared,
    name: &str,
    enabled: bool,
    query: Option<&str>,
) -> Result<Response, ApiError> {
    check_name(name)?;
    let persist = persist_flag(query)?;
    refuse_when_shutting_down(state)?;
    let outcome = state
        .host
        .set_enabled(name, enabled, persist)
        .await
        .map_err(|e| match e {
            ToggleError::Unknown(_) => unknown(name),
            e @ (ToggleError::Io { .. } | ToggleError::Edit(_)) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            ToggleError::ShuttingDown => shutting_down(),
        })?;
    Ok(answer(
        state,
        name,
        outcome,
        json!({"enabled": enabled, "persisted": persist}),
    ))
}

/// `?persist=true|false` (or nothing); any other parameter is an error.
fn persist_flag(query: Option<&str>) -> Result<bool, ApiError> {
    let mut persist = false;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        persist = match pair.split_once('=').unwrap_or((pair, "true")) {
            ("persist", "true" | "1") => true,
            ("persist", "false" | "0") => false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown query `{pair}`: the only parameter is `persist=true|false`"
                )));
            }
        };
    }
    Ok(persist)
}

/// The answer to a change: what happened and the plugin's state now, with
/// `extra` fields. A refused change (the plugin failed to load or `init`)
/// is 422 with the positioned error; the running version, if any, goes on.
fn answer(state: &AdminState, name: &str, outcome: ReloadOutcome, extra: Value) -> Response {
    let (word, error) = match &outcome {
        ReloadOutcome::Reloaded => ("reloaded", None),
        ReloadOutcome::Started => ("started", None),
        ReloadOutcome::Stopped => ("stopped", None),
        ReloadOutcome::Unchanged => ("unchanged", None),
        ReloadOutcome::Failed(e) => ("failed", Some(e.clone())),
    };
    if error.is_some() || matches!(outcome, ReloadOutcome::Reloaded | ReloadOutcome::Started) {
        state.set_error(name, error.clone());
    }
    let mut body = json!({"plugin": name, "outcome": word, "state": plugin_state(state, name)});
    if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
        body.extend(extra);
    }
    match error {
        Some(e) => {
            body["error"] = json!(e);
            (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response()
        }
        None => Json(body).into_response(),
    }
}

/// `GET /metrics`: every metric as Prometheus text.
async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.host.metrics_text(),
    )
        .into_response()
}

async fn publish(
    State(state): State<Shared>,
    Segment(topic): Segment,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(body_error)?;
    let payload: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))?
    };
    // Shutdown stops taking input, as `--input` does: the drain has an end.
    refuse_when_shutting_down(&state)?;
    match state.host.publish(&topic, payload).await {
        Ok(id) => Ok(Json(json!({"id": id}))),
        Err(e @ (PublishError::Topic(_) | PublishError::Reserved(_))) => {
            Err(ApiError::bad_request(e.to_string()))
        }
    }
}

/// A body that could not be read, as a JSON error (413 over the limit).
pub(super) fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            format!("the body is larger than {BODY_LIMIT} bytes"),
        )
    } else {
        ApiError::new(status, r.body_text())
    }
}

/// Refuses (400) a name no plugin can have, before any lookup.
pub(super) fn check_name(name: &str) -> Result<(), ApiError> {
    if crate::manifest::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "`{name}` is not a plugin name: use 1 to 64 lowercase letters, digits, `_` and `-`, starting with a letter or digit"
        )))
    }
}

/// 503: the host drains and stops; it takes no change and no event.
fn shutting_down() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the host is shutting down".to_owned(),
    )
}

/// Refuses a change or an event once shutdown began.
pub(super) fn refuse_when_shutting_down(state: &AdminState) -> Result<(), ApiError> {
    if state.shutting_down.load(Ordering::SeqCst) {
        Err(shutting_down())
    } else {
        Ok(())
    }
}

/// 404 for a plugin the host does not know.
pub(super) fn unknown(name: &str) -> ApiError {
    ApiError::not_found(format!("no plugin named `{name}`"))
}

/// Every plugin name: the catalog's, then running ones it does not know (added live).
pub(super) fn names(state: &AdminState) -> Vec<String> {
    let mut names: Vec<String> = state
        .host
        .catalog()
        .entries
        .iter()
        .filter_map(|e| e.name().map(str::to_owned))
        // A folder renamed since start lists under its new name only.
        .filter(|n| state.host.plugin_folder(n).is_some())
        .collect();
    let listed: std::collections::HashSet<String> = names.iter().cloned().collect();
    for n in state.host.running() {
        if !listed.contains(&n) {
            names.push(n);
        }
    }
    names
}

fn plugin_state(state: &AdminState, name: &str) -> &'static str {
    if let Some(stats) = state.host.stats(name) {
        // `running`, `suspended`, or `failed` after too many crashes.
        stats.health().as_str()
    } else if state.host.is_enabled(name) == Some(false) {
        "disabled"
    } else if state.last_error(name).is_some()
        || state
            .host
            .catalog()
            .find(name)
            .is_some_and(|e| !e.errors.is_empty())
    {
        "failed"
    } else {
        "stopped"
    }
}

/// What `GET /plugins/{name}` answers, `None` for an unknown plugin.
pub(super) fn describe(state: &AdminState, name: &str) -> Option<Value> {
    let running = state
        .host
        .inner
        .plugins
        .named(name)
        .map(|v| (v.def, v.queue_depth, v.stats));
    let entry = state.host.catalog().find(name);
    let def = match &running {
        Some((def, _, _)) => Some(def.clone()),
        // Not running: known only while some folder still holds it.
        None => {
            state.host.plugin_folder(name)?;
            entry?.def.clone()
        }
    };
    let mut last_error = state.last_error(name);
    if last_error.is_none() {
        last_error = entry.and_then(|e| e.errors.first().cloned());
    }
    let counts = running.as_ref().map(|(_, _, s)| {
        json!({
            "acked": s.acked.load(Ordering::Relaxed),
            "forwarded": s.forwarded.load(Ordering::Relaxed),
            "retried": s.retried.load(Ordering::Relaxed),
            "dead_lettered": s.dead_lettered.load(Ordering::Relaxed),
            "timer_errors": s.timer_errors.load(Ordering::Relaxed),
            "errors": s.errors.load(Ordering::Relaxed),
            "restarts": s.restarts.load(Ordering::Relaxed),
        })
    });
    Some(json!({
        "name": name,
        "version": def.as_ref().map(|d| d.manifest.version.to_string()),
        "runtime": def.as_ref().map(|d| d.runtime.to_string()),
        "state": plugin_state(state, name),
        "subscriptions": def.as_ref().map(|d| {
            d.manifest.subscriptions.iter().map(|p| p.as_str().to_owned()).collect::<Vec<_>>()
        }).unwrap_or_default(),
        "queue_depth": running.as_ref().map_or(0, |(_, q, _)| *q),
        "counts": counts.unwrap_or_else(|| json!({
            "acked": 0, "forwarded": 0, "retried": 0, "dead_lettered": 0, "timer_errors": 0,
            "errors": 0, "restarts": 0,
        })),
        "errors": running.as_ref().map_or(0, |(_, _, s)| s.errors.load(Ordering::Relaxed)),
        "consecutive_errors": running
            .as_ref()
            .map_or(0, |(_, _, s)| s.consecutive_errors.load(Ordering::Relaxed)),
        "restarts": running.as_ref().map_or(0, |(_, _, s)| s.restarts.load(Ordering::Relaxed)),
        "last_crash": running.as_ref().and_then(|(_, _, s)| {
            s.last_crash.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }),
        "enabled": state.host.is_enabled(name),
        "last_error": last_error,
        "last_dead_letter": running.as_ref().and_then(|(_, _, s)| {
            s.last_dead_letter
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|(event, error)| json!({"event": event, "error": error}))
        }),
        "last_timer_error": running.as_ref().and_then(|(_, _, s)| {
            s.last_timer_error.lock().unwrap_or_else(|p| p.into_inner()).clone()
        }),
        "rollout": state.host.rollout_status(name),
        "reloads": state.host.reload_history(name).iter().map(|r| json!({
            "at": humantime::format_rfc3339_millis(r.at).to_string(),
            "version": r.version,
            "config_only": r.config_only,
            "result": if r.error.is_some() { "error" } else { "ok" },
            "error": r.error,
        })).collect::<Vec<_>>(),
    }))
}
