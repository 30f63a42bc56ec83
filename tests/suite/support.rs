//! Test support: plugin folders in a temp dir, and the real `plughost` binary
//! run against them.
//!
//! A behaviour is written once with [`Runtime`]-specific sources
//! ([`Src`]); the `behaviours!` macro runs it once per runtime. Adding a
//! runtime means adding a variant here, a field to [`Src`] and its scripts.
//!
//! Native plugins are not compiled per behaviour: one fixture crate,
//! `tests/fixtures/native/behaviours/`, plays each behaviour it knows in
//! Rust, chosen by name (`Src::native`), and is built once per test run.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A runtime the behaviour suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Lua 5.4 through mlua.
    Lua,
    /// Rhai.
    Rhai,
    /// A Rust `cdylib` through plughost-sdk: the fixture crate
    /// `tests/fixtures/native/behaviours/`, playing the behaviour named by
    /// [`Src::native`].
    Native,
}

impl Runtime {
    /// Every runtime the suite covers.
    pub const ALL: [Runtime; 3] = [Runtime::Lua, Runtime::Rhai, Runtime::Native];

    /// The script runtimes.
    pub const SCRIPTS: [Runtime; 2] = [Runtime::Lua, Runtime::Rhai];

    /// The entry file name: the script, or for [`Runtime::Native`] the
    /// library (`libnative_behaviours.so` on Linux).
    pub fn entry(self) -> &'static str {
        match self {
            Runtime::Lua => "main.lua",
            Runtime::Rhai => "main.rhai",
            Runtime::Native => NATIVE_LIBRARY,
        }
    }

    /// The extension of the runtime's script files (`lua`, `rhai`).
    ///
    /// # Panics
    ///
    /// For [`Runtime::Native`], which has no script files.
    pub fn ext(self) -> &'static str {
        match self {
            Runtime::Lua => "lua",
            Runtime::Rhai => "rhai",
            Runtime::Native => panic!("native plugins have no script files"),
        }
    }

    /// A binding as scripts spell it: `outcome.retry` in Lua,
    /// `outcome::retry` in Rhai.
    ///
    /// # Panics
    ///
    /// For [`Runtime::Native`], whose bindings are `plughost_sdk::Host` methods.
    pub fn binding(self, module: &str, name: &str) -> String {
        match self {
            Runtime::Lua => format!("{module}.{name}"),
            Runtime::Rhai => format!("{module}::{name}"),
            Runtime::Native => panic!("native plugins have no `{module}.{name}` binding"),
        }
    }
}

/// A plugin source per runtime.
#[derive(Debug, Clone, Copy)]
pub struct Src {
    /// Lua source.
    pub lua: &'static str,
    /// Rhai source.
    pub rhai: &'static str,
    /// The name of the behaviour of the native fixture crate
    /// (`tests/fixtures/native/behaviours/`) that is the same plugin, or
    /// `None` when the behaviour does not apply to native plugins (script
    /// syntax, the sandbox, timers, script-only values).
    pub native: Option<&'static str>,
}

impl Src {
    /// The source for `rt`: for [`Runtime::Native`], the behaviour's name,
    /// which [`Fixture::plugin`] puts in the manifest.
    ///
    /// # Panics
    ///
    /// For [`Runtime::Native`] when `native` is `None`: a behaviour using
    /// this source is marked `[Native]` in `behaviours!` by mistake.
    pub fn get(&self, rt: Runtime) -> &'static str {
        match rt {
            Runtime::Lua => self.lua,
            Runtime::Rhai => self.rhai,
            Runtime::Native => self.native.unwrap_or_else(|| {
                panic!(
                    "this source has no native behaviour (`native: None`): do not mark the \
                     behaviour using it `[Native]`"
                )
            }),
        }
    }
}

/// Defines one test per runtime for each behaviour function `fn(Runtime)`:
/// `lua::NAME` and `rhai::NAME`, and `native::NAME` for a behaviour marked
/// `[Native]` (every [`Src`] it uses has `native: Some(..)`). Native tests
/// exist only for the behaviours that apply to native plugins: nothing is
/// skipped at run time.
///
/// ```ignore
/// behaviours!(
///     forward_publishes_in_the_plugins_name [Native],
///     an_unknown_return_value_is_an_error,
/// );
/// ```
#[macro_export]
macro_rules! behaviours {
    ($($name:ident $([$native:ident])?),* $(,)?) => {
        mod lua {
            $(#[test] fn $name() { super::$name($crate::support::Runtime::Lua) })*
        }
        mod rhai {
            $(#[test] fn $name() { super::$name($crate::support::Runtime::Rhai) })*
        }
        mod native {
            $($(
                #[test]
                fn $name() {
                    super::$name($crate::support::Runtime::$native)
                }
            )?)*
        }
    };
}

/// A runtime for library tests: two workers, timers and I/O.
pub fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The native fixture library's file name on this platform.
pub const NATIVE_LIBRARY: &str = if cfg!(windows) {
    "native_behaviours.dll"
} else if cfg!(target_os = "macos") {
    "libnative_behaviours.dylib"
} else {
    "libnative_behaviours.so"
};

/// The native fixture crate's source, for [`line_of`](crate::bindings::line_of)
/// markers.
pub const NATIVE_SRC: &str = include_str!("../fixtures/native/behaviours/src/lib.rs");

/// How positions in the native fixture crate are named in errors and log
/// lines: relative to the fixtures' workspace root.
pub const NATIVE_FILE: &str = "behaviours/src/lib.rs";

/// `behaviours/src/lib.rs:LINE`, the line of the native fixture crate
/// marked `@marker`.
pub fn native_at(marker: &str) -> String {
    format!(
        "{NATIVE_FILE}:{}",
        crate::bindings::line_of(NATIVE_SRC, marker)
    )
}

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The native fixture library, built (debug profile) once per test run.
///
/// It is built the way `native.rs` builds the fixtures (the whole fixture
/// workspace, same target dir), so neither build rewrites the other's
/// library while a test loads it.
pub fn native_library() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .filter(|t| !t.is_empty())
            .map_or_else(|| Path::new(ROOT).join("target"), PathBuf::from)
            .join("native-fixtures");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--manifest-path"])
            .arg(format!("{ROOT}/tests/fixtures/native/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            .output()
            .expect("run cargo");
        assert!(
            out.status.success(),
            "cargo build of the native fixtures failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lib = target.join("debug").join(NATIVE_LIBRARY);
        assert!(lib.is_file(), "{} was not built", lib.display());
        lib
    })
}

/// The manifest of a native plugin playing `behaviour`: `runtime: native`,
/// `entry:` the library, and `manifest_extra`'s keys with `behaviour` added
/// to its `config` (each top-level key written as JSON, which is YAML).
fn native_manifest(name: &str, manifest_extra: &str, behaviour: &str) -> String {
    let mut extra = if manifest_extra.trim().is_empty() {
        serde_json::Map::new()
    } else {
        match serde_saphyr::from_str::<Value>(manifest_extra) {
            Ok(Value::Object(map)) => map,
            Ok(other) => panic!("manifest_extra is not a mapping: {other}"),
            Err(e) => panic!("manifest_extra is not YAML ({e}):\n{manifest_extra}"),
        }
    };
    let config = extra
        .entry("config")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Value::Object(config) = config else {
        panic!("manifest_extra's config is not a mapping: {config}");
    };
    assert!(
        !config.contains_key("behaviour"),
        "the suite's `behaviour` config key is taken"
    );
    config.insert("behaviour".into(), Value::String(behaviour.into()));
    let mut text =
        format!("name: {name}\nversion: 1.0.0\nruntime: native\nentry: {NATIVE_LIBRARY}\n");
    for (key, value) in &extra {
        text.push_str(&format!("{key}: {value}\n"));
    }
    text
}

/// A loopback port nothing listens on (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// A temp dir holding plugin folders.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    /// An empty plugins directory.
    pub fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The plugins directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `rel` (creating folders) under the plugins directory.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A plugin folder `name` with `manifest_extra` appended to `name`/`version`
    /// and the entry script for `rt`; returns the entry's path.
    ///
    /// For [`Runtime::Native`], `src` is the behaviour's name
    /// ([`Src::native`]): the manifest says `runtime: native`, `entry:` the
    /// fixture library (linked into the folder: an entry must be a path
    /// inside it), and `config.behaviour: src` merged into
    /// `manifest_extra`'s config.
    pub fn plugin(&self, rt: Runtime, name: &str, manifest_extra: &str, src: &str) -> PathBuf {
        if rt == Runtime::Native {
            self.file(
                &format!("{name}/plugin.yaml"),
                &native_manifest(name, manifest_extra, src),
            );
            let link = self.dir.path().join(name).join(NATIVE_LIBRARY);
            let lib = native_library();
            #[cfg(unix)]
            std::os::unix::fs::symlink(lib, &link).expect("link the native library");
            #[cfg(not(unix))]
            std::fs::copy(lib, &link).expect("copy the native library");
            return link;
        }
        self.file(
            &format!("{name}/plugin.yaml"),
            &format!("name: {name}\nversion: 1.0.0\n{manifest_extra}"),
        );
        self.file(&format!("{name}/{}", rt.entry()), src)
    }

    /// Runs `plughost run --exit-when-idle --tap '>'` with `input` lines on stdin.
    pub fn run(&self, input: &[Value]) -> Run {
        self.run_with(input, &[])
    }

    /// Like [`Fixture::run`] with extra arguments.
    pub fn run_with(&self, input: &[Value], extra: &[&str]) -> Run {
        let text: String = input.iter().map(|v| format!("{v}\n")).collect();
        self.run_raw(&text, extra)
    }

    /// Runs with raw stdin text.
    pub fn run_raw(&self, stdin: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "run",
            "--plugins",
            self.path().to_str().unwrap(),
            "--input",
            "-",
            "--tap",
            ">",
            "--exit-when-idle",
        ];
        args.extend_from_slice(extra);
        run_binary(&args, Some(stdin))
    }

    /// Runs `plughost check` on the plugins directory.
    pub fn check(&self) -> Run {
        run_binary(&["check", self.path().to_str().unwrap()], None)
    }
}

/// The path of the `plughost` binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_plughost")
}

/// The OpenTelemetry variables that would send a test run's telemetry
/// somewhere: removed from every run, so only a test that sets them exports.
const OTEL_ENV: [&str; 9] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
];

/// Runs the binary with `args` and optional stdin, with a hard time limit.
pub fn run_binary(args: &[&str], stdin: Option<&str>) -> Run {
    run_binary_with_env(args, stdin, &[])
}

/// Like [`run_binary`] with extra environment variables.
pub fn run_binary_with_env(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(binary());
    for var in OTEL_ENV {
        command.env_remove(var);
    }
    let mut child = command
        .args(args)
        .env("PLUGHOST_LOG", "info")
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plughost");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_owned();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    let output = wait_with_limit(child, std::time::Duration::from_secs(60));
    Run::from(output)
}

fn wait_with_limit(child: std::process::Child, limit: std::time::Duration) -> Output {
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(limit).is_err() {
            // Still running past the limit: kill it so the test fails instead of hanging.
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("wait plughost");
    let _ = tx.send(());
    out
}

/// What one run of the binary produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error (the log).
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Every tapped event, in order.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}\n{self}"))
            })
            .collect()
    }

    /// Tapped events on `topic`.
    pub fn on(&self, topic: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["topic"] == topic)
            .collect()
    }

    /// Payloads of tapped events on `topic`.
    pub fn payloads(&self, topic: &str) -> Vec<Value> {
        self.on(topic)
            .into_iter()
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// The one payload on `topic` (fails the test when there is not exactly one).
    pub fn only(&self, topic: &str) -> Value {
        let p = self.payloads(topic);
        assert_eq!(p.len(), 1, "expected one event on {topic}\n{self}");
        p[0].clone()
    }

    /// Dead letters' payloads.
    pub fn dead_letters(&self) -> Vec<Value> {
        self.payloads("plughost.dead_letter")
    }

    /// Asserts the exit code, showing the output when it differs.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--- exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// An input line for `topic` with `payload`.
pub fn ev(topic: &str, payload: Value) -> Value {
    serde_json::json!({"topic": topic, "payload": payload})
}
