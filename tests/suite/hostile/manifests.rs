//! Hostile plugin folders and manifests (SPEC §2): YAML alias bombs, huge
//! manifests, symlinks (loops, entries leading outside, a plugin folder
//! that is a link), entries with `..` or absolute paths, bad and duplicate
//! names, limit values out of range. Each is an error naming its file (and
//! line and column where there is one) in `check`, `list` and `run`, while
//! a well-behaved plugin beside it still loads and handles every event.

use serde_json::{Value, json};

use crate::support::{Fixture, Run, Runtime, ev, run_binary};

/// Echoes each event's payload `n` on `out.seen`.
const ECHO: &str = "function on_event(e) bus.publish('out.seen', {n = e.payload.n}) end\n";

/// A script that announces it ran: must never run from a refused folder.
const ESCAPED: &str =
    "bus.publish('escaped', {})\nfunction on_event(e) bus.publish('escaped', {}) end\n";

/// A plugins directory holding the well-behaved `good` plugin.
fn with_good() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in.*]\n", ECHO);
    fx
}

/// Runs the host on three events; asserts the good plugin handled all of
/// them and nothing ran from outside a plugin folder.
fn run_three(fx: &Fixture) -> Run {
    let run = fx.run_with(
        &[
            ev("in.x", json!({"n": 1})),
            ev("in.x", json!({"n": 2})),
            ev("in.x", json!({"n": 3})),
        ],
        &["--no-watch"],
    );
    let mut seen: Vec<Value> = run
        .payloads("out.seen")
        .iter()
        .map(|p| p["n"].clone())
        .collect();
    seen.sort_by_key(|n| n.as_u64());
    assert_eq!(
        seen,
        [json!(1), json!(2), json!(3)],
        "the good plugin missed events\n{run}"
    );
    assert!(
        run.on("escaped").is_empty(),
        "a script outside its folder ran\n{run}"
    );
    run
}

/// `plughost list --json` on the fixture.
fn list(fx: &Fixture) -> (Run, Vec<Value>) {
    let run = run_binary(&["list", "--json", fx.path().to_str().unwrap()], None);
    let rows: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("list --json is not JSON ({e})\n{run}"));
    (run, rows.as_array().cloned().unwrap_or_default())
}

/// Asserts `check` exits 1 and prints exactly one error line containing
/// `needle` (and that line only), and returns it.
fn check_one(fx: &Fixture, needle: &str) -> String {
    let run = fx.check();
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "expected one problem\n{run}");
    assert!(lines[0].contains(needle), "expected {needle:?}\n{run}");
    lines[0].to_owned()
}

/// Writes `bad/plugin.yaml` with `manifest` and a `main.lua` that escapes.
fn bad_plugin(fx: &Fixture, manifest: &str) {
    fx.file("bad/plugin.yaml", manifest);
    fx.file("bad/main.lua", ESCAPED);
}

// ---------------------------------------------------------------- YAML

#[test]
fn a_yaml_alias_bomb_is_one_error_and_the_others_run() {
    let fx = with_good();
    let mut text = String::from(
        "name: bomb\nversion: 1.0.0\nconfig:\n  a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    let names = ["b", "c", "d", "e", "f", "g", "h", "i", "j"];
    let mut prev = "a";
    for name in names {
        let refs = vec![format!("*{prev}"); 9].join(", ");
        text.push_str(&format!("  {name}: &{name} [{refs}]\n"));
        prev = name;
    }
    bad_plugin(&fx, &text);
    let line = check_one(&fx, "too large or too complex");
    assert!(line.contains("/bad/plugin.yaml"), "{line}");
    let run = run_three(&fx);
    run.expect_code(1);
}

#[test]
fn a_huge_manifest_is_refused_before_it_is_parsed() {
    let fx = with_good();
    let mut text = String::from("name: huge\nversion: 1.0.0\nconfig:\n");
    let entry = format!("  k{{}}: {}\n", "v".repeat(100));
    let mut i = 0;
    while text.len() <= 2 * 1024 * 1024 {
        text.push_str(&entry.replace("{}", &i.to_string()));
        i += 1;
    }
    bad_plugin(&fx, &text);
    let line = check_one(&fx, "over the limit of 1048576 bytes");
    assert!(line.contains("/bad/plugin.yaml"), "{line}");
    run_three(&fx).expect_code(1);
    let (_, rows) = list(&fx);
    let bad = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/bad"))
        .unwrap();
    assert!(
        bad["errors"][0]
            .as_str()
            .unwrap()
            .contains("over the limit"),
        "{rows:?}"
    );
}

#[test]
fn deep_yaml_nesting_is_an_error() {
    let fx = with_good();
    let text = format!(
        "name: deep\nversion: 1.0.0\nconfig: {{x: {}1{}}}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    bad_plugin(&fx, &text);
    let run = fx.check();
    run.expect_code(1);
    assert!(run.stdout.contains("/bad/plugin.yaml"), "{run}");
    run_three(&fx).expect_code(1);
}

// ---------------------------------------------------------------- symlinks

#[cfg(unix)]
#[test]
fn a_symlink_loop_is_one_error_for_its_path_and_the_others_load() {
    use std::os::unix::fs::symlink;
    let fx = with_good();
    std::fs::create_dir(fx.path().join("group")).unwrap();
    symlink(fx.path(), fx.path().join("group/up")).unwrap();
    symlink(fx.path().join("self"), fx.path().join("self")).unwrap();

    let run = fx.check();
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "one error per looping path\n{run}");
    assert!(
        lines.iter().any(|l| l.contains("/group/up: symlink loop")),
        "{run}"
    );
    assert!(
        lines.iter().any(|l| l.contains("/self: symlink loop")),
        "{run}"
    );

    let (listed, rows) = list(&fx);
    listed.expect_code(1);
    assert!(
        rows.iter()
            .any(|r| r["name"] == "good" && r["errors"] == json!([])),
        "{listed}"
    );

    let run = run_three(&fx);
    run.expect_code(1);
    assert!(run.stderr.contains("symlink loop"), "{run}");
}

#[cfg(unix)]
#[test]
fn an_entry_linked_outside_the_folder_is_refused_at_its_position() {
    let fx = with_good();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil.lua");
    std::fs::write(&target, ESCAPED).unwrap();
    fx.file(
        "bad/plugin.yaml",
        "name: bad\nversion: 1.0.0\nentry: main.lua\nsubscriptions: [in.*]\n",
    );
    std::os::unix::fs::symlink(&target, fx.path().join("bad/main.lua")).unwrap();
    let line = check_one(&fx, "leads outside the plugin folder");
    assert!(
        line.contains("/bad/plugin.yaml:3:1: entry `main.lua`"),
        "{line}"
    );
    run_three(&fx).expect_code(1);
}

#[cfg(unix)]
#[test]
fn a_default_entry_linked_outside_the_folder_is_refused_naming_the_folder() {
    let fx = with_good();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("evil.rhai");
    std::fs::write(&target, "bus::publish(\"escaped\", #{});\n").unwrap();
    fx.file("bad/plugin.yaml", "name: bad\nversion: 1.0.0\n");
    std::os::unix::fs::symlink(&target, fx.path().join("bad/main.rhai")).unwrap();
    let line = check_one(&fx, "main.rhai leads outside the plugin folder");
    assert!(line.contains("/bad: main.rhai"), "{line}");
    run_three(&fx).expect_code(1);
}

#[cfg(unix)]
#[test]
fn a_plugin_folder_that_is_a_link_loads_and_runs() {
    let fx = Fixture::new();
    let elsewhere = tempfile::tempdir().unwrap();
    std::fs::write(
        elsewhere.path().join("plugin.yaml"),
        "name: good\nversion: 1.0.0\nsubscriptions: [in.*]\n",
    )
    .unwrap();
    std::fs::write(elsewhere.path().join("main.lua"), ECHO).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), fx.path().join("linked")).unwrap();
    fx.check().expect_code(0);
    run_three(&fx).expect_code(0);
}

#[test]
fn entries_with_dotdot_or_absolute_paths_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let abs = outside.path().join("evil.lua");
    std::fs::write(&abs, ESCAPED).unwrap();
    for entry in [
        "../evil.lua".to_owned(),
        "sub/../../evil.lua".to_owned(),
        abs.display().to_string(),
    ] {
        let fx = with_good();
        fx.file("evil.lua", ESCAPED);
        bad_plugin(&fx, &format!("name: bad\nversion: 1.0.0\nentry: {entry}\n"));
        let run = fx.check();
        run.expect_code(1);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "{entry}\n{run}");
        assert!(lines[0].contains("/bad/plugin.yaml:3:"), "{entry}: {run}");
        run_three(&fx).expect_code(1);
    }
}

// ---------------------------------------------------------------- names

#[test]
fn bad_names_are_errors_at_their_position() {
    for name in [
        "Bad Name",
        "'../x'",
        "'%2e%2e'",
        "\"\"",
        "-lead",
        "héllo",
        &"a".repeat(65),
        "[a, b]",
        "{a: 1}",
        "12345678901234567890123",
    ] {
        let fx = with_good();
        bad_plugin(&fx, &format!("name: {name}\nversion: 1.0.0\n"));
        let run = fx.check();
        run.expect_code(1);
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains("/bad/plugin.yaml:1:")),
            "name {name}\n{run}"
        );
        run_three(&fx).expect_code(1);
    }
}

#[test]
fn duplicate_names_refuse_both_and_the_others_run() {
    let fx = with_good();
    fx.file("one/plugin.yaml", "name: twin\nversion: 1.0.0\n");
    fx.file("one/main.lua", ESCAPED);
    fx.file("two/plugin.yaml", "name: twin\nversion: 1.0.0\n");
    fx.file("two/main.lua", ESCAPED);
    let run = fx.check();
    run.expect_code(1);
    let dup: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("duplicate plugin name `twin`"))
        .collect();
    assert_eq!(dup.len(), 2, "{run}");
    run_three(&fx).expect_code(1);
}

#[test]
fn list_names_a_plugin_whose_manifest_has_other_errors() {
    let fx = with_good();
    bad_plugin(&fx, "name: broken\nversion: 1.2.3\nlimits: {queue: lots}\n");
    let (run, rows) = list(&fx);
    run.expect_code(1);
    let bad = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/bad"))
        .unwrap();
    assert_eq!(bad["name"], "broken", "{run}");
    assert_eq!(bad["version"], "1.2.3", "{run}");
    assert!(!bad["errors"].as_array().unwrap().is_empty(), "{run}");
    let table = run_binary(&["list", fx.path().to_str().unwrap()], None);
    assert!(
        table.stdout.lines().any(|l| l.starts_with("broken ")),
        "{table}"
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn limit_values_out_of_range_are_errors_at_their_position() {
    for (limits, line) in [
        ("limits:\n  memory_mb: 0\n", 4),
        ("limits:\n  memory_mb: -1\n", 4),
        ("limits:\n  queue: 0\n", 4),
        ("limits:\n  queue: -5\n", 4),
        ("limits:\n  event_timeout_ms: 0\n", 4),
        ("limits:\n  event_timeout_ms: 18446744073709551616\n", 4),
        ("limits:\n  memory_mb: 1.5\n", 4),
        ("retry:\n  max_attempts: -1\n", 4),
        ("retry:\n  backoff_ms: 99999999999999999999\n", 4),
    ] {
        let fx = with_good();
        bad_plugin(&fx, &format!("name: bad\nversion: 1.0.0\n{limits}"));
        let run = fx.check();
        run.expect_code(1);
        let at = format!("/bad/plugin.yaml:{line}:");
        assert!(
            run.stdout.lines().any(|l| l.contains(&at)),
            "{limits:?}: expected an error at {at}\n{run}"
        );
        run_three(&fx).expect_code(1);
    }
}

/// The largest limits allowed (64 GiB, one hour, ten million events) must
/// not crash the host or starve the others: the plugin runs, and so does
/// its neighbour.
#[test]
fn the_largest_limit_values_do_not_take_the_host_down() {
    let fx = with_good();
    fx.file(
        "big/plugin.yaml",
        "name: big\nversion: 1.0.0\nsubscriptions: [in.*]\nlimits:\n  memory_mb: 65536\n  \
         event_timeout_ms: 3600000\n  queue: 10000000\n",
    );
    fx.file(
        "big/main.lua",
        "function on_event(e) bus.publish('out.big', {n = e.payload.n}) end\n",
    );
    let run = run_three(&fx);
    assert_eq!(run.payloads("out.big").len(), 3, "{run}");
}

/// SPEC §2: "a bad value is an error that names the file, line and
/// column". A memory cap of 95 PiB or a time limit of 584 million years is
/// no limit at all: both are over the maxima of `manifest/limits.rs`.
#[test]
fn limit_values_too_large_to_be_limits_are_errors_at_their_position() {
    for limit in [
        "memory_mb: 99999999999",
        "event_timeout_ms: 18446744073709551615",
    ] {
        let fx = with_good();
        bad_plugin(
            &fx,
            &format!("name: bad\nversion: 1.0.0\nlimits:\n  {limit}\n"),
        );
        let run = fx.check();
        run.expect_code(1);
        assert!(run.stdout.contains("/bad/plugin.yaml:4:"), "{limit}\n{run}");
        run_three(&fx).expect_code(1);
    }
}
