//! Rollouts' lives (SPEC §13): a new version started beside the running
//! one when it arrives with `rollout.strategy: shadow` or `gradual`, and
//! the verbs on [`Host`] that end it: promote, roll back (by an operator,
//! or by themselves after `promote_after` clean events or
//! `max_candidate_errors` errors), change a gradual share.
//!
//! A shadow candidate starts from the running version's `state`, taken on
//! its thread between two events at the moment it starts offering them
//! (`Control::Shadow`), so the candidate sees every event after that state
//! and none before. Promotion reloads the candidate's version into the
//! running plugin the way a reload does (a fresh interpreter with the
//! running `state`); a rollback drops it.
//!
//! A gradual candidate is a plugin thread of its own (an actor with its
//! own queue, counts and `state`, copied from the running version's), and
//! the plugin's bus route splits the events between the two queues
//! ([`Split`]). Promotion sends every new event to the candidate's queue,
//! lets the old version handle what it holds and stop, and makes the
//! candidate the running plugin (its `state` and counts now the
//! plugin's); a rollback sends every new event to the old version and
//! gives it what the candidate had not handled. Either way no event is
//! lost, and none is handled twice.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::actor::{self, Start, Stats};
use crate::bus::{Control, Delivery, Push, Queue, Route, Split};
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::host_events::HostEvent;
use crate::manifest::Strategy;
use crate::reload::ReloadOutcome;
use crate::rollout::shadow::{self, Counts, Link, ShadowApi, Verdict};
use crate::rollout::{RolloutError, RolloutStatus};
use crate::topic::PatternSet;

/// How long a candidate's `init` may take beyond its time limit before the
/// rollout is given up.
const INIT_GRACE: Duration = Duration::from_secs(1);

/// A rollout in progress: the candidate beside a running plugin.
#[derive(Debug)]
pub(crate) struct Active {
    /// The candidate's version.
    pub(crate) def: PluginDef,
    /// The running version's, when the rollout started.
    from: String,
    /// Its counts (a gradual candidate's are its actor's [`Stats`]).
    pub(crate) counts: Arc<Counts>,
    /// How the candidate runs.
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// On a thread fed by the running version; it ends once the running
    /// version stops offering it events.
    Shadow { thread: std::thread::JoinHandle<()> },
    /// A plugin thread of its own, on its share of the events.
    Gradual(Box<Gradual>),
}

#[derive(Debug)]
struct Gradual {
    split: Arc<Split>,
    actor: actor::Actor,
    queue: Arc<Queue>,
    stats: Arc<Stats>,
    /// The candidate thread's shadow slot: the plugin's once promoted.
    slot: Arc<shadow::ShadowSlot>,
    /// Whether its thread runs a candidate (cleared at promotion, so a
    /// promoted version that crashes too often is stopped as any plugin).
    role: Arc<AtomicBool>,
    /// Looks at the candidate's counts for `promote_after` and
    /// `max_candidate_errors`; it ends by itself once the rollout is over
    /// (it may be what ends it, so it is never aborted).
    _verdicts: tokio::task::JoinHandle<()>,
}

impl Active {
    fn status(&self) -> RolloutStatus {
        let c = &self.counts;
        let mut status = RolloutStatus {
            strategy: self.def.manifest.rollout.strategy,
            from: self.from.clone(),
            to: self.def.manifest.version.to_string(),
            percent: None,
            compared: c.compared.load(Ordering::Relaxed),
            differed: c.differed.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            candidate_errors: c.candidate_errors.load(Ordering::Relaxed),
            handled_by_candidate: c.handled_by_candidate.load(Ordering::Relaxed),
        };
        if let Kind::Gradual(g) = &self.kind {
            status.percent = Some(g.split.percent.load(Ordering::Relaxed));
            status.candidate_errors = g.stats.errors.load(Ordering::Relaxed);
            status.handled_by_candidate = handled(&g.stats);
        }
        status
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

/// Who ended a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Operator,
    Itself,
}

impl Host {
    /// Whether `def`, a new version of a running plugin, is to be brought
    /// in by a rollout rather than a swap.
    pub(crate) fn rolls_out(def: &PluginDef) -> bool {
        def.manifest.rollout.strategy != Strategy::Replace
    }

    /// Starts `def` as the shadow candidate of the plugin running from
    /// `dir`; a rollout already in progress is replaced. The running
    /// version is never touched: a candidate that cannot start is a failed
    /// reload.
    pub(crate) async fn start_rollout(&self, dir: &Path, def: PluginDef) -> ReloadOutcome {
        let name = def.manifest.name.clone();
        // A new version that does not even compile is refused before the
        // candidate in progress (if any) is touched.
        let spec = def.spec(serde_json::Value::Null);
        let compiled = tokio::task::spawn_blocking(move || plughost_bindings::check(&spec)).await;
        if let Ok(errors) = compiled
            && !errors.is_empty()
        {
            let all: Vec<String> = errors.iter().map(|e| e.detailed()).collect();
            return self.rollout_failed(&name, &def, &all.join("\n"));
        }
        // A rollout in progress is replaced: its candidate goes first.
        self.drop_rollout(dir, "replaced").await;
        let found = {
            let running = self.inner.plugins.lock();
            running.iter().find(|r| r.dir == dir).map(|r| {
                (
                    r.queue.clone(),
                    r.shadow.clone(),
                    r.def.manifest.version.to_string(),
                )
            })
        };
        let Some((queue, slot, from)) = found else {
            return ReloadOutcome::Unchanged;
        };
        if def.manifest.rollout.strategy == Strategy::Gradual {
            return self.start_gradual(def, queue, from).await;
        }
        let counts = Arc::new(Counts::default());
        let capacity = def.manifest.limits.queue.clamp(1, 10_000);
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity);
        let (done, state) = oneshot::channel();
        queue.control(Control::Shadow {
            to: Link {
                tx,
                counts: counts.clone(),
            },
            done,
        });
        let Ok(state) = state.await else {
            return self.rollout_failed(&name, &def, "the plugin thread stopped");
        };
        let (ready_tx, ready) = oneshot::channel();
        let candidate = shadow::Candidate {
            def: def.clone(),
            state,
            api: Arc::new(ShadowApi::new(
                self.inner.services.clone(),
                def.manifest.publications.clone().map(PatternSet::new),
            )),
            bus: self.inner.bus.clone(),
            metrics: self.inner.services.metrics().clone(),
            counts: counts.clone(),
            verdict: self.verdict_handler(&name, &counts),
        };
        let thread = std::thread::Builder::new()
            .name(format!("shadow:{name}"))
            .spawn(move || shadow::run(candidate, rx, ready_tx));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                slot.detach();
                return self.rollout_failed(&name, &def, &format!("cannot start a thread: {e}"));
            }
        };
        let limit = def.manifest.limits.event_timeout() + INIT_GRACE;
        let error = match tokio::time::timeout(limit, ready).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e.detailed()),
            Ok(Err(_)) => Some("the candidate's thread stopped".to_owned()),
            Err(_) => Some(format!(
                "the candidate's init ran past its time limit of {} ms",
                def.manifest.limits.event_timeout_ms
            )),
        };
        if let Some(error) = error {
            slot.detach();
            return self.rollout_failed(&name, &def, &error);
        }
        let to = def.manifest.version.to_string();
        let strategy = def.manifest.rollout.strategy.as_str();
        {
            let mut running = self.inner.plugins.lock();
            match running.iter_mut().find(|r| r.name == name) {
                Some(r) => {
                    r.rollout = Some(Active {
                        def,
                        from: from.clone(),
                        counts,
                        kind: Kind::Shadow { thread },
                    });
                }
                None => {
                    slot.detach();
                    return ReloadOutcome::Unchanged;
                }
            }
        }
        self.rollout_started(&name, strategy, &from, &to);
        ReloadOutcome::Reloaded
    }

    fn rollout_started(&self, name: &str, strategy: &str, from: &str, to: &str) {
        tracing::info!(plugin = %name, strategy, from = %from, to = %to, "rollout started");
        self.inner.bus.announce(&HostEvent::RolloutStarted {
            plugin: name,
            strategy,
            from,
            to,
        });
    }

    /// Starts `def` as the gradual candidate of the plugin whose queue is
    /// `live` (version `from`): its own thread and queue, `state` copied
    /// from the running version, and its share of the events.
    async fn start_gradual(&self, def: PluginDef, live: Arc<Queue>, from: String) -> ReloadOutcome {
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
        let limit = m.limits.event_timeout() + INIT_GRACE;
        let error = match tokio::time::timeout(limit, &mut candidate.ready).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e.detailed()),
            Ok(Err(_)) => Some("the candidate's thread stopped".to_owned()),
            Err(_) => {
                candidate.in_hook.abandon();
                Some(format!(
                    "the candidate's init ran past its time limit of {} ms",
                    m.limits.event_timeout_ms
                ))
            }
        };
        if let Some(error) = error {
            queue.control(Control::Stop);
            return self.rollout_failed(&name, &def, &error);
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
    async fn gradual_verdicts(
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

    /// A candidate that could not start: the running version goes on, and
    /// it is told as a failed reload.
    fn rollout_failed(&self, name: &str, def: &PluginDef, error: &str) -> ReloadOutcome {
        tracing::error!(plugin = %name, "the new version could not start beside the running one: {error}");
        self.announce_failure(name, error);
        self.record_failure(name, Some(def), false, error);
        ReloadOutcome::Failed(error.to_owned())
    }

    /// What the candidate's thread calls with its verdict: a promotion or a
    /// rollback of this very rollout (not of one that replaced it).
    fn verdict_handler(&self, name: &str, counts: &Arc<Counts>) -> Box<dyn FnOnce(Verdict) + Send> {
        let host = self.clone();
        let name = name.to_owned();
        let counts = Arc::downgrade(counts);
        let runtime = tokio::runtime::Handle::current();
        Box::new(move |verdict| {
            runtime.spawn(async move {
                let Some(counts) = counts.upgrade() else {
                    return;
                };
                let result = match verdict {
                    Verdict::Promote => {
                        host.end_rollout(&name, true, By::Itself, Some(&counts))
                            .await
                    }
                    Verdict::Abandon => {
                        host.end_rollout(&name, false, By::Itself, Some(&counts))
                            .await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(plugin = %name, "rollout verdict not carried out: {e}");
                }
            });
        })
    }

    /// Makes plugin `name`'s candidate the running version; answers once it
    /// is in effect.
    pub async fn promote(&self, name: &str) -> Result<(), RolloutError> {
        self.end_rollout(name, true, By::Operator, None).await
    }

    /// Discards plugin `name`'s candidate; the running version goes on alone.
    pub async fn rollback(&self, name: &str) -> Result<(), RolloutError> {
        self.end_rollout(name, false, By::Operator, None).await
    }

    /// Changes the share of events plugin `name`'s gradual candidate
    /// handles, 1 to 100; 100 promotes it.
    pub async fn set_rollout_percent(&self, name: &str, percent: u32) -> Result<(), RolloutError> {
        if !(1..=100).contains(&percent) {
            return Err(RolloutError::Percent(percent));
        }
        if percent == 100 {
            let status = self.rollout_of(name)?;
            return match status {
                Some(s) if s.strategy != Strategy::Gradual => Err(RolloutError::NotGradual {
                    plugin: name.to_owned(),
                    strategy: s.strategy,
                }),
                _ => self.promote(name).await,
            };
        }
        let running = self.inner.plugins.lock();
        let Some(r) = running.iter().find(|r| r.name == name) else {
            return Err(RolloutError::UnknownPlugin(name.to_owned()));
        };
        match &r.rollout {
            None => Err(RolloutError::NoRollout(name.to_owned())),
            Some(Active {
                kind: Kind::Gradual(g),
                ..
            }) => {
                g.split.percent.store(percent as u8, Ordering::Relaxed);
                tracing::info!(plugin = %name, percent, "rollout share changed");
                Ok(())
            }
            Some(a) => Err(RolloutError::NotGradual {
                plugin: name.to_owned(),
                strategy: a.def.manifest.rollout.strategy,
            }),
        }
    }

    /// Plugin `name`'s rollout in progress, if any.
    pub fn rollout_status(&self, name: &str) -> Option<RolloutStatus> {
        self.rollout_of(name).ok().flatten()
    }

    /// The rollout of running plugin `name` (`None`: it runs one version).
    fn rollout_of(&self, name: &str) -> Result<Option<RolloutStatus>, RolloutError> {
        let running = self.inner.plugins.lock();
        match running.iter().find(|r| r.name == name) {
            Some(r) => Ok(r.rollout.as_ref().map(Active::status)),
            None => Err(RolloutError::UnknownPlugin(name.to_owned())),
        }
    }

    /// Ends plugin `name`'s rollout: the candidate is promoted or dropped.
    /// With `only`, only the rollout whose counts those are (a verdict for
    /// a candidate that was replaced meanwhile changes nothing).
    async fn end_rollout(
        &self,
        name: &str,
        promote: bool,
        by: By,
        only: Option<&Arc<Counts>>,
    ) -> Result<(), RolloutError> {
        // One change at a time, as for reloads and enables.
        let _change = self.inner.live.change_lock().await;
        let taken = {
            let mut running = self.inner.plugins.lock();
            let Some(r) = running.iter_mut().find(|r| r.name == name) else {
                return Err(RolloutError::UnknownPlugin(name.to_owned()));
            };
            let current = r.rollout.as_ref().map(|a| &a.counts);
            if let (Some(only), Some(current)) = (only, current)
                && !Arc::ptr_eq(only, current)
            {
                return Err(RolloutError::NoRollout(name.to_owned()));
            }
            let Some(active) = r.rollout.take() else {
                return Err(RolloutError::NoRollout(name.to_owned()));
            };
            // A shadow candidate gets nothing more; its thread ends on its own.
            r.shadow.detach();
            (active, r.dir.clone(), r.queue.clone())
        };
        let (active, dir, live) = taken;
        if !promote {
            let reason = match by {
                By::Operator => "operator",
                By::Itself => "candidate_errors",
            };
            self.rolled_back(name, &live, active, reason).await;
            return Ok(());
        }
        let version = active.def.manifest.version.to_string();
        let by = match by {
            By::Operator => "operator",
            By::Itself => "promote_after",
        };
        let promoted = match active.kind {
            Kind::Shadow { thread } => {
                drop(thread);
                match self.replace_one(&dir, active.def, false).await {
                    ReloadOutcome::Reloaded => Ok(()),
                    ReloadOutcome::Failed(error) => Err(error),
                    _ => return Err(RolloutError::UnknownPlugin(name.to_owned())),
                }
            }
            Kind::Gradual(g) => {
                self.promote_gradual(name, active.def, *g).await;
                Ok(())
            }
        };
        match promoted {
            Ok(()) => {
                tracing::info!(plugin = %name, version = %version, by, "rollout promoted");
                self.inner.bus.announce(&HostEvent::Promoted {
                    plugin: name,
                    version: &version,
                    by,
                });
                Ok(())
            }
            Err(error) => {
                self.inner.bus.announce(&HostEvent::RolledBack {
                    plugin: name,
                    version: &version,
                    reason: "promotion_failed",
                });
                Err(RolloutError::Candidate {
                    plugin: name.to_owned(),
                    error,
                })
            }
        }
    }

    /// Makes gradual candidate `g` (version `def`) the running plugin
    /// `name`: every new event goes to it, the old version handles what it
    /// holds and stops, and what it left (retries) goes to the new one.
    async fn promote_gradual(&self, name: &str, def: PluginDef, g: Gradual) {
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
        self.hand_over(name, exit.undelivered, &g.queue);
    }

    /// Gives events one version did not handle to the other's queue (they
    /// are still counted pending); one that cannot be queued is not lost.
    fn hand_over(&self, name: &str, undelivered: Vec<Delivery>, to: &Queue) {
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

    /// Drops the rollout of the plugin running from `dir`, if any.
    pub(crate) async fn drop_rollout(&self, dir: &Path, reason: &str) {
        let taken = {
            let mut running = self.inner.plugins.lock();
            running.iter_mut().find(|r| r.dir == dir).and_then(|r| {
                let active = r.rollout.take()?;
                r.shadow.detach();
                Some((r.name.clone(), r.queue.clone(), active))
            })
        };
        if let Some((name, live, active)) = taken {
            self.rolled_back(&name, &live, active, reason).await;
        }
    }

    /// A candidate is dropped (announced with `reason`): a gradual one's
    /// share goes back to the running version, whose queue is `live`, with
    /// what the candidate had not handled.
    pub(crate) async fn rolled_back(&self, name: &str, live: &Queue, active: Active, reason: &str) {
        let version = active.def.manifest.version.to_string();
        match active.kind {
            Kind::Shadow { thread } => drop(thread),
            Kind::Gradual(g) => {
                let mut g = *g;
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
                    .wait_exit(&mut g.actor, name, &active.def, &g.queue, &g.stats)
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
        tracing::info!(plugin = %name, version = %version, reason, "rollout rolled back");
        self.inner.bus.announce(&HostEvent::RolledBack {
            plugin: name,
            version: &version,
            reason,
        });
    }
}
