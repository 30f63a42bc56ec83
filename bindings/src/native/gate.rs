//! Which host context a callback may use: the one whose plugin is being
//! called on the calling thread, while that call runs.
//!
//! The ABI says every host function is called on the thread that called the
//! plugin, while a hook runs, with the `ctx` that `create` was given. A
//! library need not keep to it: it may pass a null or forged `ctx`, keep one
//! in a static and use it after the hook returned (when its [`HostCtx`] may
//! be freed), or call from a thread of its own while the hook runs (and the
//! context, which is not thread-safe, is in use). The host cannot stop a
//! plugin from reading wild memory, but it need not do so on the plugin's
//! behalf: [`NativePlugin`](super::NativePlugin) marks its context as the
//! current one of its thread for every call into the plugin ([`enter`]), and
//! the callbacks in the table the plugin gets ([`vtable`]) compare the `ctx`
//! they are given with it before anything reads through it. Any other `ctx`
//! is refused with an error ([`Refused`]); the pointer is never dereferenced.

use std::cell::Cell;
use std::ffi::c_void;

use plughost_sdk::abi::{CallResult, HostVTable, Str};

use super::callbacks::{self, HostCtx};

thread_local! {
    /// The context of the plugin call running on this thread, or null.
    static CURRENT: Cell<*const HostCtx> = const { Cell::new(std::ptr::null()) };
}

/// The context of a call into the plugin, current on this thread until
/// dropped (then the one before it is current again).
#[must_use = "the context is current only while this lives"]
pub(crate) struct Entered {
    previous: *const HostCtx,
}

/// Makes `ctx` the current context of this thread, for one call into the
/// plugin.
pub(crate) fn enter(ctx: *const HostCtx) -> Entered {
    Entered {
        previous: CURRENT.replace(ctx),
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.set(self.previous);
    }
}

/// A callback called with a `ctx` that is not the current context of the
/// calling thread.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{callback}: ctx {ctx:#x} is not the context of the hook running on this thread \
     (call host functions only from the thread the host called the plugin on, while the \
     hook runs, with the ctx `create` was given)"
)]
pub(crate) struct Refused {
    /// The host function called.
    pub callback: &'static str,
    /// The `ctx` it was given, as an address.
    pub ctx: usize,
}

/// Whether `ctx` is the current context of this thread.
pub(crate) fn check(callback: &'static str, ctx: *mut c_void) -> Result<(), Refused> {
    let current = CURRENT.get();
    if !current.is_null() && std::ptr::eq(ctx.cast_const().cast::<HostCtx>(), current) {
        Ok(())
    } else {
        Err(Refused {
            callback,
            ctx: ctx as usize,
        })
    }
}

/// The callbacks' table for `ctx`, handed to the plugin's `create`: each
/// entry that takes a `ctx` checks it before the callback runs. (`free`
/// takes none: a buffer the host returned is the host's to free, whichever
/// thread hands it back.)
pub(crate) fn vtable(ctx: *const HostCtx) -> HostVTable {
    HostVTable {
        publish,
        log,
        metric,
        span_enter,
        span_exit,
        config,
        state,
        set_state,
        call_function,
        timer_add,
        timer_cancel,
        request,
        ..callbacks::vtable(ctx)
    }
}

/// Runs `f` when `ctx` is current, else answers the refusal as an error.
fn result(callback: &'static str, ctx: *mut c_void, f: impl FnOnce() -> CallResult) -> CallResult {
    match check(callback, ctx) {
        Ok(()) => f(),
        Err(refused) => CallResult::error(&refused.to_string()),
    }
}

unsafe extern "C" fn publish(c: *mut c_void, topic: Str, payload: Str) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("publish", c, || unsafe {
        callbacks::publish(c, topic, payload)
    })
}

unsafe extern "C" fn request(
    c: *mut c_void,
    topic: Str,
    payload: Str,
    timeout_ms: u64,
) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("request", c, || unsafe {
        callbacks::request(c, topic, payload, timeout_ms)
    })
}

unsafe extern "C" fn log(
    c: *mut c_void,
    level: u32,
    message: Str,
    fields: Str,
    file: Str,
    line: u32,
) {
    // A log line cannot fail the hook: a refused one is dropped.
    if check("log", c).is_ok() {
        // SAFETY: `c` is the current context, alive while the hook runs.
        unsafe { callbacks::log(c, level, message, fields, file, line) }
    }
}

unsafe extern "C" fn metric(
    c: *mut c_void,
    kind: u32,
    name: Str,
    value: f64,
    attributes: Str,
) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("metric", c, || unsafe {
        callbacks::metric(c, kind, name, value, attributes)
    })
}

unsafe extern "C" fn span_enter(c: *mut c_void, name: Str, attributes: Str) -> u64 {
    match check("span_enter", c) {
        // SAFETY: `c` is the current context, alive while the hook runs.
        Ok(()) => unsafe { callbacks::span_enter(c, name, attributes) },
        // 0 names no span: closing it is a no-op.
        Err(_) => 0,
    }
}

unsafe extern "C" fn span_exit(c: *mut c_void, span: u64) {
    if check("span_exit", c).is_ok() {
        // SAFETY: `c` is the current context, alive while the hook runs.
        unsafe { callbacks::span_exit(c, span) }
    }
}

unsafe extern "C" fn config(c: *mut c_void) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("config", c, || unsafe { callbacks::config(c) })
}

unsafe extern "C" fn state(c: *mut c_void) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("state", c, || unsafe { callbacks::state(c) })
}

unsafe extern "C" fn set_state(c: *mut c_void, value: Str) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("set_state", c, || unsafe { callbacks::set_state(c, value) })
}

unsafe extern "C" fn call_function(c: *mut c_void, name: Str, args: Str) -> CallResult {
    // SAFETY: `c` is the current context, alive while the hook runs.
    result("call_function", c, || unsafe {
        callbacks::call_function(c, name, args)
    })
}

unsafe extern "C" fn timer_add(c: *mut c_void, after_ms: u64, repeat: u32) -> u64 {
    match check("timer_add", c) {
        // SAFETY: `c` is the current context, alive while the hook runs.
        Ok(()) => unsafe { callbacks::timer_add(c, after_ms, repeat) },
        // 0 names no timer: cancelling it is a no-op.
        Err(_) => 0,
    }
}

unsafe extern "C" fn timer_cancel(c: *mut c_void, id: u64) -> u32 {
    match check("timer_cancel", c) {
        // SAFETY: `c` is the current context, alive while the hook runs.
        Ok(()) => unsafe { callbacks::timer_cancel(c, id) },
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_context_of_this_thread_passes() {
        let a = 0x1000 as *const HostCtx;
        let b = 0x2000 as *const HostCtx;
        let refused = |c: *const HostCtx| check("publish", c.cast_mut().cast()).is_err();
        assert!(refused(a), "nothing is current outside a call");
        assert!(refused(std::ptr::null()), "null is never current");
        {
            let _outer = enter(a);
            assert!(!refused(a));
            assert!(refused(b));
            assert!(refused(std::ptr::null()));
            {
                let _inner = enter(b);
                assert!(refused(a), "a nested call has its own context");
                assert!(!refused(b));
            }
            assert!(!refused(a), "the outer call's context is back");
            let address = a as usize;
            let other = std::thread::spawn(move || check("publish", address as *mut c_void));
            assert_eq!(
                other.join().unwrap(),
                Err(Refused {
                    callback: "publish",
                    ctx: 0x1000
                }),
                "another thread has no current context"
            );
        }
        assert!(refused(a), "not after the call");
    }

    #[test]
    fn a_refusal_names_the_callback_and_the_ctx() {
        let e = Refused {
            callback: "publish",
            ctx: 8,
        };
        assert!(
            e.to_string().starts_with(
                "publish: ctx 0x8 is not the context of the hook running on this thread"
            ),
            "{e}"
        );
    }
}
