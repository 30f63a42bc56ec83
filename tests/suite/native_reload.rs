//! SPEC §7: rebuilding a native plugin's library reloads it, as saving a
//! script does (SPEC §5), while `plughost run` runs and events stream in.
//!
//! The test copies the `probe` fixture crate into a temp workspace (as
//! `native-probe-reload`, so its library is its own), builds it, runs the
//! host on a plugin whose `entry` is the crate's name, then edits the crate
//! and rebuilds it with cargo while the host runs. Builds go to the target
//! dir `native.rs` builds the fixtures in (`target/native-fixtures/`, linked
//! as the temp workspace's `target/`), so the dependencies are compiled
//! once; with `CARGO_TARGET_DIR` set, the host looks there, and so the
//! builds go there.
//!
//! To show that a change was handled *exactly once*, the test then changes
//! a Lua plugin that sorts after the probe (the barrier) and waits for its
//! reload, as `reload.rs` does: the watcher handles changes in order.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::ev;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The crate's name in the temp workspace.
const CRATE: &str = "native-probe-reload";

/// The Lua plugin whose manifest is touched to prove every earlier change
/// was handled; its folder sorts after the probe's.
const BARRIER: &str = "zz-barrier";

/// `libname.so` (`.dylib`, `.dll`) of a crate on this platform.
fn library_file(krate: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        krate.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// A fixture file, read now.
fn fixture(rel: &str) -> String {
    let path = format!("{ROOT}/tests/fixtures/native/{rel}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// `text` with `from` replaced by `to`, which must be there.
fn patch(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not found in:\n{text}");
    text.replacen(from, to, 1)
}

/// The probe fixture's source, publishing `build` with each `probe.state` answer.
fn probe_source(build: &str) -> String {
    let src = patch(
        &fixture("probe/src/lib.rs"),
        r#"json!({"n": n, "count": count})"#,
        r#"json!({"n": n, "count": count, "build": BUILD})"#,
    );
    format!("{src}\nconst BUILD: &str = \"{build}\";\n")
}

/// The temp workspace: the crate, the plugins directory, the target dir.
struct Workspace {
    /// Held while the test runs.
    _lock: BuildLock,
    _tmp: tempfile::TempDir,
    /// The workspace root.
    root: PathBuf,
    /// Where cargo builds and the host looks.
    target: PathBuf,
}

impl Workspace {
    fn new() -> Workspace {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("ws");
        std::fs::create_dir_all(root.join("probe/src")).unwrap();
        std::fs::create_dir_all(root.join("plugins")).unwrap();
        std::fs::write(
            root.join("Cargo.toml"),
            "[workspace]\nresolver = \"3\"\nmembers = [\"probe\"]\n\n\
             [workspace.package]\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [profile.release]\npanic = \"unwind\"\n",
        )
        .unwrap();
        // The fixtures' lock: the same dependency versions, compiled once.
        if let Ok(lock) =
            std::fs::read_to_string(format!("{ROOT}/tests/fixtures/native/Cargo.lock"))
        {
            std::fs::write(root.join("Cargo.lock"), lock).unwrap();
        }
        let sdk = Path::new(ROOT).join("bindings/sdk").canonicalize().unwrap();
        let manifest = patch(
            &fixture("probe/Cargo.toml"),
            "name = \"native-probe\"",
            &format!("name = \"{CRATE}\""),
        );
        let manifest = patch(
            &manifest,
            "path = \"../../../../bindings/sdk\"",
            &format!("path = {:?}", sdk.display().to_string()),
        );
        std::fs::write(root.join("probe/Cargo.toml"), manifest).unwrap();

        let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
            // The host looks there: build there.
            Some(t) => PathBuf::from(t),
            None => {
                let link = root.join("target");
                let shared = Path::new(ROOT).join("target/native-fixtures");
                std::fs::create_dir_all(&shared).unwrap();
                #[cfg(unix)]
                std::os::unix::fs::symlink(&shared, &link).expect("link target/");
                #[cfg(not(unix))]
                std::fs::create_dir_all(&link).unwrap();
                link
            }
        };
        // Another test run at the same time (another checkout sharing
        // CARGO_TARGET_DIR, say) would build the same library: one at a time.
        std::fs::create_dir_all(&target).unwrap();
        let lock = BuildLock::take(target.join(format!("{CRATE}.lock")));
        // Builds of an earlier run must not compete with this run's.
        for profile in ["debug", "release"] {
            let _ = std::fs::remove_file(target.join(profile).join(library_file(CRATE)));
        }
        let ws = Workspace {
            _lock: lock,
            _tmp: tmp,
            root,
            target,
        };
        ws.probe_manifest();
        ws.barrier_manifest(1);
        ws
    }

    fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// The probe plugin, its `entry` the crate's name.
    fn probe_manifest(&self) {
        let probe = self.plugins().join("probe");
        std::fs::create_dir_all(&probe).unwrap();
        std::fs::write(
            probe.join("plugin.yaml"),
            format!(
                "name: probe\nversion: 1.0.0\nruntime: native\nentry: {CRATE}\n\
                 subscriptions: [probe.>]\npublications: [probe.out, probe.forwarded]\n"
            ),
        )
        .unwrap();
    }

    /// The barrier plugin at version `1.0.{version}`.
    fn barrier_manifest(&self, version: u32) {
        let barrier = self.plugins().join(BARRIER);
        std::fs::create_dir_all(&barrier).unwrap();
        std::fs::write(barrier.join("main.lua"), "function on_event(e) end\n").unwrap();
        std::fs::write(
            barrier.join("plugin.yaml"),
            format!("name: {BARRIER}\nversion: 1.0.{version}\n"),
        )
        .unwrap();
    }

    /// The library built in `profile`.
    fn library(&self, profile: &str) -> PathBuf {
        self.target.join(profile).join(library_file(CRATE))
    }

    fn write_source(&self, text: &str) {
        std::fs::write(self.root.join("probe/src/lib.rs"), text).unwrap();
    }

    /// Starts `cargo build` of the crate.
    fn spawn_build(&self, release: bool) -> Child {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "--manifest-path"])
            .arg(self.root.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&self.target)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if release {
            cmd.arg("--release");
        }
        cmd.spawn().expect("run cargo")
    }

    /// Builds the crate and waits for cargo.
    fn build(&self, release: bool) {
        finished(self.spawn_build(release));
    }
}

/// A folder in the target dir that exists while a test run uses the
/// crate's library (`std::fs::File::lock` is newer than the MSRV). One left
/// behind by a killed run is taken over after [`BuildLock::STALE`].
struct BuildLock(PathBuf);

impl BuildLock {
    const STALE: Duration = Duration::from_secs(120);

    fn take(path: PathBuf) -> BuildLock {
        let deadline = Instant::now() + Self::STALE + Duration::from_secs(10);
        loop {
            match std::fs::create_dir(&path) {
                Ok(()) => return BuildLock(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(&path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|a| a > Self::STALE) {
                        let _ = std::fs::remove_dir(&path).or_else(|_| std::fs::remove_file(&path));
                    }
                }
                Err(e) => panic!("create {}: {e}", path.display()),
            }
            assert!(
                Instant::now() < deadline,
                "{} is held by another test run",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Waits for a cargo build and fails the test if it failed.
fn finished(child: Child) {
    let out = child.wait_with_output().expect("wait for cargo");
    assert!(
        out.status.success(),
        "cargo build of {CRATE} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running host over the workspace's plugins.
struct Host {
    live: Live,
    /// The last `n` sent.
    n: u64,
    barriers: u32,
}

impl Host {
    fn start(ws: &Workspace) -> Host {
        let dir = ws.plugins().to_str().unwrap().to_owned();
        let mut live = Live::spawn(&["run", "--plugins", &dir, "--input", "-", "--tap", ">"]);
        // The host reads input only once the watcher runs.
        live.send(&ev("ping", json!({})));
        live.wait_for("the first input line tapped", |e| e["topic"] == "ping");
        Host {
            live,
            n: 0,
            barriers: 1,
        }
    }

    /// Sends `count` events to the probe, then waits for the last one's answer.
    fn send_batch(&mut self, count: u64) -> Value {
        for _ in 0..count {
            self.n += 1;
            self.live.send(&ev("probe.state", json!({"n": self.n})));
        }
        let n = self.n;
        self.live
            .wait_for(&format!("the probe's answer to n={n}"), |e| {
                e["topic"] == "probe.out" && e["payload"]["n"] == n
            })["payload"]
            .clone()
    }

    /// `plughost.plugin.<what>` events about the probe so far.
    fn host_events(&self, what: &str) -> Vec<Value> {
        let topic = format!("plughost.plugin.{what}");
        self.live
            .events()
            .into_iter()
            .filter(|e| e["topic"] == topic.as_str() && e["payload"]["plugin"] == "probe")
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// Waits for the `n`th `plughost.plugin.<what>` about the probe.
    fn wait_host(&mut self, what: &str, n: usize) -> Value {
        let topic = format!("plughost.plugin.{what}");
        let seen = std::cell::Cell::new(0);
        self.live.wait_for(&format!("{topic} #{n} for probe"), |e| {
            if e["topic"] == topic.as_str() && e["payload"]["plugin"] == "probe" {
                seen.set(seen.get() + 1);
            }
            seen.get() >= n
        })["payload"]
            .clone()
    }

    /// Touches the barrier's manifest and waits for its reload: every
    /// change made before has been handled by then.
    fn barrier(&mut self, ws: &Workspace) {
        self.barriers += 1;
        ws.barrier_manifest(self.barriers);
        let version = format!("1.0.{}", self.barriers);
        self.live
            .wait_for(&format!("the barrier's reload to {version}"), |e| {
                e["topic"] == "plughost.plugin.reloaded"
                    && e["payload"]["plugin"] == BARRIER
                    && e["payload"]["version"] == version.as_str()
            });
    }

    /// The probe's answers so far, in tap order: (n, count, build).
    fn answers(&self) -> Vec<(u64, u64, String)> {
        self.live
            .events()
            .iter()
            .filter(|e| e["topic"] == "probe.out")
            .map(|e| {
                let p = &e["payload"];
                (
                    p["n"].as_u64().unwrap(),
                    p["count"].as_u64().unwrap(),
                    p["build"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Position in the tap of the `k`th (from 1) `reloaded` of the probe.
    fn reloaded_at(&self, k: usize) -> usize {
        self.live
            .events()
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e["topic"] == "plughost.plugin.reloaded" && e["payload"]["plugin"] == "probe"
            })
            .nth(k - 1)
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("no reloaded #{k}\n{}", self.dump()))
    }

    fn dump(&self) -> String {
        self.live
            .events()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every answer so far: each `n` once, in order, `count` (kept in
    /// `state` across reloads) one more each time: none lost, none twice.
    fn assert_each_answered_once(&self) {
        let answers = self.answers();
        let expected: Vec<(u64, u64)> = (1..=self.n).map(|n| (n, n)).collect();
        let got: Vec<(u64, u64)> = answers.iter().map(|(n, c, _)| (*n, *c)).collect();
        assert_eq!(got, expected, "{}", self.dump());
    }
}

#[test]
fn rebuilding_a_native_plugin_reloads_it_between_events() {
    let started = Instant::now();
    let ws = Workspace::new();
    ws.write_source(&probe_source("v1"));
    ws.build(false);
    let v1_built = started.elapsed();

    let mut h = Host::start(&ws);
    assert!(
        h.live
            .events()
            .iter()
            .all(|e| e["topic"] != "plughost.plugin.failed"),
        "{}",
        h.dump()
    );
    assert_eq!(h.send_batch(2)["build"], "v1", "{}", h.dump());

    // 1. A rebuild while events stream in: one reload, between two events.
    ws.write_source(&probe_source("v2"));
    let mut build = Some(ws.spawn_build(false));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = 0;
    while after < 3 {
        assert!(
            Instant::now() < deadline,
            "no reload after the rebuild\n{}",
            h.dump()
        );
        h.send_batch(3);
        if build
            .as_mut()
            .is_some_and(|b| b.try_wait().ok().flatten().is_some())
        {
            finished(build.take().unwrap());
        }
        if build.is_none() && !h.host_events("reloaded").is_empty() {
            after += 1;
        } else {
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    h.barrier(&ws);
    let rebuilt = started.elapsed();
    assert_eq!(
        h.host_events("reloaded"),
        [json!({"plugin": "probe", "version": "1.0.0", "config_only": false})],
        "{}",
        h.dump()
    );
    assert!(h.host_events("reload_failed").is_empty(), "{}", h.dump());
    h.assert_each_answered_once();
    // The old build answered until the swap, the new one from then on:
    // everything tapped after the announcement is the new build's.
    let builds: Vec<String> = h.answers().into_iter().map(|(_, _, b)| b).collect();
    let first_v2 = builds.iter().position(|b| b == "v2").expect("v2 answered");
    assert!(first_v2 >= 2, "{}", h.dump());
    assert!(builds[..first_v2].iter().all(|b| b == "v1"), "{}", h.dump());
    assert!(builds[first_v2..].iter().all(|b| b == "v2"), "{}", h.dump());
    let at = h.reloaded_at(1);
    assert!(
        h.live.events()[at..]
            .iter()
            .filter(|e| e["topic"] == "probe.out")
            .all(|e| e["payload"]["build"] == "v2"),
        "{}",
        h.dump()
    );
    let v2 = std::fs::read(ws.library("debug")).expect("the v2 library");

    // 2. A rebuild that gives a library of another ABI version: refused
    //    (once), and the running build goes on.
    ws.write_source(&fixture("wrong-abi/src/lib.rs"));
    ws.build(false);
    let failed = h.wait_host("reload_failed", 1);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("ABI version 1, but this host speaks ABI version 5")
            && error.contains(&library_file(CRATE)),
        "{error}"
    );
    assert_eq!(h.send_batch(2)["build"], "v2", "{}", h.dump());
    h.barrier(&ws);
    assert_eq!(h.host_events("reload_failed").len(), 1, "{}", h.dump());
    assert_eq!(h.host_events("reloaded").len(), 1, "{}", h.dump());
    let refused = started.elapsed();

    // 3. A release build after the debug one: the newer file wins, and the
    //    release folder (perhaps created by this very build) is watched.
    ws.write_source(&probe_source("v3"));
    ws.build(true);
    h.wait_host("reloaded", 2);
    assert_eq!(h.send_batch(2)["build"], "v3", "{}", h.dump());
    let released = started.elapsed();

    // 4. A library written slowly, as a linker that unlinks the old file
    //    and writes the new one does: loaded once complete, never before.
    let debug = ws.library("debug");
    std::fs::remove_file(&debug).unwrap();
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&debug).unwrap();
        for chunk in v2.chunks(v2.len() / 16 + 1) {
            f.write_all(chunk).unwrap();
            f.flush().unwrap();
            std::thread::sleep(Duration::from_millis(15));
        }
    }
    h.wait_host("reloaded", 3);
    assert_eq!(h.send_batch(2)["build"], "v2", "{}", h.dump());
    h.barrier(&ws);
    assert_eq!(h.host_events("reloaded").len(), 3, "{}", h.dump());
    assert_eq!(h.host_events("reload_failed").len(), 1, "{}", h.dump());
    h.assert_each_answered_once();

    h.live.signal("TERM");
    let run = h.live.finish();
    assert!(run.stderr.contains("plugin reloaded"), "{run}");
    eprintln!(
        "native reload timings: v1 built {v1_built:?}, v2 swapped {rebuilt:?}, \
         wrong ABI refused {refused:?}, release swapped {released:?}, all {:?}",
        started.elapsed()
    );
}

/// A native plugin whose library is not built when the host starts fails to
/// start, saying how to build it; once the library appears (the first build),
/// the plugin starts, with no save of its folder.
#[test]
fn a_native_plugin_starts_once_its_library_is_first_built() {
    let built = crate::support::native_library();
    let target = tempfile::tempdir().expect("temp target dir");
    let plugins = tempfile::tempdir().expect("temp plugins dir");
    let folder = plugins.path().join("late");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("plugin.yaml"),
        "name: late\nversion: 1.0.0\nruntime: native\nentry: native-behaviours\n\
         subscriptions: [in]\nconfig: {behaviour: lifecycle}\n",
    )
    .unwrap();
    let mut live = Live::spawn_with_env(
        &[
            "run",
            "--plugins",
            plugins.path().to_str().unwrap(),
            "--tap",
            ">",
        ],
        &[("CARGO_TARGET_DIR", target.path().to_str().unwrap())],
    );
    let failed = live.wait_for("the start failure", |e| {
        e["topic"] == "plughost.plugin.failed"
    });
    let error = failed["payload"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cargo build -p native-behaviours"),
        "{failed}"
    );
    // The first build, once the watcher is surely up (a build between the
    // start and the watch is caught when the watch begins): `debug/`
    // appears with the library in it.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let debug = target.path().join("debug");
    std::fs::create_dir_all(&debug).unwrap();
    std::fs::copy(built, debug.join(library_file("native-behaviours"))).unwrap();
    live.wait_for("the plugin started", |e| {
        e["topic"] == "plughost.plugin.started" && e["payload"]["plugin"] == "late"
    });
    live.wait_for("its init ran", |e| e["topic"] == "from.init");
    live.signal("TERM");
    let run = live.finish();
    // The start failure still counts (SPEC §8: 1 for plugin errors).
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("plugin started plugin=late"), "{run}");
}
