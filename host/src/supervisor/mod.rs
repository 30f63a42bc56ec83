//! The supervisor: the one owner of every plugin's life (SPEC §12).
//!
//! # Design
//!
//! Each running plugin is a child: a [`Running`] entry in the [`Registry`],
//! holding its queue on the bus and its actor thread. Nothing else adds,
//! removes or replaces an entry: the verbs (`start`, `stop`, `swap`,
//! `resume`, `fail`) are methods on [`crate::Host`] in `lifecycle.rs`, and
//! reload, enable/disable, the admin endpoint and shutdown all call them.
//! Others only read the registry through its queries.
//!
//! Supervision itself happens where the events are, on the plugin's own
//! thread ([`crate::actor`]): it follows errors in a row with
//! [`policy::Health`] (suspension, half-open trials) and crashes with
//! [`policy::Restarts`] (a fresh interpreter after a backoff, stopped for
//! good after too many). Both are pure and tested with a hand-driven clock.
//! A suspended plugin's events wait in its queue ([`crate::bus::Queue`]
//! parks them), and the bus's idleness does not wait for them.
//!
//! What outlives a run of a plugin is kept here by name ([`Kept`]): its
//! counts and its `state`, so a disable and enable, or a crash restart,
//! carry both over (SPEC §4: `state` survives for the host's life).
//!
//! A call that ignores its time limit (native code in a loop) cannot be
//! stopped from its own thread: `watch` abandons it and restarts the plugin
//! on a new thread, as for a crash.
//!
//! Every announcement is a [`crate::host_events::HostEvent`].

pub(crate) mod lifecycle;
pub(crate) mod policy;
mod rollout;
pub(crate) mod watch;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;

use crate::actor::{self, Stats};
use crate::bus::Queue;
use crate::catalog::PluginDef;
use crate::rollout::shadow::ShadowSlot;

/// A started plugin.
#[derive(Debug)]
pub(crate) struct Running {
    pub(crate) name: String,
    /// The plugin folder (as discovered), which live reload watches.
    pub(crate) dir: PathBuf,
    /// The version running now.
    pub(crate) def: PluginDef,
    pub(crate) queue: Arc<Queue>,
    pub(crate) actor: actor::Actor,
    pub(crate) stats: Arc<Stats>,
    /// Where its thread offers handled events to a shadow candidate.
    pub(crate) shadow: Arc<ShadowSlot>,
    /// The new version running beside it, if a rollout is in progress.
    pub(crate) rollout: Option<rollout::Active>,
}

/// What the host keeps of a plugin between two runs of it.
#[derive(Debug, Default)]
pub(crate) struct Kept {
    /// Its counts, shared with the actor of every run.
    pub(crate) stats: Arc<Stats>,
    /// Its `state` when it last stopped.
    pub(crate) state: Option<Value>,
}

/// A snapshot of one running plugin, for readers.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// Its queue.
    pub(crate) queue: Arc<Queue>,
    /// Its folder.
    pub(crate) dir: PathBuf,
    /// The version running.
    pub(crate) def: PluginDef,
    /// Events in its queue.
    pub(crate) queue_depth: usize,
    /// Its counts.
    pub(crate) stats: Arc<Stats>,
}

/// The running plugins, in start order, and what is kept of every plugin.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    running: Mutex<Vec<Running>>,
    kept: Mutex<HashMap<String, Kept>>,
    /// Whether the watch runs (it starts with the first plugin).
    watching: std::sync::atomic::AtomicBool,
}

impl Registry {
    /// The running set, for the verbs of `lifecycle.rs` and the watch only.
    pub(super) fn lock(&self) -> MutexGuard<'_, Vec<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn kept(&self) -> MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the watch still has to be started (true once).
    pub(super) fn start_watching(&self) -> bool {
        !self
            .watching
            .swap(true, std::sync::atomic::Ordering::SeqCst)
    }

    /// The counts of plugin `name`, kept across its runs.
    pub(crate) fn stats_of(&self, name: &str) -> Arc<Stats> {
        self.kept()
            .entry(name.to_owned())
            .or_default()
            .stats
            .clone()
    }

    /// The `state` plugin `name` left when it last stopped (or started
    /// with): what a new thread of it starts from when the old one cannot
    /// be asked.
    pub(crate) fn state_of(&self, name: &str) -> Option<Value> {
        self.kept().get(name).and_then(|k| k.state.clone())
    }

    /// Plugin `name`'s counts are `stats` from now on (a gradual
    /// candidate promoted: its counts are the plugin's).
    pub(crate) fn set_stats(&self, name: &str, stats: Arc<Stats>) {
        self.kept().entry(name.to_owned()).or_default().stats = stats;
    }

    /// Keeps the `state` plugin `name` left.
    pub(crate) fn keep_state(&self, name: &str, state: Value) {
        self.kept().entry(name.to_owned()).or_default().state = Some(state);
    }

    /// Names of the running plugins, in start order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.lock().iter().map(|r| r.name.clone()).collect()
    }

    /// The plugin running from folder `dir`.
    pub(crate) fn in_folder(&self, dir: &Path) -> Option<View> {
        self.lock().iter().find(|r| r.dir == dir).map(view)
    }

    /// The running plugin called `name`.
    pub(crate) fn named(&self, name: &str) -> Option<View> {
        self.lock().iter().find(|r| r.name == name).map(view)
    }

    /// Every running plugin.
    pub(crate) fn all(&self) -> Vec<View> {
        self.lock().iter().map(view).collect()
    }
}

pub(crate) fn view(r: &Running) -> View {
    View {
        queue: r.queue.clone(),
        dir: r.dir.clone(),
        def: r.def.clone(),
        queue_depth: r.queue.len(),
        stats: r.stats.clone(),
    }
}
