//! A gradual rollout: the candidate as a plugin thread of its own with its
//! share of the events, its verdicts from its counts, its promotion, and
//! events handed from one version to the other when one stops.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{Active, By, Kind, candidate_started};
use crate::actor::{self, Start, Stats};
use crate::bus::{Control, Delivery, Push, Queue, Route, Split};
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::manifest::Strategy;
use crate::reload::ReloadOutcome;
use crate::rollout::RolloutStatus;
use crate::rollout::shadow::{self, Counts};
use crate::topic::PatternSet;

#[derive(Debug)]
pub(super) struct Gradual {
    pub(super) split: Arc<Split>,
    pub(super) actor: actor::Actor,
    pub(super) queue: Arc<Queue>,
    pub(super) stats: Arc<Stats>,
    /// The candidate thread's shadow slot: the plugin's once promoted.
    pub(super) slot: Arc<shadow::ShadowSlot>,
    /// Whether its thread runs a candidate (cleared at promotion, so a
    /// promoted version that crashes too often is stopped as any plugin).
    pub(super) role: Arc<AtomicBool>,
    /// Looks at the candidate's counts for `promote_after` and
    /// `max_candidate_errors`; it ends by itself once the rollout is over
    /// (it may be what ends it, so it is never aborted).
    pub(super) _verdicts: tokio::task::JoinHandle<()>,
}

impl Gradual {
    /// Its counts in a rollout's status.
    pub(super) fn fill(&self, status: &mut RolloutStatus) {
        status.percent = Some(self.split.percent.load(Ordering::Relaxed));
        status.candidate_errors = self.stats.errors.load(Ordering::Relaxed);
        status.handled_by_candidate = handled(&self.stats);
    }
}

/// Events a gradual candidate finished (a retry is not finished yet).
fn handled(stats: &Stats) -> u64 {
    stats.acked.load(Ordering::Relaxed)
        + stats.forwarded.load(Ordering::Relaxed)
        + stats.dead_lettered.load(Ordering::Relaxed)
}

/// How often a gradual rollout's counts are looked at for a verdict.
const VERDICT_EVERY: Duration = Duration::from_millis(50);

impl Host {
    /// Starts `def` as the gradual candidate of the plugin whose queue is
    /// `live` (version `from`): its own thread and queue, `state` copied
    /// from the running version, and its share of the events.
    pub(super) async fn start_gradual(
        &self,
        def: PluginDef,
        live: Arc<Queue>,
        from: String,
    ) -> ReloadOutcome {
        let name = def.manifest.name.clone();
        let (done, state) = oneshot::channel();
        live.control(Control::State { done });
        let Ok(state) = state.await else {
            return self.rollout_failed(&name, &def, "the plugin thread stopped");
        };
        let m = &def.manifest;
        let queue = Arc::new(Queue::new(m.limits.queue, m.limits.overflow));
        let stats = Arc::new(Stats::default());
        let slot = Arc::new(shadow::ShadowSlot::default());
        let role = Arc::new(AtomicBool::new(true));
        let wiring = actor::Wiring {
            bus: self.inner.bus.clone(),
            services: self.inner.services.clone(),
            queue: queue.clone(),
            stats: stats.clone(),
            shadow: slot.clone(),
            candidate: role.clone(),
        };
        let spawned = actor::spawn(&def, wiring, Some(state), Start::First);
        let mut candidate = match spawned {
            Ok(a) => a,
            Err(e) => {
                return self.rollout_failed(&name, &def, &format!("cannot start a thread: {e}"));
            }
        };
        if let Err(not) = candidate_started(&def, &mut candidate.ready).await {
            if not.timed_out {
                // A thread still in `init` never touches the plugin again.
                candidate.in_hook.abandon();
            }
            queue.control(Control::Stop);
            return self.rollout_failed(&name, &def, &not.error);
        }
        let split = Arc::new(Split {
            queue: queue.clone(),
            percent: AtomicU8::new(m.rollout.percent),
            key: m.rollout.key.clone(),
        });
        let counts = Arc::new(Counts::default());
        let verdicts = tokio::spawn(self.clone().gradual_verdicts(
            name.clone(),
            Arc::downgrade(&counts),
            stats.clone(),
            m.rollout.promote_after,
            m.rollout.max_candidate_errors,
        ));
        let to = m.version.to_string();
        {
            let mut running = self.inner.plugins.lock();
            let Some(r) = running.iter_mut().find(|r| r.name == name) else {
                queue.control(Control::Stop);
                return ReloadOutcome::Unchanged;
            };
            let Some(route) = self.inner.bus.route(&name) else {
                queue.control(Control::Stop);
                return ReloadOutcome::Unchanged;
            };
            // From now on the route gives the candidate its share.
            self.inner.bus.replace_route(Arc::new(Route {
                split: Some(split.clone()),
                plugin: route.plugin.clone(),
                patterns: route.patterns.clone(),
                queue: route.queue.clone(),
                dropped: route.dropped.clone(),
                shared: route.shared,
            }));
            r.rollout = Some(Active {
                def,
                from: from.clone(),
                counts,
                kind: Kind::Gradual(Box::new(Gradual {
                    split,
                    actor: candidate,
                    queue,
                    stats,
                    slot,
                    role,
                    _verdicts: verdicts,
                })),
            });
        }
        self.rollout_started(&name, Strategy::Gradual.as_str(), &from, &to);
        ReloadOutcome::Reloaded
    }

    /// Promotes or rolls back a gradual rollout by itself, from its
    /// candidate's counts; ends with the rollout.
    pub(super) async fn gradual_verdicts(
        self,
        name: String,
        counts: std::sync::Weak<Counts>,
        stats: Arc<Stats>,
        promote_after: Option<u64>,
        max_errors: u64,
    ) {
        let metrics = self.inner.services.metrics().clone();
        let (mut handled_before, mut errors_before) = (0, 0);
        loop {
            tokio::time::sleep(VERDICT_EVERY).await;
            let Some(counts) = counts.upgrade() else {
                return;
            };
            let errors = stats.errors.load(Ordering::Relaxed);
            let done = handled(&stats);
            metrics.rollout_events(&name, "candidate", done - handled_before);
            metrics.rollout_events(&name, "candidate_error", errors - errors_before);
            (handled_before, errors_before) = (done, errors);
            let verdict = if errors >= max_errors {
                Some(false)
            } else if errors == 0 && promote_after.is_some_and(|n| handled(&stats) >= n) {
                Some(true)
            } else {
                None
            };
            if let Some(promote) = verdict {
                let _ = self
                    .end_rollout(&name, promote, By::Itself, Some(&counts))
                    .await;
                return;
            }
        }
    }

    /// Makes gradual candidate `g` (version `def`) the running plugin
    /// `name`: every new event goes to it, the old version handles what it
    /// holds and stops, and what it left (retries) goes to the new one.
    pub(super) async fn promote_gradual(&self, name: &str, def: PluginDef, g: Gradual) {
        g.role.store(false, Ordering::Relaxed);
        let m = &def.manifest;
        if let Some(route) = self.inner.bus.route(name) {
            self.inner.bus.replace_route(Arc::new(Route {
                plugin: route.plugin.clone(),
                patterns: PatternSet::new(m.subscriptions.clone()),
                queue: g.queue.clone(),
                dropped: route.dropped.clone(),
                shared: m.shared,
                split: None,
            }));
        }
        self.inner
            .services
            .set_publications(name, m.publications.clone().map(PatternSet::new));
        let old = {
            let mut running = self.inner.plugins.lock();
            running.iter_mut().find(|r| r.name == name).map(|r| {
                let old_def = std::mem::replace(&mut r.def, def.clone());
                let old_queue = std::mem::replace(&mut r.queue, g.queue.clone());
                let old_actor = std::mem::replace(&mut r.actor, g.actor);
                let old_stats = std::mem::replace(&mut r.stats, g.stats.clone());
                r.shadow = g.slot.clone();
                (old_def, old_queue, old_actor, old_stats)
            })
        };
        self.inner.plugins.set_stats(name, g.stats.clone());
        let metrics = self.inner.services.metrics();
        metrics.register(&def.info());
        metrics.lifecycle_event(name, "reloaded");
        let Some((old_def, old_queue, mut old_actor, old_stats)) = old else {
            return;
        };
        old_queue.control(Control::Drain);
        let exit = self
            .wait_exit(&mut old_actor, name, &old_def, &old_queue, &old_stats)
            .await;
        if old_queue.is_suspended() {
            old_queue.set_suspended(false);
            self.inner.bus.suspension(false);
        }
        // The new version may merge what the old one kept meanwhile.
        g.queue.control(Control::Promoted {
            old_state: exit.state.unwrap_or(serde_json::Value::Null),
        });
        self.hand_over(name, exit.undelivered, &g.queue);
    }

    /// Gives events one version did not handle to the other's queue (they
    /// are still counted pending); one that cannot be queued is not lost.
    pub(super) fn hand_over(&self, name: &str, undelivered: Vec<Delivery>, to: &Queue) {
        for d in undelivered {
            match to.try_push(d.event, true) {
                Push::Queued => {}
                Push::Closed(event)
                | Push::Refused(event)
                | Push::DroppedOldest(event)
                | Push::DroppedNewest(event)
                | Push::Full(event) => {
                    self.inner.bus.unhandled(
                        name,
                        &event,
                        d.attempt,
                        &format!("plugin `{name}` stopped during a rollout"),
                    );
                    self.inner.bus.done();
                }
            }
        }
    }

    /// Stops gradual candidate `g` (version `def`) of plugin `name`: its
    /// share goes back to the running version, whose queue is `live`, with
    /// what it had not handled.
    pub(super) async fn stop_gradual(
        &self,
        name: &str,
        def: &PluginDef,
        mut g: Gradual,
        live: &Queue,
    ) {
        if let Some(route) = self.inner.bus.route(name) {
            self.inner.bus.replace_route(Arc::new(Route {
                plugin: route.plugin.clone(),
                patterns: route.patterns.clone(),
                queue: route.queue.clone(),
                dropped: route.dropped.clone(),
                shared: route.shared,
                split: None,
            }));
        }
        g.queue.control(Control::Stop);
        let exit = self
            .wait_exit(&mut g.actor, name, def, &g.queue, &g.stats)
            .await;
        // A suspended candidate's thread is gone: the bus stops
        // counting it (its parked events went back with the rest).
        if g.queue.is_suspended() {
            g.queue.set_suspended(false);
            self.inner.bus.suspension(false);
        }
        self.hand_over(name, exit.undelivered, live);
    }
}
