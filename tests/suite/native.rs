//! Native plugins through the real binary: real `cdylib`s built with cargo
//! (the `stemmer-native` example and the fixtures in
//! `tests/fixtures/native/`), loaded beside Lua and Rhai plugins.
//!
//! Everything is built once per test run: the fixtures into
//! `target/native-fixtures/` (under `$CARGO_TARGET_DIR` when set) in the dev
//! and the release profile, since a panic must be caught in both; the
//! example into the workspace's `target/debug/`, where the host finds it by
//! crate name.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::{Fixture, Run, Runtime, ev};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The fixture libraries built for this test run.
struct Built {
    /// The target dir they were built into.
    target: PathBuf,
}

impl Built {
    /// The library of `krate` built in `profile` (`debug`, `release`).
    fn library(&self, profile: &str, krate: &str) -> PathBuf {
        self.target.join(profile).join(library_file(krate))
    }
}

/// `libname.so` (`.dylib`, `.dll`) of a crate on this platform.
fn library_file(krate: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        krate.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The workspace's target dir, as cargo and the host see it.
fn workspace_target() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| Path::new(ROOT).join("target"), PathBuf::from)
}

/// Builds the fixtures in the dev and the release profile, once, into
/// their own target dir (they are not workspace members).
fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let target = workspace_target().join("native-fixtures");
        let fixtures = format!("{ROOT}/tests/fixtures/native/Cargo.toml");
        cargo_build(&["--manifest-path", &fixtures], Some(&target), false);
        cargo_build(&["--manifest-path", &fixtures], Some(&target), true);
        Built { target }
    })
}

/// Builds the `stemmer-native` example, once, where `plughost run` looks
/// for it by crate name: the workspace's `target/debug/`. `cargo test`
/// alone does not build a `cdylib`; every test that runs `plugins/` calls
/// this first.
pub fn example_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let manifest = format!("{ROOT}/Cargo.toml");
        cargo_build(
            &["--manifest-path", &manifest, "-p", "stemmer-native"],
            None,
            false,
        );
    });
}

fn cargo_build(args: &[&str], target: Option<&Path>, release: bool) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet"]).args(args);
    if let Some(target) = target {
        cmd.arg("--target-dir").arg(target);
    }
    if release {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the binary, with `CARGO_TARGET_DIR` set to `target_dir` when given.
fn run_env(args: &[&str], stdin: Option<&str>, target_dir: Option<&Path>) -> Run {
    match target_dir {
        Some(t) => {
            let t = t.to_str().expect("a UTF-8 target path");
            crate::support::run_binary_with_env(args, stdin, &[("CARGO_TARGET_DIR", t)])
        }
        None => crate::support::run_binary_with_env(args, stdin, &[]),
    }
}

/// `run --exit-when-idle --tap '>'` over `dir` with `input`.
fn run(dir: &Path, input: &[Value], target_dir: Option<&Path>) -> Run {
    let text: String = input.iter().map(|v| format!("{v}\n")).collect();
    let args = [
        "run",
        "--plugins",
        dir.to_str().unwrap(),
        "--input",
        "-",
        "--tap",
        ">",
        "--exit-when-idle",
    ];
    run_env(&args, Some(&text), target_dir)
}

fn check(dir: &Path, target_dir: Option<&Path>) -> Run {
    run_env(&["check", dir.to_str().unwrap()], None, target_dir)
}

/// A probe plugin whose `entry` is `entry`, with `extra` manifest lines.
fn probe(f: &Fixture, entry: &str, extra: &str) {
    f.file(
        "probe/plugin.yaml",
        &format!(
            "name: probe\nversion: 1.0.0\nruntime: native\nentry: {entry}\n\
             subscriptions: [probe.>]\npublications: [probe.out, probe.forwarded]\n{extra}"
        ),
    );
}

/// Copies a built library into the fixture as `rel`.
fn copy_library(f: &Fixture, from: &Path, rel: &str) {
    let to = f.path().join(rel);
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

/// A Lua plugin that echoes `lua.in` to `lua.out`: the host carries on.
fn lua_echo(f: &Fixture) {
    f.file(
        "echo/plugin.yaml",
        "name: echo\nversion: 1.0.0\nsubscriptions: [lua.in]\n",
    );
    f.file(
        "echo/main.lua",
        "function on_event(e) bus.publish('lua.out', e.payload) end\n",
    );
}

#[test]
fn the_example_runs_beside_the_script_examples() {
    example_built();
    let plugins = format!("{ROOT}/plugins");
    check(Path::new(&plugins), None).expect_code(0);

    let input = ev(
        "text.raw",
        json!({"text": "the quick brown fox jumps over the lazy dog"}),
    );
    let bad = ev("text.raw", json!({"words": 3}));
    let run = run(Path::new(&plugins), &[input, bad], None);
    run.expect_code(0);
    assert!(run.on("plughost.plugin.failed").is_empty(), "{run}");
    let started = run.payloads("plughost.plugin.started");
    assert!(
        started.iter().any(|p| p["plugin"] == "stemmer-native"),
        "{run}"
    );

    let first = &run.on("text.raw")[0];
    let stems = run.on("text.stems");
    assert_eq!(stems.len(), 1, "{run}");
    assert_eq!(stems[0]["source"], "stemmer-native");
    assert_eq!(stems[0]["correlation_id"], first["id"]);
    let p = &stems[0]["payload"];
    assert_eq!(
        p["stems"],
        json!([
            "the", "quick", "brown", "fox", "jump", "over", "the", "lazy", "dog"
        ]),
        "{run}"
    );
    assert_eq!(p["top"][0], json!({"stem": "the", "count": 2}));
    assert_eq!(p["distinct"], 8);
    // The Lua example handled the same event.
    assert_eq!(run.on("text.stats").len(), 1, "{run}");

    let dropped: Vec<Value> = run
        .dead_letters()
        .into_iter()
        .filter(|d| d["plugin"] == "stemmer-native")
        .collect();
    assert_eq!(dropped.len(), 1, "{run}");
    assert_eq!(dropped[0]["error"], "payload.text must be a string");
    assert!(
        run.stderr
            .contains("at=\"plugins/stemmer-native/src/lib.rs:"),
        "log lines carry the Rust source line\n{run}"
    );
}

#[test]
fn outcomes_flow_through_a_native_plugin() {
    let b = built();
    let f = Fixture::new();
    // A crate name, found under CARGO_TARGET_DIR.
    probe(
        &f,
        "native-probe",
        "config:\n  greeting: hello\nretry:\n  max_attempts: 3\n  backoff_ms: 5\n",
    );
    let input = [
        ev("probe.publish", json!({"n": 1})),
        ev("probe.forward", json!({"n": 2})),
        ev("probe.drop", json!({"n": 3})),
        ev("probe.retry", json!({"n": 4, "succeed_on": 2})),
        ev("probe.retry", json!({"n": 5})),
        ev("probe.error", json!({"n": 6})),
        ev("probe.state", json!({"n": 7})),
        ev("probe.state", json!({"n": 8})),
    ];
    let run = run(f.path(), &input, Some(&b.target));
    run.expect_code(0);

    let publish_in = &run.on("probe.publish")[0];
    let out = run.on("probe.out");
    let first = out.iter().find(|e| e["payload"]["n"] == 1).expect("n=1");
    assert_eq!(first["source"], "probe");
    assert_eq!(first["correlation_id"], publish_in["id"]);
    assert_eq!(first["payload"]["greeting"], "hello");

    assert_eq!(run.only("probe.forwarded"), json!({"n": 2}));

    let retried = out.iter().find(|e| e["payload"]["n"] == 4).expect("n=4");
    assert_eq!(retried["payload"]["tries"], 2, "{run}");
    let counts: Vec<&Value> = out
        .iter()
        .filter(|e| e["payload"]["count"].is_number())
        .map(|e| &e["payload"]["count"])
        .collect();
    assert_eq!(
        counts,
        [&json!(1), &json!(2)],
        "state carries across events"
    );

    let dl = run.dead_letters();
    let by_n = |n: i64| {
        dl.iter()
            .find(|d| d["event"]["payload"]["n"] == n)
            .unwrap_or_else(|| panic!("no dead letter for n={n}\n{run}"))
    };
    assert_eq!(by_n(3)["error"], "probe does not want 3");
    assert_eq!(by_n(3)["attempts"], 1);
    assert_eq!(by_n(5)["attempts"], 3, "retried up to max_attempts");
    let error = by_n(6)["error"].as_str().unwrap();
    assert!(error.contains("probe refused 6 (in on_event)"), "{error}");
    assert!(
        error.contains("libnative_probe") || error.contains("native_probe"),
        "{error}"
    );
    assert_eq!(dl.len(), 3, "{run}");
    assert!(
        run.stderr
            .contains("probe ready, greeting \"hello\" plugin=probe at=\"probe/src/lib.rs:"),
        "{run}"
    );
}

/// The throughput benchmark's native plugin (the `derive` behaviour) reads
/// the payload into its own borrowing struct and publishes its own
/// `Serialize` struct: the subscriber gets the derived JSON, and a payload
/// that does not fit the struct is dead-lettered with serde's message.
#[test]
fn a_plugin_reads_and_publishes_its_own_serde_types() {
    let f = Fixture::new();
    f.plugin(
        Runtime::Native,
        "derive",
        "subscriptions: [bench.in]\npublications: [bench.out]\n",
        "derive",
    );
    let reading = json!({"name": "sensor-é", "count": 41, "ratio": 0.25, "active": true,
                         "location": {"city": "Lyon", "zip": "69001"}});
    let input = [
        ev("bench.in", reading),
        ev("bench.in", json!({"name": "no count"})),
    ];
    let run = f.run(&input);
    run.expect_code(0);
    assert_eq!(
        run.payloads("bench.out"),
        [
            json!({"name": "SENSOR-É", "count": 42, "ratio": 0.5, "active": false,
                "origin": {"city": "Lyon", "zip": "69001"}})
        ],
        "{run}"
    );
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert_eq!(dl[0]["event"]["payload"]["name"], "no count");
    let error = dl[0]["error"].as_str().unwrap();
    assert!(error.contains("missing field `count`"), "{error}");
}

/// A panic in `on_event` is dead-lettered with its message and position,
/// and the next event is handled, in the `profile` build.
fn a_panic_is_dead_lettered(profile: &str) {
    let b = built();
    let f = Fixture::new();
    let lib = library_file("native-probe");
    copy_library(
        &f,
        &b.library(profile, "native-probe"),
        &format!("probe/lib/{lib}"),
    );
    probe(&f, &format!("lib/{lib}"), "");
    lua_echo(&f);
    let input = [
        ev("probe.panic", json!({"n": 1})),
        ev("probe.publish", json!({"n": 2})),
        ev("probe.panic", json!({"n": 3})),
        ev("probe.publish", json!({"n": 4})),
        ev("lua.in", json!({"n": 5})),
    ];
    let run = run(f.path(), &input, None);
    run.expect_code(0);
    assert!(run.on("plughost.plugin.failed").is_empty(), "{run}");

    let dl = run.dead_letters();
    assert_eq!(dl.len(), 2, "{run}");
    for (d, n) in dl.iter().zip([1, 3]) {
        assert_eq!(d["plugin"], "probe");
        assert_eq!(d["event"]["payload"]["n"], n);
        let error = d["error"].as_str().unwrap();
        assert!(
            // The fixtures' workspace root is tests/fixtures/native/.
            error.starts_with("probe/src/lib.rs:")
                && error.contains(&format!("panicked: probe panicked on {n} (in on_event)")),
            "positioned at the panic!: {error}"
        );
        assert!(error.contains(&lib), "names the library: {error}");
    }
    let handled: Vec<Value> = run
        .payloads("probe.out")
        .iter()
        .map(|p| p["n"].clone())
        .collect();
    assert_eq!(handled, [json!(2), json!(4)], "{run}");
    assert_eq!(run.only("lua.out"), json!({"n": 5}));
    assert!(
        !run.stderr.contains("RUST_BACKTRACE"),
        "the plugin's panic hook printed nothing\n{run}"
    );
}

#[test]
fn a_panic_is_dead_lettered_in_a_debug_build() {
    a_panic_is_dead_lettered("debug");
}

#[test]
fn a_panic_is_dead_lettered_in_a_release_build() {
    a_panic_is_dead_lettered("release");
}

#[test]
fn a_panic_in_init_stops_only_that_plugin() {
    let b = built();
    let f = Fixture::new();
    probe(&f, "native-probe", "config:\n  panic_in_init: true\n");
    lua_echo(&f);
    let run = run(f.path(), &[ev("lua.in", json!(1))], Some(&b.target));
    let failed = run.only("plughost.plugin.failed");
    assert_eq!(failed["plugin"], "probe");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("panicked: probe panicked in init (in init)"),
        "{error}"
    );
    assert_eq!(run.only("lua.out"), json!(1), "the host carries on\n{run}");
}

#[test]
fn a_wrong_abi_version_is_refused_naming_both_versions_and_the_file() {
    let b = built();
    let f = Fixture::new();
    let lib = library_file("native-wrong-abi");
    copy_library(
        &f,
        &b.library("debug", "native-wrong-abi"),
        &format!("old/{lib}"),
    );
    f.file(
        "old/plugin.yaml",
        &format!("name: old\nversion: 1.0.0\nruntime: native\nentry: {lib}\n"),
    );
    lua_echo(&f);
    let file = f.path().join("old").join(&lib).display().to_string();
    let version = env!("CARGO_PKG_VERSION");
    let series: Vec<&str> = version.split('.').collect();
    let expected = format!(
        "{file}: ABI version 1, but this host speaks ABI version 5 \
         (plughost-sdk 0.1.0 built it; rebuild the plugin against plughost-sdk {}.{}.x)",
        series[0], series[1]
    );

    let checked = check(f.path(), None);
    checked.expect_code(1);
    assert!(checked.stdout.contains(&expected), "{checked}");

    let run = run(f.path(), &[ev("lua.in", json!(1))], None);
    let failed = run.only("plughost.plugin.failed");
    assert_eq!(failed["plugin"], "old");
    assert!(
        failed["error"].as_str().unwrap().contains(&expected),
        "{failed}"
    );
    assert_eq!(run.only("lua.out"), json!(1), "the host carries on\n{run}");
}

#[test]
fn a_missing_library_says_how_to_build_it() {
    let empty = tempfile::tempdir().unwrap();
    let f = Fixture::new();
    f.file(
        "unbuilt/plugin.yaml",
        "name: unbuilt\nversion: 1.0.0\nruntime: native\nentry: not-built-yet\n",
    );
    f.file(
        "gone/plugin.yaml",
        "name: gone\nversion: 1.0.0\nruntime: native\nentry: lib/libgone.so\n",
    );
    let run = check(f.path(), Some(empty.path()));
    run.expect_code(1);
    let lib = library_file("not-built-yet");
    let unbuilt = run
        .stdout
        .lines()
        .find(|l| l.contains("unbuilt"))
        .unwrap_or_else(|| panic!("{run}"));
    assert!(
        unbuilt.contains("plugin.yaml:4:"),
        "points at `entry`: {unbuilt}"
    );
    assert!(unbuilt.contains(&lib), "{unbuilt}");
    assert!(
        unbuilt.contains(&empty.path().join("release").display().to_string()),
        "says where it looked: {unbuilt}"
    );
    assert!(
        unbuilt.contains("build it with `cargo build -p not-built-yet`"),
        "{unbuilt}"
    );
    let gone = run
        .stdout
        .lines()
        .find(|l| l.contains("gone"))
        .unwrap_or_else(|| panic!("{run}"));
    assert!(
        gone.contains("native library `lib/libgone.so` not found") && gone.contains("cargo build"),
        "{gone}"
    );

    let ran = self::run(f.path(), &[], Some(empty.path()));
    ran.expect_code(1);
    assert!(ran.stderr.contains("cargo build -p not-built-yet"), "{ran}");
}

#[test]
fn check_passes_built_native_plugins() {
    let b = built();
    let f = Fixture::new();
    probe(&f, "native-probe", "");
    let run = check(f.path(), Some(&b.target));
    run.expect_code(0);
    assert_eq!(run.stdout, "", "{run}");
}
