//! `string.find`, `string.match`, `string.gmatch` and `string.gsub` on
//! plughost's own matcher (`matcher.rs`), which the time limit can stop.
//!
//! Lua's C matcher runs a backtracking pattern for as long as it takes and
//! looks at nothing meanwhile, so one call could run far past the limit.
//! These replacements keep Lua's results and messages exactly (the tests
//! compare them with the C functions), look at the watchdog's flag every
//! few thousand steps of the match, and build their results as Lua strings
//! (gsub's text counts against the memory limit before it becomes one).
//! The string metatable's `__index` is the `string` table, so `s:find(...)`
//! uses them too.

mod matcher;
#[cfg(test)]
mod tests;

use std::rc::Rc;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use self::matcher::{Capture, Matcher, PatternError};
use super::error::{caller_position, raise};
use super::sandbox::{Budget, check};

/// What the Lua functions share: the budget to look at and the memory cap.
#[derive(Clone)]
struct Limits {
    budget: Rc<Budget>,
    memory_bytes: usize,
}

impl Limits {
    /// The Lua error for a matcher error: the time limit, or Lua's message
    /// positioned at the calling line.
    fn error(&self, lua: &Lua, e: PatternError) -> mlua::Error {
        match e {
            PatternError::Stopped => match check(&self.budget, || caller_position(lua)) {
                Err(limit) => limit,
                Ok(()) => raise(lua, e),
            },
            other => raise(lua, other),
        }
    }

    /// Fails once `extra` bytes of Rust-held result would take the
    /// interpreter past its memory cap.
    fn reserve(&self, lua: &Lua, extra: usize) -> mlua::Result<()> {
        if self.memory_bytes > 0 && lua.used_memory().saturating_add(extra) > self.memory_bytes {
            return Err(mlua::Error::MemoryError("not enough memory".into()));
        }
        Ok(())
    }
}

/// Replaces the four matching functions of `string` (and so of every
/// string's methods).
pub(crate) fn install(lua: &Lua, budget: Rc<Budget>, memory_bytes: usize) -> mlua::Result<()> {
    let limits = Limits {
        budget,
        memory_bytes,
    };
    let string: Table = lua.globals().get("string")?;
    let l = limits.clone();
    string.set(
        "find",
        lua.create_function(move |lua, args: MultiValue| find_aux(lua, &l, args, true))?,
    )?;
    let l = limits.clone();
    string.set(
        "match",
        lua.create_function(move |lua, args: MultiValue| find_aux(lua, &l, args, false))?,
    )?;
    let l = limits.clone();
    string.set(
        "gmatch",
        lua.create_function(move |lua, args: MultiValue| gmatch(lua, &l, args))?,
    )?;
    let l = limits;
    string.set(
        "gsub",
        lua.create_function(move |lua, args: MultiValue| gsub(lua, &l, args))?,
    )?;
    Ok(())
}

/// Argument `n` (1-based) of `args`, or `None` when absent.
fn arg(args: &MultiValue, n: usize) -> Option<&LuaValue> {
    args.get(n - 1)
}

/// The type name Lua's argument errors show.
fn got(v: Option<&LuaValue>) -> &'static str {
    match v {
        None => "no value",
        Some(v) => v.type_name(),
    }
}

/// `luaL_checklstring`: a string, or a number as a string.
fn check_string(
    lua: &Lua,
    args: &MultiValue,
    n: usize,
    name: &str,
) -> mlua::Result<mlua::LuaString> {
    let v = arg(args, n);
    match v
        .map(|v| lua.coerce_string(v.clone()))
        .transpose()?
        .flatten()
    {
        Some(s) => Ok(s),
        None => Err(raise(
            lua,
            format!(
                "bad argument #{n} to '{name}' (string expected, got {})",
                got(v)
            ),
        )),
    }
}

/// `luaL_optinteger`.
fn opt_integer(
    lua: &Lua,
    args: &MultiValue,
    n: usize,
    name: &str,
    default: i64,
) -> mlua::Result<i64> {
    let v = match arg(args, n) {
        None | Some(LuaValue::Nil) => return Ok(default),
        Some(v) => v,
    };
    if let Some(i) = lua.coerce_integer(v.clone())? {
        return Ok(i);
    }
    let why = if lua.coerce_number(v.clone())?.is_some() {
        "number has no integer representation".to_owned()
    } else {
        format!("number expected, got {}", v.type_name())
    };
    Err(raise(lua, format!("bad argument #{n} to '{name}' ({why})")))
}

/// A capture as a Lua value: text as a string, a position 1-based.
fn capture_value(lua: &Lua, c: Capture<'_>) -> mlua::Result<LuaValue> {
    match c {
        Capture::Text(t) => lua.create_string(t).map(LuaValue::String),
        Capture::Position(at) => Ok(LuaValue::Integer(at as i64 + 1)),
    }
}

fn capture_values(lua: &Lua, captures: Vec<Capture<'_>>) -> mlua::Result<MultiValue> {
    captures
        .into_iter()
        .map(|c| capture_value(lua, c))
        .collect()
}

/// Lua's `str_find_aux`: `string.find` (`find`) or `string.match`.
fn find_aux(lua: &Lua, limits: &Limits, args: MultiValue, find: bool) -> mlua::Result<MultiValue> {
    let name = if find { "find" } else { "match" };
    let subject = check_string(lua, &args, 1, name)?;
    let pattern = check_string(lua, &args, 2, name)?;
    let (s, p) = (subject.as_bytes(), pattern.as_bytes());
    let init = matcher::start_position(opt_integer(lua, &args, 3, name, 1)?, s.len()) - 1;
    if init > s.len() {
        return Ok(MultiValue::from_iter([LuaValue::Nil]));
    }
    let stop = || limits.budget.expired();
    let plain =
        arg(&args, 4).is_some_and(|v| !matches!(v, LuaValue::Nil | LuaValue::Boolean(false)));
    if find && (plain || matcher::no_specials(&p)) {
        return match matcher::find_plain(&s[init..], &p, &stop) {
            Err(e) => Err(limits.error(lua, e)),
            Ok(None) => Ok(MultiValue::from_iter([LuaValue::Nil])),
            Ok(Some(at)) => Ok(MultiValue::from_iter([
                LuaValue::Integer((init + at) as i64 + 1),
                LuaValue::Integer((init + at + p.len()) as i64),
            ])),
        };
    }
    let anchor = p.first() == Some(&b'^');
    let body = if anchor { &p[1..] } else { &p[..] };
    let mut m = Matcher::new(&s, body, &stop);
    let mut start = init;
    loop {
        match m.match_at(start) {
            Err(e) => return Err(limits.error(lua, e)),
            Ok(Some(end)) => {
                let found = if find {
                    let captures = m.captures(None).map_err(|e| limits.error(lua, e))?;
                    let mut out = capture_values(lua, captures)?;
                    out.push_front(LuaValue::Integer(end as i64));
                    out.push_front(LuaValue::Integer(start as i64 + 1));
                    out
                } else {
                    let captures = m
                        .captures(Some((start, end)))
                        .map_err(|e| limits.error(lua, e))?;
                    capture_values(lua, captures)?
                };
                return Ok(found);
            }
            Ok(None) => {}
        }
        start += 1;
        if start > s.len() || anchor {
            return Ok(MultiValue::from_iter([LuaValue::Nil]));
        }
    }
}

/// Lua's `gmatch`: an iterator over the matches.
fn gmatch(lua: &Lua, limits: &Limits, args: MultiValue) -> mlua::Result<Function> {
    let subject = check_string(lua, &args, 1, "gmatch")?;
    let pattern = check_string(lua, &args, 2, "gmatch")?;
    let len = subject.as_bytes().len();
    let init = matcher::start_position(opt_integer(lua, &args, 3, "gmatch", 1)?, len) - 1;
    // Past the end: the C keeps `len + 1`, where nothing matches.
    let next = std::cell::Cell::new(init.min(len + 1));
    let last = std::cell::Cell::new(None::<usize>);
    let limits = limits.clone();
    lua.create_function(move |lua, ()| {
        let (s, p) = (subject.as_bytes(), pattern.as_bytes());
        let stop = || limits.budget.expired();
        let mut m = Matcher::new(&s, &p, &stop);
        let mut src = next.get();
        while src <= s.len() {
            match m.match_at(src) {
                Err(e) => return Err(limits.error(lua, e)),
                Ok(Some(end)) if Some(end) != last.get() => {
                    next.set(end);
                    last.set(Some(end));
                    let captures = m
                        .captures(Some((src, end)))
                        .map_err(|e| limits.error(lua, e))?;
                    return capture_values(lua, captures);
                }
                Ok(_) => src += 1,
            }
        }
        next.set(src);
        Ok(MultiValue::new())
    })
}

/// The replacement of `gsub`, by type.
enum Replacement {
    Text(mlua::LuaString),
    Table(Table),
    Function(Function),
}

/// Lua's `add_s`: a replacement string with `%0`-`%9` and `%%`.
fn add_text(
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    repl: &[u8],
    s: usize,
    e: usize,
) -> Result<(), PatternError> {
    let mut i = 0;
    while i < repl.len() {
        let c = repl[i];
        i += 1;
        if c != b'%' {
            out.push(c);
            continue;
        }
        let d = repl.get(i).copied().unwrap_or(0);
        i += 1;
        match d {
            b'%' => out.push(b'%'),
            b'0' => out.extend_from_slice(&m.subject()[s..e]),
            b'1'..=b'9' => match m.capture(usize::from(d - b'1'), s, e)? {
                Capture::Text(t) => out.extend_from_slice(t),
                Capture::Position(at) => out.extend_from_slice((at + 1).to_string().as_bytes()),
            },
            _ => return Err(PatternError::InvalidReplacement),
        }
    }
    Ok(())
}

/// Lua's `str_gsub`.
fn gsub(lua: &Lua, limits: &Limits, args: MultiValue) -> mlua::Result<(mlua::LuaString, i64)> {
    let subject = check_string(lua, &args, 1, "gsub")?;
    let pattern = check_string(lua, &args, 2, "gsub")?;
    let (src, p) = (subject.as_bytes(), pattern.as_bytes());
    let max = opt_integer(lua, &args, 4, "gsub", src.len() as i64 + 1)?;
    let repl = match arg(&args, 3) {
        Some(v @ (LuaValue::String(_) | LuaValue::Integer(_) | LuaValue::Number(_))) => {
            Replacement::Text(lua.coerce_string(v.clone())?.expect("a string or number"))
        }
        Some(LuaValue::Table(t)) => Replacement::Table(t.clone()),
        Some(LuaValue::Function(f)) => Replacement::Function(f.clone()),
        other => {
            return Err(raise(
                lua,
                format!(
                    "bad argument #3 to 'gsub' (string/function/table expected, got {})",
                    got(other)
                ),
            ));
        }
    };
    // A function or table replacement runs script code from here.
    let _reentry = match repl {
        Replacement::Text(_) => None,
        _ => Some(super::reentry::Reentry::enter(lua, "string.gsub")?),
    };
    let anchor = p.first() == Some(&b'^');
    let body = if anchor { &p[1..] } else { &p[..] };
    let stop = || limits.budget.expired();
    let mut m = Matcher::new(&src, body, &stop);
    let mut out: Vec<u8> = Vec::new();
    let (mut at, mut last, mut n, mut changed) = (0usize, None::<usize>, 0i64, false);
    while n < max {
        let e = m.match_at(at).map_err(|e| limits.error(lua, e))?;
        match e {
            Some(e) if Some(e) != last => {
                n += 1;
                changed |= add_value(lua, limits, &m, &mut out, &repl, at, e)?;
                at = e;
                last = Some(e);
            }
            _ if at < src.len() => {
                out.push(src[at]);
                at += 1;
            }
            _ => break,
        }
        if out.len() > 4096 {
            limits.reserve(lua, out.len())?;
        }
        if anchor {
            break;
        }
    }
    if !changed {
        return Ok((subject.clone(), n));
    }
    out.extend_from_slice(&src[at..]);
    limits.reserve(lua, out.len())?;
    Ok((lua.create_string(&out)?, n))
}

/// Lua's `add_value`: appends the replacement of the match `s..e`;
/// returns whether it changed the text.
fn add_value(
    lua: &Lua,
    limits: &Limits,
    m: &Matcher<'_>,
    out: &mut Vec<u8>,
    repl: &Replacement,
    s: usize,
    e: usize,
) -> mlua::Result<bool> {
    let value: LuaValue = match repl {
        Replacement::Text(t) => {
            add_text(m, out, &t.as_bytes(), s, e).map_err(|e| limits.error(lua, e))?;
            return Ok(true);
        }
        Replacement::Function(f) => {
            let captures = m.captures(Some((s, e))).map_err(|e| limits.error(lua, e))?;
            f.call::<LuaValue>(capture_values(lua, captures)?)?
        }
        Replacement::Table(t) => {
            let key = m.capture(0, s, e).map_err(|e| limits.error(lua, e))?;
            t.get(capture_value(lua, key)?)?
        }
    };
    match value {
        LuaValue::Nil | LuaValue::Boolean(false) => {
            out.extend_from_slice(&m.subject()[s..e]);
            Ok(false)
        }
        v @ (LuaValue::String(_) | LuaValue::Integer(_) | LuaValue::Number(_)) => {
            let text = lua.coerce_string(v)?.expect("a string or number");
            out.extend_from_slice(&text.as_bytes());
            Ok(true)
        }
        other => Err(raise(
            lua,
            format!("invalid replacement value (a {})", other.type_name()),
        )),
    }
}
