//! `json.encode/decode`, `time.now_ms/format/parse` and
//! `regex.is_match/find/captures/replace` for Lua: the work is in
//! `crate::helpers`; this converts Lua values, bounds what a call builds by
//! the memory the interpreter has left, and raises a helper's error at the
//! calling line (a memory or time limit error as that limit's own).

use std::cell::RefCell;
use std::rc::Rc;

use mlua::{Lua, LuaString, Table, Value as LuaValue};

use super::context::{Ctx, convert_error};
use super::convert::{MAX_DEPTH, from_lua, to_lua};
use super::error::{caller_position, raise};
use super::sandbox::check;
use crate::helpers::{HelperError, json, regex, time};

/// Tables walked between two looks at the time limit while `json.encode`
/// measures a value.
const LOOK_EVERY: usize = 1 << 16;

/// What the helper functions share.
#[derive(Clone)]
struct Helpers {
    ctx: Ctx,
    memory_bytes: usize,
    patterns: Rc<RefCell<regex::Cache>>,
}

impl Helpers {
    /// The bytes the interpreter may still allocate: what a result may take.
    fn room(&self, lua: &Lua) -> usize {
        match self.memory_bytes {
            0 => usize::MAX,
            cap => cap.saturating_sub(lua.used_memory()),
        }
    }

    /// The Lua error of a helper's: a limit's own error, or a script error
    /// at the calling line.
    fn error(&self, lua: &Lua, e: HelperError) -> mlua::Error {
        match e {
            HelperError::TimeUp => match check(&self.ctx.budget, || caller_position(lua)) {
                Err(limit) => limit,
                Ok(()) => raise(lua, "time limit exceeded"),
            },
            e if e.is_memory() => mlua::Error::MemoryError(e.to_string()),
            e => raise(lua, e),
        }
    }

    /// Looks at the time limit before a call: one past the deadline does nothing.
    fn check(&self, lua: &Lua) -> mlua::Result<()> {
        check(&self.ctx.budget, || caller_position(lua))
    }

    /// The compiled pattern `re`.
    fn pattern(&self, lua: &Lua, re: &LuaString) -> mlua::Result<::regex::Regex> {
        let re = re.to_str()?;
        let compiled = self.patterns.borrow_mut().get(&re);
        compiled.map_err(|e| self.error(lua, e))
    }
}

/// Registers the `json`, `time` and `regex` tables. `memory_bytes` is the
/// interpreter's cap (0: none).
pub(crate) fn register(lua: &Lua, ctx: &Ctx, memory_bytes: usize) -> mlua::Result<()> {
    let h = Helpers {
        ctx: ctx.clone(),
        memory_bytes,
        patterns: Rc::default(),
    };
    register_json(lua, &h)?;
    register_time(lua, &h)?;
    register_regex(lua, &h)
}

fn register_json(lua: &Lua, h: &Helpers) -> mlua::Result<()> {
    let t = lua.create_table()?;
    let c = h.clone();
    t.set(
        "encode",
        lua.create_function(move |lua, value: LuaValue| {
            c.check(lua)?;
            let room = c.room(lua);
            measure(&c, lua, &value, room)?;
            let value = from_lua(&value).map_err(|e| convert_error(lua, "value", e))?;
            let text = json::encode("json.encode", &value, room).map_err(|e| c.error(lua, e))?;
            lua.create_string(text)
        })?,
    )?;
    let c = h.clone();
    t.set(
        "decode",
        lua.create_function(move |lua, text: LuaString| {
            c.check(lua)?;
            // The interpreter's allocator counts the values built from it;
            // the JSON tree they are built from, on the host's heap, must
            // fit the room left before it is built.
            let bounds = json::Bounds {
                bytes: Some(c.room(lua)),
                ..json::Bounds::default()
            };
            let value = json::decode("json.decode", &text.as_bytes(), bounds)
                .map_err(|e| c.error(lua, e))?;
            to_lua(lua, &value)
        })?,
    )?;
    lua.globals().set("json", t)
}

/// Refuses a value whose JSON text would pass `room` bytes, before any of
/// it is copied out of the interpreter: a table can hold the same long
/// string many times over, which converting would copy each time.
fn measure(h: &Helpers, lua: &Lua, value: &LuaValue, room: usize) -> mlua::Result<()> {
    let mut size = 0usize;
    let mut walked = 0usize;
    let too_large = || HelperError::TooLarge {
        helper: "json.encode".into(),
        what: "JSON text",
        limit: room,
    };
    fn walk(
        v: &LuaValue,
        depth: usize,
        size: &mut usize,
        walked: &mut usize,
        room: usize,
        time_up: &dyn Fn() -> bool,
    ) -> Result<(), Option<HelperError>> {
        *size = size.saturating_add(match v {
            LuaValue::String(s) => s.as_bytes().len() + 2,
            _ => 2,
        });
        if *size > room {
            return Err(None);
        }
        let LuaValue::Table(t) = v else {
            return Ok(());
        };
        // Deeper is refused by the conversion, with its message.
        if depth >= MAX_DEPTH {
            return Ok(());
        }
        *walked += 1;
        if (*walked).is_multiple_of(LOOK_EVERY) && time_up() {
            return Err(Some(HelperError::TimeUp));
        }
        let mut failed = Ok(());
        let _ = t.for_each(|k: LuaValue, v: LuaValue| {
            let r = walk(&k, depth + 1, size, walked, room, time_up)
                .and_then(|()| walk(&v, depth + 1, size, walked, room, time_up));
            match r {
                Ok(()) => Ok(()),
                Err(e) => {
                    failed = Err(e);
                    Err(mlua::Error::runtime("stop"))
                }
            }
        });
        failed
    }
    let time_up = || h.ctx.budget.expired();
    walk(value, 0, &mut size, &mut walked, room, &time_up)
        .map_err(|e| h.error(lua, e.unwrap_or_else(too_large)))
}

fn register_time(lua: &Lua, h: &Helpers) -> mlua::Result<()> {
    let t = lua.create_table()?;
    let c = h.clone();
    t.set(
        "now_ms",
        lua.create_function(move |_, ()| Ok(c.ctx.host.now_ms(&c.ctx.info)))?,
    )?;
    let c = h.clone();
    t.set(
        "format",
        lua.create_function(move |lua, (ms, fmt): (f64, Option<LuaString>)| {
            if !ms.is_finite() {
                return Err(raise(lua, "time.format: ms must be a finite number"));
            }
            let fmt = fmt.as_ref().map(|f| f.to_str()).transpose()?;
            time::format("time.format", ms.floor() as i64, fmt.as_deref())
                .map_err(|e| c.error(lua, e))
        })?,
    )?;
    let c = h.clone();
    t.set(
        "parse",
        lua.create_function(move |lua, (text, fmt): (LuaString, Option<LuaString>)| {
            let fmt = fmt.as_ref().map(|f| f.to_str()).transpose()?;
            time::parse("time.parse", &text.to_str()?, fmt.as_deref()).map_err(|e| c.error(lua, e))
        })?,
    )?;
    lua.globals().set("time", t)
}

fn register_regex(lua: &Lua, h: &Helpers) -> mlua::Result<()> {
    let t = lua.create_table()?;
    let c = h.clone();
    t.set(
        "is_match",
        lua.create_function(move |lua, (re, s): (LuaString, LuaString)| {
            c.check(lua)?;
            let re = c.pattern(lua, &re)?;
            Ok(re.is_match(&s.to_str()?))
        })?,
    )?;
    let c = h.clone();
    t.set(
        "find",
        lua.create_function(move |lua, (re, s): (LuaString, LuaString)| {
            c.check(lua)?;
            let re = c.pattern(lua, &re)?;
            regex::find(&re, &s.to_str()?)
                .map(|m| lua.create_string(m))
                .transpose()
        })?,
    )?;
    let c = h.clone();
    t.set(
        "captures",
        lua.create_function(move |lua, (re, s): (LuaString, LuaString)| {
            c.check(lua)?;
            let re = c.pattern(lua, &re)?;
            let s = s.to_str()?;
            let Some(groups) = regex::captures(&re, &s) else {
                return Ok(None);
            };
            let list: Table = lua.create_table_with_capacity(groups.len(), 0)?;
            for (i, g) in groups.into_iter().enumerate() {
                if let Some(text) = g {
                    list.raw_set(i + 1, lua.create_string(text)?)?;
                }
            }
            Ok(Some(list))
        })?,
    )?;
    let c = h.clone();
    t.set(
        "replace",
        lua.create_function(
            move |lua, (re, s, with): (LuaString, LuaString, LuaString)| {
                c.check(lua)?;
                let re = c.pattern(lua, &re)?;
                let time_up = || c.ctx.budget.expired();
                let out = regex::replace(
                    "regex.replace",
                    &re,
                    &s.to_str()?,
                    &with.to_str()?,
                    c.room(lua),
                    &time_up,
                )
                .map_err(|e| c.error(lua, e))?;
                lua.create_string(out)
            },
        )?,
    )?;
    lua.globals().set("regex", t)
}
