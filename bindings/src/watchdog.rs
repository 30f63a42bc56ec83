//! The watchdog: one thread for the whole process that raises a flag when a
//! hook call's deadline passes.
//!
//! A runtime can look at a flag between any two operations of a script for
//! the cost of a load, where reading the clock that often would cost a
//! visible share of a short hook. So a runaway hook is noticed at its next
//! operation after the deadline, even when each operation is a long call
//! into the standard library (reading the clock every thousand operations
//! would let a thousand such calls run first).
//!
//! Each [`Deadline`] is a slot the watchdog scans: it sleeps until the
//! earliest deadline it knows of, or parks while there is none. Setting a
//! deadline earlier than the one it sleeps towards wakes it; under a steady
//! flow of hook calls that is rare, since each new deadline is later than
//! the one before.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// "No deadline" in [`Slot::deadline`], and "sleeping with no plan" in
/// [`Watchdog::wake_at`].
const NONE: u64 = u64::MAX;

/// One deadline the watchdog watches.
#[derive(Debug)]
struct Slot {
    /// Nanoseconds after [`Watchdog::epoch`], or [`NONE`].
    deadline: AtomicU64,
    /// Raised by the watchdog once the deadline has passed.
    expired: AtomicBool,
}

/// The thread and the slots it scans.
struct Watchdog {
    epoch: Instant,
    slots: Mutex<Vec<Weak<Slot>>>,
    /// When the thread plans to look next ([`NONE`]: not before a wake-up).
    wake_at: AtomicU64,
    thread: Thread,
}

impl Watchdog {
    /// The process's watchdog, started on first use.
    fn get() -> &'static Watchdog {
        static WATCHDOG: OnceLock<Watchdog> = OnceLock::new();
        WATCHDOG.get_or_init(|| {
            let thread = std::thread::Builder::new()
                .name("plughost-watchdog".into())
                .spawn(|| Watchdog::get().run())
                .expect("cannot start the watchdog thread")
                .thread()
                .clone();
            Watchdog {
                epoch: Instant::now(),
                slots: Mutex::default(),
                wake_at: AtomicU64::new(NONE),
                thread,
            }
        })
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(NONE - 1)
    }

    fn run(&self) {
        loop {
            // From here on, a deadline set anywhere lowers `wake_at` below
            // NONE and unparks this thread, so none set during the scan is
            // missed: either the scan sees it or the park returns at once.
            self.wake_at.store(NONE, Ordering::SeqCst);
            let now = self.now();
            let mut next = NONE;
            self.slots
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|slot| {
                    let Some(slot) = slot.upgrade() else {
                        return false;
                    };
                    match slot.deadline.load(Ordering::SeqCst) {
                        NONE => {}
                        d if d <= now => slot.expired.store(true, Ordering::SeqCst),
                        d => next = next.min(d),
                    }
                    true
                });
            let planned = self.wake_at.fetch_min(next, Ordering::SeqCst).min(next);
            match planned {
                NONE => std::thread::park(),
                at => {
                    std::thread::park_timeout(Duration::from_nanos(at.saturating_sub(self.now())))
                }
            }
        }
    }
}

/// A deadline for one hook call at a time, watched by the watchdog.
#[derive(Debug)]
pub(crate) struct Deadline {
    slot: Arc<Slot>,
}

impl Default for Deadline {
    fn default() -> Self {
        let slot = Arc::new(Slot {
            deadline: AtomicU64::new(NONE),
            expired: AtomicBool::new(false),
        });
        Watchdog::get()
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(&slot));
        Deadline { slot }
    }
}

impl Deadline {
    /// Sets the deadline `timeout` from now (and lowers the flag).
    pub(crate) fn set(&self, timeout: Duration) {
        let w = Watchdog::get();
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(NONE);
        let at = w.now().saturating_add(nanos).min(NONE - 1);
        self.slot.expired.store(false, Ordering::SeqCst);
        self.slot.deadline.store(at, Ordering::SeqCst);
        if at < w.wake_at.fetch_min(at, Ordering::SeqCst) {
            w.thread.unpark();
        }
    }

    /// Clears the deadline (and lowers the flag).
    pub(crate) fn clear(&self) {
        self.slot.deadline.store(NONE, Ordering::SeqCst);
        self.slot.expired.store(false, Ordering::SeqCst);
    }

    /// Whether the watchdog found the deadline passed: one load, for checks
    /// between any two operations.
    pub(crate) fn expired(&self) -> bool {
        self.slot.expired.load(Ordering::Relaxed)
    }

    /// How long until the deadline (zero once it passed), or `None` while
    /// none is set.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        match self.slot.deadline.load(Ordering::Relaxed) {
            NONE => None,
            d => Some(Duration::from_nanos(
                d.saturating_sub(Watchdog::get().now()),
            )),
        }
    }

    /// Whether the deadline has passed, by the clock (for rare checks, and
    /// before the watchdog has looked).
    pub(crate) fn passed(&self) -> bool {
        match self.slot.deadline.load(Ordering::Relaxed) {
            NONE => false,
            d => self.expired() || Watchdog::get().now() >= d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (at most ten seconds) for the watchdog to raise `d`'s flag.
    fn wait_for(d: &Deadline, what: &str) {
        let waited = Instant::now();
        while !d.expired() {
            assert!(waited.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn the_flag_rises_after_the_deadline_and_only_while_set() {
        let d = Deadline::default();
        assert!(!d.expired() && !d.passed());
        d.set(Duration::from_secs(3600));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!d.expired() && !d.passed(), "not before the deadline");
        d.set(Duration::from_millis(20));
        wait_for(&d, "the watchdog never looked");
        assert!(d.passed());
        assert_eq!(d.remaining(), Some(Duration::ZERO));
        d.clear();
        assert!(!d.expired() && !d.passed());
        assert_eq!(d.remaining(), None);
        d.set(Duration::from_secs(60));
        let left = d.remaining().unwrap();
        assert!(left > Duration::from_secs(59) && left <= Duration::from_secs(60));
        d.clear();
        // A later deadline set while the watchdog sleeps towards none, then
        // an earlier one: each is noticed.
        let (late, early) = (Deadline::default(), Deadline::default());
        late.set(Duration::from_secs(3600));
        early.set(Duration::from_millis(10));
        wait_for(&early, "the earlier deadline was missed");
        assert!(!late.expired());
    }
}
