//! Hostile Lua plugins: scripts that try to hang the host, exhaust its
//! memory or leave the sandbox. Each attacker (`bad`) runs beside a
//! well-behaved plugin (`good`) that must handle every event; each attack
//! event is dead-lettered with an error naming the attacker's file and line,
//! and the attacker handles the events between the attacks.

use serde_json::{Value, json};

use crate::bindings::{at, line_of};
use crate::support::{Fixture, Run, Runtime, ev};

/// The neighbour: handles every event it sees.
const GOOD: &str = r#"
function on_event(e)
  bus.publish("good.handled", { kind = e.payload.kind })
end
"#;

/// The attacker's `on_event`, after its `attacks` table: runs the attack
/// named by the event's `kind`, then reports the event handled.
const DISPATCH: &str = r#"
function on_event(e) -- @on-event
  local attack = attacks[e.payload.kind]
  if attack then attack() end
  bus.publish("bad.handled", { kind = e.payload.kind })
end
"#;

/// One attack and how its event must end: dead-lettered with an error that
/// names one of the lines marked `at` and then says `says`.
struct Attack {
    kind: &'static str,
    at: &'static [&'static str],
    says: &'static str,
}

/// The attacker's source: `attacks` (a Lua table constructor body) and
/// [`DISPATCH`].
fn attacker(attacks: &str) -> String {
    format!("attacks = {{\n{attacks}}}\n{DISPATCH}")
}

/// The kinds of the tapped payloads on `topic`.
fn kinds(run: &Run, topic: &str) -> Vec<Value> {
    run.payloads(topic)
        .iter()
        .map(|p| p["kind"].clone())
        .collect()
}

/// Runs each attack, followed by a harmless event, against `src` (plugin
/// `bad`, with `limits`) beside [`GOOD`], and checks that every event is
/// accounted for.
fn run_attacks(src: &str, limits: &str, attacks: &[Attack]) -> Run {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{limits}}}\n"),
        src,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let (mut input, mut all, mut harmless) = (Vec::new(), Vec::new(), Vec::new());
    for (i, a) in attacks.iter().enumerate() {
        let ok = format!("ok-{i}");
        input.push(ev("in", json!({"kind": a.kind})));
        input.push(ev("in", json!({"kind": ok})));
        all.extend([json!(a.kind), json!(ok)]);
        harmless.push(json!(ok));
    }
    let run = fx.run(&input);
    run.expect_code(0);
    assert_eq!(
        kinds(&run, "good.handled"),
        all,
        "the neighbour missed events\n{run}"
    );
    assert_eq!(kinds(&run, "bad.handled"), harmless, "{run}");
    let dl = run.dead_letters();
    let dead: Vec<&Value> = dl.iter().map(|d| &d["event"]["payload"]["kind"]).collect();
    let want: Vec<&str> = attacks.iter().map(|a| a.kind).collect();
    assert_eq!(dead, want, "{run}");
    for (d, a) in dl.iter().zip(attacks) {
        assert_eq!(d["plugin"], "bad", "{d}");
        let error = d["error"].as_str().unwrap();
        let placed = a.at.iter().any(|m| {
            let pos = at("bad", "main.lua", line_of(src, m));
            error.contains(&format!("{pos}: {}", a.says))
        });
        assert!(
            placed,
            "{}: should name one of the lines {:?} then say {:?}: {error}",
            a.kind, a.at, a.says
        );
    }
    run
}

const TIME: &str = "event_timeout_ms: 200";
const TIME_LIMIT: &str = "time limit exceeded";

// ---------------------------------------------------------------- CPU

#[test]
fn loops_and_recursion_stop_at_the_time_limit() {
    let src = attacker(
        r#"
  ["while"] = function() while true do end end, -- @while
  ["repeat"] = function() repeat local x = 1 until false end, -- @repeat
  ["goto"] = function() ::top:: goto top end, -- @goto
  ["tail-calls"] = function() local function f(n) return f(n + 1) end return f(1) end, -- @tail
  ["numeric-for"] = function() for i = 1, math.maxinteger do end end, -- @for
"#,
    );
    run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "while",
                at: &["while"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "repeat",
                at: &["repeat"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "goto",
                at: &["goto"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "tail-calls",
                at: &["tail"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "numeric-for",
                at: &["for"],
                says: TIME_LIMIT,
            },
        ],
    );
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let src = attacker(
        r#"
  ["recursion"] = function() local function f() return 1 + f() end f() end, -- @recursion
  ["through-gsub"] = function() local function f(s) return (s:gsub(".", f)) end f("ab") end, -- @through-gsub
  ["through-print"] = function() print(setmetatable({}, { __tostring = function(t) print(t) return "" end })) end, -- @through-print
  ["through-sort"] = function()
    local function f() table.sort({ 2, 1 }, function() f() return false end) end f() -- @through-sort
  end,
"#,
    );
    // Lua's own stack limits, the memory limit (a deep Lua stack) or the
    // time limit, whichever comes first: all are positioned errors.
    let run = run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "recursion",
                at: &["recursion", "on-event"],
                says: "",
            },
            Attack {
                kind: "through-gsub",
                at: &["through-gsub"],
                says: "",
            },
            Attack {
                kind: "through-print",
                at: &["through-print"],
                says: "",
            },
            Attack {
                kind: "through-sort",
                at: &["through-sort"],
                says: "",
            },
        ],
    );
    for d in run.dead_letters() {
        let error = d["error"].as_str().unwrap();
        assert!(
            error.contains("stack overflow")
                || error.contains(TIME_LIMIT)
                || error.contains("memory limit exceeded"),
            "{error}"
        );
    }
}

#[test]
fn long_library_calls_stop_at_the_time_limit() {
    let src = attacker(
        r#"
  ["rep"] = function() while true do local s = string.rep("x", 100000) end end, -- @rep
  ["concat"] = function()
    local t = {} for i = 1, 10000 do t[i] = "x" end
    while true do local s = table.concat(t, ",") end -- @concat
  end,
  ["sort"] = function()
    local t = {} for i = 1, 100 do t[i] = i end
    table.sort(t, function(a, b) while true do end end) -- @sort
  end,
  ["gsub-function"] = function()
    string.gsub(("x"):rep(100), ".", function() while true do end end) -- @gsub-function
  end,
  ["find"] = function() string.find(("a"):rep(400), (".-"):rep(8) .. "b") end, -- @find
  ["method"] = function() local s = ("a"):rep(400) s:find((".-"):rep(8) .. "b") end, -- @method
  ["match"] = function() string.match(("a"):rep(400), (".-"):rep(8) .. "b") end, -- @match
  ["gmatch"] = function() for _ in string.gmatch(("a"):rep(400), (".-"):rep(8) .. "b") do end end, -- @gmatch
  ["gsub"] = function() string.gsub(("a"):rep(400), (".-"):rep(8) .. "b", "") end, -- @gsub
  ["plain-find"] = function()
    local hay, needle = ("a"):rep(1000000), ("a"):rep(500000) .. "b"
    while true do string.find(hay, needle, 1, true) end -- @plain-find
  end,
"#,
    );
    run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "rep",
                at: &["rep"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "concat",
                at: &["concat"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "sort",
                at: &["sort"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "gsub-function",
                at: &["gsub-function"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "find",
                at: &["find"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "method",
                at: &["method"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "match",
                at: &["match"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "gmatch",
                at: &["gmatch"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "gsub",
                at: &["gsub"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "plain-find",
                at: &["plain-find"],
                says: TIME_LIMIT,
            },
        ],
    );
}

#[test]
fn message_handlers_and_pcall_cannot_outlast_the_time_limit() {
    let src = attacker(
        r#"
  ["handler-after-limit"] = function()
    xpcall(function() while true do end end, function() while true do end end) -- @handler-after-limit
  end,
  ["handler-after-error"] = function()
    xpcall(error, function() while true do end end) -- @handler-after-error
  end,
  ["callable-handler"] = function()
    local h = setmetatable({}, { __call = function() while true do end end })
    xpcall(function() while true do end end, h) -- @callable-handler
  end,
  ["pcall-and-go-on"] = function()
    while true do pcall(function() while true do end end) end -- @pcall-and-go-on
  end,
  ["caught-then-loop"] = function()
    local ok = pcall(function() while true do end end) -- @caught
    while true do end -- @caught-loop
  end,
  ["error-object"] = function()
    local ok, err = pcall(error, setmetatable({}, { __tostring = function() while true do end end })) -- @tostring
    print(err) -- @error-object
  end,
  ["error-value"] = function()
    error(setmetatable({}, { __tostring = function() while true do end end })) -- @error-value
  end,
"#,
    );
    run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "error-value",
                at: &["error-value"],
                says: "",
            },
            Attack {
                kind: "handler-after-limit",
                at: &["handler-after-limit"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "handler-after-error",
                at: &["handler-after-error"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "callable-handler",
                at: &["callable-handler"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "pcall-and-go-on",
                at: &["pcall-and-go-on"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "caught-then-loop",
                at: &["caught", "caught-loop"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "error-object",
                at: &["tostring", "error-object"],
                says: TIME_LIMIT,
            },
        ],
    );
}

#[test]
fn coroutines_cannot_outlast_the_time_limit() {
    let src = attacker(
        r#"
  ["loop-inside"] = function()
    local co = coroutine.create(function() while true do end end) -- @loop-inside
    while true do coroutine.resume(co) end -- @loop-inside-resume
  end,
  ["yield-forever"] = function()
    local next = coroutine.wrap(function() while true do coroutine.yield() end end) -- @yield
    while true do next() end -- @yield-loop
  end,
  ["fresh-coroutines"] = function()
    while true do coroutine.resume(coroutine.create(function() end)) end -- @fresh
  end,
  ["nested"] = function()
    local function nest(n)
      return coroutine.wrap(function() if n == 0 then while true do end end nest(n - 1)() end) -- @nested
    end
    nest(50)()
  end,
  ["close"] = function()
    local co = coroutine.create(function()
      local guard <close> = setmetatable({}, { __close = function() while true do end end }) -- @close
      coroutine.yield()
    end)
    coroutine.resume(co)
    coroutine.close(co) -- @close-call
  end,
"#,
    );
    run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "loop-inside",
                at: &["loop-inside", "loop-inside-resume"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "yield-forever",
                at: &["yield", "yield-loop"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "fresh-coroutines",
                at: &["fresh"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "nested",
                at: &["nested"],
                says: TIME_LIMIT,
            },
            Attack {
                kind: "close",
                at: &["close", "close-call"],
                says: TIME_LIMIT,
            },
        ],
    );
}

#[test]
fn finalizers_and_collector_settings_are_refused() {
    let src = attacker(
        r#"
  ["gc"] = function()
    setmetatable({}, { __gc = function() while true do end end }) -- @gc
  end,
  ["gc-in-pcall"] = function()
    local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
    error(err, 0)
  end,
  ["stop"] = function() collectgarbage("stop") end, -- @stop
  ["generational"] = function() collectgarbage("generational") end, -- @generational
"#,
    );
    // Refused where the script asked; `gc-in-pcall` re-raises the refusal,
    // which names the line of the `pcall` that called `setmetatable`.
    let run = run_attacks(
        &src,
        TIME,
        &[
            Attack {
                kind: "gc",
                at: &["gc"],
                says: "setmetatable: a metatable with `__gc` is refused",
            },
            Attack {
                kind: "stop",
                at: &["stop"],
                says: "collectgarbage: option 'stop' is not allowed",
            },
            Attack {
                kind: "generational",
                at: &["generational"],
                says: "collectgarbage: option 'generational' is not allowed",
            },
        ],
    );
    drop(run);
    let fx = Fixture::new();
    let late = r#"
function on_event(e)
  local mt = {}
  local t = setmetatable({}, mt)
  -- Too late: Lua 5.4 never calls a `__gc` added after `setmetatable`.
  mt.__gc = function() while true do end end
  t = nil
  collectgarbage()
  collectgarbage()
  local ok, err = pcall(setmetatable, {}, { __gc = function() while true do end end })
  bus.publish("bad.handled", { kind = e.payload.kind, refused = not ok, err = tostring(err) })
end
"#;
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{TIME}}}\n"),
        late,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let run = fx.run(&[
        ev("in", json!({"kind": "late"})),
        ev("in", json!({"kind": "after"})),
    ]);
    run.expect_code(0);
    assert_eq!(kinds(&run, "good.handled"), vec!["late", "after"], "{run}");
    let handled = run.payloads("bad.handled");
    assert_eq!(handled.len(), 2, "{run}");
    assert_eq!(handled[0]["refused"], true, "{run}");
    assert!(
        handled[0]["err"]
            .as_str()
            .unwrap()
            .contains("`__gc` is refused"),
        "{run}"
    );
    assert!(run.dead_letters().is_empty(), "{run}");
}

#[test]
fn a_module_requiring_itself_is_an_error_not_a_crash() {
    let src = attacker(
        r#"
  ["require"] = function() require("again") end,
"#,
    );
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{TIME}}}\n"),
        &src,
    );
    fx.file("bad/again.lua", "require('again')\n");
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let run = fx.run(&[
        ev("in", json!({"kind": "require"})),
        ev("in", json!({"kind": "after"})),
    ]);
    run.expect_code(0);
    assert_eq!(
        kinds(&run, "good.handled"),
        vec!["require", "after"],
        "{run}"
    );
    assert_eq!(kinds(&run, "bad.handled"), vec!["after"], "{run}");
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    // Raised where the innermost `require` ran: in the module.
    let error = dl[0]["error"].as_str().unwrap();
    assert!(
        error.contains("/bad/again.lua:1: C stack overflow (require calls back into the script"),
        "{error}"
    );
}

// ---------------------------------------------------------------- memory

const MEMORY: &str = "memory_mb: 16, event_timeout_ms: 10000";
const MEMORY_LIMIT: &str = "memory limit exceeded (limits.memory_mb = 16)";

#[test]
fn memory_bombs_fail_that_call_with_a_line() {
    let src = attacker(
        r#"
  ["table"] = function() local t = {} for i = 1, 1e9 do t[i] = i end end, -- @table
  ["string"] = function() local s = "x" while true do s = s .. s end end, -- @string
  ["rep"] = function() local s = string.rep("x", 1e9) end, -- @rep
  ["rep-huge"] = function() local s = ("abc"):rep(7e8, "") end, -- @rep-huge
  ["concat"] = function()
    local t = {} for i = 1, 3000 do t[i] = ("x"):rep(1000) end
    while true do t[#t + 1] = table.concat(t) end -- @concat
  end,
  ["coroutines"] = function()
    local all = {} for i = 1, 1e8 do all[i] = coroutine.create(function() end) end -- @coroutines
  end,
  ["gsub"] = function() local s = ("x"):rep(100000):gsub("x", ("y"):rep(1000)) end, -- @gsub
  ["keys"] = function() local t = {} for i = 1, 1e9 do t["k" .. i] = true end end, -- @keys
"#,
    );
    // The line the script was at, or at least the line of the hook function
    // that was running.
    run_attacks(
        &src,
        MEMORY,
        &[
            Attack {
                kind: "table",
                at: &["table", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "string",
                at: &["string", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "rep",
                at: &["rep", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "rep-huge",
                at: &["rep-huge", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "concat",
                at: &["concat", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "coroutines",
                at: &["coroutines", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "gsub",
                at: &["gsub", "on-event"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "keys",
                at: &["keys", "on-event"],
                says: MEMORY_LIMIT,
            },
        ],
    );
}

#[test]
fn a_long_running_memory_bomb_names_its_own_line() {
    // Enough instructions before the cap for the watch to note the line.
    let src = attacker(
        r#"
  ["table"] = function() local t = {} for i = 1, 1e9 do t[i] = i end end, -- @table
  ["pieces"] = function() local t = {} for i = 1, 1e9 do t[i] = { i } end end, -- @pieces
"#,
    );
    run_attacks(
        &src,
        MEMORY,
        &[
            Attack {
                kind: "table",
                at: &["table"],
                says: MEMORY_LIMIT,
            },
            Attack {
                kind: "pieces",
                at: &["pieces"],
                says: MEMORY_LIMIT,
            },
        ],
    );
}

#[test]
fn a_memory_bomb_at_load_names_its_line() {
    let fx = Fixture::new();
    let at_load = "local t = {}\nfor i = 1, 1e9 do t[i] = i end -- @grow\n";
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{MEMORY}}}\n"),
        at_load,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let run = fx.run(&[ev("in", json!({"kind": "one"}))]);
    assert_eq!(kinds(&run, "good.handled"), vec!["one"], "{run}");
    let failed = run.payloads("plughost.plugin.failed");
    assert_eq!(failed.len(), 1, "{run}");
    let pos = at("bad", "main.lua", line_of(at_load, "grow"));
    let error = failed[0]["error"].as_str().unwrap();
    assert!(error.contains(&format!("{pos}: {MEMORY_LIMIT}")), "{error}");
}

// ---------------------------------------------------------------- parser

#[test]
fn deeply_nested_chunks_are_positioned_errors() {
    let fx = Fixture::new();
    let src = r#"
function on_event(e)
  local f, err = load(("("):rep(100000))
  local g, named = load("return " .. ("{"):rep(10000), "=deep")
  local ok, required = pcall(require, "nested") -- @require
  bus.publish("bad.handled", { kind = e.payload.kind, err = err, named = named, required = required })
end
"#;
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{TIME}}}\n"),
        src,
    );
    let nested = format!(
        "local a = 1\nreturn {}1{}\n",
        "(".repeat(10_000),
        ")".repeat(10_000)
    );
    fx.file("bad/nested.lua", &nested);
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let deep_entry = format!("-- fine\nlocal x = {}\n", "(".repeat(10_000));
    fx.plugin(Runtime::Lua, "deep", "subscriptions: [in]\n", &deep_entry);
    let run = fx.run(&[ev("in", json!({"kind": "one"}))]);
    // A plugin failed to start (`deep`): exit 1, after handling the input.
    run.expect_code(1);
    assert_eq!(kinds(&run, "good.handled"), vec!["one"], "{run}");
    let r = run.only("bad.handled");
    let err = r["err"].as_str().unwrap();
    assert!(
        err.starts_with("[string \"((((") && err.contains("\"]:1: chunk nested too deeply"),
        "{err}"
    );
    assert_eq!(
        r["named"],
        "deep:1: chunk nested too deeply (C stack overflow)"
    );
    let required = r["required"].as_str().unwrap();
    assert!(
        required.contains("/bad/nested.lua:2: chunk nested too deeply"),
        "{required}"
    );
    let failed = run.payloads("plughost.plugin.failed");
    assert_eq!(failed.len(), 1, "{run}");
    assert_eq!(failed[0]["plugin"], "deep");
    let error = failed[0]["error"].as_str().unwrap();
    assert!(
        error.contains("/deep/main.lua:2: chunk nested too deeply"),
        "{error}"
    );
    // `plughost check` says the same of the entry and the module.
    let check = fx.check();
    for file in ["/deep/main.lua:2", "/bad/nested.lua:2"] {
        assert!(
            check
                .stdout
                .contains(&format!("{file}: chunk nested too deeply"))
                || check
                    .stderr
                    .contains(&format!("{file}: chunk nested too deeply")),
            "{file}\n{check}"
        );
    }
}

// ---------------------------------------------------------------- escapes

const ESCAPES: &str = r#"
local function try(f, ...)
  local ok, err = pcall(f, ...)
  return ok and "ran" or tostring(err)
end

function on_event(e)
  local r = {}
  r.io = type(io)
  r.debug = type(debug)
  r.package = type(package)
  r.os_execute = type(os.execute)
  r.os_getenv = type(os.getenv)
  r.dofile = type(dofile)
  r.loadfile = type(loadfile)
  r.dump = type(string.dump)
  -- Bytecode, whichever way it is handed to `load`.
  local binary = "\27Lua\84\0\25\147\13\10\26\10"
  r.binary = select(2, load(binary, "b", "b"))
  local parts = { binary }
  r.binary_reader = select(2, load(function() return table.remove(parts) end))
  -- A custom environment sees only what it is given.
  r.env = load("return io, os and os.execute, debug", "env", "t", { os = os })() == nil
  r.env_g = load("return io", "env", "t", _G)() == nil
  -- `_ENV` tricks find nothing more than `_G` holds.
  r.env_local = (function() local _ENV = { _G = _G } return _G.io end)() == nil
  r.env_upvalue = (function() local _ENV = setmetatable({}, { __index = _G }) return io end)() == nil
  -- Modules: nowhere but the plugin folder.
  r.parent = try(require, "../outside")
  r.absolute = try(require, config.absolute)
  r.link = try(require, "link")
  -- Read-only config, also through rawset.
  r.config_set = try(function() config.key = "changed" end)
  r.config_rawset = try(rawset, config, "key", "changed")
  r.config_rawget = rawget(config, "key") == nil and config.key == "value"
  r.config_metatable = try(setmetatable, config, {})
  -- The collector's settings.
  r.gc_stop = try(collectgarbage, "stop")
  r.gc_count = type(collectgarbage("count"))
  bus.publish("bad.report", r)
end
"#;

#[test]
fn the_sandbox_holds_against_escapes() {
    let fx = Fixture::new();
    let outside = fx.file("outside.lua", "return 'outside'\n");
    let absolute = outside.with_extension("");
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!(
            "subscriptions: [in]\nlimits: {{{TIME}}}\nconfig: {{key: value, absolute: {:?}}}\n",
            absolute.to_str().unwrap()
        ),
        ESCAPES,
    );
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, fx.path().join("bad/link.lua")).unwrap();
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let run = fx.run(&[ev("in", json!({"kind": "one"}))]);
    run.expect_code(0);
    assert_eq!(kinds(&run, "good.handled"), vec!["one"], "{run}");
    let r = run.only("bad.report");
    for name in [
        "io",
        "debug",
        "package",
        "os_execute",
        "os_getenv",
        "dofile",
        "loadfile",
        "dump",
    ] {
        assert_eq!(r[name], "nil", "{name}: {r}");
    }
    for name in ["binary", "binary_reader"] {
        assert!(r[name].as_str().unwrap().contains("binary"), "{name}: {r}");
    }
    for name in ["env", "env_g", "env_local", "env_upvalue", "config_rawget"] {
        assert_eq!(r[name], true, "{name}: {r}");
    }
    let mut refused = vec!["parent", "absolute"];
    if cfg!(unix) {
        refused.push("link");
    }
    for name in refused {
        let err = r[name].as_str().unwrap();
        assert!(
            err.contains("require") && !err.contains("'outside'"),
            "{name}: {err}"
        );
    }
    for name in ["config_set", "config_rawset"] {
        assert!(
            r[name].as_str().unwrap().contains("config is read-only"),
            "{name}: {r}"
        );
    }
    assert!(
        r["config_metatable"]
            .as_str()
            .unwrap()
            .contains("protected metatable"),
        "{r}"
    );
    assert!(
        r["gc_stop"].as_str().unwrap().contains("not allowed"),
        "{r}"
    );
    assert_eq!(r["gc_count"], "number");
}

const TAMPER: &str = r#"
function on_event(e)
  local kind = e.payload.kind
  if kind == "string-metatable" then
    -- Every string method of this plugin now loops; nobody else's.
    getmetatable("").__index = function() while true do end end -- @string-loop
  elseif kind == "use-strings" then
    local n = ("abc"):len() -- @use-strings
  elseif kind == "global-metatable" then
    setmetatable(_G, {
      __index = function() while true do end end, -- @global-loop
      __newindex = function() while true do end end,
    })
    config = nil
  elseif kind == "use-globals" then
    local x = undefined_global -- @use-globals
  elseif kind == "return-tostring" then
    return setmetatable({}, { __tostring = function() while true do end end })
  end
  rawget(_G, "bus").publish("bad.handled", { kind = kind })
end
"#;

#[test]
fn tampering_with_shared_metatables_stays_in_the_plugin() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{TIME}}}\n"),
        TAMPER,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let order = [
        "string-metatable",
        "use-strings",
        "global-metatable",
        "use-globals",
        "return-tostring",
        "last",
    ];
    let input: Vec<Value> = order.iter().map(|k| ev("in", json!({"kind": k}))).collect();
    let run = fx.run(&input);
    run.expect_code(0);
    assert_eq!(kinds(&run, "good.handled"), order.to_vec(), "{run}");
    assert_eq!(
        kinds(&run, "bad.handled"),
        vec!["string-metatable", "global-metatable", "last"],
        "{run}"
    );
    let dl = run.dead_letters();
    let dead: Vec<&Value> = dl.iter().map(|d| &d["event"]["payload"]["kind"]).collect();
    assert_eq!(
        dead,
        vec!["use-strings", "use-globals", "return-tostring"],
        "{run}"
    );
    // Stopped in the looping metamethod, or at the line that ran into it.
    for (d, markers) in dl.iter().zip([
        ["use-strings", "string-loop"],
        ["use-globals", "global-loop"],
    ]) {
        let error = d["error"].as_str().unwrap();
        let placed = markers.iter().any(|m| {
            let pos = at("bad", "main.lua", line_of(TAMPER, m));
            error.contains(&format!("{pos}: {TIME_LIMIT}"))
        });
        assert!(
            placed,
            "{markers:?}: should name one of these lines: {error}"
        );
    }
    // Named by its type: the host runs no `__tostring` outside the limit.
    let error = dl[2]["error"].as_str().unwrap();
    assert!(
        error.contains("/bad/main.lua: on_event returned a table;"),
        "{error}"
    );
}

/// Takes the metatable the host gives empty arrays and puts a looping
/// `__gc` in it: the host itself would then mark the next empty array for
/// finalization, which Lua runs with the time limit off.
const HOST_METATABLE: &str = r#"
function on_event(e)
  local mt = getmetatable(e.payload.empty)
  local took = type(mt) == "table"
  if took then
    mt.__gc = function() while true do end end
    mt.__index = function() while true do end end
  end
  collectgarbage()
  bus.publish("bad.handled", { kind = e.payload.kind, took = took, got = type(mt) })
end
"#;

#[test]
fn the_host_s_own_metatables_are_out_of_reach() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{TIME}}}\n"),
        HOST_METATABLE,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let input: Vec<Value> = (0..4)
        .map(|i| ev("in", json!({"kind": format!("e{i}"), "empty": []})))
        .collect();
    let run = fx.run(&input);
    run.expect_code(0);
    assert_eq!(
        kinds(&run, "good.handled"),
        vec!["e0", "e1", "e2", "e3"],
        "{run}"
    );
    let handled = run.payloads("bad.handled");
    assert_eq!(handled.len(), 4, "{run}");
    for h in handled {
        assert_eq!(h["took"], false, "{h}");
        assert_eq!(h["got"], "boolean", "{h}");
    }
}
