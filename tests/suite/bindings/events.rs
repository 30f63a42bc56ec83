//! The event a hook is handed (every field, every kind of payload value)
//! and the `outcome` values `on_event` may return.

use serde_json::json;

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev};

use super::{at, line_of};

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
    native: Some("event_fields"),
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
    native: Some("payload_types"),
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
        // The fixture names `serde_json::Value`'s kinds.
        Runtime::Native => ("integer", "float", "boolean", "object"),
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

const CHANGING_TYPES: Src = Src {
    lua: r#"
local function size(v)
  if type(v) ~= "table" then return #v end
  local n = 0
  for _ in pairs(v) do n = n + 1 end
  return n
end

function on_event(e)
  bus.publish("size", { n = size(e.payload.v) })
end
"#,
    rhai: r#"
fn size(v) { v.len() }

fn on_event(e) {
  bus::publish("size", #{ n: size(e.payload.v) });
}
"#,
    native: None,
};

/// One event after another, the same code meets values of other types: each
/// call finds the function for the value it has (Rhai keeps what it resolved
/// from one event to the next).
fn each_event_calls_the_function_for_its_values(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", CHANGING_TYPES.get(rt));
    let values = [
        json!("abc"),
        json!([1, 2]),
        json!({"a": 1, "b": 2, "c": 3, "d": 4}),
        json!(""),
        json!(["x"]),
        json!("hello"),
    ];
    let input: Vec<_> = values.iter().map(|v| ev("in", json!({ "v": v }))).collect();
    let run = fx.run(&input);
    run.expect_code(0);
    let sizes: Vec<_> = run
        .payloads("size")
        .iter()
        .map(|p| p["n"].clone())
        .collect();
    assert_eq!(sizes, [3, 2, 4, 0, 1, 5], "{run}");
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
    native: None,
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
        Runtime::Native => unreachable!("not run against native plugins"),
    }
    assert_eq!(o["bad_retry_ok"], false);
    let err = o["bad_retry"].as_str().unwrap();
    let pos = at("p", rt.entry(), line_of(src, "bad-retry"));
    match rt {
        Runtime::Lua => assert!(err.contains(&pos), "should name {pos}: {err}"),
        // A caught Rhai error is the bare message.
        Runtime::Rhai => assert!(!err.contains(rt.entry()), "no position: {err}"),
        Runtime::Native => unreachable!("not run against native plugins"),
    }
    assert!(err.contains(&rt.binding("outcome", "retry")), "{err}");
    // `outcome.drop()` without a reason still dead-letters, with some reason.
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(dl[0]["error"].as_str().is_some_and(|s| !s.is_empty()));
}

// `[Native]`: also run against the native fixture crate. Outcome values and
// their argument checks are the scripts' (Rust has the `Outcome` type).
behaviours!(
    event_fields_reach_the_script[Native],
    payload_values_have_native_types[Native],
    each_event_calls_the_function_for_its_values,
    outcome_values_and_their_argument_checks,
);
