//! Reload latency benchmark: from writing a plugin's script to the first
//! event handled by the new version, debounce included.
//!
//! Run with `cargo bench -p plughost --bench reload`. For Lua and for Rhai,
//! a host with live reload on runs one plugin whose output carries a marker;
//! 100 times the script is rewritten with the next marker, and from just
//! before the write an event is published every millisecond until an output
//! with the new marker arrives. The bar (SPEC §5, the live-reload issue):
//! median under 100 ms and p99 under 250 ms.
//!
//! `PLUGHOST_BENCH_EDITS` changes the number of edits.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Lua,
    Rhai,
}

impl Rt {
    fn entry(self) -> &'static str {
        match self {
            Rt::Lua => "main.lua",
            Rt::Rhai => "main.rhai",
        }
    }

    /// The plugin's script with output marker `k`.
    fn script(self, k: u64) -> String {
        match self {
            Rt::Lua => format!(
                "function on_event(e)\n  bus.publish(\"bench.out\", {{ marker = {k} }})\nend\n"
            ),
            Rt::Rhai => format!(
                "fn on_event(e) {{\n  bus::publish(\"bench.out\", #{{ marker: {k} }});\n}}\n"
            ),
        }
    }
}

/// How long one edit may take before the benchmark gives up.
const LIMIT: Duration = Duration::from_secs(10);

/// Rewrites the script `edits` times; returns the latency of each edit.
fn measure(rt: Rt, edits: u64) -> Vec<Duration> {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("bench");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(
        plugin.join("plugin.yaml"),
        "name: bench\nversion: 1.0.0\nsubscriptions: [bench.in]\n",
    )
    .unwrap();
    let script = plugin.join(rt.entry());
    std::fs::write(&script, rt.script(0)).unwrap();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let host = plughost::Host::builder()
            .plugins_dir(dir.path())
            .build()
            .unwrap();
        let report = host.start().await;
        assert_eq!(report.started, ["bench"], "{report:?}");
        let _watch = host.watch().expect("watch the plugins directory");
        let mut out = host.subscribe("bench.out").unwrap();
        // Version 0 answers: the host is up.
        first_with_marker(&host, &mut out, 0, Instant::now()).await;
        let mut samples = Vec::with_capacity(edits as usize);
        for k in 1..=edits {
            let written = Instant::now();
            write(&script, &rt.script(k));
            samples.push(first_with_marker(&host, &mut out, k, written).await);
        }
        host.shutdown(Duration::from_secs(5)).await;
        samples
    })
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Publishes an event every millisecond until an output carries `marker`;
/// returns the time from `since`.
async fn first_with_marker(
    host: &plughost::Host,
    out: &mut plughost::EventStream,
    marker: u64,
    since: Instant,
) -> Duration {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            biased;
            event = out.recv() => {
                let event = event.expect("the output stream ended");
                if event.payload["marker"] == marker {
                    return since.elapsed();
                }
            }
            _ = tick.tick() => {
                assert!(since.elapsed() < LIMIT, "no output with marker {marker} within {LIMIT:?}");
                host.publish("bench.in", json!({})).await.unwrap();
            }
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The `p`th percentile (nearest rank) of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let edits: u64 = std::env::var("PLUGHOST_BENCH_EDITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    println!(
        "plughost reload latency: file write -> first event handled by the new version, {edits} edits"
    );
    for (rt, name) in [(Rt::Lua, "Lua"), (Rt::Rhai, "Rhai")] {
        let mut samples = measure(rt, edits);
        samples.sort();
        let median = percentile(&samples, 50.0);
        let p99 = percentile(&samples, 99.0);
        let max = *samples.last().unwrap();
        let min = samples[0];
        println!(
            "{name:<5} median {:>7.1} ms   p99 {:>7.1} ms   max {:>7.1} ms   min {:>7.1} ms",
            ms(median),
            ms(p99),
            ms(max),
            ms(min)
        );
        let ok = median < Duration::from_millis(100) && p99 < Duration::from_millis(250);
        println!(
            "{name:<5} bar (median < 100 ms, p99 < 250 ms): {}",
            if ok { "met" } else { "MISSED" }
        );
    }
}
