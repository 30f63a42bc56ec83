//! `bus.publish(topic, payload)`, `bus.request(topic, payload, timeout_ms)`
//! and the application's functions under `host`.

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
    let c = ctx.clone();
    bus.set(
        "request",
        lua.create_function(
            move |lua, (topic, payload, timeout_ms): (mlua::LuaString, LuaValue, f64)| {
                let at = || super::error::caller_position(lua);
                super::sandbox::check(&c.budget, at)?;
                let topic = topic.to_str()?;
                let payload = super::raw::to_payload(lua, &payload)
                    .map_err(|e| convert_error(lua, "payload", e))?;
                let answer = c
                    .core()
                    .request(&topic, payload, timeout_ms, c.budget.remaining());
                // A wait the hook's time limit cut short ends as the
                // limit's error, which `pcall` does not keep.
                super::sandbox::check(&c.budget, at)?;
                let answer = answer.map_err(|e| raise(lua, e))?;
                to_lua(lua, answer.value())
            },
        )?,
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

    /// An interpreter with the bus bindings over `recorder`, and its budget.
    fn lua_with(
        recorder: &Arc<Recorder>,
    ) -> (
        Lua,
        Rc<super::super::sandbox::Budget>,
        super::super::watch::Watch,
    ) {
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
        (lua, budget, watch)
    }

    #[test]
    fn a_request_returns_the_reply_and_a_caught_timeout_names_the_line() {
        let recorder = Arc::new(Recorder::default());
        let (lua, budget, watch) = lua_with(&recorder);
        let _watching = watch.begin();
        budget.start(Duration::from_secs(60));
        let (answer, caught): (i64, String) = lua
            .load(
                "local a = bus.request('echo', {n = 41}, 100).n + 1\n\
                 local ok, err = pcall(bus.request, 'silent', {}, 5)\n\
                 return a, err",
            )
            .set_name("@p/main.lua")
            .eval()
            .unwrap();
        budget.stop();
        assert_eq!(answer, 42);
        assert_eq!(caught, "p/main.lua:2: no reply on `silent` within 5 ms");
    }

    #[test]
    fn a_request_that_runs_into_the_time_limit_ends_the_hook() {
        let recorder = Arc::new(Recorder::default());
        let (lua, budget, watch) = lua_with(&recorder);
        let _watching = watch.begin();
        budget.start(Duration::from_millis(50));
        let started = Instant::now();
        let err = lua
            .load("local ok = pcall(bus.request, 'silent', {}, 60000)\nwhile true do end")
            .set_name("@p/main.lua")
            .exec()
            .unwrap_err();
        budget.stop();
        assert!(started.elapsed() < Duration::from_secs(10));
        let shown = super::super::error::to_script_error(&err, 8);
        assert!(shown.message.starts_with("time limit exceeded"), "{shown}");
        assert_eq!(shown.line, Some(1), "{shown}");
        let waited = recorder.requests.lock().unwrap()[0].1;
        assert!(waited <= Duration::from_millis(50), "{waited:?}");
    }

    #[test]
    fn a_publish_called_past_the_deadline_publishes_nothing() {
        let recorder = Arc::new(Recorder::default());
        let (lua, budget, watch) = lua_with(&recorder);
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
