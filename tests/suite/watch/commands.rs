//! `plughost tap` and `plughost top`, against a running host.

use super::*;

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
