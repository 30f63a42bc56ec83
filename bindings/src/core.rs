//! The runtime-neutral core of the bindings: what `bus.publish`,
//! `bus.request`, `host.NAME(...)`, `log.*`, `telemetry.*`, `timer.*` and `outcome.*` do,
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
    /// A request timeout that is not a number of milliseconds > 0.
    #[error("{binding}: timeout must be a number of milliseconds > 0")]
    BadTimeout {
        /// The binding, as the runtime spells it.
        binding: String,
    },
    /// The host refused a publish, a request or a metric (its message says
    /// why), or a request got no reply.
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

    /// `bus.request(topic, payload, timeout_ms)`: the first reply's
    /// payload. Waits at most `timeout_ms`, and never longer than `left`,
    /// what is left of the hook's time limit (when the runtime knows it):
    /// the wait counts against the limit.
    pub(crate) fn request(
        &self,
        topic: &str,
        payload: Payload,
        timeout_ms: f64,
        left: Option<Duration>,
    ) -> Result<Payload, BindingError> {
        let timeout = request_timeout(self.info.runtime, timeout_ms)?;
        let wait = left.map_or(timeout, |left| left.min(timeout));
        let cause = self.current.borrow().clone();
        self.host
            .request(self.info, topic, payload, cause.as_deref(), wait)
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

/// The longest wait of one `bus.request`: an hour, the longest hook time
/// limit there is (the hook's own limit cuts every wait shorter anyway).
pub(crate) const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);

/// The `timeout_ms` of `bus.request(topic, payload, timeout_ms)`: more
/// than 0, at most [`MAX_REQUEST_TIMEOUT`].
pub(crate) fn request_timeout(runtime: RuntimeKind, ms: f64) -> Result<Duration, BindingError> {
    if !ms.is_finite() || ms <= 0.0 {
        return Err(BindingError::BadTimeout {
            binding: spelled(runtime, "bus", "request"),
        });
    }
    Ok(Duration::from_secs_f64(
        (ms / 1000.0).min(MAX_REQUEST_TIMEOUT.as_secs_f64()),
    ))
}

/// `outcome.reply(payload)`.
pub(crate) fn reply(payload: Payload) -> Outcome {
    Outcome::Reply { payload }
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
    fn request_timeouts_must_be_positive_and_are_capped() {
        for bad in [0.0, -5.0, f64::NAN, f64::INFINITY] {
            assert_eq!(
                request_timeout(RuntimeKind::Rhai, bad)
                    .unwrap_err()
                    .to_string(),
                "bus::request: timeout must be a number of milliseconds > 0",
                "{bad}"
            );
        }
        assert_eq!(
            request_timeout(RuntimeKind::Lua, 250.0).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            request_timeout(RuntimeKind::Lua, 1e12).unwrap(),
            MAX_REQUEST_TIMEOUT
        );
    }

    #[test]
    fn a_request_never_waits_past_the_hooks_limit() {
        let recorder = Arc::new(crate::test_host::Recorder::default());
        let host: SharedHost = recorder.clone();
        let info = PluginInfo {
            name: "p".into(),
            version: "1.0.0".into(),
            runtime: RuntimeKind::Lua,
        };
        let current = RefCell::new(None);
        let core = Core {
            info: &info,
            host: &host,
            current: &current,
        };
        let answer = core
            .request("echo", Payload::from(Value::from(7)), 60_000.0, None)
            .unwrap();
        assert_eq!(answer.into_value(), Value::from(7));
        let left = Duration::from_millis(20);
        let err = core
            .request("silent", Payload::default(), 60_000.0, Some(left))
            .unwrap_err();
        assert!(err.to_string().contains("no reply on `silent`"), "{err}");
        let waits: Vec<Duration> = recorder
            .requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.1)
            .collect();
        assert_eq!(waits, [Duration::from_secs(60), left]);
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
