//! Conversions between packed bytes and `serde_json::Value`, by a direct
//! walk (faster than going through serde).

use serde_json::Value;

use crate::{Reader, Writer};

/// Writes a JSON value (an integer beyond `i64` as a float).
pub fn write_value(w: &mut Writer, v: &Value) {
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
            items.iter().for_each(|i| write_value(w, i));
            w.finish_container(slot, items.len());
        }
        Value::Object(map) => {
            let slot = w.begin_object();
            for (k, v) in map {
                w.key(k);
                write_value(w, v);
            }
            w.finish_container(slot, map.len());
        }
    }
}

/// A JSON value, packed.
pub fn pack_value(v: &Value) -> Vec<u8> {
    let mut w = Writer::new();
    write_value(&mut w, v);
    w.into_bytes()
}

/// Packed bytes as a JSON value (no bytes read as `null`). Validate bytes
/// from elsewhere first: this walk recurses once per level.
pub fn unpack_value(bytes: &[u8]) -> Value {
    Reader::new(bytes).value()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packed_values_decode_to_the_same_value() {
        let v = json!({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null,
                       "a": [1, "two", [], {}], "o": {"k": "é"}});
        assert_eq!(unpack_value(&pack_value(&v)), v);
        assert_eq!(unpack_value(&[]), Value::Null);
    }
}
