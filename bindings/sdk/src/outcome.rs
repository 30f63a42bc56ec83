//! What `on_event` asks the host to do with the event, as for scripts'
//! `outcome.retry/forward/drop/reply`, and its encoding for the host (see
//! [Outcomes](crate::abi#outcomes)).

use serde_json::Value;

use crate::Packed;
use crate::abi::outcome as kind;

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
    Forward(String, Packed),
    /// Dead-letter the event with this reason.
    Drop(String),
    /// Answer the request being handled with this payload (the requester's
    /// [`Host::request`](crate::Host::request) returns it), and
    /// acknowledge. For an event that is no request, only acknowledge.
    Reply(Packed),
}

impl Outcome {
    /// [`Outcome::Forward`], with a JSON value or a [`Packed`] one
    /// (`Packed::new(&my_struct)?` packs the plugin's own type).
    pub fn forward(topic: impl Into<String>, payload: impl Into<Packed>) -> Outcome {
        Outcome::Forward(topic.into(), payload.into())
    }

    /// [`Outcome::Drop`].
    pub fn drop(reason: impl Into<String>) -> Outcome {
        Outcome::Drop(reason.into())
    }

    /// [`Outcome::Reply`], with a JSON value or a [`Packed`] one.
    pub fn reply(payload: impl Into<Packed>) -> Outcome {
        Outcome::Reply(payload.into())
    }

    /// The bytes the host reads: none for [`Outcome::Ack`], else a kind
    /// byte and its fields.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Outcome::Ack => Vec::new(),
            Outcome::Retry(ms) => {
                let mut out = vec![kind::RETRY, u8::from(ms.is_some())];
                if let Some(ms) = ms {
                    out.extend_from_slice(&ms.to_le_bytes());
                }
                out
            }
            Outcome::Forward(topic, payload) => {
                let len = u32::try_from(topic.len()).unwrap_or(u32::MAX);
                let mut out = Vec::with_capacity(5 + topic.len() + payload.bytes().len());
                out.push(kind::FORWARD);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(topic.as_bytes());
                out.extend_from_slice(payload.bytes());
                out
            }
            Outcome::Drop(reason) => {
                let mut out = vec![kind::DROP];
                out.extend_from_slice(reason.as_bytes());
                out
            }
            Outcome::Reply(payload) => {
                let mut out = Vec::with_capacity(1 + payload.bytes().len());
                out.push(kind::REPLY);
                out.extend_from_slice(payload.bytes());
                out
            }
        }
    }

    /// The outcome as the JSON object a script's outcome table would print
    /// as (for logs and tests).
    pub fn to_json(&self) -> Value {
        use serde_json::json;
        match self {
            Outcome::Ack => json!({"outcome": "ack"}),
            Outcome::Retry(ms) => json!({"outcome": "retry", "delay_ms": ms}),
            Outcome::Forward(topic, payload) => {
                json!({"outcome": "forward", "topic": topic, "payload": payload.to_value()})
            }
            Outcome::Drop(reason) => json!({"outcome": "drop", "reason": reason}),
            Outcome::Reply(payload) => json!({"outcome": "reply", "payload": payload.to_value()}),
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
    use serde_json::json;

    #[test]
    fn outcomes_encode_as_a_kind_byte_and_fields() {
        assert_eq!(Outcome::Ack.encode(), b"");
        assert_eq!(Outcome::Retry(None).encode(), [kind::RETRY, 0]);
        let mut retry = vec![kind::RETRY, 1];
        retry.extend_from_slice(&250u64.to_le_bytes());
        assert_eq!(Outcome::Retry(Some(250)).encode(), retry);
        let forward = Outcome::forward("a.b", json!(1)).encode();
        assert_eq!(&forward[..8], [kind::FORWARD, 3, 0, 0, 0, b'a', b'.', b'b']);
        assert_eq!(plughost_packed::unpack_value(&forward[8..]), json!(1));
        assert_eq!(Outcome::drop("no").encode(), [kind::DROP, b'n', b'o']);
        let reply = Outcome::reply(json!({"n": 1})).encode();
        assert_eq!(reply[0], kind::REPLY);
        assert_eq!(plughost_packed::unpack_value(&reply[1..]), json!({"n": 1}));
        assert_eq!(
            Outcome::reply(json!({"n": 1})).to_json(),
            json!({"outcome": "reply", "payload": {"n": 1}})
        );
    }
}
