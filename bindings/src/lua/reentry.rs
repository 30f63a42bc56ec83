//! A cap on script code re-entered through plughost's Rust bindings.
//!
//! Lua stops C code that calls back into Lua at 200 nested calls, a depth
//! its own small C frames fit in. A binding written in Rust that calls
//! script code (`string.gsub` with a function, `print` with `__tostring`,
//! `require` of a module that requires itself) takes far more stack per
//! level, and 200 of them overflow a plugin thread's stack, which aborts
//! the whole host. So these bindings count how deep they nest on this
//! thread and raise Lua's own error well before that.

use std::cell::Cell;

use super::error::raise;

/// Nested binding calls allowed on one thread.
pub(crate) const MAX_DEPTH: u32 = 24;

thread_local! {
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// One binding call that may run script code; dropping it leaves.
pub(crate) struct Reentry(());

impl Reentry {
    /// Enters a binding call, or raises `C stack overflow` (positioned at
    /// the calling line) past [`MAX_DEPTH`].
    pub(crate) fn enter(lua: &mlua::Lua, binding: &str) -> mlua::Result<Reentry> {
        let depth = DEPTH.with(|d| d.get());
        if depth >= MAX_DEPTH {
            return Err(raise(
                lua,
                format!(
                    "C stack overflow ({binding} calls back into the script more than {MAX_DEPTH} deep)"
                ),
            ));
        }
        DEPTH.with(|d| d.set(depth + 1));
        Ok(Reentry(()))
    }
}

impl Drop for Reentry {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_is_capped_and_released() {
        let lua = mlua::Lua::new();
        let held: Vec<Reentry> = (0..MAX_DEPTH)
            .map(|_| Reentry::enter(&lua, "x").unwrap())
            .collect();
        let err = Reentry::enter(&lua, "x").err().unwrap();
        assert!(
            err.to_string().contains("C stack overflow (x calls back"),
            "{err}"
        );
        drop(held);
        assert!(Reentry::enter(&lua, "x").is_ok());
    }
}
