//! Turning Rhai errors into positioned [`ScriptError`]s.
//!
//! Rhai gives a line and a column for every error. An error raised inside
//! nested function calls arrives wrapped once per call; the innermost error
//! is the message and position, and the wrappers become the call chain.

use rhai::{EvalAltResult, ParseError, Position};

use crate::{ErrorKind, ScriptError};

/// The token `on_progress` terminates a run with when the time is up, and
/// the value of the positioned error the variable resolver raises then.
pub(crate) const TIME_UP: &str = "plughost: time limit";

/// The error a variable read raises once the time is up (Rhai fills in the
/// read's position).
pub(crate) fn time_up() -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(TIME_UP.into(), Position::NONE).into()
}

/// The time limit's error at `pos`, for a binding that found the time up
/// (a `bus::request` whose wait ran into the limit): a termination, which
/// `try`/`catch` cannot keep.
pub(crate) fn time_up_at(pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(TIME_UP.into(), pos).into()
}

fn is_time_up(token: &rhai::Dynamic) -> bool {
    token.clone().into_string().is_ok_and(|t| t == TIME_UP)
}

/// A compile error of `file`.
pub(crate) fn parse_error(e: &ParseError, file: &str) -> ScriptError {
    let mut err = ScriptError::new(ErrorKind::Syntax, e.0.to_string());
    err.file = Some(file.to_owned());
    set_position(&mut err, e.1);
    err
}

fn set_position(err: &mut ScriptError, pos: Position) {
    if let Some(line) = pos.line() {
        err.line = Some(line);
        err.column = pos.position();
    }
}

/// A runtime error; `entry` is the file when the error names no source.
pub(crate) fn eval_error(
    e: &EvalAltResult,
    entry: &str,
    timeout_ms: u128,
    memory_mb: usize,
) -> ScriptError {
    let mut chain = Vec::new();
    let mut current = e;
    let mut source: Option<&str> = None;
    loop {
        match current {
            EvalAltResult::ErrorInFunctionCall(name, src, inner, pos) => {
                chain.push(format!(
                    "in call to `{name}` at {}",
                    at(source.unwrap_or(entry), *pos)
                ));
                if !src.is_empty() {
                    source = Some(src);
                }
                current = inner;
            }
            EvalAltResult::ErrorInModule(path, inner, pos) => {
                chain.push(format!(
                    "in module `{path}` imported at {}",
                    at(source.unwrap_or(entry), *pos)
                ));
                current = inner;
            }
            _ => break,
        }
    }
    let (kind, message) = match current {
        EvalAltResult::ErrorTerminated(token, _) | EvalAltResult::ErrorRuntime(token, _)
            if is_time_up(token) =>
        {
            (
                ErrorKind::Timeout,
                format!(
                    "time limit exceeded: the hook ran longer than {timeout_ms} ms (limits.event_timeout_ms)"
                ),
            )
        }
        EvalAltResult::ErrorTooManyOperations(_) => (
            ErrorKind::Timeout,
            format!("time limit exceeded (limits.event_timeout_ms = {timeout_ms})"),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            ErrorKind::Memory,
            format!("memory limit exceeded (limits.memory_mb = {memory_mb}): {what} too large"),
        ),
        EvalAltResult::ErrorParsing(p, _) => (ErrorKind::Syntax, p.to_string()),
        EvalAltResult::ErrorRuntime(value, _) => (
            ErrorKind::Runtime,
            value
                .clone()
                .into_immutable_string()
                .map(|s| s.to_string())
                .unwrap_or_else(|_| value.to_string()),
        ),
        other => (
            ErrorKind::Runtime,
            strip_position(&other.to_string()).to_owned(),
        ),
    };
    let mut err = ScriptError::new(kind, message);
    err.file = Some(source.unwrap_or(entry).to_owned());
    set_position(&mut err, current.position());
    if !chain.is_empty() {
        chain.reverse();
        err.traceback = Some(format!(
            "call chain (innermost first):\n  {}",
            chain.join("\n  ")
        ));
    }
    err
}

/// Rhai's messages end in ` (line N, position M)`; ours put the position in front.
fn strip_position(text: &str) -> &str {
    match text.rfind(" (line ") {
        Some(at) if text.ends_with(')') => &text[..at],
        _ => text,
    }
}

fn at(file: &str, pos: Position) -> String {
    match (pos.line(), pos.position()) {
        (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
        (Some(l), None) => format!("{file}:{l}"),
        _ => file.to_owned(),
    }
}
