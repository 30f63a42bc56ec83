//! Where log lines go: stderr, human-readable or JSON.
//!
//! The level filter comes from `PLUGHOST_LOG` (or `RUST_LOG`), `info` by
//! default, in `tracing_subscriber`'s `EnvFilter` syntax.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the global subscriber writing to stderr. Safe to call twice.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_env("PLUGHOST_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
