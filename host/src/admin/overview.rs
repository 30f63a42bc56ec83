//! `GET /overview`: one JSON snapshot of the host for the dashboard,
//! `plughost top` and scripts, and `GET /overview/stream`, the same
//! snapshot as Server-Sent Events every second.
//!
//! Each plugin's entry is built from what `GET /plugins/{name}` says
//! (`routes::describe`, from memory: no file is read) plus the sampler's
//! recent rates and processing times. The stream's snapshot is built once a
//! second by the sampler task ([`share`]) and handed to every client as the
//! same text through a `watch` channel; each client gets one of its own at
//! connect. At most [`MAX_CLIENTS`] streams are open; past that, 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::State as AdminState;
use super::errors::ApiError;
use super::routes::{Shared, describe, names};

/// How often `GET /overview/stream` sends a snapshot (the sampler's period).
const EVERY: Duration = super::sampler::PERIOD;

/// How many `GET /overview/stream` clients may be connected at once.
pub(crate) const MAX_CLIENTS: usize = 64;

/// `GET /overview`: a snapshot built for this request, so that it shows a
/// change the moment it is in effect.
pub(super) async fn overview(State(state): State<Shared>) -> Json<Value> {
    Json(snapshot(&state))
}

/// Builds the snapshot and hands it to every `/overview/stream` client, as
/// one shared text; nothing when none is connected. Called by the sampler
/// task once a period.
pub(super) fn share(state: &AdminState) {
    if state.overview.receiver_count() > 0 {
        state
            .overview
            .send_replace(Arc::from(snapshot(state).to_string()));
    }
}

/// A fresh channel for [`share`]: empty until the first snapshot.
pub(super) fn channel() -> watch::Sender<Arc<str>> {
    watch::channel(Arc::from("")).0
}

/// `GET /overview/stream`: a snapshot at once, then the shared one every
/// second, until the server stops. 503 when [`MAX_CLIENTS`] are connected.
pub(super) async fn overview_stream(
    State(state): State<Shared>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let client = Client::join(state.clone()).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_CLIENTS} overview streams are open already: try again once one ends"),
        )
    })?;
    let mut shared = state.overview.subscribe();
    shared.borrow_and_update();
    let first = Some(snapshot(&state).to_string());
    let reader = Reader {
        stopping: state.stopping.subscribe(),
        _client: client,
        shared,
        first,
        connected: Instant::now(),
    };
    let stream = futures::stream::unfold(reader, |mut r| async move {
        let text = r.next().await?;
        Some((Ok(Event::default().event("overview").data(&*text)), r))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// One `/overview/stream` client's place in the shared snapshots.
struct Reader {
    stopping: watch::Receiver<bool>,
    shared: watch::Receiver<Arc<str>>,
    /// The snapshot built at connect, until sent.
    first: Option<String>,
    connected: Instant,
    /// Holds the client's slot while the stream lives.
    _client: Client,
}

impl Reader {
    /// The next snapshot to send; `None` once the server stops.
    async fn next(&mut self) -> Option<Arc<str>> {
        loop {
            if *self.stopping.borrow_and_update() {
                return None;
            }
            if let Some(first) = self.first.take() {
                return Some(Arc::from(first));
            }
            tokio::select! {
                changed = self.shared.changed() => changed.ok()?,
                // Stopped (or the server is gone).
                _ = self.stopping.changed() => return None,
            }
            // One shared soon after the snapshot sent at connect waits for
            // the next: messages stay about a second apart.
            if self.connected.elapsed() >= EVERY / 2 {
                return Some(self.shared.borrow_and_update().clone());
            }
        }
    }
}

/// One connected `/overview/stream` client, counted while it lives.
struct Client(Shared);

impl Client {
    /// A slot for one more client, `None` when [`MAX_CLIENTS`] are connected.
    fn join(state: Shared) -> Option<Client> {
        join(&state.overview_clients, MAX_CLIENTS).then_some(Client(state))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.overview_clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one more in `open` unless `max` are there already.
fn join(open: &AtomicUsize, max: usize) -> bool {
    open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
        (n < max).then_some(n + 1)
    })
    .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_join_up_to_the_cap_and_leave() {
        let open = AtomicUsize::new(0);
        assert!((0..MAX_CLIENTS).all(|_| join(&open, MAX_CLIENTS)));
        assert!(!join(&open, MAX_CLIENTS));
        open.fetch_sub(1, Ordering::SeqCst);
        assert!(join(&open, MAX_CLIENTS));
    }
}
