//! Throughput benchmark: events per second through Lua, Rhai and native
//! (Rust) plugins on the bus, against the same function called in a loop on
//! a bare interpreter (for native: the same Rust function on structs in
//! memory).
//!
//! Run with `cargo bench -p plughost --bench throughput`. Every figure is
//! measured in this one process, and reported as a ratio to the bare loop:
//!
//! 1. one plugin: `on_event` reads a 5-field payload and publishes a derived
//!    5-field payload, end to end (publish → queue → plugin → bus → subscriber);
//! 2. the bare loop: `lua.to_value(payload)`, call, `lua.from_value(table)`;
//! 3. ten plugins subscribed to the same topic, each doing the same work;
//!
//! and the same three for Rhai (the bare loop: `rhai::serde::to_dynamic`,
//! `Engine::call_fn`, `rhai::serde::from_dynamic`; and, for comparison,
//! that loop again under the limits every Rhai plugin runs with).
//!
//! The native rows run the `derive` behaviour of
//! `tests/fixtures/native/behaviours/` (built with `cargo build --release`
//! before anything is measured), whose work is
//! `tests/fixtures/native/behaviours/src/derive.rs`, compiled into this
//! benchmark too:
//!
//! - (1) one native plugin: per event, the host packs the `serde_json::Value`
//!   payload (at publish), the plugin's thread lends the event's fields and
//!   packed bytes across the C ABI, the plugin reads them into a
//!   `Reading<'_>` (`event.payload_as()`, strings borrowed, no JSON tree),
//!   calls `derive`, and packs the `Derived` straight into its publish
//!   buffer (`host.publish("bench.out", derived)`); the host validates
//!   those bytes, makes the event, and the bus delivers it to the
//!   benchmark's subscriber;
//! - (2) the bare Rust loop: `derive` on `Reading`s built in memory before
//!   the clock starts (as the Lua loop has its payloads as `Value`s in
//!   memory), reading each result's `count`: no packing, no parsing;
//! - (2b) the same, with what a plugin adds on its own side of the boundary:
//!   `plughost_packed::from_slice::<Reading>` from bytes packed before the
//!   clock starts, `derive`, `plughost_packed::to_writer` into one reused
//!   `Writer`; for comparison, not the bar;
//! - (3) ten native plugins on one topic, each doing (1)'s work.
//!
//! Then the telemetry section: one Lua plugin (row 1) with telemetry off
//! (`HostBuilder::telemetry(false)`), in process (the default: metrics in
//! the in-process reader, a delivery span per event) and exporting (OTLP
//! traces through the `tracing-opentelemetry` layer, as `plughost run`
//! installs it, and metrics through a periodic reader every 200 ms, to a
//! loopback port where nothing listens), each as a ratio to "off". The
//! exporting runs come last: the span layer is installed process-wide.
//!
//! Switches (environment variables):
//!
//! - `PLUGHOST_BENCH_EVENTS=N`: events per run (default 100,000);
//! - `PLUGHOST_BENCH_RUNTIMES=lua,native` (any of `lua`, `rhai`, `native`):
//!   only those runtimes' rows, in that order, in this one process, then
//!   row (1) of the first against each other's, from the sections above and
//!   again alternating the two (best of 5 each), and no telemetry section:
//!   the ratios between runtimes come from one run;
//! - `PLUGHOST_BENCH_ONLY_HOST=lua|rhai|native`: row (1) alone, once, for
//!   a profiler;
//! - `PLUGHOST_BENCH_ONLY_BARE=lua|rhai|rhai-limited|native|native-packed`:
//!   a bare loop alone;
//! - `PLUGHOST_BENCH_ONLY_TELEMETRY=1`: the telemetry section alone;
//! - `PLUGHOST_BENCH_SPANS_NOWHERE=1`: see the telemetry section.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "shared/work.rs"]
mod work;
use work::DERIVE;
use work::DERIVE_RHAI;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mlua::{Function, Lua, LuaSerdeExt, Table};
use serde_json::{Value, json};

/// The native plugin's work: the very file its crate compiles.
#[path = "../../tests/fixtures/native/behaviours/src/derive.rs"]
mod derive;

use derive::{Place, Reading};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A runtime under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Lua,
    Rhai,
    Native,
}

fn payload(i: u64) -> Value {
    json!({
        "name": "sensor-a",
        "count": i,
        "ratio": 0.5,
        "active": true,
        "location": {"city": "Lyon", "zip": "69001"},
    })
}

fn bare_loop(n: u64) -> f64 {
    let lua = Lua::new();
    let f: Function = lua
        .load(format!("{DERIVE}\nreturn function(p) return derive(p) end"))
        .eval()
        .unwrap();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    let start = Instant::now();
    let mut check = 0i64;
    for p in &inputs {
        let t = lua.to_value(p).unwrap();
        let out: Table = f.call(t).unwrap();
        let v: Value = lua.from_value(mlua::Value::Table(out)).unwrap();
        check += v["count"].as_i64().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(check > 0);
    n as f64 / secs
}

fn bare_rhai(n: u64) -> f64 {
    let engine = rhai::Engine::new();
    let ast = engine.compile(DERIVE_RHAI).unwrap();
    let mut scope = rhai::Scope::new();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    let start = Instant::now();
    let mut check = 0i64;
    for p in &inputs {
        let d = rhai::serde::to_dynamic(p).unwrap();
        let out: rhai::Dynamic = engine.call_fn(&mut scope, &ast, "derive", (d,)).unwrap();
        let v: Value = rhai::serde::from_dynamic(&out).unwrap();
        check += v["count"].as_i64().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(check > 0);
    n as f64 / secs
}

/// The bare Rhai loop with the limits every Rhai plugin runs under (those of
/// `bindings/src/rhai/mod.rs` for the default `limits`): size limits, which
/// make Rhai measure every value a call returns; a progress callback that
/// reads the clock every 1,024 operations against a per-call deadline; a
/// variable resolver asked for every variable read. Not the bar: what the
/// sandbox alone costs, for comparison.
fn bare_rhai_limited(n: u64) -> f64 {
    use std::cell::Cell;
    use std::rc::Rc;
    let mut engine = rhai::Engine::new();
    let mem: usize = 64 << 20;
    engine
        .set_max_string_size(mem / 4)
        .set_max_array_size(mem / 1024)
        .set_max_map_size(mem / 2048)
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 64)
        .set_max_modules(64);
    let deadline: Rc<Cell<Option<Instant>>> = Rc::default();
    let d = deadline.clone();
    engine.on_progress(move |ops| {
        if ops % 1024 != 0 || d.get().is_none_or(|d| Instant::now() < d) {
            return None;
        }
        Some(rhai::Dynamic::UNIT)
    });
    let noticed = Rc::new(Cell::new(false));
    let config = rhai::Dynamic::from_map(rhai::Map::new());
    #[allow(deprecated)] // as in the Rhai runtime
    engine.on_var(move |name, _, _| {
        if noticed.get() {
            return Err("time".into());
        }
        match name {
            "config" | "state" => Ok(Some(config.clone())),
            _ => Ok(None),
        }
    });
    let ast = engine.compile(DERIVE_RHAI).unwrap();
    let mut scope = rhai::Scope::new();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    let start = Instant::now();
    let mut check = 0i64;
    for p in &inputs {
        deadline.set(Some(Instant::now() + Duration::from_secs(1)));
        let d = rhai::serde::to_dynamic(p).unwrap();
        let out: rhai::Dynamic = engine.call_fn(&mut scope, &ast, "derive", (d,)).unwrap();
        deadline.set(None);
        let v: Value = rhai::serde::from_dynamic(&out).unwrap();
        check += v["count"].as_i64().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(check > 0);
    n as f64 / secs
}

/// [`payload`] as the native plugin reads it.
fn reading(i: u64) -> Reading<'static> {
    Reading {
        name: "sensor-a",
        count: i as i64,
        ratio: 0.5,
        active: true,
        location: Place {
            city: "Lyon",
            zip: "69001",
        },
    }
}

/// The same work in Rust, called in a loop on [`Reading`]s in memory.
fn bare_native(n: u64) -> f64 {
    let inputs: Vec<Reading> = (0..n).map(reading).collect();
    let start = Instant::now();
    let mut check = 0i64;
    for p in &inputs {
        let out = derive::derive(std::hint::black_box(p));
        check += std::hint::black_box(out).count;
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(check > 0);
    n as f64 / secs
}

/// [`bare_native`] from packed bytes to packed bytes: what the plugin does
/// on its side of the boundary, without the boundary and the host.
fn bare_native_packed(n: u64) -> f64 {
    let inputs: Vec<Vec<u8>> = (0..n)
        .map(|i| plughost_packed::pack_value(&payload(i)))
        .collect();
    let mut out = plughost_packed::Writer::new();
    let start = Instant::now();
    let mut check = 0i64;
    for bytes in &inputs {
        let p: Reading = plughost_packed::from_slice(std::hint::black_box(bytes)).unwrap();
        let derived = derive::derive(&p);
        out.clear();
        plughost_packed::to_writer(&mut out, &derived).unwrap();
        check += derived.count;
        std::hint::black_box(out.as_bytes());
    }
    let secs = start.elapsed().as_secs_f64();
    assert!(check > 0);
    n as f64 / secs
}

/// Builds the native fixture plugins with `cargo build --release` (a no-op
/// when they are fresh), once, and returns the library holding the
/// `derive` behaviour.
fn native_library() -> &'static Path {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT.get_or_init(build_native)
}

fn build_native() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map_or_else(|| Path::new(ROOT).join("target"), PathBuf::from)
        .join("native-fixtures");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(format!("{ROOT}/tests/fixtures/native/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build of the native fixtures failed"
    );
    let file = format!(
        "{}native_behaviours{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    target.join("release").join(file)
}

fn plugins_dir(rt: Rt, copies: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..copies {
        let p = dir.path().join(format!("bench{i}"));
        std::fs::create_dir_all(&p).unwrap();
        let native = match rt {
            Rt::Native => {
                let lib = native_library();
                let name = lib.file_name().unwrap().to_str().unwrap().to_owned();
                std::fs::copy(lib, p.join(&name)).unwrap();
                format!("runtime: native\nentry: {name}\nconfig: {{behaviour: derive}}\n")
            }
            Rt::Lua | Rt::Rhai => String::new(),
        };
        std::fs::write(
            p.join("plugin.yaml"),
            format!("name: bench{i}\nversion: 1.0.0\nsubscriptions: [bench.in]\nlimits: {{queue: 4096}}\n{native}"),
        )
        .unwrap();
        match rt {
            Rt::Lua => std::fs::write(
                p.join("main.lua"),
                format!("{DERIVE}\nfunction on_event(e)\n  bus.publish(\"bench.out\", derive(e.payload))\nend\n"),
            ),
            Rt::Rhai => std::fs::write(
                p.join("main.rhai"),
                format!("{DERIVE_RHAI}\nfn on_event(e) {{\n  bus::publish(\"bench.out\", derive(e.payload));\n}}\n"),
            ),
            Rt::Native => Ok(()),
        }
        .unwrap();
    }
    dir
}

/// How the host under test records telemetry.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Telemetry {
    Off,
    InProcess,
    Exporting,
}

/// Publishes `n` events to `copies` plugins; returns input events per second.
fn through_host(rt: Rt, copies: usize, n: u64) -> f64 {
    through_host_with(rt, copies, n, Telemetry::InProcess)
}

fn through_host_with(rt: Rt, copies: usize, n: u64, telemetry: Telemetry) -> f64 {
    let dir = plugins_dir(rt, copies);
    // The OTLP exporter's HTTP client is a blocking one: built outside the runtime.
    let export = match telemetry {
        Telemetry::Exporting => Some(
            plughost::telemetry::export::Export::from_env()
                .expect("an OTLP export")
                .expect("OTEL_EXPORTER_OTLP_ENDPOINT is set"),
        ),
        _ => None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut builder = plughost::Host::builder()
            .plugins_dir(dir.path())
            .telemetry(telemetry != Telemetry::Off);
        if let Some(reader) = export.as_ref().and_then(|e| e.take_metric_reader()) {
            builder = builder.metric_export(reader);
        }
        let host = builder.build().unwrap();
        let report = host.start().await;
        assert_eq!(report.started.len(), copies, "{report:?}");
        let mut out = host.subscribe("bench.out").unwrap();
        let inputs: Vec<Value> = (0..n).map(payload).collect();
        let expected = n * copies as u64;
        let start = Instant::now();
        let collector = tokio::spawn(async move {
            let mut got = 0u64;
            while got < expected {
                out.recv().await.expect("output");
                got += 1;
            }
        });
        for p in inputs {
            host.publish("bench.in", p).await.unwrap();
        }
        collector.await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        host.shutdown(Duration::from_secs(5)).await;
        n as f64 / secs
    })
}

fn best_of<F: FnMut() -> f64>(runs: usize, mut f: F) -> f64 {
    (0..runs).map(|_| f()).fold(0.0, f64::max)
}

/// One Lua plugin with telemetry off, in process and exporting.
fn telemetry_section(n: u64) {
    println!("telemetry, one Lua plugin (best of 5, off and in-process interleaved):");
    through_host_with(Rt::Lua, 1, n / 10, Telemetry::Off);
    let (mut off, mut in_process) = (0.0f64, 0.0f64);
    for _ in 0..5 {
        off = off.max(through_host_with(Rt::Lua, 1, n, Telemetry::Off));
        in_process = in_process.max(through_host_with(Rt::Lua, 1, n, Telemetry::InProcess));
    }
    // A loopback port where nothing listens: every export fails at once,
    // on the exporters' own threads.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // SAFETY: no other thread of this process reads or writes the
    // environment now (every host of the runs above has shut down).
    unsafe {
        std::env::set_var(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        );
        std::env::set_var("OTEL_METRIC_EXPORT_INTERVAL", "200");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "200");
        std::env::set_var("PLUGHOST_LOG", "off");
    }
    let spans = plughost::telemetry::export::Export::from_env()
        .expect("an OTLP export")
        .expect("OTEL_EXPORTER_OTLP_ENDPOINT is set");
    // `PLUGHOST_BENCH_SPANS_NOWHERE`: the same span layer, with a tracer
    // provider that sends the spans nowhere: what recording them costs on
    // the plugin's thread, without the export's batching and I/O.
    let nowhere = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = if std::env::var_os("PLUGHOST_BENCH_SPANS_NOWHERE").is_some() {
        use opentelemetry::trace::TracerProvider as _;
        nowhere.tracer("plughost")
    } else {
        spans.tracer()
    };
    plughost::cli::logging::init_with(plughost::cli::logging::LogFormat::Text, Some(tracer));
    through_host_with(Rt::Lua, 1, n / 10, Telemetry::Exporting);
    let exporting = best_of(5, || through_host_with(Rt::Lua, 1, n, Telemetry::Exporting));
    for (what, rate) in [
        ("(4) telemetry off", off),
        ("(5) in process (the default)", in_process),
        (
            if std::env::var_os("PLUGHOST_BENCH_SPANS_NOWHERE").is_some() {
                "(6) spans recorded, sent nowhere"
            } else {
                "(6) exporting OTLP (nothing listening)"
            },
            exporting,
        ),
    ] {
        println!("{what:<48} {rate:>10.0} events/s {:>6.2}x off", rate / off);
    }
    spans.shutdown();
}

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let n: u64 = std::env::var("PLUGHOST_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("plughost throughput benchmark: {n} events per run, best of 3");
    if std::env::var_os("PLUGHOST_BENCH_ONLY_TELEMETRY").is_some() {
        telemetry_section(n);
        return;
    }
    if let Ok(only) = std::env::var("PLUGHOST_BENCH_ONLY_BARE") {
        // The baseline alone, for a profiler: `=lua`, `=rhai`,
        // `=rhai-limited` or `=native`.
        let rate = match only.as_str() {
            "rhai" => bare_rhai(n),
            "rhai-limited" => bare_rhai_limited(n),
            "native" => bare_native(n),
            "native-packed" => bare_native_packed(n),
            _ => bare_loop(n),
        };
        println!("{rate:.0} events/s");
        return;
    }
    if let Ok(only) = std::env::var("PLUGHOST_BENCH_ONLY_HOST") {
        // For profiling the host alone: `perf record` this with `=lua`,
        // `=rhai` or `=native`.
        let rt = match only.as_str() {
            "rhai" => Rt::Rhai,
            "native" => Rt::Native,
            _ => Rt::Lua,
        };
        println!("{:.0} events/s", through_host(rt, 1, n));
        return;
    }
    let all = [(Rt::Lua, "Lua"), (Rt::Rhai, "Rhai"), (Rt::Native, "native")];
    let chosen = std::env::var("PLUGHOST_BENCH_RUNTIMES").ok();
    let runtimes: Vec<(Rt, &str)> = match &chosen {
        Some(list) => list
            .split(',')
            .map(|name| {
                *all.iter()
                    .find(|(_, n)| n.eq_ignore_ascii_case(name.trim()))
                    .unwrap_or_else(|| panic!("PLUGHOST_BENCH_RUNTIMES: unknown runtime `{name}`"))
            })
            .collect(),
        None => all.to_vec(),
    };
    let mut ones = Vec::new();
    for (rt, name) in runtimes {
        if rt == Rt::Native {
            // Built before anything is measured.
            native_library();
        }
        let bare = |n| match rt {
            Rt::Lua => bare_loop(n),
            Rt::Rhai => bare_rhai(n),
            Rt::Native => bare_native(n),
        };
        // Warm up allocator, caches and the CPU's clock.
        bare(n / 10);
        through_host(rt, 1, n / 10);
        let bare_rate = best_of(3, || bare(n));
        let one = best_of(3, || through_host(rt, 1, n));
        let ten = best_of(3, || through_host(rt, 10, n / 10));
        let row = |what: String, rate: f64, deliveries: f64| {
            println!(
                "{what:<48} {:>10.0} events/s {:>10.0} deliveries/s {:>6.2}x bare",
                rate,
                deliveries,
                deliveries / bare_rate
            );
        };
        let bare_what = match rt {
            Rt::Lua => "(2) bare mlua loop (to_value/call/from_value)".to_owned(),
            Rt::Rhai => "(2) bare rhai loop (to_dynamic/call_fn/from_dynamic)".to_owned(),
            Rt::Native => "(2) bare Rust loop (derive on structs in memory)".to_owned(),
        };
        row(bare_what, bare_rate, bare_rate);
        if rt == Rt::Native {
            let packed = best_of(3, || bare_native_packed(n));
            row(
                "(2b) the same, from and to packed bytes".to_owned(),
                packed,
                packed,
            );
        }
        if rt == Rt::Rhai {
            let limited = best_of(3, || bare_rhai_limited(n));
            row(
                "(2b) the same with a plugin's limits".to_owned(),
                limited,
                limited,
            );
        }
        row(format!("(1) one {name} plugin through the bus"), one, one);
        row(
            format!("(3) ten {name} plugins on one topic"),
            ten,
            ten * 10.0,
        );
        ones.push((rt, name, one));
    }
    if let Some(&(first_rt, first, first_rate)) = ones.first() {
        for &(rt, name, rate) in &ones[1..] {
            println!(
                "(1) one {name} plugin / one {first} plugin: {:.2}x",
                rate / first_rate
            );
            // The two again, alternating, so that a change in the machine's
            // load between the sections above weighs on both alike.
            let (mut a, mut b) = (0.0f64, 0.0f64);
            for _ in 0..5 {
                a = a.max(through_host(first_rt, 1, n));
                b = b.max(through_host(rt, 1, n));
            }
            println!(
                "(1) the same, alternating, best of 5: {first} {a:.0}, {name} {b:.0} events/s: {:.2}x",
                b / a
            );
        }
    }
    if chosen.is_none() {
        telemetry_section(n);
    }
}
