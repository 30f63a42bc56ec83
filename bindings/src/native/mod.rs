//! The native runtime: Rust plugins compiled to a `cdylib`, loaded with
//! libloading through the C ABI of `plughost_sdk::abi`.
//!
//! Loading makes a private copy of the library and checks its ABI version
//! (`library.rs`), gives the plugin a table of host callbacks
//! (`callbacks.rs`), each refusing a `ctx` other than the one of the call
//! running on its thread (`gate.rs`), and creates one instance; each hook is then one call
//! through the plugin's table, its result read by `reply.rs`. Data crosses packed
//! (`plughost-packed`): an event is an `EventView` of borrowed fields and its packed
//! payload, as the bus carries it; what the plugin hands back is validated before the
//! host trusts it. A panic in
//! the plugin is caught on the plugin's side and arrives as that call's
//! error, positioned at the `panic!`. Where `entry` names a crate, [`locate`]
//! finds its library in cargo's target directory.
//!
//! Timers: the plugin's `timer_add` and `timer_cancel` callbacks keep
//! deadlines in the context's [`Timers`] schedule, the same bookkeeping the
//! script runtimes use (minimum interval, no drift, no bursts after a
//! stall); the plugin keeps what each timer is for. The plugin's thread asks
//! [`NativePlugin::next_timer`] and calls `run_due_timer`, which pops the
//! due id and calls the plugin's `on_timer` with it, outside any event.
//! When `on_config` asks for a restart, the old instance's timers stop only
//! once the fresh instance's `init` succeeded, as a script reload's do
//! (`swap` in the host's actor): on failure they keep running.
//!
//! What the host cannot do for native code: it cannot interrupt a hook that
//! runs too long (`limits.event_timeout_ms`; the supervisor abandons the
//! call instead and restarts the plugin on a new thread) or cap its memory
//! (`limits.memory_mb`, ignored for native plugins).

mod callbacks;
mod gate;
mod library;
pub mod locate;
mod reply;
#[cfg(test)]
mod tests;

use std::ffi::c_void;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use plughost_sdk::abi::{CallResult, EventView, PluginVTable, Str};
use serde_json::Value;

use self::callbacks::HostCtx;
use self::library::Library;
use self::reply::Reply;
use crate::timers::Timers;
use crate::{
    ErrorKind, Event, HookName, LogLevel, LogRecord, Outcome, PluginInstance, PluginSpec,
    ScriptError, SharedHost,
};

pub use self::locate::resolve_entry;

/// A loaded native plugin: one instance of the plugin type, in a private
/// copy of its library.
pub struct NativePlugin {
    /// The plugin's instance, made by its `create`.
    instance: *mut c_void,
    /// The callbacks' context, from `Box::into_raw`; freed in `drop`, after
    /// the instance that uses it is destroyed.
    ctx: *mut HostCtx,
    /// The plugin's hook table, a static in `lib` (or in this binary).
    vtable: *const PluginVTable,
    /// The library as messages show it.
    shown: String,
    /// Dropped last: the library is unloaded only after the instance is gone.
    /// `None` only for a plugin type linked into this binary (the unit tests).
    lib: Option<Rc<Library>>,
}

impl std::fmt::Debug for NativePlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativePlugin")
            .field("library", &self.shown)
            .field("sdk_version", &self.lib.as_ref().map(|l| &l.sdk_version))
            .finish_non_exhaustive()
    }
}

impl NativePlugin {
    /// Loads a private copy of the library, checks its versions and creates
    /// the plugin instance (the type's `Default`; `init` is not run).
    pub fn load(spec: &PluginSpec, host: SharedHost) -> Result<NativePlugin, ScriptError> {
        let lib = Rc::new(Library::open(&spec.entry, &spec.entry_display())?);
        let vtable: *const PluginVTable = lib.vtable();
        Self::with_table(spec, host, vtable, Some(lib))
    }

    /// Creates an instance from a hook table that `lib` holds (or that is
    /// static in this binary when `lib` is `None`).
    fn with_table(
        spec: &PluginSpec,
        host: SharedHost,
        vtable: *const PluginVTable,
        lib: Option<Rc<Library>>,
    ) -> Result<NativePlugin, ScriptError> {
        let ctx = Box::into_raw(Box::new(HostCtx::new(
            spec.info.clone(),
            host,
            spec.config.clone(),
            spec.state.clone(),
            spec.limits.hook_timeout,
        )));
        let mut plugin = NativePlugin {
            instance: std::ptr::null_mut(),
            ctx,
            vtable,
            shown: spec.entry_display(),
            lib,
        };
        plugin.instance = plugin.create()?;
        Ok(plugin)
    }

    fn ctx(&self) -> &HostCtx {
        // SAFETY: from `Box::into_raw` in `load`, freed only in `drop`.
        unsafe { &*self.ctx }
    }

    fn vt(&self) -> &PluginVTable {
        // SAFETY: a static table in `lib`, which `self` holds, or in this binary.
        unsafe { &*self.vtable }
    }

    /// A new instance of the plugin type, using this plugin's context.
    fn create(&self) -> Result<*mut c_void, ScriptError> {
        let host = gate::vtable(self.ctx);
        let mut instance = std::ptr::null_mut();
        let entered = gate::enter(self.ctx);
        // SAFETY: the plugin's `create`, given a table valid for the call
        // (the plugin copies it) whose ctx lives until after `destroy`, and
        // a pointer to write the instance to.
        let r = unsafe { (self.vt().create)(&host, &mut instance) };
        drop(entered);
        self.finish(r, HookName::Load)?;
        if instance.is_null() {
            return Err(
                ScriptError::new(ErrorKind::Load, "the plugin created no instance")
                    .or_file(&self.shown)
                    .in_hook(HookName::Load),
            );
        }
        Ok(instance)
    }

    /// Calls one hook of `instance` and reads its result.
    fn call(
        &self,
        instance: *mut c_void,
        hook: HookName,
        f: impl FnOnce(&PluginVTable, *mut c_void) -> CallResult,
    ) -> Result<Reply, ScriptError> {
        let entered = gate::enter(self.ctx);
        self.ctx().hook_started(Some(Instant::now()));
        let r = f(self.vt(), instance);
        self.ctx().hook_started(None);
        drop(entered);
        self.finish(r, hook)
    }

    fn finish(&self, r: CallResult, hook: HookName) -> Result<Reply, ScriptError> {
        self.ctx().close_spans();
        reply::read(self.vt(), r, hook, &self.shown)
    }

    /// Calls one hook of `instance` and reads its successful data with
    /// `read` straight from the plugin's buffer (no copy); `None` when the
    /// hook asked for a restart.
    fn call_with<T>(
        &self,
        instance: *mut c_void,
        hook: HookName,
        f: impl FnOnce(&PluginVTable, *mut c_void) -> CallResult,
        read: impl FnOnce(&[u8]) -> Result<T, ScriptError>,
    ) -> Result<Option<T>, ScriptError> {
        let entered = gate::enter(self.ctx);
        self.ctx().hook_started(Some(Instant::now()));
        let r = f(self.vt(), instance);
        self.ctx().hook_started(None);
        drop(entered);
        self.ctx().close_spans();
        reply::read_with(self.vt(), r, hook, &self.shown, read)
    }

    fn destroy(&self, instance: *mut c_void) {
        if !instance.is_null() {
            let _entered = gate::enter(self.ctx);
            // SAFETY: an instance `create` made, destroyed once, never used after.
            unsafe { (self.vt().destroy)(instance) };
        }
    }

    /// What a script without `on_config` gets: a fresh instance with the new
    /// config and the state kept, `init`, then `shutdown` of the old one. On
    /// failure the old instance keeps running with its state and timers
    /// untouched.
    fn restart(&mut self) -> Result<(), ScriptError> {
        let saved = self.ctx().state.borrow().clone();
        let fresh = self.create()?;
        // The fresh instance's `init` sets its timers in a schedule of its
        // own; the old instance's keep running until that `init` succeeded.
        let successor = self.ctx().timers.borrow().successor();
        let old_timers = self.ctx().timers.replace(successor);
        // SAFETY: an instance `create` just made.
        if let Err(e) = self.call(fresh, HookName::Init, |vt, i| unsafe { (vt.init)(i) }) {
            self.destroy(fresh);
            *self.ctx().state.borrow_mut() = saved;
            self.ctx().timers.replace(old_timers);
            return Err(e);
        }
        drop(old_timers);
        let old = std::mem::replace(&mut self.instance, fresh);
        // A timer the old instance sets in its `shutdown` must not fire on
        // the fresh one: it goes to a schedule thrown away afterwards.
        let fresh_timers = self.ctx().timers.replace(Timers::new());
        // SAFETY: the old instance, still alive until destroyed below.
        let shutdown = self.call(old, HookName::Shutdown, |vt, i| unsafe { (vt.shutdown)(i) });
        self.ctx().timers.replace(fresh_timers);
        if let Err(e) = shutdown {
            let c = self.ctx();
            let message = e.detailed();
            c.host.log(
                &c.info,
                LogRecord {
                    level: LogLevel::Error,
                    message: &message,
                    fields: None,
                    file: None,
                    line: None,
                },
            );
        }
        self.destroy(old);
        Ok(())
    }

    /// Runs a hook without arguments or result (`init`, `shutdown`).
    fn unit(
        &self,
        hook: HookName,
        f: unsafe extern "C" fn(*mut c_void) -> CallResult,
    ) -> Result<(), ScriptError> {
        // SAFETY: this plugin's live instance, one hook at a time.
        self.call(self.instance, hook, |_, i| unsafe { f(i) })
            .map(drop)
    }
}

impl PluginInstance for NativePlugin {
    fn init(&mut self) -> Result<(), ScriptError> {
        self.unit(HookName::Init, self.vt().init)
    }

    fn on_event(&mut self, event: &Arc<Event>) -> Result<Outcome, ScriptError> {
        // A payload published on the bus is packed already; one that is not
        // (delivered some other way) is packed here, for this call.
        let packed_here;
        let payload: &[u8] = match event.payload.packed() {
            Some(bytes) => bytes,
            None => {
                packed_here = plughost_packed::pack_value(event.payload.value());
                &packed_here
            }
        };
        // Sized at once: collecting a `flat_map` would grow the vector.
        let mut headers: Vec<Str> = Vec::with_capacity(event.headers.len() * 2);
        for (k, v) in &event.headers {
            headers.extend([Str::new(k.as_bytes()), Str::new(v.as_bytes())]);
        }
        let view = EventView {
            id: Str::new(event.id.as_bytes()),
            topic: Str::new(event.topic.as_bytes()),
            source: Str::new(event.source.as_bytes()),
            timestamp: Str::new(event.timestamp.as_bytes()),
            correlation_id: event
                .correlation_id
                .as_deref()
                .map_or(Str::EMPTY, |c| Str::new(c.as_bytes())),
            has_correlation_id: u32::from(event.correlation_id.is_some()),
            headers: if headers.is_empty() {
                std::ptr::null()
            } else {
                headers.as_ptr()
            },
            header_count: event.headers.len(),
            payload: Str::new(payload),
        };
        *self.ctx().current.borrow_mut() = Some(event.clone());
        // SAFETY: this plugin's live instance; the view and everything it
        // borrows (the event, `headers`, `payload`) outlive the call.
        let r = self.call_with(
            self.instance,
            HookName::OnEvent,
            |vt, i| unsafe { (vt.on_event)(i, &view) },
            reply::outcome,
        );
        *self.ctx().current.borrow_mut() = None;
        match r? {
            Some(outcome) => Ok(outcome),
            None => Ok(Outcome::Ack),
        }
    }

    /// Always: the plugin's `on_config` says whether it applied the change
    /// or wants the restart a script without `on_config` gets.
    fn has_on_config(&self) -> bool {
        true
    }

    fn on_config(&mut self, config: &Value) -> Result<(), ScriptError> {
        let previous = self.ctx().config.replace(config.clone());
        let packed = plughost_packed::pack_value(config);
        // SAFETY: this plugin's live instance; the packed config outlives the call.
        let r = self.call(self.instance, HookName::OnConfig, |vt, i| unsafe {
            (vt.on_config)(i, Str::new(&packed))
        })?;
        match r {
            Reply::Done => Ok(()),
            Reply::Restart => self.restart().inspect_err(|_| {
                // The old instance keeps running with the config it knew.
                self.ctx().config.replace(previous);
            }),
        }
    }

    fn shutdown(&mut self) -> Result<(), ScriptError> {
        self.unit(HookName::Shutdown, self.vt().shutdown)
    }

    fn next_timer(&mut self) -> Option<Instant> {
        self.ctx().timers.borrow_mut().next_deadline()
    }

    /// Pops one due timer and calls the plugin's `on_timer` with its id,
    /// with no current event (a publish carries no correlation id).
    fn run_due_timer(&mut self, now: Instant) -> Option<Result<(), ScriptError>> {
        let (id, _) = self.ctx().timers.borrow_mut().pop_due(now)?;
        // SAFETY: this plugin's live instance, one hook at a time.
        let r = self.call(self.instance, HookName::Timer, |vt, i| unsafe {
            (vt.on_timer)(i, id)
        });
        Some(r.map(drop))
    }

    fn clear_timers(&mut self) {
        self.ctx().timers.borrow_mut().clear();
    }

    fn state(&mut self) -> Result<Value, ScriptError> {
        Ok(self.ctx().state.borrow().clone())
    }
}

impl Drop for NativePlugin {
    fn drop(&mut self) {
        let instance = std::mem::replace(&mut self.instance, std::ptr::null_mut());
        self.destroy(instance);
        // SAFETY: from `Box::into_raw` in `load`; the only instance using it
        // is destroyed above, so nothing calls back into it any more.
        drop(unsafe { Box::from_raw(self.ctx) });
        // `lib` drops after this: the library outlives its last instance.
    }
}

/// Checks a native plugin for `plughost check`: the library exists, loads,
/// and speaks this host's ABI version. Runs none of its code but the
/// version functions (and the library's initialisers, which loading runs).
pub fn check(spec: &PluginSpec) -> Vec<ScriptError> {
    match Library::open(&spec.entry, &spec.entry_display()) {
        Ok(_) => Vec::new(),
        Err(e) => vec![e],
    }
}

/// How to get a missing library: the build command, where one applies.
pub(crate) fn build_hint(path: &Path) -> String {
    format!(
        "{} does not exist; build the plugin's crate with `cargo build` \
         (`cargo build -p <crate>` in a workspace) first",
        path.display()
    )
}
