//! Hostile plugins on the bus and the plugin thread: timers that never end,
//! storms, ping-pong between full queues, self-amplification, forward loops,
//! host-topic spoofing, endless retries. Each runs beside a well-behaved
//! plugin whose every event must still be handled, and each host ends: by
//! itself with `--exit-when-idle`, or on SIGTERM within `--drain-timeout`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::{Fixture, Runtime, ev};

/// A Lua plugin answering every `in` event on `neighbour.seen`.
fn neighbour(fx: &Fixture) {
    fx.plugin(
        Runtime::Lua,
        "neighbour",
        "subscriptions: [in]\n",
        "function on_event(e) bus.publish('neighbour.seen', { n = e.payload.n }) end",
    );
}

fn inputs(n: usize) -> Vec<Value> {
    (0..n).map(|n| ev("in", json!({"n": n}))).collect()
}

fn assert_neighbour_saw_all(run: &crate::support::Run, n: usize) {
    let mut seen: Vec<i64> = run
        .payloads("neighbour.seen")
        .iter()
        .map(|p| p["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(seen, (0..n as i64).collect::<Vec<_>>(), "{run}");
}

const SPINNING_TIMER_LUA: &str = r#"
function init()
  timer.every(1, function() while true do end end)
end
function on_event(e) bus.publish("attacker.seen", { n = e.payload.n }) end
"#;

const SPINNING_TIMER_RHAI: &str = r#"
fn spin() { loop { } }
fn init() { timer::every(1, spin); }
fn on_event(e) { bus::publish("attacker.seen", #{ n: e.payload.n }); }
"#;

fn spinning_timer(rt: Runtime) -> &'static str {
    match rt {
        Runtime::Lua => SPINNING_TIMER_LUA,
        _ => SPINNING_TIMER_RHAI,
    }
}

/// A timer that always runs to its time limit takes turns with the events:
/// every event is still handled and the host goes idle.
#[test]
fn a_timer_that_always_runs_to_its_limit_starves_no_event() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        fx.plugin(
            rt,
            "attacker",
            "subscriptions: [in]\nlimits: {event_timeout_ms: 50}\n",
            spinning_timer(rt),
        );
        let started = Instant::now();
        let run = fx.run(&inputs(5));
        run.expect_code(0);
        assert!(started.elapsed() < Duration::from_secs(20), "{run}");
        assert_neighbour_saw_all(&run, 5);
        assert_eq!(run.payloads("attacker.seen").len(), 5, "{rt:?}: {run}");
    }
}

/// SIGTERM ends a host whose plugin's timer spins, within the drain timeout
/// (and the stop grace).
#[test]
fn sigterm_ends_a_host_whose_timer_spins() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        fx.plugin(
            rt,
            "attacker",
            "subscriptions: [in]\nlimits: {event_timeout_ms: 200}\n",
            spinning_timer(rt),
        );
        let dir = fx.path().to_str().unwrap().to_owned();
        let mut live = Live::spawn(&[
            "run",
            "--plugins",
            &dir,
            "--input",
            "-",
            "--tap",
            ">",
            "--drain-timeout",
            "1s",
        ]);
        live.send(&ev("in", json!({"n": 0})));
        live.wait_for("the neighbour's output", |e| e["topic"] == "neighbour.seen");
        live.wait_for("the attacker's output", |e| e["topic"] == "attacker.seen");
        let at = Instant::now();
        live.signal("TERM");
        let run = live.finish();
        assert!(at.elapsed() < Duration::from_secs(5), "{rt:?}: {run}");
    }
}

/// Two plugins publishing into each other's full `block` queues wait for
/// each other; SIGTERM still ends the host, and the events left are logged
/// as a summary, not one line each.
#[test]
fn ping_pong_between_full_queues_ends_at_sigterm() {
    let fx = Fixture::new();
    neighbour(&fx);
    for (me, other) in [("ping", "pong"), ("pong", "ping")] {
        fx.plugin(
            Runtime::Lua,
            me,
            &format!("subscriptions: [to.{me}]\nlimits: {{queue: 2, overflow: block}}\n"),
            &format!(
                "function on_event(e) for i = 1, 3 do bus.publish('to.{other}', {{}}) end end"
            ),
        );
    }
    let dir = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &dir,
        "--input",
        "-",
        "--tap",
        "neighbour.>",
        "--drain-timeout",
        "1s",
    ]);
    live.send(&ev("in", json!({"n": 0})));
    live.wait_for("the neighbour's output", |e| e["topic"] == "neighbour.seen");
    live.send(&ev("to.ping", json!({})));
    std::thread::sleep(Duration::from_millis(300));
    let at = Instant::now();
    live.signal("TERM");
    let run = live.finish();
    assert!(at.elapsed() < Duration::from_secs(6), "{run}");
    let per_event = run
        .stderr
        .lines()
        .filter(|l| l.contains("undelivered at shutdown"))
        .count();
    assert!((1..=4).contains(&per_event), "{per_event} lines: {run}");
}

/// A plugin publishing twice onto its own topic per event: its queue stays
/// within `limits.queue` (the publish over it is refused), it is suspended
/// after errors in a row, and the host goes idle.
#[test]
fn self_amplification_stays_within_the_queue_limit() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        let src = match rt {
            Runtime::Lua => {
                "function on_event(e) bus.publish('loop', {}); bus.publish('loop', {}) end"
            }
            _ => "fn on_event(e) { bus::publish(\"loop\", #{}); bus::publish(\"loop\", #{}); }",
        };
        fx.plugin(
            rt,
            "attacker",
            "subscriptions: [loop]\nlimits: {queue: 16}\nsupervision: {max_consecutive_errors: 5}\n",
            src,
        );
        let mut input = inputs(5);
        input.push(ev("loop", json!({})));
        let started = Instant::now();
        let run = fx.run(&input);
        assert!(started.elapsed() < Duration::from_secs(20), "{run}");
        assert_neighbour_saw_all(&run, 5);
        let letters = run.dead_letters();
        assert!(
            letters
                .iter()
                .any(|d| d["error"].as_str().unwrap().contains("queue full")),
            "{rt:?}: {run}"
        );
        assert_eq!(run.payloads("plughost.plugin.suspended").len(), 1, "{run}");
        // Bounded: the waiting events (at most the queue's 16) and the
        // errors before the suspension, nothing like a storm.
        assert!(
            letters.len() <= 16 + 5 + 1,
            "{} letters: {run}",
            letters.len()
        );
    }
}

/// Two plugins forwarding one event to each other forever: the chain is cut
/// at the hop limit and dead-lettered, and the host goes idle.
#[test]
fn a_forward_loop_is_cut_at_the_hop_limit() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        for (me, other) in [("left", "right"), ("right", "left")] {
            let src = match rt {
                Runtime::Lua => format!(
                    "function on_event(e) return outcome.forward('to.{other}', e.payload) end"
                ),
                _ => format!(
                    "fn on_event(e) {{ return outcome::forward(\"to.{other}\", e.payload); }}"
                ),
            };
            fx.plugin(rt, me, &format!("subscriptions: [to.{me}]\n"), &src);
        }
        let mut input = inputs(3);
        input.push(ev("to.left", json!({"ball": true})));
        let run = fx.run(&input);
        run.expect_code(0);
        assert_neighbour_saw_all(&run, 3);
        let letters = run.dead_letters();
        assert_eq!(letters.len(), 1, "{rt:?}: {run}");
        assert!(
            letters[0]["error"]
                .as_str()
                .unwrap()
                .contains("too many hops"),
            "{run}"
        );
    }
}

/// Publishing on the host's own topics is refused, and the error is the
/// plugin's, not the host's.
#[test]
fn host_topics_cannot_be_spoofed() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        let src = match rt {
            Runtime::Lua => {
                "function on_event(e) bus.publish('plughost.plugin.started', { plugin = 'neighbour' }) end"
            }
            _ => {
                "fn on_event(e) { bus::publish(\"plughost.plugin.started\", #{ plugin: \"neighbour\" }); }"
            }
        };
        fx.plugin(rt, "attacker", "subscriptions: [in]\n", src);
        let run = fx.run(&inputs(2));
        run.expect_code(0);
        assert_neighbour_saw_all(&run, 2);
        let started: Vec<Value> = run
            .on("plughost.plugin.started")
            .into_iter()
            .filter(|e| e["source"] != "host")
            .collect();
        assert!(started.is_empty(), "{run}");
        let letters = run.dead_letters();
        assert_eq!(letters.len(), 2, "{run}");
        assert!(
            letters[0]["error"].as_str().unwrap().contains("reserved"),
            "{run}"
        );
    }
}

/// A plugin asking for a retry of every event forever: each is
/// dead-lettered after `retry.max_attempts`, and the host goes idle.
#[test]
fn endless_retries_end_in_dead_letters() {
    for rt in Runtime::SCRIPTS {
        let fx = Fixture::new();
        neighbour(&fx);
        let src = match rt {
            Runtime::Lua => "function on_event(e) return outcome.retry(1) end",
            _ => "fn on_event(e) { return outcome::retry(1); }",
        };
        fx.plugin(
            rt,
            "attacker",
            "subscriptions: [in]\nretry: {max_attempts: 5}\n",
            src,
        );
        let run = fx.run(&inputs(4));
        run.expect_code(0);
        assert_neighbour_saw_all(&run, 4);
        let letters = run.dead_letters();
        assert_eq!(letters.len(), 4, "{run}");
        assert!(letters.iter().all(|d| d["attempts"] == 5), "{run}");
    }
}

/// A storm of events into a plugin with a small dropping queue: drops are
/// counted, the neighbour (with the default queue) handles every event.
#[test]
fn a_storm_into_a_small_dropping_queue_loses_nothing_silently() {
    let fx = Fixture::new();
    neighbour(&fx);
    fx.plugin(
        Runtime::Lua,
        "slow",
        "subscriptions: [in]\nlimits: {queue: 4, overflow: drop_oldest}\n",
        "function on_event(e) local t = os.clock() while os.clock() - t < 0.002 do end end",
    );
    let run = fx.run(&inputs(500));
    run.expect_code(0);
    assert_neighbour_saw_all(&run, 500);
    assert!(
        run.stderr.contains("dropped by the overflow policy"),
        "drops are logged: {run}"
    );
}

/// CPU time (user + system) of process `pid` so far, from `/proc`.
#[cfg(target_os = "linux")]
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // The fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// A suspended plugin whose trial is due waits for the next event: the
/// host sits idle, it does not spin.
#[cfg(target_os = "linux")]
#[test]
fn a_suspended_plugin_with_nothing_to_try_does_not_spin() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "flaky",
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 1, resume_after_ms: 1}\n",
        "function on_event(e) error('always') end",
    );
    let dir = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&["run", "--plugins", &dir, "--input", "-", "--tap", ">"]);
    live.send(&ev("in", json!({})));
    live.wait_for("the suspension", |e| {
        e["topic"] == "plughost.plugin.suspended"
    });
    // The trial is due after 1 ms; the queue is empty from now on.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu_time(live.pid());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time(live.pid()) - before;
    live.signal("TERM");
    let run = live.finish();
    assert!(
        used < Duration::from_millis(300),
        "{used:?} of CPU in 1 s idle\n{run}"
    );
}
