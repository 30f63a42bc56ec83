//! Lua memory attacks, and chunks nested too deep for the parser.

use serde_json::json;

use super::*;
use crate::bindings::{at, line_of};
use crate::support::{Fixture, Runtime, ev};

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
