//! Rust functions an application registers for scripts to call.
//!
//! Registered as `HostBuilder::function("name", f)`; a script calls it as
//! `host.name(a, b)` (Lua). Arguments and the result are JSON values; an
//! `Err(message)` becomes an ordinary script error at the calling line.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::Value;

/// A function scripts can call: JSON arguments in, JSON result or message out.
pub type HostFunction = Arc<dyn Fn(Vec<Value>) -> Result<Value, String> + Send + Sync>;

/// The registered functions by name.
#[derive(Clone, Default)]
pub struct Functions {
    by_name: BTreeMap<String, HostFunction>,
    /// Those a shadow candidate may call too (SPEC §13): no effect on the world.
    shadow_safe: BTreeSet<String>,
}

impl std::fmt::Debug for Functions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

/// Whether `name` can be a script-visible function name (a Lua/Rhai identifier).
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Functions {
    /// Registers (or replaces) a function.
    pub fn insert(&mut self, name: String, f: HostFunction) {
        self.shadow_safe.remove(&name);
        self.by_name.insert(name, f);
    }

    /// Registers (or replaces) a function a shadow candidate may call too.
    pub fn insert_shadow_safe(&mut self, name: String, f: HostFunction) {
        self.shadow_safe.insert(name.clone());
        self.by_name.insert(name, f);
    }

    /// Whether `name` was registered as shadow-safe.
    pub fn is_shadow_safe(&self, name: &str) -> bool {
        self.shadow_safe.contains(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Calls `name`.
    pub fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FunctionError> {
        let f = self
            .by_name
            .get(name)
            .ok_or_else(|| FunctionError::Unknown(name.to_owned()))?;
        f(args).map_err(FunctionError::Failed)
    }
}

/// Why a call of an application function failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FunctionError {
    /// No function of that name is registered.
    #[error("no host function named `{0}`")]
    Unknown(String),
    /// The function returned an error: its message.
    #[error("{0}")]
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_identifiers() {
        assert!(valid_name("lookup_user"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1x"));
        assert!(!valid_name("a-b"));
        assert!(!valid_name(""));
    }

    #[test]
    fn calls_reach_the_registered_function() {
        let mut f = Functions::default();
        f.insert(
            "twice".into(),
            Arc::new(|a| Ok(Value::from(a[0].as_i64().unwrap() * 2))),
        );
        assert_eq!(f.call("twice", vec![Value::from(21)]), Ok(Value::from(42)));
        assert_eq!(
            f.call("nope", vec![]).unwrap_err(),
            FunctionError::Unknown("nope".into())
        );
    }
}
