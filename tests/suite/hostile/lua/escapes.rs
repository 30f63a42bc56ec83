//! Lua sandbox escapes: io, os, bytecode, debug, require, `_ENV`,
//! metatables shared with the host or other plugins.

use serde_json::{Value, json};

use super::*;
use crate::bindings::{at, line_of};
use crate::support::{Fixture, Runtime, ev};

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
