//! `import "x" as m;`: modules from the plugin's own folder, nowhere else.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use super::context::throw;
use crate::modpath;

/// Resolves imports to `.rhai` files inside one plugin folder, compiling each once.
pub(crate) struct FolderResolver {
    dir: PathBuf,
    cache: RefCell<HashMap<String, Shared<Module>>>,
}

impl FolderResolver {
    /// A resolver confined to `dir`.
    pub(crate) fn new(dir: PathBuf) -> Self {
        FolderResolver {
            dir,
            cache: RefCell::default(),
        }
    }
}

impl ModuleResolver for FolderResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if let Some(m) = self.cache.borrow().get(path) {
            return Ok(m.clone());
        }
        let file = modpath::resolve(&self.dir, path, "rhai")
            .map_err(|m| throw(format!("import: {m}"), pos))?;
        let text = std::fs::read_to_string(&file.path)
            .map_err(|e| throw(format!("import `{path}`: {e}"), pos))?;
        let shown = self.dir.join(&file.relative).display().to_string();
        let text = super::readonly::guard(engine, &text);
        let mut ast = engine
            .compile(&text)
            .map_err(|e| throw(super::error::parse_error(&e, &shown).to_string(), pos))?;
        ast.set_source(shown);
        let module: Shared<Module> = Module::eval_ast_as_new(Scope::new(), &ast, engine)?.into();
        self.cache
            .borrow_mut()
            .insert(path.to_owned(), module.clone());
        Ok(module)
    }
}
