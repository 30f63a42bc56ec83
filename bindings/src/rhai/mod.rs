//! The Rhai runtime: one `rhai::Engine` and compiled `AST` per plugin.
//!
//! Loading builds a sandboxed engine (no `eval`, imports confined to the
//! plugin folder, size limits derived from `limits.memory_mb`, a wall-clock
//! deadline checked by the progress callback), registers the bindings as
//! static modules (`bus::publish`, `log::info`, `timer::every` …), compiles
//! the entry with its path as source, runs its top-level statements, and
//! takes out the body of each hook the script defines. Every hook then runs
//! its body in place (`hook.rs`) in one run-time state kept for the plugin's
//! life (Rhai's global state and function-resolution caches, with the
//! script's functions and top-level imports). `config` and `state` are
//! reachable by name in every function through the engine's variable
//! resolver: `config` is a read-only map (a statement assigning into it
//! raises where it runs, a key it lacks included: `readonly.rs`), `state` a
//! shared map that hooks mutate in place.

mod bounded;
mod bus;
mod context;
mod convert;
mod error;
mod event;
mod helpers;
mod hook;
mod log;
mod outcome;
mod readonly;
mod resolver;
mod telemetry;
mod timer;

#[cfg(test)]
mod promote_tests;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rhai::{
    AST, Caches, Dynamic, Engine, EvalAltResult, EvalContext, GlobalRuntimeState, Map, Scope,
};
use serde_json::Value;

use self::context::{Context, Ctx};
use self::hook::HookBody;
use crate::{
    ErrorKind, Event, HookName, Outcome, PluginInstance, PluginSpec, ScriptError, SharedHost,
};

/// After the deadline, at most this many operations (and [`GRACE_TIME`])
/// for a variable read to raise the time limit where the script is.
const GRACE_OPS: u64 = 256;

/// After the deadline, at most this long for a variable read to raise the
/// time limit where the script is.
const GRACE_TIME: std::time::Duration = std::time::Duration::from_millis(10);

/// The hooks the script defines, ready to run in place ([`HookBody`]).
#[derive(Debug, Default)]
struct Hooks {
    init: Option<Rc<HookBody>>,
    on_event: Option<Rc<HookBody>>,
    on_config: Option<Rc<HookBody>>,
    shutdown: Option<Rc<HookBody>>,
    on_promote: Option<Rc<HookBody>>,
}

/// A loaded Rhai plugin.
pub struct RhaiPlugin {
    engine: Engine,
    /// The script's functions plus its top-level `import` statements: the
    /// imports are brought into `global` at load, and timer callbacks are
    /// found (or, when not script functions, called) through it.
    ast: AST,
    /// Where hooks bind their parameters and keep their locals (empty
    /// between two calls).
    scope: Scope<'static>,
    /// The run-time state every hook call continues: the script's functions,
    /// its top-level imports and the source. Kept, like `caches`, for the
    /// plugin's life, as if every hook were one more call of one long run.
    global: GlobalRuntimeState,
    /// Rhai's function-resolution caches. A fresh `call_fn` would resolve
    /// every function the hook calls anew on every event; the script cannot
    /// change between two events (a reload builds a new plugin), so what was
    /// resolved once stays right.
    caches: Caches,
    /// Timer callbacks that are functions of the script, by name and arity,
    /// taken out to run in place like hooks.
    callbacks: HashMap<(String, usize), Option<Rc<HookBody>>>,
    ctx: Ctx,
    hooks: Hooks,
    spec: PluginSpec,
}

thread_local! {
    /// Rhai's standard package, built once per thread: every engine this
    /// thread builds (the plugin's first, then one per reload or crash
    /// restart) shares it. Rhai's modules are not `Send` (no `sync`
    /// feature), so a thread is as far as it can be shared.
    static STANDARD: rhai::Shared<rhai::Module> = {
        use rhai::packages::Package;
        rhai::packages::StandardPackage::new().as_shared_module()
    };
}

/// What `Engine::new` builds (the standard package, the strings interner),
/// with the thread's shared standard package instead of a new one; its
/// default module resolver and `print`/`debug` are replaced by ours anyway.
fn standard_engine() -> Engine {
    /// `Engine::new`'s interner size.
    const MAX_STRINGS_INTERNED: usize = 256;
    let mut engine = Engine::new_raw();
    engine.set_max_strings_interned(MAX_STRINGS_INTERNED);
    STANDARD.with(|std| engine.register_global_module(std.clone()));
    engine
}

/// A sandboxed engine for `spec` with the bindings registered.
fn build_engine(spec: &PluginSpec, ctx: &Ctx) -> Engine {
    let mut engine = standard_engine();
    engine.disable_symbol("eval");
    let c = ctx.clone();
    bounded::register(&mut engine, move || c.budget.expired());
    let mem = spec.limits.memory_bytes;
    // Rhai cannot count bytes; these bound the largest values a script can
    // build so a bomb hits a limit long before the process runs out of memory.
    engine
        .set_max_string_size((mem / 4).max(1 << 10))
        // Rhai re-measures a whole array on every push, so filling one costs
        // n²: the caps are kept low enough to trip long before the time limit.
        .set_max_array_size((mem / 1024).max(1 << 10))
        .set_max_map_size((mem / 2048).max(1 << 10))
        .set_max_call_levels(64)
        .set_max_expr_depths(64, 64)
        .set_max_modules(64);
    engine.set_module_resolver(resolver::FolderResolver::new(spec.dir.clone()));
    let c = ctx.clone();
    // Time's up (the watchdog's flag, looked at on every operation): Rhai
    // drops the position of a run stopped from here but for the hook's own
    // line. So the first operation past the deadline only takes note, and
    // the next variable read raises an ordinary error, which Rhai positions
    // at that read and wraps once per call (the call chain). A call that
    // reads no variable within a short grace is stopped wherever it is.
    let noticed = std::cell::Cell::new((0u64, None::<Instant>));
    engine.on_progress(move |ops| {
        if !c.budget.expired() {
            return None;
        }
        if c.budget.notice() {
            noticed.set((ops, Some(Instant::now())));
            return None;
        }
        let (at_op, at) = noticed.get();
        let in_grace = ops < at_op + GRACE_OPS && at.is_some_and(|t| t.elapsed() < GRACE_TIME);
        (!in_grace).then(|| Dynamic::from(error::TIME_UP))
    });
    let c = ctx.clone();
    #[allow(deprecated)] // `on_var` is stable in use, marked volatile upstream.
    engine.on_var(move |name, _, _| {
        if c.budget.is_noticed() {
            return Err(error::time_up());
        }
        match name {
            "config" => Ok(Some(c.config.borrow().clone())),
            readonly::CONFIG_WRITE => Err(readonly::config_write()),
            readonly::STATE_WRITE => Err(readonly::state_write()),
            "state" => Ok(Some(c.state.clone())),
            _ => Ok(None),
        }
    });
    bus::register(&mut engine, ctx);
    log::register(&mut engine, ctx);
    telemetry::register(&mut engine, ctx);
    timer::register(&mut engine, ctx);
    helpers::register(&mut engine, ctx);
    outcome::register(&mut engine);
    event::register(&mut engine);
    engine
}

/// A `state` (the plugin's own at load, or the old version's given to
/// `on_promote`) as scripts see it: an object map, empty when there is none.
fn state_value(state: &Value) -> Dynamic {
    match state {
        Value::Object(_) => convert::to_dynamic(state),
        _ => Dynamic::from(Map::new()),
    }
}

/// `config` as scripts see it: a read-only map. (Not shared: Rhai lets a
/// script write through a shared value even when it is marked read-only.)
fn config_value(config: &Value) -> Dynamic {
    convert::to_dynamic(config).into_read_only()
}

impl RhaiPlugin {
    /// Builds the engine, compiles the entry and runs its top-level statements.
    pub fn load(spec: &PluginSpec, host: SharedHost) -> Result<RhaiPlugin, ScriptError> {
        let entry = spec.entry_display();
        let source = spec.read_entry()?;
        let state = state_value(&spec.state);
        let ctx: Ctx = Rc::new(Context {
            info: spec.info.clone(),
            host,
            entry: entry.clone(),
            current: RefCell::new(None),
            timers: RefCell::default(),
            budget: Default::default(),
            config: RefCell::new(config_value(&spec.config)),
            state: state.into_shared(),
        });
        let engine = build_engine(spec, &ctx);
        let source = readonly::guard(&engine, &source);
        let mut ast = engine
            .compile(&source)
            .map_err(|e| error::parse_error(&e, &entry).in_hook(HookName::Load))?;
        ast.set_source(entry.clone());
        let mut hooks = Hooks::default();
        for f in ast.iter_functions() {
            let (slot, arity) = match f.name {
                "init" => (&mut hooks.init, 0),
                "on_event" => (&mut hooks.on_event, 1),
                "on_config" => (&mut hooks.on_config, 1),
                "shutdown" => (&mut hooks.shutdown, 0),
                "on_promote" => (&mut hooks.on_promote, 1),
                _ => continue,
            };
            if f.params.len() == arity {
                *slot = HookBody::of(&ast, f.name, arity).map(Rc::new);
            } else {
                return Err(ScriptError::new(
                    ErrorKind::Load,
                    format!(
                        "`fn {}` must take {arity} parameter(s), found {}",
                        f.name,
                        f.params.len()
                    ),
                )
                .or_file(&entry)
                .in_hook(HookName::Load));
            }
        }
        let imports = ast
            .statements()
            .iter()
            .filter(|s| matches!(s, rhai::Stmt::Import(..)))
            .cloned();
        let mut hooks_ast = AST::new(imports, ast.shared_lib().clone());
        hooks_ast.set_source(entry.clone());
        let mut global = engine.new_global_runtime_state();
        global.source = Some(entry.as_str().into());
        global.lib.push(ast.shared_lib().clone());
        let mut plugin = RhaiPlugin {
            engine,
            ast: hooks_ast,
            scope: Scope::new(),
            global,
            caches: Caches::new(),
            callbacks: HashMap::new(),
            ctx,
            hooks,
            spec: spec.clone(),
        };
        // The top-level variables live in a scope of their own: functions,
        // hooks included, do not see them (docs/rhai.md).
        let mut top = Scope::new();
        plugin.ctx.budget.start(spec.limits.hook_timeout);
        let ran = plugin
            .engine
            .run_ast_with_scope(&mut top, &ast)
            .map(drop)
            .and_then(|()| plugin.import_for_hooks(&mut top));
        plugin.ctx.budget.stop();
        ran.map_err(|e| plugin.error(&e, HookName::Load))?;
        Ok(plugin)
    }

    /// Brings the script's top-level imports into the state hooks run in, so
    /// its functions see them (they ran once already, and each module is
    /// cached by the resolver).
    fn import_for_hooks(&mut self, top: &mut Scope) -> Result<(), Box<EvalAltResult>> {
        for stmt in self.ast.statements() {
            let rhai::Stmt::Import(x, _) = stmt else {
                continue;
            };
            let (expr, alias) = &**x;
            let path = match expr {
                rhai::Expr::StringConstant(s, _) => s.clone(),
                expr => {
                    EvalContext::new(&self.engine, &mut self.global, &mut self.caches, top, None)
                        .eval_expression_tree(&expr.into())?
                        .into_immutable_string()
                        .map_err(|t| {
                            EvalAltResult::ErrorMismatchDataType(
                                "string".into(),
                                t.into(),
                                expr.start_position(),
                            )
                        })?
                }
            };
            let module = self.engine.module_resolver().resolve_raw(
                &self.engine,
                &mut self.global,
                top,
                &path,
                expr.start_position(),
            )?;
            let module = match alias.is_empty() || module.is_indexed() {
                true => module,
                false => {
                    let mut m = rhai::Shared::try_unwrap(module).unwrap_or_else(|m| (*m).clone());
                    m.build_index();
                    m.into()
                }
            };
            self.global.push_import(alias.name.clone(), module);
            self.global.num_modules_loaded += 1;
        }
        Ok(())
    }

    fn error(&self, e: &rhai::EvalAltResult, hook: HookName) -> ScriptError {
        let mut err = error::eval_error(
            e,
            &self.ctx.entry,
            self.spec.limits.hook_timeout.as_millis(),
            self.spec.limits.memory_bytes >> 20,
        )
        .in_hook(hook);
        // The chain always ends in the hook the host called.
        let outer = format!("in {} ({})", hook.as_str(), self.ctx.entry);
        err.traceback = Some(match err.traceback.take() {
            Some(chain) => format!("{chain}\n  {outer}"),
            None => format!("call chain (innermost first):\n  {outer}"),
        });
        err
    }

    /// Runs `hook`'s body in place with `arg` bound to its parameter; `None`
    /// when the script does not define it.
    fn run_hook(
        &mut self,
        hook: HookName,
        arg: Option<Dynamic>,
    ) -> Result<Option<Dynamic>, ScriptError> {
        let body = match hook {
            HookName::Init => &self.hooks.init,
            HookName::OnEvent => &self.hooks.on_event,
            HookName::OnConfig => &self.hooks.on_config,
            HookName::Shutdown => &self.hooks.shutdown,
            HookName::OnPromote => &self.hooks.on_promote,
            _ => &None,
        };
        match body.clone() {
            Some(body) => self.run_body(&body, arg, hook).map(Some),
            None => Ok(None),
        }
    }

    /// Runs a timer's callback in place like a hook when it is a function of
    /// the script (its body taken out once and kept); `None` when it is not.
    fn run_callback(&mut self, f: &rhai::FnPtr) -> Option<Result<(), ScriptError>> {
        let args: Vec<Dynamic> = f.curry().to_vec();
        let key = (f.fn_name().to_owned(), args.len());
        let body = self
            .callbacks
            .entry(key)
            .or_insert_with(|| HookBody::of(&self.ast, f.fn_name(), args.len()).map(Rc::new))
            .clone()?;
        Some(self.run_body(&body, args, HookName::Timer).map(drop))
    }

    /// Runs `body` with `args` in the plugin's kept run-time state, within
    /// the time limit.
    fn run_body(
        &mut self,
        body: &HookBody,
        args: impl IntoIterator<Item = Dynamic>,
        hook: HookName,
    ) -> Result<Dynamic, ScriptError> {
        self.ctx.budget.start(self.spec.limits.hook_timeout);
        let context = EvalContext::new(
            &self.engine,
            &mut self.global,
            &mut self.caches,
            &mut self.scope,
            None,
        );
        let result = body.run(context, args);
        self.ctx.budget.stop();
        result.map_err(|e| self.error(&e, hook))
    }
}

impl PluginInstance for RhaiPlugin {
    fn init(&mut self) -> Result<(), ScriptError> {
        self.run_hook(HookName::Init, None).map(drop)
    }

    fn on_event(&mut self, event: &Arc<Event>) -> Result<Outcome, ScriptError> {
        // The plugin is at work: its thread goes back to the host's fast
        // allocator (an idle one never does, see `system_alloc.rs`).
        crate::system_alloc::use_system_allocator(false);
        if self.hooks.on_event.is_none() {
            return Ok(Outcome::Ack);
        }
        *self.ctx.current.borrow_mut() = Some(event.clone());
        let view = event::EventView(event.clone());
        let result = self.run_hook(HookName::OnEvent, Some(Dynamic::from(view)));
        *self.ctx.current.borrow_mut() = None;
        outcome::from_return(result?.unwrap_or(Dynamic::UNIT))
            .map_err(|e| e.or_file(&self.ctx.entry).in_hook(HookName::OnEvent))
    }

    fn has_on_config(&self) -> bool {
        self.hooks.on_config.is_some()
    }

    fn on_config(&mut self, config: &Value) -> Result<(), ScriptError> {
        let view = config_value(config);
        let previous = std::mem::replace(&mut *self.ctx.config.borrow_mut(), view.clone());
        if let Err(e) = self.run_hook(HookName::OnConfig, Some(view)) {
            // A refused config leaves the plugin as it was.
            *self.ctx.config.borrow_mut() = previous;
            return Err(e);
        }
        self.spec.config = config.clone();
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), ScriptError> {
        self.run_hook(HookName::Shutdown, None).map(drop)
    }

    fn next_timer(&mut self) -> Option<Instant> {
        self.ctx.timers.borrow_mut().next_deadline()
    }

    fn run_due_timer(&mut self, now: Instant) -> Option<Result<(), ScriptError>> {
        crate::system_alloc::use_system_allocator(false);
        let f = self.ctx.timers.borrow_mut().take_due(now)?;
        // A script function (a closure or `Fn("name")`) runs like a hook, so it
        // sees the script's imports; anything else through its pointer.
        if let Some(result) = self.run_callback(&f) {
            return Some(result);
        }
        self.ctx.budget.start(self.spec.limits.hook_timeout);
        let r = f.call::<Dynamic>(&self.engine, &self.ast, ());
        self.ctx.budget.stop();
        Some(r.map(drop).map_err(|e| self.error(&e, HookName::Timer)))
    }

    fn clear_timers(&mut self) {
        self.ctx.timers.borrow_mut().clear();
    }

    fn on_promote(&mut self, old_state: &Value) -> Result<bool, ScriptError> {
        let old = state_value(old_state);
        Ok(self.run_hook(HookName::OnPromote, Some(old))?.is_some())
    }

    fn state(&mut self) -> Result<Value, ScriptError> {
        convert::to_value(&self.ctx.state).map_err(|e| {
            ScriptError::new(
                ErrorKind::Runtime,
                format!("state must hold plain data: {}", e.message("state")),
            )
            .or_file(&self.ctx.entry)
        })
    }
}

/// Compiles the entry and every other `.rhai` file of the plugin folder
/// without running anything; returns every syntax error.
pub fn check(spec: &PluginSpec) -> Vec<ScriptError> {
    let mut engine = Engine::new_raw();
    engine.disable_symbol("eval");
    crate::plugin::check_sources(spec, "rhai", |src, shown| {
        engine
            .compile(src)
            .err()
            .map(|e| error::parse_error(&e, shown))
    })
}
