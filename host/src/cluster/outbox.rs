//! The export buffer: events the bus hands to the cluster, waiting for the
//! one task that publishes them to NATS.
//!
//! The bus offers every event it delivers ([`Outbox::offer`]); the outbox
//! keeps those whose topic matches `export` and is not the host's own
//! (`plughost.*`), never making the publisher wait: past `buffer` events the
//! oldest is dropped and counted, and a warning says so once per spell of
//! drops. Events imported from NATS never reach it (the bus publishes them
//! without offering). No I/O here: the publishing task takes batches with
//! [`Outbox::take`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use plughost_bindings::Event;

use crate::topic::PatternSet;

/// The bounded buffer of events to export.
#[derive(Debug)]
pub(crate) struct Outbox {
    export: PatternSet,
    capacity: usize,
    queue: Mutex<VecDeque<Arc<Event>>>,
    ready: tokio::sync::Notify,
    dropped: AtomicU64,
    /// Whether events have been dropped since the buffer was last empty
    /// (one warning per spell of drops).
    dropping: AtomicBool,
}

impl Outbox {
    /// An empty outbox for topics matching `export`, holding at most `capacity` events.
    pub(crate) fn new(export: PatternSet, capacity: usize) -> Self {
        Outbox {
            export,
            capacity: capacity.max(1),
            queue: Mutex::new(VecDeque::new()),
            ready: tokio::sync::Notify::new(),
            dropped: AtomicU64::new(0),
            dropping: AtomicBool::new(false),
        }
    }

    /// Whether an event on `topic` would be exported: it matches `export`
    /// and is not the host's own.
    pub(crate) fn exports(&self, topic: &str) -> bool {
        !crate::host_events::is_reserved(topic) && self.export.matches(topic)
    }

    /// Keeps `event` for export when its topic is exported; never waits.
    pub(crate) fn offer(&self, event: &Arc<Event>) {
        if crate::host_events::is_reserved(&event.topic) || !self.export.matches(&event.topic) {
            return;
        }
        let dropped = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            let old = (queue.len() >= self.capacity)
                .then(|| queue.pop_front())
                .flatten();
            queue.push_back(event.clone());
            old
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
    }

    /// Takes up to `max` events, oldest first; empty when there is none.
    pub(crate) fn take(&self, max: usize) -> Vec<Arc<Event>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let n = queue.len().min(max);
        let batch: Vec<_> = queue.drain(..n).collect();
        if queue.is_empty() && self.dropping.swap(false, Ordering::Relaxed) {
            tracing::info!(
                dropped = self.dropped.load(Ordering::Relaxed),
                "cluster export buffer has room again"
            );
        }
        batch
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
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
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
        Outbox::new(set, capacity)
    }

    fn ev(topic: &str, n: u32) -> Arc<Event> {
        Arc::new(Event::new(topic, json!({"n": n}), "host"))
    }

    fn ns(batch: &[Arc<Event>]) -> Vec<u64> {
        batch
            .iter()
            .map(|e| e.payload.value()["n"].as_u64().unwrap())
            .collect()
    }

    #[test]
    fn only_exported_topics_are_kept_and_never_host_events() {
        let o = outbox(&["orders.>", ">"], 10);
        o.offer(&ev("orders.created", 1));
        o.offer(&ev("plughost.plugin.started", 2));
        o.offer(&ev("plughost.dead_letter", 3));
        o.offer(&ev("other", 4));
        assert_eq!(ns(&o.take(10)), [1, 4]);
        let o = outbox(&["orders.*"], 10);
        o.offer(&ev("orders.created", 1));
        o.offer(&ev("orders.created.late", 2));
        o.offer(&ev("text", 3));
        assert_eq!(ns(&o.take(10)), [1]);
    }

    #[test]
    fn a_full_buffer_drops_the_oldest_and_counts() {
        let o = outbox(&[">"], 3);
        for n in 1..=5 {
            o.offer(&ev("t", n));
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
        o.offer(&ev("t", 1));
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(taken, 1);
    }
}
