//! The replacements against Lua's own C functions, case by case.

use std::rc::Rc;
use std::time::Duration;

use mlua::{Function, Lua, MultiValue, Table, Value as LuaValue};

use super::install;
use crate::budget::Budget;
use crate::lua::error::to_script_error;

/// `string.find`, `match`, `gmatch`, `gsub` before and after `install`.
struct Both {
    lua: Lua,
    c: Table,
    ours: Table,
}

fn both() -> Both {
    let lua = Lua::new();
    let string: Table = lua.globals().get("string").unwrap();
    let c = lua.create_table().unwrap();
    for name in ["find", "match", "gmatch", "gsub"] {
        c.set(name, string.get::<Function>(name).unwrap()).unwrap();
    }
    install(&lua, Rc::new(Budget::default()), 0).unwrap();
    let ours = lua.create_table().unwrap();
    for name in ["find", "match", "gmatch", "gsub"] {
        ours.set(name, string.get::<Function>(name).unwrap())
            .unwrap();
    }
    Both { lua, c, ours }
}

/// A comparable text of a call's results or error.
fn show(lua: &Lua, name: &str, f: &Function, args: MultiValue) -> String {
    let shown = |values: MultiValue| -> String {
        values
            .iter()
            .map(|v| match v {
                LuaValue::String(s) => format!("{:?}", s.as_bytes().to_vec()),
                other => format!("{other:?}"),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let result = f.call::<MultiValue>(args);
    match result {
        Err(e) => format!("error: {}", to_script_error(&e, 0).message),
        Ok(values) if name == "gmatch" => {
            let Some(LuaValue::Function(next)) = values.front() else {
                return format!("not an iterator: {}", shown(values));
            };
            let mut out = Vec::new();
            for _ in 0..64 {
                match next.call::<MultiValue>(()) {
                    Err(e) => {
                        out.push(format!("error: {}", to_script_error(&e, 0).message));
                        break;
                    }
                    Ok(v) if v.front().is_none_or(LuaValue::is_nil) => break,
                    Ok(v) => out.push(shown(v)),
                }
            }
            let _ = lua;
            out.join(" | ")
        }
        Ok(values) => shown(values),
    }
}

/// Each case: a function name and its arguments as Lua source.
const CASES: &[(&str, &str)] = &[
    ("find", r#""hello world", "o w""#),
    ("find", r#""hello world", "o", 6"#),
    ("find", r#""hello world", "o", -3"#),
    ("find", r#""hello world", "o", -30"#),
    ("find", r#""hello world", "o", 30"#),
    ("find", r#""hello world", "l", 0"#),
    ("find", r#""hello", "", 6"#),
    ("find", r#""hello", "", 7"#),
    ("find", r#""a.b", ".", 1, true"#),
    ("find", r#""a.b", "%.", 1"#),
    ("find", r#""a+b", "+", 1, true"#),
    ("find", r#""abc", "b", 1.0"#),
    ("find", r#""abc", "b", "2""#),
    ("find", r#""abc", "b", 1.5"#),
    ("find", r#"12345, 3"#),
    ("find", r#""x = 12, y = 345", "(%a)%s*=%s*(%d+)""#),
    ("find", r#""  trim  ", "^%s*(.-)%s*$""#),
    ("find", r#""abc", "^b""#),
    ("find", r#""abc", "^a""#),
    ("find", r#""abc", "c$""#),
    ("find", r#""a$c", "$c""#),
    ("find", r#""abc", "()b()""#),
    ("find", "(\"a\"):rep(30), (\".-\"):rep(4) .. \"b\""),
    ("find", r#""f(a(b)c) d", "%b()""#),
    ("find", r#""f(a(b c) d", "%b()""#),
    ("find", r#""[x]", "%b[]""#),
    ("find", r#""THE (quick) fox", "%f[%a]%a+", 5"#),
    ("find", r#""hello", "%f[%l]""#),
    ("find", r#""abab", "(ab)%1""#),
    ("find", r#""abcabc", "(a(b)c)%1""#),
    ("find", r#""aaa", "()%1""#),
    ("find", r#""a\0b", "%z""#),
    ("find", r#""a\0b", "\0b""#),
    ("find", r#""a\0b", "[\0]""#),
    ("find", "\"x\\vy\\tz\", \"%s+\""),
    ("match", r#""key=value", "(%w+)=(%w+)""#),
    ("match", r#""2024-01-15", "(%d+)-(%d+)-(%d+)""#),
    ("match", r#""hello", ".-""#),
    ("match", r#""hello", ".*""#),
    ("match", r#""hello", "l+""#),
    ("match", r#""hello", "x?h""#),
    ("match", r#""hello", "h?e?z?l*o""#),
    ("match", r#""Hello World!", "%u%l+""#),
    ("match", r#""Hello, World!", "%p""#),
    ("match", r#""tab\there", "%c""#),
    ("match", r#""0x1F", "0x(%x+)""#),
    ("match", r#""a1 b2", "%w%d""#),
    ("match", r#""a b", "%g+""#),
    ("match", r#""ABC", "%L+""#),
    ("match", r#""abc123def", "%D+", 4"#),
    ("match", r#""abc123", "%A+""#),
    ("match", r#""x1y2", "[%d]""#),
    ("match", r#""x1y2", "[^%d]+""#),
    ("match", r#""a-z", "[a-]+""#),
    ("match", r#""a-z", "[%-z]+""#),
    ("match", r#""m]x", "[]]""#),
    ("match", r#""m]x", "[^]]+""#),
    ("match", r#""b^", "[b^]+""#),
    ("match", r#""hello", "()ll()""#),
    ("match", r#""hello", "(h)(e)(l)(l)(o)""#),
    ("match", r#""hello", "((h)(e))""#),
    ("match", r#""hello", "h(.-)o", -5"#),
    ("match", r#""héllo", "[\128-\255]+""#),
    ("match", r#""abc", "%""#),
    ("match", r#""abc", "[a""#),
    ("match", r#""abc", "[^""#),
    ("match", r#""abc", "[a%""#),
    ("match", r#""abc", "(a""#),
    ("match", r#""abc", "a)""#),
    ("match", r#""abc", "%1""#),
    ("match", r#""abc", "(a)%2""#),
    ("match", r#""abc", "(a%1)""#),
    ("match", r#""abc", "%0""#),
    ("match", r#""abc", "%b""#),
    ("match", r#""abc", "%ba""#),
    ("match", r#""abc", "%f""#),
    ("match", r#""abc", "%fa""#),
    ("match", r#""abc", "%f[a""#),
    ("match", "\"a\", (\"(\"):rep(33)"),
    (
        "match",
        "(\"a\"):rep(300), (\"a?\"):rep(300) .. (\"a\"):rep(300)",
    ),
    ("match", r#"nil, "a""#),
    ("match", r#""a""#),
    ("match", r#""a", {}"#),
    ("gmatch", r#""one two  three", "%a+""#),
    ("gmatch", r#""k1=v1, k2=v2", "(%w+)=(%w+)""#),
    ("gmatch", r#""abc", """#),
    ("gmatch", r#""abc", ".-""#),
    ("gmatch", r#""abc", "()""#),
    ("gmatch", r#""hello world", "o", 6"#),
    ("gmatch", r#""hello world", "%a+", -5"#),
    ("gmatch", r#""hello", "l", 10"#),
    ("gmatch", r#""^a^a", "^a""#),
    ("gmatch", r#""abc", "%""#),
    ("gmatch", r#""abc", "(a""#),
    ("gsub", r#""hello world", "o", "0""#),
    ("gsub", r#""hello world", "o", "0", 1"#),
    ("gsub", r#""hello world", "o", "0", 0"#),
    ("gsub", r#""hello world", "o", "0", -1"#),
    ("gsub", r#""hello world", "(o)", "[%1%1]""#),
    ("gsub", r#""hello world", "l+", "<%0>""#),
    ("gsub", r#""hello world", "%w+", "%0 %0""#),
    ("gsub", r#""hello", "", "-""#),
    ("gsub", r#""hello", ".-", "-""#),
    ("gsub", r#""hello", "x*", "-""#),
    ("gsub", r#""hello", "^h", "H""#),
    ("gsub", r#""hello", "^l", "L""#),
    ("gsub", r#""hello", "l", "%%""#),
    ("gsub", r#""hello", "l", "%""#),
    ("gsub", r#""hello", "l", "%x""#),
    ("gsub", r#""hello", "l", "%2""#),
    ("gsub", r#""hello", "(l)", "%2""#),
    ("gsub", r#""hello", "()l", "%1""#),
    ("gsub", r#""hello", "l", 7"#),
    ("gsub", r#""hello", "l", 1.5"#),
    (
        "gsub",
        r#""$name is $age", "%$(%w+)", {name = "Ann", age = 7}"#,
    ),
    ("gsub", r#""$name is $x", "%$(%w+)", {name = "Ann"}"#),
    ("gsub", r#""$name", "%$(%w+)", {name = false}"#),
    ("gsub", r#""$name", "%$(%w+)", {name = {}}"#),
    (
        "gsub",
        r#""$name", "%$(%w+)", setmetatable({}, {__index = function(_, k) return k:upper() end})"#,
    ),
    ("gsub", r#""a1b2", "%d", function(d) return d * 2 end"#),
    (
        "gsub",
        r#""a1b2", "(%a)(%d)", function(a, d) return d .. a end"#,
    ),
    ("gsub", r#""a1b2", "%a", function() end"#),
    ("gsub", r#""a1b2", "()%a", function(p) return p end"#),
    ("gsub", r#""a1b2", "%a", function() return true end"#),
    ("gsub", r#""abc", "%w", "%0%0", 2.0"#),
    ("gsub", r#""abc", "%w""#),
    ("gsub", r#""abc", "%w", true"#),
    ("gsub", r#""abc", "(", "x""#),
    ("gsub", r#""abc", "b", "x", "y""#),
    ("gsub", r#""a,b,,c", ",", ";""#),
    ("gsub", r#""THE (quick) fox", "%f[%a]%a", "_""#),
];

#[test]
fn the_replacements_give_lua_s_own_results() {
    let b = both();
    let mut differ = Vec::new();
    for (name, args) in CASES {
        let args: Table = b
            .lua
            .load(format!("return table.pack({args})"))
            .eval()
            .unwrap_or_else(|e| panic!("{args}: {e}"));
        let n: usize = args.get("n").unwrap();
        let values =
            || -> MultiValue { (1..=n).map(|i| args.get::<LuaValue>(i).unwrap()).collect() };
        // Called from Rust, Lua cannot name the C function ('?'); from a
        // script it names it as the script called it.
        let c = show(&b.lua, name, &b.c.get(*name).unwrap(), values())
            .replace("to '?'", &format!("to '{name}'"));
        let ours = show(&b.lua, name, &b.ours.get(*name).unwrap(), values());
        if c != ours {
            differ.push(format!("{name}({args:?}):\n  lua:  {c}\n  ours: {ours}"));
        }
    }
    assert!(differ.is_empty(), "{}", differ.join("\n"));
}

#[test]
fn string_methods_use_the_replacements() {
    let b = both();
    let same: bool = b
        .lua
        .load("return getmetatable('').__index == string and ('x').find == string.find and ('x').gsub == string.gsub")
        .eval()
        .unwrap();
    assert!(same);
    let ours: Function = b.ours.get("find").unwrap();
    let find: Function = b.lua.load("return ('x').find").eval().unwrap();
    assert_eq!(find, ours);
}

#[test]
fn a_backtracking_pattern_stops_at_the_time_limit() {
    let budget = Rc::new(Budget::default());
    let (lua, _, watch) = crate::lua::sandbox::new_lua(8 << 20, budget.clone()).unwrap();
    for call in [
        "string.find(s, p)",
        "s:find(p)",
        "string.match(s, p)",
        "for _ in s:gmatch(p) do end",
        "s:gsub(p, '')",
    ] {
        let src = format!("local s, p = ('a'):rep(400), ('.-'):rep(8) .. 'b'\n{call}");
        let _watching = watch.begin();
        budget.start(Duration::from_millis(50));
        let started = std::time::Instant::now();
        let err = lua.load(&src).set_name("@p/main.lua").exec().unwrap_err();
        budget.stop();
        let shown = to_script_error(&err, 8);
        assert!(
            shown.message.starts_with("time limit exceeded"),
            "{call}: {shown}"
        );
        assert_eq!(
            (shown.file.as_deref(), shown.line),
            (Some("p/main.lua"), Some(2)),
            "{call}"
        );
        // A bound, not a speed claim: Lua's own matcher runs for many seconds.
        assert!(started.elapsed() < Duration::from_secs(5), "{call}");
    }
}

#[test]
fn gsub_results_count_against_the_memory_limit() {
    let budget = Rc::new(Budget::default());
    let (lua, _, watch) = crate::lua::sandbox::new_lua(8 << 20, budget.clone()).unwrap();
    let _watching = watch.begin();
    budget.start(Duration::from_secs(10));
    let err = lua
        .load("local s = ('x'):rep(100000)\nlocal r = s:gsub('x', ('y'):rep(1000))")
        .set_name("@p/main.lua")
        .exec()
        .unwrap_err();
    budget.stop();
    assert!(
        matches!(to_script_error(&err, 8).kind, crate::ErrorKind::Memory),
        "{err}"
    );
}

#[test]
fn random_patterns_give_lua_s_own_results() {
    const PIECES: &[&str] = &[
        "a", "b", "%a", "%d", "%s", "%w", "%p", "%u", ".", "[ab]", "[^a]", "[a-c%d]", "*", "+",
        "-", "?", "(", ")", "()", "^", "$", "%1", "%2", "%b()", "%f[%w]", "%", "[", "]",
    ];
    const SUBJECTS: &[&str] = &["", "a", "ab1 (a)b", "aab(b(a))1", "A b2-c", "ba ab ba"];
    let b = both();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let mut differ = Vec::new();
    for _ in 0..3000 {
        let pattern: String = (0..1 + next(6))
            .map(|_| PIECES[next(PIECES.len())])
            .collect();
        let subject = SUBJECTS[next(SUBJECTS.len())];
        let name = ["find", "match", "gmatch", "gsub"][next(4)];
        let init = [1i64, 0, 2, -2, 5, 40][next(6)];
        let p = b.lua.create_string(&pattern).unwrap();
        let s = b.lua.create_string(subject).unwrap();
        let third = match name {
            "gsub" => LuaValue::String(b.lua.create_string("<%0>").unwrap()),
            _ => LuaValue::Integer(init),
        };
        let values = || -> MultiValue {
            [
                LuaValue::String(s.clone()),
                LuaValue::String(p.clone()),
                third.clone(),
            ]
            .into_iter()
            .collect()
        };
        let c = show(&b.lua, name, &b.c.get(name).unwrap(), values());
        let ours = show(&b.lua, name, &b.ours.get(name).unwrap(), values());
        if c != ours {
            differ.push(format!(
                "{name}({subject:?}, {pattern:?}, {third:?}):\n  lua:  {c}\n  ours: {ours}"
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} differ:\n{}",
        differ.len(),
        differ[..differ.len().min(10)].join("\n")
    );
}
