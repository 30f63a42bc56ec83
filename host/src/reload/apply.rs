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
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::plan::{Action, plan};
use super::watcher::{self, Watcher, folder_of, folders_inside};
use crate::bus::{Control, Delivery, Route};
use crate::catalog::{PluginDef, read_entry};
use crate::discovery::MANIFEST_FILE;
use crate::host::Host;
use crate::topic::PatternSet;

/// After a folder's last change, how long to wait for more before acting.
pub const SETTLE: Duration = Duration::from_millis(20);

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
#[derive(Debug)]
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
    _watcher: Watcher,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Host {
    /// Watches the plugins directories and applies every change (SPEC §5)
    /// until the handle is dropped. Needs a tokio runtime.
    pub fn watch(&self) -> std::io::Result<WatchHandle> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PathBuf>>();
        let roots: Vec<(PathBuf, PathBuf)> = self
            .inner
            .roots
            .iter()
            .map(|r| (r.clone(), r.canonicalize().unwrap_or_else(|_| r.clone())))
            .collect();
        let w = watcher::watch(&self.inner.roots, tx).map_err(std::io::Error::other)?;
        let host = self.clone();
        let task = tokio::spawn(async move {
            // folder -> (last change, whether a file other than plugin.yaml changed)
            let mut pending: BTreeMap<PathBuf, (Instant, bool)> = BTreeMap::new();
            loop {
                let next = pending.values().map(|(t, _)| *t + SETTLE).min();
                let batch = match next {
                    None => rx.recv().await,
                    Some(at) => tokio::select! {
                        b = rx.recv() => b,
                        () = tokio::time::sleep_until(at.into()) => Some(Vec::new()),
                    },
                };
                let Some(paths) = batch else { return };
                let known = host.known_folders();
                for path in paths {
                    let dirs: Vec<(PathBuf, bool)> = match folder_of(&path, &roots, &known) {
                        Some(dir) => {
                            let script = path.file_name().is_none_or(|n| n != MANIFEST_FILE);
                            vec![(dir, script)]
                        }
                        // A plain folder created, moved in, removed or moved
                        // out: the plugin folders in it that come or go.
                        None => folders_inside(&path, &roots, &known)
                            .into_iter()
                            .filter(|d| !d.join(MANIFEST_FILE).is_file() || !host.runs_from(d))
                            .map(|d| (d, true))
                            .collect(),
                    };
                    for (dir, script) in dirs {
                        let slot = pending.entry(dir).or_insert((Instant::now(), false));
                        *slot = (Instant::now(), slot.1 || script);
                    }
                }
                let now = Instant::now();
                let mut due: Vec<(PathBuf, bool)> = pending
                    .iter()
                    .filter(|(_, (t, _))| *t + SETTLE <= now)
                    .map(|(d, (_, s))| (d.clone(), *s))
                    .collect();
                // Folders that are gone first: a plugin whose folder was
                // renamed leaves the old one before it starts from the new
                // one (its name would be taken otherwise).
                due.sort_by_key(|(d, _)| d.join(MANIFEST_FILE).is_file());
                for (dir, scripts) in due {
                    pending.remove(&dir);
                    host.reload_folder(&dir, scripts).await;
                }
            }
        });
        Ok(WatchHandle { task, _watcher: w })
    }

    /// Whether a plugin runs from folder `dir`.
    fn runs_from(&self, dir: &Path) -> bool {
        self.lock_running().iter().any(|r| r.dir == dir)
    }

    fn known_folders(&self) -> BTreeSet<PathBuf> {
        self.inner
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies the current contents of plugin folder `dir` (as the host names
    /// it): starts, stops, reloads or reconfigures the plugin found there.
    /// `scripts_changed` says a file other than `plugin.yaml` changed.
    pub async fn reload_folder(&self, dir: &Path, scripts_changed: bool) -> ReloadOutcome {
        let found = dir
            .join(MANIFEST_FILE)
            .is_file()
            .then(|| read_entry(dir.to_path_buf()));
        let running = self
            .lock_running()
            .iter()
            .find(|r| r.dir == dir)
            .map(|r| r.def.clone());
        let mut action = plan(running.as_ref(), found.as_ref(), scripts_changed);
        // A name already taken by another folder's plugin cannot start here.
        if let Action::Start(def) | Action::Replace(def) = &action {
            let name = &def.manifest.name;
            if let Some(other) = self
                .lock_running()
                .iter()
                .find(|r| &r.name == name && r.dir != dir)
            {
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
                } else {
                    tracing::error!(plugin = %name, "plugin failed to load: {error}");
                    self.inner.bus.publish_host(
                        "plughost.plugin.failed",
                        json!({"plugin": name, "error": error}),
                    );
                }
                ReloadOutcome::Failed(error)
            }
        }
    }

    /// Reloads a running plugin by name, with the files as they are now.
    pub async fn reload_plugin(&self, name: &str) -> Option<ReloadOutcome> {
        let dir = self
            .lock_running()
            .iter()
            .find(|r| r.name == name)?
            .dir
            .clone();
        Some(self.reload_folder(&dir, true).await)
    }

    async fn start_one(&self, def: PluginDef) -> ReloadOutcome {
        let queue = self.stage(&def);
        match self.launch(def, queue).await {
            Ok(()) => ReloadOutcome::Started,
            Err(e) => ReloadOutcome::Failed(e),
        }
    }

    async fn stop_one(&self, dir: &Path) -> ReloadOutcome {
        let taken = {
            let mut running = self.lock_running();
            running
                .iter()
                .position(|r| r.dir == dir)
                .map(|i| running.remove(i))
        };
        let Some(r) = taken else {
            return ReloadOutcome::Unchanged;
        };
        let name = r.name.clone();
        // The plugin handled everything queued before it left the bus; what
        // still waits for a retry is dead-lettered, not lost.
        for Delivery { event, attempt } in self.stop(r, true).await {
            self.inner.bus.dead_letter(
                &name,
                &event,
                attempt,
                &format!("plugin `{name}` was unloaded"),
            );
            self.inner.bus.done();
        }
        ReloadOutcome::Stopped
    }

    async fn swap_one(&self, dir: &Path, def: PluginDef, config_only: bool) -> ReloadOutcome {
        let Some(queue) = self
            .lock_running()
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
        match answer.await {
            Ok(Ok(())) => {
                let m = &def.manifest;
                queue.reconfigure(m.limits.queue, m.limits.overflow);
                self.inner.bus.replace_route(Arc::new(Route {
                    plugin: name.clone(),
                    patterns: PatternSet::new(m.subscriptions.clone()),
                    queue: queue.clone(),
                    dropped: Default::default(),
                }));
                self.inner
                    .services
                    .set_publications(&name, m.publications.clone().map(PatternSet::new));
                if let Some(r) = self.lock_running().iter_mut().find(|r| r.dir == dir) {
                    r.def = def.clone();
                }
                tracing::info!(plugin = %name, version = %m.version, config_only, "plugin reloaded");
                self.inner.bus.publish_host(
                    "plughost.plugin.reloaded",
                    json!({"plugin": name, "version": m.version.to_string(), "config_only": config_only}),
                );
                ReloadOutcome::Reloaded
            }
            Ok(Err(error)) => {
                self.announce_failure(&name, &error);
                ReloadOutcome::Failed(error)
            }
            Err(_) => {
                let error = "the plugin thread stopped during the reload".to_owned();
                self.announce_failure(&name, &error);
                ReloadOutcome::Failed(error)
            }
        }
    }

    fn announce_failure(&self, name: &str, error: &str) {
        tracing::error!(plugin = %name, "reload failed, the running version goes on: {error}");
        let first = error.lines().next().unwrap_or_default();
        self.inner.bus.publish_host(
            "plughost.plugin.reload_failed",
            json!({"plugin": name, "error": first, "detail": error}),
        );
    }
}

fn folder_name(dir: &Path) -> String {
    dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
