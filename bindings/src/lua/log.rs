//! `log.trace/debug/info/warn/error(msg [, fields])` and `print(...)`.
//!
//! Both become host log records carrying the plugin's identity and the
//! script's file and line; nothing a script prints reaches stdout.

use mlua::{Lua, MultiValue, Value as LuaValue};
use serde_json::Value;

use super::context::{Ctx, convert_error};
use super::convert::from_lua;
use super::error::caller_position;
use crate::LogLevel;

/// Registers the `log` table and replaces `print`.
pub(crate) fn register(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let log = lua.create_table()?;
    for (name, level) in [
        ("trace", LogLevel::Trace),
        ("debug", LogLevel::Debug),
        ("info", LogLevel::Info),
        ("warn", LogLevel::Warn),
        ("error", LogLevel::Error),
    ] {
        let c = ctx.clone();
        log.set(
            name,
            lua.create_function(move |lua, (msg, fields): (LuaValue, Option<LuaValue>)| {
                // `__tostring` runs script code from here.
                let _reentry = super::reentry::Reentry::enter(lua, "log")?;
                let message = display(&msg)?;
                let fields = match fields {
                    None | Some(LuaValue::Nil) => None,
                    Some(v) => match from_lua(&v).map_err(|e| convert_error(lua, "fields", e))? {
                        Value::Object(map) => Some(map),
                        other => {
                            let mut map = serde_json::Map::new();
                            map.insert("value".into(), other);
                            Some(map)
                        }
                    },
                };
                emit(lua, &c, level, &message, fields.as_ref());
                Ok(())
            })?,
        )?;
    }
    lua.globals().set("log", log)?;

    let c = ctx.clone();
    let print = lua.create_function(move |lua, args: MultiValue| {
        // `__tostring` runs script code from here.
        let _reentry = super::reentry::Reentry::enter(lua, "print")?;
        let parts = args.iter().map(display).collect::<mlua::Result<Vec<_>>>()?;
        emit(lua, &c, LogLevel::Info, &parts.join("\t"), None);
        Ok(())
    })?;
    lua.globals().set("print", print)
}

fn emit(
    lua: &Lua,
    ctx: &Ctx,
    level: LogLevel,
    message: &str,
    fields: Option<&serde_json::Map<String, Value>>,
) {
    let pos = caller_position(lua);
    ctx.core().log(
        level,
        message,
        fields,
        pos.as_ref().map(|(f, _)| f.as_str()),
        pos.as_ref().map(|(_, l)| *l),
    );
}

/// `tostring` of a value, honouring `__tostring`.
fn display(v: &LuaValue) -> mlua::Result<String> {
    Ok(match v {
        LuaValue::String(s) => s.to_string_lossy(),
        other => other.to_string()?,
    })
}
