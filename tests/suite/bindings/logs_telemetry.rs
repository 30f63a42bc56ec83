//! `log` (and `print`): records naming the plugin and the line; and
//! `telemetry`: metrics and spans.

use serde_json::json;

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev, native_at};

use super::{at, line_of, log_line};

// ---------------------------------------------------------------- log

const LOG: Src = Src {
    lua: r#"
function on_event(e)
  log.info("info-marker") -- @info
  log.warn("warn-marker", { code = "field-value-1" }) -- @warn
  log.error("error-marker", { code = "field-value-2" }) -- @error
  log.debug("debug-marker")
  log.trace("trace-marker")
  print("print-marker", 42, true) -- @print
  bus.publish("done", {})
end
"#,
    rhai: r#"
fn on_event(e) {
  log::info("info-marker"); // @info
  log::warn("warn-marker", #{ code: "field-value-1" }); // @warn
  log::error("error-marker", #{ code: "field-value-2" }); // @error
  log::dbg("debug-marker");
  log::trace("trace-marker");
  print("print-marker\t" + 42 + "\t" + true); // @print
  bus::publish("done", #{});
}
"#,
    native: Some("log"),
};

fn log_records_name_the_plugin_and_the_line(rt: Runtime) {
    let fx = Fixture::new();
    let src = LOG.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    run.only("done");
    let records = [
        ("info-marker", "INFO", "info", None),
        ("warn-marker", "WARN", "warn", Some("field-value-1")),
        ("error-marker", "ERROR", "error", Some("field-value-2")),
        ("print-marker\t42\ttrue", "INFO", "print", None),
    ];
    // A native plugin has no `print`: what it prints goes to the host's
    // stdout, unseen by the host.
    let records = match rt {
        Runtime::Lua | Runtime::Rhai => &records[..],
        Runtime::Native => &records[..3],
    };
    for &(needle, level, marker, field) in records {
        let line = log_line(&run, needle);
        assert!(line.contains(level), "{level}: {line}");
        assert!(line.contains("plugin=p"), "{line}");
        let pos = match rt {
            Runtime::Lua | Runtime::Rhai => at("p", rt.entry(), line_of(src, marker)),
            // The Rust `file:line` of the call, in the fixture crate.
            Runtime::Native => format!("at=\"{}\"", native_at(marker)),
        };
        assert!(line.contains(&pos), "should name {pos}: {line}");
        if let Some(field) = field {
            assert!(line.contains(field), "should carry the fields: {line}");
        }
    }
    // The harness logs at `info`: debug and trace records are filtered out.
    assert!(!run.stderr.contains("debug-marker"), "{run}");
    assert!(!run.stderr.contains("trace-marker"), "{run}");
    // Nothing a script logs or prints reaches stdout: it holds tapped events only.
    assert!(!run.stdout.contains("marker"), "{run}");
    run.events();
}

// ---------------------------------------------------------------- telemetry

const TELEMETRY: Src = Src {
    lua: r#"
function on_event(e)
  telemetry.counter("requests.total", 1)
  telemetry.counter("requests.total", 2, { route = "a" })
  telemetry.gauge("queue_depth", 5.5)
  telemetry.gauge("queue_depth", 3, { shard = 1 })
  telemetry.histogram("latency-ms", 12.5)
  telemetry.histogram("latency-ms", 7, { route = "b" })

  local bad_ok, bad_err = pcall(function()
    telemetry.counter("bad name!", 1) -- @bad-metric
  end)

  local a, b = telemetry.span("work", function() return 1, "two" end)
  local c = telemetry.span("work.attrs", { step = "x" }, function() return { nested = true } end)
  local deep = telemetry.span("outer", function()
    return telemetry.span("inner", { level = 2 }, function() return "deep" end)
  end)
  local span_ok, span_err = pcall(telemetry.span, "failing", function()
    error("inside a span") -- @span-error
  end)
  local _, span_value = pcall(telemetry.span, "failing", { a = 1 }, function()
    error({ code = 7 })
  end)
  local after_ok, after = pcall(telemetry.span, "after", function() return "still works" end)

  bus.publish("report", {
    bad_ok = bad_ok,
    bad_kind = type(bad_err),
    bad_err = tostring(bad_err),
    a = a,
    b = b,
    c = c,
    deep = deep,
    span_ok = span_ok,
    span_kind = type(span_err),
    span_err = tostring(span_err),
    span_value = span_value,
    after = after,
  })
end
"#,
    rhai: r#"
fn on_event(e) {
  telemetry::counter("requests.total", 1);
  telemetry::counter("requests.total", 2, #{ route: "a" });
  telemetry::gauge("queue_depth", 5.5);
  telemetry::gauge("queue_depth", 3, #{ shard: 1 });
  telemetry::histogram("latency-ms", 12.5);
  telemetry::histogram("latency-ms", 7, #{ route: "b" });

  let bad_ok = true;
  let bad_err = ();
  try {
    telemetry::counter("bad name!", 1); // @bad-metric
  } catch (err) {
    bad_ok = false;
    bad_err = err;
  }

  // A Rhai function returns one value: two results travel as an array.
  let ab = telemetry::span("work", || [1, "two"]);
  let c = telemetry::span("work.attrs", #{ step: "x" }, || #{ nested: true });
  let deep = telemetry::span("outer", || {
    telemetry::span("inner", #{ level: 2 }, || "deep")
  });
  let span_ok = true;
  let span_err = ();
  try {
    telemetry::span("failing", || {
      throw "inside a span"; // @span-error
    });
  } catch (err) {
    span_ok = false;
    span_err = err;
  }
  let span_value = ();
  try {
    telemetry::span("failing", #{ a: 1 }, || {
      throw #{ code: 7 };
    });
  } catch (err) {
    span_value = err;
  }
  let after = telemetry::span("after", || "still works");

  bus::publish("report", #{
    bad_ok: bad_ok,
    bad_kind: type_of(bad_err),
    bad_err: `${bad_err}`,
    a: ab[0],
    b: ab[1],
    c: c,
    deep: deep,
    span_ok: span_ok,
    span_kind: type_of(span_err),
    span_err: `${span_err}`,
    span_value: span_value,
    after: after,
  });
}
"#,
    native: Some("telemetry"),
};

fn telemetry_metrics_and_spans(rt: Runtime) {
    let fx = Fixture::new();
    let src = TELEMETRY.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let r = run.only("report");
    // Spans run the function and hand back all of its results.
    assert_eq!(r["a"], 1, "{run}");
    assert_eq!(r["b"], "two");
    assert_eq!(r["c"], json!({"nested": true}));
    assert_eq!(r["deep"], "deep");

    assert_eq!(r["bad_ok"], false);
    assert_eq!(r["bad_kind"], "string", "{r}");
    let bad = r["bad_err"].as_str().unwrap();
    match rt {
        Runtime::Lua => {
            let pos = at("p", rt.entry(), line_of(src, "bad-metric"));
            assert!(
                bad.contains(&format!("{pos}: ")),
                "should name {pos}: {bad}"
            )
        }
        // A caught Rhai error is the bare message.
        Runtime::Rhai => assert!(!bad.contains(rt.entry()), "no position: {bad}"),
        // So is the `Err` of a native `host.counter`.
        Runtime::Native => assert!(!bad.contains(".rs:"), "no position: {bad}"),
    }
    assert!(bad.contains("metric name `bad name!`"), "{bad}");

    // An error inside a span reaches the caller unchanged: Lua's `error`
    // puts the position in front of a string, Rhai's `throw` does not, and
    // a native closure's `Err` is whatever it returned.
    assert_eq!(r["span_ok"], false);
    assert_eq!(r["span_kind"], "string", "{r}");
    let span_err = r["span_err"].as_str().unwrap();
    match rt {
        Runtime::Lua => {
            let pos = at("p", rt.entry(), line_of(src, "span-error"));
            assert!(
                span_err.ends_with(&format!("{pos}: inside a span")),
                "{span_err}"
            )
        }
        Runtime::Rhai | Runtime::Native => assert_eq!(span_err, "inside a span"),
    }
    assert_eq!(
        r["span_value"],
        json!({"code": 7}),
        "error values pass as they are"
    );
    assert_eq!(r["after"], "still works");
    assert!(run.dead_letters().is_empty(), "{run}");
}

// `[Native]`: also run against the native fixture crate.
behaviours!(
    log_records_name_the_plugin_and_the_line[Native],
    telemetry_metrics_and_spans[Native],
);
