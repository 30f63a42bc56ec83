//! Scale benchmark: a thousand plugins (and ten thousand), from outside.
//!
//! Run with `cargo bench -p plughost --bench scale`. For N plugins in a temp
//! dir (plugin `p<i>` subscribes to `p.<i>` and publishes `out.<i>`), it runs
//! `plughost run --plugins DIR --input FILE --tap 'out.>' --exit-when-idle
//! --no-watch` with one input event for `p0`, and measures the time from
//! spawning the process to the first tap line on its stdout, and the
//! child's peak RSS (`wait4`), against the same run with no plugin. N is
//! 1,000 for Lua and for Rhai, then 10,000 Lua, skipped when the machine's
//! thread limits are below what it needs or when it runs past
//! [`BIG_LIMIT`].
//!
//! Then routing: the cost of looking up the routes of a topic among 1,
//! 1,000, 10,000 and 100,000 routes (and three with wildcards), through the bus's index
//! (`bus/index.rs`, compiled in here) and through the linear scan the bus
//! used before (every route's patterns matched).
//!
//! `PLUGHOST_BENCH_RUNS` sets the runs per process measurement (median
//! taken, default 3); `PLUGHOST_BENCH_BIG=0` skips the 10,000 plugins.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bus's routing index, compiled into this benchmark.
#[allow(dead_code)]
#[path = "../src/bus/index.rs"]
mod index;

/// What `index.rs` takes from the crate.
mod topic {
    pub use plughost::topic::Pattern;
}

use plughost::topic::{Pattern, PatternSet};

/// How long the 10,000-plugin run may take before it is given up.
const BIG_LIMIT: Duration = Duration::from_secs(120);

#[derive(Clone, Copy, Debug)]
enum Rt {
    Lua,
    Rhai,
}

impl Rt {
    fn name(self) -> &'static str {
        match self {
            Rt::Lua => "lua",
            Rt::Rhai => "rhai",
        }
    }

    fn entry(self) -> &'static str {
        match self {
            Rt::Lua => "main.lua",
            Rt::Rhai => "main.rhai",
        }
    }

    fn script(self, i: usize) -> String {
        match self {
            Rt::Lua => {
                format!(
                    "function on_event(e)\n  bus.publish(\"out.{i}\", {{ n = e.payload.n }})\nend\n"
                )
            }
            Rt::Rhai => {
                format!(
                    "fn on_event(e) {{\n  bus::publish(\"out.{i}\", #{{ n: e.payload.n }});\n}}\n"
                )
            }
        }
    }
}

/// Writes `n` plugins of runtime `rt` under `dir`.
fn generate(dir: &Path, rt: Rt, n: usize) {
    for i in 0..n {
        let p = dir.join(format!("p{i}"));
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("plugin.yaml"),
            format!("name: p{i}\nversion: 1.0.0\nsubscriptions: [p.{i}]\n"),
        )
        .unwrap();
        std::fs::write(p.join(rt.entry()), rt.script(i)).unwrap();
    }
}

/// One process run: time to the first tap line (`None` with no plugin:
/// nothing is tapped), the whole run, and the child's peak RSS in KB.
struct Run {
    first: Option<Duration>,
    total: Duration,
    peak_kb: i64,
}

/// Runs plughost on `dir` with one event for `p0`, its log in `log`;
/// `None` past `limit`.
fn run_once(dir: &Path, input: &Path, log: &Path, limit: Duration) -> Option<Run> {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_plughost"))
        .args(["run", "--plugins"])
        .arg(dir)
        .arg("--input")
        .arg(input)
        .args(["--tap", "out.>", "--exit-when-idle", "--no-watch"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).expect("a log file"))
        .spawn()
        .expect("plughost runs");
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().map(|_| start.elapsed());
        let _ = tx.send(first);
        for _ in lines {}
    });
    let first = match rx.recv_timeout(limit) {
        Ok(first) => first,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
    };
    let peak_kb = wait_with_rusage(pid);
    let total = start.elapsed();
    let _ = reader.join();
    Some(Run {
        first,
        total,
        peak_kb,
    })
}

/// Reaps child `pid`; its peak RSS (KB).
fn wait_with_rusage(pid: u32) -> i64 {
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; `pid` is our
    // child, not reaped yet (its `Child` is never waited on after this).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(r, pid as libc::pid_t, "wait4 reaps the child");
    usage.ru_maxrss
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Runs `runs` times; the median first-output time and total time, the
/// largest peak RSS, and the plugins started.
fn measure(dir: &Path, input: &Path, runs: usize, limit: Duration) -> Option<Measured> {
    let log = dir.with_extension("log");
    let mut firsts = Vec::new();
    let mut totals = Vec::new();
    let mut peak = 0;
    for _ in 0..runs {
        let run = run_once(dir, input, &log, limit)?;
        firsts.push(run.first.unwrap_or(run.total));
        totals.push(run.total);
        peak = peak.max(run.peak_kb);
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    Some(Measured {
        first: median(firsts),
        total: median(totals),
        peak_kb: peak,
        started: started_count(&log),
    })
}

/// A process measurement: median times, largest peak RSS (KB), and how
/// many plugins the last run says started.
struct Measured {
    first: Duration,
    total: Duration,
    peak_kb: i64,
    started: Option<usize>,
}

/// The `started=N` of plughost's "running" log line.
fn started_count(log: &str) -> Option<usize> {
    let at = log.find(" started=")? + " started=".len();
    let digits: String = log[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The number of threads this user may run, and the system's.
fn thread_limits() -> (u64, u64) {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    // SAFETY: getrlimit fills in a plain struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    let user = if unsafe { libc::getrlimit(libc::RLIMIT_NPROC, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        u64::MAX
    };
    (user, read("/proc/sys/kernel/threads-max"))
}

fn processes(runs: usize, big: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.jsonl");
    std::fs::write(&input, "{\"topic\":\"p.0\",\"payload\":{\"n\":1}}\n").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let limit = Duration::from_secs(60);
    let base = measure(&empty, &input, runs, limit).expect("0 plugins run");
    let (base_first, base_kb) = (base.first, base.peak_kb);
    println!("whole process, one event for p0 (median of {runs} runs; peak RSS the largest)");
    println!(
        "{:<16} {:>12} {:>12} {:>14} {:>16} {:>9}",
        "plugins", "first out", "total", "peak RSS", "RSS per plugin", "started"
    );
    println!(
        "{:<16} {:>9.1} ms {:>12} {:>11} KB {:>16}",
        "0 (baseline)",
        base_first.as_secs_f64() * 1e3,
        "",
        base_kb,
        ""
    );
    let mut cases = vec![(Rt::Lua, 1000), (Rt::Rhai, 1000)];
    if big {
        let (user, system) = thread_limits();
        // One thread per plugin, and the runtime's own.
        let need = 10_000 + 64;
        if user >= need && system >= need {
            cases.push((Rt::Lua, 10_000));
        } else {
            println!(
                "10000 lua: skipped, thread limits too low (ulimit -u {user}, threads-max {system}; {need} needed)"
            );
        }
    }
    for (rt, n) in cases {
        let dir = tmp.path().join(format!("{}-{n}", rt.name()));
        generate(&dir, rt, n);
        let limit = if n > 1000 { BIG_LIMIT } else { limit };
        match measure(&dir, &input, if n > 1000 { 1 } else { runs }, limit) {
            Some(m) => println!(
                "{:<16} {:>9.1} ms {:>9.1} ms {:>11} KB {:>13.1} KB {:>9}",
                format!("{n} {}", rt.name()),
                m.first.as_secs_f64() * 1e3,
                m.total.as_secs_f64() * 1e3,
                m.peak_kb,
                (m.peak_kb - base_kb) as f64 / n as f64,
                m.started.map_or("?".to_owned(), |s| s.to_string()),
            ),
            None => println!("{n} {}: skipped, no output within {limit:?}", rt.name()),
        }
    }
}

/// Nanoseconds per lookup of `topics` (round robin) in `f`, over about
/// [`LOOKUP_TIME`].
fn per_lookup(topics: &[String], mut f: impl FnMut(&str) -> usize) -> f64 {
    let start = Instant::now();
    let mut found = 0;
    let mut rounds = 0usize;
    while !rounds.is_multiple_of(64) || start.elapsed() < LOOKUP_TIME {
        found += f(&topics[rounds % topics.len()]);
        rounds += 1;
    }
    std::hint::black_box(found);
    start.elapsed().as_secs_f64() * 1e9 / rounds as f64
}

/// Routes with wildcards beside the `p.<i>` ones (one matches every topic).
const WILDCARDS: [&str; 3] = ["plughost.>", "*.none", "p.>"];

/// How long each routing measurement runs.
const LOOKUP_TIME: Duration = Duration::from_millis(300);

fn routing() {
    println!();
    println!(
        "routing: the routes of one topic among N `p.<i>` routes and three with wildcards ({})",
        WILDCARDS.join(", ")
    );
    println!(
        "{:<10} {:>14} {:>14} {:>10}",
        "routes", "index", "linear scan", "ratio"
    );
    for n in [1usize, 1_000, 10_000, 100_000] {
        let sets: Vec<PatternSet> = (0..n)
            .map(|i| format!("p.{i}"))
            .chain(WILDCARDS.iter().map(|w| w.to_string()))
            .map(|p| PatternSet::new(vec![Pattern::parse(&p).unwrap()]))
            .collect();
        let mut idx = index::TopicIndex::default();
        for (i, s) in sets.iter().enumerate() {
            idx.insert(i as u64, s.patterns());
        }
        // Topics that hit one route, spread over them, more than the cache
        // holds (so most lookups walk the trie).
        let topics: Vec<String> = (0..4096).map(|k| format!("p.{}", (k * 7919) % n)).collect();
        let indexed = per_lookup(&topics, |t| idx.lookup(t).len());
        let linear = per_lookup(&topics[..64.min(topics.len())], |t| {
            sets.iter().filter(|s| s.matches(t)).count()
        });
        println!(
            "{:<10} {:>11.0} ns {:>11.0} ns {:>9.1}x",
            n,
            indexed,
            linear,
            linear / indexed
        );
    }
}

fn main() {
    let runs = std::env::var("PLUGHOST_BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let big = std::env::var("PLUGHOST_BENCH_BIG").map_or(true, |v| v != "0");
    let only_routing = std::env::args().any(|a| a == "routing");
    if !only_routing {
        processes(runs, big);
    }
    routing();
}
