//! Which plugin folders are due for a reload, given their changes and the
//! time: pure, with the clock passed in, so editors' saves are tested by hand
//! as sequences of changes.
//!
//! A save ends with a file closed after writing or renamed into place
//! ([`Change::Ended`]); a folder whose last change ended a save, with no
//! file of it still being written, is due a [`GRACE`] later (so the few
//! events a tool sends right after, like its `chmod`, join the same
//! reload). Anything else (a write not closed yet, a file removed or renamed
//! away, a platform without close events) waits for the folder to be quiet
//! for [`QUIET`] instead, and so does a burst of saves: a folder written
//! again after a save ended and before it was applied (two appends in a
//! row, "save all", a program writing a file in several goes) waits for
//! quiet from then on. A metadata change alone (`touch`, `chmod`) never
//! delays a save that has ended.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// After the end of a save, how long to wait for the rest of the burst.
pub const GRACE: Duration = Duration::from_millis(15);

/// After a change that does not end a save, how long the folder must be
/// quiet before it is due (the fallback when no end is seen).
pub const QUIET: Duration = Duration::from_millis(50);

/// What happened to a path, as far as a save is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Data was written to the file (or it was created), and it may still
    /// be open: the save goes on until it is closed.
    Written,
    /// The file holds its final content: closed after writing, or renamed
    /// into place.
    Ended,
    /// The path was removed or renamed away. When it is the plugin folder
    /// itself (or holds it), that ends the change.
    Gone,
    /// Something else changed (a folder created, a kind the platform does
    /// not tell): wait for quiet.
    Other,
    /// Only metadata changed (`touch`, `chmod`).
    Touched,
}

/// A plugin folder with changes waiting for the rest of their burst.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    /// The last change that counts for timing.
    pub(crate) at: Instant,
    /// That change ended a save.
    pub(crate) ended: bool,
    /// The folder was written again after a save had ended: several saves
    /// in a row, which wait for quiet.
    burst: bool,
    /// Files written and not closed or renamed away since.
    writing: BTreeSet<PathBuf>,
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
            ended: false,
            burst: false,
            writing: BTreeSet::new(),
            scripts: false,
            folder: false,
            libraries: BTreeSet::new(),
        }
    }

    /// When the folder is due, unless more changes come.
    fn due(&self) -> Instant {
        if self.ended && self.writing.is_empty() && !self.burst {
            self.at + GRACE
        } else {
            self.at + QUIET
        }
    }
}

/// The folders with changes not yet applied.
#[derive(Debug, Default)]
pub(crate) struct Settle {
    pending: BTreeMap<PathBuf, Pending>,
}

impl Settle {
    /// `path` in folder `dir` had `change` at `now`; `script` when it is
    /// not `plugin.yaml`.
    pub(crate) fn folder_changed(
        &mut self,
        dir: PathBuf,
        path: &Path,
        change: Change,
        script: bool,
        now: Instant,
    ) {
        let ends = change == Change::Gone && dir.starts_with(path);
        let slot = self.slot(dir, now);
        slot.folder = true;
        slot.scripts |= script;
        match change {
            Change::Touched => return,
            Change::Written => {
                slot.burst |= slot.ended;
                slot.writing.insert(path.to_path_buf());
            }
            Change::Ended => {
                slot.writing.remove(path);
            }
            Change::Gone => slot.writing.retain(|w| !w.starts_with(path)),
            Change::Other => {}
        }
        slot.at = now;
        slot.ended = change == Change::Ended || ends;
    }

    /// Library `file` of the plugin in `dir` changed at `now` (a linker
    /// writes it over a while: its folder waits for quiet).
    pub(crate) fn library_changed(&mut self, dir: PathBuf, file: PathBuf, now: Instant) {
        let slot = self.slot(dir, now);
        slot.at = now;
        slot.ended = false;
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
        self.pending.values().map(Pending::due).min()
    }

    /// Takes the folders due at `now`, in path order.
    pub(crate) fn take_due(&mut self, now: Instant) -> Vec<(PathBuf, Pending)> {
        let due: Vec<PathBuf> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due() <= now)
            .map(|(d, _)| d.clone())
            .collect();
        due.into_iter()
            .filter_map(|d| self.pending.remove(&d).map(|p| (d, p)))
            .collect()
    }

    /// Whether changes to `dir` are waiting.
    #[cfg(test)]
    pub(crate) fn is_waiting(&self, dir: &Path) -> bool {
        self.pending.contains_key(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A change to `name` in `plugins/a`.
    fn change(s: &mut Settle, name: &str, change: Change, at: Instant) {
        let dir = PathBuf::from("plugins/a");
        let path = dir.join(name);
        s.folder_changed(dir, &path, change, name != "plugin.yaml", at);
    }

    #[test]
    fn a_closed_write_is_due_after_the_grace() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "main.lua", Change::Written, t0);
        change(&mut s, "main.lua", Change::Written, t0 + ms(1));
        assert_eq!(s.next_due(), Some(t0 + ms(1) + QUIET));
        change(&mut s, "main.lua", Change::Ended, t0 + ms(2));
        assert_eq!(s.next_due(), Some(t0 + ms(2) + GRACE));
        assert!(s.take_due(t0 + ms(2) + GRACE - ms(1)).is_empty());
        let due = s.take_due(t0 + ms(2) + GRACE);
        assert_eq!(due.len(), 1);
        assert!(due[0].1.scripts && due[0].1.folder);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_write_without_a_close_waits_for_quiet() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "main.lua", Change::Written, t0);
        change(&mut s, "main.lua", Change::Written, t0 + ms(20));
        assert!(s.take_due(t0 + ms(20) + GRACE).is_empty());
        assert!(
            s.take_due(t0 + QUIET).is_empty(),
            "quiet since its last write"
        );
        assert_eq!(s.take_due(t0 + ms(20) + QUIET).len(), 1);
    }

    #[test]
    fn a_file_still_open_keeps_the_folder_waiting_when_another_is_closed() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "util/words.lua", Change::Written, t0);
        change(&mut s, "main.lua", Change::Written, t0 + ms(1));
        change(&mut s, "main.lua", Change::Ended, t0 + ms(2));
        assert!(s.take_due(t0 + ms(2) + GRACE).is_empty());
        // Its writer closes it 30 ms later: now the save has ended.
        change(&mut s, "util/words.lua", Change::Ended, t0 + ms(32));
        assert_eq!(s.next_due(), Some(t0 + ms(32) + GRACE));
    }

    #[test]
    fn saves_in_a_row_are_one_burst_that_waits_for_quiet() {
        // `echo >> main.lua` twice, or a writer saving in several goes,
        // with pauses longer than the grace after the second save.
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "main.lua", Change::Written, t0);
        change(&mut s, "main.lua", Change::Ended, t0 + ms(1));
        assert_eq!(s.next_due(), Some(t0 + ms(1) + GRACE));
        let mut at = t0 + ms(2);
        for _ in 0..4 {
            change(&mut s, "main.lua", Change::Written, at);
            change(&mut s, "main.lua", Change::Ended, at + ms(1));
            assert_eq!(s.next_due(), Some(at + ms(1) + QUIET));
            at += ms(1) + GRACE * 2;
            assert!(s.take_due(at - ms(1)).is_empty());
        }
        let last = at - GRACE * 2;
        assert_eq!(s.take_due(last + QUIET).len(), 1);
        // The next save, once that burst was applied, ends at its close.
        change(&mut s, "main.lua", Change::Written, last + ms(100));
        change(&mut s, "main.lua", Change::Ended, last + ms(101));
        assert_eq!(s.next_due(), Some(last + ms(101) + GRACE));
    }

    #[test]
    fn a_touch_alone_waits_for_quiet_and_never_delays_an_ended_save() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "main.lua", Change::Touched, t0);
        assert_eq!(s.next_due(), Some(t0 + QUIET));
        assert_eq!(s.take_due(t0 + QUIET).len(), 1);
        // vim sets the mode of the file it wrote after closing it.
        change(&mut s, "main.lua", Change::Ended, t0 + ms(100));
        change(&mut s, "main.lua", Change::Touched, t0 + ms(105));
        assert_eq!(s.next_due(), Some(t0 + ms(100) + GRACE));
    }

    #[test]
    fn a_file_renamed_away_waits_for_its_replacement() {
        // vim's backup: `main.lua` renamed to `main.lua~` (a scratch name,
        // not seen), then a new `main.lua` written and closed.
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "main.lua", Change::Gone, t0);
        assert_eq!(s.next_due(), Some(t0 + QUIET));
        change(&mut s, "main.lua", Change::Written, t0 + ms(1));
        change(&mut s, "main.lua", Change::Ended, t0 + ms(2));
        assert_eq!(s.next_due(), Some(t0 + ms(2) + GRACE));
    }

    #[test]
    fn a_folder_gone_or_moved_in_is_due_after_the_grace() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        // Renamed in place: `plugins/p` to `plugins/q`.
        let (p, q) = (PathBuf::from("plugins/p"), PathBuf::from("plugins/q"));
        s.folder_changed(p.clone(), &p, Change::Gone, true, t0);
        s.folder_changed(q.clone(), &q, Change::Ended, true, t0);
        // A group folder moved out, holding `plugins/g/b`.
        let b = PathBuf::from("plugins/g/b");
        s.folder_changed(b.clone(), Path::new("plugins/g"), Change::Gone, true, t0);
        let due: Vec<PathBuf> = s.take_due(t0 + GRACE).into_iter().map(|(d, _)| d).collect();
        assert_eq!(due, [b, p, q.clone()]);
        // A file removed from a folder: wait for quiet.
        s.folder_changed(q.clone(), &q.join("old.lua"), Change::Gone, true, t0);
        assert_eq!(s.next_due(), Some(t0 + QUIET));
    }

    #[test]
    fn a_gone_file_is_no_longer_written() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "draft.lua", Change::Written, t0);
        change(&mut s, "draft.lua", Change::Gone, t0 + ms(1));
        change(&mut s, "main.lua", Change::Ended, t0 + ms(2));
        assert_eq!(s.next_due(), Some(t0 + ms(2) + GRACE));
    }

    #[test]
    fn folders_settle_on_their_own_clocks() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        let (a, b) = (PathBuf::from("plugins/a"), PathBuf::from("plugins/b"));
        s.folder_changed(a.clone(), &a.join("x"), Change::Other, false, t0);
        s.folder_changed(b.clone(), &b.join("x"), Change::Other, false, t0 + ms(10));
        let due: Vec<PathBuf> = s.take_due(t0 + QUIET).into_iter().map(|(d, _)| d).collect();
        assert_eq!(due, [a]);
        assert!(s.is_waiting(&b));
        assert_eq!(s.take_due(t0 + ms(10) + QUIET).len(), 1);
    }

    #[test]
    fn a_manifest_only_change_is_not_a_script_change() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        change(&mut s, "plugin.yaml", Change::Ended, t0);
        let (_, p) = s.take_due(t0 + GRACE).pop().unwrap();
        assert!(!p.scripts && p.folder && p.libraries.is_empty());
    }

    #[test]
    fn a_library_found_does_not_restart_the_wait_but_a_change_does() {
        let t0 = Instant::now();
        let mut s = Settle::default();
        let dir = PathBuf::from("plugins/n");
        s.library_changed(dir.clone(), "target/release/libn.so".into(), t0);
        s.library_found(dir.clone(), "target/debug/libn.so".into(), t0 + ms(15));
        let due = s.take_due(t0 + QUIET);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1.libraries.len(), 2);
        assert!(!due[0].1.folder);
        s.library_changed(dir.clone(), "target/release/libn.so".into(), t0 + ms(60));
        assert!(s.take_due(t0 + ms(70)).is_empty());
        assert_eq!(s.take_due(t0 + ms(60) + QUIET).len(), 1);
    }
}
