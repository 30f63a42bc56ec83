//! SPEC §6 telemetry, end to end: the real binary exports over OTLP/HTTP to a
//! real OpenTelemetry collector started here on loopback.
//!
//! The collector is rotel (`pip install rotel`; the wheel carries the
//! collector binary, `rotel/rotel-agent`). `scripts/test` installs it and
//! puts its path in `PLUGHOST_ROTEL`. Its debug exporter prints every span
//! and metric it receives on stdout, in the OpenTelemetry Collector's
//! `debug` exporter layout, which [`Received::parse`] reads back. Without
//! rotel the test fails and says how to get it: it never passes by skipping.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Fixture, Run, Runtime, ev, free_port, run_binary_with_env};

/// How long the collector may take to print what the host sent once the
/// host has exited (rotel batches for up to `--batch-timeout`).
pub(crate) const ARRIVAL_LIMIT: Duration = Duration::from_secs(20);

/// The service name the test gives the host.
const SERVICE: &str = "plughost-test";

/// The per-plugin host metrics of SPEC §6 that a run delivering one event
/// through two plugins must export (`plugin.queue.dropped` as 0).
/// (`plugin.reloads` counts things this run never does.)
const HOST_METRICS: [&str; 7] = [
    "plugin.init.duration_ms",
    "plugin.shutdown.duration_ms",
    "plugin.message.processing_time_ms",
    "plugin.messages",
    "plugin.queue.depth",
    "plugin.queue.dropped",
    "plugin.lifecycle.events",
];

/// The per-event host metrics: they carry `message.topic`, never `message.id`.
const PER_EVENT_METRICS: [&str; 2] = ["plugin.message.processing_time_ms", "plugin.messages"];

/// The metric A's script records, `telemetry.counter("words", 3, {kind = "x"})`.
const SCRIPT_METRIC: &str = "words";

/// The span B's script opens, `telemetry.span("work", {step = "one", n = 3, ok = true}, fn)`.
const SCRIPT_SPAN: &str = "work";

// ---------------------------------------------------------------------------
// The collector

/// The rotel executable: `$PLUGHOST_ROTEL`, else `rotel` on `PATH`, else the
/// binary inside the installed Python package.
fn rotel_executable() -> PathBuf {
    if let Some(path) = std::env::var_os("PLUGHOST_ROTEL").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PLUGHOST_ROTEL={} is not a file: run scripts/test, which installs rotel \
             (`python3 -m pip install rotel`) and sets PLUGHOST_ROTEL",
            path.display()
        );
        return path;
    }
    if let Some(path) = on_path("rotel") {
        return path;
    }
    if let Some(path) = in_python_package() {
        return path;
    }
    panic!(
        "rotel, the OpenTelemetry collector this test sends to, is not installed: run \
         scripts/test, which installs it (`python3 -m pip install rotel`) and sets \
         PLUGHOST_ROTEL, or set PLUGHOST_ROTEL to a rotel executable"
    )
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `rotel-agent` next to the `rotel` Python package's `__init__.py`.
fn in_python_package() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import pathlib, rotel; print(pathlib.Path(rotel.__file__).with_name('rotel-agent'))",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_file()).then_some(path)
}

/// A running rotel: OTLP/HTTP receiver on loopback, debug exporter printing
/// traces and metrics to a file, nothing forwarded anywhere. Killed on drop.
pub(crate) struct Collector {
    child: Child,
    http: SocketAddr,
    grpc: SocketAddr,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    pub(crate) fn start() -> Collector {
        let exe = rotel_executable();
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("rotel.out");
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let grpc: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(&exe)
            .arg("start")
            .args(["--otlp-http-endpoint", &http.to_string()])
            .args(["--otlp-grpc-endpoint", &grpc.to_string()])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log", "metrics"])
            .args(["--debug-log-verbosity", "detailed"])
            .args(["--batch-timeout", "50ms"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.path().join("rotel.log"))
            .stdin(Stdio::null())
            .stdout(File::create(&out).expect("rotel stdout file"))
            .stderr(File::create(dir.path().join("rotel.err")).expect("rotel stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start rotel ({}): {e}", exe.display()));
        let mut collector = Collector {
            child,
            http,
            grpc,
            out,
            _dir: dir,
        };
        collector.wait_listening();
        collector
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let up = |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(200));
            if up(&self.http).is_ok() && up(&self.grpc).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "rotel exited ({status}) before listening\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "rotel is not listening on {} after 15 s\n{}",
                self.http,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the host.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for the host with `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`.
    pub(crate) fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc)
    }

    /// What rotel printed so far: stdout (the debug exporter), then stderr.
    pub(crate) fn output(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        format!(
            "--- rotel stdout\n{}--- rotel stderr\n{}",
            read(&self.out),
            read(&self.out.with_file_name("rotel.err"))
        )
    }

    /// Everything received so far.
    pub(crate) fn received(&self) -> Received {
        Received::parse(&std::fs::read_to_string(&self.out).unwrap_or_default())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

mod received;
pub(crate) use received::*;

// ---------------------------------------------------------------------------
// The test

/// A handles `in` and publishes `mid`, counting words; B handles `mid` and
/// publishes `out` inside a span of its own.
fn two_plugins() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "a",
        "subscriptions: [in]\npublications: [mid]\n",
        r#"
function init() end
function on_event(e)
  telemetry.counter("words", 3, {kind = "x"})
  bus.publish("mid", {n = e.payload.n})
end
function shutdown() end
"#,
    );
    fx.plugin(
        Runtime::Lua,
        "b",
        "subscriptions: [mid]\npublications: [out]\n",
        r#"
function init() end
function on_event(e)
  telemetry.span("work", {step = "one", n = 3, ok = true}, function()
    bus.publish("out", {n = e.payload.n + 1})
  end)
end
function shutdown() end
"#,
    );
    fx
}

#[test]
fn spans_and_metrics_reach_an_otlp_collector() {
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
}

/// SPEC §11: the host config's `telemetry:` turns export on without any
/// variable, and names the service.
#[test]
fn the_host_config_turns_export_on() {
    let collector = Collector::start();
    let fx = two_plugins();
    let config = fx.file(
        "plughost.yaml",
        &format!(
            "plugins: [.]\ntelemetry:\n  otlp_endpoint: {}\n  protocol: http/protobuf\n  service_name: {SERVICE}\n",
            collector.endpoint()
        ),
    );
    let run = run_two_plugins(&["--config", config.to_str().unwrap()], &[]);
    expect_all_received(&collector, &run);
}

/// The standard variables win over the host config: the config's endpoint
/// leads nowhere, the variable's to the collector.
#[test]
fn variables_override_the_host_config() {
    let collector = Collector::start();
    let fx = two_plugins();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let config = fx.file(
        "plughost.yaml",
        &format!(
            "plugins: [.]\ntelemetry:\n  otlp_endpoint: {nowhere}\n  service_name: {SERVICE}\n"
        ),
    );
    let endpoint = collector.endpoint();
    let run = run_two_plugins(
        &["--config", config.to_str().unwrap()],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
    );
    expect_all_received(&collector, &run);
}

/// Runs the host on [`two_plugins`] (located by `args`) with one `in` event.
fn run_two_plugins(args: &[&str], env: &[(&str, &str)]) -> Run {
    let input = format!("{}\n", ev("in", serde_json::json!({"n": 1})));
    let mut all = vec!["run", "--input", "-", "--tap", "out", "--exit-when-idle"];
    all.extend_from_slice(args);
    let run: Run = run_binary_with_env(&all, Some(&input), env);
    run.expect_code(0);
    assert_eq!(run.only("out"), serde_json::json!({"n": 2}), "{run}");
    run
}

/// Waits for everything SPEC §6 asks for to reach the collector.
fn expect_all_received(collector: &Collector, run: &Run) {
    // The host flushes on exit; rotel prints within its batch timeout.
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    let missing = loop {
        let missing = collector.received().missing();
        if missing.is_empty() || Instant::now() >= deadline {
            break missing;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        missing.is_empty(),
        "not received by the collector within {ARRIVAL_LIMIT:?}:\n  - {}\n{run}\n{}",
        missing.join("\n  - "),
        collector.output()
    );
}

#[test]
fn the_debug_exporter_text_is_read_back() {
    // The layout rotel 0.0.1a15 printed for a trace and a metric sent to it.
    let text = "\
ResourceSpans #0
Resource SchemaURL: 
Resource attributes:
     -> service.name: Str(plughost-test)
ScopeSpans #0
InstrumentationScope plughost 
Span #0
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Parent ID      : 
    ID             : eee19b7ec3c1b174
    Name           : deliver
    Kind           : SPAN_KIND_INTERNAL
Start time: 1544712660000000000
End time: 1544712661000000000
Attributes:
     -> plugin.name: Str(a)
     -> message.topic: Str(in)
Span #1
    Trace ID       : 5b8efff798038103d269b633813fc60c
    Parent ID      : eee19b7ec3c1b174
    ID             : eee19b7ec3c1b175
    Name           : deliver
    Kind           : SPAN_KIND_INTERNAL
Attributes:
     -> plugin.name: Str(b)
     -> message.topic: Str(mid)
ResourceMetrics #0
Resource attributes:
     -> service.name: Str(plughost-test)
ScopeMetrics #0
Metric #0
Descriptor:
     -> Name: plugin.messages
     -> Description: 
     -> Unit: 1
     -> DataType: Sum
     -> IsMonotonic: true
NumberDataPoints #0
Data point attributes:
     -> plugin.name: Str(a)
     -> outcome: Str(ack)
StartTimestamp: 1544712660000000000
Value: 3
";
    let got = Received::parse(text);
    assert_eq!(got.spans.len(), 2);
    let (a, b) = (&got.spans[0], &got.spans[1]);
    assert_eq!(a.parent_id, "");
    assert_eq!(b.parent_id, a.id);
    assert_eq!(b.trace_id, a.trace_id);
    assert_eq!(attr(&b.attrs, "message.topic"), Some("mid"));
    assert_eq!(attr(&b.resource, "service.name"), Some(SERVICE));
    assert!(got.descends_from(b, a));
    assert!(!got.descends_from(a, b));
    assert_eq!(got.metrics.len(), 1);
    let m = &got.metrics[0];
    assert_eq!((m.name.as_str(), m.unit.as_str()), ("plugin.messages", "1"));
    assert_eq!(m.data_type, "Sum");
    assert_eq!(m.points.len(), 1);
    assert_eq!(attr(&m.points[0], "outcome"), Some("ack"));
    assert_eq!(m.values, ["3"]);
    let ack = [("plugin.name", "a"), ("outcome", "ack")];
    assert_eq!(got.value("plugin.messages", &ack), Some("3"));
    assert_eq!(
        got.value("plugin.messages", &ack[..1]),
        None,
        "outcome left out"
    );
    assert_eq!(attr(&m.resource, "service.name"), Some(SERVICE));
}

mod sampling;
