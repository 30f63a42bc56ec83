//! `json::encode/decode`, `time::now_ms/format/parse` and
//! `regex::is_match/find/captures/replace` for Rhai: the work is in
//! `crate::helpers`; this converts Rhai values, bounds what a call builds by
//! the engine's size limits, and throws a helper's error at the calling
//! statement (a size or time limit error as that limit's own).

use std::cell::RefCell;
use std::rc::Rc;

use rhai::{
    Array, Dynamic, Engine, EvalAltResult, FuncRegistration, INT, Module, NativeCallContext,
};

use super::context::{Ctx, convert_error, throw};
use super::convert::{to_dynamic, to_value};
use crate::helpers::{HelperError, json, regex, time};

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<EvalAltResult>>;

/// An engine size limit as a bound: 0 is none.
fn limit(n: usize) -> Option<usize> {
    (n > 0).then_some(n)
}

/// The Rhai error of a helper's, at the call.
fn error(ctx: &Ctx, call: &NativeCallContext, e: HelperError) -> Box<EvalAltResult> {
    let pos = call.call_position();
    match e {
        HelperError::TimeUp => {
            ctx.budget.notice();
            super::error::time_up_at(pos)
        }
        HelperError::TooLarge { helper, what, .. } => {
            EvalAltResult::ErrorDataTooLarge(format!("{helper} {what}"), pos).into()
        }
        e => throw(e.to_string(), pos),
    }
}

/// A number of milliseconds, integer or float.
fn millis(call: &NativeCallContext, ms: &Dynamic) -> RhaiResultOf<i64> {
    match ms.as_int() {
        Ok(i) => Ok(i),
        Err(_) => match ms.as_float() {
            Ok(f) if f.is_finite() => Ok(f.floor() as i64),
            _ => Err(throw(
                "time::format: ms must be a finite number",
                call.call_position(),
            )),
        },
    }
}

/// A matched text as a Rhai string.
fn text(s: &str) -> Dynamic {
    rhai::ImmutableString::from(s).into()
}

/// Registers the `json`, `time` and `regex` modules.
pub(crate) fn register(engine: &mut Engine, ctx: &Ctx) {
    engine.register_static_module("json", json_module(ctx).into());
    engine.register_static_module("time", time_module(ctx).into());
    engine.register_static_module("regex", regex_module(ctx).into());
}

fn json_module(ctx: &Ctx) -> Module {
    let mut m = Module::new();
    let c = ctx.clone();
    FuncRegistration::new("encode")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, value: Dynamic| -> RhaiResultOf<String> {
                let pos = call.call_position();
                let value = to_value(&value).map_err(|e| convert_error("value", e, pos))?;
                let max = limit(call.engine().max_string_size()).unwrap_or(usize::MAX);
                json::encode("json::encode", &value, max).map_err(|e| error(&c, &call, e))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("decode")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, text: &str| -> RhaiResultOf<Dynamic> {
                let engine = call.engine();
                let bounds = json::Bounds {
                    strings: limit(engine.max_string_size()),
                    items: limit(engine.max_array_size()),
                    entries: limit(engine.max_map_size()),
                    // Those bound the tree too: a quarter of the memory in
                    // strings, a sixteenth each in items and entries.
                    bytes: None,
                };
                json::decode("json::decode", text.as_bytes(), bounds)
                    .map(|v| to_dynamic(&v))
                    .map_err(|e| error(&c, &call, e))
            },
        );
    m
}

fn time_module(ctx: &Ctx) -> Module {
    let mut m = Module::new();
    let c = ctx.clone();
    FuncRegistration::new("now_ms")
        .with_volatility(true)
        .set_into_module(&mut m, move || -> INT { c.host.now_ms(&c.info) });
    let c = ctx.clone();
    FuncRegistration::new("format")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, ms: Dynamic| -> RhaiResultOf<String> {
                time::format("time::format", millis(&call, &ms)?, None)
                    .map_err(|e| error(&c, &call, e))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("format")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, ms: Dynamic, fmt: &str| -> RhaiResultOf<String> {
                time::format("time::format", millis(&call, &ms)?, Some(fmt))
                    .map_err(|e| error(&c, &call, e))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("parse")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, text: &str| -> RhaiResultOf<INT> {
                time::parse("time::parse", text, None).map_err(|e| error(&c, &call, e))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("parse")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, text: &str, fmt: &str| -> RhaiResultOf<INT> {
                time::parse("time::parse", text, Some(fmt)).map_err(|e| error(&c, &call, e))
            },
        );
    m
}

fn regex_module(ctx: &Ctx) -> Module {
    let mut m = Module::new();
    let patterns: Rc<RefCell<regex::Cache>> = Rc::default();
    let compiled = move |c: &Ctx, call: &NativeCallContext, re: &str| {
        let got = patterns.borrow_mut().get(re);
        got.map_err(|e| error(c, call, e))
    };
    let (c, p) = (ctx.clone(), compiled.clone());
    FuncRegistration::new("is_match")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, re: &str, s: &str| -> RhaiResultOf<bool> {
                Ok(p(&c, &call, re)?.is_match(s))
            },
        );
    let (c, p) = (ctx.clone(), compiled.clone());
    FuncRegistration::new("find")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, re: &str, s: &str| -> RhaiResultOf<Dynamic> {
                let re = p(&c, &call, re)?;
                Ok(regex::find(&re, s).map_or(Dynamic::UNIT, text))
            },
        );
    let (c, p) = (ctx.clone(), compiled.clone());
    FuncRegistration::new("captures")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, re: &str, s: &str| -> RhaiResultOf<Dynamic> {
                let re = p(&c, &call, re)?;
                Ok(match regex::captures(&re, s) {
                    None => Dynamic::UNIT,
                    Some(groups) => Dynamic::from_array(
                        groups
                            .into_iter()
                            .map(|g| g.map_or(Dynamic::UNIT, text))
                            .collect::<Array>(),
                    ),
                })
            },
        );
    let (c, p) = (ctx.clone(), compiled);
    FuncRegistration::new("replace")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            move |call: NativeCallContext, re: &str, s: &str, with: &str| -> RhaiResultOf<String> {
                let re = p(&c, &call, re)?;
                let max = limit(call.engine().max_string_size()).unwrap_or(usize::MAX);
                let time_up = || c.budget.expired();
                regex::replace("regex::replace", &re, s, with, max, &time_up)
                    .map_err(|e| error(&c, &call, e))
            },
        );
    m
}
