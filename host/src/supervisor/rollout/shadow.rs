//! A shadow rollout's start: the candidate's thread, started from the
//! running version's `state` at the point it starts offering events, and
//! its verdicts (`promote_after`, `max_candidate_errors`) carried out.

use std::sync::Arc;

use tokio::sync::oneshot;

use super::{Active, By, Kind, candidate_started};
use crate::bus::{Control, Queue};
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::reload::ReloadOutcome;
use crate::rollout::shadow::{self, Counts, Link, ShadowApi, ShadowSlot, Verdict};
use crate::topic::PatternSet;

impl Host {
    /// Starts `def` as the shadow candidate of plugin `name`, whose queue
    /// is `queue` and shadow slot `slot` (version `from`).
    pub(super) async fn start_shadow(
        &self,
        name: String,
        def: PluginDef,
        queue: Arc<Queue>,
        slot: Arc<ShadowSlot>,
        from: String,
    ) -> ReloadOutcome {
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
        if let Err(not) = candidate_started(&def, ready).await {
            slot.detach();
            return self.rollout_failed(&name, &def, &not.error);
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

    /// What the candidate's thread calls with its verdict: a promotion or a
    /// rollback of this very rollout (not of one that replaced it).
    pub(super) fn verdict_handler(
        &self,
        name: &str,
        counts: &Arc<Counts>,
    ) -> Box<dyn FnOnce(Verdict) + Send> {
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
}
