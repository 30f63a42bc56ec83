//! plughost bindings: one interface over the Lua, Rhai and native runtimes.
//!
//! # Layout
//!
//! - [`event`]: the [`Event`] every runtime sees, with ids and timestamps.
//! - [`payload`]: [`Payload`], a JSON value that crosses the bus packed.
//! - [`outcome`]: what `on_event` asked for ([`Outcome`]).
//! - [`error`]: [`ScriptError`], a failure positioned in the plugin's source.
//! - [`host_api`]: [`HostApi`], the services the host offers to plugins
//!   (publish, log, metrics, spans, registered functions).
//! - [`plugin`]: [`PluginInstance`], the hooks every runtime implements, and
//!   [`load`] / [`check`], which pick the runtime.
//! - `core`: the runtime-neutral bindings (publish, functions, log, metrics,
//!   spans, timer delays, outcomes), their checks and messages written once;
//!   each runtime only converts values and positions errors.
//! - `helpers`: the script helpers `json`, `time`, `regex` (SPEC §4), written
//!   once; each runtime only converts values and positions errors.
//! - [`timers`]: the pure timer schedule behind `timer.after/every`.
//! - [`modpath`]: `require`/`import` resolution confined to the plugin folder.
//! - [`lua`]: the Lua runtime (mlua), one small module per binding.
//! - [`rhai`]: the Rhai runtime, the same bindings spelt `bus::publish`.
//! - [`native`]: Rust `cdylib` plugins behind the C ABI of `plughost-sdk`
//!   (private copies, version handshake, panics caught in the plugin).
//!
//! The host crate (`plughost`) owns threads, queues and files; this crate
//! only turns hook calls into interpreter calls and back.
#![deny(missing_docs)]

mod budget;
mod convert_error;
mod core;
pub mod error;
pub mod event;
mod helpers;
pub mod host_api;
pub mod lua;
pub mod modpath;
pub mod native;
pub mod outcome;
pub mod payload;
pub mod plugin;
pub mod rhai;
mod runtime_kind;
pub mod system_alloc;
pub mod timers;
mod watchdog;

#[cfg(test)]
mod test_host;

pub use error::{ErrorKind, HookName, ScriptError};
pub use event::{Event, HOST_SOURCE};
pub use host_api::{
    HostApi, HostCall, HostCallError, LogLevel, LogRecord, MetricKind, PluginInfo, SharedHost,
    SpanGuard,
};
pub use outcome::Outcome;
pub use payload::Payload;
pub use plugin::{PluginInstance, PluginSpec, RuntimeLimits, check, load};
pub use runtime_kind::RuntimeKind;
