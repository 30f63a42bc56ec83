//! [`Reader`]: reads a packed value in the order it was written, one
//! [`Token`] at a time. It never panics, whatever the bytes: a buffer cut
//! short reads as zeros and `null`s (check untrusted bytes with
//! [`validate`](crate::validate) first).

use serde_json::{Map, Number, Value};

use crate::tag;

/// One item read from a packed value.
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

/// Reads a packed value in the order it was written.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over bytes written by a [`Writer`](crate::Writer).
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes }
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The tag of the next value, without reading it.
    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.bytes.first().copied()
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
        // Written from `&str`s (or validated), so valid UTF-8; the usual
        // short ASCII key or string is checked byte by byte, which costs
        // less than the general UTF-8 validation.
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
            tag::FALSE => Token::Bool(false),
            tag::TRUE => Token::Bool(true),
            tag::INT => Token::Int(i64::from_le_bytes(self.u64())),
            tag::FLOAT => Token::Float(f64::from_le_bytes(self.u64())),
            tag::STR => Token::Str(self.text()),
            tag::ARRAY => Token::Array(self.u32()),
            tag::OBJECT => Token::Object(self.u32()),
            _ => Token::Null,
        }
    }

    /// The next object key.
    pub fn key(&mut self) -> &'a str {
        self.text()
    }

    /// Skips the next value, however deep, and returns its bytes. Walks
    /// without recursion, so no nesting overflows the stack.
    pub fn skip(&mut self) -> &'a [u8] {
        let start = self.bytes;
        // The containers being walked: items left, and whether keys come first.
        let mut open: Vec<(usize, bool)> = Vec::new();
        loop {
            if self.bytes.is_empty() {
                break;
            }
            match self.next_token() {
                Token::Array(n) if n > 0 => open.push((n, false)),
                Token::Object(n) if n > 0 => open.push((n, true)),
                _ => {}
            }
            // The next item of the innermost container not done yet.
            let more = loop {
                match open.last_mut() {
                    None => break false,
                    Some((0, _)) => {
                        open.pop();
                    }
                    Some((left, keyed)) => {
                        *left -= 1;
                        if *keyed {
                            self.key();
                        }
                        break true;
                    }
                }
            };
            if !more {
                break;
            }
        }
        &start[..start.len() - self.bytes.len()]
    }

    /// Decodes the next value into JSON.
    pub fn value(&mut self) -> Value {
        match self.next_token() {
            Token::Null => Value::Null,
            Token::Bool(b) => Value::Bool(b),
            Token::Int(i) => Value::Number(i.into()),
            Token::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Token::Str(s) => Value::String(s.to_owned()),
            Token::Array(n) => {
                // A count is not trusted for an allocation: each item takes
                // at least one byte.
                let mut items = Vec::with_capacity(n.min(self.bytes.len()));
                for _ in 0..n {
                    if self.bytes.is_empty() {
                        break;
                    }
                    items.push(self.value());
                }
                Value::Array(items)
            }
            Token::Object(n) => {
                let mut map = Map::new();
                for _ in 0..n {
                    if self.bytes.is_empty() {
                        break;
                    }
                    let k = self.key().to_owned();
                    let v = self.value();
                    map.insert(k, v);
                }
                Value::Object(map)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack_value as to_value;
    use serde_json::json;

    #[test]
    fn skip_returns_exactly_one_value() {
        let v = json!([{"a": [1, {"b": "c"}], "d": null}, "next"]);
        let bytes = to_value(&v);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.next_token(), Token::Array(2));
        let first = r.skip();
        assert_eq!(
            Reader::new(first).value(),
            json!({"a": [1, {"b": "c"}], "d": null})
        );
        assert_eq!(r.next_token(), Token::Str("next"));
        assert!(r.is_empty());
    }

    #[test]
    fn garbage_reads_without_panicking() {
        for bytes in [
            &[7, 255, 255, 255, 255][..],
            &[6, 255, 255, 255, 255, 6],
            &[5, 9, 0, 0, 0, b'a'],
            &[3, 1],
            &[99, 1, 2],
        ] {
            let _ = Reader::new(bytes).value();
            let _ = Reader::new(bytes).skip();
        }
    }
}
