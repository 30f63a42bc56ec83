//! The time budget of one hook call, shared by every runtime.
//!
//! A runtime starts the clock before it calls into the script and stops it
//! after; its own interruption mechanism (Lua's instruction hook, Rhai's
//! progress callback) asks [`Budget::exceeded`] while the script runs.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The deadline of the hook call in progress.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    deadline: Cell<Option<Instant>>,
    timeout: Cell<Duration>,
}

impl Budget {
    /// Starts the clock for one hook call.
    pub(crate) fn start(&self, timeout: Duration) {
        self.timeout.set(timeout);
        self.deadline.set(Some(Instant::now() + timeout));
    }

    /// Stops the clock: code between hook calls is the host's.
    pub(crate) fn stop(&self) {
        self.deadline.set(None);
    }

    /// Whether the running hook call is past its deadline.
    pub(crate) fn exceeded(&self) -> bool {
        self.deadline.get().is_some_and(|d| Instant::now() >= d)
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
        assert!(b.message().contains("0 ms"));
        b.stop();
        assert!(!b.exceeded());
    }
}
