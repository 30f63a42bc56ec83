//! `outcome::retry([ms])`, `outcome::forward(topic, payload)`, `outcome::drop(reason)`,
//! `outcome::reply(payload)`, and reading what `on_event` returned.

use rhai::{Dynamic, Engine, FuncRegistration, INT, ImmutableString, Module, NativeCallContext};

/// A binding's result: a value or a thrown error.
type RhaiResultOf<T> = Result<T, Box<rhai::EvalAltResult>>;

use super::context::{convert_error, refused};
use super::convert::to_payload;
use crate::{ErrorKind, Outcome, RuntimeKind, ScriptError};

/// An outcome value as scripts hold it.
#[derive(Debug, Clone)]
pub(crate) struct RhaiOutcome(pub Outcome);

/// Registers the `outcome` module.
pub(crate) fn register(engine: &mut Engine) {
    engine.register_type_with_name::<RhaiOutcome>("Outcome");
    let mut m = Module::new();
    FuncRegistration::new("retry")
        .with_volatility(true)
        .set_into_module(&mut m, || {
            RhaiOutcome(crate::core::retry(RuntimeKind::Rhai, None).expect("no delay to check"))
        });
    FuncRegistration::new("retry")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            |call: NativeCallContext, ms: INT| -> RhaiResultOf<RhaiOutcome> {
                crate::core::retry(RuntimeKind::Rhai, Some(ms as f64))
                    .map(RhaiOutcome)
                    .map_err(|e| refused(e, call.call_position()))
            },
        );
    FuncRegistration::new("forward")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            |call: NativeCallContext, topic: &str, payload: Dynamic| -> RhaiResultOf<RhaiOutcome> {
                let payload = to_payload(&payload)
                    .map_err(|e| convert_error("payload", e, call.call_position()))?;
                Ok(RhaiOutcome(crate::core::forward(topic.to_owned(), payload)))
            },
        );
    FuncRegistration::new("reply")
        .with_volatility(true)
        .set_into_module(
            &mut m,
            |call: NativeCallContext, payload: Dynamic| -> RhaiResultOf<RhaiOutcome> {
                let payload = to_payload(&payload)
                    .map_err(|e| convert_error("payload", e, call.call_position()))?;
                Ok(RhaiOutcome(crate::core::reply(payload)))
            },
        );
    FuncRegistration::new("drop")
        .with_volatility(true)
        .set_into_module(&mut m, |reason: ImmutableString| {
            RhaiOutcome(crate::core::drop(Some(reason.to_string())))
        });
    FuncRegistration::new("drop")
        .with_volatility(true)
        .set_into_module(&mut m, || RhaiOutcome(crate::core::drop(None)));
    engine.register_static_module("outcome", m.into());
}

/// Reads `on_event`'s return value.
///
/// A Rhai function returns the value of its last statement, so a hook that
/// ends with `bus::publish(...)` returns an event id: any value other than an
/// outcome acknowledges, except `false`, which is refused as in Lua (it reads
/// like "failed", and acknowledging it silently would lose the event).
pub(crate) fn from_return(value: Dynamic) -> Result<Outcome, ScriptError> {
    if let Some(o) = value.read_lock::<RhaiOutcome>() {
        return Ok(o.0.clone());
    }
    if value.as_bool() == Ok(false) {
        return Err(ScriptError::new(
            ErrorKind::BadReturn,
            "on_event returned false; return outcome::drop(reason) to refuse an event, \
             or nothing to acknowledge it",
        ));
    }
    Ok(Outcome::Ack)
}
