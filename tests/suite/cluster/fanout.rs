//! Fan-out between hosts (SPEC §14): every other host receives an exported
//! event once, with its fields; faults of the server never stop local work.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::live::Live;
use crate::support::{Runtime, run_binary};

#[test]
fn an_event_crosses_to_every_other_host_once_with_its_fields() {
    let nats = shared();
    let p = "fan";
    let (_a_dir, a_conf) = host("a", &nats.url(), p);
    let (b_dir, b_conf) = host("b", &nats.url(), p);
    let (_c_dir, c_conf) = host("c", &nats.url(), p);
    // B's plugin answers each `fan.in` with `fan.seen` (exported in turn).
    b_dir.plugin(
        Runtime::Lua,
        "seer",
        "subscriptions: [fan.in]\n",
        "function on_event(e) bus.publish('fan.seen', {id = e.id, n = e.payload.n}) end\n",
    );
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    let mut c = spawn(&c_conf);
    for live in [&mut a, &mut b, &mut c] {
        live.wait_for(
            "plughost.cluster.connected",
            is("plughost.cluster.connected"),
        );
    }
    warm_up(&mut a, &mut [&mut b, &mut c], p);

    let line = json!({
        "topic": "fan.in",
        "payload": {"n": 1},
        "correlation_id": "corr-1",
        "headers": {
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "tenant": "acme"
        }
    });
    a.send(&line);
    let sent = a.wait_for("fan.in on A", is("fan.in"));
    let on_b = b.wait_for("fan.in on B", is("fan.in"));
    let on_c = c.wait_for("fan.in on C", is("fan.in"));
    for got in [&on_b, &on_c] {
        for key in [
            "id",
            "source",
            "correlation_id",
            "timestamp",
            "headers",
            "payload",
        ] {
            assert_eq!(got[key], sent[key], "{key} kept: {got}");
        }
    }
    assert_eq!(on_b["correlation_id"], "corr-1");
    assert_eq!(on_b["headers"]["tenant"], "acme");
    // B's plugin got it: its answer reaches A and C.
    let seen = a.wait_for("fan.seen on A", is("fan.seen"));
    assert_eq!(seen["payload"]["id"], sent["id"]);
    c.wait_for("fan.seen on C", is("fan.seen"));

    // A marker after it: once C has it, anything echoed or re-exported
    // before it has arrived too.
    a.send(&json!({"topic": "fan.end", "payload": {}}));
    b.wait_for("fan.end on B", is("fan.end"));
    c.wait_for("fan.end on C", is("fan.end"));
    a.wait_for("fan.end on A", is("fan.end"));
    std::thread::sleep(Duration::from_millis(500));
    for live in [&a, &b, &c] {
        live.signal("TERM");
    }
    let (a, b, c) = (a.finish(), b.finish(), c.finish());
    let (a, b, c) = (a.events(), b.events(), c.events());
    // Once on each: A never gets its own export back, B does not re-export.
    assert_eq!(count(&a, "fan.in", Some(1)), 1, "A: {a:#?}");
    assert_eq!(count(&b, "fan.in", Some(1)), 1, "B: {b:#?}");
    assert_eq!(count(&c, "fan.in", Some(1)), 1, "C: {c:#?}");
    assert_eq!(count(&a, "fan.seen", None), 1, "A: {a:#?}");
    assert_eq!(count(&b, "fan.seen", None), 1, "B: {b:#?}");
    assert_eq!(count(&c, "fan.seen", None), 1, "C: {c:#?}");
    // Host events stay home: B's plugin started only on B's bus.
    let started_seer = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["topic"] == "plughost.plugin.started" && e["payload"]["plugin"] == "seer")
            .count()
    };
    assert_eq!(started_seer(&b), 1, "B: {b:#?}");
    assert_eq!(started_seer(&a), 0, "A: {a:#?}");
    assert_eq!(started_seer(&c), 0, "C: {c:#?}");
    for events in [&a, &c] {
        let connected = count(events, "plughost.cluster.connected", None);
        assert_eq!(connected, 1, "only its own connection: {events:#?}");
    }
}

#[test]
fn an_unreachable_server_at_start_is_a_warning_and_local_plugins_run() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (fx, conf) = host("lonely", &url, "alone");
    fx.plugin(
        Runtime::Lua,
        "echo",
        "subscriptions: [alone.in]\n",
        "function on_event(e) bus.publish('alone.out', e.payload) end\n",
    );
    let mut live = spawn(&conf);
    live.send(&json!({"topic": "alone.in", "payload": {"n": 7}}));
    let out = live.wait_for("alone.out", is("alone.out"));
    assert_eq!(out["payload"]["n"], 7);
    // The warning comes once the first attempts failed (within seconds).
    std::thread::sleep(Duration::from_secs(3));
    live.send(&json!({"topic": "alone.in", "payload": {"n": 8}}));
    live.wait_for("alone.out 8", |e| {
        e["topic"] == "alone.out" && e["payload"]["n"] == 8
    });
    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("cluster: cannot reach NATS"),
        "{}",
        run.stderr
    );
    assert_eq!(count(&run.events(), "plughost.cluster.connected", None), 0);
}

#[test]
fn losing_the_server_never_stops_local_work_and_exports_resume_after_reconnect() {
    let nats = Nats::start();
    let p = "rc";
    let (a_fx, a_conf) = host("a", &nats.url(), p);
    let (_b_fx, b_conf) = host("b", &nats.url(), p);
    a_fx.plugin(
        Runtime::Lua,
        "local",
        "subscriptions: [rc.local]\n",
        "function on_event(e) bus.publish('rc.done', e.payload) end\n",
    );
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    warm_up(&mut a, &mut [&mut b], p);

    let (port, store) = nats.stop();
    for live in [&mut a, &mut b] {
        live.wait_for("disconnected", is("plughost.cluster.disconnected"));
    }
    // Local work goes on without the server.
    a.send(&json!({"topic": "rc.local", "payload": {"n": 1}}));
    let done = a.wait_for("rc.done", is("rc.done"));
    assert_eq!(done["payload"]["n"], 1);

    let _nats = Nats::start_on(port, store);
    for live in [&mut a, &mut b] {
        let first = live.wait_for("connected", is("plughost.cluster.connected"))["id"].clone();
        live.wait_for("connected again", |e| {
            e["topic"] == "plughost.cluster.connected" && e["id"] != first
        });
    }
    warm_up(&mut a, &mut [&mut b], p);
    a.send(&json!({"topic": "rc.after", "payload": {"n": 2}}));
    let after = b.wait_for("rc.after on B", is("rc.after"));
    assert_eq!(after["payload"]["n"], 2);
    for live in [&a, &b] {
        live.signal("TERM");
    }
    let (a, b) = (a.finish(), b.finish());
    for run in [&a, &b] {
        let events = run.events();
        let order: Vec<&str> = events
            .iter()
            .filter_map(|e| e["topic"].as_str())
            .filter(|t| t.starts_with("plughost.cluster."))
            .collect();
        assert_eq!(
            order,
            [
                "plughost.cluster.connected",
                "plughost.cluster.disconnected",
                "plughost.cluster.connected"
            ],
            "{}",
            run.stderr
        );
    }
    assert_eq!(count(&b.events(), "rc.after", Some(2)), 1);
}

#[test]
fn a_bad_cluster_section_is_a_configuration_error_with_positions() {
    let fx = Fixture::new();
    std::fs::create_dir_all(fx.path().join("plugins")).unwrap();
    let config = fx.file(
        "plughost.yaml",
        "plugins: [plugins]\ncluster:\n  nats: [nats://ok:4222, 'http://x:1']\n  \
         export: [a.>, plughost.>]\n  buffer: 0\n  imports: [x]\n",
    );
    let config = config.to_str().unwrap();
    let run = run_binary(
        &[
            "run",
            "--config",
            config,
            "--input",
            "-",
            "--exit-when-idle",
        ],
        Some(""),
    );
    run.expect_code(2);
    for expected in [
        format!("{config}:3:26: cluster.nats[1]: `http://x:1` is not a NATS server URL"),
        format!("{config}:4:17: cluster.export[1]: `plughost.>` is under `plughost.`"),
        format!("{config}:5:11: cluster.buffer: must be at least 1, found `0`"),
        format!("{config}:6:3: unknown key `imports` in `cluster` (did you mean `import`?)"),
    ] {
        assert!(run.stderr.contains(&expected), "{expected}\n{}", run.stderr);
    }
}

#[test]
fn exports_wait_for_the_server_in_a_bounded_buffer_and_health_counts_the_drops() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let fx = Fixture::new();
    let config = fx.file(
        "plughost.yaml",
        &format!("plugins: ['.']\ncluster:\n  nats: {url}\n  name: h\n  buffer: 2\n"),
    );
    let admin = free_port();
    let mut live = Live::spawn(&[
        "run",
        "--config",
        config.to_str().unwrap(),
        "--input",
        "-",
        "--tap",
        "hb.>",
        "--no-watch",
        "--admin",
        &format!("127.0.0.1:{admin}"),
    ]);
    for n in 0..5 {
        live.send(&json!({"topic": "hb.x", "payload": {"n": n}}));
    }
    live.wait_for("the fifth event", |e| e["payload"]["n"] == 4);
    let health = get_json(admin, "/health");
    assert_eq!(
        health["cluster"],
        json!({"state": "disconnected", "name": "h", "exported": 0, "imported": 0, "dropped": 3}),
        "{health}"
    );
    live.signal("TERM");
    let run = live.finish();
    assert!(
        run.stderr.contains("cluster export buffer full"),
        "{}",
        run.stderr
    );
}

#[test]
fn two_hosts_with_one_name_still_tell_their_echoes_apart_and_are_warned() {
    let nats = shared();
    let p = "dup";
    let (_a_fx, a_conf) = host("same", &nats.url(), p);
    let (_b_fx, b_conf) = host("same", &nats.url(), p);
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    warm_up(&mut a, &mut [&mut b], p);
    a.send(&json!({"topic": "dup.x", "payload": {"n": 1}}));
    b.wait_for("dup.x on B", is("dup.x"));
    a.send(&json!({"topic": "dup.end", "payload": {}}));
    b.wait_for("dup.end on B", is("dup.end"));
    std::thread::sleep(Duration::from_millis(300));
    for live in [&a, &b] {
        live.signal("TERM");
    }
    let (a, b) = (a.finish(), b.finish());
    assert_eq!(count(&a.events(), "dup.x", Some(1)), 1, "{}", a.stdout);
    assert_eq!(count(&b.events(), "dup.x", Some(1)), 1, "{}", b.stdout);
    assert!(
        b.stderr.contains("another host is named `same` too"),
        "{}",
        b.stderr
    );
}

#[test]
fn messages_to_and_from_nats_are_counted_per_topic() {
    let nats = shared();
    let p = "mx";
    let (_a_dir, a_conf) = host("a", &nats.url(), p);
    let (_b_dir, b_conf) = host("b", &nats.url(), p);
    let (a_admin, b_admin) = (free_port(), free_port());
    let with_admin = |config: &str, port: u16| {
        Live::spawn(&[
            "run",
            "--config",
            config,
            "--input",
            "-",
            "--tap",
            ">",
            "--no-watch",
            "--admin",
            &format!("127.0.0.1:{port}"),
        ])
    };
    let mut a = with_admin(&a_conf, a_admin);
    let mut b = with_admin(&b_conf, b_admin);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    warm_up(&mut a, &mut [&mut b], p);
    for n in 0..3 {
        a.send(&json!({"topic": "mx.counted", "payload": {"n": n}}));
    }
    b.wait_for("the third", |e| {
        e["topic"] == "mx.counted" && e["payload"]["n"] == 2
    });
    let line = |text: &str, direction: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("cluster_messages")
                    && l.contains(&format!("direction=\"{direction}\""))
                    && l.contains("message_topic=\"mx.counted\"")
            })
            .map(|l| l.rsplit(' ').next().unwrap().to_owned())
    };
    let on_a = get_text(a_admin, "/metrics");
    let on_b = get_text(b_admin, "/metrics");
    assert_eq!(line(&on_a, "out").as_deref(), Some("3"), "{on_a}");
    assert_eq!(line(&on_a, "in"), None, "A never received its own");
    assert_eq!(line(&on_b, "in").as_deref(), Some("3"), "{on_b}");
    assert_eq!(
        line(&on_b, "out"),
        None,
        "B never exported what it imported"
    );
}
