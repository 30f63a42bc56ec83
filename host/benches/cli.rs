//! Whole-process benchmark of the command line's input path: what a user
//! runs, timed from outside, against what they would otherwise write.
//!
//! Run with `cargo bench -p plughost --bench cli`. Every process reads the
//! same file of N JSON lines (`{"topic": "in.x", "payload": {5 fields}}`,
//! N = `PLUGHOST_BENCH_CLI_EVENTS`, 200,000 by default) and does the same
//! work per line: `derive` the 5-field payload into another (the work of
//! `benches/throughput.rs`). Rows, each a ratio of elapsed wall-clock times
//! measured in this run (median of `PLUGHOST_BENCH_CLI_ROUNDS` alternating
//! rounds, 3 by default):
//!
//! 1. `plughost run --input FILE --exit-when-idle` with one Lua relay plugin
//!    (`bus.publish("out.x", derive(event.payload))`), against the bare mlua
//!    loop a user would write in Rust: each line through `serde_json` into a
//!    `Value`, `lua.to_value`, the call, `lua.from_value` (this benchmark's
//!    own binary, run again as a child process, with the default allocator);
//! 2. the same with `--tap 'out.>'` printing every output event to a file,
//!    against a plain `lua5.4` script with `lua-cjson` reading the file and
//!    writing each output as a JSON line (the Debian packages `lua5.4` and
//!    `lua-cjson`, installed with `apt-get` when missing and possible);
//! 3. input alone: `plughost run --input FILE --exit-when-idle` with no
//!    plugin, in lines per second.
//!
//! Every run's output is checked (the count of output lines, the bare
//! loop's count of results), so a fast wrong run cannot pass.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "shared/work.rs"]
mod work;
use work::DERIVE;

use mlua::{Function, Lua, LuaSerdeExt};
use serde_json::Value;

/// The environment variable that makes this binary the bare loop.
const BARE: &str = "PLUGHOST_BENCH_CLI_BARE";

fn main() {
    if let Ok(file) = std::env::var(BARE) {
        bare_loop(Path::new(&file));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = env_or("PLUGHOST_BENCH_CLI_EVENTS", 200_000);
    let rounds: usize = env_or("PLUGHOST_BENCH_CLI_ROUNDS", 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = Setup::write(dir.path(), n);
    let lua = plain_lua();
    if lua.is_none() {
        eprintln!(
            "cli bench: `lua5.4` with `lua-cjson` is missing and could not be installed \
             (`apt-get install lua5.4 lua-cjson`); row 2 is skipped"
        );
    }
    println!("cli bench: {n} events per run, median of {rounds} rounds");
    let mut rows: Vec<(&str, Vec<f64>)> = vec![
        ("(1) plughost run --input, one Lua plugin", Vec::new()),
        (
            "(1) bare mlua loop (serde_json → to_value → call → from_value)",
            Vec::new(),
        ),
        ("(2) plughost run --input --tap 'out.>'", Vec::new()),
        ("(2) plain lua5.4 + lua-cjson script", Vec::new()),
        ("(3) plughost run --input, no plugin", Vec::new()),
    ];
    for round in 0..rounds {
        rows[0].1.push(setup.plughost(&setup.plugins, false, 0));
        rows[1].1.push(setup.bare());
        rows[2].1.push(setup.plughost(&setup.plugins, true, n));
        if let Some(lua) = &lua {
            rows[3].1.push(setup.script(lua));
        }
        rows[4].1.push(setup.plughost(&setup.empty, false, 0));
        eprintln!("cli bench: round {} of {rounds} done", round + 1);
    }
    let medians: Vec<Option<f64>> = rows.iter().map(|(_, t)| median(t)).collect();
    println!("| row | seconds | events/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    let baseline = [Some(1), Some(1), Some(3), Some(3), None];
    for (i, (name, _)) in rows.iter().enumerate() {
        let Some(secs) = medians[i] else {
            println!("| {name} | skipped | | |");
            continue;
        };
        let ratio = match baseline[i].and_then(|b| medians[b]) {
            Some(base) => format!("{:.2}×", base / secs),
            None => String::new(),
        };
        println!("| {name} | {secs:.3} | {:.0} | {ratio} |", n as f64 / secs);
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(times: &[f64]) -> Option<f64> {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t.get(t.len() / 2).copied()
}

/// The files every run reads.
struct Setup {
    input: PathBuf,
    plugins: PathBuf,
    empty: PathBuf,
    script: PathBuf,
    out: PathBuf,
    n: u64,
}

impl Setup {
    fn write(dir: &Path, n: u64) -> Setup {
        let input = dir.join("input.jsonl");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&input).expect("input"));
        for i in 0..n {
            writeln!(
                w,
                r#"{{"topic":"in.x","payload":{{"name":"sensor-a","count":{i},"ratio":0.5,"active":true,"location":{{"city":"Lyon","zip":"69001"}}}}}}"#
            )
            .expect("input");
        }
        w.flush().expect("input");
        let plugins = dir.join("plugins");
        let relay = plugins.join("relay");
        std::fs::create_dir_all(&relay).expect("plugin dir");
        std::fs::write(
            relay.join("plugin.yaml"),
            "name: relay\nversion: 1.0.0\nruntime: lua\nentry: main.lua\nsubscriptions: [\"in.>\"]\n",
        )
        .expect("manifest");
        std::fs::write(
            relay.join("main.lua"),
            format!(
                "{DERIVE}\nfunction on_event(e)\n  bus.publish(\"out.x\", derive(e.payload))\nend\n"
            ),
        )
        .expect("script");
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).expect("empty dir");
        let script = dir.join("relay.lua");
        std::fs::write(
            &script,
            format!(
                "local cjson = require \"cjson\"\n{DERIVE}\nlocal out = io.stdout\n\
                 for line in io.lines(arg[1]) do\n\
                 \x20 local e = cjson.decode(line)\n\
                 \x20 out:write(cjson.encode({{topic = \"out.x\", payload = derive(e.payload)}}), \"\\n\")\n\
                 end\n"
            ),
        )
        .expect("script");
        Setup {
            input,
            plugins,
            empty,
            script,
            out: dir.join("out.jsonl"),
            n,
        }
    }

    /// Runs `plughost run` on `plugins`; with `tap`, checks that `expect`
    /// lines came out. Returns the elapsed seconds.
    fn plughost(&self, plugins: &Path, tap: bool, expect: u64) -> f64 {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plughost"));
        cmd.arg("run")
            .arg("--plugins")
            .arg(plugins)
            .arg("--input")
            .arg(&self.input)
            .arg("--exit-when-idle")
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null());
        if tap {
            cmd.args(["--tap", "out.>"]);
        }
        let secs = self.timed(cmd, tap);
        if tap {
            assert_eq!(count_lines(&self.out), expect, "plughost's tap output");
        }
        secs
    }

    /// Runs the bare loop as its own process.
    fn bare(&self) -> f64 {
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.env(BARE, &self.input);
        let secs = self.timed(cmd, true);
        let printed = std::fs::read_to_string(&self.out).expect("bare loop output");
        assert_eq!(printed.trim(), self.n.to_string(), "the bare loop's count");
        secs
    }

    /// Runs the plain script.
    fn script(&self, lua: &Path) -> f64 {
        let mut cmd = Command::new(lua);
        cmd.arg(&self.script).arg(&self.input);
        let secs = self.timed(cmd, true);
        assert_eq!(count_lines(&self.out), self.n, "the plain script's output");
        secs
    }

    /// Runs `cmd` to its end, stdout to the output file (or nowhere).
    fn timed(&self, mut cmd: Command, keep_stdout: bool) -> f64 {
        let stdout = if keep_stdout {
            Stdio::from(std::fs::File::create(&self.out).expect("output file"))
        } else {
            Stdio::null()
        };
        let start = Instant::now();
        let mut child = cmd.stdout(stdout).spawn().expect("spawn");
        let deadline = start + Duration::from_secs(600);
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "{cmd:?} failed: {status}");
                return start.elapsed().as_secs_f64();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{cmd:?} ran past 600 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn count_lines(path: &Path) -> u64 {
    let f = std::fs::File::open(path).expect("output");
    let mut n = 0;
    for line in BufReader::new(f).lines() {
        line.expect("output line");
        n += 1;
    }
    n
}

/// `lua5.4` able to `require "cjson"`, installed from Debian when missing.
fn plain_lua() -> Option<PathBuf> {
    let works = || {
        Command::new("lua5.4")
            .args(["-e", "require 'cjson'"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !works() {
        eprintln!("cli bench: installing lua5.4 and lua-cjson with apt-get");
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "lua5.4", "lua-cjson"])
            .stdout(Stdio::null())
            .status();
    }
    works().then(|| PathBuf::from("lua5.4"))
}

/// The bare loop: what a user embedding mlua by hand would write.
fn bare_loop(file: &Path) {
    let lua = Lua::new();
    let f: Function = lua
        .load(format!("{DERIVE}\nreturn function(p) return derive(p) end"))
        .eval()
        .expect("derive");
    let reader = BufReader::new(std::fs::File::open(file).expect("input"));
    let mut results = 0u64;
    for line in reader.lines() {
        let line = line.expect("line");
        let event: Value = serde_json::from_str(&line).expect("json");
        let arg = lua.to_value(&event["payload"]).expect("to_value");
        let out: mlua::Value = f.call(arg).expect("call");
        let out: Value = lua.from_value(out).expect("from_value");
        if out.is_object() {
            results += 1;
        }
    }
    println!("{results}");
}
