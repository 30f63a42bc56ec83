//! The admin endpoint (SPEC §10): the real binary with `--admin`, spoken to
//! over HTTP/1.1 written by hand on a `TcpStream`: every endpoint, the
//! token, enable and disable with and without `?persist=true`, the reload
//! history, `/metrics`, and `/health` while the host drains.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Runtime, free_port, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// An HTTP answer: status and body (JSON when it parses).
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: u16,
    /// The body, as JSON when it parses, else as a JSON string.
    pub(crate) body: Value,
}

/// Sends one request (`Connection: close`) and reads the whole answer.
pub(crate) fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Answer {
    try_request(port, method, path, headers, body).expect("admin endpoint answers")
}

/// [`request`], or the I/O error when nothing answers. A `Content-Length`
/// among `headers` replaces the body's own (to lie about it).
pub(crate) fn try_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(LIMIT))?;
    stream.set_write_timeout(Some(LIMIT))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
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
pub(crate) fn wait_ready(port: u16, headers: &[&str]) -> Answer {
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

/// The echo plugin's manifest, comments and all: an enable or disable
/// persisted through the API changes `enabled:` and nothing else.
const COMMENTED: &str = "# The echo plugin: sends back what it gets.\n\
name: echo\n\
version: 1.0.0   # bump on every release\n\
\n\
# what it listens to\n\
subscriptions: [in.*]\n";

/// Echoes, but fails on a payload that asks it to.
const FAILING: &str = "function on_event(e)\n  if e.payload.fail then error('asked to fail') end\n  bus.publish('out.echoed', e.payload)\nend\n";

/// A plugin disabled in its manifest whose script does not compile:
/// enabling it is refused with the script's position.
const BROKEN: &str = "function on_event(e)\n  bus.publish('out.x', e.payload\nend\n";

fn toggle_fixture() -> Fixture {
    let fx = Fixture::new();
    fx.file("echo/plugin.yaml", COMMENTED);
    fx.file("echo/main.lua", ECHO);
    fx.plugin(
        Runtime::Lua,
        "broken",
        "subscriptions: [in.*]\nenabled: false\n",
        BROKEN,
    );
    fx
}

/// How many `out.echoed` events the tap has printed so far.
fn echoed(live: &Live) -> usize {
    live.events()
        .iter()
        .filter(|e| e["topic"] == "out.echoed")
        .count()
}

#[test]
fn enable_and_disable_answer_once_in_effect_and_persist_only_when_asked() {
    let fx = toggle_fixture();
    let manifest = fx.path().join("echo/plugin.yaml");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"]);
    let health = wait_ready(port, &[]);
    assert_eq!(
        health.body["plugins"],
        json!({"broken": "disabled", "echo": "running"}),
        "{health:?}"
    );

    // Disabled: stopped at once, nothing written.
    let off = post(port, "/plugins/echo/disable", b"");
    assert_eq!(off.status, 200, "{off:?}");
    assert_eq!(off.body["outcome"], "stopped");
    assert_eq!(off.body["state"], "disabled");
    assert_eq!(off.body["persisted"], false);
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), COMMENTED);
    let one = get(port, "/plugins/echo");
    assert_eq!(one.body["state"], "disabled", "{one:?}");
    assert_eq!(one.body["enabled"], false, "{one:?}");
    assert_eq!(get(port, "/health").body["plugins"]["echo"], "disabled");
    let again = post(port, "/plugins/echo/disable", b"");
    assert_eq!(again.body["outcome"], "unchanged", "{again:?}");
    // A reload respects the operator's word: the plugin stays off.
    let reload = post(port, "/plugins/echo/reload", b"");
    assert_eq!(reload.status, 200, "{reload:?}");
    assert_eq!(reload.body["state"], "disabled", "{reload:?}");
    assert_eq!(post(port, "/events/in.a", b"{}").status, 200);

    // Enabled again: running when answered, handling events.
    let on = post(port, "/plugins/echo/enable", b"");
    assert_eq!(on.status, 200, "{on:?}");
    assert_eq!(on.body["outcome"], "started");
    assert_eq!(on.body["state"], "running");
    assert_eq!(post(port, "/events/in.b", br#"{"n": 2}"#).status, 200);
    let e = live.wait_for("an echo after enable", |e| e["topic"] == "out.echoed");
    assert_eq!(e["payload"], json!({"n": 2}), "in.a was never echoed");

    // Persisted: `enabled:` goes into plugin.yaml, the comments stay.
    let off = post(port, "/plugins/echo/disable?persist=true", b"");
    assert_eq!(off.status, 200, "{off:?}");
    assert_eq!(off.body["persisted"], true);
    assert_eq!(off.body["state"], "disabled");
    let with_false = COMMENTED.replace(
        "# bump on every release\n",
        "# bump on every release\nenabled: false\n",
    );
    assert_eq!(std::fs::read_to_string(&manifest).unwrap(), with_false);
    let on = post(port, "/plugins/echo/enable?persist=1", b"");
    assert_eq!(on.body["outcome"], "started", "{on:?}");
    assert_eq!(
        std::fs::read_to_string(&manifest).unwrap(),
        with_false.replace("enabled: false", "enabled: true")
    );
    // The watcher sees the host's own write: already in effect, no reload.
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !live
            .events()
            .iter()
            .any(|e| e["topic"] == "plughost.plugin.reloaded"),
        "the persisted enable reloaded the plugin again: {:?}",
        live.events()
    );
    let before = echoed(&live);
    assert_eq!(post(port, "/events/in.c", b"{}").status, 200);
    live.wait_for("an echo after the persisted enable", |e| {
        e["topic"] == "out.echoed" && e["payload"] == json!({})
    });
    assert_eq!(echoed(&live), before + 1);

    // A plugin that cannot start: 422 with the script's position; still off.
    let refused = post(port, "/plugins/broken/enable", b"");
    assert_eq!(refused.status, 422, "{refused:?}");
    assert_eq!(refused.body["outcome"], "failed");
    let error = refused.body["error"].as_str().unwrap();
    assert!(error.contains("broken/main.lua:3"), "{error}");
    assert_ne!(get(port, "/plugins/broken").body["state"], "running");

    // Bad requests.
    assert_eq!(post(port, "/plugins/nope/enable", b"").status, 404);
    assert_eq!(post(port, "/plugins/..%2Fx/disable", b"").status, 400);
    let bad = post(port, "/plugins/echo/disable?persist=maybe", b"");
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body["error"].as_str().unwrap().contains("persist"));

    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
}

#[test]
fn get_plugin_reports_reload_history_and_metrics_are_prometheus_text() {
    let fx = echo_fixture();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    // No watcher: the reloads are the API's alone.
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &plugins,
        "--admin",
        &addr,
        "--tap",
        ">",
        "--no-watch",
    ]);
    wait_ready(port, &[]);
    assert_eq!(post(port, "/events/in.x", b"{}").status, 200);
    live.wait_for("the echo", |e| e["topic"] == "out.echoed");
    assert_eq!(
        get(port, "/plugins/echo").body["last_dead_letter"],
        Value::Null
    );
    // An event the script fails on: the last dead letter, positioned.
    fx.file("echo/main.lua", FAILING);
    assert_eq!(post(port, "/plugins/echo/reload", b"").status, 200);
    let sent = post(port, "/events/in.x", br#"{"fail": true}"#);
    let id = sent.body["id"].as_str().unwrap().to_owned();
    live.wait_for("the dead letter", |e| e["topic"] == "plughost.dead_letter");
    let one = get(port, "/plugins/echo");
    assert_eq!(one.body["last_dead_letter"]["event"], json!(id), "{one:?}");
    let error = one.body["last_dead_letter"]["error"].as_str().unwrap();
    assert!(error.contains("echo/main.lua:2: asked to fail"), "{error}");
    assert_eq!(one.body["counts"]["dead_lettered"], 1, "{one:?}");

    // One reload that takes, one refused (the script no longer compiles).
    assert_eq!(post(port, "/plugins/echo/reload", b"").status, 200);
    fx.file("echo/main.lua", BROKEN);
    let refused = post(port, "/plugins/echo/reload", b"");
    assert_eq!(refused.status, 422, "{refused:?}");
    let one = get(port, "/plugins/echo");
    assert_eq!(one.body["state"], "running", "the old version goes on");
    let reloads = one.body["reloads"].as_array().expect("a reload history");
    assert!(reloads.len() >= 2, "{one:?}");
    let last_two = &reloads[reloads.len() - 2..];
    assert_eq!(last_two[0]["result"], "ok", "{one:?}");
    assert_eq!(last_two[0]["version"], "1.0.0");
    assert_eq!(last_two[1]["result"], "error", "{one:?}");
    assert!(
        last_two[1]["error"]
            .as_str()
            .unwrap()
            .contains("echo/main.lua:3"),
        "{one:?}"
    );
    assert!(
        one.body["last_error"]
            .as_str()
            .unwrap()
            .contains("main.lua:3")
    );

    let metrics = get(port, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().expect("plain text");
    for name in [
        "plugin_init_duration_ms_count",
        // The reload ran the old version's `shutdown`.
        "plugin_shutdown_duration_ms_count",
        "plugin_message_processing_time_ms_bucket",
        "plugin_messages_total",
        "plugin_reloads_total",
        "plugin_queue_depth",
        "plugin_queue_dropped_total",
        "plugin_lifecycle_events_total",
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && l.contains(r#"plugin_name="echo""#)),
            "{name} for echo missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.lines().any(|l| l.starts_with("plugin_reloads_total")
            && l.contains(r#"result="error""#)
            && l.ends_with(" 1")),
        "{text}"
    );
    live.signal("TERM");
    assert_eq!(live.finish().code, 0);
}

/// Spends `config.busy` seconds of CPU per event: a queue that takes a
/// while to drain.
const SLOW: &str = "function on_event(e)\n  local t = os.clock()\n  while os.clock() - t < config.busy do end\nend\n";

#[test]
fn health_changes_and_events_are_503_while_the_host_drains_at_shutdown() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "slow",
        "subscriptions: [in.*]\nconfig: {busy: 0.2}\n",
        SLOW,
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr]);
    assert_eq!(wait_ready(port, &[]).status, 200);
    for _ in 0..10 {
        assert_eq!(post(port, "/events/in.x", b"{}").status, 200);
    }
    live.signal("TERM");
    // About two seconds of queue to drain: the endpoint says so meanwhile.
    let deadline = Instant::now() + LIMIT;
    let draining = loop {
        match try_request(port, "GET", "/health", &[], b"") {
            Ok(a) if a.status == 503 => break a,
            Ok(a) => assert_eq!(a.status, 200, "{a:?}"),
            Err(e) => panic!("the endpoint closed before answering 503: {e}"),
        }
        assert!(Instant::now() < deadline, "never answered 503");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(draining.body["status"], "shutting_down", "{draining:?}");
    // Meanwhile it takes no event and no change: the drain has an end.
    for (path, body) in [
        ("/events/in.x", &b"{}"[..]),
        ("/plugins/slow/disable", b""),
        ("/plugins/slow/reload", b""),
    ] {
        let refused = post(port, path, body);
        assert_eq!(refused.status, 503, "{path}: {refused:?}");
        assert!(
            refused.body["error"]
                .as_str()
                .is_some_and(|e| e.contains("shutting down")),
            "{refused:?}"
        );
    }
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
}
