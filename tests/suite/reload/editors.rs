//! How editors and tools save a script, each on real files under the real
//! watcher: one reload per save, of the complete file, and none for a save
//! that changes nothing. A save ends with a close after writing or a
//! rename into place (the host reloads a few milliseconds later); a writer
//! that pauses before closing, or never closes, is waited for.
//!
//! The plain, atomic-rename and vim-with-backup saves, a burst of writes
//! and a save of the same text are in [`super::scripts`].

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::behaviours;
use crate::support::Runtime;

use super::scripts::one_reload_per_save;
use super::session::{Session, save};
use super::{COUNTER, code, counter, out_n, outs};

/// Longer than the host's grace after the end of a save, shorter than its
/// quiet period.
const PAUSE: Duration = Duration::from_millis(25);

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().unwrap().to_str().unwrap();
    path.with_file_name(format!("{name}{suffix}"))
}

/// Opens `path` for writing, truncated, as an editor writing in place does.
fn open_truncated(path: &Path) -> File {
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Runs a command, which must succeed.
fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

// ---------------------------------------------------------------------------
// Editors and tools

/// vim with `backupcopy=yes`: the `4913` probe, the original copied to
/// `NAME~`, the file written in place and synced, its mode set again after
/// the close, the backup deleted.
fn save_vim_in_place(path: &Path, text: &str) {
    let probe = path.with_file_name("4913");
    std::fs::write(&probe, "").unwrap();
    std::fs::remove_file(&probe).unwrap();
    let backup = beside(path, "~");
    std::fs::copy(path, &backup).unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions();
    let mut f = open_truncated(path);
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::set_permissions(path, mode).unwrap();
    std::fs::remove_file(&backup).unwrap();
}

/// VS Code: truncated and written in place, in two writes, then closed.
fn save_vs_code(path: &Path, text: &str) {
    let mut f = open_truncated(path);
    let half = text.len() / 2;
    f.write_all(&text.as_bytes()[..half]).unwrap();
    f.write_all(&text.as_bytes()[half..]).unwrap();
}

/// JetBrains' safe write: `NAME___jb_tmp___` written and synced (which
/// takes a while), `NAME` renamed to `NAME___jb_old___`, the temporary
/// renamed to `NAME`, the old one deleted.
fn save_jetbrains(path: &Path, text: &str) {
    let tmp = beside(path, "___jb_tmp___");
    let old = beside(path, "___jb_old___");
    let mut f = File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::thread::sleep(PAUSE);
    std::fs::rename(path, &old).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    std::fs::remove_file(&old).unwrap();
}

/// `cp new NAME`: opened truncated, written, closed, by `cp` itself.
fn save_cp(path: &Path, text: &str) {
    let staging = tempfile::tempdir().unwrap();
    let new = staging.path().join("new");
    std::fs::write(&new, text).unwrap();
    run(Command::new("cp").arg(&new).arg(path));
}

/// Half written, a pause longer than the grace, the rest, then closed.
fn save_in_two_goes(path: &Path, text: &str) {
    let mut f = open_truncated(path);
    let half = text.len() / 2;
    f.write_all(&text.as_bytes()[..half]).unwrap();
    f.flush().unwrap();
    std::thread::sleep(PAUSE);
    f.write_all(&text.as_bytes()[half..]).unwrap();
}

fn a_vim_save_in_place_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_vim_in_place);
}

fn a_vs_code_save_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_vs_code);
}

fn a_jetbrains_safe_write_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_jetbrains);
}

fn a_copy_over_the_script_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_cp);
}

fn a_save_written_in_two_goes_reloads_once_when_complete(rt: Runtime) {
    // The first half alone does not compile: loading it would be a
    // `reload_failed`, which `one_reload_per_save` rules out.
    one_reload_per_save(rt, save_in_two_goes);
}

/// `sed -i`: a temporary `./sedXXXXXX` written, then renamed over the file.
fn a_sed_in_place_edit_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, |path, v2| {
        let (from, to) = match path.extension().and_then(|e| e.to_str()) {
            Some("lua") => ("v = 1,", "v = 2,"),
            _ => ("v: 1,", "v: 2,"),
        };
        run(Command::new("sed")
            .arg("-i")
            .arg("-e")
            .arg(format!("s/{from}/{to}/g"))
            .arg(path));
        assert_eq!(std::fs::read_to_string(path).unwrap(), v2);
    });
}

/// `echo ... >> NAME` twice in a row: one reload, of both lines.
fn two_quick_appends_reload_once(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    s.send("in", json!({"n": 1}));
    s.wait("v1's answer", out_n(1));
    let entry = s.entry("p");
    let comment = if rt == Runtime::Lua { "--" } else { "//" };
    run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo '{comment} one' >> \"$1\"; echo '{comment} two' >> \"$1\""
        ))
        .arg("sh")
        .arg(&entry));
    let text = std::fs::read_to_string(&entry).unwrap();
    assert!(
        text.ends_with(&format!("{comment} one\n{comment} two\n")),
        "{text}"
    );
    s.wait_host("reloaded", "p", 1);
    s.barrier();
    assert_eq!(s.host_events("reloaded", "p"), 1, "{}", s.dump());
    assert_eq!(s.host_events("reload_failed", "p"), 0, "{}", s.dump());
    // The new version took over with the state.
    s.send("in", json!({"n": 2}));
    s.wait("the answer after the reload", out_n(2));
    assert_eq!(outs(&s, "p"), [(1, 1, 1), (2, 1, 2)], "{}", s.dump());
    assert_eq!(s.payloads("init").len(), 2, "{}", s.dump());
}

/// `touch NAME`: nothing to reload. The next real change still reloads.
fn a_touch_reloads_nothing(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    let entry = s.entry("p");
    run(Command::new("touch").arg(&entry));
    s.barrier();
    assert_eq!(s.host_events("reloaded", "p"), 0, "{}", s.dump());
    save(&entry, &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 1}));
    s.wait("v2's answer", out_n(1));
    assert_eq!(outs(&s, "p"), [(1, 2, 1)], "{}", s.dump());
}

/// A writer that keeps the file open: no close ends the save, so the host
/// reloads once the file has been quiet; the close afterwards changes
/// nothing.
fn a_writer_that_keeps_the_file_open_reloads_once(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    let mut f = open_truncated(&s.entry("p"));
    f.write_all(code(&COUNTER, rt, "p", 2).as_bytes()).unwrap();
    f.flush().unwrap();
    s.wait_host("reloaded", "p", 1);
    drop(f);
    s.barrier();
    assert_eq!(s.host_events("reloaded", "p"), 1, "{}", s.dump());
    s.send("in", json!({"n": 1}));
    s.wait("v2's answer", out_n(1));
    assert_eq!(outs(&s, "p"), [(1, 2, 1)], "{}", s.dump());
}

behaviours!(
    a_vim_save_in_place_reloads_once,
    a_vs_code_save_reloads_once,
    a_jetbrains_safe_write_reloads_once,
    a_sed_in_place_edit_reloads_once,
    a_copy_over_the_script_reloads_once,
    two_quick_appends_reload_once,
    a_save_written_in_two_goes_reloads_once_when_complete,
    a_touch_reloads_nothing,
    a_writer_that_keeps_the_file_open_reloads_once,
);
