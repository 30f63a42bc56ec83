//! Carrying out reload plans on a running host, and the watch loop.
//!
//! A swap happens on the plugin's own thread between two events (see
//! `actor::swap`): the queue stays, so no event is lost or handled twice;
//! the new version gets the old `state` and runs `init`; only then do the old
//! version's timers stop and its `shutdown` run. Every outcome is announced
//! on the bus (`plughost.plugin.reloaded`, `reload_failed`, `started`,
//! `stopped`, `failed`) and in the log.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::fingerprint;
use super::library::{self, Hit, LibraryWatch};
use super::plan::{Action, plan};
use super::settle::{Pending, Settle};
use super::watcher::{self, Batch, folder_of, folders_inside, plain_folder};
use crate::catalog::read_entry;
use crate::discovery::MANIFEST_FILE;
use crate::host::Host;
use crate::host_events::{FailReason, HostEvent};

/// Why a change asked for during shutdown is refused.
pub(crate) const SHUTTING_DOWN: &str = "the host is shutting down";

/// After a plugin is started, stopped or reloaded by others, how long to
/// wait before looking at which libraries to watch (the running list is
/// updated right after the announcement).
const RESYNC: Duration = Duration::from_millis(20);

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version took over (or the new config was taken).
    Reloaded,
    /// The plugin was started.
    Started,
    /// The plugin was stopped.
    Stopped,
    /// Nothing changed that matters.
    Unchanged,
    /// The change was refused; the running version (if any) goes on. The error.
    Failed(String),
}

/// Keeps the watcher running; dropping it stops watching.
///
/// Dropping the handle stops the watch between two changes, as
/// [`WatchHandle::stop`] does, without waiting for the change being applied.
#[derive(Debug)]
pub struct WatchHandle {
    /// The watch loop; it owns the watcher, which stops with it.
    task: tokio::task::JoinHandle<()>,
    /// Asks the loop to stop between two changes (sent, or dropped with the
    /// handle).
    stop: Option<oneshot::Sender<()>>,
}

impl WatchHandle {
    /// Stops watching once the change being applied (if any) is done, and
    /// waits for that: no change is cut off half-way (a plugin started but
    /// not yet counted as running).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Host {
    /// Watches the plugins directories, and the library of every running
    /// native plugin, and applies every change (SPEC §5, §7) until the
    /// handle is dropped. Needs a tokio runtime.
    pub fn watch(&self) -> std::io::Result<WatchHandle> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Batch>();
        let roots: Vec<(PathBuf, PathBuf)> = self
            .inner
            .roots
            .iter()
            .map(|r| (r.clone(), r.canonicalize().unwrap_or_else(|_| r.clone())))
            .collect();
        let mut w = watcher::watch(&self.inner.roots, tx).map_err(std::io::Error::other)?;
        let mut libraries = LibraryWatch::new(roots.iter().map(|(_, c)| c.clone()).collect());
        // Plugins started, stopped or reloaded by others (the admin
        // endpoint, the embedding application) change which libraries to watch.
        let mut lifecycle = self
            .subscribe(crate::host_events::PLUGIN_EVENTS)
            .map_err(std::io::Error::other)?;
        let watched = library::watched_native(self);
        libraries.sync(&mut w, &watched);
        // A library built after discovery found none and before this watch
        // began sent its events to nobody: try those plugins now.
        let mut pending = Settle::default();
        for (dir, def) in watched {
            let unresolved_at_start = self
                .catalog()
                .entries
                .iter()
                .any(|e| e.dir == dir && e.def.is_none());
            if unresolved_at_start && !self.runs_from(&dir) && def.entry.is_file() {
                pending.library_found(dir, def.entry, Instant::now());
            }
        }
        // What each folder held when the watch began: a change is applied
        // only when the folder then holds something else.
        let mut applied: BTreeMap<PathBuf, u64> = self
            .known_folders()
            .into_iter()
            .filter_map(|dir| Some((dir.clone(), fingerprint::of_folder(&dir)?)))
            .collect();
        let host = self.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            // The library build last tried for a folder (file and stamp):
            // more events about the same build do not reload it again.
            let mut tried: BTreeMap<PathBuf, (PathBuf, library::Stamp)> = BTreeMap::new();
            let mut resync: Option<Instant> = None;
            let mut lifecycle_open = true;
            loop {
                let next = pending.next_due().into_iter().chain(resync).min();
                let mut batches: Vec<Batch> = tokio::select! {
                    _ = &mut stopped => return,
                    b = rx.recv() => match b {
                        Some(batch) => vec![batch],
                        None => return,
                    },
                    e = lifecycle.recv(), if lifecycle_open => {
                        match e {
                            // The running list is updated right after the
                            // announcement: look a moment later.
                            Some(_) => {
                                resync.get_or_insert(Instant::now() + RESYNC);
                            }
                            None => lifecycle_open = false,
                        }
                        Vec::new()
                    }
                    () = sleep_until_opt(next) => Vec::new(),
                };
                // Whatever else has come in counts before deciding what is
                // due: a folder's wait may have passed while its next
                // change was already waiting here.
                while let Ok(batch) = rx.try_recv() {
                    batches.push(batch);
                }
                let known = host.known_folders();
                for (at, (path, change)) in batches
                    .into_iter()
                    .flat_map(|(at, changes)| changes.into_iter().map(move |c| (at, c)))
                {
                    let dirs: Vec<(PathBuf, bool)> = match libraries.classify(&path) {
                        Hit::Library(file, folders) => {
                            for dir in folders {
                                pending.library_changed(dir, file.clone(), at);
                            }
                            continue;
                        }
                        Hit::Awaited => {
                            resync = Some(Instant::now());
                            continue;
                        }
                        Hit::Ignored => continue,
                        Hit::None => match folder_of(&path, &roots, &known) {
                            Some(dir) => {
                                let script = path.file_name().is_none_or(|n| n != MANIFEST_FILE);
                                vec![(dir, script)]
                            }
                            // A plain folder created, moved in, removed or moved
                            // out: the plugin folders in it that come or go,
                            // and the folder itself, looked into again once it
                            // is due (files written into a new folder before
                            // its watch began are never reported).
                            None => folders_inside(&path, &roots, &known)
                                .into_iter()
                                .filter(|d| !d.join(MANIFEST_FILE).is_file() || !host.runs_from(d))
                                .chain(plain_folder(&path, &roots, &known))
                                .map(|d| (d, true))
                                .collect(),
                        },
                    };
                    for (dir, script) in dirs {
                        pending.folder_changed(dir, &path, change, script, at);
                    }
                }
                let now = Instant::now();
                if resync.is_some_and(|at| at <= now) {
                    resync = None;
                    // A library folder appeared (the first build in a
                    // profile): what was written there before the watch.
                    for file in libraries.sync(&mut w, &library::watched_native(&host)) {
                        if let Hit::Library(file, folders) = libraries.classify(&file) {
                            for dir in folders {
                                pending.library_found(dir, file.clone(), now);
                            }
                        }
                    }
                }
                let known = host.known_folders();
                let mut due: BTreeMap<PathBuf, Pending> = BTreeMap::new();
                for (dir, p) in pending.take_due(now) {
                    if known.contains(&dir) || dir.join(MANIFEST_FILE).is_file() {
                        merge(&mut due, dir, p);
                        continue;
                    }
                    // A plain folder that came: the plugin folders in it now.
                    for d in folders_inside(&dir, &roots, &known) {
                        if !d.join(MANIFEST_FILE).is_file() || !host.runs_from(&d) {
                            merge(&mut due, d, p.clone());
                        }
                    }
                }
                let mut due: Vec<(PathBuf, Pending)> = due.into_iter().collect();
                // Folders that are gone first: a plugin whose folder was
                // renamed leaves the old one before it starts from the new
                // one (its name would be taken otherwise).
                due.sort_by_key(|(d, _)| d.join(MANIFEST_FILE).is_file());
                for (dir, p) in due {
                    // A late event of a save already applied, or a `touch`:
                    // the folder holds what it held then.
                    let print = fingerprint::of_folder(&dir);
                    if p.libraries.is_empty()
                        && print.is_some()
                        && print == applied.get(&dir).copied()
                    {
                        continue;
                    }
                    match print {
                        Some(print) => applied.insert(dir.clone(), print),
                        None => applied.remove(&dir),
                    };
                    let mut stamp = None;
                    if !p.libraries.is_empty() {
                        // Rebuilt: wait until the linker is done.
                        match library::ready(&dir, &p.libraries, tried.get(&dir)).await {
                            Some((file, s)) => stamp = s.map(|s| (file, s)),
                            None if !p.folder => continue,
                            None => {}
                        }
                    }
                    host.reload_folder(&dir, p.scripts || !p.libraries.is_empty())
                        .await;
                    // Loaded or refused, this build has had its turn.
                    if let Some(s) = stamp {
                        tried.insert(dir, s);
                    }
                    // A reload may load another file (a newer build in the
                    // other profile), or start or stop a native plugin.
                    libraries.sync(&mut w, &library::watched_native(&host));
                }
            }
        });
        Ok(WatchHandle {
            task,
            stop: Some(stop),
        })
    }

    /// The `enabled` in effect for the plugin in `dir` whose manifest says
    /// `file_enabled`: an operator's override, else the file's.
    pub(crate) fn effective_enabled(&self, dir: &Path, file_enabled: bool) -> bool {
        self.inner.live.effective_enabled(dir, file_enabled)
    }

    /// Whether a plugin runs from folder `dir`.
    fn runs_from(&self, dir: &Path) -> bool {
        self.inner.plugins.in_folder(dir).is_some()
    }

    /// Every plugin folder the host knows of.
    pub(crate) fn known_folders(&self) -> BTreeSet<PathBuf> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the current contents of plugin folder `dir` (as the host names
    /// it): starts, stops, reloads or reconfigures the plugin found there.
    /// `scripts_changed` says a file other than `plugin.yaml` changed.
    ///
    /// Changes are applied one at a time, whoever asks (the watcher, the
    /// admin endpoint, the application): two at once could start a plugin
    /// twice.
    pub async fn reload_folder(&self, dir: &Path, scripts_changed: bool) -> ReloadOutcome {
        let _one_at_a_time = self.inner.live.change_lock().await;
        if self.inner.live.is_closed() {
            return ReloadOutcome::Failed(SHUTTING_DOWN.to_owned());
        }
        self.reload_folder_locked(dir, scripts_changed).await
    }

    /// [`Host::reload_folder`], with the change lock held by the caller.
    pub(super) async fn reload_folder_locked(
        &self,
        dir: &Path,
        scripts_changed: bool,
    ) -> ReloadOutcome {
        let manifest = dir.join(MANIFEST_FILE);
        if !scripts_changed
            && let Ok(text) = std::fs::read_to_string(&manifest)
            && self.inner.live.is_own_write(dir, &text)
        {
            // The host wrote it (an enable or disable persisted): in effect.
            return ReloadOutcome::Unchanged;
        }
        let mut found = manifest.is_file().then(|| read_entry(dir.to_path_buf()));
        // What the file says, before an operator's override: `enabled` is
        // reported from this record, not from the disk.
        self.saw_manifest(dir, found.as_ref());
        if let Some(def) = found.as_mut().and_then(|e| e.def.as_mut()) {
            def.manifest.enabled = self.inner.live.effective_enabled(dir, def.manifest.enabled);
        }
        let running = self.inner.plugins.in_folder(dir).map(|v| v.def);
        let mut action = plan(running.as_ref(), found.as_ref(), scripts_changed);
        // A plugin stopped for good after crashes has no thread to swap in:
        // a saved fix starts it again.
        if let Action::Swap(def) | Action::Configure(def) = &action
            && self.is_failed(dir)
        {
            action = Action::Replace(def.clone());
        }
        // A name already taken by another folder's plugin cannot start here.
        if let Action::Start(def) | Action::Replace(def) = &action {
            let name = &def.manifest.name;
            if let Some(other) = self.inner.plugins.named(name).filter(|v| v.dir != dir) {
                action = Action::Fail(format!(
                    "{}: duplicate plugin name `{name}` (already used by {})",
                    dir.join(MANIFEST_FILE).display(),
                    other.dir.display()
                ));
            }
        }
        self.inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dir.to_path_buf());
        let name = running.as_ref().map(|d| d.manifest.name.clone());
        match action {
            Action::Nothing => ReloadOutcome::Unchanged,
            Action::Start(def) => self.start_one(*def).await,
            Action::Stop => self.stop_one(dir).await,
            Action::Replace(def) => {
                self.stop_one(dir).await;
                self.start_one(*def).await
            }
            Action::Swap(def) => self.swap_one(dir, *def, false).await,
            Action::Configure(def) => self.swap_one(dir, *def, true).await,
            Action::Fail(error) => {
                let name = name.unwrap_or_else(|| folder_name(dir));
                if running.is_some() {
                    self.announce_failure(&name, &error);
                    self.record_failure(&name, None, false, &error);
                } else {
                    tracing::error!(plugin = %name, "plugin failed to load: {error}");
                    self.inner.bus.announce(&HostEvent::Failed {
                        plugin: &name,
                        error: &error,
                        reason: FailReason::Start,
                    });
                }
                ReloadOutcome::Failed(error)
            }
        }
    }

    /// Reloads a running plugin by name, with the files as they are now.
    pub async fn reload_plugin(&self, name: &str) -> Option<ReloadOutcome> {
        let dir = self.inner.plugins.named(name)?.dir;
        Some(self.reload_folder(&dir, true).await)
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Adds folder `dir`'s changes `p` to `due`, with those it has already.
fn merge(due: &mut BTreeMap<PathBuf, Pending>, dir: PathBuf, p: Pending) {
    match due.entry(dir) {
        std::collections::btree_map::Entry::Vacant(slot) => {
            slot.insert(p);
        }
        std::collections::btree_map::Entry::Occupied(mut slot) => {
            let had = slot.get_mut();
            had.scripts |= p.scripts;
            had.folder |= p.folder;
            had.libraries.extend(p.libraries);
        }
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
