//! Watching a running host (SPEC §15): `GET /stream` and `GET /overview`
//! (and its stream) against the real binary, `plughost tap` and
//! `plughost top`, and the browser rules (DNS rebinding, CSRF).
//!
//! The Server-Sent Events are read over a hand-written HTTP/1.1 request on
//! a `TcpStream` with a chunked-body decoder: every read is bounded by the
//! socket's read timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin::{Answer, request, wait_ready};
use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Runtime, binary, free_port, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";
const QUIET: &str = "function on_event(e) end\n";

/// A host with plugin `echo` (`in.*` → `out.echoed`) and `--tap '>'`,
/// its admin endpoint on `port`.
fn echo_host(port: u16, env: &[(&str, &str)]) -> (Fixture, Live) {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn_with_env(
        &["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"],
        env,
    );
    (fx, live)
}

/// Sends a request whose head is exactly `head` (request line and headers,
/// no blank line) and reads the whole answer.
fn raw(port: u16, head: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let head = format!(
        "{head}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Answer {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|_| json!(body)),
    }
}

/// An open Server-Sent Events response, read line by line.
struct Sse {
    reader: BufReader<TcpStream>,
    chunked: bool,
    text: Vec<u8>,
    ended: bool,
}

impl Sse {
    /// GETs `path` with `headers`; the stream when the answer is 200, else
    /// the answer (status and body).
    fn open(port: u16, path: &str, headers: &[&str]) -> Result<Sse, Answer> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(LIMIT)).unwrap();
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for h in headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {status_line:?}"));
        let mut chunked = false;
        let mut length = None;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            chunked |= line == "transfer-encoding: chunked";
            if let Some(n) = line.strip_prefix("content-length: ") {
                length = n.parse::<usize>().ok();
            }
        }
        if status == 200 {
            return Ok(Sse {
                reader,
                chunked,
                text: Vec::new(),
                ended: false,
            });
        }
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).expect("error body");
        let body = String::from_utf8_lossy(&body).into_owned();
        Err(Answer {
            status,
            body: serde_json::from_str(&body).unwrap_or_else(|_| json!(body)),
        })
    }

    /// Reads one more piece of the body; `false` at its end.
    fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        if !self.chunked {
            let mut buf = [0; 8192];
            let n = self.reader.read(&mut buf).expect("read the stream");
            self.text.extend_from_slice(&buf[..n]);
            self.ended = n == 0;
            return n > 0;
        }
        let mut size = String::new();
        self.reader.read_line(&mut size).expect("chunk size");
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {size:?}"));
        if size == 0 {
            self.ended = true;
            return false;
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).expect("chunk");
        self.text.extend_from_slice(&chunk[..size]);
        true
    }

    /// The next line, `None` at the end of the stream.
    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.text.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.text.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).into_owned());
            }
            if !self.fill() {
                return None;
            }
        }
    }

    /// Reads lines until one satisfies `pred`; fails after [`LIMIT`] or at
    /// the end of the stream, with the lines read.
    fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> (String, Vec<String>) {
        let deadline = Instant::now() + LIMIT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.line() {
                Some(line) if pred(&line) => return (line, seen),
                Some(line) => seen.push(line),
                None => break,
            }
        }
        panic!("no {what} in the stream; read:\n{}", seen.join("\n"));
    }
}

/// `POST /events/{topic}` with `payload`.
fn publish(port: u16, topic: &str, payload: &Value) {
    let a = request(
        port,
        "POST",
        &format!("/events/{topic}"),
        &[],
        payload.to_string().as_bytes(),
    );
    assert_eq!(a.status, 200, "{a:?}");
}

fn overview(port: u16) -> Value {
    let a = request(port, "GET", "/overview", &[], b"");
    assert_eq!(a.status, 200, "{a:?}");
    a.body
}

fn entry<'a>(overview: &'a Value, name: &str) -> &'a Value {
    overview["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no plugin {name} in {overview}"))
}

/// Polls `/overview` until `pred` holds, for up to `limit`.
fn overview_until(port: u16, limit: Duration, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let o = overview(port);
        if pred(&o) {
            return o;
        }
        assert!(Instant::now() < deadline, "no {what} within {limit:?}: {o}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process whose stdout lines arrive on a channel; killed on drop.
struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Spawned {
    fn new(args: &[&str]) -> Spawned {
        let mut child = Command::new(binary())
            .args(args)
            .env_remove("PLUGHOST_ADMIN_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn plughost");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned { child, lines }
    }

    /// Waits (bounded) for the exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + LIMIT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_stream_sends_matching_events_as_tap_prints_them() {
    let port = free_port();
    let (_fx, mut live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let mut sse = Sse::open(port, "/stream?topics=out.*,nothing.%3E", &[]).expect("200");
    publish(port, "in.a", &json!({"n": 1}));
    let (line, before) = sse.until("data line", |l| l.starts_with("data:"));
    let data: Value = serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(data["topic"], "out.echoed", "{line}");
    assert!(
        before.iter().all(|l| !l.contains("in.a")),
        "a non-matching event was streamed: {before:?}"
    );
    let tapped = live.wait_for("out.echoed", |e| e["topic"] == "out.echoed");
    assert_eq!(data, tapped, "the stream's JSON is --tap's");
    assert!(line.starts_with(r#"data: {"id":"#), "{line}");
    drop(sse);

    // `topics` is required and checked, naming the bad pattern.
    for (path, needle) in [
        ("/stream", "topics"),
        ("/stream?topics=", "topics"),
        ("/stream?topics=a.b,text%3E", "text>"),
        ("/stream?topics=a..b", "a..b"),
    ] {
        let a = Sse::open(port, path, &[]).err().expect("refused");
        assert_eq!(a.status, 400, "{path}: {a:?}");
        let error = a.body["error"].as_str().unwrap_or_default();
        assert!(error.contains(needle), "{path}: {error}");
    }
    live.signal("TERM");
    live.finish().expect_code(0);
}

#[test]
fn a_slow_client_loses_events_and_never_slows_the_bus() {
    const EVENTS: u64 = 50_000;
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "quiet", "subscriptions: [in.*]\n", QUIET);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &plugins,
        "--admin",
        &addr,
        "--input",
        "-",
    ]);
    wait_ready(port, &[]);
    // Subscribed to everything, and never read while the events flow.
    let mut sse = Sse::open(port, "/stream?topics=%3E", &[]).expect("200");
    // Large payloads: more than the sockets' buffers hold.
    let filler = "x".repeat(1000);
    for n in 0..EVENTS {
        live.send(&json!({"topic": "in.n", "payload": {"n": n, "filler": filler}}));
    }
    let o = overview_until(port, Duration::from_secs(60), "every event handled", |o| {
        entry(o, "quiet")["handled"] == EVENTS
    });
    assert!(
        o["stream_lost"].as_u64().unwrap_or(0) > 0,
        "the slow client lost nothing: {o}"
    );
    // The client reads at last: it is told of the loss.
    let (lost, _) = sse.until("`: lost N events` comment", |l| l.starts_with(": lost "));
    let n: u64 = lost
        .trim_start_matches(": lost ")
        .trim_end_matches(" events")
        .parse()
        .unwrap_or_else(|_| panic!("{lost}"));
    assert!(n > 0 && n < EVENTS, "{lost}");
    live.close_stdin();
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// Fewer events than the per-client message bound, but far more bytes than
/// the per-client byte bound (8 MiB) and the sockets hold: a client that
/// does not read loses some, rather than the host buffering them all.
#[test]
fn a_slow_client_holds_a_bounded_number_of_bytes() {
    const EVENTS: u64 = 48;
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "quiet", "subscriptions: [in.*]\n", QUIET);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &plugins,
        "--admin",
        &addr,
        "--input",
        "-",
    ]);
    wait_ready(port, &[]);
    let mut sse = Sse::open(port, "/stream?topics=%3E", &[]).expect("200");
    // 48 events of 900 KiB: about 43 MiB, and only 48 messages.
    let filler = "x".repeat(900 * 1024);
    for n in 0..EVENTS {
        live.send(&json!({"topic": "in.n", "payload": {"n": n, "filler": filler}}));
    }
    let o = overview_until(port, Duration::from_secs(60), "every event handled", |o| {
        entry(o, "quiet")["handled"] == EVENTS
    });
    let lost = o["stream_lost"].as_u64().unwrap_or(0);
    assert!(
        lost > 0 && lost < EVENTS,
        "the client that did not read lost {lost} of {EVENTS} events"
    );
    let (told, _) = sse.until("`: lost N events` comment", |l| l.starts_with(": lost "));
    assert!(told.ends_with(" events"), "{told}");
    live.close_stdin();
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// At most 64 streams are open at once: one more is answered 503, and a
/// slot frees once a client leaves.
#[test]
fn streams_past_the_cap_are_refused_until_one_ends() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let mut open: Vec<Sse> = (0..64)
        .map(|i| {
            Sse::open(port, "/stream?topics=out.*", &[])
                .unwrap_or_else(|a| panic!("stream {i}: {a:?}"))
        })
        .collect();
    let refused = Sse::open(port, "/stream?topics=out.*", &[])
        .err()
        .expect("refused");
    assert_eq!(refused.status, 503, "{refused:?}");
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("64 streams"), "{error}");
    // The overview stream is not one of them.
    Sse::open(port, "/overview/stream", &[]).expect("the overview stream");

    drop(open.pop());
    let deadline = Instant::now() + LIMIT;
    let mut again = loop {
        match Sse::open(port, "/stream?topics=out.*", &[]) {
            Ok(sse) => break sse,
            Err(a) => {
                assert_eq!(a.status, 503, "{a:?}");
                assert!(Instant::now() < deadline, "no slot freed: {a:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    publish(port, "in.a", &json!({"n": 1}));
    again.until("data line", |l| l.starts_with("data:"));
    drop(open);
    live.signal("TERM");
    live.finish().expect_code(0);
}

#[test]
fn the_stream_ends_when_the_host_shuts_down() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let mut sse = Sse::open(port, "/stream?topics=%3E", &[]).expect("200");
    let mut overview_stream = Sse::open(port, "/overview/stream", &[]).expect("200");
    overview_stream.until("first overview", |l| l == "event: overview");
    live.signal("TERM");
    let run = live.finish();
    run.expect_code(0);
    // Both streams end (no hang), after what was in them.
    let deadline = Instant::now() + LIMIT;
    while sse.line().is_some() {
        assert!(Instant::now() < deadline, "the stream did not end");
    }
    while overview_stream.line().is_some() {
        assert!(Instant::now() < deadline, "the overview stream did not end");
    }
}

#[test]
fn tap_prints_a_running_hosts_events_as_json_lines() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let addr = format!("127.0.0.1:{port}");
    let mut tap = Spawned::new(&["tap", "out.*", "--admin", &addr]);
    // Publish until the tap, once connected, prints one.
    let deadline = Instant::now() + LIMIT;
    let line = loop {
        publish(port, "in.a", &json!({"hello": "tap"}));
        if let Ok(line) = tap.lines.recv_timeout(Duration::from_millis(200)) {
            break line;
        }
        assert!(Instant::now() < deadline, "plughost tap printed nothing");
    };
    let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(event["topic"], "out.echoed", "{line}");
    assert_eq!(event["payload"], json!({"hello": "tap"}));
    // The host stops: the stream ends and tap exits 0.
    live.signal("TERM");
    live.finish().expect_code(0);
    assert_eq!(
        tap.exit_code(),
        Some(0),
        "tap after the host ended the stream"
    );

    // Nothing listening: exit 1, with a message.
    let gone = run_binary_with_env(
        &["tap", ">", "--admin", &format!("127.0.0.1:{}", free_port())],
        None,
        &[],
    );
    gone.expect_code(1);
    assert!(gone.stderr.contains("cannot reach"), "{}", gone.stderr);
    // A malformed pattern: a usage error, before anything is sent.
    let bad = run_binary_with_env(
        &[
            "tap",
            "text>",
            "--admin",
            &format!("127.0.0.1:{}", free_port()),
        ],
        None,
        &[],
    );
    bad.expect_code(2);
    assert!(bad.stderr.contains("`text>`"), "{}", bad.stderr);
}

#[test]
fn top_shows_every_plugin_live_once_or_as_successive_tables() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "alpha", "subscriptions: [in.*]\n", QUIET);
    fx.plugin(Runtime::Lua, "beta", "subscriptions: [in.*]\n", QUIET);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr]);
    wait_ready(port, &[]);
    // Events flow for the whole test.
    let flowing = Arc::new(AtomicBool::new(true));
    let feeder = {
        let flowing = flowing.clone();
        std::thread::spawn(move || {
            while flowing.load(Ordering::Relaxed) {
                publish(port, "in.x", &json!({}));
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    overview_until(port, LIMIT, "rates for both", |o| {
        ["alpha", "beta"]
            .iter()
            .all(|n| entry(o, n)["events_per_s"].as_f64().unwrap_or(0.0) > 0.0)
    });

    let once = run_binary_with_env(&["top", "--once", "--admin", &addr], None, &[]);
    once.expect_code(0);
    let rows: Vec<Vec<&str>> = once
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(once.stdout.starts_with("plughost "), "{}", once.stdout);
    assert!(!once.stdout.contains('\x1b'), "no ANSI when not a terminal");
    for name in ["alpha", "beta"] {
        let row = rows
            .iter()
            .find(|r| r.first() == Some(&name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", once.stdout));
        assert_eq!(row[1], "running", "{row:?}");
        let rate: f64 = row[2].parse().unwrap_or_else(|_| panic!("{row:?}"));
        assert!(rate > 0.0, "{name} shows no events/s:\n{}", once.stdout);
    }

    // Refreshing, not on a terminal: successive tables.
    let top = Spawned::new(&["top", "--interval", "200ms", "--admin", &addr]);
    let deadline = Instant::now() + LIMIT;
    let mut headers = 0;
    while headers < 3 {
        let line = top
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("top keeps printing tables");
        assert!(!line.contains('\x1b'), "{line:?}");
        headers += usize::from(line.starts_with("PLUGIN"));
    }
    drop(top);
    flowing.store(false, Ordering::Relaxed);
    feeder.join().unwrap();
    live.signal("TERM");
    live.finish().expect_code(0);
}

#[test]
fn the_overview_has_every_field_and_recent_processing_times() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    for n in 0..20 {
        publish(port, "in.a", &json!({"n": n}));
    }
    let o = overview_until(port, LIMIT, "20 handled", |o| {
        entry(o, "echo")["handled"] == 20
    });
    assert_eq!(o["status"], "ok");
    assert_eq!(o["version"], env!("CARGO_PKG_VERSION"));
    assert!(o["uptime_ms"].as_u64().is_some(), "{o}");
    assert_eq!(o["cluster"], Value::Null);
    let echo = entry(&o, "echo");
    for key in [
        "name",
        "version",
        "runtime",
        "state",
        "enabled",
        "queue_depth",
        "events_per_s",
        "errors",
        "errors_per_s",
        "handled",
        "p50_ms",
        "p99_ms",
        "restarts",
        "last_error",
        "last_reload",
        "rollout",
    ] {
        assert!(echo.get(key).is_some(), "no {key}: {echo}");
    }
    assert_eq!(echo["runtime"], "lua");
    assert_eq!(echo["state"], "running");
    assert_eq!(echo["version"], "1.0.0");
    assert_eq!(echo["errors"], 0);
    assert_eq!(echo["queue_depth"], 0);
    let p50 = echo["p50_ms"].as_f64().expect("p50 after events");
    let p99 = echo["p99_ms"].as_f64().expect("p99 after events");
    assert!(p50 > 0.0 && p50 <= p99, "{echo}");
    assert_eq!(echo["rollout"], Value::Null);

    // The stream: at once, then every second, the same snapshot.
    let mut sse = Sse::open(port, "/overview/stream", &[]).expect("200");
    let started = Instant::now();
    for _ in 0..2 {
        sse.until("event: overview", |l| l == "event: overview");
        let (data, _) = sse.until("its data", |l| l.starts_with("data: "));
        let snap: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
        assert_eq!(entry(&snap, "echo")["handled"], 20, "{snap}");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "a second apart"
    );
    live.signal("TERM");
    live.finish().expect_code(0);
}

#[test]
fn browsers_are_held_to_the_endpoints_own_address_and_origin() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    // DNS rebinding: a foreign Host is refused, whatever the route.
    for path in ["/health", "/overview", "/stream?topics=%3E"] {
        let a = raw(
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: evil.example"),
            b"",
        );
        assert_eq!(a.status, 400, "{path}: {a:?}");
        assert!(
            a.body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("evil.example"),
            "{a:?}"
        );
    }
    let other_port = raw(
        port,
        &format!(
            "GET /health HTTP/1.1\r\nHost: localhost:{}",
            port.wrapping_add(1)
        ),
        b"",
    );
    assert_eq!(other_port.status, 400, "{other_port:?}");
    for host in [
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        "localhost".into(),
    ] {
        let a = raw(port, &format!("GET /health HTTP/1.1\r\nHost: {host}"), b"");
        assert_eq!(a.status, 200, "{host}: {a:?}");
    }
    // HTTP/1.0 without a Host.
    let old = raw(port, "GET /health HTTP/1.0", b"");
    assert_eq!(old.status, 200, "{old:?}");

    // CSRF: a state-changing request from a foreign page is refused and
    // does nothing; the endpoint's own page and the CLI (no Origin) may.
    let host = format!("Host: 127.0.0.1:{port}");
    let foreign = raw(
        port,
        &format!("POST /events/in.csrf HTTP/1.1\r\n{host}\r\nOrigin: http://evil.example"),
        b"{}",
    );
    assert_eq!(foreign.status, 403, "{foreign:?}");
    let a = raw(
        port,
        &format!("GET /health HTTP/1.1\r\n{host}\r\nOrigin: http://evil.example"),
        b"",
    );
    assert_eq!(a.status, 200, "a read is not a change: {a:?}");
    let same = raw(
        port,
        &format!("POST /events/in.same HTTP/1.1\r\n{host}\r\nOrigin: http://127.0.0.1:{port}"),
        b"{\"same\": true}",
    );
    assert_eq!(same.status, 200, "{same:?}");
    let cli = raw(
        port,
        &format!("POST /events/in.cli HTTP/1.1\r\n{host}"),
        b"{}",
    );
    assert_eq!(cli.status, 200, "{cli:?}");
    let o = overview_until(port, LIMIT, "2 handled", |o| {
        entry(o, "echo")["handled"] == 2
    });
    assert_eq!(
        entry(&o, "echo")["handled"],
        2,
        "the refused event was published"
    );
    live.signal("TERM");
    let run = live.finish();
    run.expect_code(0);
    assert!(!run.stdout.contains("in.csrf"), "{}", run.stdout);
}

#[test]
fn the_token_guards_the_stream_and_the_overview() {
    let port = free_port();
    let token = "s3cret-watch";
    let (_fx, live) = echo_host(port, &[("PLUGHOST_ADMIN_TOKEN", token)]);
    let bearer = format!("Authorization: Bearer {token}");
    wait_ready(port, &[&bearer]);
    for path in ["/overview", "/overview/stream", "/stream?topics=%3E"] {
        let a = Sse::open(port, path, &[]).err().expect("refused");
        assert_eq!(a.status, 401, "{path}: {a:?}");
        let ok = Sse::open(port, path, &[&bearer]);
        assert!(ok.is_ok(), "{path} with the token: {:?}", ok.err());
    }
    live.signal("TERM");
    live.finish().expect_code(0);
}

#[test]
fn top_redraws_the_screen_on_a_terminal() {
    // `script` (util-linux, in every Debian) gives `plughost top` a terminal.
    Command::new("script")
        .arg("--version")
        .output()
        .expect("`script` (util-linux) runs, to give plughost top a terminal");
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let command = format!("{} top --interval 200ms --admin 127.0.0.1:{port}", binary());
    let mut script = Command::new("script")
        .args(["-qfec", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn script");
    let mut out = script.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + LIMIT;
    let mut screen = Vec::new();
    let clears = |s: &[u8]| s.windows(7).filter(|w| w == b"\x1b[H\x1b[2J").count();
    while clears(&screen) < 2 {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(bytes) => screen.extend(bytes),
            Err(_) => break,
        }
    }
    let _ = script.kill();
    let _ = script.wait();
    let text = String::from_utf8_lossy(&screen);
    assert!(clears(&screen) >= 2, "top did not redraw:\n{text}");
    assert!(text.contains("echo"), "{text}");
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// At most 64 overview streams are open at once: one more is answered 503,
/// and a slot frees once a client leaves.
#[test]
fn overview_streams_past_the_cap_are_refused_until_one_ends() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let mut open: Vec<Sse> = (0..64)
        .map(|i| {
            Sse::open(port, "/overview/stream", &[])
                .unwrap_or_else(|a| panic!("overview stream {i}: {a:?}"))
        })
        .collect();
    let refused = Sse::open(port, "/overview/stream", &[])
        .err()
        .expect("refused");
    assert_eq!(refused.status, 503, "{refused:?}");
    let error = refused.body["error"].as_str().unwrap_or_default();
    assert!(error.contains("64 overview streams"), "{error}");
    // The event streams are not counted with them.
    Sse::open(port, "/stream?topics=out.*", &[]).expect("an event stream");

    drop(open.pop());
    let deadline = Instant::now() + LIMIT;
    let mut again = loop {
        match Sse::open(port, "/overview/stream", &[]) {
            Ok(sse) => break sse,
            Err(a) => {
                assert_eq!(a.status, 503, "{a:?}");
                assert!(Instant::now() < deadline, "no slot freed: {a:?}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    again.until("event: overview", |l| l == "event: overview");
    drop(open);
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// The next overview snapshot's `data:` text of `sse`.
fn next_snapshot(sse: &mut Sse) -> String {
    sse.until("event: overview", |l| l == "event: overview");
    sse.until("its data", |l| l.starts_with("data: ")).0
}

/// Every second's snapshot is built once and sent to every client as is:
/// two clients get the very same text (down to `uptime_ms`).
#[test]
fn overview_stream_clients_get_one_shared_snapshot() {
    let port = free_port();
    let (_fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let mut a = Sse::open(port, "/overview/stream", &[]).expect("200");
    // Apart by more than `uptime_ms`'s resolution: snapshots each client
    // built for itself would differ.
    std::thread::sleep(Duration::from_millis(300));
    let mut b = Sse::open(port, "/overview/stream", &[]).expect("200");
    // Each client's first snapshot is its own, built at connect.
    next_snapshot(&mut a);
    next_snapshot(&mut b);
    // `b` connected 0.3 s after `a`: its first shared one is among `a`'s next.
    let from_a: Vec<String> = (0..3).map(|_| next_snapshot(&mut a)).collect();
    let from_b = next_snapshot(&mut b);
    assert!(
        from_a.contains(&from_b),
        "b's {from_b}\nis none of a's:\n{}",
        from_a.join("\n")
    );
    let snap: Value = serde_json::from_str(&from_b["data: ".len()..]).unwrap();
    assert_eq!(entry(&snap, "echo")["state"], "running", "{snap}");
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// `GET /plugins/{name}` and its overview entry.
fn enabled_and_state(port: u16) -> (Value, Value) {
    let one = request(port, "GET", "/plugins/echo", &[], b"");
    assert_eq!(one.status, 200, "{one:?}");
    let snap = overview(port);
    let e = entry(&snap, "echo");
    assert_eq!(e["enabled"], one.body["enabled"], "{snap}\n{one:?}");
    assert_eq!(e["state"], one.body["state"], "{snap}\n{one:?}");
    (one.body["enabled"].clone(), one.body["state"].clone())
}

/// Waits until `/plugins/echo` says `enabled` and `state`.
fn until_enabled(port: u16, enabled: bool, state: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let now = enabled_and_state(port);
        if now == (json!(enabled), json!(state)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not enabled={enabled} {state} within {LIMIT:?}: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `enabled` follows a manifest edit once live reload applies it, a
/// persisted disable and a passing enable.
#[test]
fn enabled_follows_live_edits_and_toggles() {
    let port = free_port();
    let (fx, live) = echo_host(port, &[]);
    wait_ready(port, &[]);
    let manifest = fx.path().join("echo/plugin.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    until_enabled(port, true, "running");

    std::fs::write(&manifest, format!("{text}enabled: false\n")).unwrap();
    until_enabled(port, false, "disabled");
    std::fs::write(&manifest, format!("{text}enabled: true\n")).unwrap();
    until_enabled(port, true, "running");

    let off = request(port, "POST", "/plugins/echo/disable?persist=true", &[], b"");
    assert_eq!(off.status, 200, "{off:?}");
    assert_eq!(enabled_and_state(port), (json!(false), json!("disabled")));
    let written = std::fs::read_to_string(&manifest).unwrap();
    assert!(written.contains("enabled: false"), "{written}");
    let on = request(port, "POST", "/plugins/echo/enable", &[], b"");
    assert_eq!(on.status, 200, "{on:?}");
    assert_eq!(enabled_and_state(port), (json!(true), json!("running")));
    // The file still says `false`: the operator's word holds over it.
    assert!(
        std::fs::read_to_string(&manifest)
            .unwrap()
            .contains("enabled: false")
    );
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// `enabled` is the host's word, not the file's: an edit no reload has
/// applied (no watching) changes nothing the host reports.
#[test]
fn enabled_is_what_the_host_read_not_an_unapplied_edit() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--no-watch"]);
    wait_ready(port, &[]);
    let manifest = fx.path().join("echo/plugin.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}enabled: false\n")).unwrap();
    assert_eq!(enabled_and_state(port), (json!(true), json!("running")));
    // A reload reads the file: now it is the host's word.
    let reload = request(port, "POST", "/plugins/echo/reload", &[], b"");
    assert_eq!(reload.status, 200, "{reload:?}");
    assert_eq!(enabled_and_state(port), (json!(false), json!("disabled")));
    live.signal("TERM");
    live.finish().expect_code(0);
}
