//! The runtime-neutral core of the bindings: what `bus.publish`,
//! `host.NAME(...)`, `log.*`, `telemetry.*`, `timer.*` and `outcome.*` do,
//! with their checks and messages written once.
//!
//! A runtime converts the script's values into Rust values, calls the core,
//! and turns a [`BindingError`] into a script error at the call's position;
//! it decides nothing itself. Messages name the binding as the runtime
//! spells it (`outcome.retry` in Lua, `outcome::retry` in Rhai, see
//! [`spelled`]).

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::{
    Event, HostCallError, LogLevel, LogRecord, MetricKind, Outcome, Payload, PluginInfo,
    RuntimeKind, SharedHost, SpanGuard,
};

/// The reason a `drop` without one gives.
pub(crate) const DEFAULT_DROP_REASON: &str = "dropped by the plugin";

/// Why a binding call failed: its arguments were refused, or the host
/// refused the call.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BindingError {
    /// A delay that is not a number of milliseconds >= 0.
    #[error("{binding}: delay must be a number of milliseconds >= 0")]
    BadDelay {
        /// The binding, as the runtime spells it.
        binding: String,
    },
    /// The host refused a publish or a metric (its message says why).
    #[error(transparent)]
    Refused(HostCallError),
    /// An application function failed.
    #[error("{binding}: {source}")]
    Function {
        /// The function, as the runtime spells it (`host.NAME`).
        binding: String,
        /// Why.
        source: HostCallError,
    },
}

/// `module.name` (Lua, native) or `module::name` (Rhai).
pub(crate) fn spelled(runtime: RuntimeKind, module: &str, name: &str) -> String {
    match runtime {
        RuntimeKind::Rhai => format!("{module}::{name}"),
        _ => format!("{module}.{name}"),
    }
}

/// What every binding of one plugin calls into: who it is, the host, and
/// the event being handled.
#[derive(Clone, Copy)]
pub(crate) struct Core<'a> {
    /// The plugin.
    pub(crate) info: &'a PluginInfo,
    /// The host services.
    pub(crate) host: &'a SharedHost,
    /// The event whose `on_event` is running, if any.
    pub(crate) current: &'a RefCell<Option<Arc<Event>>>,
}

impl Core<'_> {
    /// `bus.publish(topic, payload)`: the new event's id.
    pub(crate) fn publish(&self, topic: &str, payload: Payload) -> Result<String, BindingError> {
        let cause = self.current.borrow().clone();
        self.host
            .publish(self.info, topic, payload, cause.as_deref())
            .map_err(BindingError::Refused)
    }

    /// `host.NAME(args...)`: the application function's result.
    pub(crate) fn call_function(
        &self,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, BindingError> {
        self.host
            .call_function(self.info, name, args)
            .map_err(|source| BindingError::Function {
                binding: spelled(self.info.runtime, "host", name),
                source,
            })
    }

    /// `telemetry.counter/gauge/histogram(name, value [, attrs])`.
    pub(crate) fn metric(
        &self,
        kind: MetricKind,
        name: &str,
        value: f64,
        attributes: &Map<String, Value>,
    ) -> Result<(), BindingError> {
        self.host
            .metric(self.info, kind, name, value, attributes)
            .map_err(BindingError::Refused)
    }

    /// `telemetry.span(name [, attrs], fn)`: the span, open until the guard drops.
    pub(crate) fn span(&self, name: &str, attributes: &Map<String, Value>) -> SpanGuard {
        let cause = self.current.borrow().clone();
        self.host
            .span(self.info, name, attributes, cause.as_deref())
    }

    /// `log.LEVEL(message [, fields])` and `print`, at `file:line` when known.
    pub(crate) fn log(
        &self,
        level: LogLevel,
        message: &str,
        fields: Option<&Map<String, Value>>,
        file: Option<&str>,
        line: Option<usize>,
    ) {
        self.host.log(
            self.info,
            LogRecord {
                level,
                message,
                fields,
                file,
                line,
            },
        );
    }
}

/// The delay of `timer.after/every(ms, fn)` or `outcome.retry(ms)`.
pub(crate) fn delay(binding: impl FnOnce() -> String, ms: f64) -> Result<Duration, BindingError> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(BindingError::BadDelay { binding: binding() });
    }
    Ok(Duration::from_secs_f64(ms / 1000.0))
}

/// `outcome.retry([ms])`.
pub(crate) fn retry(runtime: RuntimeKind, ms: Option<f64>) -> Result<Outcome, BindingError> {
    let delay_ms = match ms {
        Some(ms) => Some(delay(|| spelled(runtime, "outcome", "retry"), ms)?.as_millis() as u64),
        None => None,
    };
    Ok(Outcome::Retry { delay_ms })
}

/// `outcome.forward(topic, payload)`: checked when it is carried out, on the
/// same path as `bus.publish`.
pub(crate) fn forward(topic: String, payload: Payload) -> Outcome {
    Outcome::Forward { topic, payload }
}

/// `outcome.drop([reason])`.
pub(crate) fn drop(reason: Option<String>) -> Outcome {
    Outcome::Drop {
        reason: reason.unwrap_or_else(|| DEFAULT_DROP_REASON.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_spelled_as_each_runtime_spells_them() {
        assert_eq!(
            spelled(RuntimeKind::Lua, "outcome", "retry"),
            "outcome.retry"
        );
        assert_eq!(
            spelled(RuntimeKind::Rhai, "outcome", "retry"),
            "outcome::retry"
        );
        assert_eq!(spelled(RuntimeKind::Native, "host", "shout"), "host.shout");
    }

    #[test]
    fn delays_are_checked_once_for_every_runtime() {
        assert_eq!(
            retry(RuntimeKind::Lua, Some(-1.0)).unwrap_err().to_string(),
            "outcome.retry: delay must be a number of milliseconds >= 0"
        );
        assert_eq!(
            retry(RuntimeKind::Rhai, Some(f64::NAN))
                .unwrap_err()
                .to_string(),
            "outcome::retry: delay must be a number of milliseconds >= 0"
        );
        assert_eq!(
            retry(RuntimeKind::Lua, Some(250.0)).unwrap(),
            Outcome::Retry {
                delay_ms: Some(250)
            }
        );
        assert_eq!(
            delay(|| "timer.after".into(), 1.5).unwrap(),
            Duration::from_micros(1500)
        );
    }

    #[test]
    fn a_drop_without_a_reason_has_one() {
        assert_eq!(
            drop(None),
            Outcome::Drop {
                reason: DEFAULT_DROP_REASON.into()
            }
        );
    }
}
