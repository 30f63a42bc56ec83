//! The Lua sandbox: an allow-list of libraries and the two limits.
//!
//! The interpreter is created with only the safe standard libraries
//! (`string`, `table`, `math`, `utf8`, `coroutine`, and `os` reduced to
//! `time`, `clock`, `date`); `io`, `debug` and `package` are never opened.
//! Memory is capped by the allocator limit. Time is enforced by a global
//! count hook, inherited by every coroutine, that raises once the hook call's
//! deadline has passed; the prelude re-raises that error out of `pcall`,
//! `xpcall` and `coroutine.resume`, so a runaway loop cannot catch it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, VmState};

use super::error::LimitExceeded;

/// Instructions between two checks of the deadline: frequent enough to stop a
/// loop within a millisecond, rare enough to cost nothing measurable.
const CHECK_EVERY: u32 = 4096;

/// The deadline of the hook call in progress.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    deadline: Cell<Option<Instant>>,
    timeout: Cell<Duration>,
}

impl Budget {
    /// Starts the clock for one hook call.
    pub(crate) fn start(&self, timeout: Duration) {
        self.timeout.set(timeout);
        self.deadline.set(Some(Instant::now() + timeout));
    }

    /// Stops the clock: code between hook calls is the host's.
    pub(crate) fn stop(&self) {
        self.deadline.set(None);
    }

    /// Whether the running hook call is past its deadline.
    pub(crate) fn exceeded(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
    }
}

/// A fresh interpreter with the allow-listed libraries, the memory cap and
/// the time hook. Returns it with the prelude's `readonly` function.
pub(crate) fn new_lua(memory_bytes: usize, budget: Rc<Budget>) -> mlua::Result<(Lua, Function)> {
    let libs = StdLib::STRING
        | StdLib::TABLE
        | StdLib::MATH
        | StdLib::UTF8
        | StdLib::COROUTINE
        | StdLib::OS;
    let lua = Lua::new_with(libs, LuaOptions::default())?;
    let hook_budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| {
            if hook_budget.exceeded() {
                let ms = hook_budget.timeout.get().as_millis();
                Err(mlua::Error::external(LimitExceeded(format!(
                    "time limit exceeded: the hook ran longer than {ms} ms (limits.event_timeout_ms)"
                ))))
            } else {
                Ok(VmState::Continue)
            }
        },
    )?;
    let over = {
        let budget = budget.clone();
        lua.create_function(move |_, ()| Ok(budget.exceeded()))?
    };
    let readonly: Function = lua
        .load(include_str!("prelude.lua"))
        .set_name("=[plughost prelude]")
        .call(over)?;
    // The cap comes last so the prelude never counts against the plugin.
    lua.set_memory_limit(memory_bytes)?;
    Ok((lua, readonly))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lua() -> (Lua, Rc<Budget>) {
        let budget = Rc::new(Budget::default());
        let (lua, _) = new_lua(8 << 20, budget.clone()).unwrap();
        (lua, budget)
    }

    #[test]
    fn forbidden_names_are_absent() {
        let (lua, _) = lua();
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
        let (lua, _) = lua();
        let r: (mlua::Value, String) = lua.load("return load('\\27Lua', 'x', 'b')").eval().unwrap();
        assert!(r.1.contains("binary"), "{}", r.1);
    }

    #[test]
    fn a_runaway_loop_is_stopped_even_through_pcall_and_coroutines() {
        let (lua, budget) = lua();
        for src in [
            "while true do end",
            "while true do pcall(function() while true do end end) end",
            "local co = coroutine.create(function() while true do end end); while true do coroutine.resume(co) end",
            "while true do xpcall(function() while true do end end, function(e) return e end) end",
        ] {
            budget.start(Duration::from_millis(30));
            let err = lua.load(src).exec().unwrap_err();
            budget.stop();
            assert!(
                err.to_string().contains("time limit exceeded"),
                "{src}: {err}"
            );
        }
    }

    #[test]
    fn memory_is_capped() {
        let (lua, _) = lua();
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
