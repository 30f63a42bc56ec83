//! Comparing the running version with its shadow candidate (SPEC §13): what
//! each did for one event, and whether they differ.
//!
//! Pure. Two versions agree when they published the same topics with the
//! same payloads in the same order and their outcomes are of the same kind
//! (an error is a kind of its own). Ids and timestamps of would-be
//! publishes are never compared.

use plughost_bindings::{Outcome, ScriptError};
use serde_json::{Value, json};

/// What one version did for one event.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Topics and payloads published while handling it, in order.
    pub publishes: Vec<(String, Value)>,
    /// The outcome, as compared.
    pub outcome: Seen,
}

/// An outcome as the comparison sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// `ack` (nothing, `true`, `"ack"`).
    Ack,
    /// `outcome.retry(ms)`.
    Retry(Option<u64>),
    /// `outcome.forward(topic, payload)`.
    Forward(String, Value),
    /// `outcome.drop(reason)`.
    Drop(String),
    /// `outcome.reply(payload)`.
    Reply(Value),
    /// An error, as it reads.
    Error(String),
}

impl Seen {
    /// The outcome of a hook's result.
    pub(crate) fn of(result: &Result<Outcome, ScriptError>) -> Seen {
        match result {
            Ok(Outcome::Ack) => Seen::Ack,
            Ok(Outcome::Retry { delay_ms }) => Seen::Retry(*delay_ms),
            Ok(Outcome::Forward { topic, payload }) => {
                Seen::Forward(topic.clone(), payload.value().clone())
            }
            Ok(Outcome::Drop { reason }) => Seen::Drop(reason.clone()),
            Ok(Outcome::Reply { payload }) => Seen::Reply(payload.value().clone()),
            Err(e) => Seen::Error(e.to_string()),
        }
    }

    /// The outcome's kind: what the comparison looks at.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Seen::Ack => "ack",
            Seen::Retry(_) => "retry",
            Seen::Forward(..) => "forward",
            Seen::Drop(_) => "drop",
            Seen::Reply(_) => "reply",
            Seen::Error(_) => "error",
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Seen::Ack => json!({"kind": "ack"}),
            Seen::Retry(ms) => json!({"kind": "retry", "delay_ms": ms}),
            Seen::Forward(topic, payload) => {
                json!({"kind": "forward", "topic": topic, "payload": payload})
            }
            Seen::Drop(reason) => json!({"kind": "drop", "reason": reason}),
            Seen::Reply(payload) => json!({"kind": "reply", "payload": payload}),
            Seen::Error(error) => json!({"kind": "error", "error": error}),
        }
    }
}

impl Observed {
    /// Whether `self` and `other` differ: other publishes, or another kind of outcome.
    pub(crate) fn differs(&self, other: &Observed) -> bool {
        self.publishes != other.publishes || self.outcome.kind() != other.outcome.kind()
    }

    /// As `plughost.plugin.shadow_diff` shows one side.
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "published": self
                .publishes
                .iter()
                .map(|(topic, payload)| json!({"topic": topic, "payload": payload}))
                .collect::<Vec<_>>(),
            "outcome": self.outcome.to_json(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(publishes: &[(&str, Value)], outcome: Seen) -> Observed {
        Observed {
            publishes: publishes
                .iter()
                .map(|(t, p)| ((*t).to_owned(), p.clone()))
                .collect(),
            outcome,
        }
    }

    #[test]
    fn the_same_publishes_and_kind_of_outcome_agree() {
        let a = seen(&[("x", json!({"n": 1})), ("y", json!(2))], Seen::Ack);
        assert!(!a.differs(&a.clone()));
        // Only the kind of outcome is compared, not its details.
        let f1 = seen(&[], Seen::Retry(Some(10)));
        let f2 = seen(&[], Seen::Retry(Some(20)));
        assert!(!f1.differs(&f2));
    }

    #[test]
    fn other_payloads_order_topics_or_outcomes_differ() {
        let base = seen(&[("x", json!({"n": 1})), ("y", json!(2))], Seen::Ack);
        for other in [
            seen(&[("x", json!({"n": 2})), ("y", json!(2))], Seen::Ack),
            seen(&[("y", json!(2)), ("x", json!({"n": 1}))], Seen::Ack),
            seen(&[("x", json!({"n": 1}))], Seen::Ack),
            seen(
                &[("x", json!({"n": 1})), ("y", json!(2))],
                Seen::Drop("no".into()),
            ),
            seen(
                &[("x", json!({"n": 1})), ("y", json!(2))],
                Seen::Error("boom".into()),
            ),
        ] {
            assert!(base.differs(&other), "{other:?}");
        }
    }

    #[test]
    fn a_side_reads_as_json() {
        let s = seen(
            &[("x", json!(1))],
            Seen::Forward("t".into(), json!({"a": 1})),
        );
        assert_eq!(
            s.to_json(),
            json!({
                "published": [{"topic": "x", "payload": 1}],
                "outcome": {"kind": "forward", "topic": "t", "payload": {"a": 1}},
            })
        );
    }
}
