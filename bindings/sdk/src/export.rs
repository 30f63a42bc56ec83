//! The glue [`export_plugin!`](crate::export_plugin) puts behind the C ABI:
//! one `extern "C"` function per hook, generic over the plugin type, each
//! running its body under the panic guard so that a panic becomes the call's error.
//!
//! Not part of the public API: use the macro.

use std::ffi::c_void;

use serde_json::Value;

use crate::abi::{
    ABI_VERSION, Buf, CallResult, EventView, HostVTable, PluginVTable, SDK_VERSION, STATUS_RESTART,
    Str,
};
use crate::panic::guard;
use crate::{ConfigChange, Event, Host, Plugin, TimerId};

/// One plugin instance and the host it talks to.
struct Slot<T> {
    plugin: T,
    host: Host,
}

/// The hook table of plugin type `T`.
pub const fn vtable<T: Plugin + Default>() -> PluginVTable {
    PluginVTable {
        abi_version: ABI_VERSION,
        create: create::<T>,
        init: init::<T>,
        on_event: on_event::<T>,
        on_config: on_config::<T>,
        on_timer: on_timer::<T>,
        shutdown: shutdown::<T>,
        destroy: destroy::<T>,
        free,
    }
}

/// The instance behind `instance`.
///
/// # Safety
///
/// `instance` must come from `create::<T>` and not be destroyed; the host
/// calls one hook of an instance at a time, so the `&mut` is unique.
unsafe fn slot<'a, T>(instance: *mut c_void) -> &'a mut Slot<T> {
    // SAFETY: guaranteed by the caller, as documented above.
    unsafe { &mut *instance.cast::<Slot<T>>() }
}

fn unit(r: Result<(), String>) -> CallResult {
    match r {
        Ok(()) => CallResult::ok(Vec::new()),
        Err(message) => CallResult::error(&message),
    }
}

fn parse(bytes: Str, what: &str) -> Result<Value, String> {
    // SAFETY: the host's argument, valid for the duration of this call.
    let bytes = unsafe { bytes.as_bytes() };
    plughost_packed::validate(bytes).map_err(|e| format!("the host sent a bad {what}: {e}"))?;
    Ok(plughost_packed::unpack_value(bytes))
}

unsafe extern "C" fn create<T: Plugin + Default>(
    host: *const HostVTable,
    instance: *mut *mut c_void,
) -> CallResult {
    guard(|| {
        if host.is_null() || instance.is_null() {
            return CallResult::error("create: null pointer from the host");
        }
        // SAFETY: checked non-null; the host passes a table valid for the call.
        let vt = unsafe { *host };
        if vt.abi_version != ABI_VERSION {
            return CallResult::error(&format!(
                "the host speaks ABI version {}, this plugin (plughost-sdk {SDK_VERSION}) ABI version {ABI_VERSION}",
                vt.abi_version
            ));
        }
        let slot = Box::new(Slot {
            plugin: T::default(),
            // SAFETY: the host's table, whose ctx outlives this instance.
            host: unsafe { Host::from_vtable(vt) },
        });
        // SAFETY: checked non-null; the host passes a writable pointer.
        unsafe { *instance = Box::into_raw(slot).cast() };
        CallResult::ok(Vec::new())
    })
}

unsafe extern "C" fn init<T: Plugin>(instance: *mut c_void) -> CallResult {
    guard(|| {
        // SAFETY: the host passes an instance made by `create::<T>`.
        let s = unsafe { slot::<T>(instance) };
        unit(s.plugin.init(&s.host))
    })
}

unsafe extern "C" fn on_event<T: Plugin>(
    instance: *mut c_void,
    event: *const EventView,
) -> CallResult {
    guard(|| {
        // SAFETY: the host passes an instance made by `create::<T>`.
        let s = unsafe { slot::<T>(instance) };
        if event.is_null() {
            return CallResult::error("on_event: null event from the host");
        }
        // SAFETY: checked non-null; the host's view and everything it points
        // to are valid for the duration of this call, which `event` does not outlive.
        let event = match unsafe { Event::from_view(&*event) } {
            Ok(e) => e,
            Err(m) => return CallResult::error(&m),
        };
        match s.plugin.on_event(&s.host, &event) {
            // No data is `ack`: the usual outcome allocates nothing.
            Ok(outcome) => CallResult::ok(outcome.encode()),
            Err(message) => CallResult::error(&message),
        }
    })
}

unsafe extern "C" fn on_config<T: Plugin>(instance: *mut c_void, config: Str) -> CallResult {
    guard(|| {
        // SAFETY: the host passes an instance made by `create::<T>`.
        let s = unsafe { slot::<T>(instance) };
        let config = match parse(config, "config") {
            Ok(c) => c,
            Err(m) => return CallResult::error(&m),
        };
        match s.plugin.on_config(&s.host, &config) {
            Ok(ConfigChange::Applied) => CallResult::ok(Vec::new()),
            Ok(ConfigChange::Restart) => CallResult {
                status: STATUS_RESTART,
                data: Buf::EMPTY,
            },
            Err(message) => CallResult::error(&message),
        }
    })
}

unsafe extern "C" fn on_timer<T: Plugin>(instance: *mut c_void, id: u64) -> CallResult {
    guard(|| {
        // SAFETY: the host passes an instance made by `create::<T>`.
        let s = unsafe { slot::<T>(instance) };
        unit(s.plugin.on_timer(&s.host, TimerId(id)))
    })
}

unsafe extern "C" fn shutdown<T: Plugin>(instance: *mut c_void) -> CallResult {
    guard(|| {
        // SAFETY: the host passes an instance made by `create::<T>`.
        let s = unsafe { slot::<T>(instance) };
        unit(s.plugin.shutdown(&s.host))
    })
}

unsafe extern "C" fn destroy<T: Plugin>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    let r = guard(|| {
        // SAFETY: made by `Box::into_raw` in `create::<T>`; the host destroys
        // each instance once and never uses it again.
        drop(unsafe { Box::from_raw(instance.cast::<Slot<T>>()) });
        CallResult::ok(Vec::new())
    });
    // A panic while dropping has nobody to report to: the host is done with it.
    // SAFETY: allocated in this library by `guard`.
    unsafe { r.data.free_local() };
}

unsafe extern "C" fn free(buf: Buf) {
    // SAFETY: the host hands back only buffers this library returned, once.
    unsafe { buf.free_local() }
}
