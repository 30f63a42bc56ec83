//! `telemetry::counter/gauge/histogram(name, value [, attrs])` and
//! `telemetry::span(name [, attrs], fn)`.

use rhai::{Dynamic, Engine, FnPtr, FuncRegistration, Module, NativeCallContext, Position};
use serde_json::{Map, Value};

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<rhai::EvalAltResult>>;

use super::context::{Ctx, convert_error, refused, throw};
use super::convert::to_value;
use crate::MetricKind;

/// Registers the `telemetry` module.
pub(crate) fn register(engine: &mut Engine, ctx: &Ctx) {
    let mut t = Module::new();
    for (name, kind) in [
        ("counter", MetricKind::Counter),
        ("gauge", MetricKind::Gauge),
        ("histogram", MetricKind::Histogram),
    ] {
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_volatility(true)
            .set_into_module(
                &mut t,
                move |call: NativeCallContext, metric: &str, value: Dynamic| -> RhaiResultOf<()> {
                    let pos = call.call_position();
                    let v = number(&value, pos)?;
                    c.core()
                        .metric(kind, metric, v, &Map::new())
                        .map_err(|e| refused(e, pos))
                },
            );
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_volatility(true)
            .set_into_module(
                &mut t,
                move |call: NativeCallContext,
                      metric: &str,
                      value: Dynamic,
                      attrs: Dynamic|
                      -> RhaiResultOf<()> {
                    let pos = call.call_position();
                    let v = number(&value, pos)?;
                    let attrs = attributes(&attrs, pos)?;
                    c.core()
                        .metric(kind, metric, v, &attrs)
                        .map_err(|e| refused(e, pos))
                },
            );
    }
    let c = ctx.clone();
    FuncRegistration::new("span")
        .with_volatility(true)
        .set_into_module(
            &mut t,
            move |call: NativeCallContext, name: &str, f: FnPtr| -> RhaiResultOf<Dynamic> {
                let _guard = c.core().span(name, &Map::new());
                f.call_within_context(&call, ())
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("span")
        .with_volatility(true)
        .set_into_module(
            &mut t,
            move |call: NativeCallContext,
                  name: &str,
                  attrs: Dynamic,
                  f: FnPtr|
                  -> RhaiResultOf<Dynamic> {
                let attrs = attributes(&attrs, call.call_position())?;
                let _guard = c.core().span(name, &attrs);
                f.call_within_context(&call, ())
            },
        );
    engine.register_static_module("telemetry", t.into());
}

fn number(v: &Dynamic, pos: Position) -> RhaiResultOf<f64> {
    v.as_int()
        .map(|i| i as f64)
        .or_else(|_| v.as_float())
        .map_err(|t| throw(format!("metric value must be a number, found {t}"), pos))
}

fn attributes(v: &Dynamic, pos: Position) -> RhaiResultOf<Map<String, Value>> {
    match to_value(v).map_err(|e| convert_error("attributes", e, pos))? {
        Value::Object(m) => Ok(m),
        _ => Err(throw("attributes must be an object map", pos)),
    }
}
