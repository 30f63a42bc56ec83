//! `json.encode(value)` and `json.decode(text)`: JSON text to and from the
//! plain values a runtime converts (`lua/convert.rs`, `rhai/convert.rs`).
//!
//! Decoding parses into a JSON tree, then checks it against the plugin's
//! limits (nesting as deep as the conversions allow, and for Rhai the
//! engine's array, map and string sizes) before the runtime builds its
//! values from it; a syntax error names the line and column in the text.
//! Encoding writes into a buffer that refuses to grow past the memory the
//! plugin has left.

use std::io;

use serde_json::Value;

use super::HelperError;

/// Deepest nesting decoded: the same as the runtimes' conversions accept.
pub(crate) const MAX_DEPTH: usize = 64;

/// What a decoded value may hold. `None` is unbounded (Lua, whose allocator
/// counts what the conversion builds).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Bounds {
    /// Total bytes of strings (keys included).
    pub strings: Option<usize>,
    /// Total items of arrays.
    pub items: Option<usize>,
    /// Total entries of maps.
    pub entries: Option<usize>,
}

/// Parses `text` into a JSON value within `bounds`. `helper` is the name
/// the messages give (`json.decode`, `json::decode`).
pub(crate) fn decode(helper: &str, text: &[u8], bounds: Bounds) -> Result<Value, HelperError> {
    let value: Value = serde_json::from_slice(text).map_err(|e| HelperError::Decode {
        helper: helper.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()).to_owned(),
    })?;
    let mut totals = Totals::default();
    totals
        .add(&value, 1)
        .map_err(|message| HelperError::Invalid {
            helper: helper.to_owned(),
            message,
        })?;
    for (total, bound, what) in [
        (totals.strings, bounds.strings, "strings"),
        (totals.items, bounds.items, "arrays"),
        (totals.entries, bounds.entries, "maps"),
    ] {
        if let Some(limit) = bound
            && total > limit
        {
            return Err(HelperError::TooLarge {
                helper: helper.to_owned(),
                what,
                limit,
            });
        }
    }
    Ok(value)
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
    fn add(&mut self, value: &Value, depth: usize) -> Result<(), String> {
        match value {
            Value::String(s) => self.strings += s.len(),
            Value::Array(_) | Value::Object(_) if depth > MAX_DEPTH => {
                return Err(format!("nested more than {MAX_DEPTH} levels deep"));
            }
            Value::Array(items) => {
                self.items += items.len();
                for item in items {
                    self.add(item, depth + 1)?;
                }
            }
            Value::Object(map) => {
                self.entries += map.len();
                for (k, v) in map {
                    self.strings += k.len();
                    self.add(v, depth + 1)?;
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
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
    fn encoding_stops_at_the_cap() {
        let v = json!(["x".repeat(100)]);
        assert!(encode("json.encode", &v, 104).is_ok());
        let err = encode("json.encode", &v, 103).unwrap_err();
        assert!(err.is_memory(), "{err}");
    }
}
