//! SPEC §4 outcomes of `on_event`, for every runtime.

use serde_json::json;

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev, native_at};

const ACK_VARIANTS: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("seen", { n = e.payload.n })
  if e.payload.n == 1 then return end
  if e.payload.n == 2 then return true end
  if e.payload.n == 3 then return "ack" end
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("seen", #{ n: e.payload.n });
  if e.payload.n == 1 { return; }
  if e.payload.n == 2 { return true; }
  if e.payload.n == 3 { return "ack"; }
}
"#,
    native: Some("ack_variants"),
};

fn nothing_true_and_ack_acknowledge(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", ACK_VARIANTS.get(rt));
    let run = fx.run(&[
        ev("in", json!({"n": 1})),
        ev("in", json!({"n": 2})),
        ev("in", json!({"n": 3})),
    ]);
    run.expect_code(0);
    assert_eq!(run.payloads("seen").len(), 3, "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

const RETRY_TWICE: Src = Src {
    lua: r#"
function on_event(e)
  state.attempts = (state.attempts or 0) + 1
  bus.publish("attempt", { n = state.attempts })
  if state.attempts < 3 then return outcome.retry(10) end
end
"#,
    rhai: r#"
fn on_event(e) {
  state.attempts = (state.attempts ?? 0) + 1;
  bus::publish("attempt", #{ n: state.attempts });
  if state.attempts < 3 { return outcome::retry(10); }
}
"#,
    native: Some("retry_twice"),
};

fn retry_redelivers_the_same_event(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nretry: {max_attempts: 3}\n",
        RETRY_TWICE.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let attempts = run.on("attempt");
    assert_eq!(attempts.len(), 3, "{run}");
    // All three deliveries were the same event: their consequences share its id.
    let ids: Vec<_> = attempts
        .iter()
        .map(|a| a["correlation_id"].clone())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

const RETRY_FOREVER: Src = Src {
    lua: r#"
function on_event(e)
  return outcome.retry(5)
end
"#,
    rhai: r#"
fn on_event(e) {
  return outcome::retry(5);
}
"#,
    native: Some("retry_forever"),
};

fn retry_past_max_attempts_dead_letters(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nretry: {max_attempts: 4}\n",
        RETRY_FOREVER.get(rt),
    );
    let run = fx.run(&[ev("in", json!({"k": 1}))]);
    run.expect_code(0);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert_eq!(dl[0]["attempts"], 4);
    assert_eq!(dl[0]["plugin"], "p");
    assert_eq!(dl[0]["event"]["payload"], json!({"k": 1}));
    assert!(
        dl[0]["error"]
            .as_str()
            .unwrap()
            .contains("retry.max_attempts = 4"),
        "{run}"
    );
}

const RETRY_BACKOFF: Src = Src {
    lua: r#"
function on_event(e)
  state.n = (state.n or 0) + 1
  bus.publish("attempt", { n = state.n, clock = os.clock() })
  if state.n < 3 then return outcome.retry() end
end
"#,
    rhai: r#"
fn on_event(e) {
  state.n = (state.n ?? 0) + 1;
  bus::publish("attempt", #{ n: state.n });
  if state.n < 3 { return outcome::retry(); }
}
"#,
    native: Some("retry_backoff"),
};

fn retry_without_delay_uses_the_manifest_backoff(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nretry: {max_attempts: 3, backoff_ms: 40}\n",
        RETRY_BACKOFF.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let times: Vec<chrono_ms::Ms> = run.on("attempt").iter().map(chrono_ms::parse).collect();
    assert_eq!(times.len(), 3, "{run}");
    // 40 ms, then doubled to 80 ms.
    assert!(times[1] - times[0] >= 40, "{times:?}");
    assert!(times[2] - times[1] >= 80, "{times:?}");
}

/// Milliseconds from an event's RFC 3339 timestamp.
mod chrono_ms {
    pub type Ms = i64;
    pub fn parse(e: &serde_json::Value) -> Ms {
        let ts = e["timestamp"].as_str().unwrap();
        let t = humantime::parse_rfc3339(ts).unwrap();
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
    }
}

const FORWARD: Src = Src {
    lua: r#"
function on_event(e)
  return outcome.forward("out", { doubled = e.payload.n * 2 })
end
"#,
    rhai: r#"
fn on_event(e) {
  return outcome::forward("out", #{ doubled: e.payload.n * 2 });
}
"#,
    native: Some("forward"),
};

fn forward_publishes_in_the_plugins_name(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", FORWARD.get(rt));
    let run = fx.run(&[ev("in", json!({"n": 21}))]);
    run.expect_code(0);
    let input = &run.on("in")[0];
    let out = &run.on("out")[0];
    assert_eq!(out["payload"], json!({"doubled": 42}));
    assert_eq!(out["source"], "p");
    assert_eq!(out["correlation_id"], input["id"]);
    assert!(run.dead_letters().is_empty(), "{run}");
}

const FORWARD_OUTSIDE: Src = Src {
    lua: r#"
function on_event(e) return outcome.forward("elsewhere", {}) end
"#,
    rhai: r#"
fn on_event(e) { return outcome::forward("elsewhere", #{}); }
"#,
    native: Some("forward_outside"),
};

fn forward_outside_publications_is_dead_lettered(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\npublications: [out.>]\n",
        FORWARD_OUTSIDE.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(
        dl[0]["error"]
            .as_str()
            .unwrap()
            .contains("outside this plugin's publications"),
        "{run}"
    );
    assert!(run.on("elsewhere").is_empty());
}

const DROP: Src = Src {
    lua: r#"
function on_event(e) return outcome.drop("not interesting") end
"#,
    rhai: r#"
fn on_event(e) { return outcome::drop("not interesting"); }
"#,
    native: Some("drop"),
};

fn drop_dead_letters_with_the_reason(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", DROP.get(rt));
    let run = fx.run(&[ev("in", json!({"x": 1}))]);
    run.expect_code(0);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert_eq!(dl[0]["error"], "not interesting");
    assert_eq!(dl[0]["attempts"], 1);
    assert_eq!(dl[0]["event"]["topic"], "in");
    assert_eq!(dl[0]["event"]["payload"], json!({"x": 1}));
}

const RAISE: Src = Src {
    lua: r#"
function on_event(e)
  state.before = (state.before or 0) + 1
  if e.payload.fail then
    local t = nil
    return t.field
  end
  bus.publish("ok", { before = state.before })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.before = (state.before ?? 0) + 1;
  if e.payload.fail {
    let t = ();
    return t.field;
  }
  bus::publish("ok", #{ before: state.before });
}
"#,
    native: Some("raise"),
};

fn a_raised_error_is_dead_lettered_and_the_plugin_goes_on(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", RAISE.get(rt));
    let run = fx.run(&[
        ev("in", json!({"fail": true})),
        ev("in", json!({"fail": false})),
    ]);
    run.expect_code(0);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    // Where it failed, followed by how it got there, as each runtime says it.
    let (at, trace) = match rt {
        Runtime::Lua => (format!("/p/{}:6", rt.entry()), "traceback"),
        Runtime::Rhai => (format!("/p/{}:6", rt.entry()), "call chain"),
        // A panic: the `panic!`'s `file:line:column` in the fixture crate,
        // then the library it is in.
        Runtime::Native => (format!("{}:", native_at("raise")), "in native library"),
    };
    assert!(error.contains(&at), "error should name {at}: {error}");
    assert!(error.contains("(in on_event)"), "{error}");
    assert!(error.contains(trace), "{error}");
    assert_eq!(dl[0]["attempts"], 1);
    // The state change made before the error was kept.
    assert_eq!(run.payloads("ok"), vec![json!({"before": 2})]);
}

const BAD_RETURN: Src = Src {
    lua: r#"
function on_event(e) return 42 end
"#,
    rhai: r#"
fn on_event(e) { return false; }
"#,
    native: None,
};

/// Lua refuses any value it does not know; Rhai, whose functions return
/// their last statement's value, acknowledges any value but `false`
/// (docs/spec.md §4).
fn an_unknown_return_value_is_an_error(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", BAD_RETURN.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(
        dl[0]["error"].as_str().unwrap().contains(match rt {
            Runtime::Lua => "on_event returned 42",
            Runtime::Rhai => "on_event returned false",
            Runtime::Native => unreachable!("not run against native plugins"),
        }),
        "{run}"
    );
}

const FAIL_ON_DEAD_LETTER: Src = Src {
    lua: r#"
function on_event(e) error("always fails") end
"#,
    rhai: r#"
fn on_event(e) { throw "always fails"; }
"#,
    native: Some("fail_on_dead_letter"),
};

fn failing_on_a_dead_letter_does_not_loop(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: ['>']\n",
        FAIL_ON_DEAD_LETTER.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    // Every other event it saw (the input, host lifecycle events) is dead-lettered
    // once; the dead letters themselves are not.
    let dl = run.dead_letters();
    assert!(dl.iter().any(|d| d["event"]["topic"] == "in"), "{run}");
    assert!(
        dl.iter()
            .all(|d| d["event"]["topic"] != "plughost.dead_letter"),
        "{run}"
    );
    let failures = run.stderr.matches("failed to handle a dead letter").count();
    assert_eq!(failures, dl.len(), "{run}");
}

// `[Native]`: also run against the native fixture crate. An unknown return
// value cannot be written in Rust (`on_event` returns an `Outcome`).
behaviours!(
    nothing_true_and_ack_acknowledge[Native],
    retry_redelivers_the_same_event[Native],
    retry_past_max_attempts_dead_letters[Native],
    retry_without_delay_uses_the_manifest_backoff[Native],
    forward_publishes_in_the_plugins_name[Native],
    forward_outside_publications_is_dead_lettered[Native],
    drop_dead_letters_with_the_reason[Native],
    a_raised_error_is_dead_lettered_and_the_plugin_goes_on[Native],
    an_unknown_return_value_is_an_error,
    failing_on_a_dead_letter_does_not_loop[Native],
);
