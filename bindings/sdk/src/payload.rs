//! The payload types a plugin handles: [`EventPayload`], the handled
//! event's payload (packed, borrowed from the host, decoded to JSON only if
//! asked), and [`Packed`], an owned packed value a plugin forwards or
//! replies with.

use std::cell::OnceCell;
use std::fmt;
use std::ops::Deref;

use plughost_packed::{Error, PayloadRef};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// The payload of the event being handled: packed bytes the host lent for
/// the call. Read it the cheap ways, [`EventPayload::view`] (a field or
/// two) or [`EventPayload::deserialize`] (into the plugin's own type), or
/// use it as a [`serde_json::Value`], which it dereferences to (decoded on
/// first use and kept: `event.payload["text"]` works as before).
pub struct EventPayload<'a> {
    view: PayloadRef<'a>,
    value: OnceCell<Value>,
}

impl<'a> EventPayload<'a> {
    /// A payload over packed bytes.
    pub fn new(bytes: &'a [u8]) -> Self {
        EventPayload {
            view: PayloadRef::new(bytes),
            value: OnceCell::new(),
        }
    }

    /// A borrowed view: `get("field")`, `as_str()`, `items()`, … (decodes nothing).
    pub fn view(&self) -> PayloadRef<'a> {
        self.view
    }

    /// Reads it into the plugin's own type; `&str` fields borrow from the
    /// host's bytes (valid for the hook call).
    pub fn deserialize<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        self.view.deserialize()
    }

    /// The payload as JSON (decoded once, on first use).
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| self.view.to_value())
    }
}

impl Deref for EventPayload<'_> {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl Clone for EventPayload<'_> {
    fn clone(&self) -> Self {
        EventPayload {
            view: self.view,
            value: self.value.clone(),
        }
    }
}

impl fmt::Debug for EventPayload<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view, f)
    }
}

impl PartialEq<Value> for EventPayload<'_> {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

/// Written straight from the packed bytes (publishing it again decodes nothing).
impl Serialize for EventPayload<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.view.serialize(s)
    }
}

/// An owned packed value: what [`Outcome::Forward`](crate::Outcome::Forward)
/// and [`Outcome::Reply`](crate::Outcome::Reply) carry. Make one from a
/// plugin's own type with [`Packed::new`], or from a JSON value with `into()`.
#[derive(Clone, PartialEq, Eq)]
pub struct Packed(Vec<u8>);

impl Packed {
    /// Packs `value` (its `Serialize` shape, as `serde_json` would print it).
    pub fn new<T: Serialize + ?Sized>(value: &T) -> Result<Packed, Error> {
        plughost_packed::to_vec(value).map(Packed)
    }

    /// A borrowed view of it.
    pub fn view(&self) -> PayloadRef<'_> {
        PayloadRef::new(&self.0)
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Decodes it into JSON.
    pub fn to_value(&self) -> Value {
        self.view().to_value()
    }
}

impl From<Value> for Packed {
    fn from(v: Value) -> Self {
        Packed::from(&v)
    }
}

impl From<&Value> for Packed {
    fn from(v: &Value) -> Self {
        Packed(plughost_packed::pack_value(v))
    }
}

impl From<PayloadRef<'_>> for Packed {
    fn from(v: PayloadRef<'_>) -> Self {
        Packed(v.bytes().to_vec())
    }
}

impl From<&EventPayload<'_>> for Packed {
    fn from(v: &EventPayload<'_>) -> Self {
        Packed::from(v.view())
    }
}

impl From<EventPayload<'_>> for Packed {
    fn from(v: EventPayload<'_>) -> Self {
        Packed::from(v.view())
    }
}

impl fmt::Debug for Packed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.view(), f)
    }
}

impl PartialEq<Value> for Packed {
    fn eq(&self, other: &Value) -> bool {
        &self.to_value() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Text<'a> {
        text: &'a str,
    }

    #[test]
    fn an_event_payload_reads_every_way() {
        let bytes = plughost_packed::pack_value(&json!({"text": "hi", "n": 2}));
        let p = EventPayload::new(&bytes);
        assert_eq!(p.view().get("n").and_then(|n| n.as_i64()), Some(2));
        assert_eq!(p.deserialize::<Text<'_>>().unwrap().text, "hi");
        assert_eq!(p["text"], "hi");
        assert_eq!(p, json!({"text": "hi", "n": 2}));
        assert_eq!(Packed::from(&p).bytes(), &bytes[..]);
        assert_eq!(Packed::new(&p).unwrap().bytes(), &bytes[..]);
    }
}
