//! The timer schedule of one plugin: pure bookkeeping, no threads.
//!
//! Runtimes keep the callbacks; this keeps the deadlines. The plugin's thread
//! asks for the next deadline, sleeps until then (or until an event arrives),
//! and pops the timers that are due. Repeating timers are rescheduled from
//! their previous deadline, so `timer.every` does not drift. Ids start at 1:
//! 0 never names a timer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::{Duration, Instant};

/// The smallest interval a repeating timer may have; shorter ones are raised
/// to this so a mistaken `timer.every(0, f)` cannot spin a core.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// How far away a deadline too far to represent is put: never, in practice.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + after`, saturating: a delay past what an `Instant` can hold (a
/// native plugin may pass `u64::MAX` milliseconds) becomes a century.
fn later(at: Instant, after: Duration) -> Instant {
    at.checked_add(after)
        .or_else(|| at.checked_add(FAR))
        .unwrap_or(at)
}

/// Identifies one timer of a plugin.
pub type TimerId = u64;

/// Deadlines of a plugin's timers.
#[derive(Debug, Default)]
pub struct Timers {
    next_id: TimerId,
    heap: BinaryHeap<Reverse<(Instant, TimerId)>>,
    // id -> (deadline, repeat interval); absent = cancelled or fired once.
    live: HashMap<TimerId, (Instant, Option<Duration>)>,
}

impl Timers {
    /// An empty schedule.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty schedule whose ids follow this one's, so that no id handed
    /// out by this schedule names a timer of the new one (a native plugin's
    /// fresh instance may find an old id in its state).
    pub fn successor(&self) -> Self {
        Timers {
            next_id: self.next_id,
            ..Timers::default()
        }
    }

    /// Schedules a timer at `now + after`, repeating every `after` when `repeat`.
    pub fn add(&mut self, now: Instant, after: Duration, repeat: bool) -> TimerId {
        self.next_id += 1;
        let id = self.next_id;
        let interval = after.max(if repeat { MIN_INTERVAL } else { Duration::ZERO });
        let deadline = later(now, interval);
        self.heap.push(Reverse((deadline, id)));
        self.live.insert(id, (deadline, repeat.then_some(interval)));
        id
    }

    /// Cancels a timer; returns whether it was live.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.live.remove(&id).is_some()
    }

    /// Cancels every timer.
    pub fn clear(&mut self) {
        self.live.clear();
        self.heap.clear();
    }

    /// The earliest deadline of a live timer.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id))) = self.heap.peek().copied() {
            match self.live.get(&id) {
                Some((d, _)) if *d == deadline => return Some(deadline),
                _ => {
                    self.heap.pop();
                }
            }
        }
        None
    }

    /// Pops one timer due at `now`, rescheduling it when it repeats.
    /// Returns its id and whether it is still live afterwards.
    pub fn pop_due(&mut self, now: Instant) -> Option<(TimerId, bool)> {
        let deadline = self.next_deadline()?;
        if deadline > now {
            return None;
        }
        let Reverse((_, id)) = self.heap.pop()?;
        let (_, repeat) = self.live[&id];
        match repeat {
            Some(interval) => {
                // Skip missed periods instead of firing a burst after a stall.
                let mut next = later(deadline, interval);
                if next <= now {
                    next = later(now, interval);
                }
                self.heap.push(Reverse((next, id)));
                self.live.insert(id, (next, repeat));
                Some((id, true))
            }
            None => {
                self.live.remove(&id);
                Some((id, false))
            }
        }
    }

    /// Whether no timer is live.
    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Timers with their callbacks, as a runtime keeps them.
#[derive(Debug)]
pub struct TimerTable<F> {
    schedule: Timers,
    callbacks: HashMap<TimerId, F>,
}

impl<F> Default for TimerTable<F> {
    fn default() -> Self {
        TimerTable {
            schedule: Timers::new(),
            callbacks: HashMap::new(),
        }
    }
}

impl<F: Clone> TimerTable<F> {
    /// Schedules `f` after `after` from now, repeating every `after` when `repeat`.
    pub fn add(&mut self, after: Duration, repeat: bool, f: F) -> TimerId {
        let id = self.schedule.add(Instant::now(), after, repeat);
        self.callbacks.insert(id, f);
        id
    }

    /// Cancels a timer; returns whether it was live.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.callbacks.remove(&id);
        self.schedule.cancel(id)
    }

    /// The earliest deadline.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.schedule.next_deadline()
    }

    /// The callback of one timer due at `now` (kept for the next round when it repeats).
    pub fn take_due(&mut self, now: Instant) -> Option<F> {
        let (id, live) = self.schedule.pop_due(now)?;
        if live {
            self.callbacks.get(&id).cloned()
        } else {
            self.callbacks.remove(&id)
        }
    }

    /// Cancels every timer.
    pub fn clear(&mut self) {
        self.schedule.clear();
        self.callbacks.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_shot_fires_once_at_its_deadline() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = t.add(t0, Duration::from_millis(10), false);
        assert_eq!(t.pop_due(t0), None);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(10)), Some((id, false)));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
        assert!(t.is_empty());
    }

    #[test]
    fn repeating_timer_reschedules_without_drift_or_bursts() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = t.add(t0, Duration::from_millis(10), true);
        assert_eq!(t.pop_due(t0 + Duration::from_millis(11)), Some((id, true)));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(20)));
        // A long stall yields one firing, not a burst.
        let late = t0 + Duration::from_millis(100);
        assert_eq!(t.pop_due(late), Some((id, true)));
        assert_eq!(t.pop_due(late), None);
    }

    #[test]
    fn cancelled_timers_never_fire() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let a = t.add(t0, Duration::from_millis(5), true);
        let b = t.add(t0, Duration::from_millis(7), false);
        assert!(t.cancel(a));
        assert!(!t.cancel(a));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(50)), Some((b, false)));
        assert_eq!(t.pop_due(t0 + Duration::from_millis(50)), None);
    }

    #[test]
    fn a_table_hands_out_callbacks_when_due() {
        let mut t: TimerTable<&str> = TimerTable::default();
        let once = t.add(Duration::ZERO, false, "once");
        let every = t.add(Duration::ZERO, true, "every");
        let later = Instant::now() + Duration::from_millis(5);
        let mut got = vec![t.take_due(later).unwrap(), t.take_due(later).unwrap()];
        got.sort();
        assert_eq!(got, ["every", "once"]);
        assert!(!t.cancel(once));
        assert!(t.cancel(every));
        assert_eq!(t.take_due(later + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_successor_hands_out_new_ids_and_no_old_timer() {
        let t0 = Instant::now();
        let mut old = Timers::new();
        let a = old.add(t0, Duration::ZERO, true);
        let mut new = old.successor();
        assert_eq!(new.next_deadline(), None);
        assert!(!new.cancel(a));
        let b = new.add(t0, Duration::ZERO, false);
        assert!(b > a && a > 0, "{a} {b}");
    }

    #[test]
    fn a_delay_too_long_to_represent_is_never_due() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let id = t.add(t0, Duration::MAX, true);
        assert_eq!(t.pop_due(t0 + Duration::from_secs(3600)), None);
        assert!(t.next_deadline().unwrap() > t0 + Duration::from_secs(3600));
        assert!(t.cancel(id));
    }

    #[test]
    fn zero_interval_repeat_is_raised_to_the_minimum() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        t.add(t0, Duration::ZERO, true);
        assert_eq!(t.next_deadline(), Some(t0 + MIN_INTERVAL));
    }
}
