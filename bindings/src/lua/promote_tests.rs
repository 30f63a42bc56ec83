//! `on_promote(old_state)` on a loaded Lua plugin: it runs with the old
//! version's `state` as a table, can merge it into `state`, and runs under
//! the same limits and error reporting as every other hook.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::LuaPlugin;
use crate::test_host::Recorder;
use crate::{
    ErrorKind, HookName, PluginInfo, PluginInstance, PluginSpec, RuntimeKind, RuntimeLimits,
};

/// Loads `script` as `main.lua` of a plugin in `dir`, starting from `state`.
fn load(dir: &Path, script: &str, state: Value) -> LuaPlugin {
    std::fs::write(dir.join("main.lua"), script).unwrap();
    let spec = PluginSpec {
        info: Arc::new(PluginInfo {
            name: "p".into(),
            version: "2.0.0".into(),
            runtime: RuntimeKind::Lua,
        }),
        dir: dir.to_path_buf(),
        entry: dir.join("main.lua"),
        config: json!({}),
        state,
        limits: RuntimeLimits {
            hook_timeout: Duration::from_millis(50),
            ..RuntimeLimits::default()
        },
    };
    LuaPlugin::load(&spec, Arc::new(Recorder::default())).unwrap()
}

#[test]
fn a_defined_hook_merges_the_old_state_into_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        r#"
function on_promote(old)
  state.count = (state.count or 0) + (old.count or 0)
  state.old_seen = old.seen
end
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
fn an_old_version_without_state_is_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "function on_promote(old) state.kind = type(old); state.n = next(old) == nil end",
        Value::Null,
    );
    assert_eq!(plugin.on_promote(&Value::Null), Ok(true));
    assert_eq!(plugin.state().unwrap(), json!({"kind": "table", "n": true}));
}

#[test]
fn without_the_hook_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "function on_event(e) state.touched = true end",
        json!({"count": 1}),
    );
    assert_eq!(plugin.on_promote(&json!({"count": 9})), Ok(false));
    assert_eq!(plugin.state().unwrap(), json!({"count": 1}));
}

#[test]
fn an_error_raised_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "function on_promote(old)\n  local n = old.count\n  error('cannot merge ' .. n)\nend\n",
        Value::Null,
    );
    let err = plugin.on_promote(&json!({"count": 3})).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Runtime, "{err}");
    assert!(err.message.contains("cannot merge 3"), "{err}");
    assert_eq!(err.line, Some(3), "{err}");
    assert!(err.file.as_deref().unwrap().ends_with("main.lua"), "{err}");
    assert_eq!(err.hook, Some(HookName::OnPromote));
}

#[test]
fn a_hook_that_never_ends_is_stopped_by_the_time_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = load(
        dir.path(),
        "function on_promote(old)\n  while true do end\nend\n",
        Value::Null,
    );
    let started = Instant::now();
    let err = plugin.on_promote(&json!({})).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
    assert!(err.message.starts_with("time limit exceeded"), "{err}");
    assert_eq!(err.hook, Some(HookName::OnPromote));
}
