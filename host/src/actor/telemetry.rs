//! A plugin's per-delivery telemetry: the delivery span and its per-topic
//! instruments (`plugin.message.processing_time_ms`, `plugin.messages` by
//! outcome), bound once per topic so a delivery records without hashing
//! attribute sets.

use std::collections::HashMap;
use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram};
use tracing::field::Empty;

use crate::catalog::PluginDef;
use crate::delivery::Action;
use crate::telemetry::{Metrics, sampler, trace};

/// One topic's per-event instruments, bound to their attributes once (so a
/// delivery records without hashing attribute sets).
struct TopicInstruments {
    /// `plugin.message.processing_time_ms` with the plugin's attributes and `message.topic`.
    processing: BoundHistogram<f64>,
    /// `plugin.messages` with the same and each `outcome`.
    messages: [BoundCounter<u64>; Action::NAMES.len()],
}

/// Topics a worker keeps attribute sets for, before starting over.
const TOPIC_CACHE: usize = 1024;

/// A worker's instruments and its plugin's attributes.
pub(super) struct Telemetry<'a> {
    metrics: &'a Metrics,
    plugin: Arc<[KeyValue]>,
    name: String,
    version: String,
    runtime: &'static str,
    topics: HashMap<String, TopicInstruments>,
}

impl<'a> Telemetry<'a> {
    /// The instruments of `def`.
    pub(super) fn new(metrics: &'a Metrics, def: &PluginDef) -> Self {
        Telemetry {
            metrics,
            plugin: metrics.attributes_of(&def.manifest.name),
            name: def.manifest.name.clone(),
            version: def.manifest.version.to_string(),
            runtime: def.runtime.as_str(),
            topics: HashMap::new(),
        }
    }

    /// The delivery span of `event` (none with telemetry off, none either
    /// when the host's sampler drops an event with a trace context: the
    /// decision is taken before any span is paid for, and the context goes
    /// on unsampled, see [`trace::enter_unsampled`]).
    pub(super) fn span(&self, event: &plughost_bindings::Event) -> tracing::Span {
        trace::leave_unsampled();
        if !self.metrics.enabled() {
            return tracing::Span::none();
        }
        // Without a parent, the tracer decides on the trace id it draws.
        // The header is parsed once, for the decision and the parent both.
        let parent = match sampler::installed() {
            Some(sampling) => {
                let parent = trace::extract_with_text(&event.headers);
                if let Some((text, sc)) = &parent
                    && !sampling.samples(Some(sc), sc.trace_id())
                {
                    trace::enter_unsampled(text, sc);
                    return tracing::Span::none();
                }
                parent.map(|(_, sc)| sc)
            }
            // Read below, only when the span records.
            None => None,
        };
        let span = tracing::info_span!(
            target: "plughost::delivery",
            "plugin.event",
            plugin.name = self.name.as_str(),
            plugin.version = self.version.as_str(),
            plugin.runtime = self.runtime,
            message.topic = event.topic.as_str(),
            message.id = event.id.as_str(),
            outcome = Empty,
            error = Empty,
            otel.status_code = Empty,
        );
        if !span.is_disabled()
            && let Some(parent) = parent.or_else(|| trace::extract(&event.headers))
        {
            trace::set_parent(&span, parent);
        }
        span
    }

    /// Records one delivery whose action was `Action::NAMES[outcome]`.
    pub(super) fn record(&mut self, topic: &str, elapsed_ms: f64, outcome: usize) {
        trace::leave_unsampled();
        if !self.metrics.enabled() {
            return;
        }
        if let Some(t) = self.topics.get(topic) {
            t.processing.record(elapsed_ms);
            t.messages[outcome].add(1);
            return;
        }
        if self.topics.len() >= TOPIC_CACHE {
            self.topics.clear();
        }
        let mut base = self.plugin.to_vec();
        base.push(KeyValue::new("message.topic", topic.to_owned()));
        let metrics = self.metrics;
        let t = TopicInstruments {
            processing: metrics.processing_time.bind(&base),
            messages: Action::NAMES.map(|o| {
                let mut attrs = base.clone();
                attrs.push(KeyValue::new("outcome", o));
                metrics.messages.bind(&attrs)
            }),
        };
        t.processing.record(elapsed_ms);
        t.messages[outcome].add(1);
        self.topics.insert(topic.to_owned(), t);
    }
}
