//! The script helpers `json`, `time` and `regex` (SPEC §4), written once for
//! every script runtime.
//!
//! Each runtime only converts its values and turns a [`HelperError`] into a
//! script error at the calling line; the work, the limits and the messages
//! are here: JSON text with positioned decode errors and a bound on what it
//! builds ([`json`]), UTC formatting and parsing that refuses a bad format
//! instead of panicking ([`time`]), and linear-time regexes with size limits,
//! a per-plugin cache of compiled patterns, and output and time bounds on
//! `replace` ([`regex`]).

pub(crate) mod json;
pub(crate) mod regex;
pub(crate) mod time;

/// Why a helper call failed. The message is the script's error text, naming
/// the helper as Lua spells it (`json.decode`); a runtime that spells it
/// otherwise passes the name it uses.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelperError {
    /// A JSON text that does not parse, at `line` and `column` of the text.
    #[error("{helper}: line {line}, column {column}: {message}")]
    Decode {
        /// The helper, as the runtime spells it.
        helper: String,
        /// 1-based line in the JSON text.
        line: usize,
        /// 1-based column in the JSON text.
        column: usize,
        /// What was wrong there.
        message: String,
    },
    /// A value that JSON cannot carry, or too deep (the conversion's message).
    #[error("{helper}: {message}")]
    Invalid {
        /// The helper, as the runtime spells it.
        helper: String,
        /// What was refused.
        message: String,
    },
    /// A result past the plugin's memory limits (a memory limit error, not a
    /// script error).
    #[error("{helper}: {what} larger than the plugin's memory limits allow ({limit})")]
    TooLarge {
        /// The helper, as the runtime spells it.
        helper: String,
        /// What would have been too large (`result`, `arrays`).
        what: &'static str,
        /// The limit it would have crossed, in bytes or items.
        limit: usize,
    },
    /// A time or format that did not parse, or a time out of range.
    #[error("{helper}: {message}")]
    Time {
        /// The helper, as the runtime spells it.
        helper: String,
        /// What did not parse, and why.
        message: String,
    },
    /// A regex that does not compile: `regex: PATTERN: column N: MESSAGE`.
    #[error("regex: {pattern}: {message}")]
    Pattern {
        /// The pattern as given.
        pattern: String,
        /// `column N: why`, or why for a pattern refused as a whole.
        message: String,
    },
    /// The hook's time limit ran out inside the call.
    #[error("time limit exceeded")]
    TimeUp,
}

impl HelperError {
    /// Whether this is a memory limit error (raised as one by the runtime).
    pub(crate) fn is_memory(&self) -> bool {
        matches!(self, HelperError::TooLarge { .. })
    }
}
