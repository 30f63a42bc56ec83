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
            super::sandbox::check(&c.budget, || super::error::caller_position(lua))?;
            let topic = topic.to_str()?;
            let payload = super::raw::to_payload(lua, &payload)
                .map_err(|e| convert_error(lua, "payload", e))?;
            c.core().publish(&topic, payload).map_err(|e| raise(lua, e))
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
                    .core()
                    .call_function(&fname, args)
                    .map_err(|e| raise(lua, e))?;
                to_lua(lua, &result)
            })?,
        )?;
    }
    lua.globals().set("host", host)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::test_host::Recorder;
    use crate::{PluginInfo, RuntimeKind};

    #[test]
    fn a_publish_called_past_the_deadline_publishes_nothing() {
        let recorder = Arc::new(Recorder::default());
        let budget = Rc::new(super::super::sandbox::Budget::default());
        let ctx: Ctx = Rc::new(super::super::context::Context {
            info: Arc::new(PluginInfo {
                name: "p".into(),
                version: "1.0.0".into(),
                runtime: RuntimeKind::Lua,
            }),
            host: recorder.clone(),
            dir: ".".into(),
            current: RefCell::new(None),
            timers: RefCell::default(),
            budget: budget.clone(),
        });
        let (lua, _, watch) = super::super::sandbox::new_lua(8 << 20, budget.clone()).unwrap();
        register(&lua, &ctx).unwrap();
        // Runs the budget out inside a call: the next look at the flag is
        // at the call of `bus.publish`, where the time hook would only
        // raise once the call has run.
        let b = budget.clone();
        let expire = lua
            .create_function(move |_, ()| {
                b.start(Duration::ZERO);
                let waited = Instant::now();
                while !b.expired() && waited.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(())
            })
            .unwrap();
        lua.globals().set("expire", expire).unwrap();
        let _watching = watch.begin();
        budget.start(Duration::from_secs(60));
        let err = lua
            .load("expire()\nbus.publish('late', {})")
            .set_name("@p/main.lua")
            .exec()
            .unwrap_err();
        budget.stop();
        let shown = super::super::error::to_script_error(&err, 8);
        assert!(shown.message.starts_with("time limit exceeded"), "{shown}");
        assert_eq!(shown.line, Some(2), "{shown}");
        assert!(recorder.published.lock().unwrap().is_empty());
    }
}
