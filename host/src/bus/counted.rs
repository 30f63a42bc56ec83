//! One event counted pending while an async publisher waits to queue it.
//!
//! The bus counts an event pending before it is queued, so the host is not
//! idle while a publisher waits for room in a full `block` queue. An async
//! publisher's future may be dropped in that wait (an HTTP client that gave
//! up, a server stopping): [`Counted`] then takes the count back, so a
//! drain does not wait for an event that will never arrive.

use std::sync::atomic::Ordering;

use super::Bus;

/// One pending event, uncounted when dropped before [`Counted::handed`].
pub(super) struct Counted<'a> {
    bus: &'a Bus,
    armed: bool,
}

impl<'a> Counted<'a> {
    /// Counts one more pending event on `bus`.
    pub(super) fn new(bus: &'a Bus) -> Self {
        bus.pending.fetch_add(1, Ordering::SeqCst);
        Counted { bus, armed: true }
    }

    /// The push ended (queued or not): the outcome's accounting owns the
    /// count from now on.
    pub(super) fn handed(mut self) {
        self.armed = false;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.bus.done();
        }
    }
}
