//! The host: plugins discovered, started in dependency order, connected by
//! the bus, and shut down draining every queue.
//!
//! [`HostBuilder`] collects plugins directories and the application's Rust
//! functions; [`Host::start`] starts every startable plugin (each `init` has
//! run when it returns); [`Host::publish`] and [`Host::subscribe`] talk to
//! the bus; [`Host::shutdown`] drains the queues for up to a deadline, runs
//! the `shutdown` hooks, and reports what was left undelivered.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plughost_bindings::Event;
use serde_json::{Value, json};

use crate::actor::{self, Stats};
pub use crate::bus::EventStream;
use crate::bus::{Bus, Control, Delivery, Queue, Route};
use crate::catalog::{Catalog, PluginDef};
use crate::discovery::DiscoveryError;
use crate::functions::{self, Functions, HostFunction};
use crate::reload::LiveState;
use crate::services::{HOST_TOPIC_PREFIX, Services};
use crate::telemetry::{MetricPoint, Metrics, trace};
use crate::topic::{self, Pattern, PatternSet, TopicError};

/// The default time [`Host::shutdown`] waits for queues to drain.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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
        let services = Arc::new(Services::new(bus.clone(), self.functions, metrics));
        let known = catalog.entries.iter().map(|e| e.dir.clone()).collect();
        Ok(Host {
            inner: Arc::new(Inner {
                catalog,
                roots: self.dirs,
                bus,
                services,
                running: Mutex::default(),
                known: Mutex::new(known),
                live: LiveState::default(),
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
    pub(crate) running: Mutex<Vec<Running>>,
    /// Every plugin folder the host knows of: discovered, loaded or failed.
    pub(crate) known: Mutex<std::collections::BTreeSet<PathBuf>>,
    /// Operators' enables and disables, own manifest writes, reload history.
    pub(crate) live: LiveState,
}

/// A started plugin.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) name: String,
    /// The plugin folder (as discovered), which live reload watches.
    pub(crate) dir: PathBuf,
    /// The version running now.
    pub(crate) def: PluginDef,
    pub(crate) queue: Arc<Queue>,
    pub(crate) actor: actor::Actor,
    pub(crate) stats: Arc<Stats>,
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
    /// published by an early plugin's `init` reach later plugins too. A plugin
    /// that fails is reported (and announced on `plughost.plugin.failed`); its
    /// dependents do not start; the others do.
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
            inner.bus.publish_host(
                "plughost.plugin.failed",
                json!({"plugin": name, "error": error}),
            );
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
        let mut failed_names: Vec<String> = Vec::new();
        for (def, queue) in staged {
            let name = def.manifest.name.clone();
            let blocked = def
                .manifest
                .dependencies
                .iter()
                .find(|d| failed_names.contains(&d.name))
                .map(|dep| format!("dependency `{}` failed to start", dep.name));
            let result = match blocked {
                Some(error) => {
                    self.fail(&name, &queue, &error);
                    Err(error)
                }
                None => self.launch(def, queue).await,
            };
            match result {
                Ok(()) => report.started.push(name),
                Err(error) => {
                    report.failed.push((name.clone(), error));
                    failed_names.push(name);
                }
            }
        }
        report
    }

    /// Puts a plugin's queue on the bus (before its `init` runs, so events
    /// published meanwhile wait for it).
    pub(crate) fn stage(&self, def: &PluginDef) -> Arc<Queue> {
        let m = &def.manifest;
        let queue = Arc::new(Queue::new(m.limits.queue, m.limits.overflow));
        self.inner.bus.add_route(Arc::new(Route {
            plugin: m.name.clone(),
            patterns: PatternSet::new(m.subscriptions.clone()),
            queue: queue.clone(),
            dropped: self.inner.services.metrics().dropped_counter(&m.name),
        }));
        self.inner
            .services
            .set_publications(&m.name, m.publications.clone().map(PatternSet::new));
        self.inner.services.metrics().register(&def.info());
        queue
    }

    /// Starts a staged plugin's thread and waits for its `init`. On failure
    /// the plugin is taken off the bus and the error returned (and announced).
    pub(crate) async fn launch(&self, def: PluginDef, queue: Arc<Queue>) -> Result<(), String> {
        let inner = &self.inner;
        let name = def.manifest.name.clone();
        let stats = Arc::new(Stats::default());
        let spawned = actor::spawn(
            &def,
            inner.bus.clone(),
            inner.services.clone(),
            queue.clone(),
            stats.clone(),
        );
        let mut actor = match spawned {
            Ok(a) => a,
            Err(e) => {
                let error = format!("cannot start a thread: {e}");
                self.fail(&name, &queue, &error);
                return Err(error);
            }
        };
        match (&mut actor.ready).await {
            Ok(Ok(())) => {
                tracing::info!(plugin = %name, version = %def.manifest.version, runtime = %def.runtime, "plugin started");
                inner.services.metrics().lifecycle_event(&name, "started");
                inner
                    .bus
                    .publish_host("plughost.plugin.started", json!({"plugin": name}));
                self.inner
                    .known
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(def.dir.clone());
                self.lock_running().push(Running {
                    name,
                    dir: def.dir.clone(),
                    def,
                    queue,
                    actor,
                    stats,
                });
                Ok(())
            }
            Ok(Err(e)) => {
                self.fail(&name, &queue, &e.detailed());
                Err(e.to_string())
            }
            Err(_) => {
                let error = "the plugin thread stopped during init".to_owned();
                self.fail(&name, &queue, &error);
                Err(error)
            }
        }
    }

    /// Stops one running plugin: it leaves the bus, handles what is already
    /// in its queue (when `drain`), runs `shutdown`, and is announced stopped.
    /// Events it could not handle are returned.
    pub(crate) async fn stop(&self, r: Running, drain: bool) -> Vec<Delivery> {
        self.inner.bus.remove_route(&r.name);
        r.queue
            .control(if drain { Control::Drain } else { Control::Stop });
        let exit = r.actor.exited.await.unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || r.actor.thread.join()).await;
        self.inner.services.set_publications(&r.name, None);
        if let Some(e) = exit.shutdown_error {
            tracing::error!(plugin = %r.name, "{}", e.detailed());
        }
        tracing::info!(plugin = %r.name, "plugin stopped");
        self.inner
            .services
            .metrics()
            .lifecycle_event(&r.name, "stopped");
        self.inner
            .bus
            .publish_host("plughost.plugin.stopped", json!({"plugin": r.name}));
        exit.undelivered
    }

    /// Takes a plugin that could not start off the bus; events already queued
    /// for it are dead-lettered, not lost.
    fn fail(&self, name: &str, queue: &Queue, error: &str) {
        let bus = &self.inner.bus;
        bus.remove_route(name);
        self.inner.services.set_publications(name, None);
        tracing::error!(plugin = name, "plugin failed to start: {error}");
        self.inner
            .services
            .metrics()
            .lifecycle_event(name, "failed");
        self.inner.services.metrics().unregister(name);
        for d in queue.close() {
            bus.dead_letter(
                name,
                &d.event,
                0,
                &format!("plugin `{name}` failed to start: {error}"),
            );
            bus.done();
        }
        bus.publish_host(
            "plughost.plugin.failed",
            json!({"plugin": name, "error": error}),
        );
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
        topic::validate_topic(&event.topic)?;
        if event.topic.starts_with(HOST_TOPIC_PREFIX) {
            return Err(PublishError::Reserved(event.topic));
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
        Ok(self.inner.bus.publish_async(event).await)
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

    /// Names of the running plugins, in start order.
    pub fn running(&self) -> Vec<String> {
        self.lock_running().iter().map(|r| r.name.clone()).collect()
    }

    /// Delivery counts of a running plugin.
    pub fn stats(&self, plugin: &str) -> Option<Arc<Stats>> {
        self.lock_running()
            .iter()
            .find(|r| r.name == plugin)
            .map(|r| r.stats.clone())
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

    /// Plugin `name`'s recent reloads, oldest first (the last
    /// [`crate::reload::state::HISTORY_LEN`]).
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

    pub(crate) fn lock_running(&self) -> std::sync::MutexGuard<'_, Vec<Running>> {
        self.inner.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drains the queues for up to `drain_timeout`, then stops every plugin
    /// (dependents first), running its `shutdown` hook. Events still queued
    /// at the deadline are logged by id and returned, never silently lost.
    pub async fn shutdown(&self, drain_timeout: Duration) -> ShutdownReport {
        let drained = tokio::time::timeout(drain_timeout, self.wait_idle())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                pending = self.pending(),
                "drain timeout reached; stopping plugins with events still queued"
            );
        }
        // A change in progress (a reload, an enable) finishes first; none
        // starts after this.
        let _no_more_changes = self.inner.live.change_lock().await;
        self.inner.live.close();
        let running: Vec<Running> = std::mem::take(&mut *self.lock_running());
        let mut report = ShutdownReport {
            drained,
            ..Default::default()
        };
        for r in running.into_iter().rev() {
            let name = r.name.clone();
            for Delivery { event, .. } in self.stop(r, false).await {
                tracing::warn!(plugin = %name, event.id = %event.id, topic = %event.topic, "undelivered at shutdown");
                self.inner.bus.done();
                report.undelivered.push((name.clone(), event.id.clone()));
            }
        }
        if !report.undelivered.is_empty() {
            tracing::warn!(
                count = report.undelivered.len(),
                "events undelivered at shutdown"
            );
        }
        self.inner.bus.close_subscribers();
        self.flush_telemetry().await;
        report
    }
}
