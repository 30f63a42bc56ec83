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
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, BoundHistogram};
use plughost_bindings::{ErrorKind, PluginInstance, ScriptError};
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::field::Empty;

use crate::bus::{Bus, Control, Delivery, Pop, Queue, flush_deferred};
use crate::catalog::PluginDef;
use crate::delivery::{self, Action};
use crate::host_events::{FailReason, HostEvent};
use crate::manifest::Retry;
use crate::services::{PublishRefused, Services};
use crate::supervisor::policy;
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

/// Where a plugin stands with its supervisor (SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It takes events.
    Running,
    /// It takes no events after errors in a row; they wait in its queue.
    Suspended,
    /// It crashed too often and was stopped for good.
    Failed,
}

impl Health {
    /// The name `GET /plugins/{name}` answers: `running`, `suspended`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Running => "running",
            Health::Suspended => "suspended",
            Health::Failed => "failed",
        }
    }
}

/// Counts of what happened to a plugin's deliveries, kept across its
/// reloads, restarts and disable/enable for the host's life.
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
    /// Events that ended in an error (SPEC §12: raised, a value that is
    /// not an outcome, a refused forward).
    pub errors: AtomicU64,
    /// Errors in a row now.
    pub consecutive_errors: AtomicU64,
    /// Crash restarts.
    pub restarts: AtomicU64,
    /// [`Health`] as a number (see [`Stats::health`]).
    health: AtomicU8,
    /// The last event dead-lettered: its id and why (a script error's
    /// `file:line:col: message`, or a drop's reason).
    pub last_dead_letter: std::sync::Mutex<Option<(String, String)>>,
    /// The last error a timer callback raised.
    pub last_timer_error: std::sync::Mutex<Option<String>>,
    /// The last crash.
    pub last_crash: std::sync::Mutex<Option<String>>,
}

impl Stats {
    fn dead_lettered(&self, event: &str, error: &str) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        *self
            .last_dead_letter
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((event.to_owned(), error.to_owned()));
    }

    /// Where the plugin stands with its supervisor.
    pub fn health(&self) -> Health {
        match self.health.load(Ordering::Relaxed) {
            1 => Health::Suspended,
            2 => Health::Failed,
            _ => Health::Running,
        }
    }

    fn set_health(&self, health: Health) {
        self.health.store(health as u8, Ordering::Relaxed);
    }
}

/// What a plugin thread left behind when it stopped.
#[derive(Debug, Default)]
pub struct Exit {
    /// Events it did not handle: still queued, or waiting for a retry.
    pub undelivered: Vec<Delivery>,
    /// The error `shutdown` raised, if any.
    pub shutdown_error: Option<ScriptError>,
    /// Its `state` when it stopped, to start from next time.
    pub state: Option<Value>,
    /// It was stopped for good after too many crashes (already announced).
    pub failed: bool,
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

/// What a plugin thread works with.
struct Ctx<'a> {
    bus: &'a Arc<Bus>,
    services: &'a Arc<Services>,
    queue: &'a Queue,
    stats: &'a Stats,
}

/// Starts the thread of plugin `def`, consuming `queue`, with `state` to
/// start from (what it left when it last stopped).
pub fn spawn(
    def: &PluginDef,
    bus: Arc<Bus>,
    services: Arc<Services>,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    state: Option<Value>,
) -> std::io::Result<Actor> {
    let (ready_tx, ready) = oneshot::channel();
    let (exit_tx, exited) = oneshot::channel();
    let def = def.clone();
    let thread = std::thread::Builder::new()
        .name(format!("plugin:{}", def.manifest.name))
        .spawn(move || {
            let ctx = Ctx {
                bus: &bus,
                services: &services,
                queue: &queue,
                stats: &stats,
            };
            let exit = supervise(def, &ctx, state.unwrap_or(Value::Null), ready_tx);
            let _ = exit_tx.send(exit);
        })?;
    Ok(Actor {
        thread,
        ready,
        exited,
    })
}

/// How one run of the plugin (one interpreter) ended.
enum End {
    /// Asked to stop, or its first `init` failed.
    Exit(Exit),
    /// A crash: a hook said the plugin cannot go on, or a restarted
    /// interpreter could not load or `init`.
    Failed(ScriptError),
}

/// The text of a panic's payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Runs the plugin until it is stopped, restarting it in a fresh
/// interpreter after a crash (SPEC §12) until too many fall in the window.
fn supervise(
    mut def: PluginDef,
    ctx: &Ctx<'_>,
    mut state: Value,
    ready_tx: oneshot::Sender<Result<(), ScriptError>>,
) -> Exit {
    let name = def.manifest.name.clone();
    let metrics = ctx.services.metrics();
    let mut ready = Some(ready_tx);
    let mut worker = Worker {
        name: &name,
        retry: def.manifest.retry,
        bus: ctx.bus,
        services: ctx.services,
        stats: ctx.stats,
        retries: BTreeMap::new(),
        seq: 0,
        telemetry: Telemetry::new(metrics, &def),
        in_flight: None,
    };
    let mut health = policy::Health::new(def.manifest.supervision);
    let mut restarts = policy::Restarts::default();
    loop {
        let mut slot: Option<Box<dyn PluginInstance>> = None;
        let run = catch_unwind(AssertUnwindSafe(|| {
            run(
                &mut def,
                ctx,
                &mut worker,
                &mut health,
                &mut slot,
                &mut ready,
                state.clone(),
            )
        }));
        flush_deferred();
        let error = match run {
            Ok(End::Exit(exit)) => return exit,
            Ok(End::Failed(e)) => e.detailed(),
            Err(panic) => format!("panicked: {}", panic_text(&*panic)),
        };
        // A crash. The state as of the last completed hook: read from the
        // interpreter if it still answers, else the last one known.
        if let Some(mut plugin) = slot.take() {
            if let Ok(Ok(s)) = catch_unwind(AssertUnwindSafe(|| plugin.state())) {
                state = s;
            }
            let _ = catch_unwind(AssertUnwindSafe(move || drop(plugin)));
        }
        tracing::error!(plugin = %name, "plugin crashed: {error}");
        *ctx.stats
            .last_crash
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(error.clone());
        metrics.lifecycle_event(&name, "crashed");
        if let Some(tx) = ready.take() {
            // It never started: a failed start, not a crash to restart.
            let _ = tx.send(Err(ScriptError::new(
                plughost_bindings::ErrorKind::Runtime,
                error,
            )));
            return Exit {
                undelivered: ctx.queue.close(),
                state: Some(state),
                ..Exit::default()
            };
        }
        if let Some(d) = worker.in_flight.take() {
            let why = format!("the plugin crashed: {error}");
            ctx.bus.dead_letter(&name, &d.event, d.attempt, &why);
            ctx.stats.dead_lettered(&d.event.id, &why);
            ctx.bus.done();
        }
        match restarts.crashed(Instant::now(), &def.manifest.supervision) {
            policy::Verdict::Restart {
                after,
                restarts: count,
            } => {
                ctx.stats.restarts.fetch_add(1, Ordering::Relaxed);
                if let Some(exit) = wait_before_restart(&mut def, ctx, &mut worker, after, &state) {
                    return exit;
                }
                tracing::warn!(plugin = %name, restarts = count, "restarting the plugin in a fresh interpreter");
                metrics.lifecycle_event(&name, "restarted");
                ctx.bus.announce(&HostEvent::Restarted {
                    plugin: &name,
                    error: &error,
                    restarts: count,
                });
            }
            policy::Verdict::GiveUp { restarts: count } => {
                return give_up(&name, &def, ctx, &mut worker, &error, count, state);
            }
        }
    }
}

/// Waits `after` before a restart, still answering control messages: a
/// stop ends the plugin (returned), a new version is taken for the restart.
fn wait_before_restart(
    def: &mut PluginDef,
    ctx: &Ctx<'_>,
    worker: &mut Worker<'_>,
    after: std::time::Duration,
    state: &Value,
) -> Option<Exit> {
    let until = Instant::now() + after;
    loop {
        match ctx.queue.pop(Some(until), false, flush_deferred) {
            Pop::Timeout => return None,
            Pop::Control(Control::Stop | Control::Drain) => {
                let mut undelivered: Vec<Delivery> =
                    std::mem::take(&mut worker.retries).into_values().collect();
                undelivered.extend(ctx.queue.close());
                return Some(Exit {
                    undelivered,
                    state: Some(state.clone()),
                    ..Exit::default()
                });
            }
            Pop::Control(Control::Swap { def: next, done })
            | Pop::Control(Control::Configure { def: next, done }) => {
                *def = *next;
                worker.retry = def.manifest.retry;
                let _ = done.send(Ok(false));
            }
            Pop::Control(Control::Resume) | Pop::Event(_) => {}
        }
    }
}

/// Stops a plugin for good after too many crashes: it leaves the bus, its
/// waiting events are dead-lettered, and `plughost.plugin.failed` says why.
fn give_up(
    name: &str,
    def: &PluginDef,
    ctx: &Ctx<'_>,
    worker: &mut Worker<'_>,
    error: &str,
    count: u32,
    state: Value,
) -> Exit {
    let s = &def.manifest.supervision;
    let why = format!(
        "plugin `{name}` was stopped for good: {count} crashes within {} s (supervision.max_restarts = {}); the last: {error}",
        s.window_s, s.max_restarts
    );
    tracing::error!(plugin = %name, "{why}");
    ctx.stats.set_health(Health::Failed);
    ctx.bus.remove_route(name);
    if ctx.queue.is_suspended() {
        ctx.queue.set_suspended(false);
        ctx.bus.suspension(false);
    }
    let mut left: Vec<Delivery> = std::mem::take(&mut worker.retries).into_values().collect();
    left.extend(ctx.queue.close());
    for d in left {
        ctx.bus.dead_letter(name, &d.event, d.attempt, &why);
        ctx.stats.dead_lettered(&d.event.id, &why);
        ctx.bus.done();
    }
    ctx.services.metrics().lifecycle_event(name, "failed");
    ctx.bus.announce(&HostEvent::Failed {
        plugin: name,
        error: &why,
        reason: FailReason::Restarts,
    });
    Exit {
        state: Some(state),
        failed: true,
        ..Exit::default()
    }
}

/// One run of the plugin in one interpreter: load, `init`, then one thing
/// at a time until stopped. The interpreter is kept in `slot`, so that
/// after a crash its state can still be read.
fn run(
    def: &mut PluginDef,
    ctx: &Ctx<'_>,
    worker: &mut Worker<'_>,
    health: &mut policy::Health,
    slot: &mut Option<Box<dyn PluginInstance>>,
    ready: &mut Option<oneshot::Sender<Result<(), ScriptError>>>,
    state: Value,
) -> End {
    let (bus, services, queue, stats) = (ctx.bus, ctx.services, ctx.queue, ctx.stats);
    let spec = def.spec(state.clone());
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
    match loaded {
        Ok(p) => *slot = Some(p),
        Err(e) => {
            record_error(&span, &e);
            drop(span);
            flush_deferred();
            return match ready.take() {
                Some(tx) => {
                    let _ = tx.send(Err(e));
                    End::Exit(Exit {
                        state: Some(state),
                        ..Exit::default()
                    })
                }
                None => End::Failed(e),
            };
        }
    }
    let plugin = slot.as_mut().expect("just loaded");
    drop(span);
    tracing::debug!(plugin = %def.manifest.name, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "init done");
    flush_deferred();
    if let Some(tx) = ready.take() {
        let _ = tx.send(Ok(()));
    }
    // After a timer callback, the next turn goes to the queue: a timer
    // that is always due (or always runs to its time limit) cannot starve
    // the events or a stop.
    let mut queue_turn = false;
    loop {
        let trial = health.next_trial();
        let deadline = [worker.next_retry(), plugin.next_timer(), trial]
            .into_iter()
            .flatten()
            .min();
        // The clock is read only when a retry, a timer or a trial is
        // pending: events come one after another, and each look costs.
        let mut take_events = true;
        if let Some(next) = deadline {
            let now = Instant::now();
            take_events = health.takes_events(now);
            if next <= now && !queue_turn {
                if let Some(d) = worker.due_retry(now) {
                    match worker.handle(plugin.as_mut(), d) {
                        Ok(error) => supervise_result(ctx, health, &def.manifest.name, error),
                        Err(crash) => return End::Failed(crash),
                    }
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
                    queue_turn = true;
                    continue;
                }
            }
        }
        let wait_until = if queue_turn {
            Some(Instant::now())
        } else {
            deadline
        };
        queue_turn = false;
        match queue.pop(wait_until, take_events, flush_deferred) {
            Pop::Control(Control::Stop | Control::Drain) => break,
            Pop::Control(Control::Swap { def: next, done }) => {
                let result = swap(plugin, &next, services);
                if result.is_ok() {
                    adopt(def, *next, worker, health, metrics);
                    resumed(ctx, health, &def.manifest.name, "reload");
                }
                flush_deferred();
                let _ = done.send(result.map(|()| false));
            }
            Pop::Control(Control::Configure { def: next, done }) => {
                let result = if plugin.has_on_config() {
                    plugin.on_config(&next.manifest.config).map(|()| true)
                } else {
                    swap(plugin, &next, services).map(|()| false)
                };
                if result.is_ok() {
                    adopt(def, *next, worker, health, metrics);
                    resumed(ctx, health, &def.manifest.name, "reload");
                }
                flush_deferred();
                let _ = done.send(result);
            }
            Pop::Control(Control::Resume) => resumed(ctx, health, &def.manifest.name, "enable"),
            Pop::Event(d) => match worker.handle(plugin.as_mut(), d) {
                Ok(error) => supervise_result(ctx, health, &def.manifest.name, error),
                Err(crash) => return End::Failed(crash),
            },
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
    let state = plugin.state().ok();
    flush_deferred();
    let mut undelivered: Vec<Delivery> =
        std::mem::take(&mut worker.retries).into_values().collect();
    undelivered.extend(queue.close());
    End::Exit(Exit {
        undelivered,
        shutdown_error,
        state,
        failed: false,
    })
}

/// Takes `next` as the running version's definition after a swap.
fn adopt(
    def: &mut PluginDef,
    next: PluginDef,
    worker: &mut Worker<'_>,
    health: &mut policy::Health,
    metrics: &Metrics,
) {
    worker.retry = next.manifest.retry;
    health.reconfigure(next.manifest.supervision);
    metrics.register(&next.info());
    *def = next;
}

/// Resumes a suspended plugin at once (a saved fix, an `enable`).
fn resumed(ctx: &Ctx<'_>, health: &mut policy::Health, name: &str, by: &str) {
    ctx.stats.consecutive_errors.store(0, Ordering::Relaxed);
    if health.resume() {
        set_suspended(ctx, name, false);
        tracing::info!(plugin = %name, by, "plugin resumed");
        ctx.bus.announce(&HostEvent::Resumed { plugin: name, by });
    }
}

fn set_suspended(ctx: &Ctx<'_>, name: &str, suspended: bool) {
    ctx.queue.set_suspended(suspended);
    ctx.bus.suspension(suspended);
    ctx.stats.set_health(if suspended {
        Health::Suspended
    } else {
        Health::Running
    });
    ctx.services
        .metrics()
        .lifecycle_event(name, if suspended { "suspended" } else { "resumed" });
}

/// Follows an event's result: errors in a row suspend the plugin, a
/// successful trial resumes it.
fn supervise_result(ctx: &Ctx<'_>, health: &mut policy::Health, name: &str, error: Option<String>) {
    if error.is_none() && !health.is_suspended() && health.consecutive_errors() == 0 {
        return;
    }
    let stats = ctx.stats;
    if error.is_some() {
        stats.errors.fetch_add(1, Ordering::Relaxed);
    }
    match health.record(error.is_some(), Instant::now()) {
        policy::Transition::None => {}
        policy::Transition::Suspended { errors } => {
            let error = error.unwrap_or_default();
            tracing::error!(plugin = %name, errors, "plugin suspended after errors in a row: {error}");
            set_suspended(ctx, name, true);
            ctx.bus.announce(&HostEvent::Suspended {
                plugin: name,
                error: &error,
                errors,
            });
        }
        policy::Transition::Resumed => {
            set_suspended(ctx, name, false);
            tracing::info!(plugin = %name, "plugin resumed: a trial event succeeded");
            ctx.bus.announce(&HostEvent::Resumed {
                plugin: name,
                by: "trial",
            });
        }
    }
    stats
        .consecutive_errors
        .store(u64::from(health.consecutive_errors()), Ordering::Relaxed);
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

    /// Records one delivery whose action was `Action::NAMES[outcome]`.
    fn record(&mut self, topic: &str, elapsed_ms: f64, outcome: usize) {
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
    /// The delivery being handled, dead-lettered if the plugin crashes.
    in_flight: Option<Delivery>,
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

    /// Handles one delivery. Returns the error when it ended in one (SPEC
    /// §12's errors, which supervision counts), or, as `Err`, a crash: the
    /// plugin cannot go on, and the delivery stays in flight for the
    /// supervisor to dead-letter.
    fn handle(
        &mut self,
        plugin: &mut dyn PluginInstance,
        d: Delivery,
    ) -> Result<Option<String>, ScriptError> {
        let span = self.telemetry.span(&d.event);
        let _entered = span.enter();
        let started = Instant::now();
        self.in_flight = Some(d.clone());
        let result = plugin.on_event(&d.event);
        if let Err(e) = &result
            && e.kind == ErrorKind::Crash
        {
            record_error(&span, e);
            return Err(result.unwrap_err());
        }
        self.in_flight = None;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
        let event = d.event.clone();
        let (action, error) = self.carry_out(result, d, &span);
        if !span.is_disabled() {
            span.record("outcome", Action::NAMES[action]);
        }
        // Recorded before the event counts as done, so a reader that waited
        // for the host to be idle sees it.
        self.telemetry.record(&event.topic, elapsed_ms, action);
        if action != Action::RETRY {
            self.bus.done();
        }
        Ok(error)
    }

    /// Carries out the plugin's answer; the caller marks the event done
    /// (unless it is to be retried). Returns the action carried out (its
    /// [`Action::index`]) and the error, when the event ended in one.
    fn carry_out(
        &mut self,
        result: Result<plughost_bindings::Outcome, ScriptError>,
        d: Delivery,
        span: &tracing::Span,
    ) -> (usize, Option<String>) {
        let raised = result.is_err();
        let action = delivery::decide(result, d.attempt, &self.retry);
        let index = action.index();
        match action {
            Action::Ack => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Action::Forward { topic, payload } => {
                // The same path as `bus.publish`: topic checks, then the bus.
                let published = self.services.check_topic(self.name, &topic).and_then(|()| {
                    let mut event = d.event.caused(topic, payload, self.name);
                    trace::inject_current(&mut event.headers);
                    self.bus
                        .publish_blocking(event, Some(self.name))
                        .map_err(PublishRefused::from)
                });
                if let Err(refused) = published {
                    // A refused forward is an error (SPEC §12).
                    let error = format!("outcome.forward: {refused}");
                    self.dead_letter(&d, &error, span);
                    return (Action::DEAD_LETTER, Some(error));
                }
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
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
            }
            Action::DeadLetter { error } => {
                self.dead_letter(&d, &error, span);
                return (index, raised.then_some(error));
            }
        }
        (index, None)
    }

    fn dead_letter(&self, d: &Delivery, error: &str, span: &tracing::Span) {
        record_error(span, &error);
        self.bus.dead_letter(self.name, &d.event, d.attempt, error);
        self.stats.dead_lettered(&d.event.id, error);
    }
}
