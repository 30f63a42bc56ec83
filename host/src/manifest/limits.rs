//! The resource, retry and supervision settings of a plugin (`limits:`, `retry:`, `supervision:`), with their defaults.
//!
//! These are plain values: other modules (the plugin actor, the bus) use them
//! with `Default` when no manifest is involved, as in tests and embedding.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// What a full plugin queue does with one more event (`limits.overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The publisher waits until the queue has room (`block`, the default).
    #[default]
    Block,
    /// The oldest queued event is dropped to make room (`drop_oldest`).
    DropOldest,
    /// The new event is dropped (`drop_newest`).
    DropNewest,
}

impl Overflow {
    /// Every value, in the order the docs list them.
    pub const ALL: [Overflow; 3] = [Overflow::Block, Overflow::DropOldest, Overflow::DropNewest];

    /// The name used in `plugin.yaml` (`block`, `drop_oldest`, `drop_newest`).
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Block => "block",
            Overflow::DropOldest => "drop_oldest",
            Overflow::DropNewest => "drop_newest",
        }
    }

    /// The value named `name` in `plugin.yaml`, if any.
    pub fn from_name(name: &str) -> Option<Overflow> {
        Overflow::ALL.into_iter().find(|o| o.as_str() == name)
    }
}

impl fmt::Display for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Resource limits of one plugin (`limits:` in `plugin.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Limits {
    /// Interpreter memory cap in MiB (`memory_mb`, default 64, at least 1).
    pub memory_mb: u64,
    /// Wall-clock budget of one hook call in milliseconds (`event_timeout_ms`,
    /// default 1000, at least 1).
    pub event_timeout_ms: u64,
    /// Pending events held for the plugin (`queue`, default 1024, at least 1).
    pub queue: usize,
    /// What a full queue does (`overflow`, default `block`).
    pub overflow: Overflow,
}

impl Limits {
    /// The largest `memory_mb`: 64 GiB. More is no cap at all.
    pub const MAX_MEMORY_MB: u64 = 64 * 1024;

    /// The largest `event_timeout_ms`: one hour. More is no limit at all,
    /// and shutdown waits for a hook's limit.
    pub const MAX_EVENT_TIMEOUT_MS: u64 = 60 * 60 * 1000;

    /// The largest `queue`: ten million events.
    pub const MAX_QUEUE: usize = 10_000_000;

    /// The memory cap in bytes (saturating).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mb.saturating_mul(1024 * 1024)
    }

    /// The budget of one hook call.
    pub fn event_timeout(&self) -> Duration {
        Duration::from_millis(self.event_timeout_ms)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_mb: 64,
            event_timeout_ms: 1000,
            queue: 1024,
            overflow: Overflow::Block,
        }
    }
}

/// Redelivery of events a plugin asked to retry (`retry:` in `plugin.yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Retry {
    /// Deliveries of one event before it is dead-lettered (`max_attempts`,
    /// default 3, at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry in milliseconds (`backoff_ms`, default 100),
    /// doubled for each further one.
    pub backoff_ms: u64,
}

impl Retry {
    /// The longest delay between two deliveries, however many attempts were made.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

    /// The delay before retry number `attempt` (1 for the first retry).
    ///
    /// `backoff_ms` doubled for each retry after the first, capped at
    /// [`Retry::MAX_BACKOFF`]; attempt 0 counts as 1. Never overflows.
    ///
    /// ```
    /// use std::time::Duration;
    /// use plughost::manifest::Retry;
    /// let retry = Retry { max_attempts: 5, backoff_ms: 100 };
    /// assert_eq!(retry.backoff_for(1), Duration::from_millis(100));
    /// assert_eq!(retry.backoff_for(3), Duration::from_millis(400));
    /// assert_eq!(retry.backoff_for(1000), Retry::MAX_BACKOFF);
    /// ```
    pub fn backoff_for(&self, attempt: u32) -> Duration {
        let cap = Self::MAX_BACKOFF.as_millis() as u64;
        let doublings = attempt.saturating_sub(1);
        let millis = match 1u64.checked_shl(doublings) {
            Some(factor) => self.backoff_ms.saturating_mul(factor),
            None if self.backoff_ms == 0 => 0,
            None => u64::MAX,
        };
        Duration::from_millis(millis.min(cap))
    }
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_attempts: 3,
            backoff_ms: 100,
        }
    }
}

/// How the host supervises a plugin (`supervision:` in `plugin.yaml`, SPEC §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Supervision {
    /// Events in a row ending in an error before the plugin is suspended
    /// (`max_consecutive_errors`, default 10; 0 never suspends).
    pub max_consecutive_errors: u32,
    /// The wait before the first trial event of a suspended plugin, in
    /// milliseconds (`resume_after_ms`, default 1000), doubled after each
    /// failed trial and capped at [`Supervision::MAX_RESUME_AFTER`].
    pub resume_after_ms: u64,
    /// Crashes within `window_s` before the plugin is stopped for good
    /// (`max_restarts`, default 5).
    pub max_restarts: u32,
    /// The window for `max_restarts`, in seconds (`window_s`, default 60).
    pub window_s: u64,
}

impl Supervision {
    /// The longest wait between two trial events of a suspended plugin.
    pub const MAX_RESUME_AFTER: Duration = Duration::from_secs(5 * 60);

    /// The wait before trial number `trial` (1 for the first) of a suspended
    /// plugin: `resume_after_ms` doubled for each failed trial, capped at
    /// [`Supervision::MAX_RESUME_AFTER`]. Never overflows.
    ///
    /// ```
    /// use std::time::Duration;
    /// use plughost::manifest::Supervision;
    /// let s = Supervision::default();
    /// assert_eq!(s.resume_after(1), Duration::from_secs(1));
    /// assert_eq!(s.resume_after(3), Duration::from_secs(4));
    /// assert_eq!(s.resume_after(100), Supervision::MAX_RESUME_AFTER);
    /// ```
    pub fn resume_after(&self, trial: u32) -> Duration {
        let cap = Self::MAX_RESUME_AFTER.as_millis() as u64;
        let doublings = trial.saturating_sub(1);
        let millis = match 1u64.checked_shl(doublings) {
            Some(factor) => self.resume_after_ms.saturating_mul(factor),
            None if self.resume_after_ms == 0 => 0,
            None => u64::MAX,
        };
        Duration::from_millis(millis.min(cap))
    }

    /// The window for `max_restarts`.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_s)
    }
}

impl Default for Supervision {
    fn default() -> Self {
        Supervision {
            max_consecutive_errors: 10,
            resume_after_ms: 1000,
            max_restarts: 5,
            window_s: 60,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_from_the_first_retry() {
        let retry = Retry::default();
        assert_eq!(retry.backoff_for(0), ms(100));
        assert_eq!(retry.backoff_for(1), ms(100));
        assert_eq!(retry.backoff_for(2), ms(200));
        assert_eq!(retry.backoff_for(3), ms(400));
        assert_eq!(retry.backoff_for(9), ms(25_600));
    }

    #[test]
    fn backoff_is_capped_at_thirty_seconds_without_overflow() {
        let retry = Retry::default();
        assert_eq!(retry.backoff_for(10), ms(30_000));
        assert_eq!(retry.backoff_for(64), ms(30_000));
        assert_eq!(retry.backoff_for(65), ms(30_000));
        assert_eq!(retry.backoff_for(u32::MAX), ms(30_000));
        let huge = Retry {
            max_attempts: 1,
            backoff_ms: u64::MAX,
        };
        assert_eq!(huge.backoff_for(1), ms(30_000));
        assert_eq!(huge.backoff_for(2), ms(30_000));
        let zero = Retry {
            max_attempts: 1,
            backoff_ms: 0,
        };
        assert_eq!(zero.backoff_for(u32::MAX), ms(0));
    }

    #[test]
    fn defaults_match_the_spec() {
        let limits = Limits::default();
        assert_eq!(
            (limits.memory_mb, limits.event_timeout_ms, limits.queue),
            (64, 1000, 1024)
        );
        assert_eq!(limits.overflow, Overflow::Block);
        assert_eq!(limits.event_timeout(), ms(1000));
        assert_eq!(limits.memory_bytes(), 64 * 1024 * 1024);
        assert_eq!(
            Retry::default(),
            Retry {
                max_attempts: 3,
                backoff_ms: 100
            }
        );
    }

    #[test]
    fn overflow_names_round_trip() {
        for o in Overflow::ALL {
            assert_eq!(Overflow::from_name(o.as_str()), Some(o));
        }
        assert_eq!(Overflow::from_name("drop"), None);
    }
}
