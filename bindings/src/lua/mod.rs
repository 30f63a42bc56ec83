//! The Lua runtime: one mlua interpreter (Lua 5.4, vendored) per plugin.
//!
//! Loading creates a sandboxed interpreter, registers the bindings (each in
//! its own small module with a `register` function), runs the entry chunk
//! under the time limit, and looks the hook functions up once. Chunks are
//! named `@<path>`, so every error and traceback names the file and line.

mod bus;
mod context;
mod convert;
mod error;
mod helpers;
mod log;
mod nesting;
mod outcome;
mod pattern;
mod raw;
mod reentry;
mod require;
mod sandbox;
mod stack;
mod telemetry;
mod timer;
mod watch;

#[cfg(test)]
mod promote_tests;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use mlua::{FromLuaMulti, Function, IntoLuaMulti, Lua, Value as LuaValue};
use serde_json::Value;

use self::context::{Context, Ctx};
use self::error::to_script_error;
use crate::system_alloc::use_system_allocator;
use crate::{
    ErrorKind, Event, HookName, Outcome, PluginInstance, PluginSpec, ScriptError, SharedHost,
};

/// The hook functions, looked up once after the entry chunk ran.
struct Hooks {
    init: Option<Function>,
    on_event: Option<Function>,
    on_config: Option<Function>,
    shutdown: Option<Function>,
    on_promote: Option<Function>,
}

/// A loaded Lua plugin.
pub struct LuaPlugin {
    lua: Lua,
    /// Looks at the time budget at every call (see `watch.rs`).
    watch: watch::Watch,
    ctx: Ctx,
    hooks: Hooks,
    readonly: Function,
    spec: PluginSpec,
    entry: String,
}

impl LuaPlugin {
    /// Creates the interpreter, registers the bindings and runs the entry chunk.
    pub fn load(spec: &PluginSpec, host: SharedHost) -> Result<LuaPlugin, ScriptError> {
        let entry = spec.entry_display();
        let source = spec.read_entry()?;
        let ctx: Ctx = Rc::new(Context {
            info: spec.info.clone(),
            host,
            dir: spec.dir.clone(),
            current: RefCell::new(None),
            timers: RefCell::default(),
            budget: Rc::default(),
        });
        let mb = spec.limits.memory_bytes >> 20;
        let fail = |e: mlua::Error| {
            to_script_error(&e, mb)
                .or_file(&entry)
                .in_hook(HookName::Load)
        };
        let (lua, readonly, watch) =
            sandbox::new_lua(spec.limits.memory_bytes, ctx.budget.clone()).map_err(fail)?;
        let setup = || -> mlua::Result<()> {
            convert::install(&lua)?;
            bus::register(&lua, &ctx)?;
            log::register(&lua, &ctx)?;
            telemetry::register(&lua, &ctx)?;
            timer::register(&lua, &ctx)?;
            helpers::register(&lua, &ctx, spec.limits.memory_bytes)?;
            outcome::register(&lua)?;
            require::register(&lua, &ctx)?;
            let config = convert::to_lua(&lua, &spec.config)?;
            lua.globals()
                .set("config", readonly.call::<LuaValue>(config)?)?;
            let state = convert::state_to_lua(&lua, &spec.state)?;
            lua.globals().set("state", state)
        };
        setup().map_err(fail)?;

        let watching = watch.begin();
        ctx.budget.start(spec.limits.hook_timeout);
        let ran = nesting::compile(&lua, source.as_bytes(), &format!("@{entry}"))
            .and_then(|chunk| chunk.call::<()>(()));
        ctx.budget.stop();
        let noted = watch.last_position();
        drop(watching);
        ran.map_err(|e| error::place_memory_error(fail(e), noted, None))?;

        let globals = lua.globals();
        let hook = |name: &str| -> Result<Option<Function>, ScriptError> {
            match globals.raw_get::<LuaValue>(name) {
                Ok(LuaValue::Nil) => Ok(None),
                Ok(LuaValue::Function(f)) => Ok(Some(f)),
                Ok(other) => Err(ScriptError::new(
                    ErrorKind::Load,
                    format!("`{name}` must be a function, found a {}", other.type_name()),
                )
                .or_file(&entry)
                .in_hook(HookName::Load)),
                Err(e) => Err(fail(e)),
            }
        };
        let hooks = Hooks {
            init: hook("init")?,
            on_event: hook("on_event")?,
            on_config: hook("on_config")?,
            shutdown: hook("shutdown")?,
            on_promote: hook("on_promote")?,
        };
        Ok(LuaPlugin {
            lua,
            watch,
            ctx,
            hooks,
            readonly,
            spec: spec.clone(),
            entry,
        })
    }

    fn call<A: IntoLuaMulti, R: FromLuaMulti>(
        &self,
        f: &Function,
        args: A,
        hook: HookName,
    ) -> Result<R, ScriptError> {
        let _watching = self.watch.begin();
        self.ctx.budget.start(self.spec.limits.hook_timeout);
        let result = f.call::<R>(args);
        self.ctx.budget.stop();
        result.map_err(|e| {
            let info = f.info();
            let start = info.short_src.zip(info.line_defined);
            error::place_memory_error(self.error(&e, hook), self.watch.last_position(), start)
        })
    }

    fn error(&self, e: &mlua::Error, hook: HookName) -> ScriptError {
        to_script_error(e, self.spec.limits.memory_bytes >> 20)
            .or_file(&self.entry)
            .in_hook(hook)
    }
}

impl PluginInstance for LuaPlugin {
    fn init(&mut self) -> Result<(), ScriptError> {
        let result = match &self.hooks.init {
            Some(f) => self.call(f, (), HookName::Init),
            None => Ok(()),
        };
        // What loading and `init` left (the compiled prelude's and entry's
        // temporaries) is freed now, not when the first events come: an
        // idle plugin holds only what it keeps.
        let _ = self.lua.gc_collect();
        // Loading was the deepest this thread goes while idle.
        stack::release_below_here();
        result
    }

    fn on_event(&mut self, event: &Arc<Event>) -> Result<Outcome, ScriptError> {
        // The plugin is at work: its thread goes back to the host's fast
        // allocator (an idle one never does, see `system_alloc.rs`).
        use_system_allocator(false);
        let Some(f) = &self.hooks.on_event else {
            return Ok(Outcome::Ack);
        };
        let table =
            raw::event_table(&self.lua, event).map_err(|e| self.error(&e, HookName::OnEvent))?;
        *self.ctx.current.borrow_mut() = Some(event.clone());
        let result = self.call::<_, LuaValue>(f, table, HookName::OnEvent);
        *self.ctx.current.borrow_mut() = None;
        outcome::from_return(result?).map_err(|e| e.or_file(&self.entry).in_hook(HookName::OnEvent))
    }

    fn has_on_config(&self) -> bool {
        self.hooks.on_config.is_some()
    }

    fn on_config(&mut self, config: &Value) -> Result<(), ScriptError> {
        let view = convert::to_lua(&self.lua, config)
            .and_then(|c| self.readonly.call::<LuaValue>(c))
            .map_err(|e| self.error(&e, HookName::OnConfig))?;
        let globals = self.lua.globals();
        let previous: LuaValue = globals
            .raw_get("config")
            .map_err(|e| self.error(&e, HookName::OnConfig))?;
        // Raw: a metatable the script put on `_G` must not run here, outside
        // the time limit.
        globals
            .raw_set("config", view.clone())
            .map_err(|e| self.error(&e, HookName::OnConfig))?;
        let result = match &self.hooks.on_config {
            Some(f) => self.call(f, view, HookName::OnConfig),
            None => Ok(()),
        };
        match result {
            Ok(()) => self.spec.config = config.clone(),
            // A refused config leaves the plugin as it was.
            Err(_) => {
                let _ = globals.raw_set("config", previous);
            }
        }
        result
    }

    fn shutdown(&mut self) -> Result<(), ScriptError> {
        match &self.hooks.shutdown {
            Some(f) => self.call(f, (), HookName::Shutdown),
            None => Ok(()),
        }
    }

    fn next_timer(&mut self) -> Option<Instant> {
        self.ctx.timers.borrow_mut().next_deadline()
    }

    fn run_due_timer(&mut self, now: Instant) -> Option<Result<(), ScriptError>> {
        use_system_allocator(false);
        let f = self.ctx.timers.borrow_mut().take_due(now)?;
        Some(self.call(&f, (), HookName::Timer))
    }

    fn clear_timers(&mut self) {
        self.ctx.timers.borrow_mut().clear();
    }

    fn on_promote(&mut self, old_state: &Value) -> Result<bool, ScriptError> {
        let Some(f) = &self.hooks.on_promote else {
            return Ok(false);
        };
        let old = convert::state_to_lua(&self.lua, old_state)
            .map_err(|e| self.error(&e, HookName::OnPromote))?;
        self.call::<_, ()>(f, old, HookName::OnPromote)?;
        Ok(true)
    }

    fn state(&mut self) -> Result<Value, ScriptError> {
        let state: LuaValue = self
            .lua
            .globals()
            .raw_get("state")
            .map_err(|e| self.error(&e, HookName::Shutdown))?;
        convert::from_lua(&state).map_err(|e| {
            ScriptError::new(
                ErrorKind::Runtime,
                format!("state must hold plain data: {}", e.message("state")),
            )
            .or_file(&self.entry)
        })
    }
}

/// Compiles the entry and every other `.lua` file of the plugin folder
/// without running anything; returns every syntax error.
pub fn check(spec: &PluginSpec) -> Vec<ScriptError> {
    let lua =
        Lua::new_with(mlua::StdLib::NONE, mlua::LuaOptions::default()).expect("a bare Lua state");
    crate::plugin::check_sources(spec, "lua", |src, shown| {
        nesting::compile(&lua, src.as_bytes(), &format!("@{shown}"))
            .err()
            .map(|e| to_script_error(&e, 0).or_file(shown))
    })
}
