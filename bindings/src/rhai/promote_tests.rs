//! `fn on_promote(old)` on a loaded Rhai plugin: it runs with the old
//! version's `state` as an object map, can merge it into `state`, and runs
//! under the same limits and error reporting as every other hook.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::RhaiPlugin;
use crate::test_host::Recorder;
use crate::{
    ErrorKind, HookName, PluginInfo, PluginInstance, PluginSpec, RuntimeKind, RuntimeLimits,
};

/// Loads `script` as `main.rhai` of a plugin in `dir`, starting from `state`.
fn load(dir: &Path, script: &str, state: Value) -> RhaiPlugin {
    std::fs::write(dir.join("main.rhai"), script).unwrap();
    let spec = PluginSpec {
        info: Arc::new(PluginInfo {
            name: "p".into(),
            version: "2.0.0".into(),
            runtime: RuntimeKind::Rhai,
        }),
        dir: dir.to_path_buf(),
        entry: dir.join("main.rhai"),
        config: json!({}),
        state,
        limits: RuntimeLimits {
            hook_timeout: Duration::from_millis(50),
            ..RuntimeLimits::default()
        },
    };
    RhaiPlugin::load(&spec, Arc::new(Recorder::default())).unwrap()
}

#[test]
fn a_defined_hook_merges_the_old_state_into_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        r#"
fn on_promote(old) {
    state.count = (state.count ?? 0) + (old.count ?? 0);
    state.old_seen = old.seen;
}
"#,
        json!({"count": 2}),
    );
    let ran = plugin.on_promote(&json!({"count": 5, "seen": ["a", "b"]}));
    assert_eq!(ran, Ok(true));
    assert_eq!(
        plugin.state().unwrap(),
        json!({"count": 7, "old_seen": ["a", "b"]})
    );
}

#[test]
fn an_old_version_without_state_is_an_empty_map() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "fn on_promote(old) { state.kind = type_of(old); state.n = old.len(); }",
        Value::Null,
    );
    assert_eq!(plugin.on_promote(&Value::Null), Ok(true));
    assert_eq!(plugin.state().unwrap(), json!({"kind": "map", "n": 0}));
}

#[test]
fn without_the_hook_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "fn on_event(e) { state.touched = true; }",
        json!({"count": 1}),
    );
    assert_eq!(plugin.on_promote(&json!({"count": 9})), Ok(false));
    assert_eq!(plugin.state().unwrap(), json!({"count": 1}));
}

#[test]
fn a_hook_with_the_wrong_arity_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.rhai"), "fn on_promote() { }").unwrap();
    let spec = PluginSpec {
        info: Arc::new(PluginInfo {
            name: "p".into(),
            version: "2.0.0".into(),
            runtime: RuntimeKind::Rhai,
        }),
        dir: dir.path().to_path_buf(),
        entry: dir.path().join("main.rhai"),
        config: json!({}),
        state: Value::Null,
        limits: RuntimeLimits::default(),
    };
    let Err(err) = RhaiPlugin::load(&spec, Arc::new(Recorder::default())) else {
        panic!("`fn on_promote()` loads");
    };
    assert_eq!(err.kind, ErrorKind::Load, "{err}");
    assert!(err.message.contains("`fn on_promote` must take 1"), "{err}");
}

#[test]
fn an_error_raised_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "fn on_promote(old) {\n    let n = old.count;\n    throw `cannot merge ${n}`;\n}\n",
        Value::Null,
    );
    let err = plugin.on_promote(&json!({"count": 3})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Runtime, "{err}");
    assert!(err.message.contains("cannot merge 3"), "{err}");
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.file.as_deref().unwrap().ends_with("main.rhai"), "{err}");
    assert_eq!(err.hook, Some(HookName::OnPromote));
}

#[test]
fn a_hook_that_never_ends_is_stopped_by_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "fn on_promote(old) {\n    loop { let x = 1; }\n}\n",
        Value::Null,
    );
    let started = Instant::now();
    let err = plugin.on_promote(&json!({})).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.starts_with("time limit exceeded"), "{err}");
    assert_eq!(err.hook, Some(HookName::OnPromote));
}
