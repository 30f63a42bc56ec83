//! The plugin actor: the thread that owns one plugin's interpreter.
//!
//! It loads the plugin, runs `init`, then takes one thing at a time: a due
//! retry, a due timer, a control message or the next queued event. Because
//! only this thread touches the interpreter, hooks never run concurrently
//! and events are handled in queue order. What the plugin returned is turned
//! into an action by [`crate::delivery::decide`] and carried out here.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use plughost_bindings::{PluginInstance, ScriptError};
use serde_json::Value;
use tokio::sync::oneshot;

use crate::bus::{Bus, Control, Delivery, Pop, Queue, flush_deferred};
use crate::catalog::PluginDef;
use crate::delivery::{self, Action};
use crate::manifest::Retry;
use crate::services::Services;

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
    let started = Instant::now();
    let loaded =
        plughost_bindings::load(&spec, services.clone()).and_then(|mut p| p.init().map(|()| p));
    let mut plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            flush_deferred();
            if let Some(tx) = ready.take() {
                let _ = tx.send(Err(e));
            }
            return Exit::default();
        }
    };
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
    };
    loop {
        let now = Instant::now();
        if let Some(d) = worker.due_retry(now) {
            worker.handle(plugin.as_mut(), d);
            continue;
        }
        if plugin.next_timer().is_some_and(|t| t <= now) {
            bus.begin_work();
            if let Some(Err(e)) = plugin.run_due_timer(now) {
                stats.timer_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(plugin = %def.manifest.name, "{}", e.detailed());
            }
            bus.done();
            continue;
        }
        let deadline = match (worker.next_retry(), plugin.next_timer()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match queue.pop(deadline, flush_deferred) {
            Pop::Control(Control::Stop | Control::Drain) => break,
            Pop::Control(Control::Swap { def: next, done }) => {
                let result = swap(&mut plugin, &next, services);
                if result.is_ok() {
                    worker.retry = next.manifest.retry;
                }
                flush_deferred();
                let _ = done.send(result.map_err(|e| e.detailed()));
            }
            Pop::Control(Control::Configure { def: next, done }) => {
                let result = if plugin.has_on_config() {
                    plugin.on_config(&next.manifest.config)
                } else {
                    swap(&mut plugin, &next, services)
                };
                flush_deferred();
                let _ = done.send(result.map_err(|e| e.detailed()));
            }
            Pop::Event(d) => worker.handle(plugin.as_mut(), d),
            Pop::Timeout => {}
        }
    }
    plugin.clear_timers();
    let shutdown_error = plugin.shutdown().err();
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
    let state = plugin.state()?;
    let mut fresh = plughost_bindings::load(&next.spec(state), services.clone())?;
    fresh.init()?;
    plugin.clear_timers();
    if let Err(e) = plugin.shutdown() {
        tracing::error!(plugin = %next.manifest.name, "{}", e.detailed());
    }
    *plugin = fresh;
    Ok(())
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
}

impl Worker<'_> {
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
        let result = plugin.on_event(&d.event);
        match delivery::decide(result, d.attempt, &self.retry) {
            Action::Ack => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                self.bus.done();
            }
            Action::Forward { topic, payload } => {
                match self.services.check_topic(self.name, &topic) {
                    Ok(()) => {
                        let event = d.event.caused(topic, payload, self.name);
                        self.bus.publish_blocking(event, Some(self.name));
                        self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(m) => {
                        self.bus.dead_letter(
                            self.name,
                            &d.event,
                            d.attempt,
                            &format!("outcome.forward: {m}"),
                        );
                        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.bus.done();
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
                self.bus.dead_letter(self.name, &d.event, d.attempt, &error);
                self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                self.bus.done();
            }
        }
    }
}
