//! The interpreter kinds a plugin can name in its manifest.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Which runtime executes a plugin (`runtime:` in `plugin.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// A Lua 5.4 script run by mlua.
    Lua,
    /// A Rhai script.
    Rhai,
    /// A Rust `cdylib` loaded through the native C ABI.
    Native,
}

impl RuntimeKind {
    /// Every runtime, in the order the docs list them.
    pub const ALL: [RuntimeKind; 3] = [RuntimeKind::Lua, RuntimeKind::Rhai, RuntimeKind::Native];

    /// The name used in manifests, logs and telemetry (`lua`, `rhai`, `native`).
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Lua => "lua",
            RuntimeKind::Rhai => "rhai",
            RuntimeKind::Native => "native",
        }
    }

    /// The script runtime an entry file's extension implies (`.lua`, `.rhai`).
    pub fn from_extension(ext: &str) -> Option<RuntimeKind> {
        match ext {
            "lua" => Some(RuntimeKind::Lua),
            "rhai" => Some(RuntimeKind::Rhai),
            _ => None,
        }
    }

    /// The default entry file of a script runtime (`main.lua`, `main.rhai`).
    pub fn default_entry(self) -> Option<&'static str> {
        match self {
            RuntimeKind::Lua => Some("main.lua"),
            RuntimeKind::Rhai => Some("main.rhai"),
            RuntimeKind::Native => None,
        }
    }
}

impl fmt::Display for RuntimeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
