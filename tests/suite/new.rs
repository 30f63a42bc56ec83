//! SPEC §8 `plughost new`: the scaffold of each runtime passes `plughost
//! check`, runs, its hooks at work, and passes `plughost test` with the
//! events and expectations it ships; a bad name or an existing folder is a
//! usage error (exit 2).
//!
//! The native scaffold is a cargo crate: it is made inside this repository
//! (under `target/`), so it depends on `bindings/sdk` by path, and built
//! into a target dir shared by every test run, which `plughost` is pointed
//! at with `CARGO_TARGET_DIR` (SPEC §7), as cargo was.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::{Run, ev, run_binary};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// `plughost new NAME --runtime RUNTIME --dir DIR`.
pub(crate) fn new_plugin(dir: &Path, name: &str, runtime: &str) -> Run {
    run_binary(
        &[
            "new",
            name,
            "--runtime",
            runtime,
            "--dir",
            dir.to_str().unwrap(),
        ],
        None,
    )
}

/// The input of every run: one greeting, and one event the scaffold drops.
fn input() -> [Value; 2] {
    [
        ev("greeter.in", json!({"name": "world"})),
        ev("greeter.in", json!({"nom": "world"})),
    ]
}

/// What a run of the scaffold on [`input`] shows: `init` and `shutdown`
/// in the log, `on_event`'s greeting, and the dropped event dead-lettered.
fn assert_hooks_ran(run: &Run) {
    run.expect_code(0);
    assert_eq!(
        run.only("greeter.out"),
        json!({"text": "Hello, world!", "count": 1}),
        "{run}"
    );
    let dead = run.dead_letters();
    assert_eq!(dead.len(), 1, "{run}");
    assert_eq!(dead[0]["error"], "payload.name must be a string", "{run}");
    assert!(
        run.stderr.contains("greeting with Hello"),
        "init's log line\n{run}"
    );
    assert!(
        run.stderr.contains("greeted 1 time(s)"),
        "shutdown's log line\n{run}"
    );
}

fn run_args(dir: &Path) -> [&str; 8] {
    [
        "run",
        "--plugins",
        dir.to_str().unwrap(),
        "--input",
        "-",
        "--exit-when-idle",
        "--tap",
        ">",
    ]
}

fn lines(input: &[Value]) -> String {
    input.iter().map(|v| format!("{v}\n")).collect()
}

fn a_script_scaffold_checks_and_runs(runtime: &str, script: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    let made = new_plugin(&dir, "greeter", runtime);
    made.expect_code(0);
    for file in [
        "plugin.yaml",
        script,
        "README.md",
        "tests/events.jsonl",
        "tests/expect.jsonl",
    ] {
        let path = dir.join("greeter").join(file);
        assert!(path.is_file(), "{} missing\n{made}", path.display());
        assert!(
            made.stdout.contains(&path.display().to_string()),
            "stdout should name {}\n{made}",
            path.display()
        );
    }

    let check = run_binary(&["check", dir.to_str().unwrap()], None);
    check.expect_code(0);
    assert_eq!(check.stdout, "", "{check}");

    let run = run_binary(&run_args(&dir), Some(&lines(&input())));
    assert_hooks_ran(&run);
    let args = test_args(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_own_tests_pass(&run_binary(&args, None));
}

/// `plughost test` on the scaffold with its own `tests/` files.
fn test_args(dir: &Path) -> Vec<String> {
    let folder = dir.join("greeter");
    let at = |rel: &str| folder.join(rel).to_str().unwrap().to_owned();
    vec![
        "test".into(),
        at(""),
        "--events".into(),
        at("tests/events.jsonl"),
        "--expect".into(),
        at("tests/expect.jsonl"),
    ]
}

/// The scaffold passes the tests it ships: three events, two greetings and
/// a dead letter.
fn assert_own_tests_pass(run: &Run) {
    run.expect_code(0);
    let lines: Vec<Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{run}")))
        .collect();
    assert_eq!(lines.len(), 5, "{run}");
    assert_eq!(
        lines[2]["publish"]["payload"],
        json!({"text": "Hello, plughost!", "count": 2}),
        "{run}"
    );
    assert_eq!(lines[4]["outcome"], "dead_lettered", "{run}");
}

#[test]
fn a_lua_scaffold_checks_and_runs() {
    a_script_scaffold_checks_and_runs("lua", "main.lua");
}

#[test]
fn a_rhai_scaffold_checks_and_runs() {
    a_script_scaffold_checks_and_runs("rhai", "main.rhai");
}

/// Saving a new `greeting` calls the scaffold's `on_config`: the plugin
/// keeps running with its state and greets with the new words.
fn a_script_scaffold_applies_a_config_change(runtime: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plugins");
    new_plugin(&dir, "greeter", runtime).expect_code(0);
    let dir_arg = dir.to_str().unwrap();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        dir_arg,
        "--input",
        "-",
        "--exit-when-idle",
        "--tap",
        ">",
    ]);
    live.send(&ev("greeter.in", json!({"name": "ada"})));
    live.wait_for("the first greeting", |e| e["topic"] == "greeter.out");

    let manifest = dir.join("greeter/plugin.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("  greeting: Hello\n"), "{text}");
    std::fs::write(
        &manifest,
        text.replace("  greeting: Hello\n", "  greeting: Hi\n"),
    )
    .unwrap();
    let reloaded = live.wait_for("the config-only reload", |e| {
        e["topic"] == "plughost.plugin.reloaded"
    });
    assert_eq!(reloaded["payload"]["config_only"], true, "{reloaded}");

    live.send(&ev("greeter.in", json!({"name": "bob"})));
    live.wait_for("the second greeting", |e| {
        e["topic"] == "greeter.out" && e["payload"]["count"] == 2
    });
    live.close_stdin();
    let run = live.finish();
    run.expect_code(0);
    assert_eq!(
        run.payloads("greeter.out"),
        [
            json!({"text": "Hello, ada!", "count": 1}),
            json!({"text": "Hi, bob!", "count": 2}),
        ],
        "{run}"
    );
    assert!(
        run.stderr.contains("greeting now with Hi"),
        "on_config's log line\n{run}"
    );
    assert_eq!(
        run.stderr.matches("greeting with Hello").count(),
        1,
        "init runs once: a config-only change does not reload\n{run}"
    );
}

#[test]
fn a_lua_scaffold_applies_a_config_change() {
    a_script_scaffold_applies_a_config_change("lua");
}

#[test]
fn a_rhai_scaffold_applies_a_config_change() {
    a_script_scaffold_applies_a_config_change("rhai");
}

// ---------------------------------------------------------------------------
// Native

/// The target dir every run of this test builds native scaffolds into, so
/// the SDK and serde_json are compiled once, not per run.
fn shared_target() -> PathBuf {
    Path::new(ROOT).join("target/new-scaffolds-build")
}

/// Runs the binary with `CARGO_TARGET_DIR=target`, killed after a minute.
fn run_with_target(args: &[&str], stdin: Option<&str>, target: &Path) -> Run {
    let target = target.to_str().expect("a UTF-8 target path");
    crate::support::run_binary_with_env(args, stdin, &[("CARGO_TARGET_DIR", target)])
}

#[test]
fn a_native_scaffold_builds_checks_and_runs() {
    // Inside the repository, so that the crate depends on bindings/sdk by path.
    let scratch = Path::new(ROOT).join("target/new-scaffolds");
    std::fs::create_dir_all(&scratch).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("new-")
        .tempdir_in(&scratch)
        .unwrap();
    let dir = tmp.path().join("plugins");
    let made = new_plugin(&dir, "greeter", "native");
    made.expect_code(0);
    let folder = dir.join("greeter");
    for file in ["plugin.yaml", "Cargo.toml", "src/lib.rs", "README.md"] {
        assert!(folder.join(file).is_file(), "{file} missing\n{made}");
    }

    let cargo_toml = std::fs::read_to_string(folder.join("Cargo.toml")).unwrap();
    let sdk = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("plughost-sdk = { path = \""))
        .and_then(|rest| rest.strip_suffix("\" }"))
        .unwrap_or_else(|| panic!("no path dependency on plughost-sdk:\n{cargo_toml}"));
    assert!(
        folder.join(sdk).join("Cargo.toml").is_file(),
        "{sdk} is not bindings/sdk seen from {}",
        folder.display()
    );

    // The workspace's lock file pins what the crate shares with it (serde_json),
    // so the build needs no registry and reuses what the shared target holds.
    std::fs::copy(
        Path::new(ROOT).join("Cargo.lock"),
        folder.join("Cargo.lock"),
    )
    .unwrap();
    let target = shared_target();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "--quiet", "--manifest-path"])
        .arg(folder.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .expect("run cargo");
    assert!(
        built.status.success(),
        "cargo build of the native scaffold failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let check = run_with_target(&["check", dir.to_str().unwrap()], None, &target);
    check.expect_code(0);
    assert_eq!(check.stdout, "", "{check}");

    let run = run_with_target(&run_args(&dir), Some(&lines(&input())), &target);
    assert_hooks_ran(&run);
    let args = test_args(&dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_own_tests_pass(&run_with_target(&args, None, &target));
}

// ---------------------------------------------------------------------------
// Refusals

#[test]
fn a_bad_name_is_a_usage_error() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, runtime) in [
        ("Greeter", "lua"),
        ("_x", "rhai"),
        ("a.b", "lua"),
        ("0day", "native"),
    ] {
        let run = new_plugin(tmp.path(), name, runtime);
        run.expect_code(2);
        assert!(
            run.stderr.contains(&format!("`{name}`")),
            "the message should name {name}\n{run}"
        );
        assert_eq!(run.stdout, "", "{run}");
        assert!(!tmp.path().join(name).exists(), "{name} was created");
    }
    let run = new_plugin(tmp.path(), "Greeter", "lua");
    assert!(
        run.stderr
            .contains("lowercase letters, digits, `_` and `-`, starting with a letter or digit"),
        "the message should say what a name is\n{run}"
    );
}

#[test]
fn an_existing_folder_is_never_overwritten() {
    let tmp = tempfile::tempdir().unwrap();
    let folder = tmp.path().join("greeter");
    std::fs::create_dir(&folder).unwrap();
    std::fs::write(folder.join("main.lua"), "-- mine\n").unwrap();

    let run = new_plugin(tmp.path(), "greeter", "lua");
    run.expect_code(2);
    assert!(run.stderr.contains("already exists"), "{run}");
    assert_eq!(
        std::fs::read_to_string(folder.join("main.lua")).unwrap(),
        "-- mine\n"
    );
    assert!(!folder.join("plugin.yaml").exists());
}
