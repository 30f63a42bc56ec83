//! Outcome handling: what the host does after a plugin handled an event.
//!
//! Pure: the plugin's result, the attempt number and the manifest's `retry`
//! settings go in; one [`Action`] comes out. The plugin thread carries it out.
//! Only `outcome.retry` redelivers; a raised error or a drop is dead-lettered
//! at once, with the error (and its traceback) or the reason.

use std::time::Duration;

use plughost_bindings::{Outcome, Payload, ScriptError};

use crate::manifest::Retry;

/// The longest delay before a redelivery.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// What to do with an event after a delivery.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Done with it.
    Ack,
    /// Publish `payload` on `topic` in the plugin's name; then done.
    Forward {
        /// Where to publish.
        topic: String,
        /// What to publish.
        payload: Payload,
    },
    /// Deliver it again after `after`, as attempt number `attempt`.
    Retry {
        /// Delay before the redelivery.
        after: Duration,
        /// The number the next delivery will carry (first delivery is 1).
        attempt: u32,
    },
    /// Publish it on `plughost.dead_letter` with this error; then done.
    DeadLetter {
        /// The error or reason, with the traceback for script errors.
        error: String,
    },
    /// Answer the event, a request, with `payload`; then done. (An event
    /// that is no request is only done.)
    Reply {
        /// The answer.
        payload: Payload,
    },
}

impl Action {
    /// Each action's name, as `plugin.messages`' `outcome` attribute and the
    /// delivery span say it, in [`Action::index`] order.
    pub const NAMES: [&'static str; 5] = ["ack", "forward", "retry", "dead_letter", "reply"];

    /// The action's place in [`Action::NAMES`].
    pub fn index(&self) -> usize {
        match self {
            Action::Ack => 0,
            Action::Forward { .. } => 1,
            Action::Retry { .. } => 2,
            Action::DeadLetter { .. } => 3,
            Action::Reply { .. } => 4,
        }
    }

    /// [`Action::index`] of a retry: the event is not finished yet.
    pub const RETRY: usize = 2;

    /// [`Action::index`] of a dead letter.
    pub const DEAD_LETTER: usize = 3;
}

/// Decides what follows delivery number `attempt` (1-based) of an event.
pub fn decide(result: Result<Outcome, ScriptError>, attempt: u32, retry: &Retry) -> Action {
    match result {
        Ok(Outcome::Ack) => Action::Ack,
        Ok(Outcome::Forward { topic, payload }) => Action::Forward { topic, payload },
        Ok(Outcome::Drop { reason }) => Action::DeadLetter { error: reason },
        Ok(Outcome::Reply { payload }) => Action::Reply { payload },
        Ok(Outcome::Retry { delay_ms }) if attempt < retry.max_attempts => Action::Retry {
            after: delay_ms
                .map(Duration::from_millis)
                .unwrap_or_else(|| retry.backoff_for(attempt))
                .min(MAX_RETRY_DELAY),
            attempt: attempt + 1,
        },
        Ok(Outcome::Retry { .. }) => Action::DeadLetter {
            error: format!(
                "still asking for a retry after {attempt} deliveries (retry.max_attempts = {})",
                retry.max_attempts
            ),
        },
        Err(e) => Action::DeadLetter {
            error: e.detailed(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plughost_bindings::ErrorKind;

    fn retry() -> Retry {
        Retry {
            max_attempts: 3,
            backoff_ms: 100,
        }
    }

    #[test]
    fn ack_and_forward_pass_through() {
        assert_eq!(decide(Ok(Outcome::Ack), 1, &retry()), Action::Ack);
        let fwd = Outcome::Forward {
            topic: "a.b".into(),
            payload: Payload::default(),
        };
        assert_eq!(
            decide(Ok(fwd), 1, &retry()),
            Action::Forward {
                topic: "a.b".into(),
                payload: Payload::default()
            }
        );
    }

    #[test]
    fn a_reply_is_its_own_action_named_reply() {
        let payload = Payload::from(serde_json::json!({"n": 1}));
        let action = decide(
            Ok(Outcome::Reply {
                payload: payload.clone(),
            }),
            1,
            &retry(),
        );
        assert_eq!(action, Action::Reply { payload });
        assert_eq!(Action::NAMES[action.index()], "reply");
    }

    #[test]
    fn retry_uses_the_requested_delay_or_the_backoff() {
        let r = retry();
        assert_eq!(
            decide(Ok(Outcome::Retry { delay_ms: Some(5) }), 1, &r),
            Action::Retry {
                after: Duration::from_millis(5),
                attempt: 2
            }
        );
        assert_eq!(
            decide(Ok(Outcome::Retry { delay_ms: None }), 2, &r),
            Action::Retry {
                after: Duration::from_millis(200),
                attempt: 3
            }
        );
        assert_eq!(
            decide(
                Ok(Outcome::Retry {
                    delay_ms: Some(10_000_000)
                }),
                1,
                &r
            ),
            Action::Retry {
                after: MAX_RETRY_DELAY,
                attempt: 2
            }
        );
    }

    #[test]
    fn retry_past_max_attempts_is_dead_lettered() {
        let action = decide(Ok(Outcome::Retry { delay_ms: Some(1) }), 3, &retry());
        let Action::DeadLetter { error } = action else {
            panic!("{action:?}")
        };
        assert!(error.contains("after 3 deliveries"), "{error}");
    }

    #[test]
    fn errors_and_drops_are_dead_lettered_at_once() {
        let drop = decide(
            Ok(Outcome::Drop {
                reason: "spam".into(),
            }),
            1,
            &retry(),
        );
        assert_eq!(
            drop,
            Action::DeadLetter {
                error: "spam".into()
            }
        );
        let mut err = ScriptError::new(ErrorKind::Runtime, "boom");
        err.file = Some("p/main.lua".into());
        err.line = Some(3);
        err.traceback = Some("stack traceback:\n\tp/main.lua:3: in function 'on_event'".into());
        let Action::DeadLetter { error } = decide(Err(err), 1, &retry()) else {
            panic!()
        };
        assert!(error.starts_with("p/main.lua:3: boom"), "{error}");
        assert!(error.contains("stack traceback"), "{error}");
    }
}
