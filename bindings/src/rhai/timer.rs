//! `timer::after(ms, fn)`, `timer::every(ms, fn)` and `timer::cancel(id)`.

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<rhai::EvalAltResult>>;

use rhai::{Dynamic, Engine, FnPtr, FuncRegistration, INT, Module, NativeCallContext};

use super::context::{Ctx, refused};

/// Registers the `timer` module.
pub(crate) fn register(engine: &mut Engine, ctx: &Ctx) {
    let mut t = Module::new();
    for (name, repeat) in [("after", false), ("every", true)] {
        let c = ctx.clone();
        FuncRegistration::new(name)
            .with_volatility(true)
            .set_into_module(
                &mut t,
                move |call: NativeCallContext, ms: Dynamic, f: FnPtr| -> RhaiResultOf<INT> {
                    let ms = ms
                        .as_int()
                        .map(|i| i as f64)
                        .or_else(|_| ms.as_float())
                        .unwrap_or(-1.0);
                    let after = crate::core::delay(|| format!("timer::{name}"), ms)
                        .map_err(|e| refused(e, call.call_position()))?;
                    Ok(c.timers.borrow_mut().add(after, repeat, f) as INT)
                },
            );
    }
    let c = ctx.clone();
    FuncRegistration::new("cancel")
        .with_volatility(true)
        .set_into_module(&mut t, move |id: INT| -> bool {
            c.timers.borrow_mut().cancel(id as u64)
        });
    engine.register_static_module("timer", t.into());
}
