//! Script errors: a failure inside a plugin, positioned in its source.
//!
//! Every runtime turns its own errors into a [`ScriptError`], so the host
//! prints, logs and dead-letters them the same way:
//! `plugins/greeter/main.lua:12:5: attempt to index a nil value (in on_event)`.

use std::fmt;

/// Which part of a plugin was running when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookName {
    /// Compiling the script or running its top-level code.
    Load,
    /// `init()`.
    Init,
    /// `on_event(event)`.
    OnEvent,
    /// `on_config(config)`.
    OnConfig,
    /// `shutdown()`.
    Shutdown,
    /// `on_promote(old_state)`, after a gradual rollout's promotion.
    OnPromote,
    /// A callback given to `timer.after` or `timer.every`.
    Timer,
}

impl HookName {
    /// The name as the script author knows it.
    pub fn as_str(self) -> &'static str {
        match self {
            HookName::Load => "main chunk",
            HookName::Init => "init",
            HookName::OnEvent => "on_event",
            HookName::OnConfig => "on_config",
            HookName::Shutdown => "shutdown",
            HookName::OnPromote => "on_promote",
            HookName::Timer => "timer",
        }
    }
}

/// What kind of failure a [`ScriptError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The source does not compile.
    Syntax,
    /// An error raised while running (including by a binding).
    Runtime,
    /// The hook ran longer than `limits.event_timeout_ms`.
    Timeout,
    /// The interpreter went over `limits.memory_mb`.
    Memory,
    /// The plugin could not be loaded at all (missing file, bad library).
    Load,
    /// A hook returned a value the host cannot use.
    BadReturn,
    /// The plugin cannot go on (a native plugin's `fatal`): the host counts
    /// a crash and restarts it in a fresh instance (SPEC §12).
    Crash,
}

/// An error inside a plugin, with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The script file (as displayed, e.g. `plugins/greeter/main.lua`).
    pub file: Option<String>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when the interpreter gives one.
    pub column: Option<usize>,
    /// The message without position.
    pub message: String,
    /// The hook that was running.
    pub hook: Option<HookName>,
    /// The interpreter's call chain, innermost first, when it has one.
    pub traceback: Option<String>,
    /// The plugin it happened in, once known (every error a loaded plugin
    /// returns names it; see [`ScriptError::of_plugin`]).
    pub plugin: Option<std::sync::Arc<crate::PluginInfo>>,
}

impl ScriptError {
    /// An error without position.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ScriptError {
            kind,
            file: None,
            line: None,
            column: None,
            message: message.into(),
            hook: None,
            traceback: None,
            plugin: None,
        }
    }

    /// Names the plugin when none is named yet.
    pub fn of_plugin(mut self, plugin: &std::sync::Arc<crate::PluginInfo>) -> Self {
        if self.plugin.is_none() {
            self.plugin = Some(plugin.clone());
        }
        self
    }

    /// The name of the plugin it happened in, once known.
    pub fn plugin_name(&self) -> Option<&str> {
        self.plugin.as_deref().map(|p| p.name.as_str())
    }

    /// Sets the file when none is known yet.
    pub fn or_file(mut self, file: &str) -> Self {
        if self.file.is_none() {
            self.file = Some(file.to_owned());
        }
        self
    }

    /// Records which hook was running.
    pub fn in_hook(mut self, hook: HookName) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The one-line message followed by the traceback, as dead letters carry it.
    pub fn detailed(&self) -> String {
        match &self.traceback {
            Some(tb) if !tb.is_empty() => format!("{self}\n{tb}"),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            f.write_str(file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hook) = self.hook {
            write!(f, " (in {})", hook.as_str())?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_reads_file_line_column_message_hook() {
        let mut e = ScriptError::new(ErrorKind::Runtime, "attempt to index a nil value");
        e.file = Some("plugins/greeter/main.lua".into());
        e.line = Some(12);
        e.column = Some(5);
        let e = e.in_hook(HookName::OnEvent);
        assert_eq!(
            e.to_string(),
            "plugins/greeter/main.lua:12:5: attempt to index a nil value (in on_event)"
        );
    }

    #[test]
    fn display_without_position_or_hook() {
        let e = ScriptError::new(ErrorKind::Load, "no such file").or_file("x/main.lua");
        assert_eq!(e.to_string(), "x/main.lua: no such file");
        assert_eq!(ScriptError::new(ErrorKind::Load, "m").to_string(), "m");
    }
}
