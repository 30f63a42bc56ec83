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
//! The packed format is private to this crate and this process: a tag byte
//! per value, little-endian numbers, `u32` lengths and counts.

use std::fmt;
use std::ops::Deref;
use std::sync::OnceLock;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Number, Value};

const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const INT: u8 = 3;
const FLOAT: u8 = 4;
const STR: u8 = 5;
const ARRAY: u8 = 6;
const OBJECT: u8 = 7;

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
            Some(bytes) => Reader::new(bytes).value(),
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
            self.packed = pack(&value).packed;
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

/// Writes a packed payload, value by value, in depth-first order.
#[derive(Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

/// Where a container's count goes, to be filled in by [`Writer::finish_container`].
#[derive(Debug, Clone, Copy)]
pub struct Slot(usize);

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer {
            buf: Vec::with_capacity(128),
        }
    }

    /// `null`.
    pub fn null(&mut self) {
        self.buf.push(NULL);
    }

    /// A boolean.
    pub fn bool(&mut self, b: bool) {
        self.buf.push(if b { TRUE } else { FALSE });
    }

    /// An integer.
    pub fn int(&mut self, i: i64) {
        self.buf.push(INT);
        self.buf.extend_from_slice(&i.to_le_bytes());
    }

    /// A finite float (the caller refuses NaN and infinities).
    pub fn float(&mut self, f: f64) {
        self.buf.push(FLOAT);
        self.buf.extend_from_slice(&f.to_le_bytes());
    }

    /// A string.
    pub fn str(&mut self, s: &str) {
        self.buf.push(STR);
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// An object key; its value follows.
    pub fn key(&mut self, s: &str) {
        self.len(s.len());
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// Starts an array of items that follow; finish it with its count.
    pub fn begin_array(&mut self) -> Slot {
        self.begin(ARRAY)
    }

    /// Starts an object of `key` + value pairs that follow; finish it with its count.
    pub fn begin_object(&mut self) -> Slot {
        self.begin(OBJECT)
    }

    fn begin(&mut self, tag: u8) -> Slot {
        self.buf.push(tag);
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        Slot(at)
    }

    /// Writes the count of the container started at `slot`.
    pub fn finish_container(&mut self, slot: Slot, count: usize) {
        let n = u32::try_from(count).unwrap_or(u32::MAX).to_le_bytes();
        self.buf[slot.0..slot.0 + 4].copy_from_slice(&n);
    }

    /// Where the writer is, to [`Writer::truncate`] back to.
    pub fn position(&self) -> usize {
        self.buf.len()
    }

    /// Forgets everything written after `position`.
    pub fn truncate(&mut self, position: usize) {
        self.buf.truncate(position);
    }

    fn len(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// The finished payload.
    pub fn finish(self) -> Payload {
        Payload::from_packed(self.buf)
    }
}

/// One item read from a packed payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token<'a> {
    /// `null`
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(&'a str),
    /// An array; this many items follow.
    Array(usize),
    /// An object; this many key + value pairs follow (read keys with [`Reader::key`]).
    Object(usize),
}

/// Reads a packed payload in the order it was written.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over bytes written by a [`Writer`].
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.bytes.len());
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        head
    }

    fn u32(&mut self) -> usize {
        let b = self.take(4);
        let mut a = [0u8; 4];
        a[..b.len()].copy_from_slice(b);
        u32::from_le_bytes(a) as usize
    }

    fn u64(&mut self) -> [u8; 8] {
        let b = self.take(8);
        let mut a = [0u8; 8];
        a[..b.len()].copy_from_slice(b);
        a
    }

    fn text(&mut self) -> &'a str {
        let n = self.u32();
        // Written from `&str`s only, so always valid UTF-8; the usual short
        // ASCII key or string is checked byte by byte, which costs less than
        // the general UTF-8 validation.
        let bytes = self.take(n);
        if bytes.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return unsafe { std::str::from_utf8_unchecked(bytes) };
        }
        std::str::from_utf8(bytes).unwrap_or_default()
    }

    /// The next value's token (an empty reader reads as `null`).
    pub fn next_token(&mut self) -> Token<'a> {
        let Some((&tag, rest)) = self.bytes.split_first() else {
            return Token::Null;
        };
        self.bytes = rest;
        match tag {
            FALSE => Token::Bool(false),
            TRUE => Token::Bool(true),
            INT => Token::Int(i64::from_le_bytes(self.u64())),
            FLOAT => Token::Float(f64::from_le_bytes(self.u64())),
            STR => Token::Str(self.text()),
            ARRAY => Token::Array(self.u32()),
            OBJECT => Token::Object(self.u32()),
            _ => Token::Null,
        }
    }

    /// The next object key.
    pub fn key(&mut self) -> &'a str {
        self.text()
    }

    /// Decodes the next value into JSON.
    pub fn value(&mut self) -> Value {
        match self.next_token() {
            Token::Null => Value::Null,
            Token::Bool(b) => Value::Bool(b),
            Token::Int(i) => Value::Number(i.into()),
            Token::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Token::Str(s) => Value::String(s.to_owned()),
            Token::Array(n) => Value::Array((0..n).map(|_| self.value()).collect()),
            Token::Object(n) => {
                let mut map = Map::new();
                for _ in 0..n {
                    let k = self.key().to_owned();
                    let v = self.value();
                    map.insert(k, v);
                }
                Value::Object(map)
            }
        }
    }
}

/// Packs a JSON value (for tests and for runtimes that want one format).
pub fn pack(value: &Value) -> Payload {
    fn write(w: &mut Writer, v: &Value) {
        match v {
            Value::Null => w.null(),
            Value::Bool(b) => w.bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) => w.int(i),
                None => w.float(n.as_f64().unwrap_or(0.0)),
            },
            Value::String(s) => w.str(s),
            Value::Array(items) => {
                let slot = w.begin_array();
                items.iter().for_each(|i| write(w, i));
                w.finish_container(slot, items.len());
            }
            Value::Object(map) => {
                let slot = w.begin_object();
                for (k, v) in map {
                    w.key(k);
                    write(w, v);
                }
                w.finish_container(slot, map.len());
            }
        }
    }
    let mut w = Writer::new();
    write(&mut w, value);
    w.finish()
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
    fn a_writer_can_back_out_of_a_container() {
        let mut w = Writer::new();
        let outer = w.begin_object();
        w.key("k");
        let at = w.position();
        let arr = w.begin_array();
        w.int(1);
        w.finish_container(arr, 1);
        // Changed our mind: write an object instead.
        w.truncate(at);
        let obj = w.begin_object();
        w.key("1");
        w.int(1);
        w.finish_container(obj, 1);
        w.finish_container(outer, 1);
        assert_eq!(w.finish(), json!({"k": {"1": 1}}));
    }
}
