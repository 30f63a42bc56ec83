//! SPEC §2 dependencies, §3 delivery order and §8 shutdown: plugins start in
//! dependency order, a bad plugin never stops the others, full queues follow
//! their overflow policy, a slow plugin delays only itself, and a signalled
//! host drains its queues and runs the `shutdown` hooks.

// Declared here rather than in `main.rs`; `cli` uses it too.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::behaviours;
use crate::live::Live;
use crate::support::{Fixture, Run, Runtime, Src, ev};

/// Topics of the tapped events starting with `prefix`, in tap order.
fn topics(run: &Run, prefix: &str) -> Vec<String> {
    run.events()
        .iter()
        .filter_map(|e| e["topic"].as_str())
        .filter(|t| t.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// Names in the payloads of `plughost.plugin.*` events on `topic`.
fn plugins_on(run: &Run, topic: &str) -> Vec<String> {
    run.payloads(topic)
        .iter()
        .map(|p| p["plugin"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `error` of the `plughost.plugin.failed` event for `plugin`.
fn failure_of(run: &Run, plugin: &str) -> String {
    let failed = run.payloads("plughost.plugin.failed");
    let payload = failed
        .iter()
        .find(|p| p["plugin"] == plugin)
        .unwrap_or_else(|| panic!("no plughost.plugin.failed for `{plugin}`\n{run}"));
    payload["error"]
        .as_str()
        .unwrap_or_else(|| panic!("failure of `{plugin}` has no error text\n{run}"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// Dependency order

/// Announces its start on `started.<config.name>`.
const ANNOUNCE: Src = Src {
    lua: r#"
function init()
  bus.publish("started." .. config.name, {})
end
"#,
    rhai: r#"
fn init() {
  bus::publish("started." + config.name, #{});
}
"#,
    native: Some("announce"),
};

fn dependencies_start_first(rt: Runtime) {
    let fx = Fixture::new();
    // Discovery order is alphabetical (app, base, mid); start order must not be.
    fx.plugin(
        rt,
        "app",
        "config: {name: app}\ndependencies:\n  - mid: \">=1.0\"\n  - base\n",
        ANNOUNCE.get(rt),
    );
    fx.plugin(rt, "base", "config: {name: base}\n", ANNOUNCE.get(rt));
    fx.plugin(
        rt,
        "mid",
        "config: {name: mid}\ndependencies: [base]\n",
        ANNOUNCE.get(rt),
    );
    let run = fx.run(&[]);
    run.expect_code(0);
    assert_eq!(
        topics(&run, "started."),
        ["started.base", "started.mid", "started.app"],
        "{run}"
    );
    assert_eq!(
        plugins_on(&run, "plughost.plugin.started"),
        ["base", "mid", "app"],
        "{run}"
    );
}

// ---------------------------------------------------------------------------
// One bad plugin never stops the others

/// A healthy plugin: answers every `in` event on `handled`.
const GOOD: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("handled", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("handled", #{ n: e.payload.n });
}
"#,
    native: Some("good"),
};

/// A script that does not compile; the error is on line 3.
pub(crate) const SYNTAX_ERROR: Src = Src {
    lua: r#"
function init()
  if then end
end
"#,
    rhai: r#"
fn init() {
  let = 1;
}
"#,
    native: None,
};

/// A script whose `init` raises; the error is on line 4.
const INIT_ERROR: Src = Src {
    lua: r#"
function init()
  local t = nil
  t.field = 1
end
function on_event(e) bus.publish("handled.by.broken", {}) end
"#,
    rhai: r#"
fn init() {
  let t = ();
  t.field = 1;
}
fn on_event(e) { bus::publish("handled.by.broken", #{}); }
"#,
    native: Some("init_error"),
};

/// Asserts the healthy plugin `good` started and handled both inputs, and
/// that the run exited 1.
fn assert_good_unaffected(run: &Run) {
    run.expect_code(1);
    assert!(
        plugins_on(run, "plughost.plugin.started").contains(&"good".to_owned()),
        "{run}"
    );
    assert_eq!(
        run.payloads("handled"),
        [json!({"n": 1}), json!({"n": 2})],
        "{run}"
    );
}

fn good_fixture(rt: Runtime) -> Fixture {
    let fx = Fixture::new();
    fx.plugin(rt, "good", "subscriptions: [in]\n", GOOD.get(rt));
    fx
}

fn two_inputs() -> [Value; 2] {
    [ev("in", json!({"n": 1})), ev("in", json!({"n": 2}))]
}

fn a_syntax_error_stops_only_that_plugin(rt: Runtime) {
    let fx = good_fixture(rt);
    fx.plugin(rt, "broken", "subscriptions: [in]\n", SYNTAX_ERROR.get(rt));
    let run = fx.run(&two_inputs());
    assert_good_unaffected(&run);
    let error = failure_of(&run, "broken");
    let at = format!("broken/{}:3", rt.entry());
    assert!(error.contains(&at), "error should name {at}: {error}");
    assert!(
        !plugins_on(&run, "plughost.plugin.started").contains(&"broken".to_owned()),
        "{run}"
    );
}

fn an_init_error_stops_only_that_plugin_and_its_dependents(rt: Runtime) {
    let fx = good_fixture(rt);
    fx.plugin(rt, "broken", "subscriptions: [in]\n", INIT_ERROR.get(rt));
    fx.plugin(
        rt,
        "child",
        "subscriptions: [in]\ndependencies: [broken]\n",
        GOOD.get(rt),
    );
    let run = fx.run(&two_inputs());
    assert_good_unaffected(&run);
    let error = failure_of(&run, "broken");
    let at = match rt {
        Runtime::Lua | Runtime::Rhai => format!("broken/{}:4", rt.entry()),
        // `init` returned an `Err`: its message, without a position.
        Runtime::Native => "init refused to start".to_owned(),
    };
    assert!(error.contains(&at), "error should name {at}: {error}");
    assert!(error.contains("init"), "{error}");
    // The dependent did not start, and says why.
    let started = plugins_on(&run, "plughost.plugin.started");
    assert!(!started.contains(&"broken".to_owned()), "{run}");
    assert!(!started.contains(&"child".to_owned()), "{run}");
    let why = failure_of(&run, "child");
    assert!(why.contains("`broken`"), "{why}");
    // Only `good` answered; the broken plugin never handled an event.
    assert!(run.on("handled.by.broken").is_empty(), "{run}");
}

#[test]
fn a_bad_manifest_stops_only_that_plugin() {
    let fx = good_fixture(Runtime::Lua);
    fx.file(
        "broken/plugin.yaml",
        "name: broken\nversion: 1.0.0\nsubscritions: [in]\n",
    );
    fx.file("broken/main.lua", "function on_event(e) end\n");
    let run = fx.run(&two_inputs());
    assert_good_unaffected(&run);
    let error = failure_of(&run, "broken");
    assert!(
        error.contains("broken/plugin.yaml:3:1: unknown key `subscritions`"),
        "{error}"
    );
    assert!(run.stderr.contains("broken/plugin.yaml:3:1"), "{run}");
}

#[test]
fn a_missing_dependency_stops_only_that_plugin() {
    let fx = good_fixture(Runtime::Lua);
    fx.plugin(
        Runtime::Lua,
        "orphan",
        "subscriptions: [in]\ndependencies: [ghost]\n",
        "function on_event(e) bus.publish('handled.by.orphan', {}) end\n",
    );
    let run = fx.run(&two_inputs());
    assert_good_unaffected(&run);
    let error = failure_of(&run, "orphan");
    // Positioned at the dependency, naming both plugins.
    assert!(error.contains("orphan/plugin.yaml:4:16: "), "{error}");
    assert!(
        error.contains("`orphan`") && error.contains("`ghost`"),
        "{error}"
    );
    assert!(run.on("handled.by.orphan").is_empty(), "{run}");
}

// ---------------------------------------------------------------------------
// Overflow

/// Busy for ~30 ms of CPU per event (well under its 1 s budget), then says
/// which event it handled.
const SLOW: Src = Src {
    lua: r#"
function on_event(e)
  local t = os.clock()
  while os.clock() - t < 0.03 do end
  bus.publish("handled", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  let t = timestamp();
  while t.elapsed < 0.03 {}
  bus::publish("handled", #{ n: e.payload.n });
}
"#,
    native: Some("slow"),
};

const SENT: usize = 8;

fn numbered(count: usize) -> Vec<Value> {
    (1..=count).map(|n| ev("in", json!({"n": n}))).collect()
}

/// Runs SLOW with a one-event queue and `overflow`; returns the run, the
/// numbers handled and the numbers dropped (from the log, by event id).
fn overflow_run(rt: Runtime, overflow: &str) -> (Run, Vec<u64>, Vec<u64>) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "slow",
        &format!(
            "subscriptions: [in]\nlimits: {{queue: 1, overflow: {overflow}, event_timeout_ms: 1000}}\n"
        ),
        SLOW.get(rt),
    );
    let run = fx.run(&numbered(SENT));
    run.expect_code(0);
    let handled: Vec<u64> = run
        .payloads("handled")
        .iter()
        .map(|p| p["n"].as_u64().unwrap())
        .collect();
    let drop_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("dropped"))
        .collect();
    let inputs = run.on("in");
    assert_eq!(inputs.len(), SENT, "{run}");
    let dropped: Vec<u64> = inputs
        .iter()
        .filter(|e| {
            let id = e["id"].as_str().unwrap();
            drop_lines.iter().any(|l| l.contains(id))
        })
        .map(|e| e["payload"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(
        drop_lines.len(),
        dropped.len(),
        "every drop is logged once with the id of an input event\n{run}"
    );
    (run, handled, dropped)
}

/// Every event was either handled or dropped, never both, never neither.
fn assert_accounted(run: &Run, handled: &[u64], dropped: &[u64]) {
    assert_eq!(handled.len() + dropped.len(), SENT, "{run}");
    let all: BTreeSet<u64> = handled.iter().chain(dropped).copied().collect();
    assert_eq!(all, (1..=SENT as u64).collect(), "{run}");
    assert!(
        !dropped.is_empty(),
        "a one-event queue should overflow\n{run}"
    );
}

fn drop_newest_accounts_for_every_event(rt: Runtime) {
    let (run, handled, dropped) = overflow_run(rt, "drop_newest");
    assert_accounted(&run, &handled, &dropped);
    // The first event is queued before the queue is full: never dropped.
    assert_eq!(handled.first(), Some(&1), "{run}");
}

fn drop_oldest_accounts_for_every_event(rt: Runtime) {
    let (run, handled, dropped) = overflow_run(rt, "drop_oldest");
    assert_accounted(&run, &handled, &dropped);
    // Nothing arrives after the last event to push it out.
    assert_eq!(handled.last(), Some(&(SENT as u64)), "{run}");
}

fn block_handles_every_event(rt: Runtime) {
    let (run, handled, dropped) = overflow_run(rt, "block");
    assert!(dropped.is_empty(), "{run}");
    assert_eq!(handled, (1..=SENT as u64).collect::<Vec<_>>(), "{run}");
}

// ---------------------------------------------------------------------------
// A slow plugin delays only itself

/// Spends `config.busy` seconds of CPU per event, then publishes on
/// `out.<config.name>`.
const WORKER: Src = Src {
    lua: r#"
function on_event(e)
  local t = os.clock()
  while os.clock() - t < config.busy do end
  bus.publish("out." .. config.name, { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  let t = timestamp();
  while t.elapsed < config.busy {}
  bus::publish("out." + config.name, #{ n: e.payload.n });
}
"#,
    native: Some("worker"),
};

fn a_slow_plugin_never_blocks_the_others(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "slow",
        "subscriptions: [in]\nconfig: {name: slow, busy: 0.03}\nlimits: {queue: 1000}\n",
        WORKER.get(rt),
    );
    fx.plugin(
        rt,
        "fast",
        "subscriptions: [in]\nconfig: {name: fast, busy: 0}\n",
        WORKER.get(rt),
    );
    let run = fx.run(&numbered(10));
    run.expect_code(0);
    let order = topics(&run, "out.");
    assert_eq!(order.iter().filter(|t| *t == "out.fast").count(), 10);
    assert_eq!(order.iter().filter(|t| *t == "out.slow").count(), 10);
    let last_fast = order.iter().rposition(|t| t == "out.fast").unwrap();
    let last_slow = order.iter().rposition(|t| t == "out.slow").unwrap();
    assert!(
        last_fast < last_slow,
        "every output of the fast plugin should come before the slow one's last: {order:?}"
    );
}

// ---------------------------------------------------------------------------
// Publish order

fn each_plugin_sees_events_in_publish_order(rt: Runtime) {
    const COUNT: usize = 500;
    let fx = Fixture::new();
    for name in ["p1", "p2"] {
        fx.plugin(
            rt,
            name,
            &format!("subscriptions: [in]\nconfig: {{name: {name}, busy: 0}}\n"),
            WORKER.get(rt),
        );
    }
    let run = fx.run(&numbered(COUNT));
    run.expect_code(0);
    let expected: Vec<u64> = (1..=COUNT as u64).collect();
    for name in ["p1", "p2"] {
        let seen: Vec<u64> = run
            .payloads(&format!("out.{name}"))
            .iter()
            .map(|p| p["n"].as_u64().unwrap())
            .collect();
        assert_eq!(seen, expected, "{name} saw events out of order");
    }
}

// ---------------------------------------------------------------------------
// Shutdown

/// SLOW, with a `shutdown` hook that leaves a log line.
const SLOW_WITH_SHUTDOWN: Src = Src {
    lua: r#"
function on_event(e)
  local t = os.clock()
  while os.clock() - t < 0.05 do end
  bus.publish("handled", { n = e.payload.n })
end
function shutdown()
  log.info("shutdown hook ran")
end
"#,
    rhai: r#"
fn on_event(e) {
  let t = timestamp();
  while t.elapsed < 0.05 {}
  bus::publish("handled", #{ n: e.payload.n });
}
fn shutdown() {
  log::info("shutdown hook ran");
}
"#,
    native: Some("slow_with_shutdown"),
};

fn live_run(fx: &Fixture, extra: &[&str]) -> Live {
    let dir = fx.path().to_str().unwrap();
    let mut args = vec!["run", "--plugins", dir, "--input", "-", "--tap", ">"];
    args.extend_from_slice(extra);
    Live::spawn(&args)
}

fn sigterm_drains_queues_and_runs_shutdown_hooks(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "slow",
        "subscriptions: [in]\n",
        SLOW_WITH_SHUTDOWN.get(rt),
    );
    let mut host = live_run(&fx, &[]);
    for e in numbered(5) {
        host.send(&e);
    }
    // Running, with the other four still queued (50 ms each): signal now,
    // stdin left open.
    host.wait_for("the first event handled", |e| e["topic"] == "handled");
    host.signal("TERM");
    let run = host.finish();
    run.expect_code(0);
    let handled: Vec<Value> = run.payloads("handled");
    assert_eq!(
        handled,
        (1..=5).map(|n| json!({"n": n})).collect::<Vec<_>>(),
        "events queued at the signal are still handled\n{run}"
    );
    assert!(run.stderr.contains("shutdown hook ran"), "{run}");
    assert!(!run.stderr.contains("undelivered"), "{run}");
    assert_eq!(
        plugins_on(&run, "plughost.plugin.stopped"),
        ["slow"],
        "{run}"
    );
}

/// Keeps every event in retry for as long as it is allowed to.
const RETRY_FOREVER: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("attempt", {})
  return outcome.retry(1000)
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("attempt", #{});
  return outcome::retry(1000);
}
"#,
    native: Some("retry_forever_slowly"),
};

fn events_left_at_the_drain_deadline_are_reported(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "stuck",
        "subscriptions: [in]\nretry: {max_attempts: 1000}\n",
        RETRY_FOREVER.get(rt),
    );
    let mut host = live_run(&fx, &["--drain-timeout", "200ms"]);
    host.send(&ev("in", json!({})));
    host.wait_for("the first attempt", |e| e["topic"] == "attempt");
    let id = host.events()[..]
        .iter()
        .find(|e| e["topic"] == "in")
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .expect("the input event is tapped before the plugin's answer");
    host.signal("TERM");
    let run = host.finish();
    run.expect_code(1);
    assert!(
        run.stderr.contains(&id),
        "the undelivered event {id} should be named\n{run}"
    );
    assert!(run.stderr.contains("undelivered"), "{run}");
}

// ---------------------------------------------------------------------------
// Timers

const TICKER: Src = Src {
    lua: r#"
function init()
  state.ticks = 0
  timer.every(10, function()
    state.ticks = state.ticks + 1
    bus.publish("tick", { n = state.ticks })
  end)
end
"#,
    rhai: r#"
fn init() {
  state.ticks = 0;
  timer::every(10, || {
    state.ticks += 1;
    bus::publish("tick", #{ n: state.ticks });
  });
}
"#,
    native: None,
};

fn timers_do_not_keep_an_idle_host_alive(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "ticker", "", TICKER.get(rt));
    let mut host = live_run(&fx, &["--exit-when-idle"]);
    host.close_stdin();
    // `finish` fails the test if the host is still running after its limit.
    let run = host.finish();
    run.expect_code(0);
    assert_eq!(
        plugins_on(&run, "plughost.plugin.stopped"),
        ["ticker"],
        "{run}"
    );
}

// `[Native]`: also run against the native fixture crate. Native plugins
// have no syntax errors at load time and no timers.
behaviours!(
    dependencies_start_first[Native],
    a_syntax_error_stops_only_that_plugin,
    an_init_error_stops_only_that_plugin_and_its_dependents[Native],
    drop_newest_accounts_for_every_event[Native],
    drop_oldest_accounts_for_every_event[Native],
    block_handles_every_event[Native],
    a_slow_plugin_never_blocks_the_others[Native],
    each_plugin_sees_events_in_publish_order[Native],
    sigterm_drains_queues_and_runs_shutdown_hooks[Native],
    events_left_at_the_drain_deadline_are_reported[Native],
    timers_do_not_keep_an_idle_host_alive,
);
