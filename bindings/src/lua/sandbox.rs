//! The Lua sandbox: an allow-list of libraries and the two limits.
//!
//! The interpreter is created with only the safe standard libraries
//! (`string`, `table`, `math`, `utf8`, `coroutine`, and `os` reduced to
//! `time`, `clock`, `date`); `io`, `debug` and `package` are never opened.
//! Memory is capped by the allocator limit. Time is enforced by a global
//! hook, inherited by every coroutine, run at every call and every few
//! thousand instructions, that raises once the watchdog has flagged the hook
//! call's deadline; the prelude raises it again out of `pcall`, `xpcall`
//! and `coroutine.resume` (whatever error they caught, since the caught one
//! may be the script's own), so a runaway loop cannot catch it; it does
//! the same for `coroutine.close`, and runs no `xpcall` message handler past
//! the deadline (Lua calls it for the hook's error with hooks off). The same
//! wrappers turn the errors bindings raise into strings (see
//! `error::to_script`). The pattern functions of `string` are plughost's
//! own (`pattern`), which look at the deadline too. Finalizers are refused
//! (`setmetatable` with `__gc`: Lua runs them with hooks off) and the
//! collector's settings are the host's.

use std::rc::Rc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, VmState};

use super::error::{LimitExceeded, caller_position};
use super::watch::{CHECK_EVERY, Watch};

pub(crate) use crate::budget::Budget;

/// The time limit error, positioned at the script line `at` gives, once
/// the deadline has passed. `at` runs only then: finding the line costs.
pub(crate) fn check(
    budget: &Budget,
    at: impl FnOnce() -> Option<(String, usize)>,
) -> mlua::Result<()> {
    if !budget.exceeded() {
        return Ok(());
    }
    let message = budget.message();
    Err(mlua::Error::external(LimitExceeded(match at() {
        Some((file, line)) => format!("{file}:{line}: {message}"),
        None => message,
    })))
}

/// Registry key of Lua's own `pcall`, before the prelude replaced it.
pub(crate) const RAW_PCALL: &str = "plughost.raw_pcall";

/// A fresh interpreter with the allow-listed libraries, the memory cap and
/// the time hook. Returns it with the prelude's `readonly` function and the
/// watch that must bracket every hook call ([`Watch::begin`], [`Watch::end`]).
pub(crate) fn new_lua(
    memory_bytes: usize,
    budget: Rc<Budget>,
) -> mlua::Result<(Lua, Function, Watch)> {
    let libs = StdLib::STRING
        | StdLib::TABLE
        | StdLib::MATH
        | StdLib::UTF8
        | StdLib::COROUTINE
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let hook_budget = budget.clone();
    // The watch (`watch.rs`) takes this hook's place, and hands each
    // interpreter back to it once the deadline has passed; coroutines that
    // mlua itself creates keep it.
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |lua, debug| {
            if hook_budget.expired() {
                // The line the runaway code was at, unless that is glue.
                let here = debug.source().short_src.map(|s| s.into_owned());
                let at = match (here, debug.current_line()) {
                    (Some(src), Some(line)) if !src.starts_with('[') => Some((src, line)),
                    _ => caller_position(lua),
                };
                check(&hook_budget, || at)?;
            }
            Ok(VmState::Continue)
        },
    )?;
    let check_budget = {
        let budget = budget.clone();
        lua.create_function(move |lua, ()| {
            if budget.exceeded() {
                check(&budget, || caller_position(lua))?;
            }
            Ok(())
        })?
    };
    let over_budget = {
        let budget = budget.clone();
        lua.create_function(move |_, ()| Ok(budget.exceeded()))?
    };
    // Kept before the prelude wraps it: glue written in Lua (`telemetry.span`)
    // catches errors with it, and must pass every error on unchanged.
    let raw_pcall: Function = lua.globals().get("pcall")?;
    lua.set_named_registry_value(RAW_PCALL, raw_pcall)?;
    let to_script = lua.create_function(super::error::to_script)?;
    let place_overflow = lua.create_function(
        |lua, (chunk, name): (mlua::LuaString, Option<mlua::LuaString>)| {
            // Lua names a chunk loaded without a name after its text.
            let name = name.as_ref().unwrap_or(&chunk).to_string_lossy();
            Ok(super::nesting::overflow_message(
                lua,
                &chunk.as_bytes(),
                &name,
            ))
        },
    )?;
    let refuse = lua.create_function(|lua, message: String| -> mlua::Result<()> {
        Err(super::error::raise(lua, message))
    })?;
    let readonly: Function = lua
        .load(include_str!("prelude.lua"))
        .set_name("=[plughost prelude]")
        .call((check_budget, over_budget, to_script, refuse, place_overflow))?;
    super::pattern::install(&lua, budget.clone(), memory_bytes)?;
    // Events make many short-lived tables: the generational collector suits them.
    lua.gc_set_mode(mlua::state::GcMode::Generational(Default::default()));
    let watch = Watch::install(&lua, budget)?;
    // The cap comes last so the prelude never counts against the plugin.
    lua.set_memory_limit(memory_bytes)?;
    Ok((lua, readonly, watch))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn lua() -> (Lua, Rc<Budget>, Watch) {
        let budget = Rc::new(Budget::default());
        let (lua, _, watch) = new_lua(8 << 20, budget.clone()).unwrap();
        (lua, budget, watch)
    }

    #[test]
    fn forbidden_names_are_absent() {
        let (lua, _, _) = lua();
        for name in [
            "io",
            "debug",
            "package",
            "dofile",
            "loadfile",
            "require",
            "os.execute",
            "os.exit",
            "os.getenv",
            "string.dump",
        ] {
            let v: mlua::Value = lua
                .load(format!("return {name}"))
                .eval()
                .unwrap_or(mlua::Value::Nil);
            assert!(v.is_nil(), "{name} should be absent");
        }
        let ok: bool = lua
            .load("return os.time() > 0 and type(os.clock()) == 'number'")
            .eval()
            .unwrap();
        assert!(ok);
    }

    #[test]
    fn binary_chunks_are_refused() {
        let (lua, _, _) = lua();
        let r: (mlua::Value, String) = lua.load("return load('\\27Lua', 'x', 'b')").eval().unwrap();
        assert!(r.1.contains("binary"), "{}", r.1);
    }

    #[test]
    fn a_runaway_loop_is_stopped_even_through_pcall_and_coroutines() {
        let (lua, budget, watch) = lua();
        for src in [
            "while true do end",
            "while true do pcall(function() while true do end end) end",
            "local co = coroutine.create(function() while true do end end); while true do coroutine.resume(co) end",
            "while true do xpcall(function() while true do end end, function(e) return e end) end",
        ] {
            let watching = watch.begin();
            budget.start(Duration::from_millis(30));
            let err = lua.load(src).exec().unwrap_err();
            budget.stop();
            drop(watching);
            assert!(
                err.to_string().contains("time limit exceeded"),
                "{src}: {err}"
            );
        }
    }

    /// Runs `src` under a `ms` time limit; returns its error (bounded: a
    /// hang here is a failing test run, killed by the harness).
    fn run_limited(src: &str, ms: u64) -> mlua::Error {
        let (lua, budget, watch) = lua();
        let watching = watch.begin();
        budget.start(Duration::from_millis(ms));
        let err = lua.load(src).set_name("@p/main.lua").exec().expect_err(src);
        budget.stop();
        drop(watching);
        err
    }

    #[test]
    fn a_message_handler_that_loops_is_stopped() {
        for src in [
            // The loop hits the limit; the handler then runs with hooks off.
            "xpcall(function() while true do end end, function() while true do end end)",
            // An error of the script's own; the handler loops into the limit.
            "xpcall(error, function() while true do end end)",
            // A callable table as the handler.
            "xpcall(function() while true do end end, setmetatable({}, {__call = function() while true do end end}))",
            // Inside a coroutine.
            "coroutine.wrap(function() xpcall(function() while true do end end, function() while true do end end) end)()",
        ] {
            let err = run_limited(src, 30);
            assert!(
                err.to_string().contains("time limit exceeded"),
                "{src}: {err}"
            );
        }
    }

    #[test]
    fn finalizers_are_refused() {
        let (lua, budget, watch) = lua();
        let _watching = watch.begin();
        budget.start(Duration::from_secs(2));
        let caught: Vec<String> = lua
            .load(
                "local out = {}\n\
                 out[1] = select(2, pcall(setmetatable, {}, {__gc = function() while true do end end}))\n\
                 out[2] = select(2, pcall(function() return setmetatable({}, {__gc = false}) end))\n\
                 local mt = {}\n\
                 local t = setmetatable({}, mt)\n\
                 mt.__gc = function() while true do end end -- never marked: never called\n\
                 t = nil; collectgarbage(); collectgarbage()\n\
                 out[3] = tostring(getmetatable(t) == nil)\n\
                 return out",
            )
            .set_name("@p/main.lua")
            .eval()
            .unwrap();
        assert!(caught[0].contains("`__gc` is refused"), "{caught:?}");
        assert!(
            caught[1].starts_with("p/main.lua:3: setmetatable"),
            "{caught:?}"
        );
        assert_eq!(caught[2], "true");
    }

    #[test]
    fn collectgarbage_leaves_the_settings_to_the_host() {
        let (lua, _, _) = lua();
        let ok: bool = lua
            .load("return collectgarbage('count') > 0 and collectgarbage('isrunning') and collectgarbage() == 0 and collectgarbage('step') ~= nil")
            .eval()
            .unwrap();
        assert!(ok);
        for opt in [
            "stop",
            "restart",
            "incremental",
            "generational",
            "setpause",
            "setstepmul",
        ] {
            let err = lua
                .load(format!("collectgarbage('{opt}')"))
                .set_name("@p/main.lua")
                .exec()
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("p/main.lua:1: collectgarbage: option"),
                "{opt}: {err}"
            );
        }
    }

    #[test]
    fn a_caught_error_past_the_deadline_becomes_the_time_limit() {
        let (lua, budget, watch) = lua();
        let watching = watch.begin();
        budget.start(Duration::from_millis(20));
        let err = lua
            .load("while true do pcall(error, 'mine') end")
            .set_name("@p/main.lua")
            .exec()
            .unwrap_err();
        budget.stop();
        drop(watching);
        let shown = super::super::error::to_script_error(&err, 8);
        assert!(shown.message.starts_with("time limit exceeded"), "{shown}");
        assert_eq!(shown.file.as_deref(), Some("p/main.lua"));
        assert_eq!(shown.line, Some(1));
    }

    #[test]
    fn binding_errors_are_caught_as_positioned_strings() {
        let (lua, _, _) = lua();
        let refuse = lua
            .create_function(|lua, ()| -> mlua::Result<()> {
                Err(super::super::error::raise(lua, "refused"))
            })
            .unwrap();
        lua.globals().set("refuse", refuse).unwrap();
        let caught: Vec<String> = lua
            .load(
                "local out = {}\n\
                 out[1] = select(2, pcall(refuse))\n\
                 out[2] = select(2, xpcall(function() refuse() end, function(e) return type(e) .. ': ' .. e end))\n\
                 out[3] = select(2, coroutine.resume(coroutine.create(function() refuse() end)))\n\
                 return out",
            )
            .set_name("@p/main.lua")
            .eval()
            .unwrap();
        assert_eq!(
            caught,
            [
                "p/main.lua:2: refused",
                "string: p/main.lua:3: refused",
                "p/main.lua:4: refused",
            ]
        );
    }

    #[test]
    fn readonly_views_convert_as_the_table_they_show() {
        let budget = Rc::new(Budget::default());
        let (lua, readonly, _) = new_lua(8 << 20, budget).unwrap();
        super::super::convert::install(&lua).unwrap();
        let data = serde_json::json!({"a": {"b": [1, 2]}, "c": "d"});
        let view: mlua::Value = readonly
            .call(super::super::convert::to_lua(&lua, &data).unwrap())
            .unwrap();
        lua.globals().set("config", view.clone()).unwrap();
        let part: mlua::Value = lua.load("return config.a").eval().unwrap();
        for (v, want) in [(&view, &data), (&part, &data["a"])] {
            assert_eq!(&super::super::convert::from_lua(v).unwrap(), want);
            assert_eq!(&super::super::raw::to_payload(&lua, v).unwrap(), want);
        }
    }

    #[test]
    fn memory_is_capped() {
        let (lua, _, _) = lua();
        let err = lua
            .load("local t = {} for i = 1, 1e8 do t[i] = i end")
            .exec()
            .unwrap_err();
        assert!(matches!(err, mlua::Error::MemoryError(_)), "{err}");
        // The interpreter is still usable afterwards.
        let two: i64 = lua.load("return 1 + 1").eval().unwrap();
        assert_eq!(two, 2);
    }
}
