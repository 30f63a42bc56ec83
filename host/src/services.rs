//! The host's side of the bindings: [`HostApi`] implemented over the bus.
//!
//! Every runtime's `bus.publish`, `bus.request`, `log.*`, `telemetry.*` and
//! `host.*` end here, so the checks (valid topic, reserved `plughost.`
//! topics, the manifest's `publications`) and the log format are the same
//! for all. A request is published as a publish is, carrying a reply
//! subject, and its plugin thread waits for the reply in the bus's reply
//! registry; one that could never be answered (nothing subscribes, or the
//! requester itself does and would wait for itself) fails at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

    /// Whether application function `name` may be called by a shadow candidate.
    pub(crate) fn is_shadow_safe(&self, name: &str) -> bool {
        self.functions.is_shadow_safe(name)
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
        let map = self.publications.read().unwrap_or_else(|p| p.into_inner());
        check_publish(topic, map.get(plugin))
    }
}

/// Checks that a plugin whose `publications` are `allowed` (`None`:
/// anywhere) may publish on `topic`: a valid topic, not the host's own,
/// inside `allowed`.
pub(crate) fn check_publish(
    topic: &str,
    allowed: Option<&PatternSet>,
) -> Result<(), PublishRefused> {
    topic::validate_topic(topic)?;
    if crate::host_events::is_reserved(topic) {
        return Err(PublishRefused::Reserved(topic.to_owned()));
    }
    if let Some(allowed) = allowed.filter(|a| !a.matches(topic)) {
        let list: Vec<&str> = allowed.patterns().iter().map(|p| p.as_str()).collect();
        return Err(PublishRefused::Undeclared {
            topic: topic.to_owned(),
            publications: list.join(", "),
        });
    }
    Ok(())
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

/// Why a plugin's `bus.request` got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The request could not be published (as a publish is refused).
    #[error(transparent)]
    Refused(#[from] PublishRefused),
    /// The requesting plugin subscribes to the topic itself: its thread
    /// would wait for its own reply.
    #[error(
        "request on `{topic}`: this plugin subscribes to `{topic}` itself and cannot answer while it waits"
    )]
    SelfSubscribed {
        /// The topic.
        topic: String,
    },
    /// No plugin, application subscriber or cluster export takes the topic.
    #[error("request on `{topic}`: nothing subscribes to it")]
    NoSubscriber {
        /// The topic.
        topic: String,
    },
    /// No reply came in time.
    #[error("no reply on `{topic}` within {ms} ms")]
    Timeout {
        /// The topic.
        topic: String,
        /// How long the request waited.
        ms: u64,
    },
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

/// The event `plugin` publishes on `topic` while handling `cause`: it
/// carries the cause's correlation id and trace context.
fn event_from(plugin: &PluginInfo, topic: &str, payload: Payload, cause: Option<&Event>) -> Event {
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
    event
}

impl Services {
    /// `bus.request`: checks, publishes and waits up to `wait` for the
    /// first reply (see [`HostApi::request`]).
    fn request_reply(
        &self,
        plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
        wait: Duration,
    ) -> Result<Payload, RequestError> {
        self.check_topic(&plugin.name, topic)?;
        let name = plugin.name.as_str();
        if self
            .bus
            .route(name)
            .is_some_and(|own| own.patterns.matches(topic))
        {
            return Err(RequestError::SelfSubscribed {
                topic: topic.to_owned(),
            });
        }
        if !self.bus.has_subscriber(topic, Some(name)) && !self.bus.exports(topic) {
            return Err(RequestError::NoSubscriber {
                topic: topic.to_owned(),
            });
        }
        let mut event = event_from(plugin, topic, payload, cause);
        let (subject, waiter) = self.bus.expect_reply(&event.id);
        event.reply_to = Some(subject);
        self.bus
            .publish_blocking(event, Some(name))
            .map_err(PublishRefused::from)?;
        waiter.wait(wait).ok_or_else(|| RequestError::Timeout {
            topic: topic.to_owned(),
            ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

impl HostApi for Services {
    /// The wall clock, recorded for a shadow candidate when one watches.
    fn now_ms(&self, _plugin: &PluginInfo) -> i64 {
        let ms = plughost_bindings::host_api::wall_clock_ms();
        crate::rollout::record::clock(ms);
        ms
    }

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
        crate::rollout::record::publish(topic, || payload.clone());
        let event = event_from(plugin, topic, payload, cause);
        self.bus
            .publish_blocking(event, Some(&plugin.name))
            .map_err(|e| refused(e.into()))
    }

    fn request(
        &self,
        plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        cause: Option<&Event>,
        wait: Duration,
    ) -> Result<Payload, HostCallError> {
        refuse_abandoned(HostCall::Request)?;
        let answer = self.request_reply(plugin, topic, payload, cause, wait);
        if crate::rollout::record::is_on() {
            crate::rollout::record::request(match &answer {
                Ok(reply) => Ok(reply.value().clone()),
                Err(e) => Err(e.clone()),
            });
        }
        answer.map_err(|e| HostCallError::new(HostCall::Request, e))
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
        if trace::in_unsampled() {
            return Box::new(tracing::Span::none().entered());
        }
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

    /// A route for `plugin` subscribed to `patterns`.
    fn route(s: &Services, plugin: &str, patterns: &[&str]) -> Arc<crate::bus::Queue> {
        let queue = Arc::new(crate::bus::Queue::new(16, crate::manifest::Overflow::Block));
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect();
        s.bus.add_route(Arc::new(crate::bus::Route {
            plugin: plugin.into(),
            patterns: PatternSet::new(patterns),
            queue: queue.clone(),
            dropped: Default::default(),
            shared: false,
            split: None,
        }));
        queue
    }

    fn request_error(s: &Services, topic: &str, wait: Duration) -> RequestError {
        let e = s
            .request(&info(), topic, Payload::default(), None, wait)
            .unwrap_err();
        assert_eq!(e.call, HostCall::Request);
        e.source.downcast_ref::<RequestError>().unwrap().clone()
    }

    #[test]
    fn a_request_nobody_or_only_the_requester_could_answer_fails_at_once() {
        let s = services();
        let long = Duration::from_secs(60);
        let started = std::time::Instant::now();
        assert_eq!(
            request_error(&s, "q", long),
            RequestError::NoSubscriber { topic: "q".into() }
        );
        route(&s, "p", &["q.>"]);
        let e = request_error(&s, "q.a", long);
        assert_eq!(
            e,
            RequestError::SelfSubscribed {
                topic: "q.a".into()
            }
        );
        assert!(e.to_string().contains("subscribes to `q.a` itself"), "{e}");
        assert!(matches!(
            request_error(&s, "plughost.x", long),
            RequestError::Refused(PublishRefused::Reserved(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(10));
        // An application subscriber, or a topic the cluster exports, may answer.
        let _stream = s
            .bus
            .subscribe(PatternSet::new(vec![Pattern::parse("app").unwrap()]));
        let wait = Duration::from_millis(20);
        assert_eq!(
            request_error(&s, "app", wait),
            RequestError::Timeout {
                topic: "app".into(),
                ms: 20
            }
        );
        s.bus
            .set_outbox(Arc::new(crate::cluster::outbox::Outbox::new(
                PatternSet::new(vec![Pattern::parse("remote.>").unwrap()]),
                PatternSet::default(),
                8,
            )));
        assert!(s.bus.exports("remote.x") && !s.bus.exports("other"));
        assert!(matches!(
            request_error(&s, "remote.x", wait),
            RequestError::Timeout { .. }
        ));
        assert!(matches!(
            request_error(&s, "other", wait),
            RequestError::NoSubscriber { .. }
        ));
    }

    #[test]
    fn a_request_gets_the_first_reply_of_another_plugin() {
        let s = Arc::new(services());
        let queue = route(&s, "answerer", &["q"]);
        let bus = s.bus.clone();
        let answerer = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            let crate::bus::Pop::Event(d) = queue.pop(Some(deadline), true, || {}) else {
                panic!("no request came");
            };
            let reply_to = d
                .event
                .reply_to
                .clone()
                .expect("a request has a reply subject");
            assert!(reply_to.starts_with(&format!("_INBOX.{}.", bus.instance())));
            assert!(reply_to.ends_with(&d.event.id));
            let n = d.event.payload.value()["n"].as_i64().unwrap();
            bus.answer(&reply_to, Payload::from(serde_json::json!({"n": n + 1})));
            bus.answer(&reply_to, Payload::from(serde_json::json!({"n": 0})));
        });
        let cause = Event::new("in", Value::Null, "host");
        let reply = s
            .request(
                &info(),
                "q",
                Payload::from(serde_json::json!({"n": 41})),
                Some(&cause),
                Duration::from_secs(30),
            )
            .unwrap();
        answerer.join().unwrap();
        assert_eq!(reply.into_value(), serde_json::json!({"n": 42}));
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
