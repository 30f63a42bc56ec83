//! What telemetry costs a whole process: one Lua relay plugin handles
//! 100,000 events through `plughost run --input FILE --exit-when-idle`,
//! with telemetry off (no endpoint), then exporting over OTLP/HTTP to a real
//! collector (rotel, on loopback) with `parentbased_traceidratio` 0.01, then
//! exporting every span. Three rounds, alternating; the median of each is
//! reported with its ratio to off. After each exporting run the spans the
//! collector received are counted and checked against what the host kept
//! (no span of a sampled trace may be lost): every event for "all", about 1 %
//! for 0.01.
//!
//! Run with `cargo bench -p plughost --bench telemetry`. The collector is
//! `$PLUGHOST_ROTEL`, else rotel-agent from the `rotel` Python package.
//! `PLUGHOST_BENCH_EVENTS` changes the number of events.

use std::fs::File;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ROTEL: &str = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/rotel/rotel-agent";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
        .port()
}

/// rotel printing every span it receives to a file; killed on drop.
struct Collector {
    child: Child,
    http: SocketAddr,
    out: PathBuf,
}

impl Collector {
    fn start(dir: &Path) -> Collector {
        let exe = std::env::var("PLUGHOST_ROTEL").unwrap_or_else(|_| ROTEL.to_owned());
        let out = dir.join("rotel.out");
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(&exe)
            .arg("start")
            .args(["--otlp-http-endpoint", &http.to_string()])
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .args(["--batch-timeout", "50ms"])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("rotel stdout"))
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start rotel ({exe}): {e}"));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "rotel not listening on {http}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Collector { child, http, out }
    }

    /// Delivery spans received so far.
    fn deliveries(&self) -> usize {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.trim_start().starts_with("Name") && l.trim_end().ends_with(": plugin.event")
            })
            .count()
    }

    /// Waits until the count stops growing (up to 30 s); the final count.
    fn settled(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = self.deliveries();
        loop {
            std::thread::sleep(Duration::from_millis(1000));
            let now = self.deliveries();
            if now == last || Instant::now() > deadline {
                return now;
            }
            last = now;
        }
    }

    fn truncate(&self) {
        File::create(&self.out).expect("truncate rotel output");
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Off,
    Ratio,
    All,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Ratio => "parentbased_traceidratio 0.01",
            Mode::All => "every span",
        }
    }
}

/// One whole run; its wall time.
fn run(mode: Mode, plugins: &Path, input: &Path, collector: &Collector) -> Duration {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plughost"));
    cmd.args(["run", "--input"])
        .arg(input)
        .args(["--exit-when-idle", "--plugins"])
        .arg(plugins)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_TRACES_SAMPLER")
        .env_remove("OTEL_TRACES_SAMPLER_ARG")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    if mode != Mode::Off {
        cmd.env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", collector.http),
        );
    }
    match mode {
        Mode::Off => {}
        Mode::Ratio => {
            cmd.env("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
                .env("OTEL_TRACES_SAMPLER_ARG", "0.01");
        }
        Mode::All => {
            cmd.env("OTEL_TRACES_SAMPLER", "always_on");
        }
    }
    let started = Instant::now();
    let status = cmd.status().expect("run plughost");
    let took = started.elapsed();
    assert!(
        status.success(),
        "plughost ({}) failed: {status}",
        mode.label()
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let events: usize = std::env::var("PLUGHOST_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let plugin = dir.path().join("plugins/relay");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::write(
        plugin.join("plugin.yaml"),
        "name: relay\nversion: 1.0.0\nsubscriptions: [bench.in]\npublications: [bench.out]\n",
    )
    .unwrap();
    std::fs::write(
        plugin.join("main.lua"),
        "function on_event(e)\n  bus.publish(\"bench.out\", e.payload)\nend\n",
    )
    .unwrap();
    let input = dir.path().join("events.jsonl");
    let mut f = std::io::BufWriter::new(File::create(&input).unwrap());
    for i in 0..events {
        writeln!(f, r#"{{"topic":"bench.in","payload":{{"n":{i}}}}}"#).unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let collector = Collector::start(dir.path());
    let plugins = dir.path().join("plugins");
    let modes = [Mode::Off, Mode::Ratio, Mode::All];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); modes.len()];
    let mut received: Vec<Vec<usize>> = vec![Vec::new(); modes.len()];
    for round in 0..3 {
        for (i, mode) in modes.iter().enumerate() {
            collector.truncate();
            let took = run(*mode, &plugins, &input, &collector);
            let got = if *mode == Mode::Off {
                0
            } else {
                collector.settled()
            };
            eprintln!(
                "round {round}: {:<32} {:>8.2} s, {got} delivery spans at the collector",
                mode.label(),
                took.as_secs_f64()
            );
            times[i].push(took);
            received[i].push(got);
        }
    }
    let off = median(times[0].clone()).as_secs_f64();
    println!("\n{events} events, one Lua relay plugin, whole process (median of 3)");
    println!("| telemetry | median s | events/s | vs off | delivery spans received |");
    println!("|---|---|---|---|---|");
    for (i, mode) in modes.iter().enumerate() {
        let m = median(times[i].clone()).as_secs_f64();
        println!(
            "| {} | {m:.2} | {:.0} | {:.2}x | {:?} |",
            mode.label(),
            events as f64 / m,
            off / m,
            received[i]
        );
    }
    for got in &received[2] {
        assert_eq!(
            *got, events,
            "exporting every span, every delivery span arrives"
        );
    }
    for got in &received[1] {
        let want = events as f64 * 0.01;
        assert!(
            (*got as f64) > want * 0.5 && (*got as f64) < want * 1.5,
            "about 1 % of {events} delivery spans arrive at ratio 0.01: {got}"
        );
    }
}
