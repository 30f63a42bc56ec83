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
//! (`bus::Split`). Promotion sends every new event to the candidate's queue,
//! lets the old version handle what it holds and stop, and makes the
//! candidate the running plugin (its `state` and counts now the
//! plugin's); a rollback sends every new event to the old version and
//! gives it what the candidate had not handled. Either way no event is
//! lost, and none is handled twice.
//!
//! - `shadow`: starting a shadow candidate and its verdicts.
//! - `gradual`: starting a gradual candidate, its verdicts, its promotion,
//!   and handing events from one version to the other.

mod gradual;
mod shadow;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::bus::Queue;
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::host_events::HostEvent;
use crate::manifest::Strategy;
use crate::reload::ReloadOutcome;
use crate::rollout::shadow::Counts;
use crate::rollout::{RolloutError, RolloutStatus};

/// How long a candidate's `init` may take beyond its time limit before the
/// rollout is given up.
const INIT_GRACE: Duration = Duration::from_secs(1);

/// Why a candidate did not start.
struct NotStarted {
    /// The error, as a failed reload shows it.
    error: String,
    /// Its `init` ran out of time: its thread is still in it.
    timed_out: bool,
}

/// Waits for a candidate's `init` (told through `ready`), up to its time
/// limit and a grace.
async fn candidate_started(
    def: &PluginDef,
    ready: impl std::future::Future<
        Output = Result<
            Result<(), plughost_bindings::ScriptError>,
            tokio::sync::oneshot::error::RecvError,
        >,
    >,
) -> Result<(), NotStarted> {
    let limit = def.manifest.limits.event_timeout() + INIT_GRACE;
    let failed = |error: String| NotStarted {
        error,
        timed_out: false,
    };
    match tokio::time::timeout(limit, ready).await {
        Ok(Ok(Ok(()))) => Ok(()),
        Ok(Ok(Err(e))) => Err(failed(e.detailed())),
        Ok(Err(_)) => Err(failed("the candidate's thread stopped".to_owned())),
        Err(_) => Err(NotStarted {
            error: format!(
                "the candidate's init ran past its time limit of {} ms",
                def.manifest.limits.event_timeout_ms
            ),
            timed_out: true,
        }),
    }
}

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
    Gradual(Box<gradual::Gradual>),
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
            g.fill(&mut status);
        }
        status
    }
}

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

    /// Starts `def` as the candidate of the plugin running from `dir`, by
    /// its `rollout.strategy`; a rollout already in progress is replaced.
    /// The running version is never touched: a candidate that cannot
    /// start is a failed reload.
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
        self.start_shadow(name, def, queue, slot, from).await
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

    /// A candidate that could not start: the running version goes on, and
    /// it is told as a failed reload.
    fn rollout_failed(&self, name: &str, def: &PluginDef, error: &str) -> ReloadOutcome {
        tracing::error!(plugin = %name, "the new version could not start beside the running one: {error}");
        self.announce_failure(name, error);
        self.record_failure(name, Some(def), false, error);
        ReloadOutcome::Failed(error.to_owned())
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
            Kind::Gradual(g) => self.stop_gradual(name, &active.def, *g, live).await,
        }
        tracing::info!(plugin = %name, version = %version, reason, "rollout rolled back");
        self.inner.bus.announce(&HostEvent::RolledBack {
            plugin: name,
            version: &version,
            reason,
        });
    }
}
