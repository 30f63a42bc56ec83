//! What a raw file-system event from notify means for a save: pure, and
//! tested with the event sequences editors and tools really produce.
//!
//! On Linux, inotify tells when a file written is closed
//! (`Access(Close(Write))`) and when a file is renamed into place
//! (`Modify(Name(To | Both))`): either ends a save ([`Change::Ended`]).
//! Reads (opening, closing after reading, access times) are no changes:
//! loading a plugin reads its files, and reacting to that would reload
//! forever. Where the platform only says "renamed" without a side, the
//! path that exists afterwards is the one renamed into place.

use std::path::{Path, PathBuf};

use notify::event::{AccessKind, AccessMode, CreateKind, MetadataKind, ModifyKind, RenameMode};
use notify::{Event, EventKind};

use super::settle::Change;

/// The changes event `event` reports, path by path; `exists` tells whether
/// a path exists now (asked only for a rename without a side).
pub fn changes_of(event: &Event, exists: impl Fn(&Path) -> bool) -> Vec<(PathBuf, Change)> {
    let all = |change: Change| event.paths.iter().map(|p| (p.clone(), change)).collect();
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => all(Change::Ended),
        EventKind::Access(_) => Vec::new(),
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => Vec::new(),
        EventKind::Modify(ModifyKind::Metadata(_)) => all(Change::Touched),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => all(Change::Gone),
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => all(Change::Ended),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            // `paths` are the old name, then the new one.
            let mut changes: Vec<(PathBuf, Change)> = event
                .paths
                .iter()
                .map(|p| (p.clone(), Change::Gone))
                .collect();
            if let Some(last) = changes.last_mut() {
                last.1 = Change::Ended;
            }
            changes
        }
        EventKind::Modify(ModifyKind::Name(_)) => event
            .paths
            .iter()
            .map(|p| {
                let change = if exists(p) {
                    Change::Ended
                } else {
                    Change::Gone
                };
                (p.clone(), change)
            })
            .collect(),
        EventKind::Modify(_) => all(Change::Written),
        EventKind::Create(CreateKind::Folder) => all(Change::Other),
        EventKind::Create(_) => all(Change::Written),
        EventKind::Remove(_) => all(Change::Gone),
        EventKind::Any | EventKind::Other => all(Change::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reload::settle::{GRACE, QUIET, Settle};
    use crate::reload::watcher::is_scratch;
    use notify::event::{DataChange, RemoveKind};
    use std::time::{Duration, Instant};

    const DIR: &str = "plugins/a";

    fn ev(kind: EventKind, names: &[&str]) -> Event {
        names
            .iter()
            .fold(Event::new(kind), |e, n| e.add_path(Path::new(DIR).join(n)))
    }

    fn create(name: &str) -> Event {
        ev(EventKind::Create(CreateKind::File), &[name])
    }
    fn modify(name: &str) -> Event {
        ev(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            &[name],
        )
    }
    fn close(name: &str) -> Event {
        ev(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            &[name],
        )
    }
    fn chmod(name: &str) -> Event {
        ev(
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::Permissions)),
            &[name],
        )
    }
    fn remove(name: &str) -> Event {
        ev(EventKind::Remove(RemoveKind::File), &[name])
    }
    /// A rename as inotify reports it: from, to, and both.
    fn rename(from: &str, to: &str) -> [Event; 3] {
        [
            ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::From)),
                &[from],
            ),
            ev(EventKind::Modify(ModifyKind::Name(RenameMode::To)), &[to]),
            ev(
                EventKind::Modify(ModifyKind::Name(RenameMode::Both)),
                &[from, to],
            ),
        ]
    }
    /// Open with truncation, write, close: `std::fs::write`, `cp`, VS Code.
    fn write(name: &str) -> [Event; 3] {
        [modify(name), modify(name), close(name)]
    }

    /// Feeds `events` to a settle, one every 100 µs, as the watcher maps
    /// them (editors' scratch files dropped), applying what is due in
    /// between; returns when reloads happened and when each event came.
    fn replay(events: &[Event]) -> (Vec<Instant>, Vec<Instant>) {
        let mut s = Settle::default();
        let mut reloads = Vec::new();
        let mut times = Vec::new();
        let mut now = Instant::now();
        for e in events {
            now += Duration::from_micros(100);
            times.push(now);
            while let Some(due) = s.next_due().filter(|d| *d <= now) {
                s.take_due(due);
                reloads.push(due);
            }
            for (path, change) in changes_of(e, |_| true) {
                if is_scratch(path.file_name().unwrap().to_str().unwrap()) {
                    continue;
                }
                s.folder_changed(DIR.into(), &path, change, true, now);
            }
        }
        while let Some(due) = s.next_due() {
            s.take_due(due);
            reloads.push(due);
        }
        (reloads, times)
    }

    /// Exactly one reload, a grace after event number `end` (from 1), the
    /// last that ends the save.
    fn one_reload_at_the_grace(events: &[Event], end: usize) {
        let (reloads, times) = replay(events);
        assert_eq!(reloads, [times[end - 1] + GRACE], "{events:#?}");
    }

    #[test]
    fn reads_are_no_changes() {
        for kind in [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
            EventKind::Access(AccessKind::Read),
            EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)),
        ] {
            assert!(changes_of(&ev(kind, &["main.lua"]), |_| true).is_empty());
        }
    }

    #[test]
    fn a_rename_ends_a_save_for_the_new_name_only() {
        let [_, _, both] = rename("x", "main.lua");
        assert_eq!(
            changes_of(&both, |_| true),
            [
                (PathBuf::from("plugins/a/x"), Change::Gone),
                (PathBuf::from("plugins/a/main.lua"), Change::Ended)
            ]
        );
        // A rename without a side: the path that is there now is the new name.
        let any = ev(
            EventKind::Modify(ModifyKind::Name(RenameMode::Any)),
            &["x", "main.lua"],
        );
        assert_eq!(
            changes_of(&any, |p| p.ends_with("main.lua")),
            [
                (PathBuf::from("plugins/a/x"), Change::Gone),
                (PathBuf::from("plugins/a/main.lua"), Change::Ended)
            ]
        );
    }

    #[test]
    fn a_write_in_place_reloads_once_at_its_close() {
        // VS Code, `cp new main.lua`, `std::fs::write`.
        one_reload_at_the_grace(&write("main.lua"), 3);
    }

    #[test]
    fn a_vim_save_with_a_backup_reloads_once() {
        // `4913` probe, `main.lua` renamed to `main.lua~`, a new file
        // written, the mode set, the backup deleted.
        let mut events = vec![create("4913"), close("4913"), remove("4913")];
        events.extend(rename("main.lua", "main.lua~"));
        events.push(create("main.lua"));
        events.extend(write("main.lua"));
        events.push(chmod("main.lua"));
        events.push(remove("main.lua~"));
        one_reload_at_the_grace(&events, 10);
    }

    #[test]
    fn a_vim_save_in_place_reloads_once() {
        // `backupcopy=yes`: the backup is a copy, the file written in place.
        let mut events = vec![create("4913"), close("4913"), remove("4913")];
        events.extend([create("main.lua~"), modify("main.lua~"), close("main.lua~")]);
        events.extend(write("main.lua"));
        events.push(remove("main.lua~"));
        one_reload_at_the_grace(&events, 9);
    }

    #[test]
    fn a_jetbrains_safe_write_reloads_once() {
        let tmp = "main.lua___jb_tmp___";
        let old = "main.lua___jb_old___";
        let mut events = vec![create(tmp)];
        events.extend(write(tmp));
        events.extend(rename("main.lua", old));
        events.extend(rename(tmp, "main.lua"));
        events.push(remove(old));
        one_reload_at_the_grace(&events, 10);
    }

    #[test]
    fn a_sed_in_place_edit_reloads_once() {
        let mut events = vec![create("sedX1b2Q9")];
        events.extend(write("sedX1b2Q9"));
        events.push(chmod("sedX1b2Q9"));
        events.extend(rename("sedX1b2Q9", "main.lua"));
        one_reload_at_the_grace(&events, 8);
    }

    #[test]
    fn two_appends_in_a_row_reload_once_when_quiet() {
        // `echo >> main.lua` twice: a burst of two saves.
        let events = [
            modify("main.lua"),
            close("main.lua"),
            modify("main.lua"),
            close("main.lua"),
        ];
        let (reloads, times) = replay(&events);
        assert_eq!(reloads, [times[3] + QUIET]);
    }

    #[test]
    fn a_mode_change_alone_waits_for_the_quiet_period() {
        // `chmod`; the fingerprint then finds nothing changed. (GNU `touch`
        // also opens the file for writing: its close ends a save, and the
        // fingerprint finds nothing changed all the same.)
        let (reloads, times) = replay(&[chmod("main.lua")]);
        assert_eq!(reloads, [times[0] + QUIET]);
    }

    #[test]
    fn a_writer_that_pauses_without_closing_waits_for_its_close() {
        let (reloads, times) = replay(&[modify("main.lua")]);
        assert_eq!(reloads, [times[0] + QUIET]);
        // Half written, 20 ms, the rest, closed: one reload, at the close.
        let t0 = Instant::now();
        let mut s = Settle::default();
        let feed = |s: &mut Settle, e: &Event, at: Instant| {
            for (path, change) in changes_of(e, |_| true) {
                s.folder_changed(DIR.into(), &path, change, true, at);
            }
        };
        feed(&mut s, &modify("main.lua"), t0);
        let rest = t0 + Duration::from_millis(20);
        assert!(s.take_due(rest).is_empty());
        feed(&mut s, &modify("main.lua"), rest);
        feed(&mut s, &close("main.lua"), rest);
        assert_eq!(s.next_due(), Some(rest + GRACE));
    }
}
