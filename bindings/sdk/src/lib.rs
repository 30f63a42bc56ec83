//! plughost-sdk: write plughost plugins in Rust.
//!
//! A native plugin is a `cdylib` crate that implements [`Plugin`] (the same
//! hooks a script defines: `init`, `on_event`, `on_config`, `shutdown`, and
//! `on_timer` where a script passes a function to `timer.after`) and
//! exports it with [`export_plugin!`]. The host loads the library through a
//! versioned C ABI ([`abi`]) and offers it the same bindings a script gets,
//! through [`Host`]: publish, request, config, state, log, telemetry, timers,
//! registered functions. What `on_event` returns is an [`Outcome`], as for scripts.
//!
//! # Example
//!
//! ```
//! use plughost_sdk::{Event, Host, Outcome, Plugin, export_plugin};
//! use serde_json::json;
//!
//! #[derive(Default)]
//! struct Shout;
//!
//! impl Plugin for Shout {
//!     fn on_event(&mut self, host: &Host, event: &Event) -> Result<Outcome, String> {
//!         let Some(text) = event.payload["text"].as_str() else {
//!             return Ok(Outcome::drop("payload.text must be a string"));
//!         };
//!         host.publish("text.loud", json!({"text": text.to_uppercase()}))?;
//!         Ok(Outcome::Ack)
//!     }
//! }
//!
//! export_plugin!(Shout);
//! ```
//!
//! with, in `Cargo.toml`, `crate-type = ["cdylib"]` under `[lib]` and
//! `plughost-sdk` and `serde_json` as dependencies.
//!
//! # Layout
//!
//! - [`abi`]: the `#[repr(C)]` types and symbols of the boundary; the host uses it too.
//! - [`Plugin`] (here), [`Event`], [`Outcome`], [`ConfigChange`]: what an author writes.
//! - [`Host`] and [`TimerId`]: the host's bindings, called through the boundary.
//! - `export` and `panic` (private): the `extern "C"` glue and the panic guard.
//!
//! # Panics and limits
//!
//! A panic in a hook is caught on the plugin's side of the boundary and
//! becomes that call's error: in `on_event`, the event is dead-lettered with
//! the panic message and position, and the plugin keeps running. Plugins
//! must be built with `panic = "unwind"` (the default); `export_plugin!`
//! refuses to compile otherwise. The host cannot stop a native hook that
//! runs too long or allocates too much.
#![deny(missing_docs)]

pub mod abi;
mod event;
#[doc(hidden)]
pub mod export;
mod host;
mod outcome;
mod panic;
mod payload;

pub use event::{Event, Headers};
pub use host::{Host, Level, MetricKind, TimerId};
pub use outcome::{ConfigChange, Outcome};
pub use panic::fatal;
pub use payload::{EventPayload, Packed};
/// The packed payload format: its [`Writer`](packed::Writer),
/// [`Reader`](packed::Reader), serde [`to_vec`](packed::to_vec) and
/// [`from_slice`](packed::from_slice), [`validate`](packed::validate).
pub use plughost_packed as packed;
pub use plughost_packed::PayloadRef;
/// `serde`, for `#[derive(Serialize, Deserialize)]` on a plugin's own types
/// (with serde's `derive` feature in the plugin's `Cargo.toml`).
pub use serde;
/// The JSON values payloads, config and state are made of.
pub use serde_json::{self, Value};

/// A native plugin: the hooks the host calls, one at a time, on the
/// plugin's own thread.
///
/// The type must be `Default`: the host creates an instance with it when
/// the plugin loads, and again on each reload or restart. Keep data that
/// must survive those in [`Host::set_state`]; fields of `self` start afresh.
pub trait Plugin: 'static {
    /// Called once after load (and after each reload), before any event.
    /// An error stops the plugin from starting (or keeps the old version on a reload).
    fn init(&mut self, host: &Host) -> Result<(), String> {
        let _ = host;
        Ok(())
    }

    /// Called for each event matching the plugin's subscriptions. An `Err`
    /// (or a panic) dead-letters the event with the message.
    fn on_event(&mut self, host: &Host, event: &Event) -> Result<Outcome, String>;

    /// Called after the manifest's `config` changed, with the new config
    /// (which [`Host::config`] returns from now on). Return
    /// [`ConfigChange::Applied`] when the plugin took it into use; the
    /// default, [`ConfigChange::Restart`], restarts the plugin instead, as
    /// for a script without `on_config`.
    fn on_config(&mut self, host: &Host, config: &Value) -> Result<ConfigChange, String> {
        let _ = (host, config);
        Ok(ConfigChange::Restart)
    }

    /// Called when a timer set with [`Host::after`] or [`Host::every`] is
    /// due, with the id those returned; on the plugin's thread, between two
    /// events, never during another hook. An `Err` (or a panic) is logged as
    /// an error with its message (and a panic's position); the plugin, and
    /// a repeating timer, go on. There is no event: what the hook publishes
    /// carries no correlation id. The default does nothing.
    ///
    /// Timers belong to the instance that set them: a reload or a restart
    /// stops them (once the new instance's `init` succeeded), so a plugin
    /// sets the ones it needs again in `init`.
    ///
    /// # Example
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use plughost_sdk::{Event, Host, Outcome, Plugin, TimerId, export_plugin};
    /// use serde_json::json;
    ///
    /// #[derive(Default)]
    /// struct Heartbeat {
    ///     beat: Option<TimerId>,
    ///     beats: u64,
    /// }
    ///
    /// impl Plugin for Heartbeat {
    ///     fn init(&mut self, host: &Host) -> Result<(), String> {
    ///         self.beat = Some(host.every(Duration::from_secs(10)));
    ///         Ok(())
    ///     }
    ///
    ///     fn on_event(&mut self, _: &Host, _: &Event) -> Result<Outcome, String> {
    ///         Ok(Outcome::Ack)
    ///     }
    ///
    ///     fn on_timer(&mut self, host: &Host, timer: TimerId) -> Result<(), String> {
    ///         if Some(timer) == self.beat {
    ///             self.beats += 1;
    ///             host.publish("heartbeat", json!({"n": self.beats}))?;
    ///             if self.beats == 3 {
    ///                 host.cancel_timer(timer);
    ///             }
    ///         }
    ///         Ok(())
    ///     }
    /// }
    ///
    /// export_plugin!(Heartbeat);
    /// ```
    fn on_timer(&mut self, host: &Host, timer: TimerId) -> Result<(), String> {
        let _ = (host, timer);
        Ok(())
    }

    /// Called before the plugin stops: host shutdown, unload, or a reload
    /// replacing it.
    fn shutdown(&mut self, host: &Host) -> Result<(), String> {
        let _ = host;
        Ok(())
    }
}

/// Exports a [`Plugin`] type (which must also be `Default`) as the library's
/// plughost plugin: defines `plughost_abi_version`, `plughost_sdk_version`
/// and `plughost_plugin_v1`. Use it once per library.
///
/// Compiling it with `panic = "abort"` is an error: a panic could then not
/// be caught and would abort the host.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(panic = "abort")]
        compile_error!(
            "plughost plugins must be built with `panic = \"unwind\"`: with `panic = \"abort\"` a panic in the plugin would abort the host"
        );

        /// The plughost ABI version this library was built with.
        #[unsafe(no_mangle)]
        pub extern "C" fn plughost_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// The plughost-sdk version this library was built with (NUL-terminated).
        #[unsafe(no_mangle)]
        pub extern "C" fn plughost_sdk_version() -> *const ::std::ffi::c_char {
            $crate::abi::SDK_VERSION_NUL.as_ptr().cast()
        }

        /// The plugin's hooks.
        #[unsafe(no_mangle)]
        pub extern "C" fn plughost_plugin_v1() -> *const $crate::abi::PluginVTable {
            static VTABLE: $crate::abi::PluginVTable = $crate::export::vtable::<$plugin>();
            &VTABLE
        }
    };
}
