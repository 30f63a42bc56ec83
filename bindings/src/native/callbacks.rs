//! The host's side of the boundary: the `extern "C"` functions a native
//! plugin calls (publish, request, log, metric, span, config, state, registered
//! functions, timers), each a thin adapter over [`HostApi`](crate::HostApi)
//! or the timer schedule, as the Lua and Rhai bindings are.
//!
//! Their context is a [`HostCtx`] per plugin, owned by the plugin's
//! [`NativePlugin`](super::NativePlugin): it holds the config and the state
//! on the host's side, so the state survives a reload whatever the plugin's
//! library does, the event being handled, so a publish carries its
//! correlation id, and the timers' deadlines (the plugin keeps what each
//! timer is for; the host calls its `on_timer` with the id). A panic in the
//! host's code is caught here too: nothing unwinds into the plugin.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ffi::c_void;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use plughost_sdk::abi::{self, Buf, CallResult, HostVTable, Str};
use serde_json::{Map, Value};

use crate::timers::Timers;
use crate::{Event, LogLevel, MetricKind, Payload, PluginInfo, SharedHost, SpanGuard};

/// What the host keeps for one native plugin, shared with its callbacks.
pub(crate) struct HostCtx {
    /// The plugin's identity.
    pub info: Arc<PluginInfo>,
    /// The host services.
    pub host: SharedHost,
    /// The event whose `on_event` is running, if any.
    pub current: RefCell<Option<Arc<Event>>>,
    /// The config the plugin sees.
    pub config: RefCell<Value>,
    /// The plugin's state, carried over to the next version on reload.
    pub state: RefCell<Value>,
    /// The deadlines of the plugin's timers.
    pub timers: RefCell<Timers>,
    /// Open spans by handle.
    spans: RefCell<BTreeMap<u64, SpanGuard>>,
    next_span: Cell<u64>,
    /// The hook time limit (`limits.event_timeout_ms`).
    hook_timeout: Duration,
    /// When the hook call in progress reaches its time limit: a request
    /// waits no longer (the host cannot stop native code, but it need not
    /// keep it waiting past the point where it abandons the call).
    deadline: Cell<Option<Instant>>,
}

impl HostCtx {
    /// The runtime-neutral core of the bindings, for this plugin.
    pub(crate) fn core(&self) -> crate::core::Core<'_> {
        crate::core::Core {
            info: &self.info,
            host: &self.host,
            current: &self.current,
        }
    }

    /// A context starting with `config` and `state` (`null` becomes `{}`, as
    /// a script's `state` starts as an empty table).
    pub fn new(
        info: Arc<PluginInfo>,
        host: SharedHost,
        config: Value,
        state: Value,
        hook_timeout: Duration,
    ) -> HostCtx {
        HostCtx {
            info,
            host,
            current: RefCell::new(None),
            config: RefCell::new(config),
            state: RefCell::new(match state {
                Value::Null => Value::Object(Map::new()),
                other => other,
            }),
            timers: RefCell::default(),
            spans: RefCell::default(),
            next_span: Cell::new(1),
            hook_timeout,
            deadline: Cell::new(None),
        }
    }

    /// Starts the time limit of a hook call (`None`: the call ended).
    pub fn hook_started(&self, now: Option<Instant>) {
        self.deadline.set(now.map(|now| now + self.hook_timeout));
    }

    /// What is left of the running hook call's time limit, if one runs.
    fn time_left(&self) -> Option<Duration> {
        self.deadline
            .get()
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// Closes spans a hook left open (the SDK closes them; a plugin that
    /// leaks a guard must not keep a span open forever).
    pub fn close_spans(&self) {
        let open = std::mem::take(&mut *self.spans.borrow_mut());
        drop(open);
    }
}

/// The callbacks' table for `ctx`, unchecked: the plugin gets
/// [`gate::vtable`](super::gate::vtable)'s, which checks each `ctx` first.
pub(crate) fn vtable(ctx: *const HostCtx) -> HostVTable {
    HostVTable {
        abi_version: abi::ABI_VERSION,
        ctx: ctx.cast_mut().cast(),
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
        free,
        request,
    }
}

/// The context behind a callback's `ctx`.
///
/// # Safety
///
/// `ctx` must be the pointer [`vtable`] was given, and that context alive:
/// the plugin calls back only while one of its hooks runs, and the host
/// frees the context only after destroying every instance using it.
unsafe fn ctx<'a>(ctx: *mut c_void) -> &'a HostCtx {
    // SAFETY: guaranteed by the caller, as documented above.
    unsafe { &*ctx.cast::<HostCtx>().cast_const() }
}

/// Runs a callback body, turning its error or panic into a result.
fn answer(f: impl FnOnce() -> Result<Vec<u8>, String>) -> CallResult {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(data)) => CallResult::ok(data),
        Ok(Err(message)) => CallResult::error(&message),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            CallResult::error(&format!("the host failed: {what}"))
        }
    }
}

/// An argument the plugin handed the host that it cannot take; its text is
/// what the plugin's call returns as its error.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    /// Text that is not UTF-8.
    #[error("{what} is not UTF-8")]
    NotUtf8 { what: String },
    /// Bytes that are not a packed value. The words "is not JSON" stay: a
    /// packed value is a JSON value's encoding.
    #[error("{what} is not JSON (not a packed value: {error})")]
    NotPacked {
        what: String,
        error: crate::payload::PackedError,
    },
    /// A value where an object of name: value was asked for.
    #[error("{what} must be an object of name: value")]
    NotObject { what: String },
}

impl From<ArgError> for String {
    fn from(e: ArgError) -> String {
        e.to_string()
    }
}

/// An argument as text.
fn text<'a>(s: Str, what: &str) -> Result<&'a str, ArgError> {
    // SAFETY: the plugin's argument, valid for the duration of the call.
    std::str::from_utf8(unsafe { s.as_bytes() }).map_err(|_| ArgError::NotUtf8 {
        what: what.to_owned(),
    })
}

/// A packed argument, checked before anything trusts it.
fn checked<'a>(s: Str, what: &str) -> Result<&'a [u8], ArgError> {
    // SAFETY: the plugin's argument, valid for the duration of the call.
    let bytes = unsafe { s.as_bytes() };
    crate::payload::validate(bytes).map_err(|error| ArgError::NotPacked {
        what: what.to_owned(),
        error,
    })?;
    Ok(bytes)
}

/// An optional packed object argument: empty is none, a non-object becomes
/// `{"value": …}` when `wrap`, else an error.
fn object(s: Str, what: &str, wrap: bool) -> Result<Option<Map<String, Value>>, ArgError> {
    if s.len == 0 {
        return Ok(None);
    }
    match plughost_packed::unpack_value(checked(s, what)?) {
        Value::Null => Ok(None),
        Value::Object(map) => Ok(Some(map)),
        other if wrap => Ok(Some(Map::from_iter([("value".to_owned(), other)]))),
        _ => Err(ArgError::NotObject {
            what: what.to_owned(),
        }),
    }
}

/// A packed argument as a JSON value.
fn json(s: Str, what: &str) -> Result<Value, ArgError> {
    checked(s, what).map(plughost_packed::unpack_value)
}

/// A packed argument as a payload: the checked bytes, copied once.
fn checked_payload(s: Str, what: &str) -> Result<Payload, ArgError> {
    checked(s, what).map(|bytes| Payload::from_packed(bytes.to_vec()))
}

/// A value as packed bytes for the plugin (a packed payload as it is).
fn packed(p: &Payload) -> Vec<u8> {
    match p.packed() {
        Some(bytes) => bytes.to_vec(),
        None => plughost_packed::pack_value(p.value()),
    }
}

pub(super) unsafe extern "C" fn publish(c: *mut c_void, topic: Str, payload: Str) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let topic = text(topic, "topic")?;
        let payload = checked_payload(payload, "payload")?;
        c.core()
            .publish(topic, payload)
            .map(String::into_bytes)
            .map_err(|e| e.to_string())
    })
}

pub(super) unsafe extern "C" fn request(
    c: *mut c_void,
    topic: Str,
    payload: Str,
    timeout_ms: u64,
) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let topic = text(topic, "topic")?;
        let payload = checked_payload(payload, "payload")?;
        let reply = c
            .core()
            .request(topic, payload, timeout_ms as f64, c.time_left())
            .map_err(|e| e.to_string())?;
        Ok(packed(&reply))
    })
}

pub(super) unsafe extern "C" fn log(
    c: *mut c_void,
    level: u32,
    message: Str,
    fields: Str,
    file: Str,
    line: u32,
) {
    let result = answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let level = match level {
            abi::level::TRACE => LogLevel::Trace,
            abi::level::DEBUG => LogLevel::Debug,
            abi::level::WARN => LogLevel::Warn,
            abi::level::ERROR => LogLevel::Error,
            _ => LogLevel::Info,
        };
        // SAFETY: the plugin's argument, valid for the duration of the call.
        let message = String::from_utf8_lossy(unsafe { message.as_bytes() });
        let fields = object(fields, "fields", true)?;
        let file = text(file, "file").ok().filter(|f| !f.is_empty());
        c.core().log(
            level,
            &message,
            fields.as_ref(),
            file,
            (line > 0).then_some(line as usize),
        );
        Ok(Vec::new())
    });
    // A log line cannot fail the hook; a bad `fields` is dropped with it.
    // SAFETY: allocated here by `answer`, freed once.
    unsafe { result.data.free_local() };
}

pub(super) unsafe extern "C" fn metric(
    c: *mut c_void,
    kind: u32,
    name: Str,
    value: f64,
    attributes: Str,
) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let kind = match kind {
            abi::metric::COUNTER => MetricKind::Counter,
            abi::metric::GAUGE => MetricKind::Gauge,
            abi::metric::HISTOGRAM => MetricKind::Histogram,
            other => return Err(format!("unknown metric kind {other}")),
        };
        let name = text(name, "metric name")?;
        let attributes = object(attributes, "attributes", false)?.unwrap_or_default();
        c.core()
            .metric(kind, name, value, &attributes)
            .map(|()| Vec::new())
            .map_err(|e| e.to_string())
    })
}

pub(super) unsafe extern "C" fn span_enter(c: *mut c_void, name: Str, attributes: Str) -> u64 {
    let opened = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        // SAFETY: the plugin's argument, valid for the duration of the call.
        let name = String::from_utf8_lossy(unsafe { name.as_bytes() });
        let attributes = object(attributes, "attributes", true)
            .ok()
            .flatten()
            .unwrap_or_default();
        let guard = c.core().span(&name, &attributes);
        let id = c.next_span.get();
        c.next_span.set(id + 1);
        c.spans.borrow_mut().insert(id, guard);
        id
    }));
    opened.unwrap_or(0)
}

pub(super) unsafe extern "C" fn span_exit(c: *mut c_void, span: u64) {
    let _ = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let guard = c.spans.borrow_mut().remove(&span);
        drop(guard);
    }));
}

pub(super) unsafe extern "C" fn config(c: *mut c_void) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        Ok(plughost_packed::pack_value(&c.config.borrow()))
    })
}

pub(super) unsafe extern "C" fn state(c: *mut c_void) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        Ok(plughost_packed::pack_value(&c.state.borrow()))
    })
}

pub(super) unsafe extern "C" fn set_state(c: *mut c_void, value: Str) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        *c.state.borrow_mut() = json(value, "state")?;
        Ok(Vec::new())
    })
}

pub(super) unsafe extern "C" fn call_function(c: *mut c_void, name: Str, args: Str) -> CallResult {
    answer(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let name = text(name, "function name")?;
        let args = match json(args, "arguments")? {
            Value::Array(items) => items,
            Value::Null => Vec::new(),
            other => vec![other],
        };
        let result = c
            .core()
            .call_function(name, args)
            .map_err(|e| e.to_string())?;
        Ok(plughost_packed::pack_value(&result))
    })
}

pub(super) unsafe extern "C" fn timer_add(c: *mut c_void, after_ms: u64, repeat: u32) -> u64 {
    let added = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        let after = Duration::from_millis(after_ms);
        c.timers
            .borrow_mut()
            .add(Instant::now(), after, repeat != 0)
    }));
    // `Timers::add` saturates instead of overflowing and the schedule is
    // never borrowed while a hook runs, so this does not fail; were it to,
    // 0 names no timer, and cancelling it is a no-op.
    added.unwrap_or(0)
}

pub(super) unsafe extern "C" fn timer_cancel(c: *mut c_void, id: u64) -> u32 {
    let cancelled = std::panic::catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: called by the plugin with the ctx we gave it, during a hook.
        let c = unsafe { ctx(c) };
        c.timers.borrow_mut().cancel(id)
    }));
    u32::from(cancelled.unwrap_or(false))
}

unsafe extern "C" fn free(buf: Buf) {
    // SAFETY: the plugin hands back only buffers these callbacks returned, once.
    unsafe { buf.free_local() }
}
