//! `timer`: timers that fire, repeat and are cancelled, and errors inside
//! them (for native plugins, `Host::after`/`every` and `on_timer`); and the hooks: `init` first, `shutdown` at exit, `on_event` once
//! at a time in publish order.

use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev, native_at};

use super::{at, line_of, log_line};

// ---------------------------------------------------------------- timer

const TIMERS: Src = Src {
    lua: r#"
function on_event(e)
  state.deliveries = (state.deliveries or 0) + 1
  if state.deliveries == 1 then
    state.after, state.ticks = 0, 0
    timer.after(10, function()
      state.after = state.after + 1
      bus.publish("after", {})
    end)
    local ticker
    ticker = timer.every(10, function()
      state.ticks = state.ticks + 1
      bus.publish("tick", { n = state.ticks })
      if state.ticks == 3 then timer.cancel(ticker) end
    end)
    local never = timer.every(5, function() bus.publish("never", {}) end)
    timer.cancel(never)
    -- A pending retry keeps the host running while the timers fire.
    return outcome.retry(300)
  end
  bus.publish("done", { after = state.after, ticks = state.ticks })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.deliveries = (state.deliveries ?? 0) + 1;
  if state.deliveries == 1 {
    state.after = 0;
    state.ticks = 0;
    timer::after(10, || {
      state.after += 1;
      bus::publish("after", #{});
    });
    let ticker = ();
    ticker = timer::every(10, || {
      state.ticks += 1;
      bus::publish("tick", #{ n: state.ticks });
      if state.ticks == 3 { timer::cancel(ticker); }
    });
    let never = timer::every(5, || bus::publish("never", #{}));
    timer::cancel(never);
    // A pending retry keeps the host running while the timers fire.
    return outcome::retry(300);
  }
  bus::publish("done", #{ after: state.after, ticks: state.ticks });
}
"#,
    native: Some("timers"),
};

fn timers_fire_repeat_and_cancel(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", TIMERS.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    assert_eq!(run.on("after").len(), 1, "timer.after fires once\n{run}");
    assert_eq!(
        run.payloads("tick"),
        vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})],
        "timer.every repeats until cancelled\n{run}"
    );
    assert!(
        run.on("never").is_empty(),
        "a cancelled timer never fires\n{run}"
    );
    assert_eq!(run.only("done"), json!({"after": 1, "ticks": 3}));
    assert!(run.dead_letters().is_empty(), "{run}");
}

const TIMER_ERROR: Src = Src {
    lua: r#"
function on_event(e)
  state.deliveries = (state.deliveries or 0) + 1
  if state.deliveries == 1 then
    timer.after(5, function()
      error("boom in a timer") -- @timer-error
    end)
    timer.after(30, function() bus.publish("later", {}) end)
    return outcome.retry(200)
  end
  bus.publish("done", {})
end
"#,
    rhai: r#"
fn on_event(e) {
  state.deliveries = (state.deliveries ?? 0) + 1;
  if state.deliveries == 1 {
    timer::after(5, || {
      throw "boom in a timer"; // @timer-error
    });
    timer::after(30, || bus::publish("later", #{}));
    return outcome::retry(200);
  }
  bus::publish("done", #{});
}
"#,
    native: Some("timer_error"),
};

fn a_timer_error_is_logged_and_the_plugin_goes_on(rt: Runtime) {
    let fx = Fixture::new();
    let src = TIMER_ERROR.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    let line = log_line(&run, "boom in a timer");
    let pos = match rt {
        Runtime::Lua | Runtime::Rhai => at("p", rt.entry(), line_of(src, "timer-error")),
        // The `panic!` in the fixture crate, with its column.
        Runtime::Native => format!("{}:", native_at("timer-error")),
    };
    assert!(line.contains(&pos), "should name {pos}: {line}");
    assert!(line.contains("ERROR"), "{line}");
    if rt == Runtime::Native {
        // A native `on_timer` may also fail by returning an `Err`, which has
        // no source position: the library is named instead.
        let returned = log_line(&run, "an error returned by a timer");
        let library = format!("/p/{}", rt.entry());
        assert!(returned.contains("ERROR"), "{returned}");
        assert!(
            returned.contains(&format!(
                "{library}: an error returned by a timer (in timer)"
            )),
            "should name {library}: {returned}"
        );
    }
    assert_eq!(run.on("later").len(), 1, "{run}");
    assert_eq!(run.on("done").len(), 1, "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

// ---------------------------------------------------------------- hooks

const LIFECYCLE: Src = Src {
    lua: r#"
function init()
  state.init_ran = true
  bus.publish("from.init", {})
end

function on_event(e)
  state.handled = (state.handled or 0) + 1
  bus.publish("seen", { init_ran = state.init_ran == true })
end

function shutdown()
  log.info("shutdown-marker")
  bus.publish("from.shutdown", { handled = state.handled })
end
"#,
    rhai: r#"
fn init() {
  state.init_ran = true;
  bus::publish("from.init", #{});
}

fn on_event(e) {
  state.handled = (state.handled ?? 0) + 1;
  bus::publish("seen", #{ init_ran: state.init_ran == true });
}

fn shutdown() {
  log::info("shutdown-marker");
  bus::publish("from.shutdown", #{ handled: state.handled });
}
"#,
    native: Some("lifecycle"),
};

fn init_runs_first_and_shutdown_runs_at_exit(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", LIFECYCLE.get(rt));
    let run = fx.run(&[ev("in", json!({})), ev("in", json!({}))]);
    run.expect_code(0);
    let topics: Vec<String> = run
        .events()
        .iter()
        .map(|e| e["topic"].as_str().unwrap().to_owned())
        .collect();
    let first = |t: &str| {
        topics
            .iter()
            .position(|x| x == t)
            .unwrap_or_else(|| panic!("no {t}\n{run}"))
    };
    assert!(first("from.init") < first("in"), "{topics:?}");
    assert_eq!(
        run.payloads("seen"),
        vec![json!({"init_ran": true}); 2],
        "{run}"
    );
    assert_eq!(run.only("from.shutdown"), json!({"handled": 2}));
    assert!(first("from.shutdown") > topics.iter().rposition(|t| t == "seen").unwrap());
    log_line(&run, "shutdown-marker");
}

const SEQUENCE: Src = Src {
    lua: r#"
function on_event(e)
  if state.busy then error("on_event re-entered") end
  state.busy = true
  bus.publish("seq", { n = e.payload.n })
  state.busy = false
end
"#,
    rhai: r#"
fn on_event(e) {
  if state.busy == true { throw "on_event re-entered"; }
  state.busy = true;
  bus::publish("seq", #{ n: e.payload.n });
  state.busy = false;
}
"#,
    native: Some("sequence"),
};

fn events_are_handled_one_at_a_time_in_publish_order(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", SEQUENCE.get(rt));
    let input: Vec<Value> = (0..200).map(|n| ev("in", json!({"n": n}))).collect();
    let run = fx.run(&input);
    run.expect_code(0);
    let got: Vec<i64> = run
        .payloads("seq")
        .iter()
        .map(|p| p["n"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..200).collect();
    assert_eq!(got, want, "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

// `[Native]`: also run against the native fixture crate.
behaviours!(
    timers_fire_repeat_and_cancel[Native],
    a_timer_error_is_logged_and_the_plugin_goes_on[Native],
    init_runs_first_and_shutdown_runs_at_exit[Native],
    events_are_handled_one_at_a_time_in_publish_order[Native],
);
