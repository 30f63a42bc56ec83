//! The supervisor's watch: a call that ignores its time limit is abandoned.
//!
//! Scripts stop themselves at `limits.event_timeout_ms`; a native plugin in
//! a loop, or an application function that never returns, does not, and no
//! thread can be stopped from outside. Every [`TICK`] the watch looks at
//! each plugin's hook in progress; one past its limit by [`ABANDON_GRACE`]
//! is abandoned: its event is dead-lettered, the thread is left to finish
//! (or not) on its own and may never touch the plugin again, and the plugin
//! is restarted on a new thread, as for a crash (SPEC §12), with the
//! retries the old thread kept put back in its queue.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::actor::{self, Start};
use crate::host::{Host, Inner};
use crate::host_events::HostEvent;
use crate::supervisor::policy::Verdict;

/// How long past its own time limit a call may run before it is abandoned.
pub(crate) const ABANDON_GRACE: Duration = Duration::from_secs(1);

/// How often the watch looks.
const TICK: Duration = Duration::from_millis(100);

/// Watches `host`'s plugins until it shuts down (or is dropped).
pub(crate) fn spawn(host: &Host) {
    let weak: Weak<Inner> = Arc::downgrade(&host.inner);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(TICK).await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.live.is_closed() {
                return;
            }
            let host = Host { inner };
            let aftermath = host.take_stuck(Instant::now());
            if !aftermath.is_empty() {
                // Dead letters may wait for room in a subscriber's queue.
                let _ = tokio::task::spawn_blocking(move || {
                    for a in aftermath {
                        host.after_abandon(a);
                    }
                })
                .await;
            }
        }
    });
}

/// What follows an abandoned call, done once the registry is let go.
struct Aftermath {
    running: crate::supervisor::View,
    error: String,
    delivery: Option<crate::bus::Delivery>,
    retries: Vec<crate::bus::Delivery>,
    verdict: Verdict,
}

impl Host {
    /// Abandons every call that has run past its limit at `now` and starts
    /// its plugin on a new thread (unless it crashed too often); returns
    /// what is left to do (dead letters, announcements), which may wait.
    /// Takes no more than a look at each plugin when nothing is stuck.
    fn take_stuck(&self, now: Instant) -> Vec<Aftermath> {
        let inner = &self.inner;
        let mut aftermath = Vec::new();
        {
            let mut running = inner.plugins.lock();
            for r in running.iter_mut() {
                let limits = &r.def.manifest.limits;
                let Some(abandoned) = r
                    .actor
                    .in_hook
                    .abandon_past(limits.event_timeout() + ABANDON_GRACE, now)
                else {
                    continue;
                };
                let error = format!(
                    "a call ran {} ms, past its time limit of {} ms, and was abandoned",
                    abandoned.ran.as_millis(),
                    limits.event_timeout_ms
                );
                let retries = r.actor.in_hook.take_retries();
                let verdict = r.stats.crashed(now, &r.def.manifest.supervision);
                r.stats
                    .record_crash(&error, matches!(verdict, Verdict::Restart { .. }));
                if let Verdict::Restart { after, .. } = verdict {
                    let state = inner.plugins.state_of(&r.name);
                    let wiring = actor::Wiring {
                        bus: inner.bus.clone(),
                        services: inner.services.clone(),
                        queue: r.queue.clone(),
                        stats: r.stats.clone(),
                        shadow: r.shadow.clone(),
                        candidate: Arc::default(),
                    };
                    match actor::spawn(&r.def, wiring, state, Start::Restart(after)) {
                        // The old thread is detached: it never runs a hook
                        // of this plugin again.
                        Ok(new) => r.actor = new,
                        Err(e) => tracing::error!(plugin = %r.name, "cannot start a thread: {e}"),
                    }
                }
                aftermath.push(Aftermath {
                    running: crate::supervisor::view(r),
                    error,
                    delivery: abandoned.delivery,
                    retries,
                    verdict,
                });
            }
        }
        aftermath
    }

    fn after_abandon(&self, a: Aftermath) {
        let inner = &self.inner;
        let r = &a.running;
        let name = r.def.manifest.name.as_str();
        tracing::error!(plugin = %name, "plugin crashed: {}", a.error);
        inner.services.metrics().lifecycle_event(name, "crashed");
        if let Some(d) = a.delivery {
            let why = format!("the plugin crashed: {}", a.error);
            inner.bus.dead_letter(name, &d.event, d.attempt, &why);
            r.stats.dead_lettered(&d.event.id, &why);
            inner.bus.done();
        }
        match a.verdict {
            Verdict::Restart { restarts, .. } => {
                for d in r.queue.requeue(a.retries) {
                    inner.bus.done();
                    tracing::warn!(plugin = %name, event.id = %d.event.id, "a retry was lost with a closed queue");
                }
                tracing::warn!(plugin = %name, restarts, "restarting the plugin on a new thread");
                inner.services.metrics().lifecycle_event(name, "restarted");
                inner.bus.announce(&HostEvent::Restarted {
                    plugin: name,
                    error: &a.error,
                    restarts,
                });
            }
            Verdict::GiveUp { restarts } => {
                actor::stop_for_good(
                    &r.def,
                    &inner.bus,
                    &inner.services,
                    &r.queue,
                    &r.stats,
                    a.retries,
                    &a.error,
                    restarts,
                );
            }
        }
    }
}
