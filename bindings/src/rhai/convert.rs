//! JSON payloads to Rhai values and back.
//!
//! Objects are object maps, arrays are arrays, integers `INT`, floats
//! `FLOAT`, `null` is `()`. A packed payload is read straight into Rhai
//! values, and a value a script publishes is packed straight from Rhai
//! values, without a JSON tree in between. Function pointers and custom
//! types cannot become JSON; the error names where they are.
//!
//! Maps and arrays become values through `Dynamic::from_map` and
//! `Dynamic::from_array`: Rhai's `From<BTreeMap>` and `From<Vec>` rebuild
//! the whole collection, item by item, on the way in.

use rhai::{Array, Dynamic, FLOAT, INT, ImmutableString, Map};
use serde_json::Value;

use crate::Payload;
use crate::convert_error::ConvertError;
use crate::payload::{Reader, Token, Writer};

/// Deepest nesting converted; deeper values are refused.
const MAX_DEPTH: usize = 64;

/// A payload as a Rhai value.
pub(crate) fn payload_to_dynamic(payload: &Payload) -> Dynamic {
    match payload.packed() {
        Some(bytes) => read(&mut Reader::new(bytes)),
        None => to_dynamic(payload.value()),
    }
}

fn read(r: &mut Reader<'_>) -> Dynamic {
    match r.next_token() {
        Token::Null => Dynamic::UNIT,
        Token::Bool(b) => b.into(),
        Token::Int(i) => (i as INT).into(),
        Token::Float(f) => (f as FLOAT).into(),
        Token::Str(s) => ImmutableString::from(s).into(),
        Token::Array(n) => {
            let items: Array = (0..n).map(|_| read(r)).collect();
            Dynamic::from_array(items)
        }
        Token::Object(n) => {
            let mut map = Map::new();
            for _ in 0..n {
                let k = r.key();
                map.insert(k.into(), read(r));
            }
            Dynamic::from_map(map)
        }
    }
}

/// A JSON value as a Rhai value.
pub(crate) fn to_dynamic(value: &Value) -> Dynamic {
    match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => (i as INT).into(),
            None => (n.as_f64().unwrap_or(0.0) as FLOAT).into(),
        },
        Value::String(s) => ImmutableString::from(s.as_str()).into(),
        Value::Array(items) => Dynamic::from_array(items.iter().map(to_dynamic).collect()),
        Value::Object(map) => {
            // Inserting in order beats `collect`, which sorts a copy first.
            let mut out = Map::new();
            for (k, v) in map {
                out.insert(k.as_str().into(), to_dynamic(v));
            }
            Dynamic::from_map(out)
        }
    }
}

/// Packs a Rhai value into a payload.
pub(crate) fn to_payload(value: &Dynamic) -> Result<Payload, ConvertError> {
    let mut w = Writer::new();
    pack(value, 0, &mut w)?;
    Ok(w.finish())
}

/// A Rhai value as JSON (for log fields, metric attributes, `state`).
pub(crate) fn to_value(value: &Dynamic) -> Result<Value, ConvertError> {
    to_payload(value).map(Payload::into_value)
}

fn pack(value: &Dynamic, depth: usize, w: &mut Writer) -> Result<(), ConvertError> {
    if depth > MAX_DEPTH {
        return Err(ConvertError::new(format!(
            "nested more than {MAX_DEPTH} levels deep"
        )));
    }
    if value.is_shared() {
        // Read through the shared cell; no copy of what it holds.
        return match value.read_lock::<Dynamic>() {
            Some(inner) => pack(&inner, depth, w),
            None => Err(ConvertError::new(
                "a shared value is being written and cannot be read",
            )),
        };
    }
    // `is_*` before `as_*`: a failed `as_*` looks up the type's name.
    if value.is_unit() {
        w.null();
    } else if value.is_bool() {
        w.bool(value.as_bool().unwrap_or_default());
    } else if value.is_int() {
        w.int(value.as_int().unwrap_or_default());
    } else if value.is_float() {
        let f = value.as_float().unwrap_or_default();
        if !f.is_finite() {
            return Err(ConvertError::new(format!("{f} is not a JSON number")));
        }
        w.float(f);
    } else if value.is_char() {
        let c = value.as_char().unwrap_or_default();
        w.str(c.encode_utf8(&mut [0; 4]));
    } else if let Some(s) = value.read_lock::<ImmutableString>() {
        w.str(s.as_str());
    } else if let Some(items) = value.read_lock::<Array>() {
        let slot = w.begin_array();
        for (i, item) in items.iter().enumerate() {
            pack(item, depth + 1, w).map_err(|e| e.at(format!("[{}]", i + 1)))?;
        }
        w.finish_container(slot, items.len());
    } else if let Some(map) = value.read_lock::<Map>() {
        let slot = w.begin_object();
        for (k, v) in map.iter() {
            w.key(k.as_str());
            pack(v, depth + 1, w).map_err(|e| e.at(format!(".{k}")))?;
        }
        w.finish_container(slot, map.len());
    } else {
        return Err(ConvertError::new(format!(
            "a {} cannot be converted to JSON",
            value.type_name()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_roundtrip_through_rhai() {
        let v = json!({"s": "x", "i": 3, "f": 1.5, "b": true, "n": null,
                       "a": [1, "two", [], {}], "o": {"k": "é"}});
        let d = to_dynamic(&v);
        assert_eq!(to_value(&d).unwrap(), v);
        let packed = crate::payload::pack(&v);
        assert_eq!(to_value(&payload_to_dynamic(&packed)).unwrap(), v);
    }

    #[test]
    fn function_pointers_cannot_be_published() {
        let mut map = Map::new();
        map.insert("f".into(), Dynamic::from(rhai::FnPtr::new("x").unwrap()));
        let err = to_payload(&map.into()).unwrap_err();
        assert_eq!(
            err.message("payload"),
            "a Fn cannot be converted to JSON (at payload.f)"
        );
    }
}
