//! The event: what travels on the bus, in the shape every runtime sees.
//!
//! An event is immutable once published and shared between subscribers as an
//! `Arc<Event>`, so fan-out to many plugins copies nothing. Ids are ULIDs
//! (sortable by creation time); timestamps are RFC 3339 in UTC with
//! milliseconds, as they appear in tap output and dead letters.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::Payload;

/// The `source` of events published by the host itself, `--input`, the admin
/// endpoint or the embedding application.
pub const HOST_SOURCE: &str = "host";

/// One event on the bus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique id (a ULID).
    pub id: String,
    /// The concrete topic it was published on.
    pub topic: String,
    /// Any JSON value; usually an object.
    pub payload: Payload,
    /// The publishing plugin's name, or `host`.
    pub source: String,
    /// When it was published, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The id of the event that started this chain, if any.
    pub correlation_id: Option<String>,
    /// Free-form string headers (trace context travels here).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How many events came before this one in its chain: 0 for an event
    /// published from outside a hook, one more than its cause for an event
    /// published while handling another. The bus refuses chains past a
    /// limit, so two plugins forwarding to each other cannot loop forever.
    #[serde(skip)]
    pub hops: u32,
    /// Where the answer to this event goes, when it is a request
    /// (`bus.request`): the reply subject its handler's `outcome.reply`
    /// answers on. Not part of the event's JSON, and not inherited by the
    /// events it causes.
    #[serde(skip)]
    pub reply_to: Option<String>,
}

impl Event {
    /// A new event with a fresh id and the current time, and no correlation.
    ///
    /// ```
    /// use plughost_bindings::Event;
    /// let e = Event::new("text.raw", serde_json::json!({"text": "hi"}), "host");
    /// assert_eq!(e.topic, "text.raw");
    /// assert_eq!(e.id.len(), 26);
    /// ```
    pub fn new(
        topic: impl Into<String>,
        payload: impl Into<Payload>,
        source: impl Into<String>,
    ) -> Event {
        // One look at the clock for both the id and the timestamp, and one
        // conversion to milliseconds: the timestamp is the id's own time.
        let id = ulid::Ulid::from_datetime(SystemTime::now());
        Event {
            id: id.to_string(),
            topic: topic.into(),
            payload: payload.into(),
            source: source.into(),
            timestamp: timestamp_at_ms(id.timestamp_ms()),
            correlation_id: None,
            headers: BTreeMap::new(),
            hops: 0,
            reply_to: None,
        }
    }

    /// A new event caused by handling `self`: it carries `self`'s correlation id
    /// (or `self`'s id when it had none).
    pub fn caused(
        &self,
        topic: impl Into<String>,
        payload: impl Into<Payload>,
        source: impl Into<String>,
    ) -> Event {
        let mut event = Event::new(topic, payload, source);
        event.correlation_id = Some(self.correlation_key().to_owned());
        event.hops = self.hops.saturating_add(1);
        event
    }

    /// The correlation id this event's consequences carry.
    pub fn correlation_key(&self) -> &str {
        self.correlation_id.as_deref().unwrap_or(&self.id)
    }

    /// The event as one line of JSON.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an event always serializes")
    }

    /// The event as a JSON value.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("an event always serializes")
    }
}

/// A fresh, unique, time-sortable event id.
pub fn new_id() -> String {
    ulid::Ulid::generate().to_string()
}

/// The current time as RFC 3339 UTC with milliseconds (`2026-11-21T12:00:00.000Z`).
pub fn now_timestamp() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    timestamp_at_ms(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The time `ms` milliseconds after the Unix epoch as RFC 3339 UTC with
/// milliseconds.
fn timestamp_at_ms(ms: u64) -> String {
    // Formatting a date costs more than the rest of an event; events come in
    // bursts, so each thread keeps the text of the last millisecond it saw.
    thread_local! {
        static LAST: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
    }
    LAST.with_borrow_mut(|(last_ms, text)| {
        if *last_ms != ms || text.is_empty() {
            *last_ms = ms;
            let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            *text = humantime::format_rfc3339_millis(at).to_string();
        }
        text.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn caused_events_carry_the_chain_correlation() {
        let first = Event::new("a", Value::Null, HOST_SOURCE);
        let second = first.caused("b", Value::Null, "p1");
        assert_eq!(second.correlation_id.as_deref(), Some(first.id.as_str()));
        let third = second.caused("c", Value::Null, "p2");
        assert_eq!(third.correlation_id.as_deref(), Some(first.id.as_str()));
        assert_ne!(third.id, second.id);
        assert_eq!((first.hops, second.hops, third.hops), (0, 1, 2));
    }

    #[test]
    fn a_caused_event_is_no_request_and_the_reply_subject_stays_out_of_json() {
        let mut request = Event::new("q", Value::Null, HOST_SOURCE);
        request.reply_to = Some("_INBOX.x.y".into());
        assert_eq!(request.caused("b", Value::Null, "p").reply_to, None);
        assert!(request.to_value().get("reply_to").is_none());
    }

    #[test]
    fn the_timestamp_is_the_ids_own_millisecond() {
        for _ in 0..100 {
            let e = Event::new("t", Value::Null, HOST_SOURCE);
            let ms = ulid::Ulid::from_string(&e.id).unwrap().timestamp_ms();
            let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            assert_eq!(
                e.timestamp,
                humantime::format_rfc3339_millis(at).to_string()
            );
        }
        assert_eq!(timestamp_at_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            timestamp_at_ms(1_795_262_400_123),
            "2026-11-21T12:00:00.123Z"
        );
        // The cache of the last millisecond gives the same text again.
        assert_eq!(
            timestamp_at_ms(1_795_262_400_123),
            "2026-11-21T12:00:00.123Z"
        );
    }

    #[test]
    fn json_shape_matches_the_contract() {
        let e = Event::new("text.raw", serde_json::json!({"text": "hi"}), HOST_SOURCE);
        let v = e.to_value();
        for key in [
            "id",
            "topic",
            "payload",
            "source",
            "timestamp",
            "correlation_id",
            "headers",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert!(
            e.timestamp.ends_with('Z') && e.timestamp.len() == 24,
            "{}",
            e.timestamp
        );
    }
}
