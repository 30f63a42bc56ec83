//! The run-time state a Rhai plugin keeps from one hook call to the next
//! ([`super::RhaiPlugin`]'s `global`, `caches` and `scope`): whatever a call
//! does, and however it ends, the next one starts from the same place.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::RhaiPlugin;
use crate::test_host::Recorder;
use crate::{Event, Outcome, PluginInfo, PluginInstance, PluginSpec, RuntimeKind, RuntimeLimits};

const MAIN: &str = r#"
import "helper" as top;

fn deep(n) {
    if n == 0 { throw "deep error"; }
    deep(n - 1)
}

fn on_event(e) {
    import "helper" as inner;
    let kind = e.payload.kind;
    if kind == "throw" { deep(5); }
    if kind == "spin" { loop { let x = kind; } }
    if kind == "exit" { exit(outcome::drop("exited")); }
    bus::publish("out", #{ top: top::twice(e.payload.n), inner: inner::twice(1) });
}
"#;

fn load(dir: &Path) -> (RhaiPlugin, Arc<Recorder>) {
    std::fs::write(dir.join("helper.rhai"), "fn twice(x) { x * 2 }\n").unwrap();
    load_script(dir, MAIN)
}

/// Loads `script` as the entry of a plugin in `dir`.
fn load_script(dir: &Path, script: &str) -> (RhaiPlugin, Arc<Recorder>) {
    std::fs::write(dir.join("main.rhai"), script).unwrap();
    let spec = PluginSpec {
        info: Arc::new(PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            runtime: RuntimeKind::Rhai,
        }),
        dir: dir.to_path_buf(),
        entry: dir.join("main.rhai"),
        config: json!({}),
        state: json!({}),
        limits: RuntimeLimits {
            hook_timeout: Duration::from_millis(50),
            ..RuntimeLimits::default()
        },
    };
    let host = Arc::new(Recorder::default());
    let plugin = RhaiPlugin::load(&spec, host.clone()).unwrap();
    (plugin, host)
}

fn event(payload: Value) -> Arc<Event> {
    Arc::new(Event::new("in", payload, "test"))
}

#[test]
fn every_call_starts_from_the_same_state_however_the_last_one_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (mut plugin, host) = load(dir.path());
    let imports = plugin.global.num_imports();
    assert_eq!(imports, 1, "the top-level import is kept for the hooks");
    let level = plugin.global.level;
    for n in 0..20 {
        let kind = ["ok", "throw", "spin", "exit"][n % 4];
        let result = plugin.on_event(&event(json!({"kind": kind, "n": n})));
        match kind {
            "ok" => assert_eq!(result.unwrap(), Outcome::Ack),
            "throw" => assert!(result.unwrap_err().message.contains("deep error")),
            "spin" => assert!(result.unwrap_err().message.contains("time limit exceeded")),
            _ => assert!(matches!(result.unwrap(), Outcome::Drop { .. })),
        }
        assert_eq!(plugin.global.num_imports(), imports, "after {kind}");
        assert_eq!(plugin.global.level, level, "after {kind}");
        assert_eq!(plugin.scope.len(), 0, "after {kind}");
    }
    let published = host.published.lock().unwrap();
    let tops: Vec<_> = published.iter().map(|(_, p, _)| p["top"].clone()).collect();
    assert_eq!(tops, [0, 8, 16, 24, 32]);
    assert!(published.iter().all(|(_, p, _)| p["inner"] == 2));
}

#[test]
fn hooks_see_config_and_state_but_not_the_top_level_variables() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
let limit = 5;
fn helper() { is_def_var("limit") }
fn on_event(e) {
    bus::publish("out", #{ hook: is_def_var("limit"), helper: helper(), state: type_of(state) });
}
"#;
    let (mut plugin, host) = load_script(dir.path(), script);
    plugin.on_event(&event(json!({}))).unwrap();
    let published = host.published.lock().unwrap();
    assert_eq!(
        published[0].1,
        json!({"hook": false, "helper": false, "state": "map"})
    );
}

#[test]
fn a_top_level_import_by_a_computed_path_is_seen_by_the_hooks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("helper.rhai"), "fn twice(x) { x * 2 }\n").unwrap();
    let script = r#"
let name = "help" + "er";
import name as h;
fn on_event(e) { bus::publish("out", #{ v: h::twice(e.payload.n) }); }
"#;
    let (mut plugin, host) = load_script(dir.path(), script);
    plugin.on_event(&event(json!({"n": 21}))).unwrap();
    assert_eq!(host.published.lock().unwrap()[0].1, json!({"v": 42}));
}

#[test]
fn a_write_into_config_raises_where_it_runs_whether_the_key_exists_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
fn on_event(e) {
    let caught = [];
    for key in ["present", "missing"] {
        try { config[key] = 2; } catch (err) { caught.push([err.message, err.line]); }
    }
    try { config.missing = 1; } catch (err) { caught.push([err.message, err.line]); }
    try { state = #{}; } catch (err) { caught.push(err); }
    bus::publish("out", #{ caught: caught, config: config });
    config.missing = 1;
}
"#;
    let (mut plugin, host) = load_script(dir.path(), script);
    let err = plugin.on_event(&event(json!({}))).unwrap_err();
    assert_eq!((err.line, err.column), (Some(10), Some(5)), "{err}");
    assert_eq!(err.message, "Cannot modify constant config", "{err}");
    let published = host.published.lock().unwrap();
    let write = json!(["Cannot modify constant config", 5]);
    assert_eq!(
        published[0].1["caught"],
        json!([
            write,
            write,
            ["Cannot modify constant config", 7],
            "`state` cannot be replaced, only changed in place (`state.x = 1`, `state.clear()`)"
        ])
    );
    assert_eq!(published[0].1["config"], json!({}));
}

#[test]
fn a_request_answers_and_a_wait_into_the_time_limit_ends_the_hook_even_when_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (mut plugin, host) = load_script(
        dir.path(),
        r#"
fn on_event(e) {
    if e.payload.kind == "echo" {
        let a = bus::request("echo", #{ n: 41 }, 100);
        let caught = "";
        try { bus::request("silent", #{}, 5); } catch (err) { caught = err; }
        return outcome::reply(#{ n: a.n + 1, caught: caught });
    }
    if e.payload.kind == "limit" {
        bus::request("silent", #{}, 60000);
    }
    try { bus::request("silent", #{}, 60000); } catch (err) { }
    loop { let x = 1; }
}
"#,
    );
    let reply = plugin.on_event(&event(json!({"kind": "echo"}))).unwrap();
    let Outcome::Reply { payload } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(
        payload.into_value(),
        json!({"n": 42, "caught": "no reply on `silent` within 5 ms"})
    );
    // The wait ran into the limit: the hook ends there, at that line.
    let started = std::time::Instant::now();
    let err = plugin
        .on_event(&event(json!({"kind": "limit"})))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.message.starts_with("time limit exceeded"), "{err}");
    assert_eq!(err.line, Some(10), "{err}");
    let waited = host.requests.lock().unwrap()[2].1;
    assert!(waited <= Duration::from_millis(50), "{waited:?}");
    // Caught, it ends the hook all the same.
    let err = plugin
        .on_event(&event(json!({"kind": "caught"})))
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.message.starts_with("time limit exceeded"), "{err}");
}
