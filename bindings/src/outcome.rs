//! What a plugin's `on_event` asked the host to do with the event.

use crate::Payload;

/// The value `on_event` returned, in runtime-neutral form.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled (nothing, `true` or `"ack"` returned).
    Ack,
    /// Deliver the same event again later: after `delay_ms`, or after the
    /// manifest's exponential backoff when `None`.
    Retry {
        /// Requested delay in milliseconds.
        delay_ms: Option<u64>,
    },
    /// Publish `payload` on `topic` in the plugin's name, and acknowledge.
    Forward {
        /// Concrete topic to publish on.
        topic: String,
        /// Payload of the forwarded event.
        payload: Payload,
    },
    /// Answer the request being handled with `payload` (the first reply
    /// reaches the requester's `bus.request`), and acknowledge. An event
    /// that is no request is only acknowledged.
    Reply {
        /// The answer.
        payload: Payload,
    },
    /// Dead-letter the event with this reason.
    Drop {
        /// Why the plugin refused it.
        reason: String,
    },
}
