//! `GET /overview`: one JSON snapshot of the host for the dashboard,
//! `plughost top` and scripts, and `GET /overview/stream`, the same
//! snapshot as Server-Sent Events every second.
//!
//! Each plugin's entry is built from what `GET /plugins/{name}` says
//! (`routes::describe`) plus the sampler's recent rates and processing times.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};

use super::State as AdminState;
use super::routes::{Shared, describe, names};

/// How often `GET /overview/stream` sends a snapshot.
const EVERY: Duration = Duration::from_secs(1);

/// `GET /overview`.
pub(super) async fn overview(State(state): State<Shared>) -> Json<Value> {
    Json(snapshot(&state))
}

/// `GET /overview/stream`: a snapshot at once, then every second, until the
/// server stops.
pub(super) async fn overview_stream(
    State(state): State<Shared>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stopping = state.stopping.subscribe();
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures::stream::unfold(
        (state, every, stopping),
        |(state, mut every, mut stopping)| async move {
            if *stopping.borrow_and_update() {
                return None;
            }
            tokio::select! {
                _ = every.tick() => {}
                // Stopped (or the server is gone).
                _ = stopping.changed() => return None,
            }
            let event = Event::default()
                .event("overview")
                .data(snapshot(&state).to_string());
            Some((Ok(event), (state, every, stopping)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// What `GET /overview` answers.
pub(super) fn snapshot(state: &AdminState) -> Value {
    let plugins: Vec<Value> = names(state)
        .iter()
        .filter_map(|name| plugin(state, name))
        .collect();
    let status = if state.shutting_down.load(Ordering::SeqCst) {
        "shutting_down"
    } else {
        "ok"
    };
    json!({
        "status": status,
        "uptime_ms": u64::try_from(state.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "version": env!("CARGO_PKG_VERSION"),
        "plugins": plugins,
        "stream_lost": state.stream_lost.load(Ordering::Relaxed),
        "dead_letters": dead_letters(state),
        "cluster": state.host.cluster_status().map(|c| json!(c)),
    })
}

/// How many dead letters are kept and were ever recorded, and the newest
/// few (newest first), each summed up without its event's payload
/// ([`crate::dead_letters::DeadLetter::summary`]): the snapshot is resent
/// every second, and a payload can be 1 MiB.
fn dead_letters(state: &AdminState) -> Value {
    let store = state.host.dead_letters();
    let (kept, total) = store.counts();
    let recent: Vec<Value> = store
        .list(None)
        .iter()
        .rev()
        .take(RECENT_DEAD_LETTERS)
        .map(|letter| letter.summary())
        .collect();
    json!({"kept": kept, "total": total, "recent": recent})
}

/// How many dead letters the overview carries.
const RECENT_DEAD_LETTERS: usize = 20;

/// One plugin's entry; `None` for a plugin the host no longer knows.
fn plugin(state: &AdminState, name: &str) -> Option<Value> {
    let d = describe(state, name)?;
    let counts = &d["counts"];
    let n = |key: &str| counts[key].as_u64().unwrap_or(0);
    let handled = n("acked") + n("forwarded") + n("retried") + n("dead_lettered");
    let recent = state
        .host
        .stats(name)
        .map(|stats| state.sampler.recent(name, &stats));
    let last_reload = d["reloads"].as_array().and_then(|r| r.last()).map(|r| {
        json!({
            "at": r["at"], "version": r["version"], "result": r["result"], "error": r["error"],
        })
    });
    Some(json!({
        "name": name,
        "version": d["version"],
        "runtime": d["runtime"],
        "state": d["state"],
        "enabled": d["enabled"],
        "queue_depth": d["queue_depth"],
        "events_per_s": recent.as_ref().map_or(0.0, |r| round(r.events_per_s)),
        "errors": d["errors"],
        "errors_per_s": recent.as_ref().map_or(0.0, |r| round(r.errors_per_s)),
        "handled": handled,
        "p50_ms": recent.as_ref().and_then(|r| r.p50_ms).map(round),
        "p99_ms": recent.as_ref().and_then(|r| r.p99_ms).map(round),
        "restarts": d["restarts"],
        // A start or reload error first, else what the last dead letter said.
        "last_error": if d["last_error"].is_null() {
            d["last_dead_letter"]["error"].clone()
        } else {
            d["last_error"].clone()
        },
        "last_reload": last_reload,
        "rollout": d["rollout"],
    }))
}

/// `x` to three decimals: enough for a rate or a time in ms, and short.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
