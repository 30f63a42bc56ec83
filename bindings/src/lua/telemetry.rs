//! `telemetry.counter/gauge/histogram(name, value [, attrs])` and
//! `telemetry.span(name [, attrs], fn)`.

use mlua::{Function, Lua, MultiValue, Value as LuaValue};
use serde_json::{Map, Value};

use super::context::{Ctx, convert_error};
use super::convert::from_lua;
use super::error::raise;
use crate::MetricKind;

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
                    c.host
                        .metric(&c.info, kind, &metric, value, &attrs)
                        .map_err(|m| raise(lua, m))
                },
            )?,
        )?;
    }
    let c = ctx.clone();
    t.set(
        "span",
        lua.create_function(
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
                let cause = c.current.borrow().clone();
                let _guard = c.host.span(&c.info, &name, &attrs, cause.as_deref());
                f.call::<MultiValue>(())
            },
        )?,
    )?;
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
