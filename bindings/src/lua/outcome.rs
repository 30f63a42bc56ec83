//! `outcome.retry([ms])`, `outcome.forward(topic, payload)`, `outcome.drop(reason)`,
//! `outcome.reply(payload)`, and reading what `on_event` returned.

use mlua::{Lua, UserData, Value as LuaValue};

use super::context::convert_error;
use super::error::raise;
use crate::{ErrorKind, Outcome, RuntimeKind, ScriptError};

/// An outcome value as scripts hold it.
pub(crate) struct LuaOutcome(pub Outcome);

impl UserData for LuaOutcome {
    fn add_methods<M: mlua::UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, this, ()| {
            Ok(format!("outcome {:?}", this.0))
        });
    }
}

/// Registers the `outcome` table.
pub(crate) fn register(lua: &Lua) -> mlua::Result<()> {
    let t = lua.create_table()?;
    t.set(
        "retry",
        lua.create_function(|lua, ms: Option<f64>| {
            crate::core::retry(RuntimeKind::Lua, ms)
                .map(LuaOutcome)
                .map_err(|e| raise(lua, e))
        })?,
    )?;
    t.set(
        "forward",
        lua.create_function(|lua, (topic, payload): (String, LuaValue)| {
            let payload = super::raw::to_payload(lua, &payload)
                .map_err(|e| convert_error(lua, "payload", e))?;
            Ok(LuaOutcome(crate::core::forward(topic, payload)))
        })?,
    )?;
    t.set(
        "reply",
        lua.create_function(|lua, payload: LuaValue| {
            let payload = super::raw::to_payload(lua, &payload)
                .map_err(|e| convert_error(lua, "payload", e))?;
            Ok(LuaOutcome(crate::core::reply(payload)))
        })?,
    )?;
    t.set(
        "drop",
        lua.create_function(|_, reason: Option<String>| Ok(LuaOutcome(crate::core::drop(reason))))?,
    )?;
    lua.globals().set("outcome", t)
}

/// Reads `on_event`'s return value.
pub(crate) fn from_return(value: LuaValue) -> Result<Outcome, ScriptError> {
    match &value {
        LuaValue::Nil => return Ok(Outcome::Ack),
        LuaValue::Boolean(true) => return Ok(Outcome::Ack),
        LuaValue::String(s) if s.as_bytes().as_ref() == b"ack" => return Ok(Outcome::Ack),
        LuaValue::UserData(ud) => {
            if let Ok(o) = ud.borrow::<LuaOutcome>() {
                return Ok(o.0.clone());
            }
        }
        _ => {}
    }
    // Read after the hook call, outside its time limit: a value with a
    // metatable (`__tostring`, `__name`) is only named by its type, so no
    // script code runs here.
    let shown = match &value {
        LuaValue::String(s) => format!("\"{}\"", s.to_string_lossy()),
        LuaValue::Boolean(_) | LuaValue::Integer(_) | LuaValue::Number(_) => other_text(&value),
        other => format!("a {}", other.type_name()),
    };
    Err(ScriptError::new(
        ErrorKind::BadReturn,
        format!(
            "on_event returned {shown}; expected nothing, true, \"ack\" or an outcome.retry/forward/drop/reply(...) value"
        ),
    ))
}

/// A plain value as Lua writes it.
fn other_text(value: &LuaValue) -> String {
    value
        .to_string()
        .unwrap_or_else(|_| value.type_name().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_value_is_named_without_running_its_metamethods() {
        let lua = Lua::new();
        let v: LuaValue = lua
            .load("return setmetatable({}, {__tostring = function() while true do end end})")
            .eval()
            .unwrap();
        let err = from_return(v).unwrap_err();
        assert!(
            err.message.starts_with("on_event returned a table;"),
            "{err}"
        );
        let err = from_return(LuaValue::Integer(42)).unwrap_err();
        assert!(err.message.starts_with("on_event returned 42;"), "{err}");
    }
}
