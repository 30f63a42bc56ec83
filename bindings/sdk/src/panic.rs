//! Panics stop at the boundary: every `extern "C"` entry point runs its body
//! in [`guard`], which catches a panic and returns it as [`STATUS_PANIC`].
//!
//! A panic unwinding out of an `extern "C"` function aborts the whole host,
//! so nothing may escape. The SDK installs a panic hook (once, in this
//! library's copy of the standard library) that records the message and
//! source position of a panic raised inside a guarded call, and prints
//! nothing: the host logs and dead-letters it instead. Panics outside a call
//! (in a thread the plugin started) go to the previous hook as usual.
//!
//! Catching needs unwinding: a plugin built with `panic = "abort"` would take
//! the host down, which is why [`export_plugin!`](crate::export_plugin)
//! refuses to compile in that profile.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Once;

use serde_json::json;

use crate::abi::{Buf, CallResult, STATUS_FATAL, STATUS_PANIC};

thread_local! {
    /// How many guarded calls are running on this thread.
    static DEPTH: Cell<u32> = const { Cell::new(0) };
    /// The last panic raised inside a guarded call on this thread.
    static LAST: RefCell<Option<Caught>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// A panic caught at the boundary.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Caught {
    /// The panic message.
    pub message: String,
    /// Source file, line and column of the `panic!`, when known.
    pub at: Option<(String, u32, u32)>,
    /// Raised by [`fatal`]: the plugin cannot go on.
    pub fatal: bool,
}

/// The payload [`fatal`] panics with.
struct Fatal(String);

/// Tells the host this plugin cannot go on (its own state is beyond repair,
/// a resource it needs is gone): the call ends here, and the host counts a
/// crash and restarts the plugin in a fresh instance (`Default` and `init`)
/// with the state of its last completed hook, up to
/// `supervision.max_restarts` times within `supervision.window_s`. The event
/// being handled is dead-lettered. For an error that concerns one event,
/// return `Err` instead.
///
/// ```no_run
/// # fn connection_lost() -> bool { true }
/// if connection_lost() {
///     plughost_sdk::fatal("the database connection is gone");
/// }
/// ```
pub fn fatal(message: impl Into<String>) -> ! {
    std::panic::panic_any(Fatal(message.into()))
}

impl Caught {
    fn from_hook(info: &PanicHookInfo<'_>) -> Caught {
        Caught {
            message: message(info.payload()),
            at: info
                .location()
                .map(|l| (l.file().to_owned(), l.line(), l.column())),
            fatal: info.payload().is::<Fatal>(),
        }
    }

    /// The JSON object a [`STATUS_PANIC`] result carries.
    pub fn to_json(&self) -> Vec<u8> {
        let (file, line, column) = match &self.at {
            Some((f, l, c)) => (json!(f), json!(l), json!(c)),
            None => (json!(null), json!(null), json!(null)),
        };
        json!({"message": self.message, "file": file, "line": line, "column": column})
            .to_string()
            .into_bytes()
    }
}

/// The text of a panic payload (`panic!` makes a `&str` or a `String`).
fn message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .or_else(|| payload.downcast_ref::<Fatal>().map(|f| f.0.clone()))
        .unwrap_or_else(|| "panic with a non-string payload".to_owned())
}

fn install_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let inside = DEPTH.try_with(Cell::get).unwrap_or(0) > 0;
            if inside {
                let caught = Caught::from_hook(info);
                let _ = LAST.try_with(|last| *last.borrow_mut() = Some(caught));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into a [`STATUS_PANIC`] result ([`STATUS_FATAL`]
/// for [`fatal`]).
pub(crate) fn guard(f: impl FnOnce() -> CallResult) -> CallResult {
    match catch(f) {
        Ok(result) => result,
        Err(caught) => CallResult {
            status: if caught.fatal {
                STATUS_FATAL
            } else {
                STATUS_PANIC
            },
            data: Buf::from_vec(caught.to_json()),
        },
    }
}

/// Runs `f`, returning the panic it raised, if any.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Caught> {
    install_hook();
    DEPTH.with(|d| d.set(d.get() + 1));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    DEPTH.with(|d| d.set(d.get() - 1));
    result.map_err(|payload| {
        LAST.with(|last| last.borrow_mut().take())
            .unwrap_or_else(|| Caught {
                message: message(payload.as_ref()),
                at: None,
                fatal: payload.is::<Fatal>(),
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message_and_position() {
        let line = line!() + 1;
        let caught = catch(|| panic!("boom {}", 42)).unwrap_err();
        assert_eq!(caught.message, "boom 42");
        let (file, l, _) = caught.at.expect("a position");
        assert!(file.ends_with("panic.rs"), "{file}");
        assert_eq!(l, line);
    }

    #[test]
    fn a_guarded_panic_is_a_panic_status() {
        let r = guard(|| panic!("nope"));
        assert_eq!(r.status, STATUS_PANIC);
        // SAFETY: made by `from_vec` above, freed once below.
        let v: serde_json::Value = serde_json::from_slice(unsafe { r.data.as_bytes() }).unwrap();
        assert_eq!(v["message"], "nope");
        // SAFETY: allocated in this library by `guard`.
        unsafe { r.data.free_local() };
    }

    #[test]
    fn fatal_is_a_fatal_status_with_its_message() {
        let r = guard(|| fatal("gone"));
        assert_eq!(r.status, STATUS_FATAL);
        // SAFETY: made by `from_vec` above, freed once below.
        let v: serde_json::Value = serde_json::from_slice(unsafe { r.data.as_bytes() }).unwrap();
        assert_eq!(v["message"], "gone");
        // SAFETY: allocated in this library by `guard`.
        unsafe { r.data.free_local() };
    }

    #[test]
    fn no_panic_passes_through() {
        assert_eq!(catch(|| 7).unwrap(), 7);
    }
}
