//! The host's side of the bindings: [`HostApi`] implemented over the bus.
//!
//! Every runtime's `bus.publish`, `log.*`, `telemetry.*` and `host.*` end
//! here, so the checks (valid topic, reserved `plughost.` topics, the
//! manifest's `publications`) and the log format are the same for all.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use plughost_bindings::{
    Event, HostApi, HostCall, HostCallError, LogLevel, LogRecord, MetricKind, Payload, PluginInfo,
    SpanGuard,
};
use serde_json::{Map, Value};

use crate::bus::Bus;
use crate::functions::Functions;
use crate::telemetry::Metrics;
use crate::telemetry::trace;
use crate::topic::{self, PatternSet};

pub use crate::host_events::HOST_TOPIC_PREFIX;

/// The host services shared by every plugin.
#[derive(Debug)]
pub struct Services {
    bus: Arc<Bus>,
    functions: Functions,
    metrics: Arc<Metrics>,
    /// Each plugin's `publications`, when it declared them.
    publications: RwLock<HashMap<String, PatternSet>>,
}

impl Services {
    /// Services over `bus` with the application's `functions`, recording on `metrics`.
    pub fn new(bus: Arc<Bus>, functions: Functions, metrics: Arc<Metrics>) -> Self {
        Services {
            bus,
            functions,
            metrics,
            publications: RwLock::default(),
        }
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sets (or clears) the topics a plugin may publish on.
    pub fn set_publications(&self, plugin: &str, allowed: Option<PatternSet>) {
        let mut map = self.publications.write().unwrap_or_else(|p| p.into_inner());
        match allowed {
            Some(set) => map.insert(plugin.to_owned(), set),
            None => map.remove(plugin),
        };
    }

    /// Checks that `plugin` may publish on `topic`.
    pub fn check_topic(&self, plugin: &str, topic: &str) -> Result<(), PublishRefused> {
        topic::validate_topic(topic)?;
        if crate::host_events::is_reserved(topic) {
            return Err(PublishRefused::Reserved(topic.to_owned()));
        }
        let map = self.publications.read().unwrap_or_else(|p| p.into_inner());
        if let Some(allowed) = map.get(plugin).filter(|a| !a.matches(topic)) {
            let list: Vec<&str> = allowed.patterns().iter().map(|p| p.as_str()).collect();
            return Err(PublishRefused::Undeclared {
                topic: topic.to_owned(),
                publications: list.join(", "),
            });
        }
        Ok(())
    }
}

/// A call from a plugin thread whose hook ran past its time limit and was
/// abandoned: its event was dead-lettered and another thread runs the
/// plugin, so nothing this thread asks takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the hook ran past its time limit and was abandoned: this call is refused")]
pub struct Abandoned;

/// Refuses `call` from an abandoned plugin thread.
fn refuse_abandoned(call: HostCall) -> Result<(), HostCallError> {
    if crate::actor::this_thread_abandoned() {
        return Err(HostCallError::new(call, Abandoned));
    }
    Ok(())
}

/// Why a script's metric was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricRefused {
    /// The name is not a metric name.
    #[error(
        "metric name `{0}`: use 1 to 128 letters, digits, `.`, `_` or `-`, starting with a letter"
    )]
    Name(String),
    /// The value is NaN or infinite.
    #[error("metric `{name}`: value {value} is not finite")]
    NotFinite {
        /// The metric.
        name: String,
        /// The value.
        value: f64,
    },
    /// A cap on the plugin's metrics or attributes: why.
    #[error("{0}")]
    Capped(String),
}

/// Why a plugin's publish (`bus.publish`, `outcome.forward`) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefused {
    /// The topic is malformed or has wildcards.
    #[error(transparent)]
    Topic(#[from] topic::TopicError),
    /// The topic is the host's own.
    #[error("topic `{0}` is reserved: topics under `plughost.` are the host's")]
    Reserved(String),
    /// The topic is outside the plugin's `publications`.
    #[error("topic `{topic}` is outside this plugin's publications ({publications})")]
    Undeclared {
        /// The topic.
        topic: String,
        /// The plugin's publications, as written.
        publications: String,
    },
    /// The bus refused it (its own queue full, too many hops).
    #[error(transparent)]
    Bus(#[from] crate::bus::Refused),
}

/// The span attribute of a script's attribute value: strings, integers,
/// floats and booleans as they are, anything else as JSON text.
fn span_value(v: &Value) -> opentelemetry::Value {
    match v {
        Value::String(s) => s.clone().into(),
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.into(),
            (None, Some(f)) => f.into(),
            (None, None) => n.to_string().into(),
        },
        other => other.to_string().into(),
    }
}

/// Sets each of a script span's `attributes` as its own span attribute:
/// at most `cap` of them (in key order), never one of the host's own
/// (`plugin.*`, `message.*`); how many were left out goes in
/// `plugin.attributes_dropped`.
fn span_attributes(span: &tracing::Span, attributes: &Map<String, Value>, cap: usize) {
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let mut set = 0usize;
    let mut dropped = 0i64;
    for (k, v) in attributes {
        let reserved =
            k.starts_with("plugin.") || k.starts_with("message.") || k.starts_with("otel.");
        if reserved || set >= cap {
            dropped += 1;
            continue;
        }
        span.set_attribute(k.clone(), span_value(v));
        set += 1;
    }
    if dropped > 0 {
        span.set_attribute("plugin.attributes_dropped", dropped);
    }
}

impl HostApi for Services {
    fn publish(
        &self,
        plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
    ) -> Result<String, HostCallError> {
        refuse_abandoned(HostCall::Publish)?;
        let refused = |e: PublishRefused| HostCallError::new(HostCall::Publish, e);
        self.check_topic(&plugin.name, topic).map_err(refused)?;
        let mut event = match cause {
            Some(c) => c.caused(topic, payload, plugin.name.as_str()),
            None => Event::new(topic, payload, plugin.name.as_str()),
        };
        trace::inject_current(&mut event.headers);
        // Not exporting, the delivery span has no trace context of its own:
        // the consequence stays in the cause's trace (as a sibling).
        if let Some(tp) = cause.and_then(|c| c.headers.get(trace::TRACEPARENT))
            && !event.headers.contains_key(trace::TRACEPARENT)
        {
            event
                .headers
                .insert(trace::TRACEPARENT.to_owned(), tp.clone());
        }
        self.bus
            .publish_blocking(event, Some(&plugin.name))
            .map_err(|e| refused(e.into()))
    }

    fn log(&self, plugin: &PluginInfo, r: LogRecord<'_>) {
        let at = match (r.file, r.line) {
            (Some(f), Some(l)) => format!("{f}:{l}"),
            (Some(f), None) => f.to_owned(),
            _ => String::new(),
        };
        let fields = r.fields.map(|f| Value::Object(f.clone()).to_string());
        macro_rules! emit {
            ($level:expr) => {
                match &fields {
                    Some(fields) => tracing::event!(
                        target: "plughost::plugin",
                        $level,
                        plugin = %plugin.name,
                        at,
                        fields = %fields,
                        "{}",
                        r.message
                    ),
                    None => tracing::event!(
                        target: "plughost::plugin",
                        $level,
                        plugin = %plugin.name,
                        at,
                        "{}",
                        r.message
                    ),
                }
            };
        }
        match r.level {
            LogLevel::Trace => emit!(tracing::Level::TRACE),
            LogLevel::Debug => emit!(tracing::Level::DEBUG),
            LogLevel::Info => emit!(tracing::Level::INFO),
            LogLevel::Warn => emit!(tracing::Level::WARN),
            LogLevel::Error => emit!(tracing::Level::ERROR),
        }
    }

    fn metric(
        &self,
        plugin: &PluginInfo,
        kind: MetricKind,
        name: &str,
        value: f64,
        attributes: &Map<String, Value>,
    ) -> Result<(), HostCallError> {
        refuse_abandoned(HostCall::Metric)?;
        let refused = |e: MetricRefused| HostCallError::new(HostCall::Metric, e);
        if !name.starts_with(|c: char| c.is_ascii_alphabetic())
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(refused(MetricRefused::Name(name.to_owned())));
        }
        if !value.is_finite() {
            return Err(refused(MetricRefused::NotFinite {
                name: name.to_owned(),
                value,
            }));
        }
        self.metrics
            .script(plugin, kind, name, value, attributes)
            .map_err(|e| refused(MetricRefused::Capped(e)))
    }

    fn span(
        &self,
        plugin: &PluginInfo,
        name: &str,
        attributes: &Map<String, Value>,
        cause: Option<&Event>,
    ) -> SpanGuard {
        let span = tracing::info_span!(
            target: "plughost::plugin",
            "script_span",
            otel.name = name,
            plugin.name = %plugin.name,
            plugin.version = %plugin.version,
            plugin.runtime = %plugin.runtime,
            message.topic = cause.map(|c| c.topic.as_str()).unwrap_or(""),
            message.id = cause.map(|c| c.id.as_str()).unwrap_or(""),
        );
        if !span.is_disabled() {
            span_attributes(&span, attributes, self.metrics.caps().attributes_per_call);
        }
        Box::new(span.entered())
    }

    fn function_names(&self) -> Vec<String> {
        self.functions.names()
    }

    fn call_function(
        &self,
        _plugin: &PluginInfo,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, HostCallError> {
        refuse_abandoned(HostCall::Function)?;
        self.functions
            .call(name, args)
            .map_err(|e| HostCallError::new(HostCall::Function, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::Pattern;

    fn services() -> Services {
        let bus = Arc::new(Bus::new());
        let metrics = Arc::new(Metrics::off(&bus));
        Services::new(bus, Functions::default(), metrics)
    }

    fn info() -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            runtime: plughost_bindings::RuntimeKind::Lua,
        }
    }

    /// The bindings get the host's own error, typed, as the source.
    #[test]
    fn a_refused_publish_carries_the_hosts_reason() {
        let s = services();
        let e = s
            .publish(&info(), "plughost.plugin.started", Payload::default(), None)
            .unwrap_err();
        assert_eq!(e.call, HostCall::Publish);
        assert_eq!(
            e.source.downcast_ref::<PublishRefused>(),
            Some(&PublishRefused::Reserved("plughost.plugin.started".into()))
        );
        s.set_publications(
            "p",
            Some(PatternSet::new(vec![Pattern::parse("out.*").unwrap()])),
        );
        let e = s
            .publish(&info(), "elsewhere", Payload::default(), None)
            .unwrap_err();
        assert!(matches!(
            e.source.downcast_ref::<PublishRefused>(),
            Some(PublishRefused::Undeclared { .. })
        ));
        assert!(
            e.to_string()
                .contains("outside this plugin's publications (out.*)")
        );
    }

    #[test]
    fn refused_metrics_and_functions_say_why() {
        let s = services();
        let e = s
            .metric(&info(), MetricKind::Counter, "1bad", 1.0, &Map::new())
            .unwrap_err();
        assert_eq!(e.call, HostCall::Metric);
        assert!(matches!(
            e.source.downcast_ref::<MetricRefused>(),
            Some(MetricRefused::Name(_))
        ));
        let e = s.call_function(&info(), "nope", Vec::new()).unwrap_err();
        assert_eq!(
            e.source.downcast_ref::<crate::functions::FunctionError>(),
            Some(&crate::functions::FunctionError::Unknown("nope".into()))
        );
    }
}
