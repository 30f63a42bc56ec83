//! Which allocator a thread building an interpreter should use.
//!
//! A plugin thread that loads a Lua state or a Rhai engine allocates and
//! frees many temporaries (the parser's, the prelude's, the standard
//! package's) and keeps far less (a Lua state about 35 KB). An
//! allocator with per-thread pages (mimalloc) keeps every page those
//! temporaries touched resident on that thread after they are freed, about
//! 80 KB per idle plugin; the system allocator's shared arenas hand the same
//! memory to the next plugin that loads. This flag is how a host's global
//! allocator learns that the current thread is building an interpreter: the
//! host raises it when a script plugin's thread starts ([`use_system_allocator`]),
//! and the plugin lowers it when it first handles an event or a timer: an
//! idle plugin's thread never touches the fast allocator's per-thread pages
//! (what the host does after `init`, such as recording metrics, allocates
//! from the system allocator too), a busy one handles its events on the
//! fast allocator. Plain data, read from inside the allocator: no
//! allocation, no destructor.

use std::cell::Cell;

thread_local! {
    static SYSTEM: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread should allocate from the system allocator now
/// (a host's global allocator asks at each allocation).
#[inline]
pub fn on_system_allocator() -> bool {
    // `try_with`: during thread teardown the slot may be gone; then the
    // answer is the default.
    SYSTEM.try_with(Cell::get).unwrap_or(false)
}

/// Makes this thread allocate from the system allocator (`true`) until its
/// script plugin first handles an event or a timer, or from the host's own
/// again (`false`).
pub fn use_system_allocator(on: bool) {
    let _ = SYSTEM.try_with(|s| s.set(on));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_is_per_thread_and_off_by_default() {
        assert!(!on_system_allocator());
        use_system_allocator(true);
        assert!(on_system_allocator());
        let other = std::thread::spawn(on_system_allocator).join().unwrap();
        assert!(!other, "another thread keeps its own flag");
        use_system_allocator(false);
        assert!(!on_system_allocator());
    }
}
