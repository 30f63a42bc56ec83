//! `bus.publish`: the id it returns, correlation ids along a chain of
//! plugins, and the publishes it refuses, as errors a script can catch.

use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev};

use super::{at, line_of, names_at};

// ---------------------------------------------------------------- bus

const PUBLISH_ID: Src = Src {
    lua: r#"
function on_event(e)
  local first = bus.publish("out", { n = 1 })
  local second = bus.publish("out", { n = 2 })
  bus.publish("returned", { first = first, second = second })
end
"#,
    rhai: r#"
fn on_event(e) {
  let first = bus::publish("out", #{ n: 1 });
  let second = bus::publish("out", #{ n: 2 });
  bus::publish("returned", #{ first: first, second: second });
}
"#,
    native: Some("publish_id"),
};

fn publish_returns_the_new_events_id(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", PUBLISH_ID.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let out = run.on("out");
    assert_eq!(out.len(), 2, "{run}");
    let returned = run.only("returned");
    assert!(returned["first"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(returned["first"], out[0]["id"], "{run}");
    assert_eq!(returned["second"], out[1]["id"], "{run}");
    assert_ne!(returned["first"], returned["second"]);
    assert_eq!(out[0]["source"], "p");
}

const CHAIN_FIRST: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("mid", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("mid", #{ n: e.payload.n });
}
"#,
    native: Some("chain_first"),
};

const CHAIN_SECOND: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("end", { n = e.payload.n, saw_source = e.source, saw_corr = e.correlation_id })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("end", #{ n: e.payload.n, saw_source: e.source, saw_corr: e.correlation_id });
}
"#,
    native: Some("chain_second"),
};

fn correlation_ids_follow_a_chain_of_plugins(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "a", "subscriptions: [in]\n", CHAIN_FIRST.get(rt));
    fx.plugin(rt, "b", "subscriptions: [mid]\n", CHAIN_SECOND.get(rt));
    let run = fx.run(&[
        ev("in", json!({"n": 1})),
        json!({"topic": "in", "payload": {"n": 2}, "correlation_id": "given-corr"}),
    ]);
    run.expect_code(0);
    let by_n = |topic: &str, n: i64| -> Value {
        run.on(topic)
            .into_iter()
            .find(|e| e["payload"]["n"] == n)
            .unwrap_or_else(|| panic!("no {topic} with n = {n}\n{run}"))
    };

    // Without a correlation id, the chain carries the input's id.
    let input = by_n("in", 1);
    assert_eq!(input["correlation_id"], Value::Null);
    let (mid, end) = (by_n("mid", 1), by_n("end", 1));
    assert_eq!(mid["correlation_id"], input["id"], "{run}");
    assert_eq!(end["correlation_id"], input["id"], "{run}");
    assert_eq!(end["payload"]["saw_source"], "a");
    assert_eq!(end["payload"]["saw_corr"], input["id"]);
    assert_eq!(end["source"], "b");

    // With one, the chain keeps it.
    let (mid, end) = (by_n("mid", 2), by_n("end", 2));
    assert_eq!(mid["correlation_id"], "given-corr", "{run}");
    assert_eq!(end["correlation_id"], "given-corr", "{run}");
}

const PUBLISH_REFUSED: Src = Src {
    lua: r#"
local function try(topic)
  local ok, err = pcall(function()
    return bus.publish(topic, {}) -- @publish
  end)
  if ok then return "ok" end
  return { kind = type(err), text = tostring(err) }
end

function on_event(e)
  local report = {
    elsewhere = try("elsewhere"),
    star = try("out.*"),
    tail = try("out.>"),
    reserved = try("plughost.plugin.started"),
    allowed = try("out.fine"),
  }
  -- Caught straight by pcall, xpcall or a coroutine, the error is the same
  -- kind of string, naming the line of the call.
  local _, direct = pcall(bus.publish, "out.*", {}) -- @direct
  report.direct = direct
  local _, handled = xpcall(function()
    bus.publish("out.*", {}) -- @xpcall
  end, function(err) return "handled: " .. err end)
  report.xpcall = handled
  local co = coroutine.create(function()
    bus.publish("out.*", {}) -- @coroutine
  end)
  local _, resumed = coroutine.resume(co)
  report.coroutine = resumed
  local _, bad_arg = pcall(function()
    bus.publish({}, {}) -- @bad-arg
  end)
  report.bad_arg = bad_arg
  bus.publish("out.report", report)
end
"#,
    rhai: r#"
fn attempt(topic) {
  try {
    bus::publish(topic, #{}); // @publish
    return "ok";
  } catch (err) {
    return #{ kind: type_of(err), text: `${err}` };
  }
}

fn on_event(e) {
  let report = #{
    elsewhere: attempt("elsewhere"),
    star: attempt("out.*"),
    tail: attempt("out.>"),
    reserved: attempt("plughost.plugin.started"),
    allowed: attempt("out.fine"),
  };
  // Caught in the hook itself, by a handler that adds to it, or around a
  // closure, the error is the same kind of string.
  try { bus::publish("out.*", #{}); } catch (err) { report.direct = err; } // @direct
  try {
    bus::publish("out.*", #{}); // @xpcall
  } catch (err) {
    report.xpcall = "handled: " + err;
  }
  let inner = || bus::publish("out.*", #{}); // @coroutine
  try { inner.call(); } catch (err) { report.coroutine = err; }
  // A call that matches no signature is Rhai's own error, an object map.
  try {
    bus::publish(#{}, #{}); // @bad-arg
  } catch (err) {
    report.bad_arg = if type_of(err) == "map" { err.message } else { err };
  }
  bus::publish("out.report", report);
}
"#,
    native: Some("publish_refused"),
};

fn refused_publishes_raise_catchable_errors_at_the_line(rt: Runtime) {
    let fx = Fixture::new();
    let src = PUBLISH_REFUSED.get(rt);
    fx.plugin(
        rt,
        "strict",
        "subscriptions: [in]\npublications: [out.>]\n",
        src,
    );
    fx.plugin(rt, "open", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    let reports = run.on("out.report");
    assert_eq!(
        reports.len(),
        2,
        "both scripts went on after the errors\n{run}"
    );
    // Where the caught error says it happened: Lua's name the calling line
    // (marked `marker`); Rhai's are the bare message (`try`/`catch` hands
    // over the thrown value), and so is the `Err` of a native `host.publish`.
    let positioned = |plugin: &str, text: &str, marker: &str| match rt {
        Runtime::Lua => names_at(
            rt,
            text,
            &at(plugin, rt.entry(), line_of(src, marker)),
            ": ",
        ),
        Runtime::Rhai => !text.contains(rt.entry()),
        Runtime::Native => !text.contains(".rs:"),
    };
    for report in &reports {
        let plugin = report["source"].as_str().unwrap();
        let r = &report["payload"];
        let expect_error = |key: &str, phrase: &str| {
            let e = &r[key];
            assert_eq!(
                e["kind"], "string",
                "{plugin}: {key}: the error is a string: {e}"
            );
            let text = e["text"].as_str().unwrap();
            assert!(
                positioned(plugin, text, "publish"),
                "{plugin}: {key}: the error should name the @publish line (Lua) or no position: {text}"
            );
            assert!(
                !text.contains("traceback"),
                "{plugin}: {key}: one line: {text}"
            );
            assert!(text.contains(phrase), "{plugin}: {key}: {text}");
        };
        expect_error("star", "wildcard");
        expect_error("tail", "wildcard");
        expect_error("reserved", "reserved");
        assert_eq!(r["allowed"], "ok", "{plugin}");
        // Caught by each language's other means, and a call with a bad
        // argument: scripts only (a native plugin gets an `Err` and Rust's
        // types).
        if rt != Runtime::Native {
            let bad_arg = match rt {
                Runtime::Lua => "bad argument #1".to_owned(),
                _ => rt.binding("bus", "publish"),
            };
            for (key, marker, phrase) in [
                ("direct", "direct", "wildcard"),
                ("xpcall", "xpcall", "wildcard"),
                ("coroutine", "coroutine", "wildcard"),
                ("bad_arg", "bad-arg", bad_arg.as_str()),
            ] {
                let text = r[key].as_str().unwrap_or_else(|| panic!("{key}: {r}"));
                assert!(
                    positioned(plugin, text, marker),
                    "{key}: names the @{marker} line (Lua) or no position (Rhai): {text}"
                );
                assert!(text.contains(phrase), "{key}: {text}");
                assert!(!text.contains("traceback"), "{key}: one line: {text}");
            }
            assert!(r["xpcall"].as_str().unwrap().starts_with("handled: "));
        }
        if plugin == "strict" {
            expect_error("elsewhere", "outside this plugin's publications");
        } else {
            assert_eq!(r["elsewhere"], "ok", "{plugin}");
        }
    }
    // Nothing refused reached the bus.
    let elsewhere = run.on("elsewhere");
    assert_eq!(elsewhere.len(), 1, "{run}");
    assert_eq!(elsewhere[0]["source"], "open");
    assert_eq!(run.on("out.fine").len(), 2);
    assert_eq!(run.on("plughost.plugin.started").len(), 2, "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

// `[Native]`: also run against the native fixture crate.
behaviours!(
    publish_returns_the_new_events_id[Native],
    correlation_ids_follow_a_chain_of_plugins[Native],
    refused_publishes_raise_catchable_errors_at_the_line[Native],
);
