//! The host's OpenTelemetry instruments, the scripts' metrics and their caps.
//!
//! Every [`Metrics`] owns its own `SdkMeterProvider` (never the global one,
//! so several hosts in one process keep apart) with one in-process reader,
//! the OpenTelemetry Prometheus exporter: [`Metrics::snapshot`] reads it as
//! OpenTelemetry data and [`Metrics::prometheus_text`] as Prometheus text
//! (the admin endpoint's `GET /metrics`), from the same aggregation. With
//! OTLP configured a periodic exporter is added to the same provider.
//!
//! Scripts choose their metric names and attributes, so they are capped
//! ([`Caps`]): a script cannot create an unbounded number of series by
//! accident. What is refused is counted on `plugin.telemetry.refused`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};
use opentelemetry::{KeyValue, Value as OtelValue};
use opentelemetry_prometheus::PrometheusExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, Pipeline, SdkMeterProvider, Temporality};
use plughost_bindings::{MetricKind, PluginInfo};
use serde_json::{Map, Value};

use super::topic_counts::TopicCounts;
use crate::bus::Bus;

/// Limits on what one plugin's scripts may create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// Distinct metric names per plugin.
    pub names_per_plugin: usize,
    /// Attributes per call.
    pub attributes_per_call: usize,
    /// Distinct values per attribute key, per metric.
    pub values_per_key: usize,
}

impl Default for Caps {
    fn default() -> Self {
        Caps {
            names_per_plugin: 64,
            attributes_per_call: 16,
            values_per_key: 32,
        }
    }
}

/// Why a script's metric value was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The plugin already has `names_per_plugin` metric names.
    TooManyNames,
    /// The call has more than `attributes_per_call` attributes.
    TooManyAttributes,
    /// The attribute key already has `values_per_key` values on this metric.
    TooManyValues(String),
}

impl Refusal {
    /// The `reason` attribute of `plugin.telemetry.refused`.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::TooManyNames => "names",
            Refusal::TooManyAttributes => "attributes",
            Refusal::TooManyValues(_) => "values",
        }
    }

    /// A message for the script.
    pub fn message(&self, name: &str, caps: &Caps) -> String {
        match self {
            Refusal::TooManyNames => format!(
                "metric `{name}` refused: a plugin may create at most {} metric names",
                caps.names_per_plugin
            ),
            Refusal::TooManyAttributes => format!(
                "metric `{name}` refused: at most {} attributes per call",
                caps.attributes_per_call
            ),
            Refusal::TooManyValues(key) => format!(
                "metric `{name}` refused: attribute `{key}` already has {} distinct values",
                caps.values_per_key
            ),
        }
    }
}

/// What one plugin's scripts created so far: metric name → attribute key → values.
#[derive(Debug, Default)]
pub struct CapState {
    names: HashMap<String, HashMap<String, HashSet<String>>>,
}

impl CapState {
    /// Admits one value of metric `name` with `attributes`, remembering new
    /// names and values, or says why it is refused (remembering nothing).
    pub fn admit(
        &mut self,
        caps: &Caps,
        name: &str,
        attributes: &[(String, String)],
    ) -> Result<(), Refusal> {
        if attributes.len() > caps.attributes_per_call {
            return Err(Refusal::TooManyAttributes);
        }
        if !self.names.contains_key(name) && self.names.len() >= caps.names_per_plugin {
            return Err(Refusal::TooManyNames);
        }
        if let Some(keys) = self.names.get(name) {
            for (k, v) in attributes {
                if let Some(values) = keys.get(k)
                    && !values.contains(v)
                    && values.len() >= caps.values_per_key
                {
                    return Err(Refusal::TooManyValues(k.clone()));
                }
            }
        }
        let keys = self.names.entry(name.to_owned()).or_default();
        for (k, v) in attributes {
            let values = keys.entry(k.clone()).or_default();
            if !values.contains(v) {
                values.insert(v.clone());
            }
        }
        Ok(())
    }
}

/// The attributes every metric and span of a plugin carries.
pub fn plugin_attributes(info: &PluginInfo) -> Vec<KeyValue> {
    vec![
        KeyValue::new("plugin.name", info.name.clone()),
        KeyValue::new("plugin.version", info.version.clone()),
        KeyValue::new("plugin.runtime", info.runtime.to_string()),
    ]
}

/// One data point read from the in-process reader.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricPoint {
    /// The metric's name (`plugin.messages`).
    pub name: String,
    /// Its attributes, as strings.
    pub attributes: BTreeMap<String, String>,
    /// The value: a sum's or gauge's value, a histogram's sum.
    pub value: f64,
    /// A histogram's count (1 for sums and gauges).
    pub count: u64,
}

impl MetricPoint {
    /// The attribute `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// A [`MetricReader`] sharing the Prometheus exporter with [`Metrics`]:
/// one pipeline serves both [`Metrics::snapshot`] and the Prometheus text,
/// so every measurement is aggregated once.
#[derive(Debug, Clone)]
struct SharedReader(Arc<PrometheusExporter>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

#[derive(Default)]
struct Scripts {
    caps: HashMap<String, CapState>,
    counters: HashMap<String, Counter<f64>>,
    gauges: HashMap<String, Gauge<f64>>,
    histograms: HashMap<String, Histogram<f64>>,
}

/// The host's meter provider and instruments.
pub struct Metrics {
    provider: SdkMeterProvider,
    reader: Arc<PrometheusExporter>,
    registry: prometheus::Registry,
    meter: Meter,
    caps: Caps,
    exporting: bool,
    enabled: bool,
    /// `plugin.init.duration_ms`
    pub init_duration: Histogram<f64>,
    /// `plugin.shutdown.duration_ms`
    pub shutdown_duration: Histogram<f64>,
    /// `plugin.message.processing_time_ms`
    pub processing_time: Histogram<f64>,
    /// `plugin.messages`, with `outcome`
    pub messages: Counter<u64>,
    /// `plugin.reloads`, with `result`
    pub reloads: Counter<u64>,
    /// `plugin.lifecycle.events`, with `event`
    pub lifecycle: Counter<u64>,
    /// `plugin.telemetry.refused`, with `reason`
    pub refused: Counter<u64>,
    scripts: Mutex<Scripts>,
    /// Each plugin's attributes, for the observable instruments.
    plugins: Arc<Mutex<HashMap<String, Arc<[KeyValue]>>>>,
    /// Each plugin's `plugin.queue.dropped` count, shared with its bus
    /// route; kept when the route goes (stop, reload, shutdown) so the
    /// count is still reported, and still monotonic, afterwards.
    dropped: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>>,
    /// `cluster.messages`, with `direction` and `message.topic`.
    cluster: Arc<TopicCounts>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// In-process metrics only.
    pub fn new(bus: &Arc<Bus>) -> Self {
        Self::with_exporter(bus, None)
    }

    /// Telemetry off: nothing is recorded, [`Metrics::snapshot`] is empty,
    /// and the workers open no delivery spans ([`crate::HostBuilder::telemetry`]).
    pub fn off(bus: &Arc<Bus>) -> Self {
        let mut m = Self::build(bus, None, false);
        m.enabled = false;
        m
    }

    /// In-process metrics, and `export` (an OTLP periodic reader) when given.
    pub fn with_exporter(
        bus: &Arc<Bus>,
        export: Option<
            opentelemetry_sdk::metrics::PeriodicReader<opentelemetry_otlp::MetricExporter>,
        >,
    ) -> Self {
        Self::build(bus, export, true)
    }

    fn build(
        bus: &Arc<Bus>,
        export: Option<
            opentelemetry_sdk::metrics::PeriodicReader<opentelemetry_otlp::MetricExporter>,
        >,
        in_process: bool,
    ) -> Self {
        let exporting = export.is_some();
        let registry = prometheus::Registry::new();
        // The SPEC §6 names end in their unit already (`…_ms`): no unit suffix.
        let reader = Arc::new(
            opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .without_units()
                .build()
                .expect("a new registry takes the exporter's collector"),
        );
        let mut builder = SdkMeterProvider::builder().with_resource(super::export::resource());
        if in_process {
            builder = builder.with_reader(SharedReader(reader.clone()));
        }
        if let Some(export) = export {
            builder = builder.with_reader(export);
        }
        let provider = builder.build();
        let meter = provider.meter("plughost");
        let plugins: Arc<Mutex<HashMap<String, Arc<[KeyValue]>>>> = Arc::default();
        let weak = Arc::downgrade(bus);
        let attrs = plugins.clone();
        meter
            .u64_observable_gauge("plugin.queue.depth")
            .with_description("Events waiting in a plugin's queue")
            .with_callback(move |o| {
                // Every known plugin: a stopped one (no route) has nothing queued.
                let Some(bus) = weak.upgrade() else { return };
                let routes = bus.routes();
                let attrs = attrs.lock().unwrap_or_else(|p| p.into_inner());
                for (name, a) in attrs.iter() {
                    let depth = routes
                        .iter()
                        .find(|r| &r.plugin == name)
                        .map_or(0, |r| r.queue.len());
                    o.observe(depth as u64, a);
                }
            })
            .build();
        let dropped: Arc<Mutex<HashMap<String, Arc<AtomicU64>>>> = Arc::default();
        let attrs = plugins.clone();
        let counts = dropped.clone();
        meter
            .u64_observable_counter("plugin.queue.dropped")
            .with_description("Events discarded by a plugin's overflow policy")
            .with_callback(move |o| {
                // Every known plugin, 0 when nothing was dropped, as for
                // `plugin.queue.depth`; the counts outlive the bus routes,
                // which are gone by the time the last export runs.
                let attrs = attrs.lock().unwrap_or_else(|p| p.into_inner());
                let counts = counts.lock().unwrap_or_else(|p| p.into_inner());
                for (name, a) in attrs.iter() {
                    let n = counts.get(name).map_or(0, |c| c.load(Ordering::Relaxed));
                    o.observe(n, a);
                }
            })
            .build();
        let cluster = Arc::new(TopicCounts::default());
        let counts = cluster.clone();
        meter
            .u64_observable_counter("cluster.messages")
            .with_description(
                "Events published to NATS (`out`) and received from it (`in`), by topic",
            )
            .with_callback(move |o| {
                for (direction, topic, n) in counts.snapshot() {
                    o.observe(
                        n,
                        &[
                            KeyValue::new("direction", direction.as_str()),
                            KeyValue::new("message.topic", topic),
                        ],
                    );
                }
            })
            .build();
        let ms = |name: &'static str, what: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("ms")
                .with_description(what)
                .build()
        };
        Metrics {
            init_duration: ms(
                "plugin.init.duration_ms",
                "Time to load a plugin and run init",
            ),
            shutdown_duration: ms(
                "plugin.shutdown.duration_ms",
                "Time of a plugin's shutdown hook",
            ),
            processing_time: ms(
                "plugin.message.processing_time_ms",
                "Time to handle one delivered event",
            ),
            messages: meter
                .u64_counter("plugin.messages")
                .with_description("Deliveries handled, by outcome")
                .build(),
            reloads: meter
                .u64_counter("plugin.reloads")
                .with_description("Reloads, by result")
                .build(),
            lifecycle: meter
                .u64_counter("plugin.lifecycle.events")
                .with_description("Plugins started, stopped, failed, reloaded")
                .build(),
            refused: meter
                .u64_counter("plugin.telemetry.refused")
                .with_description("Script metric values refused by the caps")
                .build(),
            provider,
            reader,
            registry,
            meter,
            caps: Caps::default(),
            exporting,
            enabled: true,
            scripts: Mutex::default(),
            plugins,
            dropped,
            cluster,
        }
    }

    /// The counts behind `cluster.messages`, for the cluster's tasks.
    pub(crate) fn cluster_counts(&self) -> Arc<TopicCounts> {
        self.cluster.clone()
    }

    /// Remembers a plugin's attributes (for its queue gauges); returns them.
    pub fn register(&self, info: &PluginInfo) -> Arc<[KeyValue]> {
        let attrs: Arc<[KeyValue]> = plugin_attributes(info).into();
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(info.name.clone(), attrs.clone());
        attrs
    }

    /// The counter of events `plugin`'s overflow policy discarded, for its
    /// bus route: the same one across stops, reloads and restarts.
    pub fn dropped_counter(&self, plugin: &str) -> Arc<AtomicU64> {
        self.dropped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(plugin.to_owned())
            .or_default()
            .clone()
    }

    /// The caps on what scripts create (metric attributes, and script span
    /// attributes too).
    pub fn caps(&self) -> Caps {
        self.caps
    }

    /// Whether telemetry is on (the default).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Forgets a plugin that could not start.
    pub fn unregister(&self, plugin: &str) {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(plugin);
    }

    /// The attributes of a registered plugin (just its name otherwise).
    pub fn attributes_of(&self, plugin: &str) -> Arc<[KeyValue]> {
        self.plugins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(plugin)
            .cloned()
            .unwrap_or_else(|| vec![KeyValue::new("plugin.name", plugin.to_owned())].into())
    }

    /// Counts a lifecycle event (`started`, `stopped`, `failed`, `reloaded`, `reload_failed`).
    pub fn lifecycle_event(&self, plugin: &str, event: &'static str) {
        let mut attrs = self.attributes_of(plugin).to_vec();
        attrs.push(KeyValue::new("event", event));
        self.lifecycle.add(1, &attrs);
    }

    /// Counts a reload with `result` (`ok` or `error`).
    pub fn reload(&self, plugin: &str, result: &'static str) {
        let mut attrs = self.attributes_of(plugin).to_vec();
        attrs.push(KeyValue::new("result", result));
        self.reloads.add(1, &attrs);
    }

    /// Records a script's metric value, within the caps.
    pub fn script(
        &self,
        plugin: &PluginInfo,
        kind: MetricKind,
        name: &str,
        value: f64,
        attributes: &Map<String, Value>,
    ) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let pairs: Vec<(String, String)> = attributes
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect();
        let mut scripts = self.scripts.lock().unwrap_or_else(|p| p.into_inner());
        let caps = self.caps;
        let admitted = scripts
            .caps
            .entry(plugin.name.clone())
            .or_default()
            .admit(&caps, name, &pairs);
        if let Err(refusal) = admitted {
            drop(scripts);
            let mut attrs = plugin_attributes(plugin);
            attrs.push(KeyValue::new("reason", refusal.reason()));
            self.refused.add(1, &attrs);
            return Err(refusal.message(name, &caps));
        }
        let mut attrs = plugin_attributes(plugin);
        attrs.extend(pairs.into_iter().map(|(k, v)| KeyValue::new(k, v)));
        let meter = &self.meter;
        match kind {
            MetricKind::Counter => {
                if value < 0.0 {
                    return Err(format!("counter `{name}`: value {value} is negative"));
                }
                scripts
                    .counters
                    .entry(name.to_owned())
                    .or_insert_with(|| meter.f64_counter(name.to_owned()).build())
                    .add(value, &attrs)
            }
            MetricKind::Gauge => scripts
                .gauges
                .entry(name.to_owned())
                .or_insert_with(|| meter.f64_gauge(name.to_owned()).build())
                .record(value, &attrs),
            MetricKind::Histogram => scripts
                .histograms
                .entry(name.to_owned())
                .or_insert_with(|| meter.f64_histogram(name.to_owned()).build())
                .record(value, &attrs),
        }
        Ok(())
    }

    /// Reads every metric in process now.
    pub fn snapshot(&self) -> Vec<MetricPoint> {
        if !self.enabled {
            return Vec::new();
        }
        let mut rm = ResourceMetrics::default();
        if self.reader.collect(&mut rm).is_err() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for scope in rm.scope_metrics() {
            for m in scope.metrics() {
                collect_points(m.name(), m.data(), &mut out);
            }
        }
        out
    }

    /// Every metric as Prometheus text (exposition format 0.0.4), through
    /// the OpenTelemetry Prometheus exporter: names with `_` for `.`,
    /// counters with `_total`, attributes as labels (`plugin_name`, …).
    /// Empty when telemetry is off.
    pub fn prometheus_text(&self) -> String {
        if !self.enabled {
            return String::new();
        }
        let families = self.registry.gather();
        let mut text = String::new();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut text) {
            tracing::warn!("metrics: cannot encode Prometheus text: {e}");
        }
        text
    }

    /// Whether an OTLP reader is attached.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is pending (OTLP); in-process metrics stay readable.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::debug!("metrics flush: {e}");
        }
    }
}

fn attrs_map<'a>(attrs: impl Iterator<Item = &'a KeyValue>) -> BTreeMap<String, String> {
    attrs
        .map(|kv| {
            let v = match &kv.value {
                OtelValue::String(s) => s.as_str().to_owned(),
                other => other.to_string(),
            };
            (kv.key.as_str().to_owned(), v)
        })
        .collect()
}

fn collect_points(name: &str, data: &AggregatedMetrics, out: &mut Vec<MetricPoint>) {
    macro_rules! points {
        ($data:expr, $conv:expr) => {
            match $data {
                MetricData::Sum(s) => {
                    for p in s.data_points() {
                        out.push(MetricPoint {
                            name: name.to_owned(),
                            attributes: attrs_map(p.attributes()),
                            value: $conv(p.value()),
                            count: 1,
                        });
                    }
                }
                MetricData::Gauge(g) => {
                    for p in g.data_points() {
                        out.push(MetricPoint {
                            name: name.to_owned(),
                            attributes: attrs_map(p.attributes()),
                            value: $conv(p.value()),
                            count: 1,
                        });
                    }
                }
                MetricData::Histogram(h) => {
                    for p in h.data_points() {
                        out.push(MetricPoint {
                            name: name.to_owned(),
                            attributes: attrs_map(p.attributes()),
                            value: $conv(p.sum()),
                            count: p.count(),
                        });
                    }
                }
                MetricData::ExponentialHistogram(_) => {}
            }
        };
    }
    match data {
        AggregatedMetrics::F64(d) => points!(d, |v: f64| v),
        AggregatedMetrics::U64(d) => points!(d, |v: u64| v as f64),
        AggregatedMetrics::I64(d) => points!(d, |v: i64| v as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn names_are_capped_per_plugin() {
        let caps = Caps {
            names_per_plugin: 2,
            ..Caps::default()
        };
        let mut s = CapState::default();
        assert!(s.admit(&caps, "a", &[]).is_ok());
        assert!(s.admit(&caps, "b", &[]).is_ok());
        assert!(s.admit(&caps, "a", &[]).is_ok(), "a known name is fine");
        assert_eq!(s.admit(&caps, "c", &[]), Err(Refusal::TooManyNames));
    }

    #[test]
    fn attributes_are_capped_per_call() {
        let caps = Caps {
            attributes_per_call: 1,
            ..Caps::default()
        };
        let mut s = CapState::default();
        assert!(s.admit(&caps, "a", &[kv("k", "v")]).is_ok());
        assert_eq!(
            s.admit(&caps, "a", &[kv("k", "v"), kv("j", "w")]),
            Err(Refusal::TooManyAttributes)
        );
    }

    #[test]
    fn values_are_capped_per_key_and_metric() {
        let caps = Caps {
            values_per_key: 2,
            ..Caps::default()
        };
        let mut s = CapState::default();
        assert!(s.admit(&caps, "a", &[kv("k", "1")]).is_ok());
        assert!(s.admit(&caps, "a", &[kv("k", "2")]).is_ok());
        assert!(s.admit(&caps, "a", &[kv("k", "1")]).is_ok(), "known value");
        assert_eq!(
            s.admit(&caps, "a", &[kv("k", "3")]),
            Err(Refusal::TooManyValues("k".into()))
        );
        assert!(s.admit(&caps, "b", &[kv("k", "3")]).is_ok(), "other metric");
        // A refused call remembers nothing.
        assert_eq!(
            s.admit(&caps, "a", &[kv("j", "x"), kv("k", "4")]),
            Err(Refusal::TooManyValues("k".into()))
        );
        assert_eq!(s.names["a"].get("j"), None);
    }
}
