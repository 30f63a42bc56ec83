//! The event a native plugin's `on_event` receives: the same fields a
//! script sees, borrowed from the host's [`EventView`] for the duration of
//! the call (nothing is copied or parsed until the plugin reads it).

use std::fmt;
use std::ops::Index;

use plughost_packed::{Error, PayloadRef};
use serde::Deserialize;
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::EventPayload;
use crate::abi::{EventView, Str};

/// One event from the bus, valid for the `on_event` call it was passed to
/// (keep what outlives it with `to_owned()`/`to_string()`).
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// Unique id (a ULID).
    pub id: &'a str,
    /// The concrete topic it was published on, e.g. `text.raw`.
    pub topic: &'a str,
    /// The payload: read it through [`EventPayload::view`] or
    /// [`EventPayload::deserialize`], or as the [`Value`] it dereferences to.
    pub payload: EventPayload<'a>,
    /// The publishing plugin's name, or `host`.
    pub source: &'a str,
    /// When it was published, RFC 3339 UTC with milliseconds.
    pub timestamp: &'a str,
    /// The id of the event that started the chain, if any.
    pub correlation_id: Option<&'a str>,
    /// Free-form string headers (trace context travels here).
    pub headers: Headers<'a>,
}

impl<'a> Event<'a> {
    /// The payload as a JSON value, copied out.
    pub fn payload(&self) -> Value {
        self.payload.value().clone()
    }

    /// A borrowed view of the payload (decodes nothing).
    pub fn payload_ref(&self) -> PayloadRef<'a> {
        self.payload.view()
    }

    /// The payload read into the plugin's own type, `&str` fields borrowed.
    pub fn payload_as<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        self.payload.deserialize()
    }

    /// Reads the host's view.
    ///
    /// # Safety
    ///
    /// Every pointer in `view` must be valid for `'a`, as the host
    /// guarantees for the duration of `on_event`.
    pub(crate) unsafe fn from_view(view: &EventView) -> Result<Event<'a>, String> {
        let text = |s: Str, what: &str| {
            // SAFETY: valid for 'a, as the caller guarantees.
            std::str::from_utf8(unsafe { s.as_bytes() })
                .map_err(|_| format!("the host sent an event whose {what} is not UTF-8"))
        };
        let headers: &'a [Str] = if view.headers.is_null() || view.header_count == 0 {
            &[]
        } else {
            // SAFETY: the host passes `header_count` pairs, valid for 'a.
            unsafe { std::slice::from_raw_parts(view.headers, view.header_count.saturating_mul(2)) }
        };
        Ok(Event {
            id: text(view.id, "id")?,
            topic: text(view.topic, "topic")?,
            // SAFETY: valid for 'a, as the caller guarantees.
            payload: EventPayload::new(unsafe { view.payload.as_bytes() }),
            source: text(view.source, "source")?,
            timestamp: text(view.timestamp, "timestamp")?,
            correlation_id: if view.has_correlation_id != 0 {
                Some(text(view.correlation_id, "correlation id")?)
            } else {
                None
            },
            headers: Headers { pairs: headers },
        })
    }
}

/// An event's headers, borrowed from the host: name and value pairs.
#[derive(Clone, Copy)]
pub struct Headers<'a> {
    pairs: &'a [Str],
}

impl<'a> Headers<'a> {
    /// The value of header `name`, if it is set.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The headers, in the host's order (sorted by name).
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let text = |s: &Str| {
            // SAFETY: borrowed from the host for the call (see `Event::from_view`).
            std::str::from_utf8(unsafe { s.as_bytes() }).unwrap_or_default()
        };
        self.pairs
            .chunks_exact(2)
            .map(move |pair| (text(&pair[0]), text(&pair[1])))
    }

    /// How many headers there are.
    pub fn len(&self) -> usize {
        self.pairs.len() / 2
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.pairs.len() < 2
    }
}

impl Index<&str> for Headers<'_> {
    type Output = str;

    /// The value of a header that is set; panics when it is not (use
    /// [`Headers::get`] otherwise).
    fn index(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("the event has no header `{name}`"))
    }
}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// An object of name: value, as in the event's JSON.
impl Serialize for Headers<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_hosts_view() {
        let payload = plughost_packed::pack_value(&json!({"text": "hi"}));
        let headers = [Str::new(b"traceparent"), Str::new(b"00-x")];
        let view = EventView {
            id: Str::new(b"01J"),
            topic: Str::new(b"text.raw"),
            source: Str::new(b"host"),
            timestamp: Str::new(b"2026-11-21T12:00:00.000Z"),
            correlation_id: Str::EMPTY,
            has_correlation_id: 0,
            headers: headers.as_ptr(),
            header_count: 1,
            payload: Str::new(&payload),
        };
        // SAFETY: everything the view points to lives until the end of the test.
        let e = unsafe { Event::from_view(&view) }.unwrap();
        assert_eq!(e.topic, "text.raw");
        assert_eq!(e.payload["text"], "hi");
        assert_eq!(
            e.payload_ref().get("text").and_then(|t| t.as_str()),
            Some("hi")
        );
        assert_eq!(e.correlation_id, None);
        assert_eq!(&e.headers["traceparent"], "00-x");
        assert_eq!(
            serde_json::to_value(e.headers).unwrap(),
            json!({"traceparent": "00-x"})
        );
    }

    #[test]
    fn a_field_that_is_not_utf8_is_named() {
        let view = EventView {
            id: Str::new(b"x"),
            topic: Str::new(b"\xff"),
            source: Str::EMPTY,
            timestamp: Str::EMPTY,
            correlation_id: Str::EMPTY,
            has_correlation_id: 0,
            headers: std::ptr::null(),
            header_count: 0,
            payload: Str::EMPTY,
        };
        // SAFETY: as above.
        let err = unsafe { Event::from_view(&view) }.unwrap_err();
        assert_eq!(err, "the host sent an event whose topic is not UTF-8");
    }
}
