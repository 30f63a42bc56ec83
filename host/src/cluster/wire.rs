//! An event as one NATS message and back (SPEC §14): subject = topic, body =
//! the payload's JSON, headers = the event's fields, its origin and its own
//! headers.
//!
//! Pure: no connection here. The event's fields travel in the headers `id`,
//! `source`, `correlation_id` and `timestamp`; the host adds
//! `plughost-origin` (the host's name), `plughost-instance` (the process's
//! instance id, which tells a host its own messages apart) and
//! `plughost-hops` (the place in a chain of events, so a loop across hosts
//! is cut as one within a host), and when some shared plugins of the
//! exporting host received the event directly (out of their queue group),
//! `plughost-taken` with their names, so their groups skip it. An event on
//! a stored topic also carries `Nats-Msg-Id` (its id), by which JetStream
//! stores it once however often it is published. The event's own headers (its
//! `traceparent` among them) keep their names, except one whose name is
//! taken by the above or starts with `plughost-`: it travels as
//! `plughost-header-NAME`. A header that NATS cannot carry (a name that is
//! not a token, a value with a line break) is left out and named in
//! [`Outgoing::skipped`].

use async_nats::{HeaderMap, HeaderName, HeaderValue};
use plughost_bindings::{Event, HOST_SOURCE};

use crate::topic::{self, TopicError};

/// The header carrying the event's id.
pub(crate) const ID: &str = "id";
/// The header carrying the event's source.
pub(crate) const SOURCE: &str = "source";
/// The header carrying the event's correlation id.
pub(crate) const CORRELATION_ID: &str = "correlation_id";
/// The header carrying the event's timestamp.
pub(crate) const TIMESTAMP: &str = "timestamp";
/// The header naming the host that exported the event.
pub(crate) const ORIGIN: &str = "plughost-origin";
/// The header carrying the exporting process's instance id.
pub(crate) const INSTANCE: &str = "plughost-instance";
/// The header carrying the event's place in its chain.
pub(crate) const HOPS: &str = "plughost-hops";
/// The header naming the shared plugins that received the event directly.
pub(crate) const TAKEN: &str = "plughost-taken";
/// JetStream's deduplication header.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// The header a stored delivery gets: which delivery of the event it is.
pub(crate) const DELIVERY_ATTEMPT: &str = "delivery_attempt";
/// Headers NATS itself adds start with this; they are not the event's.
const NATS_PREFIX: &str = "Nats-";
/// Headers of the host's own start with this.
const HOST_PREFIX: &str = "plughost-";
/// An event header whose name is taken travels under this prefix.
const ESCAPED: &str = "plughost-header-";

/// An event ready to be published on NATS.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The subject: the event's topic.
    pub subject: String,
    /// The event's fields, origin and headers.
    pub headers: HeaderMap,
    /// The payload's JSON.
    pub body: Vec<u8>,
    /// Event headers left out because NATS cannot carry them.
    pub skipped: Vec<String>,
}

/// An event received from NATS, with where it came from.
#[derive(Debug)]
pub(crate) struct Incoming {
    /// The event, with the original id, source, correlation id, timestamp and headers.
    pub event: Event,
    /// The instance id of the process that exported it, when it says.
    pub instance: Option<String>,
    /// The name of the host that exported it, when it says.
    pub origin: Option<String>,
    /// Shared plugins of the exporting host that received it directly.
    pub taken: Vec<String>,
}

impl Incoming {
    /// Whether shared plugin `plugin`'s group should skip it (its exporting
    /// host's copy of the plugin received it directly).
    pub(crate) fn taken_by(&self, plugin: &str) -> bool {
        self.taken.iter().any(|t| t == plugin)
    }
}

/// Why a NATS message is not an event for the local bus.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    /// The body is not JSON.
    #[error("the body is not JSON: {0}")]
    Body(#[from] serde_json::Error),
    /// The subject is not a topic.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The subject is under `plughost.`: only this host publishes there.
    #[error("subject `{0}` is under `plughost.`: host events are never imported")]
    Reserved(String),
}

/// Turns `event` into a NATS message from host `origin`, process
/// `instance`; `taken` names the shared plugins that received it directly,
/// and a `stored` one carries its id for JetStream's deduplication.
pub(crate) fn encode(
    event: &Event,
    origin: &str,
    instance: &str,
    taken: &[std::sync::Arc<str>],
    stored: bool,
) -> Outgoing {
    let mut headers = HeaderMap::new();
    // Names known to be valid: no parsing per message.
    let mut put =
        |name: &'static str, value: &str| headers.insert(HeaderName::from_static(name), value);
    put(ID, &event.id);
    put(SOURCE, &event.source);
    if let Some(c) = &event.correlation_id {
        put(CORRELATION_ID, c);
    }
    put(TIMESTAMP, &event.timestamp);
    put(ORIGIN, origin);
    put(INSTANCE, instance);
    put(HOPS, &event.hops.to_string());
    if !taken.is_empty() {
        put(TAKEN, &taken.join(","));
    }
    if stored {
        put(MSG_ID, &event.id);
    }
    let mut skipped = Vec::new();
    for (name, value) in &event.headers {
        let wire_name = if is_taken(name) {
            format!("{ESCAPED}{name}")
        } else {
            name.clone()
        };
        match (
            wire_name.parse::<HeaderName>(),
            value.parse::<HeaderValue>(),
        ) {
            (Ok(n), Ok(v)) => headers.insert(n, v),
            _ => skipped.push(name.clone()),
        }
    }
    let mut body = Vec::with_capacity(128);
    crate::json::write(&event.payload, &mut body);
    Outgoing {
        subject: event.topic.clone(),
        headers,
        body,
        skipped,
    }
}

fn is_taken(name: &str) -> bool {
    matches!(name, ID | SOURCE | CORRELATION_ID | TIMESTAMP) || name.starts_with(HOST_PREFIX)
}

/// Turns a NATS message into an event for the local bus. A message from
/// outside plughost (no `id` header) gets a fresh id and timestamp and
/// source `host`.
pub(crate) fn decode(
    subject: &str,
    headers: Option<&HeaderMap>,
    body: &[u8],
) -> Result<Incoming, WireError> {
    topic::validate_topic(subject)?;
    if crate::host_events::is_reserved(subject) {
        return Err(WireError::Reserved(subject.to_owned()));
    }
    let payload = crate::json::read(body)?;
    let (mut id, mut source, mut correlation_id, mut timestamp) = (None, None, None, None);
    let (mut instance, mut origin, mut hops) = (None, None, 0);
    let mut taken = Vec::new();
    let mut own_headers = std::collections::BTreeMap::new();
    for (name, values) in headers.into_iter().flat_map(HeaderMap::iter) {
        let Some(value) = values.last() else { continue };
        let value = value.as_str().to_owned();
        let name: &str = name.as_ref();
        match name {
            ID => id = Some(value),
            SOURCE => source = Some(value),
            CORRELATION_ID => correlation_id = Some(value),
            TIMESTAMP => timestamp = Some(value),
            INSTANCE => instance = Some(value),
            ORIGIN => origin = Some(value),
            HOPS => hops = value.parse().unwrap_or(0),
            TAKEN => taken = value.split(',').map(str::to_owned).collect(),
            _ if name.starts_with(NATS_PREFIX) => {}
            _ => {
                if let Some(own) = name.strip_prefix(ESCAPED) {
                    own_headers.insert(own.to_owned(), value);
                } else if !name.starts_with(HOST_PREFIX) {
                    own_headers.insert(name.to_owned(), value);
                }
            }
        }
    }
    let mut event = match (id, timestamp) {
        // An event from plughost: its own id and time, no fresh ones drawn.
        (Some(id), Some(timestamp)) => Event {
            id,
            topic: subject.to_owned(),
            payload,
            source: HOST_SOURCE.to_owned(),
            timestamp,
            correlation_id: None,
            headers: std::collections::BTreeMap::new(),
            hops: 0,
            reply_to: None,
        },
        (id, timestamp) => {
            let mut e = Event::new(subject, payload, HOST_SOURCE);
            if let Some(id) = id {
                e.id = id;
            }
            if let Some(timestamp) = timestamp {
                e.timestamp = timestamp;
            }
            e
        }
    };
    if let Some(source) = source {
        event.source = source;
    }
    event.correlation_id = correlation_id;
    event.hops = hops;
    event.headers = own_headers;
    Ok(Incoming {
        event,
        instance,
        origin,
        taken,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn sample() -> Event {
        let mut e = Event::new("orders.created", json!({"n": 1, "s": "é"}), "shop");
        e.correlation_id = Some("01CORRELATION".into());
        e.hops = 3;
        e.headers.insert(
            "traceparent".into(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
        );
        e.headers.insert("tenant".into(), "acme".into());
        e
    }

    #[test]
    fn an_event_crosses_and_comes_back_the_same() {
        let e = sample();
        let out = encode(&e, "edge-1", "INSTANCE-A", &[], false);
        assert_eq!(out.subject, "orders.created");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&out.body).unwrap(),
            json!({"n": 1, "s": "é"})
        );
        let h = &out.headers;
        assert_eq!(h.get(ID).unwrap().as_str(), e.id);
        assert_eq!(h.get(SOURCE).unwrap().as_str(), "shop");
        assert_eq!(h.get(CORRELATION_ID).unwrap().as_str(), "01CORRELATION");
        assert_eq!(h.get(TIMESTAMP).unwrap().as_str(), e.timestamp);
        assert_eq!(h.get(ORIGIN).unwrap().as_str(), "edge-1");
        assert_eq!(h.get(INSTANCE).unwrap().as_str(), "INSTANCE-A");
        assert_eq!(
            h.get("traceparent").unwrap().as_str(),
            e.headers["traceparent"]
        );
        assert!(out.skipped.is_empty());

        let back = decode(&out.subject, Some(&out.headers), &out.body).unwrap();
        assert_eq!(back.instance.as_deref(), Some("INSTANCE-A"));
        assert_eq!(back.origin.as_deref(), Some("edge-1"));
        let b = back.event;
        assert_eq!(
            (
                &b.id,
                &b.topic,
                &b.source,
                &b.timestamp,
                &b.correlation_id,
                &b.headers,
                b.hops
            ),
            (
                &e.id,
                &e.topic,
                &e.source,
                &e.timestamp,
                &e.correlation_id,
                &e.headers,
                e.hops
            )
        );
        assert_eq!(b.payload.value(), e.payload.value());
    }

    #[test]
    fn taken_header_names_are_escaped_and_restored() {
        let mut e = Event::new("a.b", json!(null), "p");
        e.headers.insert("id".into(), "mine".into());
        e.headers.insert("plughost-instance".into(), "fake".into());
        let out = encode(&e, "h", "REAL", &[], false);
        assert_eq!(out.headers.get(ID).unwrap().as_str(), e.id);
        assert_eq!(
            out.headers.get("plughost-header-id").unwrap().as_str(),
            "mine"
        );
        let back = decode("a.b", Some(&out.headers), &out.body).unwrap();
        assert_eq!(back.instance.as_deref(), Some("REAL"));
        assert_eq!(back.event.id, e.id);
        assert_eq!(back.event.headers, e.headers);
    }

    #[test]
    fn taken_plugins_and_the_stored_id_cross_and_nats_headers_stay_out() {
        let e = Event::new("orders.new", json!({}), "p");
        let taken: Vec<std::sync::Arc<str>> = vec!["billing".into(), "audit".into()];
        let out = encode(&e, "h", "I", &taken, true);
        assert_eq!(out.headers.get(MSG_ID).unwrap().as_str(), e.id);
        let back = decode(&out.subject, Some(&out.headers), &out.body).unwrap();
        assert!(back.taken_by("billing") && back.taken_by("audit") && !back.taken_by("bill"));
        assert!(back.event.headers.is_empty(), "{:?}", back.event.headers);
        let plain = encode(&e, "h", "I", &[], false);
        assert!(plain.headers.get(MSG_ID).is_none() && plain.headers.get(TAKEN).is_none());
        assert!(
            decode("a", Some(&plain.headers), b"{}")
                .unwrap()
                .taken
                .is_empty()
        );
    }

    #[test]
    fn headers_nats_cannot_carry_are_named() {
        let mut e = Event::new("a.b", json!({}), "p");
        e.headers.insert("multi".into(), "line\nbreak".into());
        e.headers.insert("has space".into(), "v".into());
        e.headers.insert("ok".into(), "v".into());
        let out = encode(&e, "h", "I", &[], false);
        assert_eq!(out.skipped, ["has space", "multi"]);
        assert_eq!(out.headers.get("ok").unwrap().as_str(), "v");
    }

    #[test]
    fn a_foreign_message_gets_an_id_and_source_host() {
        let back = decode("sensors.temp", None, br#"{"c": 21}"#).unwrap();
        assert_eq!(back.event.source, HOST_SOURCE);
        assert_eq!(back.event.id.len(), 26);
        assert_eq!(back.event.payload.value(), &json!({"c": 21}));
        assert!(back.instance.is_none() && back.origin.is_none());
        assert_eq!(
            decode("x", None, b"").unwrap().event.payload.value(),
            &json!(null)
        );
    }

    #[test]
    fn what_is_not_an_event_is_refused() {
        assert!(matches!(
            decode("a.b", None, b"not json"),
            Err(WireError::Body(_))
        ));
        assert!(matches!(
            decode("plughost.plugin.started", None, b"{}"),
            Err(WireError::Reserved(_))
        ));
        assert!(matches!(
            decode("a..b", None, b"{}"),
            Err(WireError::Topic(_))
        ));
    }
}
