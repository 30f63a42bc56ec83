//! The hot-path conversions, on the raw Lua stack.
//!
//! mlua's typed API keeps every intermediate value as a registry-backed
//! reference; for an event that is a few dozen reference moves per field.
//! Here values are pushed and read with the C API inside one protected call
//! (`Lua::exec_raw`), which is several times cheaper. The semantics are those
//! of `convert` (which stays the reference implementation, used off the hot
//! path), and the tests below check that both agree.
//!
//! Safety: inside the protected call, only `push_json` may raise a Lua
//! error (out of memory), and it owns nothing that needs dropping; the
//! readers never call a function that can raise, so the Rust values they
//! build are never skipped by a `longjmp`.

use std::ffi::{CStr, c_char, c_int};

use mlua::{Lua, Table, Value as LuaValue, ffi};
use serde_json::Value;

use super::convert::{ARRAY_MARK_C, ConvertError, MAX_DEPTH, VIEW_KEY_C};
use crate::payload::{Reader, Token, Writer};
use crate::{Event, Payload};

/// Pushes a JSON value; may raise a Lua memory error.
unsafe fn push_json(state: *mut ffi::lua_State, value: &Value) {
    unsafe {
        ffi::luaL_checkstack(state, 4, std::ptr::null());
        match value {
            Value::Null => ffi::lua_pushnil(state),
            Value::Bool(b) => ffi::lua_pushboolean(state, c_int::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => ffi::lua_pushinteger(state, i),
                None => ffi::lua_pushnumber(state, n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => push_str(state, s),
            Value::Array(items) => {
                ffi::lua_createtable(state, c_int::try_from(items.len()).unwrap_or(0), 0);
                for (i, item) in items.iter().enumerate() {
                    push_json(state, item);
                    ffi::lua_rawseti(state, -2, i as ffi::lua_Integer + 1);
                }
                if items.is_empty() {
                    ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, ARRAY_MARK_C.as_ptr());
                    ffi::lua_setmetatable(state, -2);
                }
            }
            Value::Object(map) => {
                ffi::lua_createtable(state, 0, c_int::try_from(map.len()).unwrap_or(0));
                for (k, v) in map {
                    push_str(state, k);
                    push_json(state, v);
                    ffi::lua_rawset(state, -3);
                }
            }
        }
    }
}

unsafe fn push_str(state: *mut ffi::lua_State, s: &str) {
    unsafe {
        ffi::lua_pushlstring(state, s.as_ptr() as *const c_char, s.len());
    }
}

/// Packs the value at `idx`; never raises a Lua error.
unsafe fn pack_value(
    state: *mut ffi::lua_State,
    idx: c_int,
    depth: usize,
    w: &mut Writer,
) -> Result<(), ConvertError> {
    unsafe {
        match ffi::lua_type(state, idx) {
            ffi::LUA_TNIL => w.null(),
            ffi::LUA_TBOOLEAN => w.bool(ffi::lua_toboolean(state, idx) != 0),
            ffi::LUA_TNUMBER => {
                if ffi::lua_isinteger(state, idx) != 0 {
                    w.int(ffi::lua_tointegerx(state, idx, std::ptr::null_mut()));
                } else {
                    let f = ffi::lua_tonumberx(state, idx, std::ptr::null_mut());
                    if !f.is_finite() {
                        return Err(ConvertError::new(format!("{f} is not a JSON number")));
                    }
                    w.float(f);
                }
            }
            ffi::LUA_TSTRING => w.str(&read_str(state, idx)),
            ffi::LUA_TTABLE => {
                if depth >= MAX_DEPTH {
                    return Err(ConvertError::new(format!(
                        "nested more than {MAX_DEPTH} levels deep (does a table contain itself?)"
                    )));
                }
                pack_table(state, ffi::lua_absindex(state, idx), depth + 1, w)?;
            }
            ffi::LUA_TLIGHTUSERDATA if ffi::lua_touserdata(state, idx).is_null() => w.null(),
            t => {
                let name = CStr::from_ptr(ffi::lua_typename(state, t)).to_string_lossy();
                return Err(ConvertError::new(format!(
                    "a {name} cannot be converted to JSON"
                )));
            }
        }
        Ok(())
    }
}

/// The string at `idx`, which must be a string (not a number: converting a
/// number in place would confuse `lua_next`). Invalid UTF-8 is replaced.
unsafe fn read_str<'a>(state: *mut ffi::lua_State, idx: c_int) -> std::borrow::Cow<'a, str> {
    unsafe {
        let mut len = 0usize;
        let ptr = ffi::lua_tolstring(state, idx, &mut len);
        let bytes = std::slice::from_raw_parts(ptr as *const u8, len);
        // Valid text (nearly every key and string) is checked in one pass;
        // only invalid text takes the replacing path.
        match std::str::from_utf8(bytes) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(bytes),
        }
    }
}

unsafe fn pack_table(
    state: *mut ffi::lua_State,
    idx: c_int,
    depth: usize,
    w: &mut Writer,
) -> Result<(), ConvertError> {
    unsafe {
        if ffi::lua_checkstack(state, 3) == 0 {
            return Err(ConvertError::new("Lua stack exhausted"));
        }
        // A sequence 1..n with no other key is an array; anything else an object.
        let start = w.position();
        let len = ffi::lua_rawlen(state, idx);
        if len > 0 {
            let slot = w.begin_array();
            for i in 1..=len {
                ffi::lua_rawgeti(state, idx, i as ffi::lua_Integer);
                let top = ffi::lua_gettop(state);
                let item = pack_value(state, top, depth, w);
                ffi::lua_pop(state, 1);
                item.map_err(|e| e.at(format!("[{i}]")))?;
            }
            if count_entries(state, idx) == len {
                w.finish_container(slot, len);
                return Ok(());
            }
            w.truncate(start);
        }
        let slot = w.begin_object();
        let mut count = 0;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, idx) != 0 {
            match ffi::lua_type(state, -2) {
                ffi::LUA_TSTRING => w.key(&read_str(state, -2)),
                ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -2) != 0 => {
                    w.key(&ffi::lua_tointegerx(state, -2, std::ptr::null_mut()).to_string())
                }
                ffi::LUA_TNUMBER => {
                    w.key(&ffi::lua_tonumberx(state, -2, std::ptr::null_mut()).to_string())
                }
                ffi::LUA_TBOOLEAN => w.key(if ffi::lua_toboolean(state, -2) != 0 {
                    "true"
                } else {
                    "false"
                }),
                t => {
                    ffi::lua_pop(state, 2);
                    let name = CStr::from_ptr(ffi::lua_typename(state, t)).to_string_lossy();
                    return Err(ConvertError::new(format!(
                        "a {name} cannot be a JSON object key"
                    )));
                }
            };
            let top = ffi::lua_gettop(state);
            if let Err(e) = pack_value(state, top, depth, w) {
                let key = read_key_for_path(state);
                ffi::lua_pop(state, 2);
                return Err(e.at(format!(".{key}")));
            }
            count += 1;
            ffi::lua_pop(state, 1);
        }
        if count == 0 && ffi::lua_getmetatable(state, idx) != 0 {
            // A read-only view (`config`) converts as the table it shows.
            if ffi::lua_getfield(state, -1, VIEW_KEY_C.as_ptr()) == ffi::LUA_TTABLE {
                w.truncate(start);
                let shown = pack_table(state, ffi::lua_gettop(state), depth, w);
                ffi::lua_pop(state, 2);
                return shown;
            }
            ffi::lua_pop(state, 1);
            ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, ARRAY_MARK_C.as_ptr());
            let is_array = ffi::lua_rawequal(state, -1, -2) != 0;
            ffi::lua_pop(state, 2);
            if is_array {
                w.truncate(start);
                let slot = w.begin_array();
                w.finish_container(slot, 0);
                return Ok(());
            }
        }
        w.finish_container(slot, count);
        Ok(())
    }
}

/// The key at -2 as text, for an error's path.
unsafe fn read_key_for_path(state: *mut ffi::lua_State) -> String {
    unsafe {
        match ffi::lua_type(state, -2) {
            ffi::LUA_TSTRING => read_str(state, -2).into_owned(),
            ffi::LUA_TNUMBER if ffi::lua_isinteger(state, -2) != 0 => {
                ffi::lua_tointegerx(state, -2, std::ptr::null_mut()).to_string()
            }
            ffi::LUA_TNUMBER => ffi::lua_tonumberx(state, -2, std::ptr::null_mut()).to_string(),
            _ => (ffi::lua_toboolean(state, -2) != 0).to_string(),
        }
    }
}

/// Pushes a packed value; may raise a Lua memory error.
unsafe fn push_packed(state: *mut ffi::lua_State, r: &mut Reader<'_>) {
    unsafe {
        ffi::luaL_checkstack(state, 4, std::ptr::null());
        match r.next_token() {
            Token::Null => ffi::lua_pushnil(state),
            Token::Bool(b) => ffi::lua_pushboolean(state, c_int::from(b)),
            Token::Int(i) => ffi::lua_pushinteger(state, i),
            Token::Float(f) => ffi::lua_pushnumber(state, f),
            Token::Str(s) => push_str(state, s),
            Token::Array(n) => {
                ffi::lua_createtable(state, c_int::try_from(n).unwrap_or(0), 0);
                for i in 1..=n {
                    push_packed(state, r);
                    ffi::lua_rawseti(state, -2, i as ffi::lua_Integer);
                }
                if n == 0 {
                    ffi::lua_getfield(state, ffi::LUA_REGISTRYINDEX, ARRAY_MARK_C.as_ptr());
                    ffi::lua_setmetatable(state, -2);
                }
            }
            Token::Object(n) => {
                ffi::lua_createtable(state, 0, c_int::try_from(n).unwrap_or(0));
                for _ in 0..n {
                    push_str(state, r.key());
                    push_packed(state, r);
                    ffi::lua_rawset(state, -3);
                }
            }
        }
    }
}

/// Pushes a payload, packed or not; may raise a Lua memory error.
unsafe fn push_payload(state: *mut ffi::lua_State, payload: &Payload) {
    unsafe {
        match payload.packed() {
            Some(bytes) => push_packed(state, &mut Reader::new(bytes)),
            None => push_json(state, payload.value()),
        }
    }
}

/// The number of entries of the table at `idx`.
unsafe fn count_entries(state: *mut ffi::lua_State, idx: c_int) -> usize {
    unsafe {
        let mut n = 0;
        ffi::lua_pushnil(state);
        while ffi::lua_next(state, idx) != 0 {
            n += 1;
            ffi::lua_pop(state, 1);
        }
        n
    }
}

/// Packs a Lua value into a payload.
pub(crate) fn to_payload(lua: &Lua, value: &LuaValue) -> Result<Payload, ConvertError> {
    let mut out = None;
    // SAFETY: `pack_value` never raises (see the module doc).
    let pushed = unsafe {
        lua.exec_raw::<()>(value, |state| {
            let mut w = Writer::new();
            out = Some(pack_value(state, -1, 0, &mut w).map(|()| w.finish()));
        })
    };
    match (pushed, out) {
        (Ok(()), Some(result)) => result,
        (Err(e), _) => Err(ConvertError::new(e.to_string())),
        (Ok(()), None) => Err(ConvertError::new("conversion did not run")),
    }
}

/// Builds the `event` table handed to `on_event`.
pub(crate) fn event_table(lua: &Lua, event: &Event) -> mlua::Result<Table> {
    // SAFETY: the closure only pushes values; an out-of-memory error unwinds
    // through frames that own nothing.
    unsafe {
        lua.exec_raw((), |state| {
            ffi::luaL_checkstack(state, 6, std::ptr::null());
            ffi::lua_createtable(state, 0, 7);
            for (key, value) in [
                (c"id", event.id.as_str()),
                (c"topic", event.topic.as_str()),
                (c"source", event.source.as_str()),
                (c"timestamp", event.timestamp.as_str()),
            ] {
                push_str(state, value);
                ffi::lua_setfield(state, -2, key.as_ptr());
            }
            if let Some(c) = &event.correlation_id {
                push_str(state, c);
                ffi::lua_setfield(state, -2, c"correlation_id".as_ptr());
            }
            push_payload(state, &event.payload);
            ffi::lua_setfield(state, -2, c"payload".as_ptr());
            ffi::lua_createtable(state, 0, c_int::try_from(event.headers.len()).unwrap_or(0));
            for (k, v) in &event.headers {
                push_str(state, k);
                push_str(state, v);
                ffi::lua_rawset(state, -3);
            }
            ffi::lua_setfield(state, -2, c"headers".as_ptr());
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn raw_and_reference_conversions_agree() {
        let lua = Lua::new();
        super::super::convert::install(&lua).unwrap();
        for v in [
            json!({"s": "x", "i": 3, "f": 1.5, "b": true, "n": {"a": [1, 2, {"z": []}]}, "e": {}}),
            json!([1, "two", null, 4.5]),
            json!("plain"),
            json!(-7),
        ] {
            let reference = super::super::convert::to_lua(&lua, &v).unwrap();
            let back = to_payload(&lua, &reference).unwrap();
            assert!(back.packed().is_some());
            let expected = super::super::convert::from_lua(&reference).unwrap();
            assert_eq!(back, expected, "{v}");
            // And a packed payload pushes back as the same value.
            let e = Event::new("t", back, "p");
            let t = event_table(&lua, &e).unwrap();
            let again: LuaValue = t.get("payload").unwrap();
            assert_eq!(
                super::super::convert::from_lua(&again).unwrap(),
                expected,
                "{v}"
            );
        }
        let t: LuaValue = lua.load("return {items = {1, print}}").eval().unwrap();
        assert_eq!(
            to_payload(&lua, &t).unwrap_err().message("payload"),
            "a function cannot be converted to JSON (at payload.items[2])"
        );
    }

    #[test]
    fn invalid_utf8_in_keys_and_strings_is_replaced_as_before() {
        let lua = Lua::new();
        super::super::convert::install(&lua).unwrap();
        let t: LuaValue = lua
            .load(r#"return {["k\255"] = "v\200x", ok = "caf\195\169"}"#)
            .eval()
            .unwrap();
        let packed = to_payload(&lua, &t).unwrap();
        assert_eq!(
            packed.into_value(),
            json!({"k\u{FFFD}": "v\u{FFFD}x", "ok": "café"})
        );
    }

    #[test]
    fn event_tables_carry_every_field() {
        let lua = Lua::new();
        super::super::convert::install(&lua).unwrap();
        let mut e = Event::new("a.b", json!({"k": [1, 2], "empty": []}), "host");
        e.correlation_id = Some("c1".into());
        e.headers.insert("traceparent".into(), "00-x".into());
        let t = event_table(&lua, &e).unwrap();
        assert_eq!(t.get::<String>("topic").unwrap(), "a.b");
        assert_eq!(t.get::<String>("id").unwrap(), e.id);
        assert_eq!(t.get::<String>("correlation_id").unwrap(), "c1");
        let headers: Table = t.get("headers").unwrap();
        assert_eq!(headers.get::<String>("traceparent").unwrap(), "00-x");
        let payload: LuaValue = t.get("payload").unwrap();
        assert_eq!(to_payload(&lua, &payload).unwrap(), e.payload);
    }
}
