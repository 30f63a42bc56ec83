//! Crashes (SPEC §12): the plugin restarted in a fresh interpreter after a
//! backoff, with `state` as of its last completed hook, until too many
//! crashes fall within `supervision.window_s`; then it is stopped for good.
//!
//! A crash is a panic that escaped a hook (an application function that
//! panicked, a bug of the bindings), a native plugin's `fatal`, or a
//! restarted interpreter that cannot load. The event in flight is
//! dead-lettered; the others wait in the queue for the new interpreter.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use plughost_bindings::{ErrorKind, PluginInstance, ScriptError};
use serde_json::Value;
use tokio::sync::oneshot;

use super::telemetry::Telemetry;
use super::worker::Worker;
use super::{Ctx, End, Exit, Health, Start, run};
use crate::bus::{Control, Delivery, Pop, flush_deferred};
use crate::catalog::PluginDef;
use crate::host_events::{FailReason, HostEvent};
use crate::supervisor::policy;

/// The text of a panic's payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

/// Runs the plugin until it is stopped, restarting it in a fresh
/// interpreter after a crash until too many fall in the window.
pub(super) fn supervise(
    mut def: PluginDef,
    ctx: &Ctx<'_>,
    mut state: Value,
    ready_tx: oneshot::Sender<Result<(), ScriptError>>,
    start: Start,
) -> Exit {
    let name = def.manifest.name.clone();
    let metrics = ctx.services.metrics();
    let mut ready = Some(ready_tx);
    let mut worker = Worker::new(&name, &def, ctx, Telemetry::new(metrics, &def));
    if let Start::Restart(after) = start {
        // Started by the watch after an abandoned call: the start is not
        // the caller's to wait for, and a failed load is one more crash.
        if let Some(tx) = ready.take() {
            let _ = tx.send(Ok(()));
        }
        if let Some(exit) = wait_before_restart(&mut def, ctx, &mut worker, after, &state) {
            return exit;
        }
    }
    let mut health = policy::Health::new(def.manifest.supervision);
    loop {
        let mut slot: Option<Box<dyn PluginInstance>> = None;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run::run(
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
        let error = match outcome {
            Ok(End::Exit(exit)) => return exit,
            Ok(End::Abandoned) => return Exit::default(),
            Ok(End::Failed(e)) => e.detailed(),
            Err(panic) => format!("panicked: {}", panic_text(&*panic)),
        };
        if ctx.in_hook.is_abandoned() {
            // The watch gave up on this thread first; another runs the plugin.
            return Exit::default();
        }
        // A crash. The state as of the last completed hook: read from the
        // interpreter if it still answers, else the last one known.
        if let Some(mut plugin) = slot.take() {
            if let Ok(Ok(s)) = catch_unwind(AssertUnwindSafe(|| plugin.state())) {
                state = s;
            }
            let _ = catch_unwind(AssertUnwindSafe(move || drop(plugin)));
        }
        tracing::error!(plugin = %name, "plugin crashed: {error}");
        metrics.lifecycle_event(&name, "crashed");
        if let Some(tx) = ready.take() {
            // It never started: a failed start, not a crash to restart.
            let _ = tx.send(Err(ScriptError::new(ErrorKind::Runtime, error)));
            return Exit {
                undelivered: ctx.queue.close(),
                state: Some(state),
                ..Exit::default()
            };
        }
        if let Some(d) = ctx.in_hook.take_crashed() {
            let why = format!("the plugin crashed: {error}");
            ctx.bus.dead_letter(&name, &d.event, d.attempt, &why);
            ctx.stats.dead_lettered(&d.event.id, &why);
            ctx.bus.done();
        }
        match ctx.stats.crashed(Instant::now(), &def.manifest.supervision) {
            policy::Verdict::Restart {
                after,
                restarts: count,
            } => {
                ctx.stats.record_crash(&error, true);
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
                ctx.stats.record_crash(&error, false);
                return give_up(&def, ctx, &mut worker, &error, count, state);
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
    after: Duration,
    state: &Value,
) -> Option<Exit> {
    let until = Instant::now() + after;
    loop {
        match ctx.queue.pop(Some(until), false, flush_deferred) {
            Pop::Timeout => return None,
            Pop::Control(Control::Stop | Control::Drain) => {
                let mut undelivered: Vec<Delivery> = worker.take_retries();
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
                worker.info = def.info();
                let _ = done.send(Ok(false));
            }
            // Between two interpreters: the kept state is the plugin's.
            Pop::Control(Control::Shadow { to, done }) => {
                ctx.shadow.attach(to);
                let _ = done.send(state.clone());
            }
            Pop::Control(Control::State { done }) => {
                let _ = done.send(state.clone());
            }
            // No interpreter to run the hook in: the promoted version
            // starts again from its own state.
            Pop::Control(Control::Promoted { .. }) => {
                tracing::warn!(plugin = %def.manifest.name, "on_promote not run: the plugin was restarting");
            }
            Pop::Control(Control::Resume) | Pop::Event(_) => {}
        }
    }
}

/// Stops a plugin for good after too many crashes: it leaves the bus, its
/// waiting events are dead-lettered, and `plughost.plugin.failed` says why.
fn give_up(
    def: &PluginDef,
    ctx: &Ctx<'_>,
    worker: &mut Worker<'_>,
    error: &str,
    count: u32,
    state: Value,
) -> Exit {
    let left = worker.take_retries();
    if ctx.candidate.load(std::sync::atomic::Ordering::Relaxed) {
        // A rollout's candidate: its supervisor rolls it back and gives
        // what it had not handled to the running version.
        let mut undelivered = left;
        undelivered.extend(ctx.queue.close());
        tracing::error!(plugin = %def.manifest.name, version = %def.manifest.version, "the new version crashed {count} times: {error}");
        return Exit {
            undelivered,
            state: Some(state),
            failed: true,
            ..Exit::default()
        };
    }
    stop_for_good(
        def,
        ctx.bus,
        ctx.services,
        ctx.queue,
        ctx.stats,
        left,
        error,
        count,
    );
    Exit {
        state: Some(state),
        failed: true,
        ..Exit::default()
    }
}

/// Takes plugin `def` off the bus for good after `count` crashes, the last
/// `error`: its queued events and `left` are dead-lettered, and
/// `plughost.plugin.failed` (reason `restarts`) says why. For the plugin's
/// own thread and for the supervisor's watch alike.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stop_for_good(
    def: &PluginDef,
    bus: &crate::bus::Bus,
    services: &crate::services::Services,
    queue: &crate::bus::Queue,
    stats: &super::Stats,
    left: Vec<Delivery>,
    error: &str,
    count: u32,
) {
    let name = def.manifest.name.as_str();
    let s = &def.manifest.supervision;
    let why = format!(
        "plugin `{name}` was stopped for good: {count} crashes within {} s (supervision.max_restarts = {}); the last: {error}",
        s.window_s, s.max_restarts
    );
    tracing::error!(plugin = %name, "{why}");
    stats.set_health(Health::Failed);
    bus.remove_route(name);
    if queue.is_suspended() {
        queue.set_suspended(false);
        bus.suspension(false);
    }
    let mut left = left;
    left.extend(queue.close());
    for d in left {
        if !bus.hand_back(name, &d.event) {
            bus.dead_letter(name, &d.event, d.attempt, &why);
            stats.dead_lettered(&d.event.id, &why);
        }
        bus.done();
    }
    services.metrics().lifecycle_event(name, "failed");
    bus.announce(&HostEvent::Failed {
        plugin: name,
        error: &why,
        reason: FailReason::Restarts,
    });
}
