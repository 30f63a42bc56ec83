//! The services the host offers to a running plugin, whatever its runtime.
//!
//! A runtime's bindings (`bus.publish`, `log.info`, `telemetry.counter`, the
//! application's registered functions …) are thin adapters that convert
//! script values and call this trait. The host implements it once, so every
//! runtime publishes, logs and counts the same way.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::{Event, Payload, RuntimeKind};

/// Who a plugin is: carried by every log line, span and metric it produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's unique name.
    pub name: String,
    /// Its semver version, as written in the manifest.
    pub version: String,
    /// Which runtime runs it.
    pub runtime: RuntimeKind,
}

/// Severity of a script's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// `log.trace`
    Trace,
    /// `log.debug` (`log::dbg` in Rhai)
    Debug,
    /// `log.info`, and `print`
    Info,
    /// `log.warn`
    Warn,
    /// `log.error`
    Error,
}

/// One log line from a script.
#[derive(Debug, Clone)]
pub struct LogRecord<'a> {
    /// Severity.
    pub level: LogLevel,
    /// The message.
    pub message: &'a str,
    /// Structured fields given as the second argument.
    pub fields: Option<&'a Map<String, Value>>,
    /// Script file of the call, when known.
    pub file: Option<&'a str>,
    /// Line of the call, when known.
    pub line: Option<usize>,
}

/// The kind of a script metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic sum (`telemetry.counter`).
    Counter,
    /// Last value (`telemetry.gauge`).
    Gauge,
    /// Distribution (`telemetry.histogram`).
    Histogram,
}

/// Which call into the host was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostCall {
    /// `bus.publish` (or a forward).
    Publish,
    /// `telemetry.counter/gauge/histogram`.
    Metric,
    /// An application function (`host.NAME(...)`).
    Function,
    /// `bus.request`.
    Request,
}

/// Why the host refused a plugin's call into it. The host's own error is
/// kept as the source (downcast it to the host's type); a runtime turns
/// the message into a script error at the call's position.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct HostCallError {
    /// Which call.
    pub call: HostCall,
    /// The host's error.
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl HostCallError {
    /// A refusal of `call` because of `source`.
    pub fn new(
        call: HostCall,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        HostCallError {
            call,
            source: source.into(),
        }
    }
}

/// A guard that keeps a script span open until dropped.
pub type SpanGuard = Box<dyn std::any::Any>;

/// The host as a plugin sees it. Implemented by the host; called by runtimes.
pub trait HostApi: Send + Sync + 'static {
    /// Publishes `payload` on `topic` in `plugin`'s name. `cause` is the event
    /// being handled, whose correlation id the new event inherits. Returns the
    /// new event's id, or why not (the topic is invalid or outside the
    /// plugin's `publications`, the bus refused it).
    fn publish(
        &self,
        plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
    ) -> Result<String, HostCallError>;

    /// Publishes a request: `payload` on `topic` in `plugin`'s name, as
    /// [`HostApi::publish`] does, then blocks the calling (plugin) thread
    /// until the first reply or until `wait` has passed. Returns the reply's
    /// payload, or why not: the publish was refused, the plugin itself
    /// subscribes to `topic` (it would wait for itself), nothing subscribes,
    /// or no reply came in time. The runtime bounds `wait` by what is left
    /// of the hook's time limit.
    fn request(
        &self,
        plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
        wait: std::time::Duration,
    ) -> Result<Payload, HostCallError>;

    /// Records a log line of the plugin.
    fn log(&self, plugin: &PluginInfo, record: LogRecord<'_>);

    /// Records a metric value of the plugin. Fails when the name or
    /// attributes are refused (bad or too many names).
    fn metric(
        &self,
        plugin: &PluginInfo,
        kind: MetricKind,
        name: &str,
        value: f64,
        attributes: &Map<String, Value>,
    ) -> Result<(), HostCallError>;

    /// Opens a child span of the current event's span, closed when the guard drops.
    fn span(
        &self,
        plugin: &PluginInfo,
        name: &str,
        attributes: &Map<String, Value>,
        cause: Option<&Event>,
    ) -> SpanGuard;

    /// The names of the application's registered functions, callable from
    /// scripts as `host.NAME(...)` (Lua) or `host::NAME(...)` (Rhai).
    fn function_names(&self) -> Vec<String>;

    /// Calls a registered function with JSON arguments.
    fn call_function(
        &self,
        plugin: &PluginInfo,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, HostCallError>;

    /// The wall clock as `time.now_ms()` gives it to `plugin`: milliseconds
    /// since the Unix epoch. The host records what the running version read
    /// while a shadow candidate watches, and the candidate's host answers
    /// the same readings, so a comparison does not differ by the clock.
    fn now_ms(&self, plugin: &PluginInfo) -> i64 {
        let _ = plugin;
        wall_clock_ms()
    }
}

/// The wall clock: milliseconds since the Unix epoch (what
/// [`HostApi::now_ms`] answers unless a host replays readings).
pub fn wall_clock_ms() -> i64 {
    crate::helpers::time::now_ms()
}

/// A shared handle to the host services.
pub type SharedHost = Arc<dyn HostApi>;
