//! `GET /stream?topics=PATTERN[,PATTERN…]`: the bus, live, as Server-Sent
//! Events (SPEC §15).
//!
//! Each request subscribes to the bus as `run --tap` does; a pump task moves
//! events from the subscription (which never makes the bus wait) into a
//! bounded buffer with `try_reserve`, serialized exactly as `--tap` prints
//! them. When the client reads too slowly the buffer is full: the event is
//! dropped and counted (per client, and in the state's `stream_lost`), and
//! the client is told by a comment `: lost N events` before the next
//! message, or on its own after a short wait when nothing follows. The
//! stream ends when the host closes its subscribers (at the end of the
//! drain) or the server stops.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use percent_encoding::percent_decode_str;
use tokio::sync::mpsc;

use super::errors::ApiError;
use super::routes::Shared;
use crate::EventStream;
use crate::topic::Pattern;

/// Messages buffered per client before events are dropped.
const BUFFER: usize = 1024;
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
    let events = state
        .host
        .subscribe_all(&patterns)
        .map_err(|e| ApiError::bad_request(format!("topics: {e}")))?;
    let (tx, rx) = mpsc::channel(BUFFER);
    tokio::spawn(pump(events, tx, state));
    let messages = futures::stream::unfold(rx, |mut rx| async move {
        let item = rx.recv().await?;
        Some((Ok(message(item)), rx))
    });
    Ok(Sse::new(messages).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Moves events from the subscription to the client's buffer, never
/// waiting for the client: a full buffer drops the event and counts it.
/// Ends when the subscription ends, the client is gone or the server stops.
async fn pump(mut events: EventStream, tx: mpsc::Sender<Item>, state: Shared) {
    let mut stopping = state.stopping.subscribe();
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
            match tx.try_reserve() {
                Ok(permit) => {
                    json.clear();
                    crate::json::write_event(&event, &mut json);
                    let data = String::from_utf8_lossy(&json).into_owned();
                    permit.send(Item {
                        lost,
                        data: Some(data),
                    });
                    lost = 0;
                }
                Err(mpsc::error::TrySendError::Full(())) => {
                    lost += 1;
                    state.stream_lost.fetch_add(1, Ordering::Relaxed);
                }
                Err(mpsc::error::TrySendError::Closed(())) => return,
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

#[cfg(test)]
mod tests {
    use super::*;

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
