//! `json.encode(value)` and `json.decode(text)`: JSON text to and from the
//! plain values a runtime converts (`lua/convert.rs`, `rhai/convert.rs`).
//!
//! Decoding first reads the text without keeping anything, counting what
//! its JSON tree would hold and checking that against the plugin's limits
//! (nesting as deep as the conversions allow; for Rhai the engine's array,
//! map and string sizes; for Lua the bytes the tree would take, against the
//! memory the plugin has left, as the tree lives on the host's heap where
//! the limit does not count it). Only then is the tree built and the
//! runtime's values made from it; a syntax error names the line and column
//! in the text.
//! Encoding writes into a buffer that refuses to grow past the memory the
//! plugin has left.

use std::fmt;
use std::io;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::HelperError;

/// Deepest nesting decoded: the same as the runtimes' conversions accept.
pub(crate) const MAX_DEPTH: usize = 64;

/// What one array item costs in the JSON tree: a `Value`, in a `Vec` that
/// may have grown to twice what it holds.
const ITEM_COST: usize = 2 * std::mem::size_of::<Value>();
/// What one object entry costs in the JSON tree: its key's `String` and its
/// `Value` in a B-tree node that may be half empty, with the node's links.
const ENTRY_COST: usize = 2 * (std::mem::size_of::<String>() + std::mem::size_of::<Value>()) + 16;

/// What a decoded value may hold. `None` is unbounded.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds {
    /// Total bytes of strings (keys included).
    pub strings: Option<usize>,
    /// Total items of arrays.
    pub items: Option<usize>,
    /// Total entries of maps.
    pub entries: Option<usize>,
    /// Bytes the JSON tree itself may take on the host's heap, where the
    /// plugin's memory limit does not count it (Lua: the room it has left).
    pub bytes: Option<usize>,
}

/// Parses `text` into a JSON value within `bounds`. `helper` is the name
/// the messages give (`json.decode`, `json::decode`).
///
/// A first pass reads the text without building anything, counting what
/// the tree would hold, and refuses it past a bound; only then is the tree
/// built, so a huge document costs the host no more than the text.
pub(crate) fn decode(helper: &str, text: &[u8], bounds: Bounds) -> Result<Value, HelperError> {
    let syntax = |e: serde_json::Error| HelperError::Decode {
        helper: helper.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()).to_owned(),
    };
    let mut totals = Totals::default();
    let mut refused = None;
    let mut de = serde_json::Deserializer::from_slice(text);
    let counted = Count {
        totals: &mut totals,
        bounds: &bounds,
        refused: &mut refused,
        depth: 1,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(refusal) = refused {
        return Err(match refusal {
            Refusal::TooDeep => HelperError::Invalid {
                helper: helper.to_owned(),
                message: format!("nested more than {MAX_DEPTH} levels deep"),
            },
            Refusal::TooLarge { what, limit } => HelperError::TooLarge {
                helper: helper.to_owned(),
                what,
                limit,
            },
        });
    }
    counted.map_err(syntax)?;
    serde_json::from_slice(text).map_err(syntax)
}

/// Writes `value` as compact JSON text, refusing text longer than `max`
/// bytes before it is built.
pub(crate) fn encode(helper: &str, value: &Value, max: usize) -> Result<String, HelperError> {
    let mut out = Capped {
        buf: Vec::new(),
        max,
    };
    match serde_json::to_writer(&mut out, value) {
        Ok(()) => Ok(String::from_utf8(out.buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())),
        Err(e) if e.is_io() => Err(HelperError::TooLarge {
            helper: helper.to_owned(),
            what: "JSON text",
            limit: max,
        }),
        Err(e) => Err(HelperError::Invalid {
            helper: helper.to_owned(),
            message: e.to_string(),
        }),
    }
}

/// serde_json ends its messages with ` at line N column M`; ours put the
/// position in front.
fn strip_position(text: &str) -> &str {
    match text.rfind(" at line ") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// The sizes a decoded value adds up to.
#[derive(Debug, Default)]
struct Totals {
    strings: usize,
    items: usize,
    entries: usize,
}

impl Totals {
    /// What the JSON tree holding these would take on the heap, roughly
    /// and from above.
    fn bytes(&self) -> usize {
        self.strings
            .saturating_add(self.items.saturating_mul(ITEM_COST))
            .saturating_add(self.entries.saturating_mul(ENTRY_COST))
            .saturating_add(std::mem::size_of::<Value>())
    }

    /// The first bound these pass, as a refusal.
    fn over(&self, bounds: &Bounds) -> Option<Refusal> {
        [
            (self.strings, bounds.strings, "strings"),
            (self.items, bounds.items, "arrays"),
            (self.entries, bounds.entries, "maps"),
            (self.bytes(), bounds.bytes, "decoded value"),
        ]
        .into_iter()
        .find_map(|(total, bound, what)| match bound {
            Some(limit) if total > limit => Some(Refusal::TooLarge { what, limit }),
            _ => None,
        })
    }
}

/// Why counting stopped before the end of the text.
#[derive(Debug)]
enum Refusal {
    TooDeep,
    TooLarge { what: &'static str, limit: usize },
}

/// Reads one value from the text, counting it into `totals` without
/// keeping any of it; stops at the first bound passed, saying which in
/// `refused`.
struct Count<'a> {
    totals: &'a mut Totals,
    bounds: &'a Bounds,
    refused: &'a mut Option<Refusal>,
    depth: usize,
}

impl Count<'_> {
    /// A count one level deeper, into the same totals.
    fn inner(&mut self) -> Count<'_> {
        Count {
            totals: self.totals,
            bounds: self.bounds,
            refused: self.refused,
            depth: self.depth + 1,
        }
    }

    /// Stops with `refusal`.
    fn refuse<E: serde::de::Error>(&mut self, refusal: Refusal) -> E {
        *self.refused = Some(refusal);
        E::custom("refused")
    }

    /// Stops when the totals pass a bound.
    fn check<E: serde::de::Error>(&mut self) -> Result<(), E> {
        match self.totals.over(self.bounds) {
            Some(refusal) => Err(self.refuse(refusal)),
            None => Ok(()),
        }
    }

    /// Stops when a container here would be nested too deep.
    fn enter<E: serde::de::Error>(&mut self) -> Result<(), E> {
        if self.depth > MAX_DEPTH {
            return Err(self.refuse(Refusal::TooDeep));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(mut self, s: &str) -> Result<(), E> {
        self.totals.strings = self.totals.strings.saturating_add(s.len());
        self.check()
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.enter()?;
        while seq.next_element_seed(self.inner())?.is_some() {
            self.totals.items += 1;
            self.check()?;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.enter()?;
        while map.next_key_seed(self.inner())?.is_some() {
            map.next_value_seed(self.inner())?;
            self.totals.entries += 1;
            self.check()?;
        }
        Ok(())
    }
}

/// A buffer that fails a write past `max` bytes.
struct Capped {
    buf: Vec<u8>,
    max: usize,
}

impl io::Write for Capped {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.max {
            return Err(io::Error::other("over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_decode_error_names_line_and_column() {
        let err = decode(
            "json.decode",
            b"{\n  \"a\": 1,\n  \"b\": ?\n}",
            Bounds::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "json.decode: line 3, column 8: expected value"
        );
        let err = decode("json::decode", b"[1, 2", Bounds::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("json::decode: line 1, column 5: "),
            "{err}"
        );
    }

    #[test]
    fn values_roundtrip_compactly() {
        let v = json!({"a": [1, 2.5, null, true], "b": {"c": "é\n"}, "e": [], "o": {}});
        let text = encode("json.encode", &v, 1 << 20).unwrap();
        assert_eq!(
            text,
            r#"{"a":[1,2.5,null,true],"b":{"c":"é\n"},"e":[],"o":{}}"#
        );
        assert_eq!(
            decode("json.decode", text.as_bytes(), Bounds::default()).unwrap(),
            v
        );
    }

    #[test]
    fn too_deep_documents_are_refused() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(decode("json.decode", ok.as_bytes(), Bounds::default()).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = decode("json.decode", deep.as_bytes(), Bounds::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "json.decode: nested more than 64 levels deep"
        );
    }

    #[test]
    fn bounds_refuse_before_values_are_built() {
        let bounds = Bounds {
            strings: Some(10),
            items: Some(3),
            entries: Some(2),
            bytes: None,
        };
        assert!(decode("d", br#"{"ab": [1, 2, "xyz"]}"#, bounds).is_ok());
        for (text, what) in [
            (r#"[1, 2, [3, 4]]"#, "arrays"),
            (r#"{"a": 1, "b": {"c": 2}}"#, "maps"),
            (r#"["0123456789x"]"#, "strings"),
        ] {
            let err = decode("d", text.as_bytes(), bounds).unwrap_err();
            assert!(err.is_memory(), "{text}");
            assert!(err.to_string().contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn the_tree_is_refused_past_its_bytes_before_it_is_built() {
        let text = format!("[{}0]", "0,".repeat(100_000));
        let roomy = Bounds {
            bytes: Some(100_001 * ITEM_COST + 64),
            ..Bounds::default()
        };
        assert!(decode("json.decode", text.as_bytes(), roomy).is_ok());
        let tight = Bounds {
            bytes: Some(1 << 20),
            ..Bounds::default()
        };
        let err = decode("json.decode", text.as_bytes(), tight).unwrap_err();
        assert!(err.is_memory(), "{err}");
        assert!(err.to_string().contains("decoded value"), "{err}");
        // Keys and values of objects count too.
        let obj = format!(
            "{{{}\"z\": 0}}",
            (0..10_000)
                .map(|i| format!("\"k{i}\": 1,"))
                .collect::<String>()
        );
        let err = decode(
            "json.decode",
            obj.as_bytes(),
            Bounds {
                bytes: Some(10_000 * 64),
                ..Bounds::default()
            },
        )
        .unwrap_err();
        assert!(err.is_memory(), "{err}");
    }

    #[test]
    fn trailing_text_is_an_error_naming_its_position() {
        let err = decode("d", b"[1, 2] x", Bounds::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("d: line 1, column 8: trailing characters"),
            "{err}"
        );
    }

    #[test]
    fn encoding_stops_at_the_cap() {
        let v = json!(["x".repeat(100)]);
        assert!(encode("json.encode", &v, 104).is_ok());
        let err = encode("json.encode", &v, 103).unwrap_err();
        assert!(err.is_memory(), "{err}");
    }
}
