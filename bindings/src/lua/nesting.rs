//! Chunks nested too deeply for Lua's parser, placed on their line.
//!
//! Lua's parser counts its recursion against the C stack limit and, past
//! it, raises a bare `C stack overflow`: no chunk, no line. The parser stops
//! at that point, so a prefix of the chunk overflows exactly when it reaches
//! it; compiling prefixes by halves finds the line in a few dozen compiles,
//! each of which stops there too.

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua};

/// The message Lua's parser gives for nesting past its limit.
const OVERFLOW: &str = "C stack overflow";

/// Whether `message` is the parser's nesting overflow (no position).
pub(crate) fn is_overflow(message: &str) -> bool {
    message.starts_with(OVERFLOW)
}

/// The 1-based line at which `source` overflows, if it does: `overflows`
/// compiles a prefix and says whether it overflowed.
pub(crate) fn overflow_line(
    source: &[u8],
    mut overflows: impl FnMut(&[u8]) -> bool,
) -> Option<usize> {
    if !overflows(source) {
        return None;
    }
    // `source[..hi]` overflows, `source[..lo]` does not (an empty chunk
    // cannot).
    let (mut lo, mut hi) = (0, source.len());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if overflows(&source[..mid]) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Some(1 + source[..hi].iter().filter(|&&b| b == b'\n').count())
}

/// Whether compiling failed with the nesting overflow.
fn overflowed(e: &mlua::Error) -> bool {
    matches!(e, mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } if is_overflow(m))
}

fn compile_text(lua: &Lua, source: &[u8], name: &str) -> mlua::Result<Function> {
    lua.load(source)
        .set_name(name)
        .set_mode(ChunkMode::Text)
        .into_function()
}

/// `file:LINE: chunk nested too deeply (C stack overflow)` for a chunk
/// `source` named `name` (`@file`, `=text`, or the chunk itself, as Lua
/// names chunks), when compiling it overflows.
pub(crate) fn overflow_message(lua: &Lua, source: &[u8], name: &str) -> Option<String> {
    let line = overflow_line(source, |prefix| {
        compile_text(lua, prefix, name).is_err_and(|e| overflowed(&e))
    })?;
    // Lua's own short form of the chunk name, as every other error shows it.
    let shown = compile_text(lua, b"", name).ok()?.info().short_src?;
    Some(format!(
        "{shown}:{line}: chunk nested too deeply ({OVERFLOW})"
    ))
}

/// Compiles a text chunk; a nesting overflow is a syntax error on its line.
pub(crate) fn compile(lua: &Lua, source: &[u8], name: &str) -> mlua::Result<Function> {
    compile_text(lua, source, name).map_err(|e| {
        if !overflowed(&e) {
            return e;
        }
        match overflow_message(lua, source, name) {
            Some(message) => mlua::Error::SyntaxError {
                message,
                incomplete_input: false,
            },
            None => e,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_of_the_overflow_is_found() {
        let src = b"a\nb\n((((\nc";
        // A stand-in parser that overflows at the third '('.
        let line = overflow_line(src, |p| p.iter().filter(|&&b| b == b'(').count() >= 3);
        assert_eq!(line, Some(3));
        assert_eq!(overflow_line(src, |_| false), None);
    }

    #[test]
    fn a_deeply_nested_chunk_is_a_positioned_syntax_error() {
        let lua = Lua::new();
        let source = format!(
            "local a = 1\n\nlocal b = {}1{}",
            "(".repeat(10_000),
            ")".repeat(10_000)
        );
        let err = compile(&lua, source.as_bytes(), "@p/main.lua").unwrap_err();
        let shown = super::super::error::to_script_error(&err, 0);
        assert_eq!(
            shown.to_string(),
            "p/main.lua:3: chunk nested too deeply (C stack overflow)"
        );
        // Nested over several lines: the line where it goes past the limit.
        let source = format!("x = {}", "(\n".repeat(300));
        let err = compile(&lua, source.as_bytes(), "@p/main.lua").unwrap_err();
        let shown = super::super::error::to_script_error(&err, 0);
        let line = shown.line.unwrap();
        assert!((30..=200).contains(&line), "{shown}");
        assert!(
            shown.message.starts_with("chunk nested too deeply"),
            "{shown}"
        );
    }
}
