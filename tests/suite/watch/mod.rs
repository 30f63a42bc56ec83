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

mod commands;
mod overview;
mod stream;

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
