//! Which plugin folders are due for a reload, given their changes and the
//! time: pure, with the clock passed in, so bursts are tested by hand.
//!
//! Every change to a folder (or to a native plugin's library) restarts that
//! folder's wait; a folder is due once [`SETTLE`] has passed since its last
//! change, so an editor's write-rename-chmod burst yields one reload.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// After a folder's last change, how long to wait for more before acting.
pub const SETTLE: Duration = Duration::from_millis(20);

/// A plugin folder with changes waiting for the rest of their burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The last change.
    pub(crate) at: Instant,
    /// A file of the folder other than `plugin.yaml` changed.
    pub(crate) scripts: bool,
    /// A file of the folder itself changed (not only a library elsewhere).
    pub(crate) folder: bool,
    /// Changed library files of the plugin (as resolved).
    pub(crate) libraries: BTreeSet<PathBuf>,
}

impl Pending {
    fn new(at: Instant) -> Pending {
        Pending {
            at,
            scripts: false,
            folder: false,
            libraries: BTreeSet::new(),
        }
    }
}

/// The folders with changes not yet applied.
#[derive(Debug, Default)]
pub(crate) struct Settle {
    pending: BTreeMap<PathBuf, Pending>,
}

impl Settle {
    /// A file of folder `dir` changed at `now`; `script` when it is not
    /// `plugin.yaml`.
    pub(crate) fn folder_changed(&mut self, dir: PathBuf, script: bool, now: Instant) {
        let slot = self.slot(dir, now);
        slot.at = now;
        slot.folder = true;
        slot.scripts |= script;
    }

    /// Library `file` of the plugin in `dir` changed at `now`.
    pub(crate) fn library_changed(&mut self, dir: PathBuf, file: PathBuf, now: Instant) {
        let slot = self.slot(dir, now);
        slot.at = now;
        slot.libraries.insert(file);
    }

    /// Library `file` of the plugin in `dir` is to be tried, without
    /// restarting the folder's wait (found rather than changed).
    pub(crate) fn library_found(&mut self, dir: PathBuf, file: PathBuf, now: Instant) {
        self.slot(dir, now).libraries.insert(file);
    }

    fn slot(&mut self, dir: PathBuf, now: Instant) -> &mut Pending {
        self.pending.entry(dir).or_insert_with(|| Pending::new(now))
    }

    /// When the next folder is due, if any is waiting.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.pending.values().map(|p| p.at + SETTLE).min()
    }

    /// Takes the folders due at `now`, in path order.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(PathBuf, Pending)> {
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.at + SETTLE <= now)
            .map(|(d, _)| d.clone())
            .collect();
        due.into_iter()
            .filter_map(|d| self.pending.remove(&d).map(|p| (d, p)))
            .collect()
    }

    /// Whether changes to `dir` are waiting.
    #[cfg(test)]
    fn is_waiting(&self, dir: &std::path::Path) -> bool {
        self.pending.contains_key(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_of_changes_is_due_once_after_its_last_change() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        let dir = PathBuf::from("plugins/a");
        s.folder_changed(dir.clone(), true, t0);
        s.folder_changed(dir.clone(), false, t0 + ms(15));
        assert!(s.take_due(t0 + ms(30)).is_empty(), "the burst goes on");
        assert_eq!(s.next_due(), Some(t0 + ms(15) + SETTLE));
        let due = s.take_due(t0 + ms(35));
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, dir);
        assert!(due[0].1.scripts && due[0].1.folder);
        assert!(!s.is_waiting(&dir));
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn folders_settle_on_their_own_clocks() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        s.folder_changed("plugins/a".into(), false, t0);
        s.folder_changed("plugins/b".into(), false, t0 + ms(10));
        let due: Vec<PathBuf> = s
            .take_due(t0 + SETTLE)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        assert_eq!(due, [PathBuf::from("plugins/a")]);
        assert!(s.is_waiting(std::path::Path::new("plugins/b")));
        assert_eq!(s.take_due(t0 + ms(10) + SETTLE).len(), 1);
    }

    #[test]
    fn a_manifest_only_change_is_not_a_script_change() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        s.folder_changed("plugins/a".into(), false, t0);
        let (_, p) = s.take_due(t0 + SETTLE).pop().unwrap();
        assert!(!p.scripts && p.folder && p.libraries.is_empty());
    }

    #[test]
    fn a_library_found_does_not_restart_the_wait_but_a_change_does() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        let dir = PathBuf::from("plugins/n");
        s.library_changed(dir.clone(), "target/release/libn.so".into(), t0);
        s.library_found(dir.clone(), "target/debug/libn.so".into(), t0 + ms(15));
        let due = s.take_due(t0 + SETTLE);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.libraries.len(), 2);
        assert!(!due[0].1.folder);
        s.library_changed(dir.clone(), "target/release/libn.so".into(), t0 + ms(40));
        assert!(s.take_due(t0 + ms(50)).is_empty());
        assert_eq!(s.take_due(t0 + ms(40) + SETTLE).len(), 1);
    }
}
