//! `bus.publish(topic, payload)` and the application's functions under `host`.

use mlua::{Lua, MultiValue, Table, Value as LuaValue};

use super::context::{Ctx, convert_error};
use super::convert::{from_lua, to_lua};
use super::error::raise;

/// Registers the `bus` and `host` tables.
pub(crate) fn register(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let bus = lua.create_table()?;
    let c = ctx.clone();
    bus.set(
        "publish",
        lua.create_function(move |lua, (topic, payload): (mlua::LuaString, LuaValue)| {
            // A call past the deadline publishes nothing: the time hook
            // raises only at the next instruction, after this call.
            super::sandbox::check(&c.budget, super::error::caller_position(lua))?;
            let topic = topic.to_str()?;
            let payload = super::raw::to_payload(lua, &payload)
                .map_err(|e| convert_error(lua, "payload", e))?;
            let cause = c.current.borrow().clone();
            c.host
                .publish(&c.info, &topic, payload, cause.as_deref())
                .map_err(|m| raise(lua, m))
        })?,
    )?;
    lua.globals().set("bus", bus)?;

    let host: Table = lua.create_table()?;
    for name in ctx.host.function_names() {
        let c = ctx.clone();
        let fname = name.clone();
        host.set(
            name,
            lua.create_function(move |lua, args: MultiValue| {
                let args = args
                    .iter()
                    .enumerate()
                    .map(|(i, a)| {
                        from_lua(a)
                            .map_err(|e| convert_error(lua, &format!("argument {}", i + 1), e))
                    })
                    .collect::<mlua::Result<Vec<_>>>()?;
                let result = c
                    .host
                    .call_function(&c.info, &fname, args)
                    .map_err(|m| raise(lua, format!("host.{fname}: {m}")))?;
                to_lua(lua, &result)
            })?,
        )?;
    }
    lua.globals().set("host", host)
}
