//! SPEC §4 `bus.request` and `outcome.reply` on one host, for every runtime:
//! a request answered by another plugin, a timeout the script catches (and
//! one it does not, naming the line), a request nothing could answer or
//! only the requester could (refused at once), one whose wait runs into
//! the hook's time limit, and a plugin that requests in a loop.
//!
//! Runs that must see "nothing subscribes" tap only the topics they read:
//! a tap is an application subscriber, and `--tap '>'` subscribes to all.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::behaviours;
use crate::bindings::{at, line_of, names_at};
use crate::support::{Fixture, Run, Runtime, Src, ev, run_binary, tokio_rt};

/// Runs the fixture with `input`, tapping only `taps`.
fn run_tapping(fx: &Fixture, input: &[Value], taps: &[&str]) -> Run {
    let stdin: String = input.iter().map(|v| format!("{v}\n")).collect();
    let mut args = vec![
        "run",
        "--plugins",
        fx.path().to_str().unwrap(),
        "--input",
        "-",
        "--exit-when-idle",
    ];
    for tap in taps {
        args.extend(["--tap", tap]);
    }
    run_binary(&args, Some(&stdin))
}

const ASKER: Src = Src {
    lua: r#"
function on_event(e)
  local answer = bus.request("ask.double", { n = e.payload.n }, 5000)
  bus.publish("answer", { n = answer.n, by = answer.by })
end
"#,
    rhai: r#"
fn on_event(e) {
  let answer = bus::request("ask.double", #{ n: e.payload.n }, 5000);
  bus::publish("answer", #{ n: answer.n, by: answer.by });
}
"#,
    native: Some("request_asker"),
};

const ANSWERER: Src = Src {
    lua: r#"
function on_event(e)
  return outcome.reply({ n = e.payload.n * 2, by = "answerer" })
end
"#,
    rhai: r#"
fn on_event(e) {
  outcome::reply(#{ n: e.payload.n * 2, by: "answerer" })
}
"#,
    native: Some("request_answerer"),
};

const SILENT: Src = Src {
    lua: "function on_event(e) end\n",
    rhai: "fn on_event(e) { }\n",
    native: Some("silent"),
};

fn a_request_is_answered_by_another_plugins_reply(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "asker", "subscriptions: [in]\n", ASKER.get(rt));
    fx.plugin(
        rt,
        "answerer",
        "subscriptions: [ask.double]\n",
        ANSWERER.get(rt),
    );
    // The second input is no request: its reply is only an acknowledgement.
    let run = fx.run(&[
        ev("in", json!({"n": 21})),
        ev("ask.double", json!({"n": 1})),
    ]);
    run.expect_code(0);
    assert_eq!(
        run.only("answer"),
        json!({"n": 42, "by": "answerer"}),
        "{run}"
    );
    // The request is an event like any other, caused by the asker's event.
    let requests = run.on("ask.double");
    assert_eq!(requests.len(), 2, "{run}");
    let request = requests.iter().find(|r| r["source"] == "asker").unwrap();
    let input = &run.on("in")[0];
    assert_eq!(request["correlation_id"], input["id"], "{run}");
    assert!(request.get("reply_to").is_none(), "{request}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

const TIMEOUT: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.guard then
    local ok, err = pcall(bus.request, "ask.silent", {}, 50) -- @request-caught
    bus.publish("caught", { ok = ok, text = tostring(err) })
  else
    bus.request("ask.silent", {}, 50) -- @request-uncaught
  end
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.guard {
    try {
      bus::request("ask.silent", #{}, 50); // @request-caught
      bus::publish("caught", #{ ok: true });
    } catch (err) {
      bus::publish("caught", #{ ok: false, text: `${err}` });
    }
  } else {
    bus::request("ask.silent", #{}, 50); // @request-uncaught
  }
}
"#,
    native: Some("request_timeout"),
};

fn a_timeout_is_an_error_the_script_catches_naming_the_line(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "asker", "subscriptions: [in]\n", TIMEOUT.get(rt));
    fx.plugin(
        rt,
        "silent",
        "subscriptions: [ask.silent]\n",
        SILENT.get(rt),
    );
    let run = fx.run(&[
        ev("in", json!({"guard": true})),
        ev("in", json!({"guard": false})),
    ]);
    run.expect_code(0);
    let caught = run.only("caught");
    assert_eq!(caught["ok"], false, "{run}");
    let text = caught["text"].as_str().unwrap();
    assert!(
        text.contains("no reply on `ask.silent` within 50 ms"),
        "{text}"
    );
    // Caught, a Lua error names the calling line; Rhai's `catch` and a
    // native `Err` get the bare message.
    if rt == Runtime::Lua {
        let src = TIMEOUT.get(rt);
        let pos = at("asker", rt.entry(), line_of(src, "request-caught"));
        assert!(names_at(rt, text, &pos, ": "), "{text}");
    }
    // Not caught, it dead-letters the event with the line (scripts).
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    assert!(
        error.contains("no reply on `ask.silent` within 50 ms"),
        "{error}"
    );
    if rt != Runtime::Native {
        let src = TIMEOUT.get(rt);
        let pos = at("asker", rt.entry(), line_of(src, "request-uncaught"));
        assert!(names_at(rt, error, &pos, ": "), "{error}");
    }
}

const REFUSED: Src = Src {
    lua: r#"
function on_event(e)
  local report = {}
  for _, topic in ipairs({ "nobody.home", "self.q" }) do
    local ok, err = pcall(bus.request, topic, {}, 30000)
    report[topic] = { ok = ok, text = tostring(err) }
  end
  bus.publish("report", report)
end
"#,
    rhai: r#"
fn on_event(e) {
  let report = #{};
  for topic in ["nobody.home", "self.q"] {
    try {
      bus::request(topic, #{}, 30000);
      report[topic] = #{ ok: true };
    } catch (err) {
      report[topic] = #{ ok: false, text: `${err}` };
    }
  }
  bus::publish("report", report);
}
"#,
    native: Some("request_refused"),
};

fn a_request_nobody_or_only_the_requester_could_answer_fails_at_once(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "asker",
        "subscriptions: [in, self.q]\nlimits: {event_timeout_ms: 30000}\n",
        REFUSED.get(rt),
    );
    let started = Instant::now();
    let run = run_tapping(&fx, &[ev("in", json!({}))], &["report"]);
    run.expect_code(0);
    // Either would have waited 30 s.
    assert!(started.elapsed() < Duration::from_secs(20), "{run}");
    let report = run.only("report");
    let nobody = &report["nobody.home"];
    assert_eq!(nobody["ok"], false, "{report}");
    assert!(
        nobody["text"]
            .as_str()
            .unwrap()
            .contains("request on `nobody.home`: nothing subscribes to it"),
        "{report}"
    );
    let own = &report["self.q"];
    assert_eq!(own["ok"], false, "{report}");
    assert!(
        own["text"]
            .as_str()
            .unwrap()
            .contains("this plugin subscribes to `self.q` itself"),
        "{report}"
    );
    assert!(run.dead_letters().is_empty(), "{run}");
}

const PAST_LIMIT: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.n == 1 then
    pcall(bus.request, "ask.silent", {}, 60000) -- @request-past-limit
    bus.publish("survived", {})
  end
  bus.publish("after", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.n == 1 {
    try {
      bus::request("ask.silent", #{}, 60000); // @request-past-limit
    } catch (err) { }
    bus::publish("survived", #{});
  }
  bus::publish("after", #{ n: e.payload.n });
}
"#,
    native: Some("request_past_limit"),
};

fn a_request_past_the_hooks_limit_ends_at_the_limit(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "asker",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 300}\n",
        PAST_LIMIT.get(rt),
    );
    fx.plugin(
        rt,
        "silent",
        "subscriptions: [ask.silent]\n",
        SILENT.get(rt),
    );
    let started = Instant::now();
    let run = fx.run(&[ev("in", json!({"n": 1})), ev("in", json!({"n": 2}))]);
    run.expect_code(0);
    // The request asked for 60 s; the hook had 300 ms.
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");
    assert!(run.on("survived").is_empty(), "{run}");
    assert_eq!(run.payloads("after"), [json!({"n": 2})], "{run}");
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert_eq!(dl[0]["event"]["payload"], json!({"n": 1}), "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    match rt {
        // The time limit's error, at the request's line, which the
        // script's `pcall`/`try` did not keep.
        Runtime::Lua | Runtime::Rhai => {
            assert!(error.contains("time limit exceeded"), "{error}");
            let src = PAST_LIMIT.get(rt);
            let pos = at("asker", rt.entry(), line_of(src, "request-past-limit"));
            assert!(names_at(rt, error, &pos, ": "), "{error}");
        }
        // Native code cannot be stopped: its request fails at the limit.
        Runtime::Native => assert!(error.contains("no reply on `ask.silent`"), "{error}"),
    }
}

const REQUEST_LOOP: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.n == 1 then
    while true do
      pcall(bus.request, "ask.silent", {}, 10)
      pcall(bus.request, "nobody.home", {}, 10)
    end
  end
  bus.publish("after", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.n == 1 {
    loop {
      try { bus::request("ask.silent", #{}, 10); } catch (err) { }
      try { bus::request("nobody.home", #{}, 10); } catch (err) { }
    }
  }
  bus::publish("after", #{ n: e.payload.n });
}
"#,
    native: None,
};

/// Hostile: requests in a loop, to a topic nobody answers and to one nobody
/// subscribes to, catching every error, never hold the host past the
/// hook's limit. (Scripts only: native code is not interrupted, and the
/// supervisor abandons a native hook that keeps running, as for any loop.)
fn requests_in_a_loop_stop_at_the_time_limit(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "asker",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 300}\n",
        REQUEST_LOOP.get(rt),
    );
    fx.plugin(
        rt,
        "silent",
        "subscriptions: [ask.silent]\n",
        SILENT.get(rt),
    );
    let started = Instant::now();
    let run = run_tapping(
        &fx,
        &[ev("in", json!({"n": 1})), ev("in", json!({"n": 2}))],
        &["after", "plughost.dead_letter"],
    );
    run.expect_code(0);
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    assert!(
        dl[0]["error"]
            .as_str()
            .unwrap()
            .contains("time limit exceeded"),
        "{run}"
    );
    assert_eq!(run.payloads("after"), [json!({"n": 2})], "{run}");
}

/// The embedding application asks too (`Host::request`), answered by a
/// plugin; nothing subscribing fails at once.
fn the_application_requests_and_a_plugin_replies(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "answerer",
        "subscriptions: [ask.double]\n",
        ANSWERER.get(rt),
    );
    tokio_rt().block_on(async {
        let host = plughost::Host::builder()
            .plugins_dir(fx.path())
            .build()
            .unwrap();
        assert!(host.start().await.failed.is_empty());
        let reply = host
            .request("ask.double", json!({"n": 4}), Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(reply, json!({"n": 8, "by": "answerer"}));
        let started = Instant::now();
        let err = host
            .request("nobody.home", json!({}), Duration::from_secs(30))
            .await
            .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            err,
            plughost::host::RequestError::NoSubscriber {
                topic: "nobody.home".into()
            }
        );
        host.shutdown(Duration::from_secs(5)).await;
    });
}

behaviours!(
    the_application_requests_and_a_plugin_replies[Native],
    a_request_is_answered_by_another_plugins_reply[Native],
    a_timeout_is_an_error_the_script_catches_naming_the_line[Native],
    a_request_nobody_or_only_the_requester_could_answer_fails_at_once[Native],
    a_request_past_the_hooks_limit_ends_at_the_limit[Native],
    requests_in_a_loop_stop_at_the_time_limit,
);
