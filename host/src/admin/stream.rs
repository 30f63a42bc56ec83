//! `GET /stream?topics=PATTERN[,PATTERN…]`: the bus, live, as Server-Sent
//! Events (SPEC §15).
//!
//! Each request subscribes to the bus as `run --tap` does; a pump task moves
//! events from the subscription (which never makes the bus wait) into a
//! buffer with `try_reserve`, serialized exactly as `--tap` prints them.
//! The buffer is bounded twice: [`BUFFER`] messages and [`MAX_BUFFERED_BYTES`]
//! of event JSON per client ([`Budget`]). When the client reads too slowly
//! the buffer is full: the event is dropped and counted (per client, and in
//! the state's `stream_lost`), and the client is told by a comment `: lost N
//! events` before the next message, or on its own after a short wait when
//! nothing follows. At most [`MAX_CLIENTS`] streams are open at once; past
//! that a request is answered 503. The stream ends when the host closes its
//! subscribers (at the end of the drain) or the server stops.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use percent_encoding::percent_decode_str;
use tokio::sync::{mpsc, watch};

use super::errors::ApiError;
use super::routes::Shared;
use crate::EventStream;
use crate::topic::Pattern;

/// Messages buffered per client before events are dropped.
const BUFFER: usize = 1024;
/// Bytes of event JSON buffered per client before events are dropped: 8 MiB
/// (one larger event still goes when nothing else is buffered).
pub(crate) const MAX_BUFFERED_BYTES: usize = 8 * 1024 * 1024;
/// Streams open at once; more are answered 503.
pub(crate) const MAX_CLIENTS: usize = 64;
/// How often a keep-alive comment is sent.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How soon a loss is told when no event follows it.
const TELL_LOSS_AFTER: Duration = Duration::from_millis(100);

/// Why the `topics` query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TopicsError {
    /// No `topics` parameter, or only empty patterns.
    #[error("`topics` is required: e.g. /stream?topics=text.*,plughost.>")]
    Missing,
    /// A parameter other than `topics`.
    #[error("unknown query parameter `{0}`: the only one is `topics`")]
    Unknown(String),
    /// A pattern is not valid (SPEC §3).
    #[error("topics: {0}")]
    Pattern(#[from] crate::topic::TopicError),
    /// A pattern is not UTF-8 once percent-decoded.
    #[error("topics: `{0}` is not UTF-8 once percent-decoded")]
    Encoding(String),
}

/// The patterns `query` asks for: every `topics=` parameter's
/// comma-separated patterns, percent-decoded and validated.
pub(crate) fn topics(query: Option<&str>) -> Result<Vec<String>, TopicsError> {
    let mut patterns = Vec::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "topics" {
            return Err(TopicsError::Unknown(key.to_owned()));
        }
        let value = value.replace('+', " ");
        let value = percent_decode_str(&value)
            .decode_utf8()
            .map_err(|_| TopicsError::Encoding(value.clone()))?;
        for pattern in value.split(',').filter(|p| !p.is_empty()) {
            Pattern::parse(pattern)?;
            patterns.push(pattern.to_owned());
        }
    }
    if patterns.is_empty() {
        return Err(TopicsError::Missing);
    }
    Ok(patterns)
}

/// What the pump hands the response: events lost just before, and the
/// event's JSON (none when only a loss is told).
#[derive(Debug)]
struct Item {
    lost: u64,
    data: Option<String>,
}

/// The message `item` is: `: lost N events` first when some were lost.
fn message(item: Item) -> Event {
    let mut event = Event::default();
    if item.lost > 0 {
        event = event.comment(format!("lost {} events", item.lost));
    }
    if let Some(data) = item.data {
        event = event.data(data);
    }
    event
}

/// `GET /stream?topics=…`.
pub(super) async fn stream(
    State(state): State<Shared>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let patterns = topics(query.as_deref()).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let patterns: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let client = Client::join(state.clone()).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_CLIENTS} streams are open already: try again once one ends"),
        )
    })?;
    let events = state
        .host
        .subscribe_all(&patterns)
        .map_err(|e| ApiError::bad_request(format!("topics: {e}")))?;
    let (tx, rx) = mpsc::channel(BUFFER);
    let budget = Arc::new(Budget::new(MAX_BUFFERED_BYTES));
    // Subscribed here, before the pump runs: a stop sent meanwhile is seen.
    let stopping = state.stopping.subscribe();
    tokio::spawn(pump(events, tx, budget.clone(), stopping, state));
    // The client's slot is held as long as its response is.
    let messages = futures::stream::unfold(
        (rx, budget, client),
        |(mut rx, budget, client)| async move {
            let item = rx.recv().await?;
            budget.give_back(item.data.as_ref().map_or(0, String::len));
            Some((Ok(message(item)), (rx, budget, client)))
        },
    );
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Moves events from the subscription to the client's buffer, never
/// waiting for the client: a full buffer (by count or by `budget`) drops
/// the event and counts it. Ends when the subscription ends, the client is
/// gone or the server stops.
async fn pump(
    mut events: EventStream,
    tx: mpsc::Sender<Item>,
    budget: Arc<Budget>,
    mut stopping: watch::Receiver<bool>,
    state: Shared,
) {
    if *stopping.borrow_and_update() {
        return;
    }
    let mut lost = 0u64;
    let mut json = Vec::with_capacity(256);
    loop {
        let first = tokio::select! {
            event = events.recv() => match event {
                Some(event) => event,
                None => break,
            },
            () = tx.closed() => return,
            _ = stopping.changed() => return,
            () = tokio::time::sleep(TELL_LOSS_AFTER), if lost > 0 => {
                if let Ok(permit) = tx.try_reserve() {
                    permit.send(Item { lost, data: None });
                    lost = 0;
                }
                continue;
            }
        };
        // Whatever else is waiting, without yielding between events.
        let mut next = Some(first);
        while let Some(event) = next {
            let sent = match tx.try_reserve() {
                Ok(permit) => {
                    json.clear();
                    crate::json::write_event(&event, &mut json);
                    let fits = budget.take(json.len());
                    if fits {
                        let data = String::from_utf8_lossy(&json).into_owned();
                        permit.send(Item {
                            lost,
                            data: Some(data),
                        });
                        lost = 0;
                    }
                    fits
                }
                Err(mpsc::error::TrySendError::Full(())) => false,
                Err(mpsc::error::TrySendError::Closed(())) => return,
            };
            if !sent {
                lost += 1;
                state.stream_lost.fetch_add(1, Ordering::Relaxed);
            }
            // A large event's text is not kept for the next small one.
            if json.capacity() > 64 * 1024 {
                json = Vec::with_capacity(256);
            }
            next = events.try_next();
        }
    }
    // The host closed its subscribers: tell a last loss, if there is room.
    if lost > 0
        && let Ok(permit) = tx.try_reserve()
    {
        permit.send(Item { lost, data: None });
    }
}

/// The bytes of event JSON buffered for one client, bounded: shared by
/// the pump, which takes before sending, and the response, which gives
/// back what it hands to the connection.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    max: usize,
}

impl Budget {
    /// A budget of `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Budget {
            used: AtomicUsize::new(0),
            max,
        }
    }

    /// Takes `bytes` if they fit (or if nothing is buffered: one event
    /// larger than the whole budget still goes, alone); `false` otherwise.
    pub(crate) fn take(&self, bytes: usize) -> bool {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                (used == 0 || used + bytes <= self.max).then_some(used + bytes)
            })
            .is_ok()
    }

    /// Gives back `bytes` taken before.
    pub(crate) fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::SeqCst);
    }
}

/// One open stream, counted in the state's `stream_clients` while it lives.
#[derive(Debug)]
struct Client(Shared);

impl Client {
    /// A slot for one more stream, `None` when [`MAX_CLIENTS`] are open.
    fn join(state: Shared) -> Option<Client> {
        join(&state.stream_clients, MAX_CLIENTS).then_some(Client(state))
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.0.stream_clients.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts one more in `open` unless `max` are there already.
fn join(open: &AtomicUsize, max: usize) -> bool {
    open.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
        (n < max).then_some(n + 1)
    })
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_the_bytes_buffered() {
        let budget = Budget::new(100);
        assert!(budget.take(60));
        assert!(budget.take(40));
        assert!(!budget.take(1), "full");
        budget.give_back(60);
        assert!(budget.take(50));
        assert!(!budget.take(11));
        budget.give_back(90);
        // Nothing buffered: one event over the whole budget still goes, alone.
        assert!(budget.take(500));
        assert!(!budget.take(1));
        budget.give_back(500);
        assert!(budget.take(1));
    }

    #[test]
    fn clients_join_up_to_the_cap() {
        let open = AtomicUsize::new(0);
        assert!((0..3).all(|_| join(&open, 3)));
        assert!(!join(&open, 3));
        assert_eq!(open.load(Ordering::SeqCst), 3);
        open.fetch_sub(1, Ordering::SeqCst);
        assert!(join(&open, 3));
    }

    #[test]
    fn topics_are_comma_separated_percent_encoded_patterns() {
        assert_eq!(
            topics(Some("topics=text.*,plughost.%3E")).unwrap(),
            ["text.*", "plughost.>"]
        );
        assert_eq!(
            topics(Some("topics=a.b&topics=c.>")).unwrap(),
            ["a.b", "c.>"]
        );
        assert_eq!(topics(Some("topics=>")).unwrap(), [">"]);
    }

    #[test]
    fn missing_unknown_or_invalid_topics_are_refused_by_name() {
        assert_eq!(topics(None), Err(TopicsError::Missing));
        assert_eq!(topics(Some("topics=")), Err(TopicsError::Missing));
        assert_eq!(topics(Some("topics=,")), Err(TopicsError::Missing));
        assert_eq!(
            topics(Some("topic=a")),
            Err(TopicsError::Unknown("topic".into()))
        );
        let e = topics(Some("topics=a.b,text%3E")).unwrap_err();
        assert!(e.to_string().contains("`text>`"), "{e}");
        let e = topics(Some("topics=a..b")).unwrap_err();
        assert!(e.to_string().contains("`a..b`"), "{e}");
        let e = topics(Some("topics=a+b")).unwrap_err();
        assert!(e.to_string().contains("`a b`"), "{e}");
        assert!(matches!(
            topics(Some("topics=%FF")),
            Err(TopicsError::Encoding(_))
        ));
    }
}
