//! The export buffer: events the bus hands to the cluster, waiting for the
//! one task that publishes them to NATS.
//!
//! The bus offers every event it delivers ([`Outbox::offer`]); the outbox
//! keeps those whose topic matches `export` or is stored
//! (`jetstream.topics`, exported too), and never the host's own
//! (`plughost.*`). An ordinary event never makes its publisher wait: past
//! `buffer` events the oldest ordinary one is dropped and counted, and a
//! warning says so once per spell of drops. An event on a stored topic is
//! never dropped: when the buffer holds only stored events, its publisher
//! waits for room ([`Offer::Full`]). Events imported from NATS never reach
//! it (the bus publishes them without offering).
//!
//! Each kept event gets a number in order; the publishing task says up to
//! which number the server took them ([`Outbox::accepted`]), which is how a
//! stored delivery's acknowledgement waits for the handler's own publishes.
//! No I/O here: the publishing task takes batches with [`Outbox::take`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use plughost_bindings::Event;

use crate::topic::PatternSet;

/// One event waiting for export.
#[derive(Debug, Clone)]
pub(crate) struct Export {
    /// Its number, in the order kept.
    pub seq: u64,
    /// The event.
    pub event: Arc<Event>,
    /// Whether its topic is stored (published through JetStream).
    pub stored: bool,
    /// Shared plugins of this host that already received it directly (they
    /// were not in their group when it was published); their groups skip it.
    pub taken: Vec<Arc<str>>,
}

/// What an offer did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Not exported (or the outbox is closing).
    Ignored,
    /// Kept, with this number.
    Kept(u64),
    /// A stored topic and no room: the publisher waits and offers again.
    Full,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Export>,
    next_seq: u64,
    closing: bool,
}

/// The bounded buffer of events to export.
#[derive(Debug)]
pub(crate) struct Outbox {
    export: PatternSet,
    stored: PatternSet,
    capacity: usize,
    inner: Mutex<Inner>,
    /// Wakes the publishing task.
    ready: tokio::sync::Notify,
    /// Wakes publishers waiting for room (threads, then tasks).
    room: Condvar,
    room_async: tokio::sync::Notify,
    /// The highest number the server took; everything before it is done too.
    accepted: tokio::sync::watch::Sender<u64>,
    dropped: AtomicU64,
    /// Whether events have been dropped since the buffer was last empty
    /// (one warning per spell of drops).
    dropping: AtomicBool,
}

/// How long a publisher waiting for room sleeps before it looks again (a
/// wake-up it missed costs at most this).
const ROOM_POLL: Duration = Duration::from_millis(100);

impl Outbox {
    /// An empty outbox for topics matching `export` or `stored`, holding at
    /// most `capacity` events.
    pub(crate) fn new(export: PatternSet, stored: PatternSet, capacity: usize) -> Self {
        Outbox {
            export,
            stored,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
            ready: tokio::sync::Notify::new(),
            room: Condvar::new(),
            room_async: tokio::sync::Notify::new(),
            accepted: tokio::sync::watch::Sender::new(0),
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether an event on `topic` is exported.
    pub(crate) fn exports(&self, topic: &str) -> bool {
        !crate::host_events::is_reserved(topic)
            && (self.export.matches(topic) || self.stored.matches(topic))
    }

    /// The stored topics (`jetstream.topics`).
    pub(crate) fn stored(&self) -> &PatternSet {
        &self.stored
    }

    /// Whether `topic` is stored (`jetstream.topics`).
    pub(crate) fn is_stored(&self, topic: &str) -> bool {
        !self.stored.is_empty() && self.stored.matches(topic)
    }

    /// Keeps `event` for export when its topic is exported; never waits.
    pub(crate) fn offer(&self, event: &Arc<Event>, taken: &[Arc<str>]) -> Offer {
        if !self.exports(&event.topic) {
            return Offer::Ignored;
        }
        let stored = self.is_stored(&event.topic);
        let (kept, dropped) = {
            let mut inner = self.lock();
            if inner.closing {
                return Offer::Ignored;
            }
            let mut dropped = None;
            if inner.queue.len() >= self.capacity {
                match inner.queue.iter().position(|e| !e.stored) {
                    Some(at) => dropped = inner.queue.remove(at).map(|e| e.event),
                    None if stored => return Offer::Full,
                    // Only stored events wait: the new ordinary one goes.
                    None => dropped = Some(event.clone()),
                }
            }
            let kept = if dropped.as_ref().is_some_and(|d| Arc::ptr_eq(d, event)) {
                None
            } else {
                inner.next_seq += 1;
                let seq = inner.next_seq;
                inner.queue.push_back(Export {
                    seq,
                    event: event.clone(),
                    stored,
                    taken: taken.to_vec(),
                });
                Some(seq)
            };
            (kept, dropped)
        };
        if let Some(old) = dropped {
            let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if !self.dropping.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    event.id = %old.id,
                    topic = %old.topic,
                    dropped = total,
                    buffer = self.capacity,
                    "cluster export buffer full (cluster.buffer): the oldest events are dropped until NATS takes them again"
                );
            }
        }
        self.ready.notify_one();
        kept.map_or(Offer::Ignored, Offer::Kept)
    }

    /// [`Outbox::offer`], waiting (this thread) while a stored event finds no room.
    pub(crate) fn offer_blocking(&self, event: &Arc<Event>, taken: &[Arc<str>]) {
        loop {
            if self.offer(event, taken) != Offer::Full {
                return;
            }
            let inner = self.lock();
            if inner.queue.len() >= self.capacity && !inner.closing {
                let _ = self.room.wait_timeout(inner, ROOM_POLL);
            }
        }
    }

    /// [`Outbox::offer`], waiting (this task) while a stored event finds no room.
    pub(crate) async fn offer_async(&self, event: &Arc<Event>, taken: &[Arc<str>]) {
        loop {
            let room = self.room_async.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if self.offer(event, taken) != Offer::Full {
                return;
            }
            let _ = tokio::time::timeout(ROOM_POLL, room).await;
        }
    }

    /// Takes up to `max` events, oldest first; empty when there is none.
    pub(crate) fn take(&self, max: usize) -> Vec<Export> {
        let batch: Vec<Export> = {
            let mut inner = self.lock();
            let n = inner.queue.len().min(max);
            let batch = inner.queue.drain(..n).collect();
            if inner.queue.is_empty() && self.dropping.swap(false, Ordering::Relaxed) {
                tracing::info!(
                    dropped = self.dropped.load(Ordering::Relaxed),
                    "cluster export buffer has room again"
                );
            }
            batch
        };
        if !batch.is_empty() {
            self.room.notify_all();
            self.room_async.notify_waiters();
        }
        batch
    }

    /// Puts events the server did not take back at the front, in order (a
    /// stored event is published again; its id keeps it from being stored twice).
    pub(crate) fn put_back(&self, mut events: Vec<Export>) {
        let mut inner = self.lock();
        while let Some(e) = events.pop() {
            inner.queue.push_front(e);
        }
        drop(inner);
        self.ready.notify_one();
    }

    /// The number of the latest kept event (0 before any).
    pub(crate) fn last_seq(&self) -> u64 {
        self.lock().next_seq
    }

    /// The server took every event up to number `seq`.
    pub(crate) fn accepted(&self, seq: u64) {
        self.accepted.send_if_modified(|at| {
            let newer = seq > *at;
            if newer {
                *at = seq;
            }
            newer
        });
    }

    /// Waits until the server took every event up to number `seq`.
    pub(crate) async fn wait_accepted(&self, seq: u64) {
        let mut rx = self.accepted.subscribe();
        let _ = rx.wait_for(|at| *at >= seq).await;
    }

    /// Takes nothing more, and releases the publishers waiting for room
    /// (shutdown, when the server is gone: their events are not exported).
    pub(crate) fn close(&self) {
        self.lock().closing = true;
        self.room.notify_all();
        self.room_async.notify_waiters();
        self.ready.notify_one();
    }

    /// Waits until an event may be waiting (returns at once if one was offered
    /// since the last wait).
    pub(crate) async fn ready(&self) {
        self.ready.notified().await
    }

    /// Wakes the waiting task (to see that it should stop).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// Events dropped because the buffer was full.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::topic::Pattern;

    fn outbox(patterns: &[&str], capacity: usize) -> Outbox {
        let set = PatternSet::new(
            patterns
                .iter()
                .map(|p| Pattern::parse(p).unwrap())
                .collect(),
        );
        Outbox::new(set, PatternSet::default(), capacity)
    }

    impl Outbox {
        fn offer_ev(&self, e: &Arc<Event>) -> Offer {
            self.offer(e, &[])
        }
    }

    fn stored(patterns: &[&str], stored: &[&str], capacity: usize) -> Outbox {
        let set =
            |ps: &[&str]| PatternSet::new(ps.iter().map(|p| Pattern::parse(p).unwrap()).collect());
        Outbox::new(set(patterns), set(stored), capacity)
    }

    #[test]
    fn stored_topics_are_exported_and_never_dropped_their_publishers_wait() {
        let o = stored(&["a.>"], &["s.>"], 2);
        assert!(o.exports("s.x") && o.exports("a.x") && !o.exports("b.x"));
        assert_eq!(o.offer_ev(&ev("s.x", 1)), Offer::Kept(1));
        assert_eq!(o.offer_ev(&ev("a.x", 2)), Offer::Kept(2));
        // Full: the oldest ordinary event goes, the stored one stays.
        assert_eq!(o.offer_ev(&ev("s.y", 3)), Offer::Kept(3));
        assert_eq!(o.dropped(), 1);
        // Only stored events: a stored one waits, an ordinary one is dropped.
        assert_eq!(o.offer_ev(&ev("s.z", 4)), Offer::Full);
        assert_eq!(o.offer_ev(&ev("a.y", 5)), Offer::Ignored);
        assert_eq!(o.dropped(), 2);
        let batch = o.take(10);
        assert_eq!(ns(&batch), [1, 3]);
        assert!(batch.iter().all(|e| e.stored));
        assert_eq!(batch.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    }

    #[test]
    fn a_publisher_waiting_for_room_goes_on_once_the_task_takes_a_batch() {
        let o = Arc::new(stored(&[], &["s.>"], 1));
        o.offer_ev(&ev("s.a", 1));
        let publisher = {
            let o = o.clone();
            std::thread::spawn(move || o.offer_blocking(&ev("s.b", 2), &[]))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!publisher.is_finished(), "waits while the buffer is full");
        assert_eq!(ns(&o.take(1)), [1]);
        publisher.join().unwrap();
        assert_eq!(ns(&o.take(1)), [2]);
        // Closing releases a waiting publisher without keeping its event.
        o.offer_ev(&ev("s.c", 3));
        let publisher = {
            let o = o.clone();
            std::thread::spawn(move || o.offer_blocking(&ev("s.d", 4), &[]))
        };
        o.close();
        publisher.join().unwrap();
        assert_eq!(ns(&o.take(5)), [3]);
    }

    #[tokio::test]
    async fn acceptance_is_waited_for_by_number() {
        let o = Arc::new(outbox(&[">"], 5));
        let Offer::Kept(seq) = o.offer_ev(&ev("t", 1)) else {
            panic!()
        };
        assert_eq!(o.last_seq(), seq);
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move { o.wait_accepted(seq).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        o.accepted(seq);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("released")
            .unwrap();
        assert_eq!(ns(&o.take(5)), [1]);
        // Put back, the events come out first, in order.
        o.offer_ev(&ev("t", 2));
        o.offer_ev(&ev("t", 3));
        let first = o.take(1);
        o.put_back(first);
        assert_eq!(ns(&o.take(5)), [2, 3]);
    }

    fn ev(topic: &str, n: u32) -> Arc<Event> {
        Arc::new(Event::new(topic, json!({"n": n}), "host"))
    }

    fn ns(batch: &[Export]) -> Vec<u64> {
        batch
            .iter()
            .map(|e| e.event.payload.value()["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn only_exported_topics_are_kept_and_never_host_events() {
        let o = outbox(&["orders.>", ">"], 10);
        o.offer_ev(&ev("orders.created", 1));
        o.offer_ev(&ev("plughost.plugin.started", 2));
        o.offer_ev(&ev("plughost.dead_letter", 3));
        o.offer_ev(&ev("other", 4));
        assert_eq!(ns(&o.take(10)), [1, 4]);
        let o = outbox(&["orders.*"], 10);
        o.offer_ev(&ev("orders.created", 1));
        o.offer_ev(&ev("orders.created.late", 2));
        o.offer_ev(&ev("text", 3));
        assert_eq!(ns(&o.take(10)), [1]);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts() {
        let o = outbox(&[">"], 3);
        for n in 1..=5 {
            o.offer_ev(&ev("t", n));
        }
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 2);
        assert_eq!(ns(&o.take(2)), [3, 4]);
        assert_eq!(ns(&o.take(2)), [5]);
        assert!(o.take(2).is_empty());
        assert!(
            !o.dropping.load(Ordering::Relaxed),
            "the spell of drops ended"
        );
    }

    #[tokio::test]
    async fn an_offer_wakes_the_waiting_task() {
        let o = Arc::new(outbox(&[">"], 3));
        let waiter = {
            let o = o.clone();
            tokio::spawn(async move {
                o.ready().await;
                o.take(10).len()
            })
        };
        tokio::task::yield_now().await;
        o.offer_ev(&ev("t", 1));
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(taken, 1);
    }
}
