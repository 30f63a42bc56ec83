//! The C ABI between the host and a native plugin library, version [`ABI_VERSION`].
//!
//! Only `#[repr(C)]` types and `extern "C"` functions cross the boundary, so
//! the host and the plugin may be built by different compilers with different
//! standard libraries. Both sides compile this module: the host uses it to
//! read a library, the SDK's [`export_plugin!`](crate::export_plugin) to write
//! one.
//!
//! # Symbols
//!
//! A plugin library exports three functions:
//!
//! | symbol | returns |
//! | --- | --- |
//! | `plughost_abi_version() -> u32` | [`ABI_VERSION`] as the plugin was built |
//! | `plughost_sdk_version() -> *const c_char` | the SDK's version, NUL-terminated, static |
//! | `plughost_plugin_v1() -> *const PluginVTable` | the hooks, static |
//!
//! The host reads the ABI version first and refuses a library whose version
//! differs from its own before it touches anything else; the two functions
//! above keep their signatures in every ABI version for that reason. The
//! third keeps its name (`_v1`) across versions too: the version check runs
//! before it is looked up, so its name need not change with the table's shape.
//!
//! # Hooks and host functions
//!
//! - [`PluginVTable`], the plugin's: `create`, `init`, `on_event`,
//!   `on_config`, `on_timer` (since ABI 2), `shutdown`, `destroy`, `free`.
//! - [`HostVTable`], the host's: `publish`, `log`, `metric`, `span_enter`,
//!   `span_exit`, `config`, `state`, `set_state`, `call_function`,
//!   `timer_add` and `timer_cancel` (since ABI 2), `free`, `request`
//!   (since ABI 4).
//!
//! # Requests
//!
//! `request(ctx, topic, payload, timeout_ms)` publishes a packed `payload` on
//! `topic` as a request and blocks until the first reply: the data of
//! success is the reply's payload, packed. It fails (an error message) when
//! no reply came within `timeout_ms` (more than 0) or within what is left of
//! the hook's time limit (`limits.event_timeout_ms`), whichever is sooner,
//! at once when nothing subscribes to `topic` or when the plugin itself
//! does, and for the reasons a publish fails. A plugin answers a request it
//! handles with the `reply` outcome.
//!
//! # Timers
//!
//! `timer_add(ctx, after_ms, repeat)` schedules a timer `after_ms`
//! milliseconds from now, repeating every `after_ms` (at least 1) when
//! `repeat` is not 0, and returns its id, never 0. When it is due the host
//! calls the plugin's `on_timer(instance, id)` on the plugin's thread,
//! between two hooks, as it runs a script's timer callback: with no current
//! event, so what it publishes carries no correlation id. `timer_cancel(ctx,
//! id)` stops a timer and returns 1 if it was live, else 0. A reload or a
//! restart stops the old instance's timers once the new instance's `init`
//! succeeded.
//!
//! # Data
//!
//! Structured values (payloads, config, state, a registered function's
//! arguments and result, log fields, metric and span attributes) cross as
//! *packed* bytes: the format of the `plughost-packed` crate (re-exported as
//! [`packed`](crate::packed)), a tag byte per value, little-endian numbers,
//! `u32` lengths and counts, exactly one value per buffer. An empty buffer
//! is an absent optional value (no fields, no attributes). The host checks
//! every packed buffer a plugin hands it ([`validate`](crate::packed::validate))
//! before it trusts it, and refuses one that does not pass with an error
//! for that call. Text (topics, names, messages) is UTF-8.
//!
//! `on_event` gets an [`EventView`]: the event's fields as [`Str`]s and its
//! headers as an array of [`Str`] pairs, all borrowed from the host for the
//! duration of the call, and its payload packed. No JSON is parsed or
//! printed on either side.
//!
//! A [`Str`] is borrowed for
//! the duration of one call. A [`Buf`] is owned by the side that allocated it
//! and freed only by that side: a buffer the plugin returns is handed back to
//! [`PluginVTable::free`], one the host returns to [`HostVTable::free`].
//!
//! # Results
//!
//! Every fallible call returns a [`CallResult`]: [`STATUS_OK`] with the
//! call's data, [`STATUS_ERROR`] with a UTF-8 message, [`STATUS_FATAL`] when
//! the plugin cannot go on, or [`STATUS_PANIC`]
//! with a JSON object `{"message", "file", "line", "column"}` describing a
//! panic that was caught on the plugin's side. A panic never unwinds across
//! the boundary.
//!
//! # Outcomes
//!
//! The data of `on_event`'s success is its outcome: empty for `ack`,
//! else a kind byte ([`outcome`]) followed by its fields:
//!
//! | kind | then |
//! | --- | --- |
//! | [`outcome::ACK`] | nothing |
//! | [`outcome::RETRY`] | 1 byte: 1 when a delay follows, 0 for the manifest's backoff; then the delay in milliseconds, `u64` little-endian |
//! | [`outcome::FORWARD`] | the topic's byte length (`u32` little-endian) and UTF-8 bytes, then the packed payload |
//! | [`outcome::DROP`] | the reason, UTF-8 (empty for none) |
//! | [`outcome::REPLY`] | the packed payload (answers the request being handled, and acknowledges) |
//!
//! # Versioning
//!
//! [`ABI_VERSION`] changes whenever anything in this module changes shape or
//! meaning: a field, a signature, a status, a JSON key. Adding a host binding
//! is such a change. The SDK's crate version is reported for the error
//! message only; the ABI version alone decides.
//!
//! | ABI version | change |
//! | --- | --- |
//! | 1 | the first: the hooks and bindings of a script, without timers |
//! | 2 | timers: `HostVTable::timer_add` and `timer_cancel`, `PluginVTable::on_timer` |
//! | 3 | [`STATUS_FATAL`]: a plugin that cannot go on |
//! | 4 | requests: `HostVTable::request`, the `reply` outcome |
//! | 5 | packed data instead of JSON text; `on_event` takes an [`EventView`]; outcomes as a kind byte |

use std::ffi::{c_char, c_void};

/// The version of this ABI. A host loads only libraries built with the same.
pub const ABI_VERSION: u32 = 5;

/// The version of the `plughost-sdk` crate this module belongs to.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// [`SDK_VERSION`] with a terminating NUL, as `plughost_sdk_version` returns it.
pub const SDK_VERSION_NUL: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The name of the ABI version function, NUL-terminated.
pub const ABI_VERSION_SYMBOL: &[u8] = b"plughost_abi_version\0";
/// The name of the SDK version function, NUL-terminated.
pub const SDK_VERSION_SYMBOL: &[u8] = b"plughost_sdk_version\0";
/// The name of the function returning the [`PluginVTable`], NUL-terminated.
/// The same in every ABI version (it is looked up after the version check).
pub const VTABLE_SYMBOL: &[u8] = b"plughost_plugin_v1\0";

/// Signature of `plughost_abi_version`.
pub type AbiVersionFn = unsafe extern "C" fn() -> u32;
/// Signature of `plughost_sdk_version`.
pub type SdkVersionFn = unsafe extern "C" fn() -> *const c_char;
/// Signature of `plughost_plugin_v1`.
pub type VTableFn = unsafe extern "C" fn() -> *const PluginVTable;

/// The call succeeded; [`CallResult::data`] holds its result.
pub const STATUS_OK: u32 = 0;
/// The call failed; the data is a UTF-8 message.
pub const STATUS_ERROR: u32 = 1;
/// The plugin panicked; the data is a JSON object describing the panic.
pub const STATUS_PANIC: u32 = 2;
/// Returned by `on_config` only: the plugin did not handle the change, so the
/// host restarts it (`shutdown`, a fresh instance, `init`) with the new config.
pub const STATUS_RESTART: u32 = 3;
/// The plugin cannot go on (see [`fatal`](crate::fatal)): the data is a JSON
/// object as for [`STATUS_PANIC`]. The host counts a crash and restarts the
/// plugin in a fresh instance. A host that predates it reads it as an error.
pub const STATUS_FATAL: u32 = 4;

/// Log levels as `log` passes them.
pub mod level {
    /// Trace.
    pub const TRACE: u32 = 0;
    /// Debug.
    pub const DEBUG: u32 = 1;
    /// Info.
    pub const INFO: u32 = 2;
    /// Warn.
    pub const WARN: u32 = 3;
    /// Error.
    pub const ERROR: u32 = 4;
}

/// Metric kinds as `metric` passes them.
pub mod metric {
    /// A monotonic sum.
    pub const COUNTER: u32 = 0;
    /// A last value.
    pub const GAUGE: u32 = 1;
    /// A distribution.
    pub const HISTOGRAM: u32 = 2;
}

/// The kinds of `on_event`'s outcome, its data's first byte (see
/// [Outcomes](self#outcomes)); no data at all is [`ACK`](outcome::ACK) too.
pub mod outcome {
    /// Handled.
    pub const ACK: u8 = 0;
    /// Deliver again, after a delay or the manifest's backoff.
    pub const RETRY: u8 = 1;
    /// Publish a payload on a topic in the plugin's name, and acknowledge.
    pub const FORWARD: u8 = 2;
    /// Dead-letter the event with a reason.
    pub const DROP: u8 = 3;
    /// Answer the request being handled, and acknowledge.
    pub const REPLY: u8 = 4;
}

/// The event `on_event` handles, borrowed from the host for the duration
/// of the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct EventView {
    /// Its id (a ULID).
    pub id: Str,
    /// The topic it was published on.
    pub topic: Str,
    /// The publishing plugin's name, or `host`.
    pub source: Str,
    /// When it was published, RFC 3339 UTC with milliseconds.
    pub timestamp: Str,
    /// The correlation id, when `has_correlation_id` is not 0.
    pub correlation_id: Str,
    /// 1 when the event has a correlation id, else 0.
    pub has_correlation_id: u32,
    /// `header_count` pairs of [`Str`]s: name, value, name, value, …
    /// (null when there are none).
    pub headers: *const Str,
    /// The number of header pairs (`headers` holds twice as many `Str`s).
    pub header_count: usize,
    /// The payload, packed.
    pub payload: Str,
}

/// Borrowed UTF-8 bytes, valid for the duration of one call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    /// First byte (may be null or dangle when `len` is 0).
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Str {
    /// Borrows `bytes` for a call.
    pub fn new(bytes: &[u8]) -> Str {
        Str {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    /// No bytes (an absent optional argument).
    pub const EMPTY: Str = Str {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// The bytes.
    ///
    /// # Safety
    ///
    /// `ptr` must point to `len` readable bytes that stay valid and unchanged
    /// for `'a`, as the other side guarantees for the duration of a call.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 || self.ptr.is_null() {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is readable for 'a.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Bytes owned by the side that allocated them; returned through the
/// boundary and freed by the allocating side's `free`.
#[repr(C)]
#[derive(Debug)]
pub struct Buf {
    /// First byte (null for an empty buffer).
    pub ptr: *mut u8,
    /// Number of bytes.
    pub len: usize,
}

impl Buf {
    /// An empty buffer, which needs no freeing.
    pub const EMPTY: Buf = Buf {
        ptr: std::ptr::null_mut(),
        len: 0,
    };

    /// Hands `bytes` over; free it with [`Buf::free_local`] on this side.
    pub fn from_vec(bytes: Vec<u8>) -> Buf {
        if bytes.is_empty() {
            return Buf::EMPTY;
        }
        let boxed = Box::into_raw(bytes.into_boxed_slice());
        Buf {
            ptr: boxed.cast::<u8>(),
            len: boxed.len(),
        }
    }

    /// The bytes.
    ///
    /// # Safety
    ///
    /// The buffer must come from [`Buf::from_vec`] (on either side) and not
    /// have been freed.
    pub unsafe fn as_bytes(&self) -> &[u8] {
        if self.ptr.is_null() {
            return &[];
        }
        // SAFETY: a non-null buffer holds `len` bytes until it is freed.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    /// Frees a buffer that *this* side allocated with [`Buf::from_vec`].
    ///
    /// # Safety
    ///
    /// The buffer must have been made by `from_vec` in this same library
    /// (this copy of the allocator), and not freed before.
    pub unsafe fn free_local(self) {
        if self.ptr.is_null() {
            return;
        }
        let slice = std::ptr::slice_from_raw_parts_mut(self.ptr, self.len);
        // SAFETY: `from_vec` made this pointer with `Box::into_raw` of a boxed
        // slice of exactly `len` bytes, in this library.
        drop(unsafe { Box::from_raw(slice) });
    }
}

/// The result of a fallible call: a status and its data.
#[repr(C)]
#[derive(Debug)]
pub struct CallResult {
    /// [`STATUS_OK`], [`STATUS_ERROR`], [`STATUS_PANIC`] or [`STATUS_RESTART`].
    pub status: u32,
    /// The result (`STATUS_OK`), the message or the panic; may be empty.
    pub data: Buf,
}

impl CallResult {
    /// Success with `data`.
    pub fn ok(data: Vec<u8>) -> CallResult {
        CallResult {
            status: STATUS_OK,
            data: Buf::from_vec(data),
        }
    }

    /// Failure with `message`.
    pub fn error(message: &str) -> CallResult {
        CallResult {
            status: STATUS_ERROR,
            data: Buf::from_vec(message.as_bytes().to_vec()),
        }
    }
}

/// The host's services, handed to the plugin when an instance is created.
///
/// The plugin may copy the table; `ctx` stays valid until the host has
/// called [`PluginVTable::destroy`] on that instance. Every function must be
/// called on the thread that called the plugin, while a hook runs; the host
/// refuses (with an error, or 0) a call with any other `ctx`, on any other
/// thread, or outside a call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct HostVTable {
    /// [`ABI_VERSION`] as the host was built.
    pub abi_version: u32,
    /// The host's context, passed back as the first argument of every call.
    pub ctx: *mut c_void,
    /// Publishes a packed `payload` on `topic`; the data of success is the new
    /// event's id. While `on_event` runs, the new event carries the handled
    /// event's correlation id.
    pub publish: unsafe extern "C" fn(ctx: *mut c_void, topic: Str, payload: Str) -> CallResult,
    /// Records a log line: a [`level`], the message, a packed object of fields
    /// (empty for none), and the plugin source file and line (empty and 0
    /// when unknown).
    pub log: unsafe extern "C" fn(
        ctx: *mut c_void,
        level: u32,
        message: Str,
        fields: Str,
        file: Str,
        line: u32,
    ),
    /// Records a metric: a [`metric`] kind, the name, the value and a packed
    /// object of attributes (empty for none).
    pub metric: unsafe extern "C" fn(
        ctx: *mut c_void,
        kind: u32,
        name: Str,
        value: f64,
        attributes: Str,
    ) -> CallResult,
    /// Opens a child span of the current event's span, with a packed object of
    /// attributes (empty for none); returns a handle for `span_exit`.
    pub span_enter: unsafe extern "C" fn(ctx: *mut c_void, name: Str, attributes: Str) -> u64,
    /// Closes a span opened by `span_enter`.
    pub span_exit: unsafe extern "C" fn(ctx: *mut c_void, span: u64),
    /// The plugin's config, packed.
    pub config: unsafe extern "C" fn(ctx: *mut c_void) -> CallResult,
    /// The plugin's state, packed (an object unless the plugin stored another value).
    pub state: unsafe extern "C" fn(ctx: *mut c_void) -> CallResult,
    /// Replaces the plugin's state with a packed value; it survives reloads.
    pub set_state: unsafe extern "C" fn(ctx: *mut c_void, state: Str) -> CallResult,
    /// Calls a function the embedding application registered, with a packed
    /// array of arguments; the data of success is the result, packed.
    pub call_function: unsafe extern "C" fn(ctx: *mut c_void, name: Str, args: Str) -> CallResult,
    /// Schedules a timer `after_ms` milliseconds from now, repeating every
    /// `after_ms` (at least 1) when `repeat` is not 0; returns its id, never
    /// 0. When it is due, the host calls [`PluginVTable::on_timer`] with it.
    pub timer_add: unsafe extern "C" fn(ctx: *mut c_void, after_ms: u64, repeat: u32) -> u64,
    /// Stops a timer; returns 1 if it was live (scheduled and not yet
    /// cancelled, or repeating), else 0.
    pub timer_cancel: unsafe extern "C" fn(ctx: *mut c_void, id: u64) -> u32,
    /// Frees a buffer the host returned.
    pub free: unsafe extern "C" fn(buf: Buf),
    /// Publishes a packed `payload` on `topic` as a request and waits for the
    /// first reply, at most `timeout_ms` and never past the hook's time
    /// limit; the data of success is the reply's payload, packed (see
    /// [Requests](self#requests)).
    pub request: unsafe extern "C" fn(
        ctx: *mut c_void,
        topic: Str,
        payload: Str,
        timeout_ms: u64,
    ) -> CallResult,
}

/// A plugin's hooks, as `plughost_plugin_v1` returns them (a static table).
///
/// `instance` is the pointer `create` wrote; every hook of one instance is
/// called on one thread, one at a time.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PluginVTable {
    /// [`ABI_VERSION`] as the plugin was built.
    pub abi_version: u32,
    /// Creates an instance (the plugin type's `Default`) that will use `host`,
    /// and writes it to `*instance`.
    pub create:
        unsafe extern "C" fn(host: *const HostVTable, instance: *mut *mut c_void) -> CallResult,
    /// Runs `init`.
    pub init: unsafe extern "C" fn(instance: *mut c_void) -> CallResult,
    /// Runs `on_event` with the event, valid for the call; the data of
    /// success is the outcome (see [Outcomes](self#outcomes)).
    pub on_event:
        unsafe extern "C" fn(instance: *mut c_void, event: *const EventView) -> CallResult,
    /// Runs `on_config` with the new config, packed; [`STATUS_RESTART`] asks
    /// the host to restart the plugin instead.
    pub on_config: unsafe extern "C" fn(instance: *mut c_void, config: Str) -> CallResult,
    /// Runs `on_timer` for the timer `id` that [`HostVTable::timer_add`]
    /// returned, now due; no data on success.
    pub on_timer: unsafe extern "C" fn(instance: *mut c_void, id: u64) -> CallResult,
    /// Runs `shutdown`.
    pub shutdown: unsafe extern "C" fn(instance: *mut c_void) -> CallResult,
    /// Drops the instance; the host never uses it again.
    pub destroy: unsafe extern "C" fn(instance: *mut c_void),
    /// Frees a buffer the plugin returned.
    pub free: unsafe extern "C" fn(buf: Buf),
}
