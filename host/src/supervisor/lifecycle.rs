//! The verbs of a plugin's life: start, stop, swap, resume, fail.
//!
//! These are the only functions that change the running set. Each announces
//! what it did (a [`HostEvent`]), counts it on `plugin.lifecycle.events`,
//! and logs it. Crashes and suspensions are the actor's (see the module
//! above); what they leave behind comes back here when a plugin stops.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Semaphore, oneshot, watch};

use super::Running;
use super::watch::ABANDON_GRACE;
use crate::actor::{self, Exit, Start};
use crate::bus::{Control, Delivery, Queue, Route};
use crate::catalog::PluginDef;
use crate::host::Host;
use crate::host_events::{FailReason, HostEvent};
use crate::reload::{ReloadOutcome, ReloadRecord};
use crate::rollout::shadow::ShadowSlot;
use crate::topic::PatternSet;

/// Why a plugin could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Its thread could not be spawned.
    #[error("cannot start a thread: {0}")]
    Thread(String),
    /// It failed to load or its `init` failed: the positioned error.
    #[error("{0}")]
    Plugin(String),
    /// Its thread stopped before `init` returned.
    #[error("the plugin thread stopped during init")]
    ThreadStopped,
    /// A plugin it depends on failed to start.
    #[error("dependency `{0}` failed to start")]
    Dependency(String),
    /// Its `init` ran past its time limit (in ms) and was abandoned.
    #[error("init ran past its time limit of {0} ms and was abandoned")]
    InitTimeout(u64),
}

impl Host {
    /// Puts a plugin's queue on the bus (before its `init` runs, so events
    /// published meanwhile wait for it).
    pub(crate) fn stage(&self, def: &PluginDef) -> Arc<Queue> {
        let m = &def.manifest;
        let queue = Arc::new(Queue::new(m.limits.queue, m.limits.overflow));
        self.inner.bus.add_route(Arc::new(Route {
            plugin: m.name.clone(),
            patterns: PatternSet::new(m.subscriptions.clone()),
            queue: queue.clone(),
            dropped: self.inner.services.metrics().dropped_counter(&m.name),
            shared: m.shared,
            split: None,
        }));
        self.inner
            .services
            .set_publications(&m.name, m.publications.clone().map(PatternSet::new));
        self.inner.services.metrics().register(&def.info());
        queue
    }

    /// Starts a staged plugin's thread and waits for its `init`. On failure
    /// the plugin is taken off the bus and the error returned (and announced).
    ///
    /// The plugin starts from the `state` it left when it last stopped (a
    /// disable and enable), and its counts go on from where they were.
    pub(crate) async fn launch(&self, def: PluginDef, queue: Arc<Queue>) -> Result<(), StartError> {
        let booted = self.boot(&def, &queue).await;
        self.settle(def, queue, booted)
    }

    /// Admits a booted plugin, or fails one that did not boot (its events
    /// dead-lettered, its queue off the bus).
    fn settle(
        &self,
        def: PluginDef,
        queue: Arc<Queue>,
        booted: Result<Booted, BootFailure>,
    ) -> Result<(), StartError> {
        match booted {
            Ok(booted) => {
                self.admit(def, queue, booted);
                Ok(())
            }
            Err(failed) => {
                self.fail(&def.manifest.name, &queue, &failed.detail);
                Err(failed.error)
            }
        }
    }

    /// Starts every staged plugin of `staged` (in start order: each after
    /// the plugins it depends on) and runs its `init`, several at once.
    ///
    /// A plugin's thread starts once every plugin it depends on has run
    /// `init`; one whose dependency failed does not start and fails with
    /// [`StartError::Dependency`] naming the first failed one of its
    /// `dependencies`. At most [`start_concurrency`] inits run at a time.
    /// Results are settled (announced, registered, or failed and taken off
    /// the bus) in `staged` order, so the running set, the announcements
    /// and the returned list keep the start order whatever order the inits
    /// end in.
    pub(crate) async fn launch_all(
        &self,
        staged: Vec<(PluginDef, Arc<Queue>)>,
    ) -> Vec<(String, Result<(), StartError>)> {
        let permits = Semaphore::new(start_concurrency());
        let mut gates = HashMap::new();
        let mut senders = Vec::with_capacity(staged.len());
        for (def, _) in &staged {
            let (tx, rx) = watch::channel(None::<bool>);
            gates.insert(def.manifest.name.clone(), rx);
            senders.push(tx);
        }
        let (permits, gates) = (&permits, &gates);
        let mut pending: FuturesUnordered<_> = staged
            .into_iter()
            .zip(senders)
            .enumerate()
            .map(|(i, ((def, queue), gate))| async move {
                let booted = match failed_dependency(&def, gates).await {
                    Some(dep) => {
                        let error = StartError::Dependency(dep);
                        let detail = error.to_string();
                        Err(BootFailure { error, detail })
                    }
                    None => {
                        let _permit = permits.acquire().await;
                        self.boot(&def, &queue).await
                    }
                };
                let _ = gate.send(Some(booted.is_ok()));
                (i, def, queue, booted)
            })
            .collect();
        let mut done: Vec<Option<Booting>> = std::iter::repeat_with(|| None)
            .take(pending.len())
            .collect();
        let mut settled = Vec::with_capacity(done.len());
        while let Some((i, def, queue, booted)) = pending.next().await {
            done[i] = Some((def, queue, booted));
            while let Some((def, queue, booted)) =
                done.get_mut(settled.len()).and_then(Option::take)
            {
                let name = def.manifest.name.clone();
                settled.push((name, self.settle(def, queue, booted)));
            }
        }
        settled
    }

    /// Spawns plugin `def`'s thread and waits for its `init` (within its
    /// time limit: one that ignores it is abandoned).
    async fn boot(&self, def: &PluginDef, queue: &Arc<Queue>) -> Result<Booted, BootFailure> {
        let inner = &self.inner;
        let name = &def.manifest.name;
        let registry = &inner.plugins;
        if registry.start_watching() {
            super::watch::spawn(self);
        }
        let stats = registry.stats_of(name);
        // A new run starts well, whatever the last one ended as.
        stats.set_health(actor::Health::Running);
        stats
            .consecutive_errors
            .store(0, std::sync::atomic::Ordering::Relaxed);
        let state = registry.state_of(name);
        let shadow = Arc::new(ShadowSlot::default());
        let spawned = actor::spawn(
            def,
            actor::Wiring {
                bus: inner.bus.clone(),
                services: inner.services.clone(),
                queue: queue.clone(),
                stats: stats.clone(),
                shadow: shadow.clone(),
                candidate: Arc::default(),
            },
            state,
            Start::First,
        );
        let mut actor = spawned.map_err(|e| {
            let error = StartError::Thread(e.to_string());
            let detail = error.to_string();
            BootFailure { error, detail }
        })?;
        let limit = def.manifest.limits.event_timeout() + ABANDON_GRACE;
        let (error, detail) = match tokio::time::timeout(limit, &mut actor.ready).await {
            Ok(Ok(Ok(()))) => {
                return Ok(Booted {
                    actor,
                    stats,
                    shadow,
                });
            }
            Ok(Ok(Err(e))) => (StartError::Plugin(e.to_string()), e.detailed()),
            Ok(Err(_)) => (
                StartError::ThreadStopped,
                StartError::ThreadStopped.to_string(),
            ),
            Err(_) => {
                actor.in_hook.abandon();
                let error = StartError::InitTimeout(def.manifest.limits.event_timeout_ms);
                let detail = error.to_string();
                (error, detail)
            }
        };
        Err(BootFailure { error, detail })
    }

    /// A plugin whose `init` ran joins the running set, announced started.
    fn admit(&self, def: PluginDef, queue: Arc<Queue>, booted: Booted) {
        let inner = &self.inner;
        let name = def.manifest.name.clone();
        tracing::info!(plugin = %name, version = %def.manifest.version, runtime = %def.runtime, "plugin started");
        inner.services.metrics().lifecycle_event(&name, "started");
        inner.bus.announce(&HostEvent::Started { plugin: &name });
        inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(def.dir.clone());
        inner.plugins.lock().push(Running {
            name,
            dir: def.dir.clone(),
            def,
            queue,
            actor: booted.actor,
            stats: booted.stats,
            shadow: booted.shadow,
            rollout: None,
        });
    }

    /// Stops one running plugin: it leaves the bus, handles what is already
    /// in its queue (when `drain`), runs `shutdown`, and is announced stopped.
    /// Its `state` is kept for its next start. Events it could not handle
    /// are returned, with whether it was suspended when it stopped.
    async fn stop(&self, mut r: Running, drain: bool) -> (Vec<Delivery>, bool) {
        if let Some(active) = r.rollout.take() {
            r.shadow.detach();
            self.rolled_back(&r.name, &r.queue, active, "stopped").await;
        }
        self.inner.bus.remove_route(&r.name);
        r.queue
            .control(if drain { Control::Drain } else { Control::Stop });
        let exit = self
            .wait_exit(&mut r.actor, &r.name, &r.def, &r.queue, &r.stats)
            .await;
        if r.actor.thread.is_finished() {
            let _ = tokio::task::spawn_blocking(move || r.actor.thread.join()).await;
        }
        self.inner.services.set_publications(&r.name, None);
        if let Some(e) = exit.shutdown_error {
            tracing::error!(plugin = %r.name, "{}", e.detailed());
        }
        if let Some(state) = exit.state {
            self.inner.plugins.keep_state(&r.name, state);
        }
        let suspended = r.queue.is_suspended();
        if suspended {
            r.queue.set_suspended(false);
            self.inner.bus.suspension(false);
        }
        if !exit.failed {
            tracing::info!(plugin = %r.name, "plugin stopped");
            self.inner
                .services
                .metrics()
                .lifecycle_event(&r.name, "stopped");
            self.inner
                .bus
                .announce(&HostEvent::Stopped { plugin: &r.name });
        }
        (exit.undelivered, suspended)
    }

    /// Waits for a stopping plugin's thread to end. Each hook it still runs
    /// (the events it drains, its `shutdown`) is bounded by its time limit:
    /// a call past it is abandoned, its event dead-lettered, and the thread
    /// left behind with what it held returned as undelivered.
    pub(crate) async fn wait_exit(
        &self,
        actor: &mut actor::Actor,
        name: &str,
        def: &PluginDef,
        queue: &Queue,
        stats: &actor::Stats,
    ) -> Exit {
        let limit = def.manifest.limits.event_timeout() + ABANDON_GRACE;
        loop {
            tokio::select! {
                exit = &mut actor.exited => {
                    // A thread that died without a word leaves its events
                    // in the queue and its hook record: returned all the same.
                    return exit.unwrap_or_else(|_| {
                        let mut undelivered = actor.in_hook.take_retries();
                        undelivered.extend(queue.close());
                        Exit {
                            undelivered,
                            ..Exit::default()
                        }
                    });
                }
                () = tokio::time::sleep(WATCH_TICK) => {}
            }
            let Some(abandoned) = actor.in_hook.abandon_past(limit, Instant::now()) else {
                continue;
            };
            tracing::error!(
                plugin = %name,
                "a call ran {} ms, past its time limit, while the plugin stopped; leaving its thread behind",
                abandoned.ran.as_millis()
            );
            if let Some(d) = abandoned.delivery {
                let why = format!(
                    "the plugin was stopped: a call ran past its time limit of {} ms and was abandoned",
                    def.manifest.limits.event_timeout_ms
                );
                self.inner.bus.dead_letter(name, &d.event, d.attempt, &why);
                stats.dead_lettered(&d.event.id, &why);
                self.inner.bus.done();
            }
            let mut undelivered = actor.in_hook.take_retries();
            undelivered.extend(queue.close());
            return Exit {
                undelivered,
                ..Exit::default()
            };
        }
    }

    /// Takes a plugin that could not start off the bus; events already queued
    /// for it are dead-lettered, not lost.
    pub(crate) fn fail(&self, name: &str, queue: &Queue, error: &str) {
        let bus = &self.inner.bus;
        bus.remove_route(name);
        self.inner.services.set_publications(name, None);
        tracing::error!(plugin = name, "plugin failed to start: {error}");
        self.inner
            .services
            .metrics()
            .lifecycle_event(name, "failed");
        self.inner.services.metrics().unregister(name);
        for d in queue.close() {
            bus.unhandled(
                name,
                &d.event,
                0,
                &format!("plugin `{name}` failed to start: {error}"),
            );
            bus.done();
        }
        bus.announce(&HostEvent::Failed {
            plugin: name,
            error,
            reason: FailReason::Start,
        });
    }

    /// Starts the plugin `def` (not running yet).
    pub(crate) async fn start_one(&self, def: PluginDef) -> ReloadOutcome {
        let queue = self.stage(&def);
        match self.launch(def, queue).await {
            Ok(()) => ReloadOutcome::Started,
            Err(e) => ReloadOutcome::Failed(e.to_string()),
        }
    }

    /// Stops the plugin running from `dir`, draining its queue first.
    pub(crate) async fn stop_one(&self, dir: &Path) -> ReloadOutcome {
        let taken = {
            let mut running = self.inner.plugins.lock();
            running
                .iter()
                .position(|r| r.dir == dir)
                .map(|i| running.remove(i))
        };
        let Some(r) = taken else {
            return ReloadOutcome::Unchanged;
        };
        let name = r.name.clone();
        // The plugin handled everything queued before it left the bus (a
        // suspended one did not: its waiting events are dead-lettered as
        // `suspended`); what still waits for a retry is dead-lettered, not lost.
        let (left, suspended) = self.stop(r, true).await;
        for Delivery { event, attempt } in left {
            let why = if suspended {
                crate::bus::SUSPENDED.to_owned()
            } else {
                format!("plugin `{name}` was unloaded")
            };
            self.inner.bus.unhandled(&name, &event, attempt, &why);
            self.inner.bus.done();
        }
        ReloadOutcome::Stopped
    }

    /// Whether plugin `name` was stopped for good after crashes (it is
    /// still in the running set, its thread gone).
    pub(crate) fn is_failed(&self, dir: &Path) -> bool {
        self.inner
            .plugins
            .lock()
            .iter()
            .any(|r| r.dir == dir && r.stats.health() == actor::Health::Failed)
    }

    /// Resumes plugin `name` at once if it is suspended (an `enable`).
    /// Whether it is running.
    pub(crate) fn resume(&self, name: &str) -> bool {
        let running = self.inner.plugins.lock();
        match running.iter().find(|r| r.name == name) {
            Some(r) => {
                if r.queue.is_suspended() {
                    r.queue.control(Control::Resume);
                }
                true
            }
            None => false,
        }
    }

    /// Swaps the plugin running from `dir` to `def` between two events
    /// (`config_only`: hands it the new config), on its own thread.
    pub(crate) async fn swap_one(
        &self,
        dir: &Path,
        def: PluginDef,
        config_only: bool,
    ) -> ReloadOutcome {
        if !config_only {
            if Self::rolls_out(&def) {
                return self.start_rollout(dir, def).await;
            }
            // A new version swapped in outright ends a rollout in progress.
            self.drop_rollout(dir, "replaced").await;
        }
        self.replace_one(dir, def, config_only).await
    }

    /// Swaps `def` into the plugin running from `dir` (a reload, or the
    /// new config), whatever its `rollout.strategy`.
    pub(crate) async fn replace_one(
        &self,
        dir: &Path,
        def: PluginDef,
        config_only: bool,
    ) -> ReloadOutcome {
        let Some(queue) = self
            .inner
            .plugins
            .lock()
            .iter()
            .find(|r| r.dir == dir)
            .map(|r| r.queue.clone())
        else {
            return ReloadOutcome::Unchanged;
        };
        let name = def.manifest.name.clone();
        let (done, answer) = oneshot::channel();
        let boxed = Box::new(def.clone());
        queue.control(if config_only {
            Control::Configure { def: boxed, done }
        } else {
            Control::Swap { def: boxed, done }
        });
        let error = match answer.await {
            Ok(Ok(config_only)) => {
                self.swapped(dir, &queue, &def, config_only);
                return ReloadOutcome::Reloaded;
            }
            Ok(Err(error)) => error.detailed(),
            Err(_) => "the plugin thread stopped during the reload".to_owned(),
        };
        self.announce_failure(&name, &error);
        self.record_failure(&name, Some(&def), config_only, &error);
        ReloadOutcome::Failed(error)
    }

    /// A swap took effect: the route, the registry and the announcements
    /// follow the new version.
    fn swapped(&self, dir: &Path, queue: &Arc<Queue>, def: &PluginDef, config_only: bool) {
        let m = &def.manifest;
        let name = m.name.as_str();
        queue.reconfigure(m.limits.queue, m.limits.overflow);
        // A gradual rollout's share stays through a change of the running version.
        let split = self.inner.bus.route(name).and_then(|r| r.split.clone());
        self.inner.bus.replace_route(Arc::new(Route {
            plugin: name.to_owned(),
            patterns: PatternSet::new(m.subscriptions.clone()),
            queue: queue.clone(),
            dropped: self.inner.services.metrics().dropped_counter(name),
            shared: m.shared,
            split,
        }));
        self.inner
            .services
            .set_publications(name, m.publications.clone().map(PatternSet::new));
        if let Some(r) = self.inner.plugins.lock().iter_mut().find(|r| r.dir == dir) {
            r.def = def.clone();
        }
        tracing::info!(plugin = %name, version = %m.version, config_only, "plugin reloaded");
        self.inner.live.record_reload(
            name,
            ReloadRecord {
                at: SystemTime::now(),
                version: m.version.to_string(),
                config_only,
                error: None,
            },
        );
        let metrics = self.inner.services.metrics();
        metrics.register(&def.info());
        metrics.reload(name, "ok");
        metrics.lifecycle_event(name, "reloaded");
        self.inner.bus.announce(&HostEvent::Reloaded {
            plugin: name,
            version: &m.version.to_string(),
            config_only,
        });
    }

    /// Adds a refused reload to the plugin's history: the version that
    /// failed, or `?` when the manifest did not say.
    pub(crate) fn record_failure(
        &self,
        name: &str,
        def: Option<&PluginDef>,
        config_only: bool,
        error: &str,
    ) {
        self.inner.live.record_reload(
            name,
            ReloadRecord {
                at: SystemTime::now(),
                version: def.map_or_else(|| "?".to_owned(), |d| d.manifest.version.to_string()),
                config_only,
                error: Some(error.to_owned()),
            },
        );
    }

    /// Announces a refused change; the running version goes on.
    pub(crate) fn announce_failure(&self, name: &str, error: &str) {
        tracing::error!(plugin = %name, "reload failed, the running version goes on: {error}");
        let metrics = self.inner.services.metrics();
        metrics.reload(name, "error");
        metrics.lifecycle_event(name, "reload_failed");
        self.inner.bus.announce(&HostEvent::ReloadFailed {
            plugin: name,
            error,
        });
    }

    /// Dead-letters, as `suspended`, every event waiting for a suspended
    /// plugin (shutdown and `--exit-when-idle` do not wait for them).
    /// Returns how many.
    pub(crate) fn release_suspended(&self) -> usize {
        let queues: Vec<(String, Arc<Queue>)> = self
            .inner
            .plugins
            .lock()
            .iter()
            .filter(|r| r.queue.is_suspended())
            .map(|r| (r.name.clone(), r.queue.clone()))
            .collect();
        let mut count = 0;
        for (name, queue) in queues {
            for d in queue.take_parked() {
                self.inner
                    .bus
                    .unhandled(&name, &d.event, d.attempt, crate::bus::SUSPENDED);
                self.inner.bus.done();
                count += 1;
            }
        }
        count
    }

    /// Takes every plugin off the bus and closes its queue (shutdown past
    /// the drain deadline): publishers blocked on a full queue are released.
    /// Returns the events that were still queued.
    pub(crate) fn close_queues(&self) -> Vec<(String, Delivery)> {
        let running = self.inner.plugins.lock();
        let mut left = Vec::new();
        for r in running.iter() {
            self.inner.bus.remove_route(&r.name);
            left.extend(r.queue.close().into_iter().map(|d| (r.name.clone(), d)));
        }
        left
    }

    /// Stops every plugin (dependents first) without draining. Each stop is
    /// bounded by the plugin's own time limits (see `wait_exit`), so
    /// shutdown always ends. Events still queued are returned by plugin;
    /// those of a suspended plugin are dead-lettered as `suspended`.
    pub(crate) async fn stop_all(&self) -> Vec<(String, Delivery)> {
        let running: Vec<Running> = std::mem::take(&mut *self.inner.plugins.lock());
        let mut left = Vec::new();
        for r in running.into_iter().rev() {
            let name = r.name.clone();
            let (undelivered, suspended) = self.stop(r, false).await;
            for d in undelivered {
                if suspended {
                    self.inner
                        .bus
                        .unhandled(&name, &d.event, d.attempt, crate::bus::SUSPENDED);
                    self.inner.bus.done();
                } else if self.inner.bus.hand_back(&name, &d.event) {
                    self.inner.bus.done();
                } else {
                    left.push((name.clone(), d));
                }
            }
        }
        left
    }
}

/// How often a stopping plugin's hook is looked at.
const WATCH_TICK: Duration = Duration::from_millis(50);

/// A plugin thread whose `init` has returned, not yet in the running set.
struct Booted {
    actor: actor::Actor,
    stats: Arc<actor::Stats>,
    shadow: Arc<ShadowSlot>,
}

/// Why a plugin did not boot: the error, and the text announced and logged
/// (a script error with its traceback).
struct BootFailure {
    error: StartError,
    detail: String,
}

/// A plugin of [`Host::launch_all`] whose boot ended, waiting for its turn
/// to be settled.
type Booting = (PluginDef, Arc<Queue>, Result<Booted, BootFailure>);

/// How many plugins run `init` at once at start: enough to keep every core
/// busy while other threads are being created or wait for their `init` to
/// be noticed, few enough that a thousand plugins do not all compete at once.
pub(crate) fn start_concurrency() -> usize {
    const PER_CORE: usize = 4;
    std::thread::available_parallelism().map_or(1, usize::from) * PER_CORE
}

/// Waits until every plugin `def` depends on has booted (or failed to);
/// the first of its `dependencies` that failed, if any.
async fn failed_dependency(
    def: &PluginDef,
    gates: &HashMap<String, watch::Receiver<Option<bool>>>,
) -> Option<String> {
    let mut failed = None;
    for dep in &def.manifest.dependencies {
        // Only startable plugins are staged, so every dependency has a gate.
        let Some(gate) = gates.get(&dep.name) else {
            continue;
        };
        let mut gate = gate.clone();
        let started = match gate.wait_for(Option::is_some).await {
            Ok(outcome) => *outcome == Some(true),
            Err(_) => false,
        };
        if !started && failed.is_none() {
            failed = Some(dep.name.clone());
        }
    }
    failed
}
