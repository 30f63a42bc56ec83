//! What `on_event` asks the host to do with the event, as for scripts'
//! `outcome.retry/forward/drop/reply`.

use serde_json::{Value, json};

/// The result of handling one event.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Outcome {
    /// Handled.
    #[default]
    Ack,
    /// Deliver the same event again: after this many milliseconds, or after
    /// the manifest's backoff when `None`. After `retry.max_attempts`
    /// deliveries the event is dead-lettered.
    Retry(Option<u64>),
    /// Publish this payload on this topic in the plugin's name, and acknowledge.
    Forward(String, Value),
    /// Dead-letter the event with this reason.
    Drop(String),
    /// Answer the request being handled with this payload (the requester's
    /// [`Host::request`](crate::Host::request) returns it), and
    /// acknowledge. For an event that is no request, only acknowledge.
    Reply(Value),
}

impl Outcome {
    /// [`Outcome::Forward`].
    pub fn forward(topic: impl Into<String>, payload: Value) -> Outcome {
        Outcome::Forward(topic.into(), payload)
    }

    /// [`Outcome::Drop`].
    pub fn drop(reason: impl Into<String>) -> Outcome {
        Outcome::Drop(reason.into())
    }

    /// [`Outcome::Reply`].
    pub fn reply(payload: Value) -> Outcome {
        Outcome::Reply(payload)
    }

    /// The JSON the host reads (see [`abi`](crate::abi)).
    pub fn to_json(&self) -> Value {
        match self {
            Outcome::Ack => json!({"outcome": "ack"}),
            Outcome::Retry(ms) => json!({"outcome": "retry", "delay_ms": ms}),
            Outcome::Forward(topic, payload) => {
                json!({"outcome": "forward", "topic": topic, "payload": payload})
            }
            Outcome::Drop(reason) => json!({"outcome": "drop", "reason": reason}),
            Outcome::Reply(payload) => json!({"outcome": "reply", "payload": payload}),
        }
    }
}

/// What `on_config` did with a new config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfigChange {
    /// The plugin took the new config into use; it keeps running.
    Applied,
    /// The plugin wants a restart instead, as a script without `on_config`
    /// gets: `shutdown`, a fresh instance (`Default`) and `init`, with the
    /// new config and the state kept. This is the default.
    #[default]
    Restart,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_as_json() {
        assert_eq!(Outcome::Ack.to_json(), json!({"outcome": "ack"}));
        assert_eq!(
            Outcome::Retry(None).to_json(),
            json!({"outcome": "retry", "delay_ms": null})
        );
        assert_eq!(
            Outcome::forward("a.b", json!(1)).to_json(),
            json!({"outcome": "forward", "topic": "a.b", "payload": 1})
        );
        assert_eq!(
            Outcome::drop("no").to_json(),
            json!({"outcome": "drop", "reason": "no"})
        );
        assert_eq!(
            Outcome::reply(json!({"n": 1})).to_json(),
            json!({"outcome": "reply", "payload": {"n": 1}})
        );
    }
}
