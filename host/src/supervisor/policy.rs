//! Supervision decisions (SPEC §12), pure: results and times in, what to do out.
//!
//! [`Health`] follows one plugin's events: errors in a row suspend it, and a
//! suspended plugin gets a trial event after a wait that doubles with each
//! failed trial. [`Restarts`] follows its crashes: each is restarted after a
//! backoff that doubles, until too many fall within the window. Neither reads
//! a clock: the caller passes `now`, so the tests drive time by hand.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::manifest::Supervision;

/// The first wait before restarting a crashed plugin, doubled for each
/// further crash within the window.
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_millis(100);

/// The longest wait before a restart.
pub(crate) const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

/// What a handled event changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    /// Nothing to announce.
    None,
    /// This error was one too many: the plugin is now suspended.
    Suspended {
        /// Errors in a row.
        errors: u32,
    },
    /// A trial event succeeded: the plugin takes events again.
    Resumed,
}

/// Whether a plugin takes events, and when a suspended one is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    config: Supervision,
    /// Errors in a row, the last event included.
    consecutive: u32,
    /// `Some` while suspended.
    suspended: Option<Suspension>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Suspension {
    /// Trials made so far.
    trials: u32,
    /// When the next trial may start.
    next_trial: Instant,
}

impl Health {
    /// A running plugin with no error yet.
    pub(crate) fn new(config: Supervision) -> Self {
        Health {
            config,
            consecutive: 0,
            suspended: None,
        }
    }

    /// Takes new settings (a reload); the counts stay.
    pub(crate) fn reconfigure(&mut self, config: Supervision) {
        self.config = config;
    }

    /// Whether the plugin is suspended.
    pub(crate) fn is_suspended(&self) -> bool {
        self.suspended.is_some()
    }

    /// Errors in a row so far.
    pub(crate) fn consecutive_errors(&self) -> u32 {
        self.consecutive
    }

    /// Whether the next event may be taken at `now`: always while running,
    /// once the trial is due while suspended.
    pub(crate) fn takes_events(&self, now: Instant) -> bool {
        self.suspended.is_none_or(|s| s.next_trial <= now)
    }

    /// When a suspended plugin's next trial is due.
    pub(crate) fn next_trial(&self) -> Option<Instant> {
        self.suspended.map(|s| s.next_trial)
    }

    /// Records how an event ended: `error` when it counts as an error
    /// (SPEC §12: raised, a value that is not an outcome, a refused forward).
    pub(crate) fn record(&mut self, error: bool, now: Instant) -> Transition {
        if !error {
            self.consecutive = 0;
            return match self.suspended.take() {
                Some(_) => Transition::Resumed,
                None => Transition::None,
            };
        }
        self.consecutive = self.consecutive.saturating_add(1);
        match &mut self.suspended {
            Some(s) => {
                s.trials = s.trials.saturating_add(1);
                s.next_trial = now + self.config.resume_after(s.trials.saturating_add(1));
                Transition::None
            }
            None if self.config.max_consecutive_errors > 0
                && self.consecutive >= self.config.max_consecutive_errors =>
            {
                self.suspended = Some(Suspension {
                    trials: 0,
                    next_trial: now + self.config.resume_after(1),
                });
                Transition::Suspended {
                    errors: self.consecutive,
                }
            }
            None => Transition::None,
        }
    }

    /// Resumes at once (a successful reload, an `enable`). Whether it was
    /// suspended.
    pub(crate) fn resume(&mut self) -> bool {
        self.consecutive = 0;
        self.suspended.take().is_some()
    }
}

/// What to do about a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Start the plugin again after this wait; the crash count within the
    /// window, this one included.
    Restart {
        /// The wait.
        after: Duration,
        /// Crashes within the window.
        restarts: u32,
    },
    /// Too many crashes within the window: stop it for good.
    GiveUp {
        /// Crashes within the window.
        restarts: u32,
    },
}

/// A plugin's recent crashes (Erlang/OTP's restart intensity).
#[derive(Debug, Clone, Default)]
pub(crate) struct Restarts {
    at: VecDeque<Instant>,
}

impl Restarts {
    /// Records a crash at `now` and says what to do.
    pub(crate) fn crashed(&mut self, now: Instant, config: &Supervision) -> Verdict {
        let window = config.window();
        while self
            .at
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            self.at.pop_front();
        }
        self.at.push_back(now);
        let restarts = u32::try_from(self.at.len()).unwrap_or(u32::MAX);
        if restarts > config.max_restarts {
            return Verdict::GiveUp { restarts };
        }
        let doublings = restarts.saturating_sub(1).min(20);
        let after = RESTART_BACKOFF
            .saturating_mul(1 << doublings)
            .min(MAX_RESTART_BACKOFF);
        Verdict::Restart { after, restarts }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_errors: u32) -> Supervision {
        Supervision {
            max_consecutive_errors: max_errors,
            resume_after_ms: 1000,
            max_restarts: 3,
            window_s: 60,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn errors_in_a_row_suspend_and_a_success_in_between_resets_them() {
        let t0 = Instant::now();
        let mut h = Health::new(config(3));
        assert_eq!(h.record(true, t0), Transition::None);
        assert_eq!(h.record(true, t0), Transition::None);
        assert_eq!(h.record(false, t0), Transition::None);
        assert_eq!(h.record(true, t0), Transition::None);
        assert_eq!(h.record(true, t0), Transition::None);
        assert!(!h.is_suspended());
        assert_eq!(h.record(true, t0), Transition::Suspended { errors: 3 });
        assert!(h.is_suspended());
        assert!(!h.takes_events(t0));
    }

    #[test]
    fn zero_never_suspends() {
        let t0 = Instant::now();
        let mut h = Health::new(config(0));
        for _ in 0..1000 {
            assert_eq!(h.record(true, t0), Transition::None);
        }
        assert!(h.takes_events(t0));
    }

    #[test]
    fn trials_wait_longer_after_each_failure_and_a_success_resumes() {
        let t0 = Instant::now();
        let mut h = Health::new(config(1));
        assert_eq!(h.record(true, t0), Transition::Suspended { errors: 1 });
        assert_eq!(h.next_trial(), Some(t0 + ms(1000)));
        assert!(!h.takes_events(t0 + ms(999)));
        let t1 = t0 + ms(1000);
        assert!(h.takes_events(t1));
        // The trial fails: the next one waits twice as long.
        assert_eq!(h.record(true, t1), Transition::None);
        assert_eq!(h.next_trial(), Some(t1 + ms(2000)));
        let t2 = t1 + ms(2000);
        assert_eq!(h.record(true, t2), Transition::None);
        assert_eq!(h.next_trial(), Some(t2 + ms(4000)));
        let t3 = t2 + ms(4000);
        assert_eq!(h.record(false, t3), Transition::Resumed);
        assert!(!h.is_suspended());
        assert_eq!(h.consecutive_errors(), 0);
    }

    #[test]
    fn trial_waits_are_capped_at_five_minutes() {
        let t0 = Instant::now();
        let mut h = Health::new(config(1));
        h.record(true, t0);
        let mut now = t0;
        for _ in 0..40 {
            now = h.next_trial().unwrap();
            h.record(true, now);
        }
        assert_eq!(h.next_trial(), Some(now + Supervision::MAX_RESUME_AFTER));
    }

    #[test]
    fn a_reload_or_enable_resumes_at_once() {
        let t0 = Instant::now();
        let mut h = Health::new(config(1));
        h.record(true, t0);
        assert!(h.resume());
        assert!(h.takes_events(t0));
        assert!(!h.resume());
    }

    #[test]
    fn crashes_back_off_and_too_many_in_the_window_give_up() {
        let t0 = Instant::now();
        let c = config(10);
        let mut r = Restarts::default();
        assert_eq!(
            r.crashed(t0, &c),
            Verdict::Restart {
                after: ms(100),
                restarts: 1
            }
        );
        assert_eq!(
            r.crashed(t0 + ms(10), &c),
            Verdict::Restart {
                after: ms(200),
                restarts: 2
            }
        );
        assert_eq!(
            r.crashed(t0 + ms(20), &c),
            Verdict::Restart {
                after: ms(400),
                restarts: 3
            }
        );
        assert_eq!(r.crashed(t0 + ms(30), &c), Verdict::GiveUp { restarts: 4 });
    }

    #[test]
    fn crashes_older_than_the_window_are_forgotten() {
        let t0 = Instant::now();
        let c = config(10);
        let mut r = Restarts::default();
        for i in 0..3 {
            r.crashed(t0 + ms(i), &c);
        }
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            r.crashed(later, &c),
            Verdict::Restart {
                after: ms(100),
                restarts: 1
            }
        );
    }
}
