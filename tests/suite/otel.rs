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

// ---------------------------------------------------------------------------
// What the debug exporter printed

/// Attribute key to value; the value without its type (`Str(a)` is `a`).
pub(crate) type Attrs = BTreeMap<String, String>;

#[derive(Debug, Default)]
pub(crate) struct Span {
    pub(crate) trace_id: String,
    pub(crate) id: String,
    pub(crate) parent_id: String,
    pub(crate) name: String,
    pub(crate) attrs: Attrs,
    pub(crate) resource: Attrs,
}

#[derive(Debug, Default)]
struct Metric {
    name: String,
    unit: String,
    data_type: String,
    /// Each data point's attributes.
    points: Vec<Attrs>,
    /// Each data point's value (`Value:`; a histogram's `Count:`), in the
    /// same order.
    values: Vec<String>,
    resource: Attrs,
}

#[derive(Debug, Default)]
pub(crate) struct Received {
    pub(crate) spans: Vec<Span>,
    metrics: Vec<Metric>,
}

/// Where a `     -> key: value` line belongs.
#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Resource,
    SpanAttrs,
    Descriptor,
    PointAttrs,
}

impl Received {
    /// Reads the debug exporter's text (detailed verbosity):
    ///
    /// ```text
    /// ResourceSpans #0
    /// Resource attributes:
    ///      -> service.name: Str(plughost-test)
    /// Span #0
    ///     Trace ID       : 5b8efff798038103d269b633813fc60c
    ///     Parent ID      : eee19b7ec3c1b174
    ///     ID             : eee19b7ec3c1b175
    ///     Name           : …
    /// Attributes:
    ///      -> plugin.name: Str(b)
    /// ResourceMetrics #0
    /// Metric #0
    /// Descriptor:
    ///      -> Name: plugin.messages
    ///      -> Unit: 1
    ///      -> DataType: Sum
    /// NumberDataPoints #0
    /// Data point attributes:
    ///      -> outcome: Str(ack)
    /// ```
    fn parse(text: &str) -> Received {
        let mut got = Received::default();
        let mut resource = Attrs::new();
        let mut section = Section::None;
        // Whether the last `Resource…`/`Span`/`Metric` header was a span's.
        let mut in_spans = true;
        for line in text.lines() {
            if let Some(attr) = line.strip_prefix("     -> ") {
                let Some((key, value)) = attr.split_once(": ").or_else(|| {
                    attr.strip_suffix(':').map(|k| (k, "")) // an empty value
                }) else {
                    continue;
                };
                let (key, value) = (key.to_owned(), untyped(value).to_owned());
                match section {
                    Section::Resource => {
                        resource.insert(key, value);
                    }
                    Section::SpanAttrs => {
                        if let Some(span) = got.spans.last_mut() {
                            span.attrs.insert(key, value);
                        }
                    }
                    Section::Descriptor => {
                        if let Some(metric) = got.metrics.last_mut() {
                            match key.as_str() {
                                "Name" => metric.name = value,
                                "Unit" => metric.unit = value,
                                "DataType" => metric.data_type = value,
                                _ => {}
                            }
                        }
                    }
                    Section::PointAttrs => {
                        if let Some(point) =
                            got.metrics.last_mut().and_then(|m| m.points.last_mut())
                        {
                            point.insert(key, value);
                        }
                    }
                    Section::None => {}
                }
                continue;
            }
            let trimmed = line.trim();
            if line.starts_with("ResourceSpans #") || line.starts_with("ResourceMetrics #") {
                in_spans = line.starts_with("ResourceSpans");
                resource.clear();
                section = Section::None;
            } else if line == "Resource attributes:" {
                section = Section::Resource;
            } else if line.starts_with("Span #") {
                in_spans = true;
                got.spans.push(Span {
                    resource: resource.clone(),
                    ..Span::default()
                });
                section = Section::None;
            } else if line.starts_with("Metric #") {
                in_spans = false;
                got.metrics.push(Metric {
                    resource: resource.clone(),
                    ..Metric::default()
                });
                section = Section::None;
            } else if line == "Descriptor:" {
                section = Section::Descriptor;
            } else if line == "Data point attributes:" {
                match got.metrics.last_mut() {
                    Some(metric) => {
                        metric.points.push(Attrs::new());
                        metric.values.push(String::new());
                    }
                    None => continue,
                }
                section = Section::PointAttrs;
            } else if let Some(value) = line
                .strip_prefix("Value: ")
                .or_else(|| line.strip_prefix("Count: "))
                .filter(|_| !in_spans)
            {
                if let Some(last) = got.metrics.last_mut().and_then(|m| m.values.last_mut()) {
                    *last = value.trim().to_owned();
                }
                section = Section::None;
            } else if line == "Attributes:" && in_spans {
                section = Section::SpanAttrs;
            } else if let Some((key, value)) = trimmed.split_once(':').filter(|_| in_spans) {
                if let Some(span) = got.spans.last_mut() {
                    let value = value.trim().to_owned();
                    match key.trim() {
                        "Trace ID" => span.trace_id = value,
                        "Parent ID" => span.parent_id = value,
                        "ID" => span.id = value,
                        "Name" => span.name = value,
                        _ => {}
                    }
                }
                section = Section::None;
            } else {
                section = Section::None;
            }
        }
        got
    }

    fn metric_points(&self, name: &str) -> Vec<&Attrs> {
        self.metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| &m.points)
            .collect()
    }

    /// The value of metric `name`'s data point with exactly these
    /// attributes besides the plugin's (`plugin.*`).
    fn value(&self, name: &str, attrs: &[(&str, &str)]) -> Option<&str> {
        self.metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| m.points.iter().zip(&m.values))
            .find(|(point, _)| {
                attrs.iter().all(|(k, v)| attr(point, k) == Some(*v))
                    && point.keys().filter(|k| !k.starts_with("plugin.")).count()
                        == attrs
                            .iter()
                            .filter(|(k, _)| !k.starts_with("plugin."))
                            .count()
            })
            .map(|(_, value)| value.as_str())
    }

    fn metric_names(&self) -> BTreeSet<&str> {
        self.metrics.iter().map(|m| m.name.as_str()).collect()
    }

    /// Spans of `plugin` handling an event on `topic` (not the script's own).
    pub(crate) fn deliveries(&self, plugin: &str, topic: &str) -> Vec<&Span> {
        self.spans
            .iter()
            .filter(|s| s.name != SCRIPT_SPAN)
            .filter(|s| attr(&s.attrs, "plugin.name") == Some(plugin))
            .filter(|s| attr(&s.attrs, "message.topic") == Some(topic))
            .collect()
    }

    /// Whether `ancestor` is `span`'s parent, grand-parent, ….
    fn descends_from(&self, span: &Span, ancestor: &Span) -> bool {
        let mut parent = span.parent_id.as_str();
        for _ in 0..self.spans.len() {
            if parent.is_empty() {
                return false;
            }
            if parent == ancestor.id {
                return true;
            }
            match self.spans.iter().find(|s| s.id == parent) {
                Some(s) => parent = &s.parent_id,
                None => return false,
            }
        }
        false
    }

    /// Everything SPEC §6 says should have arrived, as a list of what is
    /// missing (empty when all arrived).
    fn missing(&self) -> Vec<String> {
        let mut missing = Vec::new();
        let plugin_attrs = |attrs: &Attrs, plugin: &str| -> Result<(), String> {
            for (key, want) in [
                ("plugin.name", plugin),
                ("plugin.version", "1.0.0"),
                ("plugin.runtime", "lua"),
            ] {
                if attr(attrs, key) != Some(want) {
                    return Err(format!("{key}={want} (got {attrs:?})"));
                }
            }
            Ok(())
        };

        // Host metrics: each of both plugins, with the plugin's attributes.
        for name in HOST_METRICS {
            let points = self.metric_points(name);
            for plugin in ["a", "b"] {
                let mine: Vec<&&Attrs> = points
                    .iter()
                    .filter(|p| attr(p, "plugin.name") == Some(plugin))
                    .collect();
                if mine.is_empty() {
                    missing.push(format!("metric {name} with plugin.name={plugin}"));
                }
                for point in mine {
                    if let Err(e) = plugin_attrs(point, plugin) {
                        missing.push(format!("metric {name}: {e}"));
                    }
                }
            }
        }
        for name in PER_EVENT_METRICS {
            for (plugin, topic) in [("a", "in"), ("b", "mid")] {
                let found = self.metric_points(name).into_iter().any(|p| {
                    attr(p, "plugin.name") == Some(plugin)
                        && attr(p, "message.topic") == Some(topic)
                });
                if !found {
                    missing.push(format!(
                        "metric {name} with plugin.name={plugin}, message.topic={topic}"
                    ));
                }
            }
            for point in self.metric_points(name) {
                if point.contains_key("message.id") {
                    missing.push(format!(
                        "metric {name} without message.id (one series per event): {point:?}"
                    ));
                }
            }
        }
        for (name, key) in [
            ("plugin.messages", "outcome"),
            ("plugin.lifecycle.events", "event"),
        ] {
            for point in self.metric_points(name) {
                if attr(point, key).is_none_or(str::is_empty) {
                    missing.push(format!("metric {name} with `{key}`: {point:?}"));
                }
            }
        }

        // One delivery each, one start and one stop each.
        for (plugin, topic) in [("a", "in"), ("b", "mid")] {
            let me = [("plugin.name", plugin), ("message.topic", topic)];
            let ack = [me[0], me[1], ("outcome", "ack")];
            for (name, attrs, want) in [
                ("plugin.messages", &ack[..], "1"),
                ("plugin.message.processing_time_ms", &me[..], "1"),
            ] {
                let got = self.value(name, attrs);
                if got != Some(want) {
                    missing.push(format!("metric {name} {attrs:?} = {want} (got {got:?})"));
                }
            }
            for event in ["started", "stopped"] {
                let attrs = [("plugin.name", plugin), ("event", event)];
                let got = self.value("plugin.lifecycle.events", &attrs);
                if got != Some("1") {
                    missing.push(format!(
                        "metric plugin.lifecycle.events {attrs:?} = 1 (got {got:?})"
                    ));
                }
            }
        }

        // The script's counter, with its own attribute and the plugin's.
        let words: Vec<&Metric> = self
            .metrics
            .iter()
            .filter(|m| m.name == SCRIPT_METRIC)
            .collect();
        let point = words
            .iter()
            .flat_map(|m| &m.points)
            .find(|p| attr(p, "kind") == Some("x"));
        match point {
            None => missing.push(format!(
                "script metric `{SCRIPT_METRIC}` with kind=x (metrics received: {:?})",
                self.metric_names()
            )),
            Some(point) => {
                if let Err(e) = plugin_attrs(point, "a") {
                    missing.push(format!("script metric `{SCRIPT_METRIC}`: {e}"));
                }
            }
        }
        let got = self.value(SCRIPT_METRIC, &[("plugin.name", "a"), ("kind", "x")]);
        if got != Some("3") {
            missing.push(format!("script metric `{SCRIPT_METRIC}` = 3 (got {got:?})"));
        }
        if let Some(m) = words.iter().find(|m| m.data_type != "Sum") {
            missing.push(format!(
                "script metric `{SCRIPT_METRIC}` as a Sum (counter), not {}",
                m.data_type
            ));
        }

        // Resource: the service name, on everything.
        for (what, resource) in self
            .spans
            .iter()
            .map(|s| ("span", &s.resource))
            .chain(self.metrics.iter().map(|m| ("metric", &m.resource)))
        {
            if attr(resource, "service.name") != Some(SERVICE) {
                missing.push(format!(
                    "{what} resource service.name={SERVICE}: {resource:?}"
                ));
                break;
            }
        }

        // Spans: one per delivery with the plugin's and the message's
        // attributes, and B's delivery in A's trace, below A's.
        let a = self.deliveries("a", "in");
        let b = self.deliveries("b", "mid");
        for (plugin, topic, spans) in [("a", "in", &a), ("b", "mid", &b)] {
            if spans.is_empty() {
                missing.push(format!(
                    "span with plugin.name={plugin}, message.topic={topic} (spans received: {:?})",
                    self.spans
                        .iter()
                        .map(|s| (&s.name, &s.attrs))
                        .collect::<Vec<_>>()
                ));
            }
            for span in spans.iter() {
                if let Err(e) = plugin_attrs(&span.attrs, plugin) {
                    missing.push(format!("span {}: {e}", span.name));
                }
                if attr(&span.attrs, "message.id").is_none_or(str::is_empty) {
                    missing.push(format!(
                        "span {} with message.id: {:?}",
                        span.name, span.attrs
                    ));
                }
            }
        }
        if !a.is_empty() && !b.is_empty() {
            let joined = b.iter().any(|b| {
                a.iter()
                    .any(|a| b.trace_id == a.trace_id && self.descends_from(b, a))
            });
            if !joined {
                missing.push(format!(
                    "B's delivery span in A's trace, a descendant of A's delivery span \
                     (A: {:?}; B: {:?})",
                    a.iter()
                        .map(|s| (&s.trace_id, &s.id, &s.parent_id))
                        .collect::<Vec<_>>(),
                    b.iter()
                        .map(|s| (&s.trace_id, &s.id, &s.parent_id))
                        .collect::<Vec<_>>()
                ));
            }
        }
        // The script's span: a child of B's delivery, with B's attributes.
        let script = self.spans.iter().find(|s| s.name == SCRIPT_SPAN);
        match script {
            None => missing.push(format!("the script's span `{SCRIPT_SPAN}`")),
            Some(span) => {
                if let Err(e) = plugin_attrs(&span.attrs, "b") {
                    missing.push(format!("span {SCRIPT_SPAN}: {e}"));
                }
                // Each script attribute its own span attribute.
                for (key, want) in [("step", "one"), ("n", "3"), ("ok", "true")] {
                    if attr(&span.attrs, key) != Some(want) {
                        missing.push(format!(
                            "span {SCRIPT_SPAN} with {key}: {want} ({:?})",
                            span.attrs
                        ));
                    }
                }
                if !b.iter().any(|b| self.descends_from(span, b)) {
                    missing.push(format!(
                        "span {SCRIPT_SPAN} below B's delivery span (parent {})",
                        span.parent_id
                    ));
                }
            }
        }
        missing
    }
}

pub(crate) fn attr<'a>(attrs: &'a Attrs, key: &str) -> Option<&'a str> {
    attrs.get(key).map(String::as_str)
}

/// `Str(a)` → `a`, `Int(3)` → `3`; anything else as it is.
fn untyped(value: &str) -> &str {
    match (value.find('('), value.ends_with(')')) {
        (Some(open), true) if value[..open].chars().all(|c| c.is_ascii_alphabetic()) => {
            &value[open + 1..value.len() - 1]
        }
        _ => value,
    }
}

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

// ---------------------------------------------------------------------------
// Sampling and a refused endpoint

/// Runs [`two_plugins`] on `n` independent `in` events, exporting to `endpoint`.
fn run_many(fx: &Fixture, n: usize, env: &[(&str, &str)]) -> Run {
    let input: String = (0..n)
        .map(|i| format!("{}\n", ev("in", serde_json::json!({"n": i}))))
        .collect();
    let args = [
        "run",
        "--input",
        "-",
        "--exit-when-idle",
        "--plugins",
        fx.path().to_str().unwrap(),
    ];
    let run: Run = run_binary_with_env(&args, Some(&input), env);
    run.expect_code(0);
    run
}

/// Waits (bounded) until `done` holds for what the collector received.
fn wait_for(collector: &Collector, done: impl Fn(&Received) -> bool) -> Received {
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    loop {
        let got = collector.received();
        if done(&got) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `always_off`: no span leaves the host, the metrics still do.
#[test]
fn always_off_exports_metrics_and_no_span() {
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        20,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ],
    );
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    assert!(
        got.metric_names().contains("plugin.messages"),
        "metrics arrive with always_off\n{run}\n{}",
        collector.output()
    );
    // The metrics were sent at shutdown, after the spans would have been.
    assert!(
        got.spans.is_empty(),
        "no span with always_off: {:?}",
        got.spans
    );
}

/// A ratio of 0.5 keeps about half of the independent events' traces, and
/// each kept trace whole: both plugins' delivery spans (and B's own span).
#[test]
fn a_ratio_keeps_about_its_share_of_whole_traces() {
    const N: usize = 200;
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        N,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ],
    );
    // Settled: the metrics come last, at shutdown.
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    let traces = |spans: Vec<&Span>| -> BTreeSet<String> {
        spans.into_iter().map(|s| s.trace_id.clone()).collect()
    };
    let a = traces(got.deliveries("a", "in"));
    let b = traces(got.deliveries("b", "mid"));
    let work: BTreeSet<String> = got
        .spans
        .iter()
        .filter(|s| s.name == SCRIPT_SPAN)
        .map(|s| s.trace_id.clone())
        .collect();
    assert!(
        (N * 3 / 10..=N * 7 / 10).contains(&a.len()),
        "about half of {N} traces kept, got {}\n{run}",
        a.len()
    );
    assert_eq!(
        a.len(),
        got.deliveries("a", "in").len(),
        "one A span per trace"
    );
    assert_eq!(
        a, b,
        "each kept trace has both plugins' spans, no other has either"
    );
    assert_eq!(b, work, "and B's own span");
}

/// A trace the sampler drops goes down the chain with the `traceparent` it
/// came in with, flags `00` (an unsampled span is never recorded, so it
/// gets no span id of its own), so every plugin drops it, and no span of it
/// is exported: under a parent-based sampler, a header already unsampled
/// passes on as it is; under `always_off`, a sampled one passes on with
/// its ids and flags `00`.
#[test]
fn a_dropped_trace_goes_on_with_the_traceparent_it_came_in_with() {
    const IDS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    for (sampler, flags) in [("parentbased_always_on", "00"), ("always_off", "01")] {
        let collector = Collector::start();
        let fx = two_plugins();
        let endpoint = collector.endpoint();
        let mut line = ev("in", serde_json::json!({"n": 1}));
        line["headers"] = serde_json::json!({"traceparent": format!("{IDS}-{flags}")});
        let args = [
            "run",
            "--input",
            "-",
            "--tap",
            "mid",
            "--tap",
            "out",
            "--exit-when-idle",
            "--plugins",
            fx.path().to_str().unwrap(),
        ];
        let run: Run = run_binary_with_env(
            &args,
            Some(&format!("{line}\n")),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_TRACES_SAMPLER", sampler),
            ],
        );
        run.expect_code(0);
        for topic in ["mid", "out"] {
            let events = run.on(topic);
            assert_eq!(events.len(), 1, "{sampler}: one {topic}\n{run}");
            assert_eq!(
                events[0]["headers"]["traceparent"],
                format!("{IDS}-00"),
                "{sampler}: {topic} carries the trace on, unsampled\n{run}"
            );
        }
        let got = wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
        assert!(
            got.metric_names().contains("plugin.messages"),
            "{sampler}: metrics arrive\n{run}\n{}",
            collector.output()
        );
        // Lifecycle spans are roots of their own; none of the event's trace.
        let of_the_event: Vec<&Span> = got
            .spans
            .iter()
            .filter(|s| IDS.contains(&s.trace_id) || s.name == "plugin.event")
            .collect();
        assert!(
            of_the_event.is_empty(),
            "{sampler}: no span of the event's trace: {of_the_event:?}"
        );
    }
}

/// A collector that is not there is one warning naming the endpoint, over
/// a run of many span batches; not silence, not one per batch.
#[test]
fn a_refused_endpoint_is_warned_about_once() {
    let fx = two_plugins();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let run = run_many(
        &fx,
        100,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {nowhere}/v1/traces failed");
    assert_eq!(
        run.stderr.matches(&traces).count(),
        1,
        "one warning for the trace endpoint\n{run}"
    );
    let metrics = format!("OTLP export to {nowhere}/v1/metrics failed");
    assert_eq!(
        run.stderr.matches(&metrics).count(),
        1,
        "one warning for the metric endpoint\n{run}"
    );
}

/// A failed TLS handshake (an `https://` endpoint where the collector
/// speaks plain HTTP) is a warning naming the endpoint, once.
#[test]
fn a_tls_failure_is_warned_about_once() {
    let collector = Collector::start();
    let fx = two_plugins();
    let https = collector.endpoint().replacen("http://", "https://", 1);
    let run = run_many(
        &fx,
        50,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &https),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {https}/v1/traces failed");
    assert_eq!(run.stderr.matches(&traces).count(), 1, "{run}");
}

/// Over `https://`, trusting the collector's certificate through
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, everything arrives. rotel's receiver
/// has no TLS option, so a TLS front started here (a self-signed
/// certificate for `localhost`) forwards the decrypted bytes to it.
#[test]
fn spans_and_metrics_reach_a_collector_over_https() {
    let collector = Collector::start();
    let front = TlsFront::start(collector.http, &[]);
    let fx = two_plugins();
    let endpoint = front.endpoint();
    let ca = front.ca.to_str().unwrap().to_owned();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: everything arrives over gRPC.
#[test]
fn spans_and_metrics_reach_a_collector_over_grpc() {
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.grpc_endpoint();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// gRPC over TLS (`https://`), trusting the front's certificate.
#[test]
fn spans_and_metrics_reach_a_collector_over_grpc_with_tls() {
    let collector = Collector::start();
    let front = TlsFront::start(collector.grpc, &[b"h2"]);
    let fx = two_plugins();
    let endpoint = front.endpoint();
    let ca = front.ca.to_str().unwrap().to_owned();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// A gRPC endpoint with nothing listening: one warning for the spans.
#[test]
fn a_refused_grpc_endpoint_is_warned_about_once() {
    let fx = two_plugins();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let run = run_many(
        &fx,
        100,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {nowhere} failed");
    assert_eq!(run.stderr.matches(&traces).count(), 1, "{run}");
}

/// A TLS listener on loopback forwarding each connection to `target`.
struct TlsFront {
    port: u16,
    /// The PEM file of its (self-signed) certificate.
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// `alpn`: the protocols it agrees to (gRPC's clients ask for `h2`).
    fn start(target: SocketAddr, alpn: &[&[u8]]) -> TlsFront {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, key.cert.pem()).expect("write the certificate");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![key.cert.der().clone()], der)
        .expect("the server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        // Lives as long as the test process; each connection is forwarded.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                    });
                }
            });
        });
        TlsFront {
            port,
            ca,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

/// Spans the export queue has no room for are counted and said at exit,
/// and with the spans that arrived they make up every span recorded.
#[test]
fn spans_dropped_by_a_full_queue_are_counted() {
    const N: usize = 200;
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        N,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ],
    );
    let dropped: usize = run
        .stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" spans were dropped: the export queue was full")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("a count of the dropped spans\n{run}"));
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    // A's and B's delivery spans and B's own, per event (and the lifecycle spans).
    assert!(
        dropped > 0 && got.spans.len() + dropped >= 3 * N,
        "{} received + {dropped} dropped < {}\n{run}",
        got.spans.len(),
        3 * N
    );
}
