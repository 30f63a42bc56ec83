//! `timer.after(ms, fn)`, `timer.every(ms, fn)` and `timer.cancel(id)`.
//!
//! Callbacks run later on the plugin's own thread, between events, under the
//! same time limit as a hook.

use mlua::{Function, Lua};

use super::context::Ctx;
use super::error::raise;

/// Registers the `timer` table.
pub(crate) fn register(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let t = lua.create_table()?;
    for (name, repeat) in [("after", false), ("every", true)] {
        let c = ctx.clone();
        t.set(
            name,
            lua.create_function(move |lua, (ms, f): (f64, Function)| {
                let after = crate::core::delay(|| format!("timer.{name}"), ms)
                    .map_err(|e| raise(lua, e))?;
                Ok(c.timers.borrow_mut().add(after, repeat, f))
            })?,
        )?;
    }
    let c = ctx.clone();
    t.set(
        "cancel",
        lua.create_function(move |_, id: u64| Ok(c.timers.borrow_mut().cancel(id)))?,
    )?;
    lua.globals().set("timer", t)
}
