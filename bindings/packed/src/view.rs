//! [`PayloadRef`]: a borrowed view of one packed value, for a plugin that
//! reads a field or two: `get("field")`, `as_str()`, `as_i64()`, iteration.
//! Nothing is decoded until asked for, and strings are borrowed.

use std::fmt;

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{Error, Reader, Token, tag};

/// A borrowed packed value (the bytes of exactly one value).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PayloadRef<'a> {
    bytes: &'a [u8],
}

impl<'a> PayloadRef<'a> {
    /// A view of packed bytes, which hold one value (validated, or written
    /// by a [`Writer`](crate::Writer)). Empty bytes read as `null`.
    pub fn new(bytes: &'a [u8]) -> Self {
        PayloadRef { bytes }
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    fn token(&self) -> Token<'a> {
        Reader::new(self.bytes).next_token()
    }

    /// Whether it is `null` (or absent).
    pub fn is_null(&self) -> bool {
        matches!(self.bytes.first(), None | Some(&tag::NULL))
    }

    /// Whether it is an object.
    pub fn is_object(&self) -> bool {
        self.bytes.first() == Some(&tag::OBJECT)
    }

    /// Whether it is an array.
    pub fn is_array(&self) -> bool {
        self.bytes.first() == Some(&tag::ARRAY)
    }

    /// The boolean, if it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self.token() {
            Token::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if it is one (a float is not, as in `serde_json`).
    pub fn as_i64(&self) -> Option<i64> {
        match self.token() {
            Token::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The integer, if it is one and not negative.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i64().and_then(|i| u64::try_from(i).ok())
    }

    /// The number as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self.token() {
            Token::Int(i) => Some(i as f64),
            Token::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The string, borrowed, if it is one.
    pub fn as_str(&self) -> Option<&'a str> {
        match self.token() {
            Token::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number of items of an array or pairs of an object.
    pub fn len(&self) -> Option<usize> {
        match self.token() {
            Token::Array(n) | Token::Object(n) => Some(n),
            _ => None,
        }
    }

    /// Whether it is an empty array or object (or no container at all).
    pub fn is_empty(&self) -> bool {
        self.len().unwrap_or(0) == 0
    }

    /// The value of `key`, if it is an object that has it (the first, if
    /// the key repeats). Walks the pairs before it, skipping their values.
    pub fn get(&self, key: &str) -> Option<PayloadRef<'a>> {
        self.entries().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Item `index`, if it is an array that long.
    pub fn item(&self, index: usize) -> Option<PayloadRef<'a>> {
        self.items().nth(index)
    }

    /// The items, if it is an array (none otherwise).
    pub fn items(&self) -> Items<'a> {
        let mut reader = Reader::new(self.bytes);
        let left = match reader.next_token() {
            Token::Array(n) => n,
            _ => 0,
        };
        Items { reader, left }
    }

    /// The key + value pairs, in order, if it is an object (none otherwise).
    pub fn entries(&self) -> Entries<'a> {
        let mut reader = Reader::new(self.bytes);
        let left = match reader.next_token() {
            Token::Object(n) => n,
            _ => 0,
        };
        Entries { reader, left }
    }

    /// Reads it into a `T` (see [`from_slice`](crate::from_slice)).
    pub fn deserialize<T: Deserialize<'a>>(&self) -> Result<T, Error> {
        crate::from_slice(self.bytes)
    }

    /// Decodes it into a JSON value.
    pub fn to_value(&self) -> Value {
        Reader::new(self.bytes).value()
    }
}

/// The items of an array view.
#[derive(Debug, Clone)]
pub struct Items<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Items<'a> {
    type Item = PayloadRef<'a>;

    fn next(&mut self) -> Option<PayloadRef<'a>> {
        if self.left == 0 || self.reader.is_empty() {
            return None;
        }
        self.left -= 1;
        Some(PayloadRef::new(self.reader.skip()))
    }
}

/// The pairs of an object view.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    reader: Reader<'a>,
    left: usize,
}

impl<'a> Iterator for Entries<'a> {
    type Item = (&'a str, PayloadRef<'a>);

    fn next(&mut self) -> Option<(&'a str, PayloadRef<'a>)> {
        if self.left == 0 || self.reader.is_empty() {
            return None;
        }
        self.left -= 1;
        let key = self.reader.key();
        Some((key, PayloadRef::new(self.reader.skip())))
    }
}

impl Serialize for PayloadRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.token() {
            Token::Null => s.serialize_unit(),
            Token::Bool(b) => s.serialize_bool(b),
            Token::Int(i) => s.serialize_i64(i),
            Token::Float(f) => s.serialize_f64(f),
            Token::Str(t) => s.serialize_str(t),
            Token::Array(_) => {
                let items = self.items();
                let mut seq = s.serialize_seq(Some(items.left))?;
                for item in items {
                    seq.serialize_element(&item)?;
                }
                seq.end()
            }
            Token::Object(_) => {
                let entries = self.entries();
                let mut map = s.serialize_map(Some(entries.left))?;
                for (k, v) in entries {
                    map.serialize_entry(k, &v)?;
                }
                map.end()
            }
        }
    }
}

impl fmt::Debug for PayloadRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_value(), f)
    }
}

impl fmt::Display for PayloadRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack_value;
    use serde_json::json;

    #[test]
    fn fields_read_without_decoding_the_rest() {
        let bytes = pack_value(&json!({"skip": {"deep": [1, [2, {"x": 3}]]},
            "name": "é", "n": -4, "f": 0.5, "ok": true, "list": [10, "b"]}));
        let p = PayloadRef::new(&bytes);
        assert!(p.is_object());
        assert_eq!(p.len(), Some(6));
        assert_eq!(p.get("name").and_then(|v| v.as_str()), Some("é"));
        assert_eq!(p.get("n").and_then(|v| v.as_i64()), Some(-4));
        assert_eq!(p.get("n").and_then(|v| v.as_u64()), None);
        assert_eq!(p.get("n").and_then(|v| v.as_f64()), Some(-4.0));
        assert_eq!(p.get("f").and_then(|v| v.as_i64()), None);
        assert_eq!(p.get("ok").and_then(|v| v.as_bool()), Some(true));
        assert_eq!(p.get("absent"), None);
        let list = p.get("list").unwrap();
        assert_eq!(list.item(1).and_then(|v| v.as_str()), Some("b"));
        assert_eq!(list.item(2), None);
        let numbers: Vec<_> = list.items().filter_map(|v| v.as_i64()).collect();
        assert_eq!(numbers, [10]);
        let keys: Vec<_> = p.entries().map(|(k, _)| k).collect();
        // In the order written (a `serde_json` map sorts its keys).
        assert_eq!(keys, ["f", "list", "n", "name", "ok", "skip"]);
        assert_eq!(
            p.get("skip").unwrap().to_value(),
            json!({"deep": [1, [2, {"x": 3}]]})
        );
        assert_eq!(serde_json::to_value(p).unwrap(), p.to_value());
        assert!(PayloadRef::new(&[]).is_null());
        assert_eq!(PayloadRef::new(&[]).items().count(), 0);
    }
}
