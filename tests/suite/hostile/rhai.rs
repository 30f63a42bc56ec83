//! Hostile Rhai plugins (SPEC §4 Sandbox): CPU (loops, recursion, long
//! library calls, timers), memory (strings, arrays, maps, one huge call) and
//! sandbox escapes (`eval`, `import` outside the folder, function pointers,
//! writes to `config` and `state`, shadowing `bus`). Each attacker runs
//! beside a well-behaved Lua plugin that must handle every event; the
//! attacker's own events end in an error for that call (dead-lettered),
//! never in a hung or crashed host.

use serde_json::{Value, json};

use crate::support::{Fixture, Run, Runtime, ev};

/// Echoes each event's payload `n` on `out.seen`.
const ECHO: &str = "function on_event(e) bus.publish('out.seen', {n = e.payload.n}) end\n";

/// How many events each attack gets.
const EVENTS: u64 = 3;

/// A fixture with the good plugin and the Rhai attacker `evil` (its
/// manifest gets `extra`, its folder `files`).
fn fixture(script: &str, extra: &str, files: &[(&str, &str)]) -> Fixture {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in.*]\n", ECHO);
    fx.plugin(
        Runtime::Rhai,
        "evil",
        &format!("subscriptions: [in.*]\nlimits:\n  event_timeout_ms: 300\n{extra}"),
        script,
    );
    for (rel, text) in files {
        fx.file(&format!("evil/{rel}"), text);
    }
    fx
}

/// Runs `EVENTS` events through the fixture; asserts the host exited by
/// itself and the good plugin handled every event.
fn run_all(fx: &Fixture) -> Run {
    let events: Vec<Value> = (1..=EVENTS).map(|n| ev("in.x", json!({"n": n}))).collect();
    let run = fx.run_with(&events, &["--no-watch"]);
    assert_ne!(run.code, -1, "the host hung and was killed\n{run}");
    let mut seen: Vec<u64> = run
        .payloads("out.seen")
        .iter()
        .map(|p| p["n"].as_u64().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        (1..=EVENTS).collect::<Vec<_>>(),
        "the good plugin missed events\n{run}"
    );
    run
}

/// The attacker: its events are all dead-lettered, each error containing
/// one of `needles` and naming the script's position.
fn attack(script: &str, extra: &str, needles: &[&str]) -> Run {
    let fx = fixture(script, extra, &[]);
    let run = run_all(&fx);
    let errors = evil_errors(&run);
    assert_eq!(
        errors.len() as u64,
        EVENTS,
        "every attacked event is dead-lettered\n{run}"
    );
    for e in &errors {
        assert!(
            needles.iter().any(|n| e.contains(n)),
            "expected one of {needles:?} in {e}\n{run}"
        );
        assert!(
            e.contains("/evil/main.rhai:"),
            "the error names the script: {e}"
        );
    }
    run
}

/// The dead-lettered errors of `evil`.
fn evil_errors(run: &Run) -> Vec<String> {
    run.dead_letters()
        .iter()
        .filter(|d| d["plugin"] == "evil")
        .map(|d| d["error"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// What `evil` published on `report`.
fn reports(run: &Run) -> Vec<Value> {
    run.payloads("report")
}

const TIME: [&str; 1] = ["time limit"];

// ---------------------------------------------------------------- CPU

#[test]
fn an_endless_loop_stops_at_the_time_limit() {
    attack("fn on_event(e) { loop { } }\n", "", &TIME);
}

#[test]
fn an_endless_loop_that_catches_its_errors_still_stops() {
    let script = r#"
fn on_event(e) {
    loop {
        try { loop { } } catch (err) { }
    }
}
"#;
    attack(script, "", &TIME);
}

#[test]
fn endless_recursion_is_an_error() {
    attack(
        "fn down(n) { down(n + 1) }\nfn on_event(e) { down(0) }\n",
        "",
        &["Stack overflow", "call", "time limit"],
    );
}

#[test]
fn a_long_library_call_stops_at_the_time_limit() {
    let script = r#"
fn on_event(e) {
    let words = [];
    for i in 0..100000 { words.push(`w${i}`); }
    loop { words.sort(); words.reverse(); }
}
"#;
    attack(script, "", &["time limit", "Size of array"]);
}

#[test]
fn a_timer_that_spins_once_stops_at_the_time_limit() {
    let script = r#"
fn init() { timer::after(1, || { loop { } }); }
fn on_event(e) { bus::publish("report", #{ n: e.payload.n }); }
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    assert_eq!(reports(&run).len() as u64, EVENTS, "{run}");
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("time limit") && l.contains("evil")),
        "the timer's error is logged\n{run}"
    );
}

/// A timer due again as soon as its last run hit the time limit: the actor
/// gives its queue a turn between two timer runs, so the plugin's events
/// and its stop are still taken, and `--exit-when-idle` ends.
#[test]
fn a_timer_that_spins_does_not_keep_the_host_or_starve_the_others() {
    let script = r#"
fn init() { timer::every(1, || { loop { } }); }
fn on_event(e) { bus::publish("report", #{ n: e.payload.n }); }
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    // The attacker's own events were still handled between the timers.
    assert_eq!(reports(&run).len() as u64, EVENTS, "{run}");
}

// ---------------------------------------------------------------- memory

const SIZE: [&str; 4] = [
    "Length of string",
    "Size of array",
    "Size of object map",
    "too large",
];

#[test]
fn a_doubling_string_hits_the_size_limit() {
    attack(
        "fn on_event(e) { let s = \"x\"; loop { s += s; } }\n",
        "  memory_mb: 16\n",
        &SIZE,
    );
}

#[test]
fn a_doubling_array_hits_the_size_limit() {
    attack(
        "fn on_event(e) { let a = [0]; loop { a += a; } }\n",
        "  memory_mb: 16\n",
        &SIZE,
    );
}

#[test]
fn a_growing_map_hits_the_size_limit() {
    attack(
        "fn on_event(e) { let m = #{}; let i = 0; loop { m[`k${i}`] = i; i += 1; } }\n",
        "  memory_mb: 16\n",
        // Keys are added one at a time: the time limit may come first.
        &["Size of object map", "time limit"],
    );
}

#[test]
fn one_huge_call_is_refused_before_it_is_built() {
    attack(
        "fn on_event(e) { let s = \"\"; s.pad(2000000000, \"x\"); }\n",
        "  memory_mb: 16\n",
        &SIZE,
    );
}

#[test]
fn a_huge_publish_is_refused_or_bounded() {
    let script = r#"
fn on_event(e) {
    let s = "0123456789";
    while s.len() < 4000000 { s += s; }
}
"#;
    attack(script, "  memory_mb: 16\n", &SIZE);
}

// ---------------------------------------------------------------- escapes

#[test]
fn eval_in_any_spelling_is_refused() {
    let script = r#"
fn on_event(e) {
    let results = [];
    for f in ["eval", "Eval"] {
        try {
            Fn(f).call(`bus::publish("escaped", #{}); 1`);
            results.push(`${f}: ran`);
        } catch (err) {
            results.push(`${f}: refused`);
        }
    }
    bus::publish("report", #{ results: results });
}
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    assert!(run.on("escaped").is_empty(), "{run}");
    for r in reports(&run) {
        assert_eq!(
            r["results"],
            json!(["eval: refused", "Eval: refused"]),
            "{run}"
        );
    }
}

#[cfg(unix)]
#[test]
fn imports_leaving_the_folder_raise_a_catchable_error_at_the_import() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(
        outside.path().join("secret.rhai"),
        "bus::publish(\"escaped\", #{});\nfn get() { 42 }\n",
    )
    .unwrap();
    let abs = outside.path().join("secret").display().to_string();
    let script = format!(
        r#"
fn on_event(e) {{
    let results = [];
    for path in ["../secret", "../../secret", "{abs}", "linked", "sub/../../secret"] {{
        try {{
            import path as m;
            results.push(`${{path}}: ${{m::get()}}`);
        }} catch (err) {{
            results.push("refused");
        }}
    }}
    bus::publish("report", #{{ results: results }});
}}
"#
    );
    let fx = fixture(&script, "", &[("sub/.keep", "")]);
    std::os::unix::fs::symlink(
        outside.path().join("secret.rhai"),
        fx.path().join("evil/linked.rhai"),
    )
    .unwrap();
    std::fs::write(fx.path().join("secret.rhai"), "fn get() { 43 }\n").unwrap();
    let run = run_all(&fx);
    assert!(run.on("escaped").is_empty(), "{run}");
    let reports = reports(&run);
    assert_eq!(reports.len() as u64, EVENTS, "{run}");
    for r in reports {
        assert_eq!(r["results"], json!(vec!["refused"; 5]), "{run}");
    }
}

#[test]
fn function_pointers_reach_only_what_the_script_could_call() {
    let script = r#"
fn on_event(e) {
    let results = [];
    for name in ["bus::publish", "eval", "import", "exit", "__plughost", "crate::host", "std::process::exit"] {
        try {
            Fn(name).call("x");
            results.push(`${name}: called`);
        } catch (err) {
            results.push("refused");
        }
    }
    // A pointer to a script function is fine.
    results.push(Fn("twice").call(21));
    bus::publish("report", #{ results: results });
}
fn twice(x) { x * 2 }
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    for r in reports(&run) {
        let results = r["results"].as_array().unwrap();
        assert_eq!(results.len(), 8, "{run}");
        assert!(results[..7].iter().all(|x| x == "refused"), "{run}");
        assert_eq!(results[7], 42, "{run}");
    }
}

#[test]
fn a_write_into_config_raises_at_its_position_whether_the_key_exists_or_not() {
    for (statement, column) in [
        ("config.missing = 1;", 5),
        ("config[\"missing\"] = 1;", 5),
        ("config.present = 2;", 5),
        ("config = #{};", 5),
        ("if true { config.a.b += 1; }", 15),
    ] {
        let script = format!(
            "fn on_event(e) {{\n    {statement}\n    bus::publish(\"escaped\", config);\n}}\n"
        );
        let fx = fixture(&script, "config:\n  present: 1\n", &[]);
        let run = run_all(&fx);
        assert!(
            run.on("escaped").is_empty(),
            "{statement}: the write went through\n{run}"
        );
        let errors = evil_errors(&run);
        assert_eq!(errors.len() as u64, EVENTS, "{statement}\n{run}");
        for e in errors {
            assert!(
                e.contains(&format!(
                    "/evil/main.rhai:2:{column}: Cannot modify constant config"
                )),
                "{statement}: {e}"
            );
        }
    }
}

#[test]
fn a_write_into_config_can_be_caught_and_changes_nothing() {
    let script = r#"
fn on_event(e) {
    let caught = 0;
    try { config.missing = 1; } catch (err) { caught += 1; }
    try { config["other"] = 1; } catch (err) { caught += 1; }
    bus::publish("report", #{ caught: caught, config: config });
}
"#;
    let fx = fixture(script, "config:\n  present: 1\n", &[]);
    let run = run_all(&fx);
    for r in reports(&run) {
        assert_eq!(r["caught"], 2, "{run}");
        assert_eq!(r["config"], json!({"present": 1}), "{run}");
    }
}

#[test]
fn methods_that_would_change_config_raise_where_they_run() {
    let script = r#"
fn on_event(e) {
    let results = [];
    try { config.clear(); results.push("cleared"); } catch (err) { results.push("refused"); }
    try { config.list.push(1); results.push("pushed"); } catch (err) { results.push("refused"); }
    try { config.remove("present"); results.push("removed"); } catch (err) { results.push("refused"); }
    let copy = config;
    copy.mine = 1;
    bus::publish("report", #{ results: results, config: config, copy: copy });
}
"#;
    let fx = fixture(script, "config:\n  present: 1\n  list: [0]\n", &[]);
    let run = run_all(&fx);
    for r in reports(&run) {
        assert_eq!(
            r["results"],
            json!(["refused", "refused", "refused"]),
            "{run}"
        );
        assert_eq!(r["config"], json!({"present": 1, "list": [0]}), "{run}");
        assert_eq!(r["copy"]["mine"], 1, "{run}");
    }
}

#[test]
fn replacing_state_raises_and_changing_it_in_place_works() {
    let script = r#"
fn on_event(e) {
    try { state = #{ n: 100 }; } catch (err) { bus::publish("caught", #{ err: err }); }
    state.n = (state.n ?? 0) + 1;
    bus::publish("report", #{ n: state.n });
    state = #{};
}
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    let ns: Vec<Value> = reports(&run).iter().map(|r| r["n"].clone()).collect();
    assert_eq!(ns, [json!(1), json!(2), json!(3)], "{run}");
    assert_eq!(run.payloads("caught").len() as u64, EVENTS, "{run}");
    let errors = evil_errors(&run);
    assert_eq!(errors.len() as u64, EVENTS, "{run}");
    assert!(
        errors
            .iter()
            .all(|e| e.contains("/evil/main.rhai:6:5: `state` cannot be replaced")),
        "{errors:?}"
    );
}

#[test]
fn shadowing_bus_does_not_reach_the_host_bus_or_hide_it() {
    let script = r#"
fn publish(topic, payload) { throw "shadowed"; }
fn on_event(e) {
    let bus = #{ publish: |t, p| { throw "shadowed" } };
    bus::publish("report", #{ n: e.payload.n, bus: type_of(bus) });
}
"#;
    let fx = fixture(script, "", &[]);
    let run = run_all(&fx);
    let reports = reports(&run);
    assert_eq!(reports.len() as u64, EVENTS, "{run}");
    assert!(reports.iter().all(|r| r["bus"] == "map"), "{run}");
    // Publishing on a host topic is still refused.
    let fx = fixture(
        "fn on_event(e) { bus::publish(\"plughost.plugin.started\", #{ plugin: \"good\" }); }\n",
        "",
        &[],
    );
    let run = run_all(&fx);
    assert!(
        run.on("plughost.plugin.started")
            .iter()
            .all(|e| e["source"] == "host"),
        "{run}"
    );
    assert_eq!(evil_errors(&run).len() as u64, EVENTS, "{run}");
}
