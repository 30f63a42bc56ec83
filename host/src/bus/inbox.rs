//! Subscriber inboxes: where the application's streams (and `--tap`) get events.
//!
//! An inbox is an unbounded queue with one async reader. Waking the reader
//! is a system call when its runtime is asleep, so a plugin thread does not
//! wake readers for every event it publishes: it defers the wake-ups and
//! flushes them when it has nothing else to do (its queue ran dry) or after
//! a small batch. Events are in the inbox at once; only the wake-up waits.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use plughost_bindings::Event;

/// Deferred wake-ups are flushed after this many events, even while busy:
/// under a millisecond of a busy plugin, and few enough wake-ups that a
/// reader takes events in batches.
const MAX_DEFERRED: usize = 256;

/// Events waiting for one subscriber.
#[derive(Debug, Default)]
pub struct Inbox {
    items: Mutex<VecDeque<Arc<Event>>>,
    waker: AtomicWaker,
    closed: AtomicBool,
}

impl Inbox {
    /// Adds an event; returns `false` when the reader is gone.
    pub fn push(&self, event: Arc<Event>) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_back(event);
        true
    }

    /// Whether the reader is gone (the inbox takes no more events).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes the reader.
    pub fn wake(&self) {
        self.waker.wake();
    }

    /// Ends the stream once the queued events are read.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn pop(&self) -> Option<Arc<Event>> {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }
}

/// This thread's deferred wake-ups: the inboxes to wake, and how many
/// events were put in them since the last flush.
#[derive(Default)]
struct Deferred {
    inboxes: Vec<Arc<Inbox>>,
    events: usize,
}

thread_local! {
    static DEFERRED: RefCell<Deferred> = RefCell::new(Deferred::default());
}

/// Wakes `inbox`'s reader later, from this thread (see [`flush_deferred`]).
/// After [`MAX_DEFERRED`] events the wake-ups are flushed anyway, so a
/// reader keeps up with a plugin whose queue never runs dry.
pub fn defer_wake(inbox: &Arc<Inbox>) {
    let full = DEFERRED.with_borrow_mut(|d| {
        if !d.inboxes.iter().any(|i| Arc::ptr_eq(i, inbox)) {
            d.inboxes.push(inbox.clone());
        }
        d.events += 1;
        d.events >= MAX_DEFERRED
    });
    if full {
        flush_deferred();
    }
}

/// Performs this thread's deferred wake-ups.
pub fn flush_deferred() {
    let list = DEFERRED.with_borrow_mut(|d| {
        d.events = 0;
        std::mem::take(&mut d.inboxes)
    });
    for inbox in &list {
        inbox.wake();
    }
    // Keep the allocation for the next batch.
    DEFERRED.with_borrow_mut(|d| {
        if d.inboxes.is_empty() {
            let mut list = list;
            list.clear();
            d.inboxes = list;
        }
    });
}

/// Events matching a subscription, as a [`futures::Stream`].
#[derive(Debug)]
pub struct EventStream {
    inbox: Arc<Inbox>,
}

impl EventStream {
    /// A stream reading `inbox`.
    pub fn new(inbox: Arc<Inbox>) -> Self {
        EventStream { inbox }
    }

    /// The next event; `None` once the host has shut down and every event was read.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        futures::StreamExt::next(self).await
    }

    /// The next event if one is waiting, without waiting for one (to take a
    /// batch after [`EventStream::recv`]).
    pub fn try_next(&mut self) -> Option<Arc<Event>> {
        self.inbox.pop()
    }
}

impl futures::Stream for EventStream {
    type Item = Arc<Event>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(e) = self.inbox.pop() {
            return Poll::Ready(Some(e));
        }
        self.inbox.waker.register(cx.waker());
        // Re-check after registering, so a push racing with us is not missed.
        match self.inbox.pop() {
            Some(e) => Poll::Ready(Some(e)),
            None if self.inbox.closed.load(Ordering::Acquire) => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // The bus forgets a subscriber whose stream is gone.
        self.inbox.closed.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::Value;

    #[tokio::test]
    async fn deferred_events_are_readable_once_flushed() {
        let inbox = Arc::new(Inbox::default());
        let mut stream = EventStream::new(inbox.clone());
        let reader = tokio::spawn(async move {
            let mut got = 0;
            while stream.next().await.is_some() {
                got += 1;
            }
            got
        });
        tokio::task::yield_now().await;
        let writer = {
            let inbox = inbox.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    inbox.push(Arc::new(Event::new("t", Value::Null, "p")));
                    defer_wake(&inbox);
                }
                flush_deferred();
            })
        };
        writer.join().unwrap();
        inbox.close();
        assert_eq!(reader.await.unwrap(), 100);
    }

    /// Counts the times it is woken.
    struct Count(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Count {
        fn wake_by_ref(me: &Arc<Self>) {
            me.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_busy_writer_wakes_its_one_reader_every_few_events() {
        let inbox = Arc::new(Inbox::default());
        let mut stream = EventStream::new(inbox.clone());
        let count = Arc::new(Count(Default::default()));
        let waker = futures::task::waker(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(stream.poll_next_unpin(&mut cx).is_pending());
        // Never flushed by the writer: one inbox, many events.
        for _ in 0..MAX_DEFERRED {
            inbox.push(Arc::new(Event::new("t", Value::Null, "p")));
            defer_wake(&inbox);
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken while still busy");
    }
}
