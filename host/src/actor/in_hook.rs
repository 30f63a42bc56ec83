//! Which hook a plugin thread is in, and since when: shared between the
//! thread and the supervisor's watch, so a call that ignores its time limit
//! (native code in a loop, an application function that never returns) can
//! be abandoned and the plugin restarted without it.
//!
//! The slot is the arbiter: the thread takes its call back when the hook
//! returns, the watch takes it when the call is past its limit. Whoever
//! takes it first owns the delivery in flight; a thread that finds its call
//! taken has been abandoned and ends without touching anything else.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::bus::Delivery;

/// A call in progress.
#[derive(Debug)]
struct Call {
    since: Instant,
    /// The event being handled, for `on_event`.
    delivery: Option<Delivery>,
}

/// What an abandoned call leaves behind.
#[derive(Debug)]
pub(crate) struct Abandoned {
    /// How long it had run.
    pub(crate) ran: Duration,
    /// The event it was handling, if it was `on_event`.
    pub(crate) delivery: Option<Delivery>,
}

thread_local! {
    /// The hook record of the plugin thread this is, if it is one.
    static CURRENT: std::cell::RefCell<Option<std::sync::Arc<InHook>>> =
        const { std::cell::RefCell::new(None) };
}

/// Marks the calling thread as the plugin thread of `in_hook`.
pub(crate) fn set_current(in_hook: std::sync::Arc<InHook>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(in_hook));
}

/// Whether the calling thread is a plugin thread the watch abandoned:
/// nothing it asks of the host may take effect any more (its event was
/// dead-lettered, and another thread runs its plugin).
pub(crate) fn this_thread_abandoned() -> bool {
    CURRENT.with(|c| c.borrow().as_ref().is_some_and(|h| h.is_abandoned()))
}

/// Deliveries waiting for a retry, by due time (and order of scheduling).
pub(crate) type Retries = BTreeMap<(Instant, u64), Delivery>;

/// The hook one plugin thread is in, and the retries it keeps.
#[derive(Debug, Default)]
pub(crate) struct InHook {
    call: Mutex<Option<Call>>,
    /// Kept here rather than in the thread, so an abandoned thread's
    /// retries are not lost with it.
    retries: Mutex<Retries>,
    /// Set (under the lock, with the call taken) when the watch abandoned
    /// the thread; never cleared: the thread ends.
    abandoned: AtomicBool,
}

impl InHook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Call>> {
        self.call.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The thread enters a hook at `since` (handling `delivery`).
    pub(crate) fn enter(&self, since: Instant, delivery: Option<Delivery>) {
        *self.lock() = Some(Call { since, delivery });
    }

    /// The thread left its hook. `false` when the call was abandoned
    /// meanwhile: the thread must end without another step.
    pub(crate) fn leave(&self) -> bool {
        let mut call = self.lock();
        call.take();
        !self.abandoned.load(Ordering::SeqCst)
    }

    /// After a crash in a hook: the delivery it was handling, which the
    /// thread dead-letters (none when the hook was not `on_event`).
    pub(crate) fn take_crashed(&self) -> Option<Delivery> {
        self.lock().take().and_then(|c| c.delivery)
    }

    /// Whether the watch abandoned this thread.
    pub(crate) fn is_abandoned(&self) -> bool {
        self.abandoned.load(Ordering::SeqCst)
    }

    /// Takes the call if it has run longer than `limit` at `now`, and marks
    /// the thread abandoned.
    pub(crate) fn abandon_past(&self, limit: Duration, now: Instant) -> Option<Abandoned> {
        let mut call = self.lock();
        let ran = now.saturating_duration_since(call.as_ref()?.since);
        if ran <= limit {
            return None;
        }
        self.abandoned.store(true, Ordering::SeqCst);
        call.take().map(|c| Abandoned {
            ran,
            delivery: c.delivery,
        })
    }

    /// The retries, for the thread (which alone changes them while it is
    /// not abandoned).
    pub(crate) fn retries(&self) -> std::sync::MutexGuard<'_, Retries> {
        self.retries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every delivery waiting for a retry.
    pub(crate) fn take_retries(&self) -> Vec<Delivery> {
        std::mem::take(&mut *self.retries()).into_values().collect()
    }

    /// Marks the thread abandoned whatever it is doing (a start that waited
    /// too long for `init`).
    pub(crate) fn abandon(&self) {
        let mut call = self.lock();
        self.abandoned.store(true, Ordering::SeqCst);
        call.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_within_its_limit_is_left_alone() {
        let h = InHook::default();
        let t0 = Instant::now();
        h.enter(t0, None);
        assert!(h.abandon_past(Duration::from_millis(100), t0).is_none());
        assert!(h.leave());
        // No call: nothing to abandon.
        assert!(
            h.abandon_past(Duration::ZERO, t0 + Duration::from_secs(9))
                .is_none()
        );
        assert!(!h.is_abandoned());
    }

    #[test]
    fn a_call_past_its_limit_is_taken_and_its_thread_told() {
        let h = InHook::default();
        let t0 = Instant::now();
        h.enter(t0, None);
        let taken = h
            .abandon_past(Duration::from_millis(100), t0 + Duration::from_millis(150))
            .expect("past its limit");
        assert_eq!(taken.ran, Duration::from_millis(150));
        // When the thread comes back, it learns it was abandoned.
        assert!(!h.leave());
        assert!(h.is_abandoned());
    }

    #[test]
    fn the_thread_that_returns_first_keeps_its_call() {
        let h = InHook::default();
        let t0 = Instant::now();
        h.enter(t0, None);
        assert!(h.leave());
        assert!(
            h.abandon_past(Duration::ZERO, t0 + Duration::from_secs(1))
                .is_none()
        );
        assert!(h.take_crashed().is_none());
        h.enter(t0, None);
        h.abandon();
        assert!(!h.leave());
    }
}
