//! One run of a plugin in one interpreter: load and `init`, then one thing
//! at a time (a due retry, a due timer, a control message, the next event)
//! until stopped, with supervision of errors in a row (SPEC §12): a
//! suspended plugin takes only control messages until its trial is due.
//!
//! Every hook call is entered in the thread's [`InHook`](super::InHook), so
//! the supervisor's watch can abandon one that ignores its time limit; a
//! thread that finds its call abandoned ends at once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use plughost_bindings::{PluginInstance, ScriptError};
use serde_json::Value;
use tokio::sync::oneshot;

use super::worker::Worker;
use super::{Ctx, End, Exit, Health, lifecycle_span, record_error};
use crate::bus::{Control, Pop, flush_deferred};
use crate::catalog::PluginDef;
use crate::host_events::HostEvent;
use crate::services::Services;
use crate::supervisor::policy;
use crate::telemetry::Metrics;

/// One run of the plugin in one interpreter: load, `init`, then one thing
/// at a time until stopped. The interpreter is kept in `slot`, so that
/// after a crash its state can still be read.
pub(super) fn run(
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
    let Some(loaded) = hook_call(ctx, started, || {
        span.in_scope(|| {
            plughost_bindings::load(&spec, services.clone()).and_then(|mut p| p.init().map(|()| p))
        })
    }) else {
        return End::Abandoned;
    };
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
        // A suspended plugin waits for its trial; once it is due, for the
        // next event (not in a loop past the due time).
        let trial = health.next_trial().filter(|&t| t > Instant::now());
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
                        Some(Ok(error)) => supervise_result(ctx, health, &def.manifest.name, error),
                        Some(Err(crash)) => return End::Failed(crash),
                        None => return End::Abandoned,
                    }
                    continue;
                }
                if plugin.next_timer().is_some_and(|t| t <= now) {
                    bus.begin_work();
                    let Some(ran) = hook_call(ctx, now, || plugin.run_due_timer(now)) else {
                        return End::Abandoned;
                    };
                    if let Some(Err(e)) = ran {
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
                // Two hooks in a row (the new `init`, the old `shutdown`):
                // the watch allows twice the limit.
                let twice = Instant::now() + def.manifest.limits.event_timeout();
                let swapped =
                    hook_call(ctx, twice, || swap(plugin, &next, services).map(|()| false));
                let Some(result) = swapped else {
                    return End::Abandoned;
                };
                took(ctx, def, *next, worker, health, &result);
                let _ = done.send(result);
            }
            Pop::Control(Control::Configure { def: next, done }) => {
                let twice = Instant::now() + def.manifest.limits.event_timeout();
                let configured = hook_call(ctx, twice, || {
                    if plugin.has_on_config() {
                        plugin.on_config(&next.manifest.config).map(|()| true)
                    } else {
                        swap(plugin, &next, services).map(|()| false)
                    }
                });
                let Some(result) = configured else {
                    return End::Abandoned;
                };
                took(ctx, def, *next, worker, health, &result);
                let _ = done.send(result);
            }
            Pop::Control(Control::Resume) => resumed(ctx, health, &def.manifest.name, "enable"),
            Pop::Control(Control::Shadow { to, done }) => {
                ctx.shadow.attach(to);
                let _ = done.send(plugin.state().unwrap_or(Value::Null));
            }
            Pop::Control(Control::State { done }) => {
                let _ = done.send(plugin.state().unwrap_or(Value::Null));
            }
            Pop::Control(Control::Promoted { old_state }) => {
                let Some(ran) = hook_call(ctx, Instant::now(), || plugin.on_promote(&old_state))
                else {
                    return End::Abandoned;
                };
                if let Err(e) = ran {
                    tracing::error!(plugin = %def.manifest.name, "on_promote failed: {}", e.detailed());
                }
            }
            Pop::Event(d) => match worker.handle(plugin.as_mut(), d) {
                Some(Ok(error)) => supervise_result(ctx, health, &def.manifest.name, error),
                Some(Err(crash)) => return End::Failed(crash),
                None => return End::Abandoned,
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
    let mut undelivered = worker.take_retries();
    undelivered.extend(queue.close());
    End::Exit(Exit {
        undelivered,
        shutdown_error,
        state,
        failed: false,
    })
}

/// Runs `f`, a call into the plugin, entered in the thread's hook record
/// since `at`. `None` when the watch abandoned the call meanwhile: the
/// thread must end.
fn hook_call<R>(ctx: &Ctx<'_>, at: Instant, f: impl FnOnce() -> R) -> Option<R> {
    ctx.in_hook.enter(at, None);
    let r = f();
    ctx.in_hook.leave().then_some(r)
}

/// After a swap or a new config: a version that took over is adopted, and
/// resumes the plugin if it was suspended (a saved fix).
fn took(
    ctx: &Ctx<'_>,
    def: &mut PluginDef,
    next: PluginDef,
    worker: &mut Worker<'_>,
    health: &mut policy::Health,
    result: &Result<bool, ScriptError>,
) {
    if result.is_ok() {
        adopt(def, next, worker, health, ctx.services.metrics());
        resumed(ctx, health, &def.manifest.name, "reload");
    }
    flush_deferred();
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
    worker.info = next.info();
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
pub(super) fn swap(
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
