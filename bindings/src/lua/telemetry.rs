//! `telemetry.counter/gauge/histogram(name, value [, attrs])` and
//! `telemetry.span(name [, attrs], fn)`.

use mlua::{Function, Lua, UserData, UserDataMethods, Value as LuaValue};
use serde_json::{Map, Value};

use super::context::{Ctx, convert_error};
use super::convert::from_lua;
use super::error::raise;
use super::sandbox::RAW_PCALL;
use crate::{MetricKind, SpanGuard};

/// `telemetry.span` in Lua, so that `fn` runs as a plain Lua call: its
/// errors, whatever their value, reach the caller unchanged after the span
/// is closed.
const SPAN: &str = r#"
local enter, pcall = ...
local error = error
local function finish(scope, ok, ...)
  scope:close()
  if not ok then error((...), 0) end
  return ...
end
return function(name, attrs, fn)
  local scope, f = enter(name, attrs, fn)
  return finish(scope, pcall(f))
end
"#;

/// An open script span; closed by the glue, or when collected.
struct SpanScope(Option<SpanGuard>);

impl UserData for SpanScope {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method_mut("close", |_, this, ()| {
            this.0.take();
            Ok(())
        });
    }
}

/// Registers the `telemetry` table.
pub(crate) fn register(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let t = lua.create_table()?;
    for (name, kind) in [
        ("counter", MetricKind::Counter),
        ("gauge", MetricKind::Gauge),
        ("histogram", MetricKind::Histogram),
    ] {
        let c = ctx.clone();
        t.set(
            name,
            lua.create_function(
                move |lua, (metric, value, attrs): (String, f64, Option<LuaValue>)| {
                    let attrs = attributes(lua, attrs)?;
                    c.core()
                        .metric(kind, &metric, value, &attrs)
                        .map_err(|e| raise(lua, e))
                },
            )?,
        )?;
    }
    let c = ctx.clone();
    let enter = lua.create_function(
        move |lua, (name, a, b): (String, LuaValue, Option<Function>)| {
            let (attrs, f) = match (a, b) {
                (LuaValue::Function(f), None) => (Map::new(), f),
                (attrs, Some(f)) => (attributes(lua, Some(attrs))?, f),
                _ => {
                    return Err(raise(
                        lua,
                        "telemetry.span(name [, attrs], fn): fn is missing",
                    ));
                }
            };
            let guard = c.core().span(&name, &attrs);
            Ok((SpanScope(Some(guard)), f))
        },
    )?;
    let pcall: Function = lua.named_registry_value(RAW_PCALL)?;
    let span: Function = lua
        .load(SPAN)
        .set_name("=[plughost telemetry]")
        .call((enter, pcall))?;
    t.set("span", span)?;
    lua.globals().set("telemetry", t)
}

fn attributes(lua: &Lua, attrs: Option<LuaValue>) -> mlua::Result<Map<String, Value>> {
    match attrs {
        None | Some(LuaValue::Nil) => Ok(Map::new()),
        Some(v) => match from_lua(&v).map_err(|e| convert_error(lua, "attributes", e))? {
            Value::Object(m) => Ok(m),
            _ => Err(raise(lua, "attributes must be a table of name = value")),
        },
    }
}
