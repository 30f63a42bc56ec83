//! `GET /overview` and its stream: every field, recent processing times,
//! one shared snapshot, the cap on clients, and `enabled` as the host read it.

use super::*;

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

/// A host on one `echo` plugin, watching no file, whose manifest has then
/// been edited to `enabled: false` (an edit nothing has applied).
fn unwatched_echo_edited_to_disabled(port: u16) -> (Fixture, Live) {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--no-watch"]);
    wait_ready(port, &[]);
    let manifest = fx.path().join("echo/plugin.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, format!("{text}enabled: false\n")).unwrap();
    (fx, live)
}

/// `enabled` is the host's word, not the file's: an edit no reload has
/// applied (no watching) changes nothing the host reports.
#[test]
fn enabled_is_what_the_host_read_not_an_unapplied_edit() {
    let port = free_port();
    let (_fx, live) = unwatched_echo_edited_to_disabled(port);
    assert_eq!(enabled_and_state(port), (json!(true), json!("running")));
    // A reload reads the file: now it is the host's word.
    let reload = request(port, "POST", "/plugins/echo/reload", &[], b"");
    assert_eq!(reload.status, 200, "{reload:?}");
    assert_eq!(enabled_and_state(port), (json!(false), json!("disabled")));
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// An operator's disable holds in what the host reports although the file,
/// edited but not applied (no watching), says something else: a read never
/// drops the operator's word.
#[test]
fn an_operators_disable_holds_over_an_unapplied_edit() {
    let port = free_port();
    let (_fx, live) = unwatched_echo_edited_to_disabled(port);
    let disable = request(port, "POST", "/plugins/echo/disable", &[], b"");
    assert_eq!(disable.status, 200, "{disable:?}");
    for _ in 0..3 {
        assert_eq!(enabled_and_state(port), (json!(false), json!("disabled")));
    }
    live.signal("TERM");
    live.finish().expect_code(0);
}

/// A plugin renamed in its manifest (live reload on) is known by its new
/// name only: the old name no longer reaches the folder, so a command on
/// it cannot act on the renamed plugin.
#[test]
fn a_renamed_plugin_answers_to_its_new_name_only() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "alpha", "subscriptions: [in.*]\n", ECHO);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr]);
    wait_ready(port, &[]);
    let manifest = fx.path().join("alpha/plugin.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("name: alpha", "name: beta")).unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let beta = request(port, "GET", "/plugins/beta", &[], b"");
        if beta.status == 200 && beta.body["state"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "beta never ran: {beta:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let alpha = request(port, "GET", "/plugins/alpha", &[], b"");
    assert_eq!(alpha.status, 404, "{alpha:?}");
    let disable = request(port, "POST", "/plugins/alpha/disable", &[], b"");
    assert_eq!(disable.status, 404, "{disable:?}");
    let reload = request(port, "POST", "/plugins/alpha/reload", &[], b"");
    assert_eq!(reload.status, 404, "{reload:?}");
    let beta = request(port, "GET", "/plugins/beta", &[], b"");
    assert_eq!(
        beta.body["state"], "running",
        "the old name stopped it: {beta:?}"
    );
    let snap = overview(port);
    let names: Vec<&str> = snap["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["beta"], "{snap}");
    live.signal("TERM");
    live.finish().expect_code(0);
}
