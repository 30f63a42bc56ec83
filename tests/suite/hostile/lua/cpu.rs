//! Lua CPU attacks: loops, recursion, long library calls, message handlers,
//! coroutines, finalizers, a module requiring itself.

use serde_json::json;

use super::*;
use crate::support::{Fixture, Runtime, ev};

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
