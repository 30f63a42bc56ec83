//! [`Host`]: the host's bindings as a native plugin calls them, the same
//! services a script gets as `bus` (publish and request), `config`, `state`, `log`, `telemetry`,
//! `timer` and `host`.
//!
//! Each method packs its arguments (serde straight into packed bytes, in a
//! buffer the host handle reuses), calls through the [`HostVTable`], and
//! hands the host's buffer back to the host to free.

use std::cell::RefCell;
use std::panic::Location;
use std::time::Duration;

use plughost_packed::Writer;
use serde::Serialize;
use serde_json::Value;

use crate::abi::{self, CallResult, HostVTable, STATUS_OK, Str};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Trace.
    Trace,
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warn.
    Warn,
    /// Error.
    Error,
}

/// The kind of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic sum (`telemetry.counter`).
    Counter,
    /// A last value (`telemetry.gauge`).
    Gauge,
    /// A distribution (`telemetry.histogram`).
    Histogram,
}

/// Names one timer of a plugin instance, as [`Host::after`] and
/// [`Host::every`] return it and [`Plugin::on_timer`](crate::Plugin::on_timer)
/// receives it.
///
/// Ids are unique within a plugin instance and never reused by it. They mean
/// nothing to another instance (the one a reload or restart makes), so keep
/// them in fields of `self`, not in the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(pub(crate) u64);

/// The host, as a plugin's hooks see it.
///
/// Only valid inside the hook it was passed to, on that thread: it is
/// neither `Send` nor `Sync`, and a plugin should not keep it.
#[derive(Debug)]
pub struct Host {
    vt: HostVTable,
    /// The buffer arguments are packed into, reused from call to call.
    buf: RefCell<Writer>,
}

impl Host {
    /// Wraps the host's table.
    ///
    /// # Safety
    ///
    /// `vt` must be the table the host passed to `create`, with its `ctx`
    /// still alive.
    pub(crate) unsafe fn from_vtable(vt: HostVTable) -> Host {
        Host {
            vt,
            buf: RefCell::new(Writer::new()),
        }
    }

    /// Packs `value` and calls `f` with the bytes.
    fn packed<T: Serialize + ?Sized, R>(
        &self,
        value: &T,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, String> {
        // A `Serialize` impl that calls back into the host gets a buffer of its own.
        let mut fresh = Writer::new();
        let mut borrowed = self.buf.try_borrow_mut();
        let w = match borrowed.as_deref_mut() {
            Ok(w) => w,
            Err(_) => &mut fresh,
        };
        w.clear();
        plughost_packed::to_writer(w, value).map_err(|e| format!("cannot pack the value: {e}"))?;
        Ok(f(w.as_bytes()))
    }

    /// Publishes `payload` on `topic` in the plugin's name and returns the
    /// new event's id. While `on_event` runs, the new event carries the
    /// handled event's correlation id. Fails for an invalid topic, a
    /// `plughost.` topic, or one outside the manifest's `publications`.
    ///
    /// `payload` is anything `Serialize`: a `serde_json::Value`
    /// (`json!({...})`), or the plugin's own `#[derive(Serialize)]` type,
    /// which is packed directly, without a JSON tree.
    pub fn publish(&self, topic: &str, payload: impl Serialize) -> Result<String, String> {
        let r = self.packed(&payload, |bytes| {
            // SAFETY: the host's function, with its ctx and arguments valid for the call.
            unsafe { (self.vt.publish)(self.vt.ctx, Str::new(topic.as_bytes()), Str::new(bytes)) }
        })?;
        self.text(r)
    }

    /// Publishes `payload` on `topic` as a request and waits for the first
    /// reply (`bus.request` in Lua): another plugin answers with
    /// [`Outcome::Reply`](crate::Outcome::Reply). Returns the reply's
    /// payload. Waits at most `timeout` (rounded up to whole milliseconds,
    /// more than 0), and never past the hook's time limit
    /// (`limits.event_timeout_ms`): the wait counts against it. Fails when
    /// no reply came in time, at once when nothing subscribes to `topic`
    /// or when this plugin itself does (it would wait for itself), and for
    /// the reasons [`Host::publish`] fails.
    pub fn request(
        &self,
        topic: &str,
        payload: impl Serialize,
        timeout: Duration,
    ) -> Result<Value, String> {
        let ms = u64::try_from(timeout.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        let r = self.packed(&payload, |bytes| {
            // SAFETY: the host's function, with its ctx and arguments valid for the call.
            unsafe {
                (self.vt.request)(self.vt.ctx, Str::new(topic.as_bytes()), Str::new(bytes), ms)
            }
        })?;
        self.value(r)
    }

    /// Logs `message` at `level`, with this call's file and line.
    #[track_caller]
    pub fn log(&self, level: Level, message: &str) {
        self.emit(level, message, None, Location::caller());
    }

    /// Logs `message` with structured `fields` (an object; another value is
    /// logged as `{"value": …}`).
    #[track_caller]
    pub fn log_with(&self, level: Level, message: &str, fields: &Value) {
        self.emit(level, message, Some(fields), Location::caller());
    }

    /// `log(Level::Trace, message)`.
    #[track_caller]
    pub fn trace(&self, message: &str) {
        self.emit(Level::Trace, message, None, Location::caller());
    }

    /// `log(Level::Debug, message)`.
    #[track_caller]
    pub fn debug(&self, message: &str) {
        self.emit(Level::Debug, message, None, Location::caller());
    }

    /// `log(Level::Info, message)`.
    #[track_caller]
    pub fn info(&self, message: &str) {
        self.emit(Level::Info, message, None, Location::caller());
    }

    /// `log(Level::Warn, message)`.
    #[track_caller]
    pub fn warn(&self, message: &str) {
        self.emit(Level::Warn, message, None, Location::caller());
    }

    /// `log(Level::Error, message)`.
    #[track_caller]
    pub fn error(&self, message: &str) {
        self.emit(Level::Error, message, None, Location::caller());
    }

    fn emit(&self, level: Level, message: &str, fields: Option<&Value>, at: &Location<'_>) {
        let level = match level {
            Level::Trace => abi::level::TRACE,
            Level::Debug => abi::level::DEBUG,
            Level::Info => abi::level::INFO,
            Level::Warn => abi::level::WARN,
            Level::Error => abi::level::ERROR,
        };
        let fields = fields.map(plughost_packed::pack_value).unwrap_or_default();
        // SAFETY: the host's function, with its ctx and arguments valid for the call.
        unsafe {
            (self.vt.log)(
                self.vt.ctx,
                level,
                Str::new(message.as_bytes()),
                Str::new(&fields),
                Str::new(at.file().as_bytes()),
                at.line(),
            );
        }
    }

    /// Records a metric value. Names are 1 to 128 letters, digits, `.`, `_`, `-`.
    pub fn metric(&self, kind: MetricKind, name: &str, value: f64) -> Result<(), String> {
        self.metric_with(kind, name, value, &Value::Null)
    }

    /// Records a metric value with attributes (an object, or `null` for none).
    pub fn metric_with(
        &self,
        kind: MetricKind,
        name: &str,
        value: f64,
        attributes: &Value,
    ) -> Result<(), String> {
        let kind = match kind {
            MetricKind::Counter => abi::metric::COUNTER,
            MetricKind::Gauge => abi::metric::GAUGE,
            MetricKind::Histogram => abi::metric::HISTOGRAM,
        };
        let attributes = packed_or_empty(attributes);
        // SAFETY: the host's function, with its ctx and arguments valid for the call.
        let r = unsafe {
            (self.vt.metric)(
                self.vt.ctx,
                kind,
                Str::new(name.as_bytes()),
                value,
                Str::new(&attributes),
            )
        };
        self.text(r).map(drop)
    }

    /// `metric(MetricKind::Counter, name, value)`.
    pub fn counter(&self, name: &str, value: f64) -> Result<(), String> {
        self.metric(MetricKind::Counter, name, value)
    }

    /// `metric(MetricKind::Gauge, name, value)`.
    pub fn gauge(&self, name: &str, value: f64) -> Result<(), String> {
        self.metric(MetricKind::Gauge, name, value)
    }

    /// `metric(MetricKind::Histogram, name, value)`.
    pub fn histogram(&self, name: &str, value: f64) -> Result<(), String> {
        self.metric(MetricKind::Histogram, name, value)
    }

    /// Runs `f` inside a child span of the current event's span, with
    /// `attributes` (an object, or `null`); the span closes when `f` returns
    /// or panics.
    pub fn span<R>(&self, name: &str, attributes: &Value, f: impl FnOnce() -> R) -> R {
        struct Open<'a>(&'a HostVTable, u64);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                // SAFETY: closes the span this guard opened, with the host's ctx.
                unsafe { (self.0.span_exit)(self.0.ctx, self.1) }
            }
        }
        let attributes = packed_or_empty(attributes);
        // SAFETY: the host's function, with its ctx and arguments valid for the call.
        let id = unsafe {
            (self.vt.span_enter)(
                self.vt.ctx,
                Str::new(name.as_bytes()),
                Str::new(&attributes),
            )
        };
        let _open = Open(&self.vt, id);
        f()
    }

    /// The plugin's `config` mapping from the manifest (updated before `on_config`).
    pub fn config(&self) -> Value {
        // SAFETY: the host's function, with its ctx valid for the call.
        let r = unsafe { (self.vt.config)(self.vt.ctx) };
        self.value(r).unwrap_or_default()
    }

    /// The plugin's state: plain data that survives reloads (an empty object
    /// at first). It is a copy: store changes with [`Host::set_state`].
    pub fn state(&self) -> Value {
        // SAFETY: the host's function, with its ctx valid for the call.
        let r = unsafe { (self.vt.state)(self.vt.ctx) };
        self.value(r).unwrap_or_default()
    }

    /// Replaces the plugin's state. The host keeps it across reloads, and
    /// keeps it even when the hook that set it fails afterwards.
    pub fn set_state(&self, state: impl Serialize) -> Result<(), String> {
        let r = self.packed(&state, |bytes| {
            // SAFETY: the host's function, with its ctx and arguments valid for the call.
            unsafe { (self.vt.set_state)(self.vt.ctx, Str::new(bytes)) }
        })?;
        self.text(r).map(drop)
    }

    /// Calls a function the embedding application registered
    /// (`host.NAME(...)` in Lua).
    pub fn call(&self, function: &str, args: &[Value]) -> Result<Value, String> {
        let r = self.packed(args, |bytes| {
            // SAFETY: the host's function, with its ctx and arguments valid for the call.
            unsafe {
                (self.vt.call_function)(self.vt.ctx, Str::new(function.as_bytes()), Str::new(bytes))
            }
        })?;
        self.value(r)
    }

    /// Schedules a timer that fires once, `delay` from now (in whole
    /// milliseconds, rounded up): the host then calls
    /// [`Plugin::on_timer`](crate::Plugin::on_timer) with the id returned
    /// here, on the plugin's thread, between two events (`timer.after` in Lua).
    pub fn after(&self, delay: Duration) -> TimerId {
        self.add_timer(delay, false)
    }

    /// Schedules a timer that fires every `interval` (in whole milliseconds,
    /// rounded up, at least 1) until cancelled (`timer.every` in Lua). It
    /// does not drift, and after a stall it fires once, not once per period
    /// missed.
    pub fn every(&self, interval: Duration) -> TimerId {
        self.add_timer(interval, true)
    }

    /// Stops a timer; returns whether it was live (a one-shot timer that
    /// fired, or one cancelled before, is not). A timer may cancel itself
    /// from its own `on_timer`.
    pub fn cancel_timer(&self, timer: TimerId) -> bool {
        // SAFETY: the host's function, with its ctx valid for the call.
        unsafe { (self.vt.timer_cancel)(self.vt.ctx, timer.0) != 0 }
    }

    fn add_timer(&self, after: Duration, repeat: bool) -> TimerId {
        let ms = u64::try_from(after.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX);
        // SAFETY: the host's function, with its ctx valid for the call.
        TimerId(unsafe { (self.vt.timer_add)(self.vt.ctx, ms, u32::from(repeat)) })
    }

    /// Takes a host result's data as text, and frees the host's buffer.
    fn text(&self, r: CallResult) -> Result<String, String> {
        // SAFETY: the host made `data` and has not freed it; we copy it out
        // before handing it back to the host's `free`, once.
        let text = String::from_utf8_lossy(unsafe { r.data.as_bytes() }).into_owned();
        // SAFETY: as above: the host's buffer goes back to the host's free.
        unsafe { (self.vt.free)(r.data) };
        if r.status == STATUS_OK {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Takes a host result's data as a packed value (no data is `null`),
    /// and frees the host's buffer.
    fn value(&self, r: CallResult) -> Result<Value, String> {
        if r.status != STATUS_OK {
            return self.text(r).and(Ok(Value::Null));
        }
        // SAFETY: the host made `data` and has not freed it; it is decoded
        // before the buffer goes back to the host's `free`, once.
        let bytes = unsafe { r.data.as_bytes() };
        let value = match plughost_packed::validate(bytes) {
            Ok(()) => Ok(plughost_packed::unpack_value(bytes)),
            Err(_) if bytes.is_empty() => Ok(Value::Null),
            Err(e) => Err(format!("the host sent a bad packed value: {e}")),
        };
        // SAFETY: as above.
        unsafe { (self.vt.free)(r.data) };
        value
    }
}

/// An optional object argument packed: `null` is none (no bytes).
fn packed_or_empty(v: &Value) -> Vec<u8> {
    if v.is_null() {
        Vec::new()
    } else {
        plughost_packed::pack_value(v)
    }
}
