//! Rollouts' lives (SPEC §13): a new version started beside the running
//! one when it arrives with `rollout.strategy: shadow`, and the verbs on
//! [`Host`] that end it: promote, roll back (by an operator, or by
//! themselves after `promote_after` clean comparisons or
//! `max_candidate_errors` errors).
//!
//! A shadow candidate starts from the running version's `state`, taken on
//! its thread between two events at the moment it starts offering them
//! (`Control::Shadow`), so the candidate sees every event after that state
//! and none before. Promotion reloads the candidate's version into the
//! running plugin the way a reload does (a fresh interpreter with the
//! running `state`); a rollback drops it. Either way the running version
//! never stops taking events, and none is handled twice by it.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::bus::Control;
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::host_events::HostEvent;
use crate::manifest::Strategy;
use crate::reload::ReloadOutcome;
use crate::rollout::shadow::{self, Counts, Link, ShadowApi, Verdict};
use crate::rollout::{RolloutError, RolloutStatus};

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
    /// Its counts.
    pub(crate) counts: Arc<Counts>,
    /// The candidate's thread (it ends once the running version stops
    /// offering it events).
    thread: std::thread::JoinHandle<()>,
}

impl Active {
    fn status(&self) -> RolloutStatus {
        let c = &self.counts;
        RolloutStatus {
            strategy: self.def.manifest.rollout.strategy,
            from: self.from.clone(),
            to: self.def.manifest.version.to_string(),
            percent: None,
            compared: c.compared.load(Ordering::Relaxed),
            differed: c.differed.load(Ordering::Relaxed),
            skipped: c.skipped.load(Ordering::Relaxed),
            candidate_errors: c.candidate_errors.load(Ordering::Relaxed),
            handled_by_candidate: c.handled_by_candidate.load(Ordering::Relaxed),
        }
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
        def.manifest.rollout.strategy == Strategy::Shadow
    }

    /// Starts `def` as the shadow candidate of the plugin running from
    /// `dir`; a rollout already in progress is replaced. The running
    /// version is never touched: a candidate that cannot start is a failed
    /// reload.
    pub(crate) async fn start_rollout(&self, dir: &Path, def: PluginDef) -> ReloadOutcome {
        let name = def.manifest.name.clone();
        let found = {
            let mut running = self.inner.plugins.lock();
            running.iter_mut().find(|r| r.dir == dir).map(|r| {
                let replaced = r.rollout.take();
                if replaced.is_some() {
                    r.shadow.detach();
                }
                (
                    r.queue.clone(),
                    r.shadow.clone(),
                    r.def.manifest.version.to_string(),
                    replaced,
                )
            })
        };
        let Some((queue, slot, from, replaced)) = found else {
            return ReloadOutcome::Unchanged;
        };
        if let Some(old) = replaced {
            self.rolled_back(&name, old, "replaced");
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
            api: Arc::new(ShadowApi::new(self.inner.services.clone())),
            bus: self.inner.bus.clone(),
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
                        thread,
                    });
                }
                None => {
                    slot.detach();
                    return ReloadOutcome::Unchanged;
                }
            }
        }
        tracing::info!(plugin = %name, strategy, from = %from, to = %to, "rollout started");
        self.inner.bus.announce(&HostEvent::RolloutStarted {
            plugin: &name,
            strategy,
            from: &from,
            to: &to,
        });
        ReloadOutcome::Reloaded
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
        match self.rollout_of(name)? {
            None => Err(RolloutError::NoRollout(name.to_owned())),
            Some(s) => Err(RolloutError::NotGradual {
                plugin: name.to_owned(),
                strategy: s.strategy,
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
            // The candidate gets nothing more; its thread ends on its own.
            r.shadow.detach();
            (active, r.dir.clone())
        };
        let (active, dir) = taken;
        if !promote {
            let reason = match by {
                By::Operator => "operator",
                By::Itself => "candidate_errors",
            };
            self.rolled_back(name, active, reason);
            return Ok(());
        }
        let version = active.def.manifest.version.to_string();
        let def = active.def.clone();
        drop(active);
        match self.replace_one(&dir, def, false).await {
            ReloadOutcome::Reloaded => {
                let by = match by {
                    By::Operator => "operator",
                    By::Itself => "promote_after",
                };
                tracing::info!(plugin = %name, version = %version, by, "rollout promoted");
                self.inner.bus.announce(&HostEvent::Promoted {
                    plugin: name,
                    version: &version,
                    by,
                });
                Ok(())
            }
            ReloadOutcome::Failed(error) => {
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
            _ => Err(RolloutError::UnknownPlugin(name.to_owned())),
        }
    }

    /// Drops the rollout of the plugin running from `dir`, if any.
    pub(crate) fn drop_rollout(&self, dir: &Path, reason: &str) {
        let taken = {
            let mut running = self.inner.plugins.lock();
            running.iter_mut().find(|r| r.dir == dir).and_then(|r| {
                let active = r.rollout.take()?;
                r.shadow.detach();
                Some((r.name.clone(), active))
            })
        };
        if let Some((name, active)) = taken {
            self.rolled_back(&name, active, reason);
        }
    }

    /// A candidate was dropped: announced with `reason`.
    pub(crate) fn rolled_back(&self, name: &str, active: Active, reason: &str) {
        let version = active.def.manifest.version.to_string();
        tracing::info!(plugin = %name, version = %version, reason, "rollout rolled back");
        self.inner.bus.announce(&HostEvent::RolledBack {
            plugin: name,
            version: &version,
            reason,
        });
        drop(active.thread);
    }
}
