//! SPEC §4 sandbox and limits, for every runtime.

use serde_json::{Value, json};

use crate::behaviours;
use crate::bindings::{at, line_of, log_line, names_at};
use crate::support::{Fixture, Runtime, Src, ev};

// ---------------------------------------------------------------- allow-list

const ALLOW_LIST: Src = Src {
    lua: r#"
local forbidden = {
  "io", "debug", "package", "dofile", "loadfile", "loadstring",
  "os.execute", "os.exit", "os.getenv", "os.remove", "os.rename", "os.tmpname",
  "os.setlocale", "string.dump",
}
local required = {
  "os.time", "os.clock", "os.date", "string", "string.format", "table", "table.concat",
  "math", "math.floor", "utf8", "utf8.char", "coroutine", "coroutine.wrap",
  "pcall", "error", "load", "require", "print", "setmetatable", "tostring",
}

local function lookup(path)
  local v = _G
  for part in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[part]
  end
  return v
end

function on_event(e)
  local present, missing = {}, {}
  for _, name in ipairs(forbidden) do
    if lookup(name) ~= nil then present[#present + 1] = name end
  end
  for _, name in ipairs(required) do
    if lookup(name) == nil then missing[#missing + 1] = name end
  end
  local os_keys = {}
  for k in pairs(os) do os_keys[#os_keys + 1] = k end
  table.sort(os_keys)

  -- A binary chunk is refused whatever mode is asked for.
  local binary = "\27Lua\84\0\25\147\13\10\26\10"
  local bin_default, err_default = load(binary)
  local bin_b, err_b = load(binary, "chunk", "b")
  local bin_bt, err_bt = load(binary, "chunk", "bt")
  local text = load("return 1 + 1")

  bus.publish("report", {
    present = table.concat(present, " "),
    missing = table.concat(missing, " "),
    os_keys = table.concat(os_keys, " "),
    binary_loaded = bin_default ~= nil or bin_b ~= nil or bin_bt ~= nil,
    binary_errors = { tostring(err_default), tostring(err_b), tostring(err_bt) },
    text_chunk = text and text() or "refused",
    time = math.type(os.time()),
    date = os.date("!%Y", 0),
  })
end
"#,
    rhai: r#"
fn on_event(e) {
  // The standard packages are all there: strings, math, arrays, maps,
  // function pointers, closures, time.
  let words = "b,c,a".split(",");
  words.sort();
  let started = timestamp();
  let double = |x| x * 2;
  bus::publish("report", #{
    string: ["abc".to_upper(), "hello".sub_string(1, 3), "a b".split(" ").len(), "abc".contains("b")],
    math: [floor(2.7), abs(-3), max(1, 2), 2 ** 10, sqrt(16.0)],
    parse: [parse_int("42"), parse_float("2.5"), to_string(7)],
    array: words + [[1, 2, 3].map(double), [1, 2, 3, 4].filter(|x| x % 2 == 0)],
    map: #{ a: 1, b: 2 }.keys().len(),
    fn_ptr: Fn("sqrt").call(81.0),
    json: parse_json(`{"k": [1, null]}`),
    time: type_of(started.elapsed),
    kind: [type_of(()), type_of(1), type_of(1.0), type_of("s"), type_of(#{}), type_of([])],
  });
  print("print-from-the-sandbox");
  debug("debug-from-the-sandbox");
}
"#,
    native: None,
};

/// A Rhai script that calls `eval`: switched off, whether the script is
/// refused when it loads or the call fails.
const EVAL: &str = r#"
fn on_event(e) {
  let result = "ran";
  try {
    result = eval(`bus::publish("evaluated", #{}); "ran"`);
  } catch (err) {
    result = `refused: ${err}`;
  }
  bus::publish("eval.report", #{ result: result });
}
"#;

fn only_the_allow_listed_names_exist(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", ALLOW_LIST.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let r = run.only("report");
    match rt {
        Runtime::Lua => assert_lua_allow_list(&r),
        Runtime::Rhai => {
            assert_rhai_allow_list(&r);
            // `print` and `debug` write to the log, never to stdout (`only`
            // read every stdout line as a tapped event).
            log_line(&run, "print-from-the-sandbox");
            assert!(!run.stdout.contains("-from-the-sandbox"), "{run}");
            eval_is_switched_off();
        }
        Runtime::Native => unreachable!("not run against native plugins"),
    }
}

fn assert_lua_allow_list(r: &Value) {
    assert_eq!(
        r["present"], "",
        "forbidden names present: {}",
        r["present"]
    );
    assert_eq!(r["missing"], "", "allowed names missing: {}", r["missing"]);
    assert_eq!(r["os_keys"], "clock date time", "os holds only these");
    assert_eq!(r["binary_loaded"], false, "{r}");
    for err in r["binary_errors"].as_array().unwrap() {
        assert!(err.as_str().unwrap().contains("binary"), "{err}");
    }
    assert_eq!(r["text_chunk"], 2);
    assert_eq!(r["time"], "integer");
    assert_eq!(r["date"], "1970");
}

/// Rhai has no I/O, OS or debug library to take away: the standard packages
/// are all there.
fn assert_rhai_allow_list(r: &Value) {
    assert_eq!(
        *r,
        json!({
            "string": ["ABC", "ell", 2, true],
            "math": [2.0, 3, 2, 1024, 4.0],
            "parse": [42, 2.5, "7"],
            "array": ["a", "b", "c", [2, 4, 6], [2, 4]],
            "map": 2,
            "fn_ptr": 9.0,
            "json": {"k": [1, null]},
            "time": "f64",
            "kind": ["()", "i64", "f64", "string", "map", "array"],
        })
    );
}

fn eval_is_switched_off() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Rhai, "p", "subscriptions: [in]\n", EVAL);
    let run = fx.run(&[ev("in", json!({}))]);
    assert!(run.on("evaluated").is_empty(), "eval ran its script\n{run}");
    let failed = run.payloads("plughost.plugin.failed");
    let refused_at_load = failed
        .iter()
        .any(|f| f["plugin"] == "p" && f["error"].as_str().is_some_and(|e| e.contains("eval")));
    let refused_at_call = run.payloads("eval.report").iter().any(|r| {
        r["result"]
            .as_str()
            .is_some_and(|t| t.starts_with("refused: ") && t.contains("eval"))
    });
    assert!(
        refused_at_load || refused_at_call,
        "eval should be refused, naming it\n{run}"
    );
}

// ---------------------------------------------------------------- require

const HELPERS: Src = Src {
    lua: r#"
local M = {}
function M.greet(name) return "hello " .. name end
function M.fail()
  error("failing in helpers") -- @helpers-error
end
return M
"#,
    rhai: r#"
print("helpers-module-loaded");

fn greet(name) { "hello " + name }

fn fail() {
  throw "failing in helpers"; // @helpers-error
}
"#,
    native: None,
};

const TEXT_UTIL: Src = Src {
    lua: r#"
return { shout = function(s) return string.upper(s) .. "!" end }
"#,
    rhai: r#"
fn shout(s) { s.to_upper() + "!" }
"#,
    native: None,
};

const REQUIRE_INSIDE: Src = Src {
    lua: r#"
local helpers = require "helpers"
local text = require "util.text"

function on_event(e)
  local ok, err = pcall(helpers.fail)
  bus.publish("report", {
    greet = helpers.greet("bob"),
    shout = text.shout("hi"),
    slashed = require("util/text").shout("yo"),
    cached = require("helpers") == helpers,
    fail_ok = ok,
    fail_err = tostring(err),
  })
end
"#,
    rhai: r#"
import "helpers" as helpers;
import "util.text" as text;

fn on_event(e) {
  // Uncaught, an error inside a module names the module's file and line.
  if e.payload.fail == true { helpers::fail(); }
  import "helpers" as again;
  import "util/text" as slashed;
  let fail_ok = true;
  let fail_err = ();
  try {
    helpers::fail();
  } catch (err) {
    fail_ok = false;
    fail_err = err;
  }
  bus::publish("report", #{
    greet: helpers::greet("bob"),
    shout: text::shout("hi"),
    slashed: slashed::shout("yo"),
    again: again::greet("again"),
    fail_ok: fail_ok,
    fail_err: `${fail_err}`,
  });
}
"#,
    native: None,
};

fn require_loads_modules_from_the_plugin_folder(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", REQUIRE_INSIDE.get(rt));
    let ext = rt.ext();
    fx.file(&format!("p/helpers.{ext}"), HELPERS.get(rt));
    fx.file(&format!("p/util/text.{ext}"), TEXT_UTIL.get(rt));
    let mut input = vec![ev("in", json!({}))];
    if rt == Runtime::Rhai {
        // A caught Rhai error is the bare thrown value: the module's position
        // shows in the dead letter of an uncaught one.
        input.push(ev("in", json!({"fail": true})));
    }
    let run = fx.run(&input);
    run.expect_code(0);
    let r = run.only("report");
    assert_eq!(r["greet"], "hello bob", "{run}");
    assert_eq!(r["shout"], "HI!");
    assert_eq!(r["slashed"], "YO!");
    assert_eq!(r["fail_ok"], false);
    // Errors inside a module name the module's file and line.
    let pos = at(
        "p",
        &format!("helpers.{ext}"),
        line_of(HELPERS.get(rt), "helpers-error"),
    );
    let err = r["fail_err"].as_str().unwrap();
    match rt {
        Runtime::Lua => {
            assert_eq!(r["cached"], true, "a module is loaded once");
            assert!(
                err.ends_with(&format!("{pos}: failing in helpers")),
                "{err}"
            );
        }
        Runtime::Rhai => {
            // Imported at the top and again by each `on_event`: the module's
            // top-level `print` ran once.
            assert_eq!(r["again"], "hello again");
            log_line(&run, "helpers-module-loaded");
            assert_eq!(err, "failing in helpers");
            let dl = run.dead_letters();
            assert_eq!(dl.len(), 1, "{run}");
            let error = dl[0]["error"].as_str().unwrap();
            assert!(
                names_at(rt, error, &pos, ": failing in helpers"),
                "should name {pos}: {error}"
            );
        }
        Runtime::Native => unreachable!("not run against native plugins"),
    }
}

const REQUIRE_OUTSIDE: Src = Src {
    lua: r#"
local function try(name)
  local ok, err = pcall(function()
    return require(name) -- @require
  end)
  return { ok = ok, kind = type(err), err = tostring(err) }
end

function on_event(e)
  local report = {
    parent = try("../outside"),
    nested_parent = try("util/../../outside"),
    absolute = try(config.absolute),
    link = try("link"),
  }
  report.continued = true
  bus.publish("report", report)
end
"#,
    rhai: r#"
fn attempt(name) {
  try {
    import name as m; // @require
    return #{ ok: true };
  } catch (err) {
    return #{ ok: false, kind: type_of(err), err: `${err}` };
  }
}

fn on_event(e) {
  let report = #{
    parent: attempt("../outside"),
    nested_parent: attempt("util/../../outside"),
    absolute: attempt(config.absolute),
    link: attempt("link"),
  };
  report.continued = true;
  bus::publish("report", report);
}
"#,
    native: None,
};

/// The module outside the plugin folder: its text shows in an error if it
/// ever ran.
const OUTSIDE: Src = Src {
    lua: "return 'outside'\n",
    rhai: "throw \"'outside' ran\";\n",
    native: None,
};

/// Writes a plugin that tries to `require` (`import`) files outside its
/// folder: `outside.lua` (`.rhai`) next to it, by a relative path, an
/// absolute path and a link.
fn plugin_reaching_outside(rt: Runtime) -> Fixture {
    let fx = Fixture::new();
    let ext = rt.ext();
    let outside = fx.file(&format!("outside.{ext}"), OUTSIDE.get(rt));
    let absolute = outside.with_extension("");
    fx.plugin(
        rt,
        "p",
        &format!(
            "subscriptions: [in]\nconfig: {{absolute: {:?}}}\n",
            absolute.to_str().unwrap()
        ),
        REQUIRE_OUTSIDE.get(rt),
    );
    fx.file(&format!("p/util/text.{ext}"), TEXT_UTIL.get(rt));
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, fx.path().join(format!("p/link.{ext}"))).unwrap();
    fx
}

fn require_outside_the_folder_is_a_catchable_error(rt: Runtime) {
    let fx = plugin_reaching_outside(rt);
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    let r = run.only("report");
    assert_eq!(r["continued"], true, "{run}");
    let pos = at("p", rt.entry(), line_of(REQUIRE_OUTSIDE.get(rt), "require"));
    let mut cases = vec!["parent", "nested_parent", "absolute"];
    if cfg!(unix) {
        cases.push("link");
    }
    for case in cases {
        let c = &r[case];
        assert_eq!(c["ok"], false, "{case}: refused\n{run}");
        assert_eq!(c["kind"], "string", "{case}: the error is a string: {c}");
        let err = c["err"].as_str().unwrap();
        match rt {
            Runtime::Lua => assert!(
                err.contains(&format!("{pos}: ")),
                "{case}: names {pos}: {err}"
            ),
            // A caught Rhai error is the bare message.
            Runtime::Rhai => assert!(!err.contains(rt.entry()), "{case}: no position: {err}"),
            Runtime::Native => unreachable!("not run against native plugins"),
        }
        let statement = match rt {
            Runtime::Lua => "require",
            Runtime::Rhai => "import",
            Runtime::Native => unreachable!("not run against native plugins"),
        };
        assert!(err.contains(statement), "{case}: {err}");
        assert!(!err.contains("'outside'"), "{case}: {err}");
    }
}

fn require_outside_the_folder_says_why(rt: Runtime) {
    let fx = plugin_reaching_outside(rt);
    let run = fx.run(&[ev("in", json!({}))]);
    let r = run.only("report");
    let mut cases = vec!["parent", "nested_parent", "absolute"];
    if cfg!(unix) {
        cases.push("link");
    }
    for case in cases {
        let err = r[case]["err"].as_str().unwrap();
        assert!(
            err.contains("outside the plugin folder"),
            "{case}: the refusal should say the module is outside the plugin folder: {err}"
        );
    }
}

// ---------------------------------------------------------------- memory

const MEMORY_BOMB: Src = Src {
    lua: r#"
function on_event(e) -- @on-event
  local kind = e.payload.kind
  if kind == "table" then
    local t = {}
    for i = 1, 1e9 do t[i] = i end -- @table-grow
  elseif kind == "string" then
    local s = "x"
    while true do s = s .. s end -- @string-grow
  end
  bus.publish("handled", { kind = kind })
end
"#,
    rhai: r#"
fn on_event(e) {
  let kind = e.payload.kind;
  if kind == "table" {
    let t = [];
    for i in 0..1_000_000_000 { t.push(i); } // @table-grow
  } else if kind == "string" {
    let s = "x";
    loop { s += s; } // @string-grow
  }
  bus::publish("handled", #{ kind: kind });
}
"#,
    native: None,
};

fn a_memory_bomb_dead_letters_that_event_only(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {memory_mb: 16, event_timeout_ms: 10000}\n",
        MEMORY_BOMB.get(rt),
    );
    let run = fx.run(&[
        ev("in", json!({"kind": "table"})),
        ev("in", json!({"kind": "ok-1"})),
        ev("in", json!({"kind": "string"})),
        ev("in", json!({"kind": "ok-2"})),
    ]);
    let dl = run.dead_letters();
    let kinds: Vec<&Value> = dl.iter().map(|d| &d["event"]["payload"]["kind"]).collect();
    assert_eq!(kinds, vec!["table", "string"], "{run}");
    for (d, marker) in dl.iter().zip(["table-grow", "string-grow"]) {
        let error = d["error"].as_str().unwrap();
        let message = "memory limit exceeded (limits.memory_mb = 16)";
        match rt {
            // Lua raises an allocation failure without running a handler:
            // the line is the loop's when the watch noted it, else the hook
            // function's first line.
            Runtime::Lua => {
                let src = MEMORY_BOMB.get(rt);
                let placed = [marker, "on-event"].iter().any(|m| {
                    let pos = at("p", rt.entry(), line_of(src, m));
                    error.contains(&format!("{pos}: {message}"))
                });
                assert!(placed, "{error}");
            }
            _ => {
                let pos = at("p", rt.entry(), line_of(MEMORY_BOMB.get(rt), marker));
                let then = format!(": {message}");
                assert!(
                    names_at(rt, error, &pos, &then),
                    "should name {pos}: {error}"
                );
            }
        }
        assert_eq!(d["plugin"], "p");
    }
    assert_eq!(
        run.payloads("handled"),
        vec![json!({"kind": "ok-1"}), json!({"kind": "ok-2"})],
        "{run}"
    );
}

// ---------------------------------------------------------------- time

const RUNAWAY: Src = Src {
    lua: r#"
function on_event(e)
  local kind = e.payload.kind
  if kind == "loop" then
    while true do end -- @loop
  elseif kind == "pcall" then
    while true do pcall(function() while true do end end) end -- @pcall
  elseif kind == "pcall-error" then
    while true do local ok, err = pcall(error, "caught and ignored") end -- @pcall-error
  elseif kind == "coroutine" then
    local co = coroutine.create(function() while true do end end) -- @coroutine
    while true do coroutine.resume(co) end -- @coroutine-resume
  elseif kind == "wrap" then
    local f = function() while true do coroutine.yield() end end -- @wrap
    while true do pcall(coroutine.wrap(f)) end -- @wrap-call
  elseif kind == "xpcall" then
    while true do xpcall(function() while true do end end, function(err) return err end) end -- @xpcall
  end
  bus.publish("handled", { kind = kind })
end
"#,
    rhai: r#"
// The kinds are named after Lua's ways of calling. Here: a bare loop, one
// inside `try`, one throwing and catching, a closure and a script function
// called over and over, and one inside `try` whose `catch` would log.
fn spin() {
  loop {} // @wrap
}

fn on_event(e) {
  let kind = e.payload.kind;
  if kind == "loop" {
    loop {} // @loop
  } else if kind == "pcall" {
    loop { try { loop {} } catch {} } // @pcall
  } else if kind == "pcall-error" {
    loop { try { throw "caught and ignored"; } catch (err) {} } // @pcall-error
  } else if kind == "coroutine" {
    let f = || { loop {} }; // @coroutine
    loop { try { f.call(); } catch {} } // @coroutine-resume
  } else if kind == "wrap" {
    loop { try { spin(); } catch {} } // @wrap-call
  } else if kind == "xpcall" {
    loop { try { loop {} } catch (err) { log::warn(`caught: ${err}`); } } // @xpcall
  }
  bus::publish("handled", #{ kind: kind });
}
"#,
    native: None,
};

/// Whether `error` is the time limit at the line of one of `markers` in
/// `src`, plugin `p`'s entry.
fn time_limit_at_one_of(rt: Runtime, error: &str, src: &str, markers: &[&str]) -> bool {
    markers.iter().any(|m| {
        let pos = at("p", rt.entry(), line_of(src, m));
        names_at(rt, error, &pos, ": time limit exceeded")
    })
}

fn a_runaway_loop_dead_letters_that_event_only(rt: Runtime) {
    let fx = Fixture::new();
    let src = RUNAWAY.get(rt);
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 100}\n",
        src,
    );
    // Each kind, with the lines the loop runs on.
    let runaway: [(&str, &[&str]); 6] = [
        ("loop", &["loop"]),
        ("pcall", &["pcall"]),
        ("pcall-error", &["pcall-error"]),
        ("coroutine", &["coroutine", "coroutine-resume"]),
        ("wrap", &["wrap", "wrap-call"]),
        ("xpcall", &["xpcall"]),
    ];
    let mut input = Vec::new();
    for (i, (kind, _)) in runaway.iter().enumerate() {
        input.push(ev("in", json!({"kind": kind})));
        input.push(ev("in", json!({"kind": format!("ok-{i}")})));
    }
    let run = fx.run(&input);
    let dl = run.dead_letters();
    let kinds: Vec<&Value> = dl.iter().map(|d| &d["event"]["payload"]["kind"]).collect();
    let want: Vec<&str> = runaway.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, want, "{run}");
    for (d, (kind, markers)) in dl.iter().zip(runaway) {
        let error = d["error"].as_str().unwrap();
        // Rhai places a limit hit in a function the hook calls at that call.
        assert!(
            time_limit_at_one_of(rt, error, src, markers),
            "{kind}: should name the loop's line: {error}"
        );
        assert!(error.contains("limits.event_timeout_ms"), "{error}");
        assert_eq!(d["attempts"], 1);
    }
    let handled: Vec<Value> = (0..runaway.len())
        .map(|i| json!({"kind": format!("ok-{i}")}))
        .collect();
    assert_eq!(run.payloads("handled"), handled, "{run}");
}

/// A runaway loop as real code writes one: it reads its variables.
const BUSY_LOOP: Src = Src {
    lua: r#"
local function count(n)
  local i = 0
  while true do
    i = i + n -- @busy
  end
end
function on_event(e) count(1) end
"#,
    rhai: r#"
fn count(n) {
  let i = 0;
  loop {
    i += n; // @busy
  }
}
fn on_event(e) { count(1); }
"#,
    native: None,
};

fn a_runaway_loop_is_stopped_at_its_line(rt: Runtime) {
    let fx = Fixture::new();
    let src = BUSY_LOOP.get(rt);
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 50}\n",
        src,
    );
    let run = fx.run(&[ev("in", json!({}))]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    let pos = at("p", rt.entry(), line_of(src, "busy"));
    assert!(
        names_at(rt, error, &pos, ": time limit exceeded"),
        "should name {pos}: {error}"
    );
    if rt == Runtime::Rhai {
        assert!(
            error.contains("in call to `count`"),
            "the call chain: {error}"
        );
    }
}

const LONG_CALLS: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.kind == "long" then
    -- Each call takes milliseconds, yet the loop is a few hundred Lua
    -- instructions in all: the deadline must be seen between two calls.
    for i = 1, 500 do -- @long-loop
      local s = string.rep("a", 1000000) -- @long-call
    end
  end
  bus.publish("handled", { kind = e.payload.kind })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.kind == "long" {
    // Each call takes milliseconds, yet the loop is a few hundred Rhai
    // operations in all: the deadline must be seen between two calls.
    let s = "";
    for i in 0..50 { // @long-loop
      s.pad(1_000_000, 'a'); // @long-call
      s.truncate(0); // @long-call-next
    }
  }
  bus::publish("handled", #{ kind: e.payload.kind });
}
"#,
    native: None,
};

fn a_loop_of_long_library_calls_is_stopped(rt: Runtime) {
    let fx = Fixture::new();
    let src = LONG_CALLS.get(rt);
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 50}\n",
        src,
    );
    let run = fx.run(&[
        ev("in", json!({"kind": "long"})),
        ev("in", json!({"kind": "ok"})),
    ]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    // The error names the line of the loop where the deadline was seen.
    let lines = ["long-loop", "long-call", "long-call-next"];
    assert!(
        time_limit_at_one_of(rt, error, src, &lines),
        "should name the loop's line: {error}"
    );
    assert_eq!(
        run.payloads("handled"),
        vec![json!({"kind": "ok"})],
        "{run}"
    );
}

const RUNAWAY_TIMER: Src = Src {
    lua: r#"
function on_event(e)
  state.deliveries = (state.deliveries or 0) + 1
  if state.deliveries == 1 then
    timer.after(1, function()
      while true do end -- @timer-loop
    end)
    return outcome.retry(400)
  end
  bus.publish("done", {})
end
"#,
    rhai: r#"
fn on_event(e) {
  state.deliveries = (state.deliveries ?? 0) + 1;
  if state.deliveries == 1 {
    timer::after(1, || {
      loop {} // @timer-loop
    });
    return outcome::retry(400);
  }
  bus::publish("done", #{});
}
"#,
    native: None,
};

fn a_runaway_timer_callback_is_stopped(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 100}\n",
        RUNAWAY_TIMER.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    let line = log_line(&run, "time limit exceeded");
    assert!(line.contains("ERROR"), "{line}");
    let pos = at(
        "p",
        rt.entry(),
        line_of(RUNAWAY_TIMER.get(rt), "timer-loop"),
    );
    assert!(
        names_at(rt, line, &pos, ": time limit exceeded"),
        "should name {pos}: {line}"
    );
    assert_eq!(run.on("done").len(), 1, "{run}");
}

const STUCK_INIT: Src = Src {
    lua: r#"
function init()
  while true do end -- @init-loop
end
function on_event(e) bus.publish("stuck.handled", {}) end
"#,
    rhai: r#"
fn init() {
  loop {} // @init-loop
}
fn on_event(e) { bus::publish("stuck.handled", #{}); }
"#,
    native: None,
};

const STUCK_TOP_LEVEL: Src = Src {
    lua: r#"
while true do end -- @top-loop
"#,
    rhai: r#"
loop {} // @top-loop
"#,
    native: None,
};

const HEALTHY: Src = Src {
    lua: r#"
function on_event(e) bus.publish("fine.handled", { n = e.payload.n }) end
"#,
    rhai: r#"
fn on_event(e) { bus::publish("fine.handled", #{ n: e.payload.n }); }
"#,
    native: None,
};

fn a_runaway_init_fails_that_plugin_only(rt: Runtime) {
    let fx = Fixture::new();
    let limits = "subscriptions: [in]\nlimits: {event_timeout_ms: 100}\n";
    fx.plugin(rt, "stuck", limits, STUCK_INIT.get(rt));
    fx.plugin(rt, "stuck-top", limits, STUCK_TOP_LEVEL.get(rt));
    fx.plugin(rt, "fine", limits, HEALTHY.get(rt));
    let run = fx.run(&[ev("in", json!({"n": 1})), ev("in", json!({"n": 2}))]);
    run.expect_code(1);
    let failed = run.payloads("plughost.plugin.failed");
    let mut names: Vec<&str> = failed
        .iter()
        .map(|f| f["plugin"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["stuck", "stuck-top"], "{run}");
    for f in &failed {
        let error = f["error"].as_str().unwrap_or_default();
        assert!(error.contains("time limit exceeded"), "{f}");
        let (plugin, src, marker) = match f["plugin"].as_str().unwrap() {
            "stuck" => ("stuck", STUCK_INIT.get(rt), "init-loop"),
            _ => ("stuck-top", STUCK_TOP_LEVEL.get(rt), "top-loop"),
        };
        let pos = at(plugin, rt.entry(), line_of(src, marker));
        assert!(
            names_at(rt, error, &pos, ": time limit exceeded"),
            "should name {pos}: {f}"
        );
    }
    let started = run.payloads("plughost.plugin.started");
    assert_eq!(started, vec![json!({"plugin": "fine"})], "{run}");
    assert_eq!(
        run.payloads("fine.handled"),
        vec![json!({"n": 1}), json!({"n": 2})],
        "{run}"
    );
    assert!(run.on("stuck.handled").is_empty());
}

behaviours!(
    only_the_allow_listed_names_exist,
    require_loads_modules_from_the_plugin_folder,
    require_outside_the_folder_is_a_catchable_error,
    require_outside_the_folder_says_why,
    a_memory_bomb_dead_letters_that_event_only,
    a_runaway_loop_dead_letters_that_event_only,
    a_runaway_loop_is_stopped_at_its_line,
    a_runaway_timer_callback_is_stopped,
    a_runaway_init_fails_that_plugin_only,
    a_loop_of_long_library_calls_is_stopped,
    // Lua's patterns run on plughost's own matcher, and Rhai's `pad` (the
    // one library call that builds a large value from a number alone)
    // looks at the time limit while it builds.
    a_runaway_library_call_is_stopped,
);

const RUNAWAY_PATTERN: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.kind == "pattern" then
    -- Backtracking inside the pattern matcher: about a second, and no Lua
    -- instruction for the time hook to stop (the matcher looks itself).
    string.find(string.rep("a", 20), string.rep("a*", 10) .. "b")
  end
  bus.publish("handled", { kind = e.payload.kind })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.kind == "pattern" {
    // One long call into the standard library (most of a second in a debug
    // build), and no script operation for the progress check to stop.
    let s = "";
    s.pad(10_000_000, 'a');
  }
  bus::publish("handled", #{ kind: e.payload.kind });
}
"#,
    native: None,
};

fn a_runaway_library_call_is_stopped(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 100}\n",
        RUNAWAY_PATTERN.get(rt),
    );
    let run = fx.run(&[
        ev("in", json!({"kind": "pattern"})),
        ev("in", json!({"kind": "ok"})),
    ]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(
        dl[0]["error"]
            .as_str()
            .unwrap()
            .contains("time limit exceeded"),
        "{run}"
    );
    assert_eq!(run.payloads("handled"), vec![json!({"kind": "ok"})]);
}
