//! Throughput benchmark: events per second through Lua and Rhai plugins on
//! the bus, against the same function called in a loop on a bare interpreter.
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
//! `Engine::call_fn`, `rhai::serde::from_dynamic`).

use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use mlua::{Function, Lua, LuaSerdeExt, Table};
use serde_json::{Value, json};

/// The work, shared by the plugin and the bare loop.
const DERIVE: &str = r#"
local function derive(p)
  return {
    name = string.upper(p.name),
    count = p.count + 1,
    ratio = p.ratio * 2.0,
    active = not p.active,
    origin = { city = p.location.city, zip = p.location.zip },
  }
end
"#;

/// The same work in Rhai.
const DERIVE_RHAI: &str = r#"
fn derive(p) {
    #{
        name: p.name.to_upper(),
        count: p.count + 1,
        ratio: p.ratio * 2.0,
        active: !p.active,
        origin: #{ city: p.location.city, zip: p.location.zip },
    }
}
"#;

/// A runtime under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Lua,
    Rhai,
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

fn plugins_dir(rt: Rt, copies: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..copies {
        let p = dir.path().join(format!("bench{i}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("plugin.yaml"),
            format!("name: bench{i}\nversion: 1.0.0\nsubscriptions: [bench.in]\nlimits: {{queue: 4096}}\n"),
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
        }
        .unwrap();
    }
    dir
}

/// Publishes `n` events to `copies` plugins; returns input events per second.
fn through_host(rt: Rt, copies: usize, n: u64) -> f64 {
    let dir = plugins_dir(rt, copies);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let host = plughost::Host::builder()
            .plugins_dir(dir.path())
            .build()
            .unwrap();
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

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let n: u64 = std::env::var("PLUGHOST_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("plughost throughput benchmark: {n} events per run, best of 3");
    if let Ok(only) = std::env::var("PLUGHOST_BENCH_ONLY_HOST") {
        // For profiling the host alone: `perf record` this with `=lua` or `=rhai`.
        let rt = if only == "rhai" { Rt::Rhai } else { Rt::Lua };
        println!("{:.0} events/s", through_host(rt, 1, n));
        return;
    }
    for (rt, name) in [(Rt::Lua, "Lua"), (Rt::Rhai, "Rhai")] {
        let bare = |n| match rt {
            Rt::Lua => bare_loop(n),
            Rt::Rhai => bare_rhai(n),
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
        };
        row(bare_what, bare_rate, bare_rate);
        row(format!("(1) one {name} plugin through the bus"), one, one);
        row(
            format!("(3) ten {name} plugins on one topic"),
            ten,
            ten * 10.0,
        );
    }
}
