//! `GET /stream`: matching events as `--tap` prints them, slow clients
//! that lose events but never slow the bus, the caps, the end at shutdown;
//! and the browser rules and the token on the watching routes.

use super::*;

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

/// A host on one `quiet` plugin fed from stdin, a `/stream` client on
/// everything that does not read, and `events` events of `filler` bytes
/// published past it; returns once every event is handled, with the
/// overview then.
fn flood_a_client_that_does_not_read(events: u64, filler: usize) -> (Fixture, Live, Sse, Value) {
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
    let sse = Sse::open(port, "/stream?topics=%3E", &[]).expect("200");
    let filler = "x".repeat(filler);
    for n in 0..events {
        live.send(&json!({"topic": "in.n", "payload": {"n": n, "filler": filler}}));
    }
    let o = overview_until(port, Duration::from_secs(60), "every event handled", |o| {
        entry(o, "quiet")["handled"] == events
    });
    (fx, live, sse, o)
}

#[test]
fn a_slow_client_loses_events_and_never_slows_the_bus() {
    const EVENTS: u64 = 50_000;
    // Large payloads: more than the sockets' buffers hold.
    let (_fx, mut live, mut sse, o) = flood_a_client_that_does_not_read(EVENTS, 1000);
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
    // 48 events of 900 KiB: about 43 MiB, and only 48 messages.
    let (_fx, mut live, mut sse, o) = flood_a_client_that_does_not_read(EVENTS, 900 * 1024);
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
