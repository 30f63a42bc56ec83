//! A hook's body (or a timer callback's), taken out of the compiled script to be run in place.
//!
//! Rhai replaces the position of a limit error (time, sizes, call depth)
//! with the call's own at every function boundary it crosses, and a call
//! from Rust has none: a limit stopping `on_event` itself would name no
//! line. So the host does not call a hook as a function: it binds the
//! hook's parameter in the plugin's scope and evaluates the hook's body as
//! a block, in the plugin's kept run-time state. A limit hit in the body
//! keeps its line and column; one hit in a function the hook calls is
//! placed at that call.
//!
//! Evaluating the block restores what a call would (the scope, imports made
//! inside it, the search mode); `return` and `exit` end it with their value.

use rhai::{
    AST, ASTNode, Dynamic, EvalAltResult, EvalContext, Expr, ImmutableString, Module, StmtBlock,
};

/// A hook function of the script (or a timer's callback), ready to run in place.
#[derive(Debug, Clone)]
pub(crate) struct HookBody {
    /// The names the arguments are bound to.
    params: Vec<ImmutableString>,
    /// The body, as one block expression.
    body: Expr,
}

impl HookBody {
    /// The body of `fn name(..)` with `arity` parameters, if the script has it.
    pub(crate) fn of(ast: &AST, name: &str, arity: usize) -> Option<HookBody> {
        let def = ast
            .iter_fn_def()
            .find(|d| d.name == name && d.params.len() == arity)?
            .clone();
        let mut lib = Module::new();
        lib.set_script_fn(def.clone());
        let only = AST::new([], lib);
        // The walk visits the body's own statements with a path of one node
        // (nested ones have longer paths); this AST holds that body alone.
        let mut statements = Vec::new();
        only.walk(&mut |path: &[ASTNode]| {
            if let [ASTNode::Stmt(stmt)] = path {
                statements.push((*stmt).clone());
            }
            true
        });
        let block = StmtBlock::new(
            statements,
            def.body.start_position(),
            def.body.end_position(),
        );
        Some(HookBody {
            params: def.params.to_vec(),
            body: Expr::Stmt(Box::new(block)),
        })
    }

    /// Runs the body with `args` bound to the parameters, in order.
    pub(crate) fn run(
        &self,
        mut context: EvalContext,
        args: impl IntoIterator<Item = Dynamic>,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let scope = context.scope_mut();
        let len = scope.len();
        for (name, value) in self.params.iter().zip(args) {
            scope.push_dynamic(name.as_str(), value);
        }
        let result = context.eval_expression_tree(&(&self.body).into());
        context.scope_mut().rewind(len);
        result.or_else(|e| match *e {
            EvalAltResult::Return(value, _) | EvalAltResult::Exit(value, _) => Ok(value),
            _ => Err(e),
        })
    }
}
