//! `config` is read-only and `state` is changed in place: statements that
//! assign into `config`, or a new value to `state`, are refused when the
//! script is compiled.
//!
//! Rhai raises for a write to a key `config` has (`Cannot modify constant
//! config`) and for a non-pure method (`config.clear()`), but a write to a
//! key it lacks (`config.x = 1`, `config["x"] = 1`) lands in the copy the
//! variable resolver handed out and vanishes without a word: Rhai offers no
//! hook that tells such a write from a read. So every assignment whose
//! target starts at `config` (`config = …`, `config.a.b = …`,
//! `config[k] += …`) is found in the compiled script and refused at its
//! line and column, before anything runs. A function or closure that
//! declares a `config` of its own (`let config`, a parameter) is left
//! alone, except where that parameter *is* the config: `on_config`'s, and
//! the one a closure captures the config by (Rhai passes a captured
//! variable as an extra parameter of the same name).
//!
//! `state = #{…}` would vanish the same way (the resolver hands out the
//! shared map, and the assignment replaces only the handed-out copy), so a
//! statement assigning to `state` itself is refused too; `state.x = 1`
//! changes the shared map and is fine.

use std::collections::HashSet;

use rhai::{AST, ASTNode, Expr, FnPtr, ImmutableString, Module, Position, Stmt};

use crate::{ErrorKind, ScriptError};

/// The name scripts read the config by.
const CONFIG: &str = "config";

/// The name scripts keep their state by.
const STATE: &str = "state";

/// What is wrong with one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    /// It assigns into `config`.
    Config,
    /// It assigns a new value to `state` itself.
    State,
}

/// Every statement of `ast` that assigns into `config`, as errors of `file`.
pub(crate) fn config_writes(ast: &AST, file: &str) -> Vec<ScriptError> {
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
        .into_iter()
        .map(|(write, pos)| {
            let message = match write {
                Write::Config => {
                    "`config` is read-only: a write to it is refused (copy it first: \
                     `let c = config; c.x = 1;`)"
                }
                Write::State => {
                    "`state` cannot be replaced, only changed in place \
                     (`state.x = 1`, `state.clear()`)"
                }
            };
            let mut err = ScriptError::new(ErrorKind::Syntax, message);
            err.file = Some(file.to_owned());
            err.line = pos.line();
            err.column = pos.position();
            err
        })
        .collect()
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

    fn positions(script: &str) -> Vec<(usize, usize)> {
        let mut engine = rhai::Engine::new_raw();
        engine.set_max_expr_depths(0, 0);
        let ast = engine.compile(script).unwrap();
        config_writes(&ast, "main.rhai")
            .iter()
            .map(|e| (e.line.unwrap(), e.column.unwrap()))
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
}
