//! Enabling and disabling a plugin while the host runs (SPEC §10).
//!
//! [`Host::set_enabled`] starts or stops the plugin and answers once that is
//! in effect. By default nothing is written: the choice is an override kept
//! in [`super::state::LiveState`] for as long as the host runs (the watcher
//! respects it). Asked to persist, the host sets `enabled:` in the plugin's
//! `plugin.yaml` instead ([`crate::manifest::edit`], comments kept), written
//! atomically (a scratch file renamed over it).

use std::path::{Path, PathBuf};

use super::apply::ReloadOutcome;
use super::seen::SeenManifests;
use super::state::LiveState;
use crate::discovery::MANIFEST_FILE;
use crate::host::Host;

/// Why [`Host::set_enabled`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ToggleError {
    /// No plugin of that name is running or in any known folder.
    #[error("no plugin named `{0}`")]
    Unknown(String),
    /// `plugin.yaml` could not be read or written.
    #[error("{}: {error}", path.display())]
    Io {
        /// The manifest.
        path: PathBuf,
        /// Why.
        error: std::sync::Arc<std::io::Error>,
    },
    /// `plugin.yaml` could not be edited.
    #[error(transparent)]
    Edit(#[from] crate::manifest::edit::EditError),
    /// The host is shutting down: nothing starts or stops any more but by it.
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl PartialEq for ToggleError {
    /// I/O errors are equal when their paths and kinds are.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ToggleError::Unknown(a), ToggleError::Unknown(b)) => a == b,
            (ToggleError::ShuttingDown, ToggleError::ShuttingDown) => true,
            (ToggleError::Edit(a), ToggleError::Edit(b)) => a == b,
            (ToggleError::Io { path: a, error: x }, ToggleError::Io { path: b, error: y }) => {
                a == b && x.kind() == y.kind()
            }
            _ => false,
        }
    }
}

impl Host {
    /// Enables or disables plugin `name`: starts it (running `init`) or stops
    /// it (its queue drained, `shutdown` run), and returns once done. With
    /// `persist`, `enabled:` is written into its `plugin.yaml`; otherwise the
    /// choice holds until the host stops or the file's `enabled:` is edited.
    /// Enabling a running plugin, or disabling a stopped one, is
    /// [`ReloadOutcome::Unchanged`].
    pub async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        persist: bool,
    ) -> Result<ReloadOutcome, ToggleError> {
        let live = &self.inner.live;
        let _one_at_a_time = live.change_lock().await;
        if live.is_closed() {
            return Err(ToggleError::ShuttingDown);
        }
        let dir = self
            .plugin_folder(name)
            .ok_or_else(|| ToggleError::Unknown(name.to_owned()))?;
        if persist {
            write_enabled(&dir, enabled, live)?;
            self.seen_manifests().set_enabled(&dir, enabled);
            live.clear_override(&dir);
        } else {
            let file_enabled = manifest_in(&dir).map(|m| m.enabled);
            live.set_override(&dir, enabled, file_enabled);
        }
        let running = self.inner.plugins.in_folder(&dir).is_some();
        Ok(match (enabled, running) {
            // Enabling a plugin stopped for good after crashes starts it
            // again, from its files.
            (true, true) if self.is_failed(&dir) => {
                self.stop_one(&dir).await;
                self.reload_folder_locked(&dir, true).await
            }
            // Enabling a suspended plugin resumes it (SPEC §12).
            (true, true) => {
                self.resume(name);
                ReloadOutcome::Unchanged
            }
            (false, false) => ReloadOutcome::Unchanged,
            (true, false) => self.reload_folder_locked(&dir, true).await,
            (false, true) => self.stop_one(&dir).await,
        })
    }

    /// Whether plugin `name` is enabled now: the operator's override, or its
    /// manifest's `enabled`. `None` for an unknown plugin or a manifest that
    /// does not parse. Reads no file: the manifest as the host last read it
    /// ([`Host::seen_manifests`]).
    pub fn is_enabled(&self, name: &str) -> Option<bool> {
        let dir = self.plugin_folder(name)?;
        let file = self.seen_manifests().enabled_in(&dir)?;
        Some(self.inner.live.peek_enabled(&dir, file))
    }

    /// The folder plugin `name` runs from, else the one whose manifest named
    /// it when last read, else the catalog's, unless that folder's manifest
    /// has since named another plugin (a rename). Reads no file.
    pub fn plugin_folder(&self, name: &str) -> Option<PathBuf> {
        if let Some(v) = self.inner.plugins.named(name) {
            return Some(v.dir);
        }
        let seen = self.seen_manifests();
        if let Some(dir) = seen.folder_of(name) {
            return Some(dir.to_path_buf());
        }
        let dir = self.catalog().find(name).map(|e| e.dir.clone())?;
        let renamed = seen.name_in(&dir).is_some_and(|n| n != name);
        (!renamed).then_some(dir)
    }

    /// The manifests as the host last read them, filled from the catalog on
    /// first use (a folder whose entry did not resolve, e.g. a native plugin
    /// not built yet, has its manifest parsed then, once).
    pub(crate) fn seen_manifests(&self) -> SeenGuard<'_> {
        let mut guard = self.inner.live.manifests();
        if guard.is_none() {
            let mut seen = SeenManifests::default();
            for entry in &self.catalog().entries {
                match &entry.def {
                    Some(def) => seen.saw(&entry.dir, &def.manifest.name, def.manifest.enabled),
                    None => {
                        if let Some(m) = manifest_in(&entry.dir) {
                            seen.saw(&entry.dir, &m.name, m.enabled);
                        }
                    }
                }
            }
            *guard = Some(seen);
        }
        SeenGuard(guard)
    }

    /// Records the manifest just read from `dir` (`found`, as the catalog
    /// reads a folder; `None`: no manifest). A manifest that parses but
    /// whose entry did not resolve is parsed again here for its name.
    pub(crate) fn saw_manifest(&self, dir: &Path, found: Option<&crate::catalog::Entry>) {
        let parsed = match found {
            None => None,
            Some(entry) => match &entry.def {
                Some(def) => Some((def.manifest.name.clone(), def.manifest.enabled)),
                None => manifest_in(dir).map(|m| (m.name, m.enabled)),
            },
        };
        let mut seen = self.seen_manifests();
        match parsed {
            Some((name, enabled)) => seen.saw(dir, &name, enabled),
            None => seen.forget(dir),
        }
    }
}

/// The lock on the manifests last read, once filled.
pub(crate) struct SeenGuard<'a>(std::sync::MutexGuard<'a, Option<SeenManifests>>);

impl std::ops::Deref for SeenGuard<'_> {
    type Target = SeenManifests;
    fn deref(&self) -> &SeenManifests {
        self.0.as_ref().expect("filled before the guard is made")
    }
}

impl std::ops::DerefMut for SeenGuard<'_> {
    fn deref_mut(&mut self) -> &mut SeenManifests {
        self.0.as_mut().expect("filled before the guard is made")
    }
}

/// The manifest of the plugin folder `dir`, if it parses (its entry is not
/// looked for: a native plugin's library may not be built yet).
fn manifest_in(dir: &Path) -> Option<crate::manifest::Manifest> {
    crate::manifest::parse_file(&dir.join(MANIFEST_FILE)).ok()
}

/// Sets `enabled:` in `dir/plugin.yaml`, telling `live` what it writes
/// before the watcher can see it.
fn write_enabled(dir: &Path, enabled: bool, live: &LiveState) -> Result<(), ToggleError> {
    let path = dir.join(MANIFEST_FILE);
    let fail = |e: std::io::Error| ToggleError::Io {
        path: path.clone(),
        error: std::sync::Arc::new(e),
    };
    let text = std::fs::read_to_string(&path).map_err(fail)?;
    let edited = crate::manifest::edit::set_enabled(&path, &text, enabled)?;
    if edited == text {
        return Ok(());
    }
    // A dot file: the watcher takes it for an editor's scratch file.
    let scratch = dir.join(format!(".{MANIFEST_FILE}.plughost-tmp"));
    std::fs::write(&scratch, &edited).map_err(fail)?;
    if let Ok(meta) = std::fs::metadata(&path) {
        let _ = std::fs::set_permissions(&scratch, meta.permissions());
    }
    live.wrote_manifest(dir, edited);
    std::fs::rename(&scratch, &path).map_err(|e| {
        let _ = std::fs::remove_file(&scratch);
        fail(e)
    })
}
