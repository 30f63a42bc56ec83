//! `config` is read-only and `state` is changed in place: a statement that
//! assigns into `config`, or a new value to `state`, raises where it runs.
//!
//! Rhai raises for a write to a key `config` has (`Cannot modify constant
//! config`) and for a non-pure method (`config.clear()`), but a write to a
//! key it lacks (`config.x = 1`, `config["x"] = 1`) lands in the copy the
//! variable resolver handed out and vanishes without a word: Rhai offers no
//! hook that tells such a write from a read. So the script is compiled once
//! to find every assignment whose target starts at `config` (`config = …`,
//! `config.a.b = …`, `config[k] += …`), and in the source that is then
//! compiled for real, the `config` those statements start from is spelt
//! [`CONFIG_WRITE`] (as long, so every position stays where it was). The
//! variable resolver answers that name with Rhai's own error for a write to
//! a constant, which Rhai places at the variable: the statement raises,
//! catchably, at its line and column, whether the key exists or not.
//!
//! A function or closure that declares a `config` of its own (`let config`,
//! a parameter) is left alone, except where that parameter *is* the
//! config: `on_config`'s, and the one a closure captures the config by
//! (Rhai passes a captured variable as an extra parameter of the same name).
//!
//! `state = #{…}` would vanish the same way (the resolver hands out the
//! shared map, and the assignment replaces only the handed-out copy), so a
//! statement assigning to `state` itself is spelt [`STATE_WRITE`] and raises
//! too; `state.x = 1` changes the shared map and is fine.

use std::collections::HashSet;

use rhai::{
    AST, ASTNode, Engine, EvalAltResult, Expr, FnPtr, ImmutableString, Module, Position, Stmt,
};

/// The name scripts read the config by.
const CONFIG: &str = "config";

/// The name scripts keep their state by.
const STATE: &str = "state";

/// How a statement writing into `config` spells it: as long as `config`.
pub(crate) const CONFIG_WRITE: &str = "__cfg_";

/// How a statement replacing `state` spells it: as long as `state`.
pub(crate) const STATE_WRITE: &str = "__st_";

/// What the variable resolver raises for [`CONFIG_WRITE`]: Rhai's own error
/// for a write to a constant, positioned by Rhai at the variable.
pub(crate) fn config_write() -> Box<EvalAltResult> {
    EvalAltResult::ErrorAssignmentToConstant(CONFIG.into(), Position::NONE).into()
}

/// What the variable resolver raises for [`STATE_WRITE`].
pub(crate) fn state_write() -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(
        "`state` cannot be replaced, only changed in place (`state.x = 1`, `state.clear()`)".into(),
        Position::NONE,
    )
    .into()
}

/// What is wrong with one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// It assigns into `config`.
    Config,
    /// It assigns a new value to `state` itself.
    State,
}

/// `source` with the `config` (or `state`) each refused write starts from
/// respelt ([`CONFIG_WRITE`], [`STATE_WRITE`]); the source itself when it
/// has none, or does not compile (the real compile reports that).
pub(crate) fn guard(engine: &Engine, source: &str) -> String {
    let Ok(ast) = engine.compile(source) else {
        return source.to_owned();
    };
    respell(source, &writes(&ast))
}

/// Replaces the name at each position (1-based line, 1-based column in
/// characters, as Rhai counts them) with its write spelling.
fn respell(source: &str, at: &[(Write, Position)]) -> String {
    let mut out = source.to_owned();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    for (write, pos) in at {
        let (Some(line), Some(column)) = (pos.line(), pos.position()) else {
            continue;
        };
        let Some(&start) = line_starts.get(line - 1) else {
            continue;
        };
        let Some((offset, _)) = source[start..].char_indices().nth(column - 1) else {
            continue;
        };
        let offset = start + offset;
        let (name, spelt) = match write {
            Write::Config => (CONFIG, CONFIG_WRITE),
            Write::State => (STATE, STATE_WRITE),
        };
        if source.get(offset..offset + name.len()) == Some(name) {
            out.replace_range(offset..offset + name.len(), spelt);
        }
    }
    out
}

/// Every refused write of `ast`, with the position of the name it starts from.
fn writes(ast: &AST) -> Vec<(Write, Position)> {
    let top = AST::new(ast.statements().iter().cloned(), Module::new());
    // Each unit with the function's name when a parameter is named
    // `config`, and whether one is named `state`.
    type Unit = (Option<ImmutableString>, bool, AST);
    let units: Vec<Unit> = std::iter::once((None, false, top))
        .chain(ast.iter_fn_def().map(|def| {
            let mut lib = Module::new();
            lib.set_script_fn(def.clone());
            let has = |name: &str| def.params.iter().any(|p| p.as_str() == name);
            let own_config = has(CONFIG).then(|| def.name.clone());
            (own_config, has(STATE), AST::new([], lib))
        }))
        .collect();
    let capturing: HashSet<ImmutableString> = units
        .iter()
        .flat_map(|(.., unit)| capturers(unit))
        .collect();
    let mut found = Vec::new();
    for (own_config, own_state, unit) in &units {
        let own_config = own_config
            .as_ref()
            .is_some_and(|name| name.as_str() != "on_config" && !capturing.contains(name));
        found.extend(writes_in(unit).into_iter().filter(|(w, _)| match w {
            Write::Config => !own_config,
            Write::State => !own_state,
        }));
    }
    found.sort_by_key(|(_, p)| (p.line(), p.position()));
    found.dedup();
    found
}

/// The refused writes of one unit (the top-level statements, or one
/// function), each with its position; a name the unit declares with `let`
/// or `const` is its own variable and may be written.
fn writes_in(unit: &AST) -> Vec<(Write, Position)> {
    let mut writes = Vec::new();
    let mut declared: HashSet<ImmutableString> = HashSet::new();
    unit.walk(&mut |path: &[ASTNode]| {
        match path.last() {
            Some(ASTNode::Stmt(Stmt::Var(x, ..))) => {
                declared.insert(x.0.name.clone());
            }
            Some(ASTNode::Stmt(Stmt::Assignment(x))) => {
                let lhs = &x.1.lhs;
                if let Expr::Variable(v, _, pos) = root(lhs)
                    && v.2.is_empty()
                {
                    match v.1.as_str() {
                        CONFIG => writes.push((Write::Config, *pos)),
                        STATE if matches!(lhs, Expr::Variable(..)) => {
                            writes.push((Write::State, *pos));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        true
    });
    writes.retain(|(w, _)| {
        let name = match w {
            Write::Config => CONFIG,
            Write::State => STATE,
        };
        !declared.contains(name)
    });
    writes
}

/// The closures `unit` creates that capture the config itself (not a
/// variable of the unit named `config`): Rhai curries the captured
/// variables onto the closure's pointer, `curry(Fn("anon$…"), config)`.
fn capturers(unit: &AST) -> Vec<ImmutableString> {
    let mut names = Vec::new();
    unit.walk(&mut |path: &[ASTNode]| {
        let call = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _)) | ASTNode::Stmt(Stmt::FnCall(call, _))) => {
                call
            }
            _ => return true,
        };
        if call.name.as_str() == "curry"
            && let Some(Expr::DynamicConstant(f, _)) = call.args.first()
            && let Some(f) = f.read_lock::<FnPtr>()
            && call.args[1..].iter().any(|a| {
                matches!(a, Expr::Variable(v, short, _)
                    if v.1.as_str() == CONFIG && v.0.is_none() && short.is_none())
            })
        {
            names.push(f.fn_name().into());
        }
        true
    });
    names
}

/// The expression a chain of `.` and `[…]` starts from.
fn root(expr: &Expr) -> &Expr {
    match expr {
        Expr::Dot(x, ..) | Expr::Index(x, ..) => root(&x.lhs),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        let mut engine = Engine::new_raw();
        engine.set_max_expr_depths(0, 0);
        engine
    }

    fn positions(script: &str) -> Vec<(usize, usize)> {
        let ast = engine().compile(script).unwrap();
        writes(&ast)
            .iter()
            .map(|(_, p)| (p.line().unwrap(), p.position().unwrap()))
            .collect()
    }

    #[test]
    fn every_assignment_into_config_is_found() {
        let script = "\
config.x = 1;
fn on_event(e) {
    if true { config[\"y\"] += 2; }
    config.a.b = 3;
    let c = config; c.x = 1;
    config = #{};
}
fn on_config(config) { config.z = 1; }
let f = |v| { config.w = v; };
";
        assert_eq!(
            positions(script),
            [(1, 1), (3, 15), (4, 5), (6, 5), (8, 24), (9, 15)]
        );
    }

    #[test]
    fn a_config_of_its_own_may_be_written() {
        let script = "\
fn helper(config) { config.x = 1; config }
fn other() { let config = #{}; config.x = 1; config }
let config = #{}; config.x = 2;
let f = |config| { config.y = 1; };
fn local() { let config = #{}; let g = || { config.x = 1; }; }
";
        assert_eq!(positions(script), []);
    }

    #[test]
    fn state_is_changed_in_place_not_replaced() {
        let script = "\
fn on_event(e) {
    state.count = 1;
    state[\"k\"] += 1;
    state = #{};
}
fn own() { let state = 1; state = 2; }
fn param(state) { state = 2; }
";
        assert_eq!(positions(script), [(4, 5)]);
    }

    #[test]
    fn only_the_writes_are_respelt_and_positions_stay() {
        let script = "\
fn on_event(e) {
    let s = \"é config\"; config.x = config.y;
    state = #{ config: config };
}
";
        let guarded = guard(&engine(), script);
        assert_eq!(
            guarded,
            "\
fn on_event(e) {
    let s = \"é config\"; __cfg_.x = config.y;
    __st_ = #{ config: config };
}
"
        );
        assert_eq!(guard(&engine(), "fn broken( {"), "fn broken( {");
    }
}
