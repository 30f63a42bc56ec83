//! The time budget of one hook call, shared by every runtime.
//!
//! A runtime starts the clock before it calls into the script and stops it
//! after; its own interruption mechanism (Lua's instruction hook, Rhai's
//! progress callback) asks [`Budget::expired`] (a flag the watchdog raises,
//! cheap enough for every operation) or [`Budget::exceeded`] (the clock as
//! well) while the script runs.

use std::cell::Cell;
use std::time::Duration;

use crate::watchdog::Deadline;

/// The deadline of the hook call in progress.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    deadline: Deadline,
    timeout: Cell<Duration>,
    /// The deadline passed and a check noticed (see [`Budget::notice`]).
    noticed: Cell<bool>,
}

impl Budget {
    /// Starts the clock for one hook call.
    pub(crate) fn start(&self, timeout: Duration) {
        self.timeout.set(timeout);
        self.deadline.set(timeout);
        self.noticed.set(false);
    }

    /// Stops the clock: code between hook calls is the host's.
    pub(crate) fn stop(&self) {
        self.deadline.clear();
        self.noticed.set(false);
    }

    /// Records that a check found the deadline passed; returns whether this
    /// is the first such check of the call. A runtime whose interruption
    /// loses the script's position (Rhai's) can let the script run on for a
    /// moment after the first, and raise a positioned error from a place
    /// that knows it ([`Budget::is_noticed`]), before it stops the call at
    /// the next check anyway.
    pub(crate) fn notice(&self) -> bool {
        !self.noticed.replace(true)
    }

    /// Whether the running call is past its deadline and a check noticed.
    pub(crate) fn is_noticed(&self) -> bool {
        self.noticed.get()
    }

    /// Whether the watchdog found the running hook call past its deadline:
    /// one load, for a check between any two operations.
    pub(crate) fn expired(&self) -> bool {
        self.deadline.expired()
    }

    /// Whether the running hook call is past its deadline, by the clock too.
    pub(crate) fn exceeded(&self) -> bool {
        self.deadline.passed()
    }

    /// What is left of the running hook call's time (zero once it is
    /// over), or `None` between hook calls: a wait inside the call (a
    /// `bus.request`) may last no longer.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        self.deadline.remaining()
    }

    /// The message of a call stopped by the budget.
    pub(crate) fn message(&self) -> String {
        format!(
            "time limit exceeded: the hook ran longer than {} ms (limits.event_timeout_ms)",
            self.timeout.get().as_millis()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out_only_while_started() {
        let b = Budget::default();
        assert!(!b.exceeded());
        b.start(Duration::ZERO);
        assert!(b.exceeded());
        assert_eq!(b.remaining(), Some(Duration::ZERO));
        assert!(b.message().contains("0 ms"));
        assert!(b.notice(), "the first check notices");
        assert!(!b.notice());
        assert!(b.is_noticed());
        b.stop();
        assert!(!b.exceeded());
        assert!(!b.is_noticed());
        assert_eq!(b.remaining(), None);
        b.start(Duration::from_secs(60));
        assert!(!b.is_noticed(), "a new call starts afresh");
    }
}
