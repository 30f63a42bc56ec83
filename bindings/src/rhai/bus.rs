//! `bus::publish(topic, payload)`, `bus::request(topic, payload, timeout_ms)`
//! and the application's functions as `host::NAME(...)`.

use rhai::{Dynamic, Engine, FuncRegistration, Module, NativeCallContext};

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<rhai::EvalAltResult>>;

use super::context::{Ctx, convert_error, refused};
use super::convert::{payload_to_dynamic, to_dynamic, to_payload, to_value};

/// Registers the `bus` and `host` modules.
pub(crate) fn register(engine: &mut Engine, ctx: &Ctx) {
    let mut bus = Module::new();
    let c = ctx.clone();
    FuncRegistration::new("publish")
        .with_volatility(true)
        .set_into_module(
            &mut bus,
            move |call: NativeCallContext, topic: &str, payload: Dynamic| -> RhaiResultOf<String> {
                let pos = call.call_position();
                let payload = to_payload(&payload).map_err(|e| convert_error("payload", e, pos))?;
                c.core()
                    .publish(topic, payload)
                    .map_err(|e| refused(e, pos))
            },
        );
    let c = ctx.clone();
    FuncRegistration::new("request")
        .with_volatility(true)
        .set_into_module(
            &mut bus,
            move |call: NativeCallContext,
                  topic: &str,
                  payload: Dynamic,
                  timeout_ms: rhai::INT|
                  -> RhaiResultOf<Dynamic> {
                let pos = call.call_position();
                // Past the deadline, nothing is published: the call ends
                // the hook as the limit's error (below).
                if c.budget.exceeded() {
                    c.budget.notice();
                    return Err(super::error::time_up_at(pos));
                }
                let payload = to_payload(&payload).map_err(|e| convert_error("payload", e, pos))?;
                let answer =
                    c.core()
                        .request(topic, payload, timeout_ms as f64, c.budget.remaining());
                // A wait the hook's time limit cut short ends the hook as
                // the limit's error, at this call.
                if c.budget.exceeded() {
                    c.budget.notice();
                    return Err(super::error::time_up_at(pos));
                }
                answer
                    .map(|p| payload_to_dynamic(&p))
                    .map_err(|e| refused(e, pos))
            },
        );
    engine.register_static_module("bus", bus.into());

    let mut host = Module::new();
    for name in ctx.host.function_names() {
        register_host_fn(&mut host, ctx, &name);
    }
    engine.register_static_module("host", host.into());
}

/// Registers `host::NAME` for 0 to 6 arguments.
fn register_host_fn(module: &mut Module, ctx: &Ctx, name: &str) {
    macro_rules! arity {
        ($($arg:ident),*) => {{
            let c = ctx.clone();
            let fname = name.to_owned();
            FuncRegistration::new(name).with_volatility(true).set_into_module(
                module,
                move |call: NativeCallContext, $($arg: Dynamic),*| -> RhaiResultOf<Dynamic> {
                    let pos = call.call_position();
                    let args = [$($arg),*]
                        .iter()
                        .enumerate()
                        .map(|(i, a)| to_value(a).map_err(|e| convert_error(&format!("argument {}", i + 1), e, pos)))
                        .collect::<RhaiResultOf<Vec<_>>>()?;
                    let result = c
                        .core()
                        .call_function(&fname, args)
                        .map_err(|e| refused(e, pos))?;
                    Ok(to_dynamic(&result))
                },
            );
        }};
    }
    arity!();
    arity!(a);
    arity!(a, b);
    arity!(a, b, c3);
    arity!(a, b, c3, d);
    arity!(a, b, c3, d, e);
    arity!(a, b, c3, d, e, f);
}
