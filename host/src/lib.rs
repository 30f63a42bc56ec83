//! plughost: a host for plugins written in Lua, Rhai or Rust.
//!
//! The host finds plugin folders (a `plugin.yaml` and a script), runs each
//! plugin in an interpreter of its own on a thread of its own, and connects
//! them through an event bus. This crate is the product; the `plughost`
//! binary only parses its command line and calls [`cli`].
//!
//! # Example
//!
//! Build a host on a plugins directory, register a Rust function scripts can
//! call, start it, publish, read what the plugin published, shut down:
//!
//! ```
//! use std::time::Duration;
//! use futures::StreamExt;
//! use serde_json::json;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # std::fs::create_dir(dir.path().join("greeter"))?;
//! # std::fs::write(dir.path().join("greeter/plugin.yaml"),
//! #     "name: greeter\nversion: 1.0.0\nsubscriptions: [user.joined]\n")?;
//! # std::fs::write(dir.path().join("greeter/main.lua"),
//! #     "function on_event(e) bus.publish('user.greeted', {text = host.shout(e.payload.name)}) end")?;
//! # let plugins = dir.path();
//! tokio::runtime::Runtime::new()?.block_on(async {
//!     let host = plughost::Host::builder()
//!         .plugins_dir(plugins)
//!         .function("shout", |args| Ok(json!(args[0].as_str().unwrap_or("").to_uppercase())))
//!         .build()?;
//!     let mut greeted = host.subscribe("user.greeted")?;
//!     let report = host.start().await; // every `init` has run
//!     assert_eq!(report.started, ["greeter"]);
//!
//!     host.publish("user.joined", json!({"name": "ada"})).await?;
//!     let event = greeted.next().await.expect("the plugin publishes");
//!     assert_eq!(event.payload, json!({"text": "ADA"}));
//!
//!     let report = host.shutdown(Duration::from_secs(10)).await; // drains every queue
//!     assert!(report.undelivered.is_empty());
//!     Ok(())
//! })
//! # }
//! ```
//!
//! # Layout
//!
//! Pure logic, tested on its own:
//!
//! - [`manifest`]: `plugin.yaml` parsed and validated (its `config_schema`
//!   included), errors with line and column.
//! - [`topic`]: topic validation and `*` / `>` pattern matching.
//! - `deps`: dependency checks and start order.
//! - `delivery`: what follows a plugin's outcome (ack, retry, forward, dead letter).
//! - `supervisor::policy`: suspension after errors in a row, half-open trials,
//!   crash restarts and their intensity, with the clock passed in.
//! - `reload::events` (what a file-system event means for a save),
//!   `reload::settle` (when a folder is due) and `reload::plan` (what a
//!   change does).
//! - [`host_events`]: every `plughost.*` topic and its payload, defined once.
//! - [`cli::expect`]: `plughost test --expect`: output lines matched and aligned, the diff.
//! - `json`: payloads and events as JSON text and back, with no JSON tree.
//! - [`dead_letters`]: the bounded store of the last dead letters (SPEC §15);
//!   their replay sits beside it.
//!
//! Around it:
//!
//! - [`discovery`] walks the plugins directories; [`catalog`] reads every manifest and
//!   resolves runtimes, entries, duplicates and dependencies.
//! - `supervisor` owns every plugin's life: the registry of running plugins and the
//!   verbs (start, stop, swap, resume, fail) that reload, enable/disable, the admin
//!   endpoint and shutdown call. Its design note says how.
//! - `bus` routes events to each plugin's bounded queue and to subscribers,
//!   and knows when the host is idle.
//! - `actor` is the thread that owns one plugin's interpreter, carries out outcomes
//!   and supervises it (errors in a row, crashes).
//! - `services` implements the bindings' [`plughost_bindings::HostApi`]: publish checks,
//!   logs, metrics, registered functions.
//! - [`reload`] watches the plugins directories and asks the supervisor to swap
//!   plugins live.
//! - [`telemetry`] holds the OpenTelemetry side: host and script metrics (capped, read in
//!   process by [`Host::metrics_snapshot`]), `traceparent` in event headers, OTLP export.
//! - [`host`] ties it together: [`Host`] and [`HostBuilder`].
//! - [`admin`] serves the admin HTTP endpoint (`plughost run --admin`).
//! - [`config`] reads the optional host config, `plughost.yaml`.
//! - [`cluster`] joins hosts into one bus over NATS: its config section, an event
//!   as a NATS message and back (pure), the export buffer the bus feeds, the
//!   connection with its export and import tasks, shared plugins' queue groups and
//!   durable consumers, and the receipts of stored deliveries.
//! - [`rollout`] says what a rollout of a new plugin version is to its readers; the
//!   supervisor runs it.
//! - [`cli`] holds the commands of the binary.
//!
//! Only the embedding API is public: [`Host`], [`HostBuilder`], events and
//! subscriptions ([`Event`], [`EventStream`]), reports ([`StartReport`],
//! [`ShutdownReport`], [`Stats`]) and errors; the modules named without a
//! link are the crate's own.
//!
//! The runtimes themselves (Lua, Rhai and native) live in the `plughost-bindings` crate behind one
//! interface, [`plughost_bindings::PluginInstance`].
#![deny(missing_docs)]

pub(crate) mod actor;
pub mod admin;
pub(crate) mod bus;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dead_letters;
pub(crate) mod delivery;
pub(crate) mod deps;
pub mod discovery;
pub(crate) mod functions;
pub mod host;
pub mod host_events;
pub(crate) mod json;
pub mod manifest;
pub mod reload;
pub mod rollout;
pub(crate) mod services;
pub(crate) mod supervisor;
pub mod telemetry;
pub mod topic;

pub use actor::{Health, Stats};
pub use host::{
    EventStream, Host, HostBuilder, HostError, PublishError, ShutdownReport, StartReport,
};
pub use plughost_bindings::{Event, Outcome, RuntimeKind, ScriptError};
