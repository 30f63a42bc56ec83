//! Plugin folders coming and going: created, removed, moved in and out,
//! renamed in place, inside group folders, and a new folder whose manifest
//! is bad until fixed.

use serde_json::json;

use crate::behaviours;
use crate::support::Runtime;

use super::session::{Session, save, save_atomic};
use super::{COUNTER, code, counter, is_on, manifest, out_n, outs};

// ---------------------------------------------------------------------------
// Folders coming and going

fn a_new_folder_loads_and_a_removed_folder_unloads(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    let fx = &s.fx;
    fx.file(&format!("q/{}", rt.entry()), &code(&COUNTER, rt, "q", 1));
    fx.file("q/plugin.yaml", &manifest("q", "subscriptions: [in]\n"));
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));

    // The new folder is watched too.
    save(&s.entry("q"), &code(&COUNTER, rt, "q", 2));
    s.wait_host("reloaded", "q", 1);

    // Removed with events still queued: they are handled first.
    for n in 2..=5 {
        s.send("in", json!({"n": n, "busy": 0.04}));
    }
    s.wait("the last input published", |e| {
        is_on(e, "in") && e["payload"]["n"] == 5
    });
    std::fs::remove_dir_all(s.path("q")).unwrap();
    s.wait_host("stopped", "q", 1);
    let stopped = s.position("stopped", |e| is_on(e, "plughost.plugin.stopped"));
    let last = s.position("the last answer", out_n(5));
    assert!(
        last < stopped,
        "queued events are handled first\n{}",
        s.dump()
    );
    assert_eq!(
        outs(&s, "q"),
        [(1, 1, 1), (2, 2, 2), (3, 2, 3), (4, 2, 4), (5, 2, 5)],
        "{}",
        s.dump()
    );
    assert_eq!(s.host_events("failed", "q"), 0, "{}", s.dump());
}

fn a_folder_moved_in_loads_and_one_moved_out_unloads(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    // Prepared elsewhere on the same file system, then moved in whole.
    let staging = tempfile::tempdir_in(s.fx.path().parent().unwrap()).unwrap();
    let prepared = staging.path().join("q");
    std::fs::create_dir_all(&prepared).unwrap();
    std::fs::write(prepared.join(rt.entry()), code(&COUNTER, rt, "q", 1)).unwrap();
    std::fs::write(
        prepared.join("plugin.yaml"),
        manifest("q", "subscriptions: [in]\n"),
    )
    .unwrap();
    std::fs::rename(&prepared, s.path("q")).unwrap();
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));

    // Its files are watched from now on.
    save_atomic(&s.entry("q"), &code(&COUNTER, rt, "q", 2));
    s.wait_host("reloaded", "q", 1);
    s.send("in", json!({"n": 2}));
    s.wait("q v2's answer", out_n(2));

    std::fs::rename(s.path("q"), staging.path().join("q-out")).unwrap();
    s.wait_host("stopped", "q", 1);
    assert_eq!(outs(&s, "q"), [(1, 1, 1), (2, 2, 2)], "{}", s.dump());
}

fn a_folder_renamed_in_place_restarts_from_its_new_path(rt: Runtime) {
    // The new name sorts before the old one, and after it: either way the
    // plugin leaves the old folder before it starts from the new one.
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    for (n, (from, to)) in [("p", "a-p"), ("a-p", "z-p")].into_iter().enumerate() {
        let n = n as u64 + 1;
        std::fs::rename(s.path(from), s.path(to)).unwrap();
        s.wait_host("stopped", "p", n as usize);
        s.wait_host("started", "p", n as usize + 1);
        s.send("in", json!({"n": n}));
        s.wait("p's answer from its new folder", out_n(n));
    }
    assert_eq!(s.host_events("failed", "p"), 0, "{}", s.dump());
    // Its new folder is watched.
    save(&s.entry("z-p"), &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
}

fn a_group_folder_moved_in_loads_its_plugins_and_moved_out_unloads_them(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    // Plugin folders may sit in plain folders (SPEC §2): `group/q`, `group/r`.
    let staging = tempfile::tempdir_in(s.fx.path().parent().unwrap()).unwrap();
    for name in ["q", "r"] {
        let prepared = staging.path().join("group").join(name);
        std::fs::create_dir_all(&prepared).unwrap();
        std::fs::write(prepared.join(rt.entry()), code(&COUNTER, rt, name, 1)).unwrap();
        std::fs::write(
            prepared.join("plugin.yaml"),
            manifest(name, "subscriptions: [in]\n"),
        )
        .unwrap();
    }
    std::fs::rename(staging.path().join("group"), s.path("group")).unwrap();
    s.wait_host("started", "q", 1);
    s.wait_host("started", "r", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", |e| {
        is_on(e, "out") && e["payload"]["p"] == "q"
    });
    s.wait("r's answer", |e| {
        is_on(e, "out") && e["payload"]["p"] == "r"
    });

    // A nested plugin folder created in one go (`mkdir -p`, then its files).
    s.fx.file(
        &format!("more/deeply/t/{}", rt.entry()),
        &code(&COUNTER, rt, "t", 1),
    );
    s.fx.file(
        "more/deeply/t/plugin.yaml",
        &manifest("t", "subscriptions: [in]\n"),
    );
    s.wait_host("started", "t", 1);

    std::fs::rename(s.path("group"), staging.path().join("group-out")).unwrap();
    s.wait_host("stopped", "q", 1);
    s.wait_host("stopped", "r", 1);
    std::fs::remove_dir_all(s.path("more")).unwrap();
    s.wait_host("stopped", "t", 1);
}

fn a_new_folder_with_a_bad_manifest_fails_until_fixed(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    s.fx.file(&format!("q/{}", rt.entry()), &code(&COUNTER, rt, "q", 1));
    s.fx.file("q/plugin.yaml", &manifest("q", "subscritions: [in]\n"));
    let failed = s.wait_host("failed", "q", 1);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("q/plugin.yaml:3:1: unknown key `subscritions`"),
        "{error}"
    );
    assert_eq!(s.host_events("started", "q"), 0, "{}", s.dump());

    save(
        &s.path("q/plugin.yaml"),
        &manifest("q", "subscriptions: [in]\n"),
    );
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));
}

behaviours!(
    a_new_folder_loads_and_a_removed_folder_unloads,
    a_folder_moved_in_loads_and_one_moved_out_unloads,
    a_folder_renamed_in_place_restarts_from_its_new_path,
    a_group_folder_moved_in_loads_its_plugins_and_moved_out_unloads_them,
    a_new_folder_with_a_bad_manifest_fails_until_fixed,
);
