//! SPEC §4 the script API: every binding and hook, for every runtime.
//!
//! Scripts mark the lines whose position an error or a log record must name
//! with an `@marker` comment; [`line_of`] finds them, so the assertions keep
//! holding when a script is edited.

use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Run, Runtime, Src, ev};

/// The 1-based line of `src` holding `@marker`.
pub(crate) fn line_of(src: &str, marker: &str) -> usize {
    let tag = format!("@{marker}");
    let mut hits = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split_whitespace().any(|w| w == tag));
    let (i, _) = hits
        .next()
        .unwrap_or_else(|| panic!("no line marked {tag} in\n{src}"));
    assert!(hits.next().is_none(), "{tag} marks several lines");
    i + 1
}

/// `/<plugin>/<file>:<line>`: how errors and log records name a script line
/// (the plugins directory in front is the fixture's temp dir).
pub(crate) fn at(plugin: &str, file: &str, line: usize) -> String {
    format!("/{plugin}/{file}:{line}")
}

/// Whether `text` names the script position `pos` (from [`at`]) followed by
/// `then`. Lua's errors stop at the line (`main.lua:3: boom`); Rhai's add
/// the column (`main.rhai:3:5: boom`), which may be any number.
pub(crate) fn names_at(rt: Runtime, text: &str, pos: &str, then: &str) -> bool {
    match rt {
        Runtime::Lua => text.contains(&format!("{pos}{then}")),
        Runtime::Rhai => text.match_indices(pos).any(|(i, _)| {
            let Some(rest) = text[i + pos.len()..].strip_prefix(':') else {
                return false;
            };
            let column = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            column > 0 && rest[column..].starts_with(then)
        }),
    }
}

/// The one stderr line holding `needle`.
pub(crate) fn log_line<'a>(run: &'a Run, needle: &str) -> &'a str {
    let hits: Vec<&str> = run.stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one log line with {needle:?}\n{run}"
    );
    hits[0]
}

// ---------------------------------------------------------------- event

const EVENT_FIELDS: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("fields", {
    topic = e.topic,
    id = e.id,
    source = e.source,
    timestamp = e.timestamp,
    correlation_id = e.correlation_id or "none",
    headers = e.headers,
    payload = e.payload,
  })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("fields", #{
    topic: e.topic,
    id: e.id,
    source: e.source,
    timestamp: e.timestamp,
    correlation_id: e.correlation_id ?? "none",
    headers: e.headers,
    payload: e.payload,
  });
}
"#,
};

fn event_fields_reach_the_script(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", EVENT_FIELDS.get(rt));
    let payload = json!({
        "s": "text",
        "i": 42,
        "neg": -7,
        "big": 9007199254740993_i64,
        "f": 2.5,
        "whole_float": 1.0,
        "b": true,
        "no": false,
        "obj": {"inner": {"deep": "yes", "list": [1, "two", {"three": 3}, [4]]}},
        "arr": [1, 2, 3],
        "empty_array": [],
        "empty_object": {},
    });
    let run = fx.run(&[
        json!({
            "topic": "in",
            "payload": payload,
            "headers": {"trace": "abc", "k": "v"},
            "correlation_id": "corr-1",
        }),
        ev("in", json!({"second": true})),
    ]);
    run.expect_code(0);
    let inputs = run.on("in");
    let seen = run.payloads("fields");
    assert_eq!(seen.len(), 2, "{run}");

    assert_eq!(seen[0]["topic"], "in");
    assert_eq!(seen[0]["id"], inputs[0]["id"]);
    assert_eq!(seen[0]["source"], "host");
    assert_eq!(seen[0]["timestamp"], inputs[0]["timestamp"]);
    assert_eq!(seen[0]["correlation_id"], "corr-1");
    assert_eq!(seen[0]["headers"], json!({"trace": "abc", "k": "v"}));
    // Every kind of value survives the trip into the script and back out,
    // including an empty array (not turned into `{}`).
    assert_eq!(seen[0]["payload"], payload, "{run}");

    assert_eq!(seen[1]["id"], inputs[1]["id"]);
    assert_ne!(seen[0]["id"], seen[1]["id"]);
    assert_eq!(
        seen[1]["correlation_id"], "none",
        "no correlation id is nil"
    );
    assert_eq!(seen[1]["headers"], json!({}));
    assert_eq!(seen[1]["payload"], json!({"second": true}));
}

const PAYLOAD_TYPES: Src = Src {
    lua: r#"
function on_event(e)
  local p = e.payload
  bus.publish("types", {
    s = type(p.s),
    i = math.type(p.i),
    big = p.big == 9007199254740993,
    f = math.type(p.f),
    b = type(p.b),
    obj = type(p.obj),
    deep = p.obj.inner.deep,
    arr_len = #p.arr,
    arr_second = p.arr[2],
    empty_len = #p.empty,
    sum = p.i + p.f,
  })
end
"#,
    rhai: r#"
fn on_event(e) {
  let p = e.payload;
  bus::publish("types", #{
    s: type_of(p.s),
    i: type_of(p.i),
    big: p.big == 9007199254740993,
    f: type_of(p.f),
    b: type_of(p.b),
    obj: type_of(p.obj),
    deep: p.obj.inner.deep,
    arr_len: p.arr.len(),
    arr_second: p.arr[1],
    empty_len: p.empty.len(),
    sum: p.i + p.f,
  });
}
"#,
};

fn payload_values_have_native_types(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", PAYLOAD_TYPES.get(rt));
    let run = fx.run(&[ev(
        "in",
        json!({
            "s": "x", "i": 40, "big": 9007199254740993_i64, "f": 2.5, "b": false,
            "obj": {"inner": {"deep": "yes"}}, "arr": ["a", "b", "c"], "empty": [],
        }),
    )]);
    run.expect_code(0);
    // Each language names its types its own way.
    let (int, float, boolean, object) = match rt {
        Runtime::Lua => ("integer", "float", "boolean", "table"),
        Runtime::Rhai => ("i64", "f64", "bool", "map"),
    };
    assert_eq!(
        run.only("types"),
        json!({
            "s": "string", "i": int, "big": true, "f": float, "b": boolean,
            "obj": object, "deep": "yes", "arr_len": 3, "arr_second": "b", "empty_len": 0,
            "sum": 42.5,
        }),
        "{run}"
    );
}

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
    let line = line_of(src, "publish");
    let reports = run.on("out.report");
    assert_eq!(
        reports.len(),
        2,
        "both scripts went on after the errors\n{run}"
    );
    // Where the caught error says it happened: Lua's name the calling line;
    // Rhai's are the bare message (`try`/`catch` hands over the thrown value).
    let positioned = |plugin: &str, text: &str, line: usize| match rt {
        Runtime::Lua => names_at(rt, text, &at(plugin, rt.entry(), line), ": "),
        Runtime::Rhai => !text.contains(rt.entry()),
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
                positioned(plugin, text, line),
                "{plugin}: {key}: the error should name line {line} (Lua) or no position (Rhai): {text}"
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
        let bad_arg = match rt {
            Runtime::Lua => "bad argument #1".to_owned(),
            Runtime::Rhai => rt.binding("bus", "publish"),
        };
        for (key, marker, phrase) in [
            ("direct", "direct", "wildcard"),
            ("xpcall", "xpcall", "wildcard"),
            ("coroutine", "coroutine", "wildcard"),
            ("bad_arg", "bad-arg", bad_arg.as_str()),
        ] {
            let text = r[key].as_str().unwrap_or_else(|| panic!("{key}: {r}"));
            let line = line_of(src, marker);
            assert!(
                positioned(plugin, text, line),
                "{key}: names line {line} (Lua) or no position (Rhai): {text}"
            );
            assert!(text.contains(phrase), "{key}: {text}");
            assert!(!text.contains("traceback"), "{key}: one line: {text}");
        }
        assert!(r["xpcall"].as_str().unwrap().starts_with("handled: "));
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

// ---------------------------------------------------------------- config

const CONFIG: Src = Src {
    lua: r#"
function on_event(e)
  local keys = {}
  for k in pairs(config) do keys[#keys + 1] = k end
  table.sort(keys)
  local items = {}
  for i, v in ipairs(config.list) do items[i] = v end
  local deep_keys = {}
  for k, v in pairs(config.nested.deep) do deep_keys[#deep_keys + 1] = k .. "=" .. tostring(v) end
  table.sort(deep_keys)

  local ok, err = pcall(function()
    config.name = "changed" -- @set-top
  end)
  local nested_ok, nested_err = pcall(function()
    config.nested.deep.flag = false -- @set-nested
  end)

  bus.publish("config", {
    name = config.name,
    max = config.limits.max,
    ratio = config.limits.ratio,
    flag = config.nested.deep.flag,
    missing = config.missing == nil,
    keys = table.concat(keys, ","),
    deep_keys = table.concat(deep_keys, ","),
    len = #config.list,
    items = items,
    set_ok = ok,
    set_err = tostring(err),
    nested_ok = nested_ok,
    nested_err = tostring(nested_err),
  })
end
"#,
    rhai: r#"
fn join(list) {
  let text = "";
  for item in list {
    if text != "" { text += ","; }
    text += item;
  }
  text
}

fn on_event(e) {
  let keys = config.keys();
  keys.sort();
  let items = [];
  for v in config.list { items.push(v); }
  let deep_keys = [];
  for k in config.nested.deep.keys() { deep_keys.push(`${k}=${config.nested.deep[k]}`); }
  deep_keys.sort();

  // Assigning to a constant is Rhai's own error: an object map with the
  // message and the line.
  let set_ok = true;
  let set_err = #{};
  try {
    config.name = "changed"; // @set-top
  } catch (err) {
    set_ok = false;
    set_err = err;
  }
  let nested_ok = true;
  let nested_err = #{};
  try {
    config.nested.deep.flag = false; // @set-nested
  } catch (err) {
    nested_ok = false;
    nested_err = err;
  }

  bus::publish("config", #{
    name: config.name,
    max: config.limits.max,
    ratio: config.limits.ratio,
    flag: config.nested.deep.flag,
    missing: config.missing == (),
    keys: join(keys),
    deep_keys: join(deep_keys),
    len: config.list.len(),
    items: items,
    set_ok: set_ok,
    set_err: set_err.message,
    set_line: set_err.line,
    nested_ok: nested_ok,
    nested_err: nested_err.message,
    nested_line: nested_err.line,
  });
}
"#,
};

fn config_is_readable_and_read_only(rt: Runtime) {
    let fx = Fixture::new();
    let src = CONFIG.get(rt);
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nconfig:\n  name: demo\n  limits: {max: 3, ratio: 0.5}\n  \
         list: [a, b, c]\n  nested: {deep: {flag: true, level: 2}}\n",
        src,
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let c = run.only("config");
    assert_eq!(c["name"], "demo", "{run}");
    assert_eq!(c["max"], 3);
    assert_eq!(c["ratio"], 0.5);
    assert_eq!(c["flag"], true, "the failed assignment changed nothing");
    assert_eq!(c["missing"], true);
    assert_eq!(c["keys"], "limits,list,name,nested");
    assert_eq!(c["deep_keys"], "flag=true,level=2");
    assert_eq!(c["len"], 3);
    assert_eq!(c["items"], json!(["a", "b", "c"]));
    for (ok, err, line_key, marker) in [
        ("set_ok", "set_err", "set_line", "set-top"),
        ("nested_ok", "nested_err", "nested_line", "set-nested"),
    ] {
        assert_eq!(c[ok], false, "{run}");
        let message = c[err].as_str().unwrap_or_else(|| panic!("{err}: {c}"));
        let line = line_of(src, marker);
        match rt {
            Runtime::Lua => {
                assert!(message.contains("config is read-only"), "{message}");
                let pos = at("p", rt.entry(), line);
                assert!(
                    message.contains(&pos),
                    "the error should name {pos}: {message}"
                );
            }
            // `config` is a Rhai constant: Rhai's own error, with the line
            // as a field of the caught map.
            Runtime::Rhai => {
                assert_eq!(message, "Cannot modify constant config");
                assert_eq!(c[line_key], line, "{run}");
            }
        }
    }
}

const CONFIG_AS_DATA: Src = Src {
    lua: r#"
function on_event(e)
  state.kept = config.list
  bus.publish("limits", config.limits)
  bus.publish("whole", { config = config, kept = state.kept })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.kept = config.list;
  bus::publish("limits", config.limits);
  bus::publish("whole", #{ config: config, kept: state.kept });
}
"#,
};

fn config_parts_are_data_like_any_other(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]
config:
  limits: {max: 3, ratio: 0.5}
  list: [a, b]
",
        CONFIG_AS_DATA.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    assert_eq!(run.only("limits"), json!({"max": 3, "ratio": 0.5}), "{run}");
    assert_eq!(
        run.only("whole"),
        json!({
            "config": {"limits": {"max": 3, "ratio": 0.5}, "list": ["a", "b"]},
            "kept": ["a", "b"],
        }),
        "{run}"
    );
}

// ---------------------------------------------------------------- state

const STATE: Src = Src {
    lua: r#"
function init()
  state.greeting = "set in init"
  state.count = 0
  state.seen = {}
end

function on_event(e)
  state.count = state.count + 1
  state.seen[#state.seen + 1] = e.payload.tag
  bus.publish("state", { greeting = state.greeting, count = state.count, seen = state.seen })
end
"#,
    rhai: r#"
fn init() {
  state.greeting = "set in init";
  state.count = 0;
  state.seen = [];
}

fn on_event(e) {
  state.count += 1;
  state.seen.push(e.payload.tag);
  bus::publish("state", #{ greeting: state.greeting, count: state.count, seen: state.seen });
}
"#,
};

fn state_survives_across_events_and_hooks(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", STATE.get(rt));
    let run = fx.run(&[
        ev("in", json!({"tag": "a"})),
        ev("in", json!({"tag": "b"})),
        ev("in", json!({"tag": "c"})),
    ]);
    run.expect_code(0);
    assert_eq!(
        run.payloads("state"),
        vec![
            json!({"greeting": "set in init", "count": 1, "seen": ["a"]}),
            json!({"greeting": "set in init", "count": 2, "seen": ["a", "b"]}),
            json!({"greeting": "set in init", "count": 3, "seen": ["a", "b", "c"]}),
        ],
        "{run}"
    );
}

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
};

fn log_records_name_the_plugin_and_the_line(rt: Runtime) {
    let fx = Fixture::new();
    let src = LOG.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    run.only("done");
    for (needle, level, marker, field) in [
        ("info-marker", "INFO", "info", None),
        ("warn-marker", "WARN", "warn", Some("field-value-1")),
        ("error-marker", "ERROR", "error", Some("field-value-2")),
        ("print-marker\t42\ttrue", "INFO", "print", None),
    ] {
        let line = log_line(&run, needle);
        assert!(line.contains(level), "{level}: {line}");
        assert!(line.contains("plugin=p"), "{line}");
        let pos = at("p", rt.entry(), line_of(src, marker));
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
};

fn a_timer_error_is_logged_and_the_plugin_goes_on(rt: Runtime) {
    let fx = Fixture::new();
    let src = TIMER_ERROR.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({}))]);
    let line = log_line(&run, "boom in a timer");
    let pos = at("p", rt.entry(), line_of(src, "timer-error"));
    assert!(line.contains(&pos), "should name {pos}: {line}");
    assert!(line.contains("ERROR"), "{line}");
    assert_eq!(run.on("later").len(), 1, "{run}");
    assert_eq!(run.on("done").len(), 1, "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
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
    let pos = at("p", rt.entry(), line_of(src, "bad-metric"));
    match rt {
        Runtime::Lua => assert!(
            bad.contains(&format!("{pos}: ")),
            "should name {pos}: {bad}"
        ),
        // A caught Rhai error is the bare message.
        Runtime::Rhai => assert!(!bad.contains(rt.entry()), "no position: {bad}"),
    }
    assert!(bad.contains("metric name `bad name!`"), "{bad}");

    // An error inside a span reaches the caller unchanged: Lua's `error`
    // puts the position in front of a string, Rhai's `throw` does not.
    assert_eq!(r["span_ok"], false);
    assert_eq!(r["span_kind"], "string", "{r}");
    let pos = at("p", rt.entry(), line_of(src, "span-error"));
    let span_err = r["span_err"].as_str().unwrap();
    match rt {
        Runtime::Lua => assert!(
            span_err.ends_with(&format!("{pos}: inside a span")),
            "{span_err}"
        ),
        Runtime::Rhai => assert_eq!(span_err, "inside a span"),
    }
    assert_eq!(
        r["span_value"],
        json!({"code": 7}),
        "error values pass as they are"
    );
    assert_eq!(r["after"], "still works");
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

// ---------------------------------------------------------------- outcome

const OUTCOME_VALUES: Src = Src {
    lua: r#"
function on_event(e)
  local kinds = {}
  for _, name in ipairs({ "retry", "forward", "drop" }) do
    kinds[name] = type(outcome[name])
  end
  local ok, err = pcall(function()
    return outcome.retry(-5) -- @bad-retry
  end)
  bus.publish("outcome", { kinds = kinds, bad_retry_ok = ok, bad_retry = tostring(err) })
  if e.payload.drop_without_reason then return outcome.drop() end
end
"#,
    rhai: r#"
fn on_event(e) {
  // Rhai has no first-class module functions: what each one makes is the
  // value `on_event` may return.
  let kinds = #{
    retry: type_of(outcome::retry(10)),
    forward: type_of(outcome::forward("out", #{})),
    drop: type_of(outcome::drop("reason")),
  };
  let ok = true;
  let error = ();
  try {
    outcome::retry(-5); // @bad-retry
  } catch (err) {
    ok = false;
    error = err;
  }
  bus::publish("outcome", #{ kinds: kinds, bad_retry_ok: ok, bad_retry: `${error}` });
  if e.payload.drop_without_reason == true { return outcome::drop(); }
}
"#,
};

fn outcome_values_and_their_argument_checks(rt: Runtime) {
    let fx = Fixture::new();
    let src = OUTCOME_VALUES.get(rt);
    fx.plugin(rt, "p", "subscriptions: [in]\n", src);
    let run = fx.run(&[ev("in", json!({"drop_without_reason": true}))]);
    run.expect_code(0);
    let o = run.only("outcome");
    match rt {
        Runtime::Lua => assert_eq!(
            o["kinds"],
            json!({"retry": "function", "forward": "function", "drop": "function"})
        ),
        // Rhai's module functions are not values: what they make is, one
        // type for all three.
        Runtime::Rhai => {
            let kind = &o["kinds"]["retry"];
            assert!(
                kind.as_str()
                    .is_some_and(|k| !["()", "map", "string"].contains(&k)),
                "{o}"
            );
            assert_eq!(
                o["kinds"],
                json!({"retry": kind, "forward": kind, "drop": kind})
            );
        }
    }
    assert_eq!(o["bad_retry_ok"], false);
    let err = o["bad_retry"].as_str().unwrap();
    let pos = at("p", rt.entry(), line_of(src, "bad-retry"));
    match rt {
        Runtime::Lua => assert!(err.contains(&pos), "should name {pos}: {err}"),
        // A caught Rhai error is the bare message.
        Runtime::Rhai => assert!(!err.contains(rt.entry()), "no position: {err}"),
    }
    assert!(err.contains(&rt.binding("outcome", "retry")), "{err}");
    // `outcome.drop()` without a reason still dead-letters, with some reason.
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(dl[0]["error"].as_str().is_some_and(|s| !s.is_empty()));
}

behaviours!(
    event_fields_reach_the_script,
    payload_values_have_native_types,
    publish_returns_the_new_events_id,
    correlation_ids_follow_a_chain_of_plugins,
    refused_publishes_raise_catchable_errors_at_the_line,
    config_is_readable_and_read_only,
    config_parts_are_data_like_any_other,
    state_survives_across_events_and_hooks,
    log_records_name_the_plugin_and_the_line,
    timers_fire_repeat_and_cancel,
    a_timer_error_is_logged_and_the_plugin_goes_on,
    telemetry_metrics_and_spans,
    init_runs_first_and_shutdown_runs_at_exit,
    events_are_handled_one_at_a_time_in_publish_order,
    outcome_values_and_their_argument_checks,
);
