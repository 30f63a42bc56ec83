//! The one interface every runtime implements: load a plugin, call its hooks.
//!
//! The host's plugin thread owns one [`PluginInstance`] and calls it one hook
//! at a time; nothing here is shared between threads. [`load`] and [`check`]
//! pick the runtime from the [`PluginSpec`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Event, Outcome, PluginInfo, RuntimeKind, ScriptError, SharedHost};

/// The interpreter limits of one plugin (`limits.*` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeLimits {
    /// Memory cap of the interpreter in bytes.
    pub memory_bytes: usize,
    /// Wall-clock budget of one hook call.
    pub hook_timeout: Duration,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        RuntimeLimits {
            memory_bytes: 64 << 20,
            hook_timeout: Duration::from_millis(1000),
        }
    }
}

/// Everything a runtime needs to load one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// Name, version and runtime.
    pub info: Arc<PluginInfo>,
    /// The plugin's folder: `require`/`import` may not leave it.
    pub dir: PathBuf,
    /// The entry file (script or shared library), inside or relative to the folder.
    pub entry: PathBuf,
    /// The manifest's `config` mapping.
    pub config: Value,
    /// The `state` to start with (carried over from the previous version on reload).
    pub state: Value,
    /// Interpreter limits.
    pub limits: RuntimeLimits,
}

impl PluginSpec {
    /// The entry path as shown in messages.
    pub fn entry_display(&self) -> String {
        self.entry.display().to_string()
    }

    /// The entry script's text, or a load error naming the file.
    pub fn read_entry(&self) -> Result<String, ScriptError> {
        std::fs::read_to_string(&self.entry).map_err(|e| {
            ScriptError::new(
                crate::ErrorKind::Load,
                format!("cannot read the entry script: {e}"),
            )
            .or_file(&self.entry_display())
            .in_hook(crate::HookName::Load)
        })
    }
}

/// A loaded plugin: one interpreter (or library) and its hooks.
///
/// Every hook is optional in the script; calling a missing one is a no-op.
pub trait PluginInstance {
    /// Runs `init()`.
    fn init(&mut self) -> Result<(), ScriptError>;
    /// Runs `on_event(event)` and returns what the plugin asked for.
    fn on_event(&mut self, event: &Arc<Event>) -> Result<Outcome, ScriptError>;
    /// Whether the script defines `on_config`.
    fn has_on_config(&self) -> bool;
    /// Runs `on_config(config)` with the new config (which also replaces `config`).
    fn on_config(&mut self, config: &Value) -> Result<(), ScriptError>;
    /// Runs `shutdown()`.
    fn shutdown(&mut self) -> Result<(), ScriptError>;
    /// The earliest timer deadline, if any timer is set.
    fn next_timer(&mut self) -> Option<Instant>;
    /// Runs one timer callback due at `now`; `None` when none is due.
    fn run_due_timer(&mut self, now: Instant) -> Option<Result<(), ScriptError>>;
    /// Cancels every timer (the old version's, when a reload replaces it).
    fn clear_timers(&mut self);
    /// A plain-data copy of `state`, to carry over to the next version.
    fn state(&mut self) -> Result<Value, ScriptError>;
    /// Runs `on_promote(old_state)` after a gradual rollout promoted this
    /// version, with the old version's `state` as plain data (`Null` when it
    /// had none or it could not be read), so the hook can merge into `state`
    /// what the old version recorded meanwhile. `Ok(true)` when the hook
    /// ran; `Ok(false)` when the plugin defines none (nothing runs), which
    /// is what a runtime without the hook (native plugins) answers.
    fn on_promote(&mut self, old_state: &Value) -> Result<bool, ScriptError> {
        let _ = old_state;
        Ok(false)
    }
}

/// Loads a plugin: compiles the entry and runs its top-level code (not `init`).
pub fn load(spec: &PluginSpec, host: SharedHost) -> Result<Box<dyn PluginInstance>, ScriptError> {
    let name = &spec.info;
    let named = |e: ScriptError| e.of_plugin(name);
    Ok(match spec.info.runtime {
        RuntimeKind::Lua => Box::new(Named::new(
            crate::lua::LuaPlugin::load(spec, host).map_err(named)?,
            name,
        )),
        RuntimeKind::Rhai => Box::new(Named::new(
            crate::rhai::RhaiPlugin::load(spec, host).map_err(named)?,
            name,
        )),
        RuntimeKind::Native => Box::new(Named::new(
            crate::native::NativePlugin::load(spec, host).map_err(named)?,
            name,
        )),
    })
}

/// A loaded plugin whose every error names it.
struct Named<P> {
    inner: P,
    name: Arc<PluginInfo>,
}

impl<P> Named<P> {
    fn new(inner: P, name: &Arc<PluginInfo>) -> Self {
        Named {
            inner,
            name: name.clone(),
        }
    }

    fn named<T>(&self, r: Result<T, ScriptError>) -> Result<T, ScriptError> {
        r.map_err(|e| e.of_plugin(&self.name))
    }
}

impl<P: PluginInstance> PluginInstance for Named<P> {
    fn init(&mut self) -> Result<(), ScriptError> {
        let r = self.inner.init();
        self.named(r)
    }

    fn on_event(&mut self, event: &Arc<Event>) -> Result<Outcome, ScriptError> {
        let r = self.inner.on_event(event);
        self.named(r)
    }

    fn has_on_config(&self) -> bool {
        self.inner.has_on_config()
    }

    fn on_config(&mut self, config: &Value) -> Result<(), ScriptError> {
        let r = self.inner.on_config(config);
        self.named(r)
    }

    fn shutdown(&mut self) -> Result<(), ScriptError> {
        let r = self.inner.shutdown();
        self.named(r)
    }

    fn next_timer(&mut self) -> Option<Instant> {
        self.inner.next_timer()
    }

    fn run_due_timer(&mut self, now: Instant) -> Option<Result<(), ScriptError>> {
        let r = self.inner.run_due_timer(now)?;
        Some(self.named(r))
    }

    fn clear_timers(&mut self) {
        self.inner.clear_timers();
    }

    fn state(&mut self) -> Result<Value, ScriptError> {
        let r = self.inner.state();
        self.named(r)
    }

    fn on_promote(&mut self, old_state: &Value) -> Result<bool, ScriptError> {
        let r = self.inner.on_promote(old_state);
        self.named(r)
    }
}

/// Compiles a plugin's scripts without running them, for `plughost check`.
/// Returns every error found.
pub fn check(spec: &PluginSpec) -> Vec<ScriptError> {
    match spec.info.runtime {
        RuntimeKind::Lua => crate::lua::check(spec),
        RuntimeKind::Rhai => crate::rhai::check(spec),
        RuntimeKind::Native => crate::native::check(spec),
    }
}

/// Compiles the entry and every other `ext` file of the plugin folder with
/// `compile(source, shown_path)`, without running anything; returns every
/// error. The entry is shown as the spec names it, other files by path.
pub(crate) fn check_sources(
    spec: &PluginSpec,
    ext: &str,
    mut compile: impl FnMut(&str, &str) -> Option<ScriptError>,
) -> Vec<ScriptError> {
    let mut errors = Vec::new();
    if !spec.entry.is_file() {
        errors.push(
            ScriptError::new(crate::ErrorKind::Load, "entry script not found")
                .or_file(&spec.entry_display()),
        );
    }
    let mut files = Vec::new();
    collect_files(&spec.dir, ext, &mut files);
    if spec.entry.is_file() && !files.iter().any(|f| same_file(f, &spec.entry)) {
        files.push(spec.entry.clone());
    }
    files.sort();
    for file in files {
        let shown = if same_file(&file, &spec.entry) {
            spec.entry_display()
        } else {
            file.display().to_string()
        };
        match std::fs::read_to_string(&file) {
            Ok(src) => errors.extend(compile(&src, &shown)),
            Err(e) => {
                errors.push(ScriptError::new(crate::ErrorKind::Load, e.to_string()).or_file(&shown))
            }
        }
    }
    errors
}

/// Whether two paths name the same file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Every file with extension `ext` under `dir`, skipping hidden folders and `target/`.
pub(crate) fn collect_files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, ext, out);
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::test_host::Recorder;

    fn spec(dir: &Path, file: &str, runtime: RuntimeKind) -> PluginSpec {
        PluginSpec {
            info: Arc::new(PluginInfo {
                name: "greeter".into(),
                version: "1.0.0".into(),
                runtime,
            }),
            dir: dir.to_owned(),
            entry: dir.join(file),
            config: Value::Object(Default::default()),
            state: Value::Null,
            limits: RuntimeLimits::default(),
        }
    }

    #[test]
    fn every_error_of_a_loaded_plugin_names_it() {
        let dir = tempfile::tempdir().unwrap();
        for (file, src, runtime) in [
            (
                "main.lua",
                "function on_event(e) error('no') end",
                RuntimeKind::Lua,
            ),
            (
                "main.rhai",
                "fn on_event(e) { throw \"no\"; }",
                RuntimeKind::Rhai,
            ),
        ] {
            std::fs::write(dir.path().join(file), src).unwrap();
            let spec = spec(dir.path(), file, runtime);
            let mut plugin = load(&spec, Arc::new(Recorder::default())).unwrap();
            let event = Arc::new(Event::new("in", Value::Null, "host"));
            let e = plugin.on_event(&event).unwrap_err();
            assert_eq!(e.plugin_name(), Some("greeter"), "{runtime:?}");
            assert_eq!(e.kind, ErrorKind::Runtime);
        }
        // A plugin that does not load is named too.
        std::fs::write(dir.path().join("bad.lua"), "function (").unwrap();
        let Err(e) = load(
            &spec(dir.path(), "bad.lua", RuntimeKind::Lua),
            Arc::new(Recorder::default()),
        ) else {
            panic!("a syntax error does not load");
        };
        assert_eq!(e.plugin_name(), Some("greeter"));
    }

    #[test]
    fn on_promote_runs_through_the_loaded_plugin_and_its_errors_name_it() {
        let dir = tempfile::tempdir().unwrap();
        for (file, src, runtime) in [
            (
                "main.lua",
                "function on_promote(old) state.n = old.n; error('no') end",
                RuntimeKind::Lua,
            ),
            (
                "main.rhai",
                "fn on_promote(old) { state.n = old.n; throw \"no\"; }",
                RuntimeKind::Rhai,
            ),
        ] {
            std::fs::write(dir.path().join(file), src).unwrap();
            let spec = spec(dir.path(), file, runtime);
            let mut plugin = load(&spec, Arc::new(Recorder::default())).unwrap();
            let e = plugin.on_promote(&serde_json::json!({"n": 4})).unwrap_err();
            assert_eq!(e.plugin_name(), Some("greeter"), "{runtime:?}");
            assert_eq!(e.hook, Some(crate::HookName::OnPromote), "{runtime:?}");
            // It ran: what it did before raising stays, as with any hook.
            assert_eq!(plugin.state().unwrap(), serde_json::json!({"n": 4}));
        }
    }
}
