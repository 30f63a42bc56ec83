//! `plughost test`: a plugin alone against recorded events, its output, and
//! `--expect` files, for every script runtime; and the examples' own tests.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Run, Runtime, Src, run_binary};

/// `plughost test DIR --events EVENTS [--expect EXPECT]`.
fn test(dir: &Path, events: &Path, expect: Option<&Path>) -> Run {
    let mut args = vec![
        "test",
        dir.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ];
    if let Some(e) = expect {
        args.extend(["--expect", e.to_str().unwrap()]);
    }
    run_binary(&args, None)
}

/// Every stdout line, parsed.
fn lines(run: &Run) -> Vec<Value> {
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{run}")))
        .collect()
}

const EVERY_OUTCOME: Src = Src {
    lua: r#"function init()
  bus.publish("ready", { ok = true })
end
function on_event(e)
  if e.payload.n == 2 then error("boom") end
  if e.payload.n == 3 then return outcome.forward("fwd", { n = 3 }) end
  bus.publish("seen", { n = e.payload.n })
end
"#,
    rhai: r#"fn init() {
  bus::publish("ready", #{ ok: true });
}
fn on_event(e) {
  if e.payload.n == 2 { throw "boom"; }
  if e.payload.n == 3 { return outcome::forward("fwd", #{ n: 3 }); }
  bus::publish("seen", #{ n: e.payload.n });
}
"#,
    native: None,
};

const EVENTS: &str = r#"# one of each outcome
{"topic": "in", "payload": {"n": 1}}

{"topic": "in", "payload": {"n": 2}}
{"topic": "in", "payload": {"n": 3}}
{"topic": "elsewhere", "payload": {"n": 4}}
"#;

fn prints_publications_and_outcomes(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", EVERY_OUTCOME.get(rt));
    let events = fx.file("events.jsonl", EVENTS);
    let run = test(&fx.path().join("p"), &events, None);
    run.expect_code(0);
    let mut out = lines(&run);
    // The error text is checked on its own: it names the script and line.
    let error = out[3]["error"].take();
    let error = error.as_str().unwrap_or_default();
    assert!(
        error.contains(&format!("main.{}:5", rt.ext())) && error.contains("boom"),
        "{error}\n{run}"
    );
    assert_eq!(
        out,
        [
            json!({"event": 0, "publish": {"topic": "ready", "payload": {"ok": true}}}),
            json!({"event": 1, "publish": {"topic": "seen", "payload": {"n": 1}}}),
            json!({"event": 1, "outcome": "acked", "attempts": 1}),
            json!({"event": 2, "outcome": "dead_lettered", "attempts": 1, "error": null}),
            json!({"event": 3, "publish": {"topic": "fwd", "payload": {"n": 3}}}),
            json!({"event": 3, "outcome": "forwarded", "attempts": 1}),
            json!({"event": 4, "outcome": "unmatched", "attempts": 0}),
        ],
        "{run}"
    );
    assert!(
        run.stderr.contains(
            "4 event(s): 1 acked, 1 forwarded, 1 dead-lettered, 1 unmatched; 3 published"
        ),
        "{run}"
    );
}

fn a_matching_expect_file_exits_0(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", EVERY_OUTCOME.get(rt));
    let events = fx.file("events.jsonl", EVENTS);
    // Keys left out match anything: here the error text and the attempts.
    let expect = fx.file(
        "expect.jsonl",
        r#"# expected
{"event": 0, "publish": {"topic": "ready", "payload": {"ok": true}}}
{"event": 1, "publish": {"topic": "seen", "payload": {"n": 1.0}}}
{"event": 1, "outcome": "acked"}
{"event": 2, "outcome": "dead_lettered", "attempts": 1}
{"event": 3, "publish": {"topic": "fwd", "payload": {"n": 3}}}
{"outcome": "forwarded"}

{"event": 4}
"#,
    );
    let run = test(&fx.path().join("p"), &events, Some(&expect));
    run.expect_code(0);
    assert!(run.stderr.contains("output matches"), "{run}");
}

fn a_mismatching_expect_file_exits_1_with_a_diff(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", EVERY_OUTCOME.get(rt));
    let events = fx.file("events.jsonl", EVENTS);
    let expect = fx.file(
        "expect.jsonl",
        r#"# line 2 is right, line 3 is not: event 2 publishes nothing
{"event": 0, "publish": {"topic": "ready", "payload": {"ok": true}}}
{"event": 1, "publish": {"topic": "seen", "payload": {"n": 2}}}
{"event": 1, "outcome": "acked"}
{"event": 2, "outcome": "dead_lettered"}
{"event": 3, "outcome": "forwarded"}
{"event": 4, "outcome": "unmatched"}
"#,
    );
    let run = test(&fx.path().join("p"), &events, Some(&expect));
    run.expect_code(1);
    let file = expect.display();
    for wanted in [
        format!("does not match {file}"),
        format!("  {file}:2: {{\"event\": 0,"),
        format!("- {file}:3: {{\"event\": 1, \"publish\""),
        "+ output:2: {\"event\":1,\"publish\":{\"topic\":\"seen\",\"payload\":{\"n\":1}}}".into(),
        "+ output:5: {\"event\":3,\"publish\":{\"topic\":\"fwd\"".into(),
        format!("  {file}:4: {{\"event\": 1, \"outcome\": \"acked\"}}"),
    ] {
        assert!(run.stderr.contains(&wanted), "missing {wanted:?}\n{run}");
    }
    // One expected line unmatched, two output lines unexpected; the rest is context.
    let signs = |sign: &str| run.stderr.lines().filter(|l| l.starts_with(sign)).count();
    assert_eq!((signs("- "), signs("+ ")), (1, 2), "{run}");
}

const RETRIES: Src = Src {
    lua: r#"function on_event(e)
  state.tries = (state.tries or 0) + 1
  if e.payload.forever then return outcome.retry(1) end
  if state.tries < 3 then return outcome.retry(5) end
  bus.publish("done", { tries = state.tries })
end
"#,
    rhai: r#"fn on_event(e) {
  state.tries = (state.tries ?? 0) + 1;
  if e.payload.forever == true { return outcome::retry(1); }
  if state.tries < 3 { return outcome::retry(5); }
  bus::publish("done", #{ tries: state.tries });
}
"#,
    native: None,
};

fn retries_show_as_attempts(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nretry:\n  max_attempts: 4\n  backoff_ms: 1\n",
        RETRIES.get(rt),
    );
    let events = fx.file(
        "events.jsonl",
        "{\"topic\": \"in\", \"payload\": {}}\n{\"topic\": \"in\", \"payload\": {\"forever\": true}}\n",
    );
    let run = test(&fx.path().join("p"), &events, None);
    run.expect_code(0);
    let out = lines(&run);
    assert_eq!(out.len(), 3, "{run}");
    assert_eq!(
        out[0],
        json!({"event": 1, "publish": {"topic": "done", "payload": {"tries": 3}}}),
        "{run}"
    );
    assert_eq!(
        out[1],
        json!({"event": 1, "outcome": "acked", "attempts": 3}),
        "{run}"
    );
    assert_eq!(out[2]["outcome"], "dead_lettered", "{run}");
    assert_eq!(out[2]["attempts"], 4, "{run}");
    let error = out[2]["error"].as_str().unwrap_or_default();
    assert!(error.contains("after 4 deliveries"), "{run}");
}

const PUBLISH_ON_EVENT: Src = Src {
    lua: "function on_event(e) bus.publish(\"out\", e.payload) end\n",
    rhai: "fn on_event(e) { bus::publish(\"out\", e.payload); }\n",
    native: None,
};

fn a_disabled_plugin_with_dependencies_runs_alone(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "enabled: false\nsubscriptions: [in]\ndependencies:\n  - tokenizer\n  - stemmer: \">=1.2\"\n",
        PUBLISH_ON_EVENT.get(rt),
    );
    let events = fx.file(
        "events.jsonl",
        "{\"topic\": \"in\", \"payload\": {\"a\": 1}}\n",
    );
    let run = test(&fx.path().join("p"), &events, None);
    run.expect_code(0);
    assert_eq!(
        lines(&run),
        [
            json!({"event": 1, "publish": {"topic": "out", "payload": {"a": 1}}}),
            json!({"event": 1, "outcome": "acked", "attempts": 1}),
        ],
        "{run}"
    );
}

fn a_bad_events_line_exits_2_naming_file_and_line(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", PUBLISH_ON_EVENT.get(rt));
    let events = fx.file(
        "events.jsonl",
        "{\"topic\": \"in\", \"payload\": 1}\n# fine\n{\"topic\": \"in\", \"payload\": }\n",
    );
    let run = test(&fx.path().join("p"), &events, None);
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!("{}:3:28: ", events.display())),
        "{run}"
    );
    assert_eq!(run.stdout, "", "nothing runs\n{run}");

    let missing = fx.path().join("nope.jsonl");
    let run = test(&fx.path().join("p"), &missing, None);
    run.expect_code(2);
    assert!(run.stderr.contains("nope.jsonl"), "{run}");

    // A folder without plugin.yaml is not a plugin folder.
    let run = test(fx.path(), &events_ok(&fx), None);
    run.expect_code(2);
    assert!(run.stderr.contains("not a plugin folder"), "{run}");

    let bad_expect = fx.file("expect.jsonl", "{\"event\": 1}\n{\"event\": \n");
    let run = test(&fx.path().join("p"), &events_ok(&fx), Some(&bad_expect));
    run.expect_code(2);
    assert!(
        run.stderr.contains(&format!("{}:2:", bad_expect.display())),
        "{run}"
    );
}

fn events_ok(fx: &Fixture) -> PathBuf {
    fx.file("ok.jsonl", "{\"topic\": \"in\", \"payload\": 1}\n")
}

const BROKEN: Src = Src {
    lua: "function on_event(e)\n  local x = = 1\nend\n",
    rhai: "fn on_event(e) {\n  let x = = 1;\n}\n",
    native: None,
};

fn a_broken_script_exits_1_with_its_position(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", BROKEN.get(rt));
    let run = test(&fx.path().join("p"), &events_ok(&fx), None);
    run.expect_code(1);
    assert!(
        run.stderr.contains(&format!("main.{}:2:", rt.ext())),
        "{run}"
    );
    assert_eq!(run.stdout, "", "{run}");

    // A manifest error too, with its line and column.
    fx.file(
        "p/plugin.yaml",
        "name: p\nversion: 1.0.0\nsubscriptons: [in]\n",
    );
    let run = test(&fx.path().join("p"), &events_ok(&fx), None);
    run.expect_code(1);
    assert!(run.stderr.contains("plugin.yaml:3:1:"), "{run}");
}

const ECHO: Src = Src {
    lua: r#"function on_event(e)
  if e.topic == "in" then bus.publish("echo", { n = e.payload }) end
end
"#,
    rhai: r#"fn on_event(e) {
  if e.topic == "in" { bus::publish("echo", #{ n: e.payload }); }
}
"#,
    native: None,
};

fn deliveries_of_its_own_events_are_counted_in_handled(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in, echo]\n", ECHO.get(rt));
    let run = test(&fx.path().join("p"), &events_ok(&fx), None);
    run.expect_code(0);
    assert_eq!(
        lines(&run),
        [
            json!({"event": 1, "publish": {"topic": "echo", "payload": {"n": 1}}}),
            json!({"event": 1, "outcome": "acked", "attempts": 1,
                   "handled": {"acked": 2, "forwarded": 0, "retried": 0, "dead_lettered": 0}}),
        ],
        "{run}"
    );
}

behaviours!(
    deliveries_of_its_own_events_are_counted_in_handled,
    prints_publications_and_outcomes,
    a_matching_expect_file_exits_0,
    a_mismatching_expect_file_exits_1_with_a_diff,
    retries_show_as_attempts,
    a_disabled_plugin_with_dependencies_runs_alone,
    a_bad_events_line_exits_2_naming_file_and_line,
    a_broken_script_exits_1_with_its_position,
);

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins");

/// Every example plugin that ships `tests/events.jsonl` and
/// `tests/expect.jsonl` passes `plughost test` with them.
#[test]
fn the_examples_pass_their_own_tests() {
    let mut tested = Vec::new();
    let mut folders: Vec<PathBuf> = std::fs::read_dir(EXAMPLES)
        .expect("read plugins/")
        .map(|e| e.unwrap().path())
        .collect();
    folders.sort();
    for folder in folders {
        let events = folder.join("tests/events.jsonl");
        let expect = folder.join("tests/expect.jsonl");
        if !(events.is_file() && expect.is_file()) {
            continue;
        }
        let run = test(&folder, &events, Some(&expect));
        assert_eq!(run.code, 0, "{}\n{run}", folder.display());
        tested.push(folder.file_name().unwrap().to_string_lossy().into_owned());
    }
    for name in ["wordcount", "alerts"] {
        assert!(
            tested.iter().any(|t| t == name),
            "{name} ships no tests: {tested:?}"
        );
    }
}
