//! What the host remembers about its plugins' changes at run time: `enabled`
//! set through the admin endpoint, manifests the host wrote itself, and each
//! plugin's recent reloads.
//!
//! An operator's enable or disable without `?persist=true` writes nothing to
//! the plugin's files, so it is kept here as an override of the manifest's
//! `enabled`. It lasts until the host stops, or until the file's own
//! `enabled:` is edited: that edit is the newer word and wins. With
//! `?persist=true` the host writes `plugin.yaml` itself; the watcher then
//! sees that write, which is already in effect and must not reload the
//! plugin a second time. It also holds the lock that makes changes apply one
//! at a time, and the manifests last read (`seen`), so that reporting a
//! plugin's `enabled` reads no file. Pure data otherwise: [`LiveState`] does no I/O.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::seen::SeenManifests;

/// How many reloads of each plugin are remembered.
pub const HISTORY_LEN: usize = 10;

/// How long a manifest the host wrote waits for the watcher to see it.
const WRITTEN_TTL: Duration = Duration::from_secs(10);

/// One reload of a plugin, as `GET /plugins/{name}` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadRecord {
    /// When it happened.
    pub at: SystemTime,
    /// The version loaded (or that failed to load).
    pub version: String,
    /// Whether only `config` changed (handed to `on_config`).
    pub config_only: bool,
    /// `None` when the new version took over; the error when it was refused.
    pub error: Option<String>,
}

/// An operator's `enabled`, and what the file said when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Override {
    enabled: bool,
    /// The manifest's `enabled` then (`None`: it did not parse).
    file_enabled: Option<bool>,
}

/// The run-time memory of [`crate::Host`]'s plugin changes.
#[derive(Debug, Default)]
pub struct LiveState {
    overrides: Mutex<HashMap<PathBuf, Override>>,
    written: Mutex<HashMap<PathBuf, (String, Instant)>>,
    history: Mutex<HashMap<String, VecDeque<ReloadRecord>>>,
    /// The manifests last read, once first asked for (filled from the catalog).
    manifests: Mutex<Option<SeenManifests>>,
    /// Held while a change (start, stop, reload) is applied.
    changes: tokio::sync::Mutex<()>,
    /// Set when the host shuts down: no change applies any more.
    closed: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LiveState {
    /// Waits for the other changes to be applied; the change that holds the
    /// guard is the only one until it is dropped.
    pub async fn change_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changes.lock().await
    }

    /// Refuses every later change: the host is shutting down. Call it with
    /// the change lock held, so no change is half-way through.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the host is shutting down ([`LiveState::close`]).
    pub fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Sets the operator's `enabled` for the plugin in `dir`, whose manifest
    /// says `file_enabled` now.
    pub fn set_override(&self, dir: &Path, enabled: bool, file_enabled: Option<bool>) {
        lock(&self.overrides).insert(
            dir.to_path_buf(),
            Override {
                enabled,
                file_enabled,
            },
        );
    }

    /// Forgets the operator's `enabled` for `dir` (the file says it now).
    pub fn clear_override(&self, dir: &Path) {
        lock(&self.overrides).remove(dir);
    }

    /// The `enabled` in effect for `dir`, whose manifest says `file_enabled`:
    /// the operator's, unless the file's value changed since it was set
    /// (then the override is dropped and the file's holds).
    pub fn effective_enabled(&self, dir: &Path, file_enabled: bool) -> bool {
        let mut overrides = lock(&self.overrides);
        match overrides.get(dir).copied() {
            None => file_enabled,
            Some(o) if o.file_enabled.is_some_and(|f| f != file_enabled) => {
                overrides.remove(dir);
                file_enabled
            }
            Some(o) => o.enabled,
        }
    }

    /// The `enabled` in effect for `dir` as a read sees it: the operator's,
    /// else `file_enabled` (the manifest as the host last read it). A read
    /// never drops an override: only applying a changed file does
    /// ([`LiveState::effective_enabled`]), so a file edited but not yet
    /// applied cannot undo an operator's later word.
    pub fn peek_enabled(&self, dir: &Path, file_enabled: bool) -> bool {
        lock(&self.overrides)
            .get(dir)
            .map_or(file_enabled, |o| o.enabled)
    }

    /// Remembers that the host wrote `text` as `dir`'s manifest.
    pub fn wrote_manifest(&self, dir: &Path, text: String) {
        lock(&self.written).insert(dir.to_path_buf(), (text, Instant::now()));
    }

    /// Whether `text`, the manifest of `dir` now, is the one the host wrote
    /// lately (and not yet seen): a change already in effect. Either way the
    /// record is used up.
    pub fn is_own_write(&self, dir: &Path, text: &str) -> bool {
        lock(&self.written)
            .remove(dir)
            .is_some_and(|(t, at)| t == text && at.elapsed() < WRITTEN_TTL)
    }

    /// The manifests last read: `None` until first filled (by
    /// `Host::seen_manifests`, from the catalog).
    pub(crate) fn manifests(&self) -> std::sync::MutexGuard<'_, Option<SeenManifests>> {
        lock(&self.manifests)
    }

    /// Adds a reload of plugin `name` to its history (the last
    /// `HISTORY_LEN` are kept).
    pub fn record_reload(&self, name: &str, record: ReloadRecord) {
        let mut history = lock(&self.history);
        let list = history.entry(name.to_owned()).or_default();
        if list.len() == HISTORY_LEN {
            list.pop_front();
        }
        list.push_back(record);
    }

    /// Plugin `name`'s recent reloads, oldest first.
    pub fn reloads(&self, name: &str) -> Vec<ReloadRecord> {
        lock(&self.history)
            .get(name)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_override_holds_until_the_file_changes_its_word() {
        let s = LiveState::default();
        let dir = Path::new("plugins/p");
        assert!(s.effective_enabled(dir, true));
        s.set_override(dir, false, Some(true));
        assert!(!s.effective_enabled(dir, true), "the operator's word");
        assert!(!s.effective_enabled(dir, true), "still, on the next look");
        // The author edits `enabled:` in the file: the newer word wins.
        assert!(!s.effective_enabled(dir, false));
        assert!(s.effective_enabled(dir, true), "the override is gone");
        s.set_override(dir, true, None);
        assert!(s.effective_enabled(dir, false), "unknown file word: kept");
        s.clear_override(dir);
        assert!(!s.effective_enabled(dir, false));
    }

    #[test]
    fn a_read_never_drops_an_override() {
        let s = LiveState::default();
        let dir = Path::new("plugins/p");
        assert!(s.peek_enabled(dir, true));
        // Disabled while the file (edited, not yet applied) says false and
        // the host still holds true: reads keep the operator's word.
        s.set_override(dir, false, Some(false));
        assert!(!s.peek_enabled(dir, true));
        assert!(!s.peek_enabled(dir, true), "still, on the next read");
        assert!(
            !s.effective_enabled(dir, false),
            "applying the same file keeps it"
        );
    }

    #[test]
    fn an_own_write_is_recognised_once() {
        let s = LiveState::default();
        let dir = Path::new("plugins/p");
        s.wrote_manifest(dir, "enabled: false\n".into());
        assert!(!s.is_own_write(dir, "enabled: true\n"), "another text");
        assert!(!s.is_own_write(dir, "enabled: false\n"), "used up");
        s.wrote_manifest(dir, "enabled: false\n".into());
        assert!(s.is_own_write(dir, "enabled: false\n"));
        assert!(!s.is_own_write(dir, "enabled: false\n"));
    }

    #[test]
    fn history_keeps_the_last_reloads() {
        let s = LiveState::default();
        for i in 0..HISTORY_LEN + 3 {
            s.record_reload(
                "p",
                ReloadRecord {
                    at: SystemTime::UNIX_EPOCH,
                    version: format!("1.0.{i}"),
                    config_only: false,
                    error: None,
                },
            );
        }
        let h = s.reloads("p");
        assert_eq!(h.len(), HISTORY_LEN);
        assert_eq!(h[0].version, "1.0.3");
        assert_eq!(
            h[HISTORY_LEN - 1].version,
            format!("1.0.{}", HISTORY_LEN + 2)
        );
        assert!(s.reloads("q").is_empty());
    }
}
