//! Rollout benchmark (SPEC §13): what a rollout in progress costs the
//! plugin's throughput, against the same plugin alone, in the same process.
//!
//! Run with `cargo bench -p plughost --bench rollout`. The workload is row 1
//! of the throughput benchmark: one plugin whose `on_event` reads a 5-field
//! payload and publishes a derived 5-field payload, end to end (publish →
//! queue → plugin → bus → subscriber). For Lua and for Rhai, in alternating
//! rounds (each round's order rotated by one), with a fresh host per run:
//!
//! 1. **alone**: the plugin, no rollout: the baseline;
//! 2. **shadow**: the same code at a bumped version brought in with
//!    `rollout: {strategy: shadow}`; the rate is the running version's
//!    (outputs on the bus), and the candidate's `skipped` and the time it
//!    took to finish what it was given are reported beside it;
//! 3. **gradual 10 %** and **gradual 50 %**: the same code at a bumped
//!    version with `rollout: {strategy: gradual, percent: N}`; the rate is
//!    the whole plugin's, both versions' outputs together;
//! 4. **shadow, slow candidate**: a candidate that computes the same result
//!    several times before publishing it (same outputs, so every
//!    comparison is "same"), about ten times slower than the plugin alone;
//!    that slow code alone through the host is measured too, on a tenth of
//!    the events, to show how much slower it is.
//!
//! Each figure is the median over the rounds of its ratio to the baseline
//! of the same round. Every run checks what it can: every output arrives
//! (a lost one stops the run with the count), a shadow candidate of the
//! same code never differs nor fails, and every event is compared or
//! skipped; anything else is printed as a `DEFECT` line. Beside the rates,
//! the CPU time each group of threads ran over the running version's span
//! (from `/proc/self/task/*/schedstat`), per input event: the running
//! version's thread, the candidate's, and the rest (this bench's thread,
//! which runs the bus, the publisher and the subscriber).
//!
//! Environment: `PLUGHOST_BENCH_EVENTS` (events per run, default 100,000),
//! `PLUGHOST_BENCH_ROUNDS` (default 7), `PLUGHOST_BENCH_ONLY=lua|rhai`,
//! `PLUGHOST_BENCH_SLOW_REPEAT` (overrides the slow candidate's repeat
//! count, for both runtimes), and, for a profiler,
//! `PLUGHOST_BENCH_ONLY_MODE=alone|shadow|gradual10|gradual50|slow|slow-alone`:
//! that mode alone, once per round, with its rate and counts.

use std::time::{Duration, Instant};

#[path = "shared/work.rs"]
mod work;
use work::DERIVE;
use work::DERIVE_RHAI;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use plughost::Host;
use plughost::rollout::RolloutStatus;
use serde_json::{Value, json};

/// The plugin's name, and its folder's.
const PLUGIN: &str = "bench";

/// How long one output, or the rollout's start, may take before the run
/// is declared stuck.
const STUCK: Duration = Duration::from_secs(30);

/// A runtime under test.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Rt {
    Lua,
    Rhai,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Lua => "Lua",
            Rt::Rhai => "Rhai",
        }
    }

    /// How many times the slow candidate computes its result: about ten
    /// times the plugin's cost per event through the host (measured: see
    /// the "slow code alone" row).
    fn slow_repeat(self) -> u32 {
        if let Some(k) = std::env::var("PLUGHOST_BENCH_SLOW_REPEAT")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            return k;
        }
        match self {
            Rt::Lua => 75,
            Rt::Rhai => 18,
        }
    }

    /// The entry file's name and text; with `repeat` > 1, the result is
    /// computed that many times before it is published.
    fn source(self, repeat: u32) -> (&'static str, String) {
        match self {
            Rt::Lua => (
                "main.lua",
                format!(
                    "{DERIVE}\nfunction on_event(e)\n  local out\n  for _ = 1, {repeat} do out = derive(e.payload) end\n  bus.publish(\"bench.out\", out)\nend\n"
                ),
            ),
            Rt::Rhai => (
                "main.rhai",
                format!(
                    "{DERIVE_RHAI}\nfn on_event(e) {{\n  let out = ();\n  for i in 0..{repeat} {{ out = derive(e.payload); }}\n  bus::publish(\"bench.out\", out);\n}}\n"
                ),
            ),
        }
    }
}

/// What a run measures.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    /// The plugin alone: the baseline.
    Alone,
    /// A shadow candidate of the same code.
    Shadow,
    /// A gradual candidate of the same code on this share of the events.
    Gradual(u8),
    /// A shadow candidate of the same results, computed `slow_repeat` times.
    ShadowSlow,
    /// The slow code alone, as the running version (on a tenth of the events).
    SlowAlone,
}

impl Mode {
    const ALL: [Mode; 6] = [
        Mode::Alone,
        Mode::Shadow,
        Mode::Gradual(10),
        Mode::Gradual(50),
        Mode::ShadowSlow,
        Mode::SlowAlone,
    ];

    fn label(self) -> String {
        match self {
            Mode::Alone => "(1) plugin alone (baseline)".to_owned(),
            Mode::Shadow => "(2) shadow candidate, same code".to_owned(),
            Mode::Gradual(p) => format!("(3) gradual {p} %, both versions"),
            Mode::ShadowSlow => "(4) shadow candidate ~10x slower".to_owned(),
            Mode::SlowAlone => "(4b) that slow code alone".to_owned(),
        }
    }

    /// The mode `PLUGHOST_BENCH_ONLY_MODE` names.
    fn named(name: &str) -> Option<Mode> {
        Some(match name {
            "alone" => Mode::Alone,
            "shadow" => Mode::Shadow,
            "gradual10" => Mode::Gradual(10),
            "gradual50" => Mode::Gradual(50),
            "slow" => Mode::ShadowSlow,
            "slow-alone" => Mode::SlowAlone,
            _ => return None,
        })
    }

    /// The `rollout:` of the version brought in, if one is.
    fn rollout(self) -> Option<String> {
        match self {
            Mode::Alone | Mode::SlowAlone => None,
            Mode::Shadow | Mode::ShadowSlow => Some("{strategy: shadow}".to_owned()),
            Mode::Gradual(p) => Some(format!("{{strategy: gradual, percent: {p}}}")),
        }
    }
}

/// One run's figures.
#[derive(Clone, Debug)]
struct Run {
    /// Input events per second, from the first publish to the last output.
    rate: f64,
    /// The same span, in seconds.
    live_secs: f64,
    /// From the first publish until the shadow candidate had compared or
    /// skipped every event, in seconds.
    candidate_secs: Option<f64>,
    /// The rollout's counts once the run was over.
    status: Option<RolloutStatus>,
    /// CPU time over the same span, in seconds, by thread group.
    cpu: Cpu,
}

/// CPU time by thread group: the running version's thread (`plugin:`),
/// the candidate's (`shadow:` or `candidate:`), and the rest (the bench's
/// own thread, which runs the bus, the publisher and the subscriber).
#[derive(Clone, Copy, Debug, Default)]
struct Cpu {
    running: f64,
    candidate: f64,
    rest: f64,
}

/// Every thread of this process: its id, its name and the CPU time it ran,
/// in nanoseconds (`/proc/self/task/*/schedstat`).
fn threads_cpu() -> Vec<(String, String, u64)> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let stat = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            Some((
                t.file_name().to_string_lossy().into_owned(),
                comm.trim().to_owned(),
                ns,
            ))
        })
        .collect()
}

/// The CPU time each thread group ran between two [`threads_cpu`]s (a
/// thread missing from `before` started in between).
fn cpu_between(before: &[(String, String, u64)], after: &[(String, String, u64)]) -> Cpu {
    let mut cpu = Cpu::default();
    for (tid, comm, ns) in after {
        let was = before
            .iter()
            .find(|(t, c, _)| t == tid && c == comm)
            .map_or(0, |b| b.2);
        let secs = ns.saturating_sub(was) as f64 / 1e9;
        if comm.starts_with("plugin:") {
            cpu.running += secs;
        } else if comm.starts_with("shadow:") || comm.starts_with("candidate:") {
            cpu.candidate += secs;
        } else {
            cpu.rest += secs;
        }
    }
    cpu
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

/// Writes version `version` of the plugin: its manifest (with `rollout`)
/// and its code.
fn write_version(dir: &std::path::Path, rt: Rt, version: &str, repeat: u32, rollout: Option<&str>) {
    let p = dir.join(PLUGIN);
    std::fs::create_dir_all(&p).unwrap();
    let rollout = rollout.map_or_else(String::new, |r| format!("rollout: {r}\n"));
    std::fs::write(
        p.join("plugin.yaml"),
        format!(
            "name: {PLUGIN}\nversion: {version}\nsubscriptions: [bench.in]\nlimits: {{queue: 4096}}\n{rollout}"
        ),
    )
    .unwrap();
    let (file, text) = rt.source(repeat);
    std::fs::write(p.join(file), text).unwrap();
}

/// One run of `mode` on a fresh host: `n` events published, every output
/// awaited; for a shadow, the candidate awaited too.
fn run(rt: Rt, mode: Mode, n: u64) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let slow = rt.slow_repeat();
    let first = if mode == Mode::SlowAlone { slow } else { 1 };
    write_version(dir.path(), rt, "1.0.0", first, None);
    let tokio_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tokio_rt.block_on(async {
        let host = Host::builder().plugins_dir(dir.path()).build().unwrap();
        let report = host.start().await;
        assert_eq!(report.started.len(), 1, "{report:?}");
        if let Some(rollout) = mode.rollout() {
            let next = if mode == Mode::ShadowSlow { slow } else { 1 };
            write_version(dir.path(), rt, "1.0.1", next, Some(&rollout));
            let outcome = host.reload_plugin(PLUGIN).await;
            let deadline = Instant::now() + STUCK;
            while host.rollout_status(PLUGIN).is_none() {
                assert!(
                    Instant::now() < deadline,
                    "no rollout started for {mode:?}: {outcome:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        let mut out = host.subscribe("bench.out").unwrap();
        let inputs: Vec<Value> = (0..n).map(payload).collect();
        let cpu_before = threads_cpu();
        let start = Instant::now();
        let collector = tokio::spawn(async move {
            let mut got = 0u64;
            while got < n {
                match tokio::time::timeout(STUCK, out.recv()).await {
                    Ok(Some(_)) => got += 1,
                    Ok(None) | Err(_) => break,
                }
            }
            got
        });
        for p in inputs {
            host.publish("bench.in", p).await.unwrap();
        }
        let got = collector.await.unwrap();
        let live_secs = start.elapsed().as_secs_f64();
        let cpu = cpu_between(&cpu_before, &threads_cpu());
        assert_eq!(
            got,
            n,
            "DEFECT: {} {mode:?}: {got} outputs of {n} within {STUCK:?} of the last one; rollout {:?}",
            rt.name(),
            host.rollout_status(PLUGIN)
        );
        let mut candidate_secs = None;
        if matches!(mode, Mode::Shadow | Mode::ShadowSlow) {
            let deadline = Instant::now() + 4 * STUCK;
            loop {
                let s = host.rollout_status(PLUGIN).expect("the rollout goes on");
                if s.compared + s.skipped >= n {
                    candidate_secs = Some(start.elapsed().as_secs_f64());
                    break;
                }
                if Instant::now() >= deadline {
                    println!(
                        "DEFECT: {} {mode:?}: the candidate accounted for {} of {n} events within {:?}: {s:?}",
                        rt.name(),
                        s.compared + s.skipped,
                        4 * STUCK
                    );
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let status = host.rollout_status(PLUGIN);
        host.shutdown(Duration::from_secs(10)).await;
        check(rt, mode, n, status.as_ref());
        Run {
            rate: n as f64 / live_secs,
            live_secs,
            candidate_secs,
            status,
            cpu,
        }
    })
}

/// Prints a `DEFECT` line for every count a run of the same code must not
/// show.
fn check(rt: Rt, mode: Mode, n: u64, status: Option<&RolloutStatus>) {
    let Some(s) = status else {
        if mode.rollout().is_some() {
            println!(
                "DEFECT: {} {mode:?}: the rollout ended by itself",
                rt.name()
            );
        }
        return;
    };
    if s.differed != 0 || s.candidate_errors != 0 {
        println!(
            "DEFECT: {} {mode:?}: a candidate of the same results differed or failed: {s:?}",
            rt.name()
        );
    }
    if matches!(mode, Mode::Shadow | Mode::ShadowSlow) && s.compared + s.skipped != n {
        println!(
            "DEFECT: {} {mode:?}: {} compared + {} skipped of {n} events",
            rt.name(),
            s.compared,
            s.skipped
        );
    }
}

/// The median of `xs` (the mean of the two middle ones for an even count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len().is_multiple_of(2) {
        (xs[m - 1] + xs[m]) / 2.0
    } else {
        xs[m]
    }
}

/// The lowest and highest of `xs`.
fn range(xs: &[f64]) -> (f64, f64) {
    xs.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// Every round of every mode for `rt`, then its table.
fn section(rt: Rt, n: u64, rounds: usize) {
    // Warm up allocator, caches and the CPU's clock.
    run(rt, Mode::Alone, n / 10);
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); Mode::ALL.len()];
    for round in 0..rounds {
        for k in 0..Mode::ALL.len() {
            let i = (k + round) % Mode::ALL.len();
            let mode = Mode::ALL[i];
            let events = if mode == Mode::SlowAlone { n / 10 } else { n };
            runs[i].push(run(rt, mode, events));
        }
    }
    let base = &runs[0];
    println!(
        "{} (slow candidate: the result computed {} times), median of {rounds} rounds:",
        rt.name(),
        rt.slow_repeat()
    );
    println!(
        "{:<38} {:>10} {:>7} {:>13} {:>9} {:>10} {:>9}",
        "", "events/s", "ratio", "ratio range", "skipped", "cand/live", "by cand."
    );
    for (i, mode) in Mode::ALL.iter().enumerate() {
        let ratios: Vec<f64> = runs[i]
            .iter()
            .zip(base)
            .map(|(r, b)| r.rate / b.rate)
            .collect();
        let (lo, hi) = range(&ratios);
        let rate = median(runs[i].iter().map(|r| r.rate).collect());
        let events = if *mode == Mode::SlowAlone { n / 10 } else { n } as f64;
        let skipped = match mode {
            Mode::Shadow | Mode::ShadowSlow => format!(
                "{:.1} %",
                100.0
                    * median(
                        runs[i]
                            .iter()
                            .map(|r| r.status.as_ref().map_or(0, |s| s.skipped) as f64)
                            .collect()
                    )
                    / events
            ),
            _ => String::new(),
        };
        let lag = match mode {
            Mode::Shadow | Mode::ShadowSlow => format!(
                "{:.2}x",
                median(
                    runs[i]
                        .iter()
                        .filter_map(|r| r.candidate_secs.map(|c| c / r.live_secs))
                        .collect()
                )
            ),
            _ => String::new(),
        };
        let by_candidate = match mode {
            Mode::Gradual(_) => format!(
                "{:.1} %",
                100.0
                    * median(
                        runs[i]
                            .iter()
                            .map(|r| {
                                r.status.as_ref().map_or(0, |s| s.handled_by_candidate) as f64
                            })
                            .collect()
                    )
                    / events
            ),
            _ => String::new(),
        };
        println!(
            "{:<38} {rate:>10.0} {:>6.2}x {:>6.2}-{:<6.2} {skipped:>9} {lag:>10} {by_candidate:>9}",
            mode.label(),
            median(ratios.clone()),
            lo,
            hi
        );
    }
    println!(
        "\n{:<38} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "CPU per input event, in us (median):",
        "running",
        "candidate",
        "rest",
        "total",
        "cores busy"
    );
    for (i, mode) in Mode::ALL.iter().enumerate() {
        let events = if *mode == Mode::SlowAlone { n / 10 } else { n } as f64;
        let per_event = |f: fn(&Run) -> f64| median(runs[i].iter().map(f).collect()) * 1e6 / events;
        let busy = median(
            runs[i]
                .iter()
                .map(|r| (r.cpu.running + r.cpu.candidate + r.cpu.rest) / r.live_secs)
                .collect(),
        );
        println!(
            "{:<38} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>11.2}",
            mode.label(),
            per_event(|r| r.cpu.running),
            per_event(|r| r.cpu.candidate),
            per_event(|r| r.cpu.rest),
            per_event(|r| r.cpu.running + r.cpu.candidate + r.cpu.rest),
            busy
        );
    }
    println!();
}

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let n: u64 = std::env::var("PLUGHOST_BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rounds: usize = std::env::var("PLUGHOST_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let only = std::env::var("PLUGHOST_BENCH_ONLY").ok();
    println!(
        "plughost rollout benchmark: {n} events per run ({} for the slow code alone), {rounds} rounds, {} CPUs",
        n / 10,
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    println!(
        "ratio: to the plugin alone in the same round; skipped: share of events the shadow \
         candidate skipped; cand/live: time until the candidate had accounted for every event, \
         over the running version's; by cand.: share a gradual candidate handled\n"
    );
    let only_mode = std::env::var("PLUGHOST_BENCH_ONLY_MODE").ok();
    for rt in [Rt::Lua, Rt::Rhai] {
        if only
            .as_deref()
            .is_some_and(|o| !o.eq_ignore_ascii_case(rt.name()))
        {
            continue;
        }
        match only_mode.as_deref() {
            // One mode alone, for a profiler: `perf record` this.
            Some(name) => {
                let mode = Mode::named(name).expect(
                    "PLUGHOST_BENCH_ONLY_MODE: alone, shadow, gradual10, gradual50, slow or slow-alone",
                );
                for _ in 0..rounds {
                    let r = run(rt, mode, n);
                    println!(
                        "{} {}: {:.0} events/s, {:?}",
                        rt.name(),
                        mode.label(),
                        r.rate,
                        r.status
                    );
                }
            }
            None => section(rt, n, rounds),
        }
    }
}
