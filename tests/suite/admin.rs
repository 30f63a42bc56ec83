//! The admin endpoint (SPEC §10): the real binary with `--admin`, spoken to
//! over HTTP/1.1 written by hand on a `TcpStream`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Runtime, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// An HTTP answer: status and body (JSON when it parses).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: Value,
}

/// Sends one request (`Connection: close`) and reads the whole answer.
fn request(port: u16, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Answer {
    try_request(port, method, path, headers, body).expect("admin endpoint answers")
}

fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(LIMIT))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    // A server refusing a large body may answer and close before reading it all.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    if let Err(e) = stream.read_to_end(&mut raw)
        && raw.is_empty()
    {
        return Err(e);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok(Answer {
        status,
        body: serde_json::from_str(body).unwrap_or_else(|_| json!(body)),
    })
}

fn get(port: u16, path: &str) -> Answer {
    request(port, "GET", path, &[], b"")
}

fn post(port: u16, path: &str, body: &[u8]) -> Answer {
    request(port, "POST", path, &[], body)
}

/// Polls `GET /health` until the endpoint answers (it serves once plugins started).
fn wait_ready(port: u16, headers: &[&str]) -> Answer {
    let deadline = Instant::now() + LIMIT;
    loop {
        match try_request(port, "GET", "/health", headers, b"") {
            Ok(a) => return a,
            Err(e) if Instant::now() >= deadline => panic!("admin endpoint never answered: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn echo_fixture() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    fx
}

#[test]
fn serves_health_plugins_reload_and_events() {
    let fx = echo_fixture();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"]);

    let health = wait_ready(port, &[]);
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(
        health.body,
        json!({"status": "ok", "plugins": {"echo": "running"}})
    );

    let list = get(port, "/plugins");
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body.as_array().map(Vec::len), Some(1), "{list:?}");
    let one = get(port, "/plugins/echo");
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body, list.body[0]);
    assert_eq!(one.body["version"], "1.0.0");
    assert_eq!(one.body["runtime"], "lua");
    assert_eq!(one.body["state"], "running");
    assert_eq!(one.body["subscriptions"], json!(["in.*"]));
    assert_eq!(one.body["queue_depth"], 0);
    assert_eq!(one.body["counts"]["acked"], 0);

    let published = post(port, "/events/in.hello", br#"{"n": 1}"#);
    assert_eq!(published.status, 200, "{published:?}");
    let id = published.body["id"].as_str().expect("an id").to_owned();
    let echoed = live.wait_for("the echoed event", |e| e["topic"] == "out.echoed");
    assert_eq!(echoed["payload"], json!({"n": 1}));
    assert_eq!(echoed["correlation_id"], json!(id));

    let reloaded = post(port, "/plugins/echo/reload", b"");
    assert_eq!(reloaded.status, 200, "{reloaded:?}");
    assert_eq!(reloaded.body["outcome"], "reloaded");
    assert_eq!(reloaded.body["state"], "running");
    live.wait_for("the reload announced", |e| {
        e["topic"] == "plughost.plugin.reloaded"
    });

    // Errors are JSON with the right status.
    let unknown = get(port, "/plugins/nope");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body["error"].as_str().unwrap().contains("nope"));
    assert_eq!(post(port, "/plugins/nope/reload", b"").status, 404);
    let bad = post(port, "/plugins/..%2Fx/reload", b"");
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body["error"].is_string());
    assert_eq!(get(port, "/plugins/Bad%20Name").status, 400);
    assert_eq!(post(port, "/events/in.*", b"{}").status, 400);
    assert_eq!(post(port, "/events/plughost.x", b"{}").status, 400);
    assert_eq!(post(port, "/events/in.x", b"not json").status, 400);
    let big = vec![b' '; 1024 * 1024 + 1024];
    let too_big = post(port, "/events/in.big", &big);
    assert_eq!(too_big.status, 413, "{too_big:?}");
    assert!(too_big.body["error"].is_string());
    assert_eq!(get(port, "/nowhere").status, 404);

    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(
        run.stderr
            .contains(&format!("admin endpoint listening on http://{addr}")),
        "{run}"
    );
    // The oversized event was never published.
    assert!(run.on("in.big").is_empty(), "{run}");
    // Shut down with the host: the port is free again.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn a_token_is_required_when_set() {
    let fx = echo_fixture();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn_with_env(
        &["run", "--plugins", &plugins, "--admin", &addr],
        &[("PLUGHOST_ADMIN_TOKEN", "s3cret-token")],
    );
    let ok = wait_ready(port, &["Authorization: Bearer s3cret-token"]);
    assert_eq!(ok.status, 200, "{ok:?}");
    let missing = get(port, "/health");
    assert_eq!(missing.status, 401, "{missing:?}");
    assert!(missing.body["error"].is_string());
    let wrong = request(
        port,
        "GET",
        "/plugins",
        &["Authorization: Bearer s3cret-tokeN"],
        b"",
    );
    assert_eq!(wrong.status, 401, "{wrong:?}");
    let short = request(
        port,
        "POST",
        "/events/in.x",
        &["Authorization: Bearer s3"],
        b"{}",
    );
    assert_eq!(short.status, 401, "{short:?}");
    let authed = request(
        port,
        "GET",
        "/plugins/echo",
        &["Authorization: Bearer s3cret-token"],
        b"",
    );
    assert_eq!(authed.status, 200, "{authed:?}");
    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
    assert!(
        !run.stderr.contains("s3cret"),
        "the token is never logged\n{run}"
    );
}

#[test]
fn non_loopback_without_a_token_exits_2() {
    let fx = echo_fixture();
    let plugins = fx.path().to_str().unwrap().to_owned();
    let run = run_binary_with_env(
        &["run", "--plugins", &plugins, "--admin", "0.0.0.0:0"],
        None,
        &[("PLUGHOST_ADMIN_TOKEN", "")],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("PLUGHOST_ADMIN_TOKEN"), "{run}");
    assert!(run.stderr.contains("non-loopback"), "{run}");

    // The config file's `admin:` is served too, its `token_env` named in the message.
    let config = fx.file(
        "plughost.yaml",
        "admin:\n  listen: 0.0.0.0:0\n  token_env: PLUGHOST_TEST_UNSET_TOKEN\n",
    );
    let run = run_binary_with_env(
        &[
            "run",
            "--plugins",
            &plugins,
            "--config",
            config.to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("PLUGHOST_TEST_UNSET_TOKEN"), "{run}");
}
