//! Reload latency benchmark: from saving a plugin's script to the first
//! event handled by the new version, the watcher's wait included.
//!
//! Run with `cargo bench -p plughost --bench reload`. For Lua and for Rhai,
//! and for two ways of saving (in place: open, truncate, write, close; and
//! atomic: a temporary file written, closed and renamed over the script), a
//! host with live reload on runs one plugin whose output carries a marker;
//! 200 times the script is saved with the next marker, and from just before
//! the save an event is published every millisecond until an output with the
//! new marker arrives. Printed: median, p90, p99, max, min and the
//! distribution in 5 ms buckets. The bar: median under 30 ms and p99 under
//! 60 ms.
//!
//! `PLUGHOST_BENCH_EDITS` changes the number of saves.

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

/// How a save writes the file.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Save {
    /// Open with truncation, write, close (`std::fs::write`).
    InPlace,
    /// A hidden temporary file in the same folder, written, closed and
    /// renamed over the script.
    Atomic,
}

impl Save {
    fn name(self) -> &'static str {
        match self {
            Save::InPlace => "in place",
            Save::Atomic => "atomic",
        }
    }

    fn save(self, path: &Path, text: &str) {
        match self {
            Save::InPlace => std::fs::write(path, text).unwrap(),
            Save::Atomic => {
                let name = path.file_name().unwrap().to_str().unwrap();
                let tmp = path.with_file_name(format!(".{name}.save-tmp"));
                std::fs::write(&tmp, text).unwrap();
                std::fs::rename(&tmp, path).unwrap();
            }
        }
    }
}

/// Saves the script `edits` times with `how`; returns the latency of each.
fn measure(rt: Rt, how: Save, edits: u64) -> Vec<Duration> {
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
            how.save(&script, &rt.script(k));
            samples.push(first_with_marker(&host, &mut out, k, written).await);
        }
        host.shutdown(Duration::from_secs(5)).await;
        samples
    })
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

/// Counts of samples in 5 ms buckets, up to the last bucket with one.
fn distribution(sorted: &[Duration]) -> String {
    const BUCKET: f64 = 5.0;
    let last = (ms(*sorted.last().unwrap()) / BUCKET) as usize;
    let mut counts = vec![0usize; last + 1];
    for s in sorted {
        counts[(ms(*s) / BUCKET) as usize] += 1;
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| format!("{}-{} ms: {n}", i * 5, i * 5 + 5))
        .collect::<Vec<_>>()
        .join(", ")
}

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let edits: u64 = std::env::var("PLUGHOST_BENCH_EDITS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    println!(
        "plughost reload latency: save -> first event handled by the new version, {edits} saves"
    );
    for (rt, name) in [(Rt::Lua, "Lua"), (Rt::Rhai, "Rhai")] {
        for how in [Save::InPlace, Save::Atomic] {
            let mut samples = measure(rt, how, edits);
            samples.sort();
            let median = percentile(&samples, 50.0);
            let p99 = percentile(&samples, 99.0);
            let label = format!("{name} {}", how.name());
            println!(
                "{label:<14} median {:>6.1} ms   p90 {:>6.1} ms   p99 {:>6.1} ms   max {:>6.1} ms   min {:>6.1} ms",
                ms(median),
                ms(percentile(&samples, 90.0)),
                ms(p99),
                ms(*samples.last().unwrap()),
                ms(samples[0]),
            );
            println!("{label:<14} distribution: {}", distribution(&samples));
            let ok = median < Duration::from_millis(30) && p99 < Duration::from_millis(60);
            println!(
                "{label:<14} bar (median < 30 ms, p99 < 60 ms): {}",
                if ok { "met" } else { "MISSED" }
            );
        }
    }
}
