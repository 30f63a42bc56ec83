//! Turning mlua errors into positioned [`ScriptError`]s.
//!
//! Lua puts the position in front of the message (`main.lua:3: boom`) and
//! mlua appends a traceback; errors raised by our Rust bindings carry the
//! traceback separately. Either way the result names file and line, and keeps
//! the traceback for dead letters.

use std::fmt;

use mlua::{Lua, Value as LuaValue};

use crate::{ErrorKind, ScriptError};

/// Raised by the instruction hook when a hook call runs past its deadline.
#[derive(Debug)]
pub(crate) struct LimitExceeded(pub String);

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LimitExceeded {}

/// An error raised by a binding, positioned at the script line that called
/// it, like Lua's own `error(msg, 2)`.
pub(crate) fn raise(lua: &Lua, message: impl fmt::Display) -> mlua::Error {
    mlua::Error::runtime(positioned(lua, message))
}

/// `message` prefixed with the calling script line: `file:line: message`.
pub(crate) fn positioned(lua: &Lua, message: impl fmt::Display) -> String {
    match caller_position(lua) {
        Some((file, line)) => format!("{file}:{line}: {message}"),
        None => message.to_string(),
    }
}

/// File and line of the innermost script frame on the stack: not C or Rust,
/// and not plughost's own Lua glue (the prelude's `pcall`, `telemetry.span`),
/// whose chunks are named `[plughost …]`.
pub(crate) fn caller_position(lua: &Lua) -> Option<(String, usize)> {
    (1..24).find_map(|level| {
        lua.inspect_stack(level, |d| {
            let line = d.current_line()?;
            let src = d.source().short_src?.into_owned();
            (src != "[C]" && !src.starts_with("[plughost")).then_some((src, line))
        })
        .flatten()
    })
}

/// What a script catches (with `pcall`, `xpcall`, `coroutine.resume`) of an
/// error raised by a binding: mlua hands it over as an opaque userdata; the
/// script gets a one-line string positioned at the line that called the
/// binding, like Lua's own errors, which it can match, concatenate or
/// publish. Memory and time limit errors, and values that are not Rust errors
/// (a script's own error values), are kept as they are.
pub(crate) fn to_script(lua: &Lua, value: LuaValue) -> mlua::Result<LuaValue> {
    let LuaValue::Error(err) = &value else {
        return Ok(value);
    };
    let mut traceback = None;
    let mut inner: &mlua::Error = err;
    loop {
        match inner {
            mlua::Error::CallbackError {
                cause,
                traceback: tb,
            } => {
                traceback.get_or_insert(tb.as_str());
                inner = cause;
            }
            mlua::Error::WithContext { cause, .. } => inner = cause,
            _ => break,
        }
    }
    let text = match inner {
        mlua::Error::MemoryError(_) => return Ok(value),
        mlua::Error::ExternalError(e) if e.downcast_ref::<LimitExceeded>().is_some() => {
            return Ok(value);
        }
        // Positioned already: by `raise`, or by Lua for an error in a module.
        mlua::Error::RuntimeError(message) => split_traceback(message).0,
        // mlua's own (a bad argument): positioned at the call, found in the
        // traceback taken when it was raised.
        other => match traceback.and_then(first_lua_frame) {
            Some((file, line)) => format!("{file}:{line}: {other}"),
            None => positioned(lua, other),
        },
    };
    lua.create_string(text).map(LuaValue::String)
}

/// Converts an mlua error into a script error with kind, position and traceback.
pub(crate) fn to_script_error(err: &mlua::Error, memory_mb: usize) -> ScriptError {
    let mut traceback = None;
    let mut current = err;
    // Unwrap callback layers, keeping the outermost traceback.
    loop {
        match current {
            mlua::Error::CallbackError {
                traceback: tb,
                cause,
            } => {
                traceback.get_or_insert_with(|| tb.clone());
                current = cause;
            }
            mlua::Error::WithContext { cause, .. } => current = cause,
            _ => break,
        }
    }
    let (kind, text) = match current {
        mlua::Error::SyntaxError { message, .. } => (ErrorKind::Syntax, message.clone()),
        mlua::Error::RuntimeError(message) => (ErrorKind::Runtime, message.clone()),
        mlua::Error::MemoryError(_) => (
            ErrorKind::Memory,
            format!("memory limit exceeded (limits.memory_mb = {memory_mb})"),
        ),
        mlua::Error::ExternalError(e) if e.downcast_ref::<LimitExceeded>().is_some() => {
            (ErrorKind::Timeout, e.to_string())
        }
        other => (ErrorKind::Runtime, other.to_string()),
    };
    let (message, inline_tb) = split_traceback(&text);
    if let Some(tb) = inline_tb {
        traceback.get_or_insert(tb);
    }
    let mut error = ScriptError::new(kind, message);
    if let Some((file, line, rest)) = split_position(&error.message) {
        let rest = rest.to_owned();
        error.file = Some(file.to_owned());
        error.line = Some(line);
        error.message = rest;
    } else if let Some((file, line)) = traceback.as_deref().and_then(first_lua_frame) {
        error.file = Some(file);
        error.line = Some(line);
    }
    error.traceback = traceback;
    error
}

/// A memory limit error without a line, placed at `noted` (the line the
/// watch last noted in the hook call), or else at `start` (the start of the
/// hook function): Lua raises an allocation failure without running any
/// handler, so nothing else knows where the script was.
pub(crate) fn place_memory_error(
    mut error: ScriptError,
    noted: Option<(String, usize)>,
    start: Option<(String, usize)>,
) -> ScriptError {
    if !matches!(error.kind, ErrorKind::Memory) || error.line.is_some() {
        return error;
    }
    if let Some((file, line)) = noted.or(start) {
        error.file = Some(file);
        error.line = Some(line);
    }
    error
}

/// Splits `msg\nstack traceback:\n…` into message and traceback.
fn split_traceback(text: &str) -> (String, Option<String>) {
    match text.find("\nstack traceback:") {
        Some(at) => (text[..at].to_owned(), Some(text[at + 1..].to_owned())),
        None => (text.to_owned(), None),
    }
}

/// Splits `file:LINE: message` into its parts.
fn split_position(text: &str) -> Option<(&str, usize, &str)> {
    let bytes = text.as_bytes();
    let mut search = 0;
    while let Some(off) = text[search..].find(':') {
        let colon = search + off;
        let digits = bytes[colon + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let end = colon + 1 + digits;
        if digits > 0 && text[end..].starts_with(": ") && colon > 0 {
            let line = text[colon + 1..end].parse().ok()?;
            return Some((&text[..colon], line, &text[end + 2..]));
        }
        search = colon + 1;
    }
    None
}

/// The first `file:LINE:` of a traceback that is a Lua source, not `[C]`.
fn first_lua_frame(traceback: &str) -> Option<(String, usize)> {
    traceback.lines().skip(1).find_map(|l| {
        let l = l.trim();
        if l.starts_with('[') {
            return None;
        }
        split_position(l).map(|(f, line, _)| (f.to_owned(), line))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_prefix_is_split() {
        assert_eq!(
            split_position("plugins/x/main.lua:12: attempt to index"),
            Some(("plugins/x/main.lua", 12, "attempt to index"))
        );
        assert_eq!(split_position("no position here"), None);
        assert_eq!(split_position("a:b: c"), None);
    }

    #[test]
    fn lua_runtime_errors_keep_file_line_and_traceback() {
        let lua = Lua::new();
        lua.load("local function f() local x = nil; return x.y end\nf()")
            .set_name("@p/main.lua")
            .exec()
            .map_err(|e| {
                let s = to_script_error(&e, 64);
                assert_eq!(s.file.as_deref(), Some("p/main.lua"));
                assert_eq!(s.line, Some(1));
                assert!(
                    s.message.starts_with("attempt to index a nil value"),
                    "{}",
                    s.message
                );
                assert!(s.traceback.unwrap().contains("stack traceback"));
            })
            .unwrap_err();
    }

    #[test]
    fn memory_errors_take_the_noted_line_or_the_hook_s_start() {
        let memory =
            || ScriptError::new(ErrorKind::Memory, "memory limit exceeded").or_file("p/main.lua");
        let noted = Some(("p/main.lua".to_owned(), 7));
        let start = Some(("p/main.lua".to_owned(), 2));
        let placed = place_memory_error(memory(), noted.clone(), start.clone());
        assert_eq!(placed.to_string(), "p/main.lua:7: memory limit exceeded");
        let placed = place_memory_error(memory(), None, start.clone());
        assert_eq!(placed.to_string(), "p/main.lua:2: memory limit exceeded");
        assert_eq!(
            place_memory_error(memory(), None, None).to_string(),
            "p/main.lua: memory limit exceeded"
        );
        // Other errors, and memory errors that know their line, stay.
        let runtime = ScriptError::new(ErrorKind::Runtime, "boom").or_file("p/main.lua");
        assert_eq!(
            place_memory_error(runtime, noted.clone(), start.clone()).line,
            None
        );
        let mut known = memory();
        known.line = Some(3);
        assert_eq!(place_memory_error(known, noted, start).line, Some(3));
    }

    #[test]
    fn binding_errors_point_at_the_calling_line() {
        let lua = Lua::new();
        let f = lua
            .create_function(|lua, ()| -> mlua::Result<()> { Err(raise(lua, "refused")) })
            .unwrap();
        lua.globals().set("refuse", f).unwrap();
        let err = lua
            .load("local a = 1\nrefuse()")
            .set_name("@p/main.lua")
            .exec()
            .unwrap_err();
        let s = to_script_error(&err, 64);
        assert_eq!(s.to_string(), "p/main.lua:2: refused");
    }
}
