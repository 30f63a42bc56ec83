//! The host: plugins discovered, started in dependency order, connected by
//! the bus, and shut down draining every queue.
//!
//! [`HostBuilder`] collects plugins directories and the application's Rust
//! functions; [`Host::start`] starts every startable plugin (each `init` has
//! run when it returns); [`Host::publish`] and [`Host::subscribe`] talk to
//! the bus; [`Host::shutdown`] drains the queues for up to a deadline, runs
//! the `shutdown` hooks, and reports what was left undelivered.
//! [`HostBuilder::cluster`] joins a cluster over NATS (see `cluster`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plughost_bindings::Event;
use serde_json::Value;

use crate::actor::Stats;
use crate::bus::Bus;
pub use crate::bus::EventStream;
use crate::catalog::Catalog;
use crate::cluster::{Cluster, ClusterStatus};
use crate::discovery::DiscoveryError;
use crate::functions::{self, Functions, HostFunction};
use crate::host_events::{FailReason, HostEvent};
use crate::reload::LiveState;
use crate::services::Services;
pub use crate::services::{PublishRefused, RequestError};
use crate::supervisor::Registry;
use crate::telemetry::{MetricPoint, Metrics, trace};
use crate::topic::{self, Pattern, PatternSet, TopicError};

/// The default time [`Host::shutdown`] waits for queues to drain.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown gives the cluster's last exports.
const CLUSTER_CLOSE: Duration = Duration::from_secs(2);

/// Why a host could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// A plugins directory is missing or unreadable.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A registered function's name is not an identifier.
    #[error("host function name `{0}` must be an identifier (letters, digits, `_`)")]
    FunctionName(String),
}

/// Why an event could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The topic is malformed or has wildcards.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The topic is under `plughost.`.
    #[error("topic `{0}` is reserved: topics under `plughost.` are the host's")]
    Reserved(String),
}

/// Builds a [`Host`].
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let host = plughost::Host::builder()
///     .plugins_dir("plugins")
///     .function("shout", |args| Ok(serde_json::json!(args[0].as_str().unwrap_or("").to_uppercase())))
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct HostBuilder {
    dirs: Vec<PathBuf>,
    functions: Functions,
    bad_function: Option<String>,
    metric_export: Option<MetricExport>,
    telemetry_off: bool,
    standalone: bool,
    cluster: Option<crate::cluster::ClusterConfig>,
}

type MetricExport = opentelemetry_sdk::metrics::PeriodicReader<opentelemetry_otlp::MetricExporter>;

impl HostBuilder {
    /// Adds a plugins directory (searched recursively).
    pub fn plugins_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dirs.push(dir.into());
        self
    }

    /// Adds several plugins directories.
    pub fn plugins_dirs(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.dirs.extend(dirs);
        self
    }

    /// Registers a Rust function scripts can call as `host.NAME(...)`.
    pub fn function<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Vec<Value>) -> Result<Value, String> + Send + Sync + 'static,
    {
        if !functions::valid_name(name) {
            self.bad_function.get_or_insert_with(|| name.to_owned());
        }
        let f: HostFunction = Arc::new(f);
        self.functions.insert(name.to_owned(), f);
        self
    }

    /// Registers a Rust function scripts can call as `host.NAME(...)`, that
    /// has no effect on the world (a lookup, a computation): a shadow
    /// candidate (SPEC §13) may call it too, where any other function is
    /// refused to it so that nothing is done twice.
    pub fn shadow_safe_function<F>(mut self, name: &str, f: F) -> Self
    where
        F: Fn(Vec<Value>) -> Result<Value, String> + Send + Sync + 'static,
    {
        if !functions::valid_name(name) {
            self.bad_function.get_or_insert_with(|| name.to_owned());
        }
        let f: HostFunction = Arc::new(f);
        self.functions.insert_shadow_safe(name.to_owned(), f);
        self
    }

    /// Exports the host's metrics through `reader` too (see
    /// [`crate::telemetry::export::Export::take_metric_reader`]); without it
    /// metrics stay in process ([`Host::metrics_snapshot`]).
    pub fn metric_export(mut self, reader: MetricExport) -> Self {
        self.metric_export = Some(reader);
        self
    }

    /// Turns telemetry on (the default) or off. Off, the host records no
    /// metrics ([`Host::metrics_snapshot`] is empty, scripts' `telemetry.*`
    /// metrics are accepted and ignored), opens no delivery span per event
    /// and adds no `traceparent` to the events it publishes; a metric
    /// export given to [`HostBuilder::metric_export`] is ignored.
    pub fn telemetry(mut self, on: bool) -> Self {
        self.telemetry_off = !on;
        self
    }

    /// Standalone mode (off by default): each directory given is one plugin
    /// folder, run in isolation, as `plughost test` does. Nothing is searched
    /// below it, `enabled: false` is ignored and `dependencies` are not
    /// resolved (see [`Catalog::load_standalone`]). Not meant for
    /// [`Host::watch`].
    pub fn standalone(mut self, on: bool) -> Self {
        self.standalone = on;
        self
    }

    /// Joins the cluster of `config` (SPEC §14): exported local events are
    /// published to NATS, imported ones delivered here. The connection is
    /// made by [`Host::start`], in the background: an unreachable server is
    /// a warning and a retry, and local work never waits for NATS.
    pub fn cluster(mut self, config: crate::cluster::ClusterConfig) -> Self {
        self.cluster = Some(config);
        self
    }

    /// Discovers the plugins. Plugin errors do not fail the build: they are
    /// in [`Host::catalog`] and those plugins are not started.
    pub fn build(self) -> Result<Host, HostError> {
        if let Some(name) = self.bad_function {
            return Err(HostError::FunctionName(name));
        }
        let catalog = if self.standalone {
            Catalog::load_standalone(&self.dirs)?
        } else {
            Catalog::load(&self.dirs)?
        };
        let bus = Arc::new(Bus::new());
        let metrics = Arc::new(if self.telemetry_off {
            Metrics::off(&bus)
        } else {
            Metrics::with_exporter(&bus, self.metric_export)
        });
        let topics = metrics.cluster_counts();
        let services = Arc::new(Services::new(bus.clone(), self.functions, metrics));
        let known = catalog.entries.iter().map(|e| e.dir.clone()).collect();
        let cluster = self.cluster.map(|c| Cluster::new(c, &bus, topics));
        Ok(Host {
            inner: Arc::new(Inner {
                catalog,
                roots: self.dirs,
                bus,
                services,
                plugins: Registry::default(),
                known: Mutex::new(known),
                live: LiveState::default(),
                cluster,
            }),
        })
    }
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) catalog: Catalog,
    pub(crate) roots: Vec<PathBuf>,
    pub(crate) bus: Arc<Bus>,
    pub(crate) services: Arc<Services>,
    /// The running plugins: the supervisor's, changed only by its verbs.
    pub(crate) plugins: Registry,
    /// Every plugin folder the host knows of: discovered, loaded or failed.
    pub(crate) known: Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Operators' enables and disables, own manifest writes, reload history.
    pub(crate) live: LiveState,
    /// The cluster, when one is configured.
    pub(crate) cluster: Option<Cluster>,
}

/// A plugin host. Cheap to clone; clones share the same plugins and bus.
#[derive(Debug, Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

/// What [`Host::start`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartReport {
    /// Plugins running, in start order.
    pub started: Vec<String>,
    /// Plugins that could not start (refused by the catalog, or failed to
    /// load or `init`), with the error.
    pub failed: Vec<(String, String)>,
}

/// What [`Host::shutdown`] left behind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Ids of events still queued (or waiting for a retry) at the deadline, by plugin.
    pub undelivered: Vec<(String, String)>,
    /// Whether every queue drained before the deadline.
    pub drained: bool,
}

impl Host {
    /// A builder.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// The discovered plugins and their errors.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Starts every startable plugin in dependency order and runs its `init`.
    ///
    /// Every plugin's queue is on the bus before the first `init`, so events
    /// published by an early plugin's `init` reach later plugins too.
    /// Independent plugins start several at once; a plugin starts once every
    /// plugin it depends on has run `init`. A plugin that fails is reported
    /// (and announced on `plughost.plugin.failed`); its dependents do not
    /// start; the others do. Both lists of the report, the running set and
    /// the announcements are in start order.
    pub async fn start(&self) -> StartReport {
        let inner = &self.inner;
        let mut report = StartReport::default();
        // Plugins the catalog refused (bad manifest, missing or cyclic
        // dependency, duplicate name) could not start either: say so on the
        // bus too. A manifest without a valid name is named by its folder.
        for entry in inner
            .catalog
            .entries
            .iter()
            .filter(|e| !e.errors.is_empty())
        {
            if entry.def.as_ref().is_some_and(|d| !d.manifest.enabled) {
                continue;
            }
            let name = entry.name().map(str::to_owned).unwrap_or_else(|| {
                entry.dir.file_name().map_or_else(
                    || entry.dir.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                )
            });
            let error = entry.errors.join("\n");
            inner.bus.announce(&HostEvent::Failed {
                plugin: &name,
                error: &error,
                reason: FailReason::Start,
            });
            report.failed.push((name, error));
        }
        let mut staged = Vec::new();
        for &i in &inner.catalog.start_order {
            let def = inner.catalog.entries[i]
                .def
                .clone()
                .expect("startable plugins are valid");
            let queue = self.stage(&def);
            staged.push((def, queue));
        }
        for (name, result) in self.launch_all(staged).await {
            match result {
                Ok(()) => report.started.push(name),
                Err(error) => report.failed.push((name, error.to_string())),
            }
        }
        // Imports begin once every plugin is on the bus.
        if let Some(cluster) = &inner.cluster {
            cluster.start(&inner.bus).await;
        }
        report
    }

    /// The cluster's state (connection, counts), when a cluster is configured.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        self.inner.cluster.as_ref().map(Cluster::status)
    }

    /// Publishes `payload` on `topic` with source `host`; returns the event id.
    ///
    /// Waits (asynchronously) while a subscriber's `block` queue is full.
    pub async fn publish(&self, topic: &str, payload: Value) -> Result<String, PublishError> {
        self.publish_event(Event::new(topic, payload, plughost_bindings::HOST_SOURCE))
            .await
    }

    /// Publishes a prepared event (to set headers or a correlation id).
    ///
    /// Without a `traceparent` header, the event gets the current span's
    /// (when the application traces through OpenTelemetry), so the plugins'
    /// delivery spans join the application's trace; otherwise, when
    /// exporting ([`HostBuilder::metric_export`]), a new trace's (random
    /// ids), so the delivery spans of one event in every plugin, and of the
    /// events they publish, share one trace. With telemetry off nothing is
    /// added.
    pub async fn publish_event(&self, mut event: Event) -> Result<String, PublishError> {
        self.check_published(&mut event)?;
        Ok(self.inner.bus.publish_async(event).await)
    }

    /// [`Host::publish_event`] for a thread outside the async runtime (a
    /// reader of input, a callback of a C library): blocks the thread while
    /// a subscriber's `block` queue is full. Never call it from async code:
    /// it would hold up a runtime thread.
    pub fn publish_event_blocking(&self, mut event: Event) -> Result<String, PublishError> {
        self.check_published(&mut event)?;
        Ok(self.inner.bus.publish_app_blocking(event))
    }

    /// The checks and trace context of an event published by the application.
    fn check_published(&self, event: &mut Event) -> Result<(), PublishError> {
        topic::validate_topic(&event.topic)?;
        if crate::host_events::is_reserved(&event.topic) {
            return Err(PublishError::Reserved(event.topic.clone()));
        }
        if !event.headers.contains_key(trace::TRACEPARENT)
            && self.inner.services.metrics().enabled()
        {
            trace::inject_current(&mut event.headers);
            if !event.headers.contains_key(trace::TRACEPARENT)
                && self.inner.services.metrics().exporting()
            {
                event
                    .headers
                    .insert(trace::TRACEPARENT.to_owned(), trace::new_root());
            }
        }
        Ok(())
    }

    /// Publishes `payload` on `topic` as a request from the application and
    /// waits, up to `timeout`, for the first plugin's `outcome.reply`;
    /// returns the reply's payload. Fails at once for a malformed or
    /// `plughost.` topic, or when nothing subscribes to `topic` (no plugin,
    /// no application subscriber, no cluster export); with
    /// [`RequestError::Timeout`] when no reply came in time. The wait runs
    /// on tokio's blocking pool, not on the caller's task.
    pub async fn request(
        &self,
        topic: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, RequestError> {
        topic::validate_topic(topic).map_err(PublishRefused::from)?;
        if crate::host_events::is_reserved(topic) {
            return Err(PublishRefused::Reserved(topic.to_owned()).into());
        }
        let bus = &self.inner.bus;
        if !bus.has_subscriber(topic, None) && !bus.exports(topic) {
            return Err(RequestError::NoSubscriber {
                topic: topic.to_owned(),
            });
        }
        let mut event = Event::new(topic, payload, plughost_bindings::HOST_SOURCE);
        let (subject, waiter) = bus.expect_reply(&event.id);
        event.reply_to = Some(subject);
        // The checks of `publish_event` passed above.
        let _ = self.publish_event(event).await;
        let reply = tokio::task::spawn_blocking(move || waiter.wait(timeout))
            .await
            .ok()
            .flatten();
        reply
            .map(|p| p.into_value())
            .ok_or_else(|| RequestError::Timeout {
                topic: topic.to_owned(),
                ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            })
    }

    /// A stream of every event matching `pattern` from now on.
    pub fn subscribe(&self, pattern: &str) -> Result<EventStream, TopicError> {
        self.subscribe_all(&[pattern])
    }

    /// A stream of every event matching any of `patterns` from now on.
    pub fn subscribe_all(&self, patterns: &[&str]) -> Result<EventStream, TopicError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.inner.bus.subscribe(PatternSet::new(patterns)))
    }

    /// Waits until every queue is empty, no hook is running and no retry is pending.
    pub async fn wait_idle(&self) {
        self.inner.bus.wait_idle().await
    }

    /// Events queued, being handled or waiting for a retry.
    pub fn pending(&self) -> usize {
        self.inner.bus.pending()
    }

    /// Names of the running plugins, in start order (suspended ones and
    /// ones stopped for good after crashes included: see [`Stats::health`]).
    pub fn running(&self) -> Vec<String> {
        self.inner.plugins.names()
    }

    /// Delivery counts of a running plugin, kept across its reloads,
    /// restarts and disable/enable.
    pub fn stats(&self, plugin: &str) -> Option<Arc<Stats>> {
        self.inner.plugins.named(plugin).map(|v| v.stats)
    }

    /// Every metric of the host, read in process now: the host metrics of
    /// SPEC §6 and the scripts' `telemetry.*` metrics.
    pub fn metrics_snapshot(&self) -> Vec<MetricPoint> {
        self.inner.services.metrics().snapshot()
    }

    /// Every metric as Prometheus text (the admin endpoint's `GET /metrics`),
    /// through the OpenTelemetry Prometheus exporter; empty with telemetry off.
    pub fn metrics_text(&self) -> String {
        self.inner.services.metrics().prometheus_text()
    }

    /// Plugin `name`'s recent reloads, oldest first (the last ten).
    pub fn reload_history(&self, name: &str) -> Vec<crate::reload::ReloadRecord> {
        self.inner.live.reloads(name)
    }

    /// Exports pending metrics now (when exporting, on a blocking thread);
    /// a no-op otherwise.
    pub async fn flush_telemetry(&self) {
        let metrics = self.inner.services.metrics().clone();
        if metrics.exporting() {
            let _ = tokio::task::spawn_blocking(move || metrics.flush()).await;
        }
    }

    /// Drains the queues for up to `drain_timeout`, then stops every plugin
    /// (dependents first), running its `shutdown` hook. Events still queued
    /// at the deadline are logged and returned, never silently lost; events
    /// waiting for a suspended plugin are dead-lettered as `suspended`.
    ///
    /// It always ends: past the deadline, queues are closed so plugins
    /// blocked publishing into each other stop, and a plugin thread that
    /// does not stop within its own time limit is left behind (logged).
    pub async fn shutdown(&self, drain_timeout: Duration) -> ShutdownReport {
        let deadline = Instant::now() + drain_timeout;
        // Nothing new arrives from other hosts; what this one exports still leaves.
        if let Some(cluster) = &self.inner.cluster {
            cluster.stop_import();
        }
        let mut drained = tokio::time::timeout_at(deadline.into(), self.wait_idle())
            .await
            .is_ok();
        // Suspended plugins are not waited for: their events are dead
        // letters, which others may still handle before the deadline.
        if self.release_suspended() > 0 && drained {
            drained = tokio::time::timeout_at(deadline.into(), self.wait_idle())
                .await
                .is_ok();
        }
        if !drained {
            tracing::warn!(
                pending = self.pending(),
                "drain timeout reached; stopping plugins with events still queued"
            );
        }
        // A change in progress (a reload, an enable) finishes first; none
        // starts after this.
        let _no_more_changes = tokio::time::timeout_at(
            (deadline + Duration::from_secs(1)).into(),
            self.inner.live.change_lock(),
        )
        .await;
        self.inner.live.close();
        let mut report = ShutdownReport {
            drained,
            ..Default::default()
        };
        if !drained {
            // Publishers blocked on a full queue (two plugins feeding each
            // other) are released: their queues take nothing more.
            for (name, d) in self.close_queues() {
                self.inner.bus.done();
                // A stored delivery goes back to the stream, for another host.
                if !self.inner.bus.hand_back(&name, &d.event) {
                    report.undelivered.push((name, d.event.id.clone()));
                }
            }
        }
        for (name, d) in self.stop_all().await {
            self.inner.bus.done();
            report.undelivered.push((name, d.event.id.clone()));
        }
        log_undelivered(&report.undelivered);
        if let Some(cluster) = &self.inner.cluster {
            cluster.close(CLUSTER_CLOSE).await;
        }
        self.inner.bus.close_subscribers();
        self.flush_telemetry().await;
        report
    }
}

/// Logs what shutdown left undelivered: each plugin's count and its first
/// ids, not a line per event.
fn log_undelivered(undelivered: &[(String, String)]) {
    const IDS_SHOWN: usize = 10;
    if undelivered.is_empty() {
        return;
    }
    let mut by_plugin: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (plugin, id) in undelivered {
        by_plugin.entry(plugin).or_default().push(id);
    }
    for (plugin, ids) in by_plugin {
        let shown = ids[..ids.len().min(IDS_SHOWN)].join(", ");
        let more = ids.len().saturating_sub(IDS_SHOWN);
        tracing::warn!(
            plugin,
            count = ids.len(),
            "undelivered at shutdown: {shown}{}",
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        );
    }
    tracing::warn!(count = undelivered.len(), "events undelivered at shutdown");
}
