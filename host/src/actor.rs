//! The plugin actor: the thread that owns one plugin's interpreter.
//!
//! It loads the plugin, runs `init`, then takes one thing at a time: a due
//! retry, a due timer, a control message or the next queued event. Because
//! only this thread touches the interpreter, hooks never run concurrently
//! and events are handled in queue order. What the plugin returned is turned
//! into an action by [`crate::delivery::decide`] and carried out here.

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram};
use plughost_bindings::{PluginInstance, ScriptError};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::field::Empty;

use crate::bus::{Bus, Control, Delivery, Pop, Queue, flush_deferred};
use crate::catalog::PluginDef;
use crate::delivery::{self, Action};
use crate::manifest::Retry;
use crate::services::Services;
use crate::telemetry::{Metrics, trace};

/// A lifecycle span (`plugin.init`, `plugin.reload`, `plugin.shutdown`) of `def`.
fn lifecycle_span(name: &'static str, def: &PluginDef) -> tracing::Span {
    tracing::info_span!(
        target: "plughost::lifecycle",
        "plugin.lifecycle",
        otel.name = name,
        plugin.name = %def.manifest.name,
        plugin.version = %def.manifest.version,
        plugin.runtime = %def.runtime,
        error = Empty,
        otel.status_code = Empty,
    )
}

fn record_error(span: &tracing::Span, error: &dyn std::fmt::Display) {
    if !span.is_disabled() {
        span.record("error", tracing::field::display(error));
        span.record("otel.status_code", "ERROR");
    }
}

/// Counts of what happened to a plugin's deliveries.
#[derive(Debug, Default)]
pub struct Stats {
    /// Acknowledged.
    pub acked: AtomicU64,
    /// Acknowledged with `outcome.forward`.
    pub forwarded: AtomicU64,
    /// Scheduled for redelivery.
    pub retried: AtomicU64,
    /// Dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Timer callbacks that raised an error.
    pub timer_errors: AtomicU64,
    /// The last event dead-lettered: its id and why (a script error's
    /// `file:line:col: message`, or a drop's reason).
    pub last_dead_letter: std::sync::Mutex<Option<(String, String)>>,
    /// The last error a timer callback raised.
    pub last_timer_error: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn dead_lettered(&self, event: &str, error: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        *self
            .last_dead_letter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((event.to_owned(), error.to_owned()));
    }
}

/// What a plugin thread left behind when it stopped.
#[derive(Debug, Default)]
pub struct Exit {
    /// Events it did not handle: still queued, or waiting for a retry.
    pub undelivered: Vec<Delivery>,
    /// The error `shutdown` raised, if any.
    pub shutdown_error: Option<ScriptError>,
}

/// A started plugin thread.
#[derive(Debug)]
pub struct Actor {
    /// The thread.
    pub thread: JoinHandle<()>,
    /// Resolves once the plugin is loaded and `init` has run.
    pub ready: oneshot::Receiver<Result<(), ScriptError>>,
    /// Resolves when the thread has stopped.
    pub exited: oneshot::Receiver<Exit>,
}

/// Starts the thread of plugin `def`, consuming `queue`.
pub fn spawn(
    def: &PluginDef,
    bus: Arc<Bus>,
    services: Arc<Services>,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
) -> std::io::Result<Actor> {
    let (ready_tx, ready) = oneshot::channel();
    let (exit_tx, exited) = oneshot::channel();
    let def = def.clone();
    let thread = std::thread::Builder::new()
        .name(format!("plugin:{}", def.manifest.name))
        .spawn(move || {
            let name = def.manifest.name.clone();
            let run = catch_unwind(AssertUnwindSafe(|| {
                let mut ready_tx = Some(ready_tx);
                let exit = run(&def, &bus, &services, &queue, &stats, &mut ready_tx);
                (exit, ready_tx)
            }));
            match run {
                Ok((exit, _)) => {
                    let _ = exit_tx.send(exit);
                }
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    flush_deferred();
                    tracing::error!(plugin = %name, "plugin thread panicked: {what}");
                    let _ = exit_tx.send(Exit {
                        undelivered: queue.close(),
                        shutdown_error: None,
                    });
                }
            }
        })?;
    Ok(Actor {
        thread,
        ready,
        exited,
    })
}

fn run(
    def: &PluginDef,
    bus: &Arc<Bus>,
    services: &Arc<Services>,
    queue: &Queue,
    stats: &Stats,
    ready: &mut Option<oneshot::Sender<Result<(), ScriptError>>>,
) -> Exit {
    let spec = def.spec(Value::Null);
    let metrics = services.metrics();
    let started = Instant::now();
    let span = lifecycle_span("plugin.init", def);
    let loaded = span.in_scope(|| {
        plughost_bindings::load(&spec, services.clone()).and_then(|mut p| p.init().map(|()| p))
    });
    metrics.init_duration.record(
        started.elapsed().as_secs_f64() * 1e3,
        &metrics.attributes_of(&def.manifest.name),
    );
    let mut plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            record_error(&span, &e);
            drop(span);
            flush_deferred();
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(e));
            }
            return Exit::default();
        }
    };
    drop(span);
    tracing::debug!(plugin = %def.manifest.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "init done");
    flush_deferred();
    if let Some(tx) = ready.take() {
        let _ = tx.send(Ok(()));
    }
    let mut worker = Worker {
        name: &def.manifest.name,
        retry: def.manifest.retry,
        bus,
        services,
        stats,
        retries: BTreeMap::new(),
        seq: 0,
        telemetry: Telemetry::new(metrics, def),
    };
    loop {
        let deadline = match (worker.next_retry(), plugin.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The clock is read only when a retry or a timer is pending: events
        // come one after another, and each look at the clock costs.
        if let Some(next) = deadline {
            let now = Instant::now();
            if next <= now {
                if let Some(d) = worker.due_retry(now) {
                    worker.handle(plugin.as_mut(), d);
                    continue;
                }
                if plugin.next_timer().is_some_and(|t| t <= now) {
                    bus.begin_work();
                    if let Some(Err(e)) = plugin.run_due_timer(now) {
                        stats.timer_errors.fetch_add(1, Ordering::Relaxed);
                        *stats
                            .last_timer_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        tracing::error!(plugin = %def.manifest.name, "{}", e.detailed());
                    }
                    bus.done();
                    continue;
                }
            }
        }
        match queue.pop(deadline, flush_deferred) {
            Pop::Control(Control::Stop | Control::Drain) => break,
            Pop::Control(Control::Swap { def: next, done }) => {
                let result = swap(&mut plugin, &next, services);
                if result.is_ok() {
                    worker.retry = next.manifest.retry;
                    metrics.register(&next.info());
                    worker.telemetry = Telemetry::new(metrics, &next);
                }
                flush_deferred();
                let _ = done.send(result.map(|()| false).map_err(|e| e.detailed()));
            }
            Pop::Control(Control::Configure { def: next, done }) => {
                let result = if plugin.has_on_config() {
                    plugin.on_config(&next.manifest.config).map(|()| true)
                } else {
                    swap(&mut plugin, &next, services).map(|()| false)
                };
                flush_deferred();
                let _ = done.send(result.map_err(|e| e.detailed()));
            }
            Pop::Event(d) => worker.handle(plugin.as_mut(), d),
            Pop::Timeout => {}
        }
    }
    plugin.clear_timers();
    let started = Instant::now();
    let span = lifecycle_span("plugin.shutdown", def);
    let shutdown_error = span.in_scope(|| plugin.shutdown().err());
    if let Some(e) = &shutdown_error {
        record_error(&span, e);
    }
    drop(span);
    metrics.shutdown_duration.record(
        started.elapsed().as_secs_f64() * 1e3,
        &metrics.attributes_of(&def.manifest.name),
    );
    flush_deferred();
    let mut undelivered: Vec<Delivery> =
        std::mem::take(&mut worker.retries).into_values().collect();
    undelivered.extend(queue.close());
    Exit {
        undelivered,
        shutdown_error,
    }
}

/// Replaces `plugin` by a fresh instance of `next`, between two events.
///
/// The new version is loaded in a new interpreter with a copy of the running
/// version's `state`, and its `init` runs; only if both succeed are the old
/// version's timers stopped and its `shutdown` run, and the new one takes
/// over. On failure the old version keeps running, untouched.
fn swap(
    plugin: &mut Box<dyn PluginInstance>,
    next: &PluginDef,
    services: &Arc<Services>,
) -> Result<(), ScriptError> {
    let span = lifecycle_span("plugin.reload", next);
    let _entered = span.enter();
    let fresh = plugin.state().and_then(|state| {
        let mut fresh = plughost_bindings::load(&next.spec(state), services.clone())?;
        fresh.init()?;
        Ok(fresh)
    });
    let fresh = match fresh {
        Ok(f) => f,
        Err(e) => {
            record_error(&span, &e);
            return Err(e);
        }
    };
    plugin.clear_timers();
    let metrics = services.metrics();
    let started = Instant::now();
    let shutdown = lifecycle_span("plugin.shutdown", next);
    if let Err(e) = shutdown.in_scope(|| plugin.shutdown()) {
        record_error(&shutdown, &e);
        tracing::error!(plugin = %next.manifest.name, "{}", e.detailed());
    }
    drop(shutdown);
    metrics.shutdown_duration.record(
        started.elapsed().as_secs_f64() * 1e3,
        &metrics.attributes_of(&next.manifest.name),
    );
    *plugin = fresh;
    Ok(())
}

/// What a delivery's outcome is called on `plugin.messages` and the span.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ack = 0,
    Forward = 1,
    Retry = 2,
    DeadLetter = 3,
}

const OUTCOMES: [&str; 4] = ["ack", "forward", "retry", "dead_letter"];

/// One topic's per-event instruments, bound to their attributes once (so a
/// delivery records without hashing attribute sets).
struct TopicInstruments {
    /// `plugin.message.processing_time_ms` with the plugin's attributes and `message.topic`.
    processing: BoundHistogram<f64>,
    /// `plugin.messages` with the same and each `outcome`.
    messages: [BoundCounter<u64>; 4],
}

/// Topics a worker keeps attribute sets for, before starting over.
const TOPIC_CACHE: usize = 1024;

/// A worker's instruments and its plugin's attributes.
struct Telemetry<'a> {
    metrics: &'a Metrics,
    plugin: Arc<[KeyValue]>,
    name: String,
    version: String,
    runtime: &'static str,
    topics: HashMap<String, TopicInstruments>,
}

impl<'a> Telemetry<'a> {
    fn new(metrics: &'a Metrics, def: &PluginDef) -> Self {
        Telemetry {
            metrics,
            plugin: metrics.attributes_of(&def.manifest.name),
            name: def.manifest.name.clone(),
            version: def.manifest.version.to_string(),
            runtime: def.runtime.as_str(),
            topics: HashMap::new(),
        }
    }

    fn span(&self, event: &plughost_bindings::Event) -> tracing::Span {
        if !self.metrics.enabled() {
            return tracing::Span::none();
        }
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
        trace::set_parent(&span, &event.headers);
        span
    }

    fn record(&mut self, topic: &str, elapsed_ms: f64, outcome: Outcome) {
        if !self.metrics.enabled() {
            return;
        }
        if let Some(t) = self.topics.get(topic) {
            t.processing.record(elapsed_ms);
            t.messages[outcome as usize].add(1);
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
            messages: OUTCOMES.map(|o| {
                let mut attrs = base.clone();
                attrs.push(KeyValue::new("outcome", o));
                metrics.messages.bind(&attrs)
            }),
        };
        t.processing.record(elapsed_ms);
        t.messages[outcome as usize].add(1);
        self.topics.insert(topic.to_owned(), t);
    }
}

/// Carries out what the plugin asked for, and keeps the pending retries.
struct Worker<'a> {
    name: &'a str,
    retry: Retry,
    bus: &'a Bus,
    services: &'a Services,
    stats: &'a Stats,
    retries: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    telemetry: Telemetry<'a>,
}

impl<'a> Worker<'a> {
    fn due_retry(&mut self, now: Instant) -> Option<Delivery> {
        let (&(at, _), _) = self.retries.first_key_value()?;
        if at > now {
            return None;
        }
        self.retries.pop_first().map(|(_, d)| d)
    }

    fn next_retry(&self) -> Option<Instant> {
        self.retries.first_key_value().map(|(&(at, _), _)| at)
    }

    fn handle(&mut self, plugin: &mut dyn PluginInstance, d: Delivery) {
        let span = self.telemetry.span(&d.event);
        let _entered = span.enter();
        let started = Instant::now();
        let result = plugin.on_event(&d.event);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let event = d.event.clone();
        let outcome = self.carry_out(result, d, &span);
        if !span.is_disabled() {
            span.record("outcome", OUTCOMES[outcome as usize]);
        }
        // Recorded before the event counts as done, so a reader that waited
        // for the host to be idle sees it.
        self.telemetry.record(&event.topic, elapsed_ms, outcome);
        if !matches!(outcome, Outcome::Retry) {
            self.bus.done();
        }
    }

    /// Carries out the plugin's answer; the caller marks the event done
    /// (unless it is to be retried).
    fn carry_out(
        &mut self,
        result: Result<plughost_bindings::Outcome, ScriptError>,
        d: Delivery,
        span: &tracing::Span,
    ) -> Outcome {
        match delivery::decide(result, d.attempt, &self.retry) {
            Action::Ack => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                Outcome::Ack
            }
            Action::Forward { topic, payload } => {
                match self.services.check_topic(self.name, &topic) {
                    Ok(()) => {
                        let mut event = d.event.caused(topic, payload, self.name);
                        trace::inject_current(&mut event.headers);
                        self.bus.publish_blocking(event, Some(self.name));
                        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                        Outcome::Forward
                    }
                    Err(m) => {
                        let error = format!("outcome.forward: {m}");
                        record_error(span, &error);
                        self.bus.dead_letter(self.name, &d.event, d.attempt, &error);
                        self.stats.dead_lettered(&d.event.id, &error);
                        Outcome::DeadLetter
                    }
                }
            }
            Action::Retry { after, attempt } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin = self.name, event.id = %d.event.id, attempt, after_ms = after.as_millis() as u64, "retry scheduled");
                self.seq += 1;
                self.retries.insert(
                    (Instant::now() + after, self.seq),
                    Delivery {
                        event: d.event,
                        attempt,
                    },
                );
                Outcome::Retry
            }
            Action::DeadLetter { error } => {
                record_error(span, &error);
                self.bus.dead_letter(self.name, &d.event, d.attempt, &error);
                self.stats.dead_lettered(&d.event.id, &error);
                Outcome::DeadLetter
            }
        }
    }
}
