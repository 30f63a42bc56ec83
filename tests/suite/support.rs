//! Test support: plugin folders in a temp dir, and the real `plughost` binary
//! run against them.
//!
//! A behaviour is written once with [`Runtime`]-specific sources
//! ([`Src`]); the `behaviours!` macro runs it once per runtime. Adding a
//! runtime means adding a variant here, a field to [`Src`] and its scripts.

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
}

impl Runtime {
    /// Every runtime the suite covers.
    pub const ALL: [Runtime; 2] = [Runtime::Lua, Runtime::Rhai];

    /// The entry file name.
    pub fn entry(self) -> &'static str {
        match self {
            Runtime::Lua => "main.lua",
            Runtime::Rhai => "main.rhai",
        }
    }

    /// The extension of the runtime's script files (`lua`, `rhai`).
    pub fn ext(self) -> &'static str {
        match self {
            Runtime::Lua => "lua",
            Runtime::Rhai => "rhai",
        }
    }

    /// A binding as scripts spell it: `outcome.retry` in Lua,
    /// `outcome::retry` in Rhai.
    pub fn binding(self, module: &str, name: &str) -> String {
        match self {
            Runtime::Lua => format!("{module}.{name}"),
            Runtime::Rhai => format!("{module}::{name}"),
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
}

impl Src {
    /// The source for `rt`.
    pub fn get(&self, rt: Runtime) -> &'static str {
        match rt {
            Runtime::Lua => self.lua,
            Runtime::Rhai => self.rhai,
        }
    }
}

/// Defines one test per runtime for each behaviour function `fn(Runtime)`:
/// `lua::NAME` and `rhai::NAME`.
#[macro_export]
macro_rules! behaviours {
    ($($name:ident),* $(,)?) => {
        mod lua {
            $(#[test] fn $name() { super::$name($crate::support::Runtime::Lua) })*
        }
        mod rhai {
            $(#[test] fn $name() { super::$name($crate::support::Runtime::Rhai) })*
        }
    };
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
    /// and the entry script for `rt`.
    pub fn plugin(&self, rt: Runtime, name: &str, manifest_extra: &str, src: &str) -> PathBuf {
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

/// Runs the binary with `args` and optional stdin, with a hard time limit.
pub fn run_binary(args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = Command::new(binary())
        .args(args)
        .env("PLUGHOST_LOG", "info")
        .env_remove("RUST_LOG")
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
