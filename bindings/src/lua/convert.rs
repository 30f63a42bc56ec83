//! JSON values to Lua values and back, by hand.
//!
//! This is the hot path of every event: a payload goes in as a table and a
//! published table comes back out. Walking the values directly is several
//! times cheaper than mlua's serde bridge (see `docs/performance/throughput.md`).
//! Rules: `null` is `nil`; integers stay integers; a table whose keys are
//! exactly `1..n` is an array; any other table is an object with its keys
//! sorted (so output is deterministic); an empty table is `{}` unless it came
//! in as `[]`. Functions, coroutines and userdata cannot become JSON.

use mlua::{Lua, Table, Value as LuaValue};
use serde_json::{Map, Number, Value};

/// Deepest nesting converted; deeper is almost surely a table that contains itself.
pub(crate) const MAX_DEPTH: usize = 64;

/// Registry key of the metatable that marks empty tables that were JSON arrays.
const ARRAY_MARK: &str = "plughost.array";
/// [`ARRAY_MARK`] for the C API.
pub(crate) const ARRAY_MARK_C: &std::ffi::CStr = c"plughost.array";

/// Metatable field of the prelude's read-only views (`config` and its parts),
/// which hold no entries of their own: the table they show. A view converts
/// as that table.
const VIEW_KEY: &str = "__plughost_view";
/// [`VIEW_KEY`] for the C API.
pub(crate) const VIEW_KEY_C: &std::ffi::CStr = c"__plughost_view";

pub(crate) use crate::convert_error::ConvertError;

/// Prepares the interpreter for conversions (the array marker).
pub(crate) fn install(lua: &Lua) -> mlua::Result<()> {
    let mark = lua.create_table()?;
    mark.set("__name", "array")?;
    // Out of the script's reach: the host sets it on tables in C, so a
    // `__gc` a script put in it would make the host mark tables for
    // finalization, which Lua runs with the time limit off.
    mark.set("__metatable", false)?;
    lua.set_named_registry_value(ARRAY_MARK, mark)
}

/// Converts a `state` (the plugin's own at load, or the old version's given
/// to `on_promote`) into a Lua value: none (`null`) is an empty table.
pub(crate) fn state_to_lua(lua: &Lua, state: &Value) -> mlua::Result<LuaValue> {
    match state {
        Value::Null => Ok(LuaValue::Table(lua.create_table()?)),
        other => to_lua(lua, other),
    }
}

/// Converts a JSON value into a Lua value.
pub(crate) fn to_lua(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, to_lua(lua, item)?)?;
            }
            if items.is_empty() {
                t.set_metatable(Some(lua.named_registry_value::<Table>(ARRAY_MARK)?))?;
            }
            LuaValue::Table(t)
        }
        Value::Object(map) => {
            let t = lua.create_table_with_capacity(0, map.len())?;
            for (k, v) in map {
                t.raw_set(k.as_str(), to_lua(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// Converts a Lua value into JSON.
pub(crate) fn from_lua(value: &LuaValue) -> Result<Value, ConvertError> {
    from_lua_at(value, 0)
}

fn from_lua_at(value: &LuaValue, depth: usize) -> Result<Value, ConvertError> {
    Ok(match value {
        LuaValue::Nil => Value::Null,
        LuaValue::Boolean(b) => Value::Bool(*b),
        LuaValue::Integer(i) => Value::Number((*i).into()),
        LuaValue::Number(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| ConvertError::new(format!("{f} is not a JSON number")))?,
        LuaValue::String(s) => Value::String(lua_string(s)),
        LuaValue::Table(t) => {
            if depth >= MAX_DEPTH {
                return Err(ConvertError::new(format!(
                    "nested more than {MAX_DEPTH} levels deep (does a table contain itself?)"
                )));
            }
            table_to_json(t, depth + 1)?
        }
        LuaValue::LightUserData(p) if p.0.is_null() => Value::Null,
        other => {
            return Err(ConvertError::new(format!(
                "a {} cannot be converted to JSON",
                other.type_name()
            )));
        }
    })
}

fn lua_string(s: &mlua::LuaString) -> String {
    match s.to_str() {
        Ok(s) => s.to_owned(),
        Err(_) => String::from_utf8_lossy(&s.as_bytes()).into_owned(),
    }
}

/// A converted table entry's key.
enum Key {
    Index(i64),
    Name(String),
}

fn table_to_json(t: &Table, depth: usize) -> Result<Value, ConvertError> {
    if let Some(shown) = t
        .metatable()
        .and_then(|m| m.raw_get::<Option<Table>>(VIEW_KEY).ok().flatten())
    {
        return table_to_json(&shown, depth);
    }
    // One pass: convert every value while reading the keys, then decide
    // between array and object.
    let mut entries: Vec<(Key, Value)> = Vec::with_capacity(t.raw_len());
    let mut failure: Option<ConvertError> = None;
    t.for_each(|k: LuaValue, v: LuaValue| {
        let key = match k {
            LuaValue::Integer(i) => Key::Index(i),
            LuaValue::String(s) => Key::Name(lua_string(&s)),
            LuaValue::Number(f) => Key::Name(f.to_string()),
            LuaValue::Boolean(b) => Key::Name(b.to_string()),
            other => {
                failure = Some(ConvertError::new(format!(
                    "a {} cannot be a JSON object key",
                    other.type_name()
                )));
                return Err(mlua::Error::runtime("stop"));
            }
        };
        match from_lua_at(&v, depth) {
            Ok(value) => {
                entries.push((key, value));
                Ok(())
            }
            Err(e) => {
                let seg = match &key {
                    Key::Index(i) => format!("[{i}]"),
                    Key::Name(n) => format!(".{n}"),
                };
                failure = Some(e.at(seg));
                Err(mlua::Error::runtime("stop"))
            }
        }
    })
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| ConvertError::new(e.to_string()))
    })?;
    if entries.is_empty() {
        let is_array = t
            .metatable()
            .and_then(|m| m.raw_get::<String>("__name").ok())
            .is_some_and(|n| n == "array");
        return Ok(if is_array {
            Value::Array(Vec::new())
        } else {
            Value::Object(Map::new())
        });
    }
    let n = entries.len();
    let is_sequence = entries
        .iter()
        .all(|(k, _)| matches!(k, Key::Index(i) if *i >= 1 && (*i as usize) <= n));
    if is_sequence {
        // Keys are distinct and all in 1..=n, so every slot is filled.
        let mut items = vec![Value::Null; n];
        for (k, v) in entries {
            if let Key::Index(i) = k {
                items[i as usize - 1] = v;
            }
        }
        return Ok(Value::Array(items));
    }
    let mut named: Vec<(String, Value)> = entries
        .into_iter()
        .map(|(k, v)| match k {
            Key::Index(i) => (i.to_string(), v),
            Key::Name(n) => (n, v),
        })
        .collect();
    named.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Value::Object(named.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(v: Value) -> Value {
        let lua = Lua::new();
        install(&lua).unwrap();
        from_lua(&to_lua(&lua, &v).unwrap()).unwrap()
    }

    #[test]
    fn values_roundtrip() {
        let v =
            json!({"s": "x", "i": 3, "f": 1.5, "b": true, "n": {"a": [1, 2, {"z": []}]}, "e": {}});
        assert_eq!(roundtrip(v.clone()), v);
    }

    #[test]
    fn nulls_become_nil_and_vanish_from_objects() {
        assert_eq!(roundtrip(json!({"a": null, "b": 1})), json!({"b": 1}));
    }

    #[test]
    fn lua_tables_become_arrays_or_sorted_objects() {
        let lua = Lua::new();
        install(&lua).unwrap();
        let v: LuaValue = lua
            .load("return {b = 1, a = {10, 20}, [3] = 'x'}")
            .eval()
            .unwrap();
        assert_eq!(
            from_lua(&v).unwrap(),
            json!({"3": "x", "a": [10, 20], "b": 1})
        );
        let sparse: LuaValue = lua.load("return {[1] = 1, [3] = 3}").eval().unwrap();
        assert_eq!(from_lua(&sparse).unwrap(), json!({"1": 1, "3": 3}));
    }

    #[test]
    fn unconvertible_values_name_their_path() {
        let lua = Lua::new();
        let v: LuaValue = lua.load("return {items = {1, print}}").eval().unwrap();
        let err = from_lua(&v).unwrap_err();
        assert_eq!(
            err.message("payload"),
            "a function cannot be converted to JSON (at payload.items[2])"
        );
        let cyclic: LuaValue = lua.load("local t = {}; t.t = t; return t").eval().unwrap();
        assert!(
            from_lua(&cyclic)
                .unwrap_err()
                .message("state")
                .contains("contain itself")
        );
        let nan: LuaValue = lua.load("return {x = 0/0}").eval().unwrap();
        assert!(from_lua(&nan).is_err());
    }
}
