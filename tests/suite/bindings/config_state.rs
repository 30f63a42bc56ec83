//! `config`, readable and read-only, whose parts are data like any other,
//! and `state`, which survives across events and hooks.

use serde_json::json;

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev};

use super::{at, line_of};

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
    native: Some("config"),
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
    if rt == Runtime::Native {
        // `host.config()` is a copy: the fixture changed its copy, and
        // `name` and `flag` above show the config did not change. There is
        // no assignment to fail.
        return;
    }
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
            Runtime::Native => unreachable!("returned above"),
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
    native: Some("config_as_data"),
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
    native: Some("state"),
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

// `[Native]`: also run against the native fixture crate.
behaviours!(
    config_is_readable_and_read_only[Native],
    config_parts_are_data_like_any_other[Native],
    state_survives_across_events_and_hooks[Native],
);
