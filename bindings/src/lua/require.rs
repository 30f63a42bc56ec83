//! `require "name"`: modules from the plugin's own folder, nowhere else.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use mlua::{Lua, Value as LuaValue};

use super::context::Ctx;
use super::error::raise;
use crate::modpath;

/// Registers `require`, caching each module's value like Lua's own.
pub(crate) fn register(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let loaded: Rc<RefCell<HashMap<String, LuaValue>>> = Rc::default();
    let c = ctx.clone();
    let require = lua.create_function(move |lua, name: String| {
        if let Some(v) = loaded.borrow().get(&name) {
            return Ok(v.clone());
        }
        // The module's chunk runs from here, and may `require` again.
        let _reentry = super::reentry::Reentry::enter(lua, "require")?;
        let module = modpath::resolve(&c.dir, &name, "lua")
            .map_err(|m| raise(lua, format!("require: {m}")))?;
        let source = std::fs::read(&module.path)
            .map_err(|e| raise(lua, format!("require `{name}`: {e}")))?;
        let chunk_name = format!("@{}", c.dir.join(&module.relative).display());
        let value: LuaValue =
            super::nesting::compile(lua, &source, &chunk_name)?.call(name.clone())?;
        let value = if value.is_nil() {
            LuaValue::Boolean(true)
        } else {
            value
        };
        loaded.borrow_mut().insert(name, value.clone());
        Ok(value)
    })?;
    lua.globals().set("require", require)
}
