//! SPEC §8 command line: `list`, `check` and its positioned errors, exit
//! codes, `--input`, `--tap`, streaming stdin, and stdout kept for tap output.

use serde_json::{Value, json};

use crate::behaviours;
use crate::live::Live;
use crate::support::{Fixture, Runtime, Src, ev, native_at, run_binary};

fn dir(fx: &Fixture) -> &str {
    fx.path().to_str().unwrap()
}

/// A plugin folder with `manifest` as the whole `plugin.yaml` and a trivial script.
fn lua_plugin(fx: &Fixture, folder: &str, manifest: &str) {
    fx.file(&format!("{folder}/plugin.yaml"), manifest);
    fx.file(&format!("{folder}/main.lua"), "function on_event(e) end\n");
}

// ---------------------------------------------------------------------------
// plughost list

/// `alpha` (enabled, two subscriptions), `beta` (disabled), `broken` (bad manifest).
fn listed_fixture() -> Fixture {
    let fx = Fixture::new();
    lua_plugin(
        &fx,
        "alpha",
        "name: alpha\nversion: 1.2.3\nsubscriptions: [in, text.*]\n",
    );
    lua_plugin(&fx, "beta", "name: beta\nversion: 0.1.0\nenabled: false\n");
    lua_plugin(
        &fx,
        "broken",
        "name: broken\nversion: 1.0.0\nsubscritions: [in]\n",
    );
    fx
}

#[test]
fn list_prints_a_table_with_errors() {
    let fx = listed_fixture();
    let run = run_binary(&["list", dir(&fx)], None);
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "VERSION", "RUNTIME", "ENABLED", "SUBSCRIPTIONS"],
        "{run}"
    );
    let row = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row for {name}\n{run}"))
            .split_whitespace()
            .collect()
    };
    assert_eq!(
        row("alpha"),
        ["alpha", "1.2.3", "lua", "yes", "in,", "text.*"]
    );
    assert_eq!(row("beta")[..4], ["beta", "0.1.0", "lua", "no"]);
    let error = format!(
        "{}/broken/plugin.yaml:3:1: unknown key `subscritions`",
        dir(&fx)
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("error") && l.contains(&error)),
        "the table should show {error}\n{run}"
    );
}

#[test]
fn list_json_has_exactly_the_documented_keys() {
    let fx = listed_fixture();
    let run = run_binary(&["list", dir(&fx), "--json"], None);
    run.expect_code(1);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("stdout is not a JSON array ({e})\n{run}"));
    assert_eq!(rows.len(), 3, "{run}");
    for row in &rows {
        let mut keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "enabled",
                "errors",
                "name",
                "path",
                "runtime",
                "subscriptions",
                "version"
            ],
            "{row}"
        );
        assert!(
            row["errors"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_string),
            "{row}"
        );
    }
    let by_name = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap();
    let alpha = by_name("alpha");
    assert_eq!(alpha["version"], "1.2.3");
    assert_eq!(alpha["runtime"], "lua");
    assert_eq!(alpha["enabled"], true);
    assert_eq!(alpha["subscriptions"], json!(["in", "text.*"]));
    assert_eq!(alpha["errors"], json!([]));
    assert_eq!(by_name("beta")["enabled"], false);
    let broken = rows
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("broken"))
        .unwrap();
    let errors = broken["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{broken}");
    assert!(
        errors[0].as_str().unwrap().ends_with(
            "broken/plugin.yaml:3:1: unknown key `subscritions` (did you mean `subscriptions`?)"
        ),
        "{broken}"
    );
}

#[test]
fn list_of_good_plugins_exits_0() {
    let fx = Fixture::new();
    lua_plugin(&fx, "alpha", "name: alpha\nversion: 1.0.0\n");
    let run = run_binary(&["list", dir(&fx), "--json"], None);
    run.expect_code(0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(rows.len(), 1, "{run}");
}

/// `plughost list | head -1`: the reader goes away; the command must not
/// panic. The pipe's read end is closed before the process starts, so every
/// write fails.
#[test]
fn list_and_check_survive_a_closed_stdout() {
    let fx = listed_fixture();
    for args in [
        vec!["list", dir(&fx)],
        vec!["list", dir(&fx), "--json"],
        vec!["check", dir(&fx)],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::process::Command::new(crate::support::binary())
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run plughost");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        // The plugin errors still decide the exit code.
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    }
}

#[test]
fn a_disabled_plugin_is_never_started() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "sleeper",
        "enabled: false\nsubscriptions: [in]\n",
        "function init() bus.publish('started.sleeper', {}) end\n\
         function on_event(e) bus.publish('handled.sleeper', {}) end\n",
    );
    fx.plugin(
        Runtime::Lua,
        "awake",
        "subscriptions: [in]\n",
        "function on_event(e) bus.publish('handled.awake', {}) end\n",
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    assert_eq!(run.on("handled.awake").len(), 1, "{run}");
    assert!(run.on("started.sleeper").is_empty(), "{run}");
    assert!(run.on("handled.sleeper").is_empty(), "{run}");
    for topic in ["plughost.plugin.started", "plughost.plugin.failed"] {
        assert!(
            run.payloads(topic).iter().all(|p| p["plugin"] != "sleeper"),
            "{run}"
        );
    }
}

// ---------------------------------------------------------------------------
// plughost check

#[test]
fn check_accepts_good_plugins() {
    let fx = Fixture::new();
    lua_plugin(&fx, "base", "name: base\nversion: 1.4.0\n");
    lua_plugin(
        &fx,
        "app",
        "name: app\nversion: 0.1.0\nsubscriptions: [in.>]\ndependencies:\n  - base: \">=1.2, <2\"\n",
    );
    let run = fx.check();
    run.expect_code(0);
    assert_eq!(run.stdout, "", "no error lines expected\n{run}");
}

/// Checks a single plugin `p` with `manifest`; expects exactly one error
/// line, `DIR/p/plugin.yaml` followed by `rest`.
fn check_manifest(manifest: &str, rest: &str) {
    let fx = Fixture::new();
    lua_plugin(&fx, "p", manifest);
    let run = fx.check();
    run.expect_code(1);
    let want = format!("{}/p/plugin.yaml{rest}", dir(&fx));
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), [want], "{run}");
}

#[test]
fn check_unknown_key_suggests_one_key() {
    check_manifest(
        "name: p\nversion: 1.0.0\nsubscritions: [in]\n",
        ":3:1: unknown key `subscritions` (did you mean `subscriptions`?)",
    );
    check_manifest(
        "name: p\nversion: 1.0.0\nlimits:\n  qeue: 3\n",
        ":4:3: unknown key `qeue` in `limits` (did you mean `queue`?)",
    );
}

#[test]
fn check_wrong_type() {
    check_manifest(
        "name: p\nversion: 1.0.0\nlimits:\n  queue: lots\n",
        ":4:10: limits.queue: expected an integer, found the string `lots`",
    );
}

#[test]
fn check_bad_name() {
    check_manifest(
        "name: My Plugin\nversion: 1.0.0\n",
        ":1:7: name `My Plugin` is not a valid plugin name: use 1 to 64 lowercase letters, \
         digits, `_` and `-`, starting with a letter or digit",
    );
}

#[test]
fn check_bad_semver() {
    check_manifest(
        "name: p\nversion: 1.0\n",
        ":2:10: version `1.0` is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)",
    );
}

#[test]
fn check_bad_topic_pattern_points_at_the_list_item() {
    check_manifest(
        "name: p\nversion: 1.0.0\nsubscriptions:\n  - text.raw\n  - a.>.b\n",
        ":5:5: subscriptions: pattern `a.>.b`: `>` may only be the last token",
    );
}

#[test]
fn check_bad_dependency_requirement() {
    check_manifest(
        "name: p\nversion: 1.0.0\ndependencies:\n  - stemmer: \">=1.2,, <2\"\n",
        ":4:14: dependency `stemmer`: `>=1.2,, <2` is not a semver requirement: \
         unexpected character ',' while parsing major version number",
    );
}

#[test]
fn check_missing_name() {
    check_manifest("version: 1.0.0\n", ": missing required key `name`");
}

#[test]
fn check_duplicate_key() {
    check_manifest(
        "name: p\nversion: 1.0.0\nname: p\n",
        ":3:1: duplicate key `name` (first written at line 1, column 1)",
    );
}

#[test]
fn check_yaml_syntax_error_is_positioned() {
    let fx = Fixture::new();
    lua_plugin(&fx, "p", "name: p\nversion: 1.0.0\nconfig: a: b\n");
    let run = fx.check();
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "a YAML syntax error is reported alone\n{run}"
    );
    let prefix = format!("{}/p/plugin.yaml:3:", dir(&fx));
    let rest = lines[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("expected {prefix}COL: message\n{run}"));
    let (column, message) = rest.split_once(": ").expect("COL: message");
    assert!(column.parse::<u32>().is_ok(), "{run}");
    assert!(!message.is_empty(), "{run}");
}

/// Does not compile: the error is on line 2.
const SYNTAX_ERROR_ON_LINE_2: Src = Src {
    lua: "function on_event(e)\n  if then end\nend\n",
    rhai: "fn on_event(e) {\n  let = 1;\n}\n",
    native: None,
};

fn check_a_syntax_error_names_file_and_line(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "", SYNTAX_ERROR_ON_LINE_2.get(rt));
    let run = fx.check();
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{run}");
    let prefix = format!("{}/p/{}:2", dir(&fx), rt.entry());
    let rest = lines[0]
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("expected {prefix}…\n{run}"));
    match rt {
        // Lua's parser gives no column: `file:line: message`.
        Runtime::Lua => {
            assert!(rest.starts_with(": "), "expected {prefix}: …\n{run}");
            assert!(lines[0].contains("near 'then'"), "{run}");
        }
        // Rhai's does: `file:line:column: message`.
        Runtime::Rhai => {
            assert!(rest.starts_with(":7: "), "expected {prefix}:7: …\n{run}");
            assert!(lines[0].contains("Expecting name of a variable"), "{run}");
        }
        Runtime::Native => unreachable!("not run against native plugins"),
    }
}

#[test]
fn check_duplicate_names_across_directories() {
    let one = Fixture::new();
    let two = Fixture::new();
    lua_plugin(&one, "twin", "name: twin\nversion: 1.0.0\n");
    lua_plugin(&two, "other", "name: twin\nversion: 2.0.0\n");
    let run = run_binary(&["check", dir(&one), dir(&two)], None);
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run}");
    let first = format!("{}/twin", dir(&one));
    let second = format!("{}/other", dir(&two));
    for line in &lines {
        assert!(line.contains("duplicate plugin name `twin`"), "{run}");
        assert!(
            line.contains(&first) && line.contains(&second),
            "each line names both plugins\n{run}"
        );
    }
}

#[test]
fn check_missing_dependency_names_both_plugins() {
    let fx = Fixture::new();
    lua_plugin(&fx, "a", "name: a\nversion: 1.0.0\ndependencies: [ghost]\n");
    let run = fx.check();
    run.expect_code(1);
    let want = format!(
        "{}/a/plugin.yaml:3:16: plugin `a` depends on `ghost`, which was not found",
        dir(&fx)
    );
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), [want], "{run}");
}

#[test]
fn check_dependency_cycle_names_the_plugins() {
    let fx = Fixture::new();
    lua_plugin(&fx, "a", "name: a\nversion: 1.0.0\ndependencies: [b]\n");
    lua_plugin(&fx, "b", "name: b\nversion: 1.0.0\ndependencies: [a]\n");
    lua_plugin(&fx, "free", "name: free\nversion: 1.0.0\n");
    let run = fx.check();
    run.expect_code(1);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run}");
    for (line, (me, other)) in lines.iter().zip([("a", "b"), ("b", "a")]) {
        let at = format!("{}/{me}/plugin.yaml:3:16: ", dir(&fx));
        assert!(line.starts_with(&at), "expected {at}…\n{run}");
        assert!(line.contains("cycle"), "{run}");
        assert!(line.contains(&format!("{me} -> {other} -> {me}")), "{run}");
    }
}

#[test]
fn check_unmet_version_requirement_names_both_plugins() {
    let fx = Fixture::new();
    lua_plugin(
        &fx,
        "a",
        "name: a\nversion: 1.0.0\ndependencies:\n  - b: \"^2\"\n",
    );
    lua_plugin(&fx, "b", "name: b\nversion: 1.4.0\n");
    let run = fx.check();
    run.expect_code(1);
    let want = format!(
        "{}/a/plugin.yaml:4:5: plugin `a` needs `b` ^2, but found version 1.4.0",
        dir(&fx)
    );
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), [want], "{run}");
}

// ---------------------------------------------------------------------------
// Runtime errors name the file and line

/// Fails in `on_event` on line 4.
const FAILS_ON_LINE_4: Src = Src {
    lua: r#"
function on_event(e)
  local t = nil
  return t.field
end
"#,
    rhai: r#"
fn on_event(e) {
  let t = ();
  return t.field;
}
"#,
    native: Some("fails_on_line_4"),
};

fn an_on_event_error_names_file_and_line(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", FAILS_ON_LINE_4.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    let at = match rt {
        Runtime::Lua | Runtime::Rhai => format!("p/{}:4", rt.entry()),
        // A panic: the `panic!`'s line in the fixture crate.
        Runtime::Native => native_at("fails"),
    };
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    assert!(error.contains(&at), "dead letter should name {at}: {error}");
    assert!(run.stderr.contains(&at), "stderr should name {at}\n{run}");
}

// ---------------------------------------------------------------------------
// Exit codes and input

#[test]
fn a_missing_plugins_directory_exits_2() {
    let fx = Fixture::new();
    let missing = format!("{}/no-such-dir", dir(&fx));
    for args in [
        vec![
            "run",
            "--plugins",
            &missing,
            "--input",
            "-",
            "--exit-when-idle",
        ],
        vec!["check", &missing],
        vec!["list", &missing],
    ] {
        let run = run_binary(&args, Some(""));
        assert_eq!(run.code, 2, "{args:?}\n{run}");
        assert!(run.stderr.contains("no-such-dir"), "{args:?}\n{run}");
    }
}

#[test]
fn bad_usage_exits_2() {
    let fx = Fixture::new();
    for args in [
        vec!["run", "--plugins", dir(&fx), "--exit-when-idle"],
        vec!["run", "--plugins", dir(&fx), "--no-such-flag"],
        vec!["no-such-command"],
    ] {
        let run = run_binary(&args, Some(""));
        assert_eq!(run.code, 2, "{args:?}\n{run}");
        assert_eq!(run.stdout, "", "{args:?}\n{run}");
    }
}

const ECHO: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("handled", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("handled", #{ n: e.payload.n });
}
"#,
    native: Some("echo"),
};

fn a_bad_input_line_is_reported_and_skipped(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", ECHO.get(rt));
    let run = fx.run_raw(
        "{\"topic\": \"in\", \"payload\": {\"n\": 1}}\n\
         {\"topic\": \"in\", \"payload\": }\n\
         {\"topic\": \"in\", \"payload\": {\"n\": 3}}\n",
        &[],
    );
    run.expect_code(1);
    assert!(run.stderr.contains("<stdin>:2:28: "), "{run}");
    assert_eq!(
        run.payloads("handled"),
        [json!({"n": 1}), json!({"n": 3})],
        "{run}"
    );
}

fn input_from_a_file(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", ECHO.get(rt));
    let input = tempfile::tempdir().unwrap();
    let file = input.path().join("events.jsonl");
    let lines = [ev("in", json!({"n": 1})), ev("in", json!({"n": 2}))];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&file, text).unwrap();
    let file = file.to_str().unwrap();
    let run = run_binary(
        &[
            "run",
            "--plugins",
            dir(&fx),
            "--input",
            file,
            "--tap",
            "handled",
            "--exit-when-idle",
        ],
        None,
    );
    run.expect_code(0);
    assert_eq!(
        run.payloads("handled"),
        [json!({"n": 1}), json!({"n": 2})],
        "{run}"
    );

    // A bad line of a file is reported with the file's name.
    std::fs::write(file, "{\"topic\": \"in\"}\nnot json\n").unwrap();
    let run = run_binary(
        &[
            "run",
            "--plugins",
            dir(&fx),
            "--input",
            file,
            "--exit-when-idle",
        ],
        None,
    );
    run.expect_code(1);
    assert!(run.stderr.contains(&format!("{file}:2:")), "{run}");
}

/// Every input line comes out of `--tap` as it went in: payloads of every
/// JSON type (escapes, unicode, floats, nesting), headers and correlation
/// ids; in order, each with an id of its own, over enough lines that the tap
/// writes them in batches.
#[test]
fn tapped_input_keeps_every_value_in_order() {
    let fx = Fixture::new();
    let samples = [
        json!({"s": "é \" \\ \n \u{1} 😀", "n": -3, "f": 1.5e-7, "big": 9007199254740993i64}),
        json!([true, false, null, [], {}, [[1]], {"a": {"b": {"c": "d"}}}]),
        json!("plain"),
        json!(0.1),
        json!(null),
    ];
    let mut input = String::new();
    let mut want = Vec::new();
    for i in 0..3_000 {
        let payload = samples[i % samples.len()].clone();
        let mut line = json!({"topic": format!("in.{}", i % 7), "payload": payload});
        if i % 3 == 0 {
            line["headers"] = json!({"k": format!("v{i}"), "traceparent-like": "x"});
            line["correlation_id"] = json!(format!("c{i}"));
        }
        input.push_str(&line.to_string());
        input.push('\n');
        want.push(line);
    }
    let run = run_binary(
        &[
            "run",
            "--plugins",
            dir(&fx),
            "--input",
            "-",
            "--tap",
            "in.>",
            "--exit-when-idle",
        ],
        Some(&input),
    );
    run.expect_code(0);
    let got = run.events();
    assert_eq!(got.len(), want.len(), "{run}");
    let mut ids = std::collections::HashSet::new();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g["topic"], w["topic"]);
        assert_eq!(g["payload"], w["payload"]);
        assert_eq!(g["headers"], w.get("headers").cloned().unwrap_or(json!({})));
        assert_eq!(
            g["correlation_id"],
            w.get("correlation_id").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(g["source"], "host");
        assert!(
            ids.insert(g["id"].as_str().unwrap().to_owned()),
            "ids repeat"
        );
    }
}

/// Answers every input on `out.a` and `other.b`.
const TWO_OUTPUTS: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("out.a", {})
  bus.publish("other.b", {})
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("out.a", #{});
  bus::publish("other.b", #{});
}
"#,
    native: Some("two_outputs"),
};

fn tap_filters_by_pattern(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", TWO_OUTPUTS.get(rt));
    let input = format!("{}\n{}\n", ev("in", json!({})), ev("in", json!({})));
    let tapped = |taps: &[&str]| -> Vec<String> {
        let mut args = vec![
            "run",
            "--plugins",
            dir(&fx),
            "--input",
            "-",
            "--exit-when-idle",
        ];
        for t in taps {
            args.extend(["--tap", t]);
        }
        let run = run_binary(&args, Some(&input));
        run.expect_code(0);
        run.events()
            .iter()
            .map(|e| e["topic"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(tapped(&["out.*"]), ["out.a", "out.a"]);
    let mut both = tapped(&["out.*", "other.>"]);
    both.sort();
    assert_eq!(both, ["other.b", "other.b", "out.a", "out.a"]);
    // An event matching two taps is printed once.
    assert_eq!(tapped(&["out.a", "out.*"]), ["out.a", "out.a"]);
}

fn stdin_is_read_as_a_stream(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", ECHO.get(rt));
    let mut host = Live::spawn(&[
        "run",
        "--plugins",
        dir(&fx),
        "--input",
        "-",
        "--tap",
        ">",
        "--exit-when-idle",
    ]);
    host.send(&ev("in", json!({"n": 1})));
    // Handled while stdin is still open: the host did not wait for EOF.
    host.wait_for("the answer to line 1", |e| {
        e["topic"] == "handled" && e["payload"]["n"] == 1
    });
    host.send(&ev("in", json!({"n": 2})));
    host.wait_for("the answer to line 2", |e| {
        e["topic"] == "handled" && e["payload"]["n"] == 2
    });
    host.close_stdin();
    let run = host.finish();
    run.expect_code(0);
    assert_eq!(run.payloads("handled").len(), 2, "{run}");
}

/// Prints and logs from `on_event`.
const CHATTY: Src = Src {
    lua: r#"
function on_event(e)
  print("printed-by-the-plugin")
  log.info("logged-by-the-plugin")
  log.warn("warned-by-the-plugin", { k = 1 })
end
"#,
    rhai: r#"
fn on_event(e) {
  print("printed-by-the-plugin");
  log::info("logged-by-the-plugin");
  log::warn("warned-by-the-plugin", #{ k: 1 });
}
"#,
    native: Some("chatty"),
};

fn logs_go_to_stderr_and_stdout_holds_only_tap_output(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", CHATTY.get(rt));
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    // Every stdout line is a tapped event (`events` fails on anything else).
    let events = run.events();
    assert!(events.iter().any(|e| e["topic"] == "in"), "{run}");
    let texts = [
        "logged-by-the-plugin",
        "warned-by-the-plugin",
        "printed-by-the-plugin",
    ];
    // A native plugin has no `print` (Rust's would write to the host's stdout).
    let texts = match rt {
        Runtime::Lua | Runtime::Rhai => &texts[..],
        Runtime::Native => &texts[..2],
    };
    for text in texts {
        assert!(!run.stdout.contains(text), "{text} on stdout\n{run}");
        assert!(run.stderr.contains(text), "{text} not on stderr\n{run}");
    }
    assert!(run.stderr.contains("plugin started"), "{run}");
}

// `[Native]`: also run against the native fixture crate (a native plugin
// has no syntax to get wrong at run time).
behaviours!(
    check_a_syntax_error_names_file_and_line,
    an_on_event_error_names_file_and_line[Native],
    a_bad_input_line_is_reported_and_skipped[Native],
    input_from_a_file[Native],
    tap_filters_by_pattern[Native],
    stdin_is_read_as_a_stream[Native],
    logs_go_to_stderr_and_stdout_holds_only_tap_output[Native],
);
