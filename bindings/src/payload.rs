//! Event payloads: JSON values that cross the bus cheaply.
//!
//! A payload is either a [`serde_json::Value`] (from `--input`, the embedding
//! application, a forward) or a *packed* buffer that a runtime wrote while
//! walking its own values (a Lua table given to `bus.publish`). Packing costs
//! one growing buffer instead of an allocation per key and string, and a
//! runtime reads it straight into its own values again. Nobody pays for a
//! JSON tree unless they look at one: [`Payload::value`] decodes a packed
//! payload once, on first use, and keeps the result.
//!
//! The packed format is defined once, in `plughost-packed` (a tag byte per
//! value, little-endian numbers, `u32` lengths and counts), which native
//! plugins read and write through `plughost-sdk` too; [`Reader`], [`Token`]
//! and [`validate`] are re-exported from it, and [`Writer`] wraps its writer
//! to finish into a [`Payload`].

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

pub use plughost_packed::{PackedError, Reader, Slot, Token, validate};

/// The payload of an event: a JSON value, possibly still packed.
///
/// It dereferences to the [`Value`], and compares equal to one:
///
/// ```
/// use plughost_bindings::Payload;
/// use serde_json::json;
/// let p = Payload::from(json!({"words": 3}));
/// assert_eq!(p["words"], 3);
/// assert_eq!(p, json!({"words": 3}));
/// ```
#[derive(Clone, Default)]
pub struct Payload {
    packed: Option<Box<[u8]>>,
    value: OnceLock<Value>,
}

impl Payload {
    /// The payload as a JSON value (decoded on first use when packed).
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| match &self.packed {
            Some(bytes) => plughost_packed::unpack_value(bytes),
            None => Value::Null,
        })
    }

    /// The JSON value, taken out.
    pub fn into_value(mut self) -> Value {
        self.value();
        self.value.take().unwrap_or_default()
    }

    /// The packed bytes, when the payload was written by a runtime.
    pub fn packed(&self) -> Option<&[u8]> {
        self.packed.as_deref()
    }

    /// Packs a JSON payload, so runtimes read the cheaper form. Publishers call
    /// this before fan-out, on their own thread: the JSON tree is freed here,
    /// not on a plugin's thread, and decoded again only if someone reads it.
    pub fn pack_in_place(&mut self) {
        if self.packed.is_some() {
            return;
        }
        if let Some(value) = self.value.take() {
            self.packed = Some(plughost_packed::pack_value(&value).into_boxed_slice());
        }
    }

    /// A payload from bytes written with a [`Writer`].
    pub fn from_packed(bytes: Vec<u8>) -> Self {
        Payload {
            packed: Some(bytes.into_boxed_slice()),
            value: OnceLock::new(),
        }
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Payload {
            packed: None,
            value: OnceLock::from(value),
        }
    }
}

impl Deref for Payload {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value()
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.value(), f)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.value(), f)
    }
}

impl PartialEq for Payload {
    fn eq(&self, other: &Self) -> bool {
        self.value() == other.value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        self.value() == other
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Value::deserialize(d).map(Payload::from)
    }
}

/// Writes a packed payload ([`plughost_packed::Writer`], which it
/// dereferences to), finishing into a [`Payload`].
#[derive(Debug, Default)]
pub struct Writer(plughost_packed::Writer);

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer(plughost_packed::Writer::new())
    }

    /// The finished payload.
    pub fn finish(self) -> Payload {
        Payload::from_packed(self.0.into_bytes())
    }
}

impl Deref for Writer {
    type Target = plughost_packed::Writer;
    fn deref(&self) -> &plughost_packed::Writer {
        &self.0
    }
}

impl DerefMut for Writer {
    fn deref_mut(&mut self) -> &mut plughost_packed::Writer {
        &mut self.0
    }
}

/// Packs a JSON value (for tests and for runtimes that want one format).
pub fn pack(value: &Value) -> Payload {
    Payload::from_packed(plughost_packed::pack_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packed_payloads_decode_to_the_same_value() {
        let v = json!({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null,
                       "a": [1, "two", [], {}], "o": {"k": "é"}});
        let p = pack(&v);
        assert!(p.packed().is_some());
        assert_eq!(p, v);
        assert_eq!(p.clone().into_value(), v);
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
    }

    #[test]
    fn packing_in_place_keeps_the_same_value() {
        let mut p = Payload::from(json!({"a": [1, 2.5, "x"]}));
        p.pack_in_place();
        let bytes = p.packed().expect("packed").to_vec();
        assert_eq!(Reader::new(&bytes).value(), json!({"a": [1, 2.5, "x"]}));
        assert_eq!(p, json!({"a": [1, 2.5, "x"]}));
    }

    #[test]
    fn values_pass_through_untouched() {
        let p = Payload::from(json!([1, 2]));
        assert!(p.packed().is_none());
        assert_eq!(p[1], 2);
        let back: Payload = serde_json::from_str("[1,2]").unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn a_writer_finishes_into_a_packed_payload() {
        let mut w = Writer::new();
        let slot = w.begin_array();
        w.str("x");
        w.finish_container(slot, 1);
        let p = w.finish();
        assert!(p.packed().is_some());
        assert_eq!(p, json!(["x"]));
    }
}
