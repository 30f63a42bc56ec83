//! Lua's look at the watchdog's flag, at every call and every few thousand
//! instructions, for the cost of a thread-local read.
//!
//! A loop of long calls into the library is only a handful of instructions
//! a turn, so counting instructions alone lets it run far past its deadline.
//! mlua's hook, which raises the time limit error, costs a few hundred
//! instructions each time it runs: at every call of every event that would
//! be a visible share of a short hook. So the interpreter runs a C hook of
//! plughost's own, which only looks at the flag of the hook call in progress
//! on this thread; once the flag is up it hands the interpreter (the main
//! one or the coroutine running) back to mlua's hook, set to run at the next
//! instruction, which raises the positioned error as before. The next hook
//! call puts the watch back.
//!
//! At each look that counted instructions (not at calls, where it would
//! cost), the watch also notes the script line running, and forgets it at
//! each call: Lua raises an allocation failure without running any handler,
//! so this note is what places a memory limit error on a line (a loop that
//! runs out of memory without calling anything); without one the error
//! names the start of the hook function.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::OnceLock;

use mlua::{Lua, ffi};

use crate::budget::Budget;

/// Instructions between two looks, besides every call.
pub(crate) const CHECK_EVERY: u32 = 4096;

/// mlua's global hook function (the same for every interpreter).
static MLUA_HOOK: OnceLock<ffi::lua_Hook> = OnceLock::new();

thread_local! {
    /// The watch of the hook call running on this thread, if any.
    static CURRENT: Cell<*const Watch> = const { Cell::new(std::ptr::null()) };
}

/// The hook: notes the line (at counted looks), looks at the flag; once it
/// is up, hands over to mlua's.
unsafe extern "C-unwind" fn watch(state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
    let current = CURRENT.with(Cell::get);
    // SAFETY: `CURRENT` is set by `Watch::begin` to a watch that cannot move
    // or drop while the hook call runs, and cleared by `Watch::end` before
    // that call returns.
    let Some(w) = (unsafe { current.as_ref() }) else {
        return;
    };
    // SAFETY: `ar` is the record Lua hands its hook, valid during the call.
    if unsafe { (*ar).event } == ffi::LUA_HOOKCOUNT {
        // SAFETY: as above; `lua_getinfo` on the hook's own record raises nothing.
        unsafe { w.note(state, ar) };
    } else {
        // A call may move the script to another line before the next note:
        // forget the old one rather than name a line it has left.
        w.line.set(0);
    }
    if !w.budget.expired() {
        return;
    }
    if let Some(&mlua_hook) = MLUA_HOOK.get() {
        w.handed_over.set(true);
        // SAFETY: a hook may set the hook of the state it runs on.
        unsafe { ffi::lua_sethook(state, Some(mlua_hook), ffi::LUA_MASKCOUNT, 1) };
    }
}

/// The watch on one interpreter.
pub(crate) struct Watch {
    /// The main state, valid as long as the `Lua` this was installed on.
    main: *mut ffi::lua_State,
    /// The interpreter's time budget.
    budget: Rc<Budget>,
    /// Whether [`watch`] handed the main state back to mlua's hook.
    handed_over: Cell<bool>,
    /// The file (a chunk named `@file`) and line last noted in this call.
    file: std::cell::RefCell<Vec<u8>>,
    /// The line last noted in this call, 0 for none.
    line: Cell<usize>,
}

impl Watch {
    /// Puts the watch in place of the global hook mlua set on `lua` (which
    /// coroutines created from now on inherit).
    pub(crate) fn install(lua: &Lua, budget: Rc<Budget>) -> mlua::Result<Watch> {
        let mut main = std::ptr::null_mut();
        // SAFETY: nothing here raises a Lua error.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                if let Some(hook) = ffi::lua_gethook(state) {
                    let _ = MLUA_HOOK.set(hook);
                }
                arm(state);
                main = state;
            })?;
        }
        Ok(Watch {
            main,
            budget,
            handed_over: Cell::new(false),
            file: std::cell::RefCell::default(),
            line: Cell::new(0),
        })
    }

    /// A hook call starts on this thread: its budget is the one watched
    /// until the guard drops (also when the call unwinds).
    pub(crate) fn begin(&self) -> Watching<'_> {
        let previous = CURRENT.with(|c| c.replace(self));
        self.line.set(0);
        if self.handed_over.replace(false) {
            // SAFETY: the main state of a live `Lua`, used by this thread only.
            unsafe { arm(self.main) };
        }
        Watching {
            previous,
            _watch: std::marker::PhantomData,
        }
    }
}

impl Watch {
    /// Notes the file and line the hook's record `ar` is at, if it is a
    /// script file's.
    ///
    /// # Safety
    ///
    /// `state` and `ar` are a running hook's arguments.
    unsafe fn note(&self, state: *mut ffi::lua_State, ar: *mut ffi::lua_Debug) {
        // SAFETY: the caller's contract; with a hook's record, `lua_getinfo`
        // reads the running function and allocates nothing.
        let (source, line) = unsafe {
            if ffi::lua_getinfo(state, c"Sl".as_ptr(), ar) == 0 || (*ar).source.is_null() {
                return;
            }
            let source = std::slice::from_raw_parts((*ar).source as *const u8, (*ar).srclen);
            (source, (*ar).currentline)
        };
        let (Some(file), Ok(line)) = (source.strip_prefix(b"@"), usize::try_from(line)) else {
            return;
        };
        let mut noted = self.file.borrow_mut();
        if noted.as_slice() != file {
            noted.clear();
            noted.extend_from_slice(file);
        }
        self.line.set(line);
    }

    /// The script file and line last noted during the current hook call:
    /// where the script was at most a few thousand instructions ago.
    pub(crate) fn last_position(&self) -> Option<(String, usize)> {
        match self.line.get() {
            0 => None,
            line => Some((
                String::from_utf8_lossy(&self.file.borrow()).into_owned(),
                line,
            )),
        }
    }
}

/// A hook call being watched; dropping it ends the watch.
pub(crate) struct Watching<'a> {
    previous: *const Watch,
    _watch: std::marker::PhantomData<&'a Watch>,
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// Sets the watch as `state`'s hook.
unsafe fn arm(state: *mut ffi::lua_State) {
    let mask = ffi::LUA_MASKCALL | ffi::LUA_MASKCOUNT;
    // SAFETY: the caller's `state` is valid and not running on another thread.
    unsafe { ffi::lua_sethook(state, Some(watch), mask, CHECK_EVERY as i32) };
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The hook the main state runs now.
    fn hook_of(lua: &Lua) -> Option<usize> {
        let mut hook = None;
        // SAFETY: reads the hook; raises nothing.
        unsafe {
            lua.exec_raw::<()>((), |state| {
                hook = ffi::lua_gethook(state).map(|f| f as usize);
            })
            .unwrap();
        }
        hook
    }

    #[test]
    fn the_watch_hands_over_at_the_deadline_and_is_back_for_the_next_call() {
        let budget = Rc::new(Budget::default());
        let (lua, _, watch) = super::super::sandbox::new_lua(8 << 20, budget.clone()).unwrap();
        let ours = Some(super::watch as ffi::lua_Hook as usize);
        assert_eq!(hook_of(&lua), ours);
        {
            let _watching = watch.begin();
            budget.start(Duration::from_millis(10));
            let err = lua.load("while true do end").exec().unwrap_err();
            budget.stop();
            assert!(err.to_string().contains("time limit exceeded"), "{err}");
        }
        let mlua_hook = MLUA_HOOK.get().map(|&f| f as usize);
        assert_eq!(hook_of(&lua), mlua_hook, "handed over to mlua's hook");
        let _watching = watch.begin();
        assert_eq!(hook_of(&lua), ours, "armed again for the next call");
    }
}
