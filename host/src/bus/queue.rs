//! A plugin's bounded queue: pending deliveries, control messages, overflow.
//!
//! One consumer (the plugin's thread) and any number of publishers. The
//! manifest's `limits.overflow` decides what a full queue does: `block` makes
//! the publisher wait for room (a plugin thread on a condition variable, an
//! async publisher on a `Notify`), `drop_oldest` and `drop_newest` discard
//! one event and report it so the bus counts it. Control messages (stop)
//! bypass the limit and are taken before events.
//!
//! A suspended plugin's queue (SPEC §12) parks its events: the consumer
//! takes only control messages until it asks for a trial event, and a full
//! suspended queue refuses new events at once ([`Push::Refused`]) whatever
//! the overflow policy says, so no publisher waits for a plugin that is not
//! taking events.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use plughost_bindings::{Event, ScriptError};
use tokio::sync::oneshot;

use crate::catalog::PluginDef;
use crate::manifest::Overflow;

/// One delivery of an event to a plugin.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub event: Arc<Event>,
    /// 1 for the first delivery, more for retries.
    pub attempt: u32,
}

/// A message for the plugin's thread that is not an event.
#[derive(Debug)]
pub enum Control {
    /// Run `shutdown` and exit now (events left in the queue are returned).
    Stop,
    /// Handle every queued event, then run `shutdown` and exit.
    Drain,
    /// Replace the plugin by a new version, between two events (live reload).
    Swap {
        /// The new version.
        def: Box<PluginDef>,
        /// Told whether the new version took over (`Ok(false)`: reloaded), or why not.
        done: oneshot::Sender<Result<bool, ScriptError>>,
    },
    /// Hand a new `config` to the plugin (`on_config`, or a swap when it has none).
    Configure {
        /// The new version (its manifest differs from the running one only in `config`).
        def: Box<PluginDef>,
        /// Told how the plugin took the new config: `Ok(true)` by `on_config`,
        /// `Ok(false)` by a reload (it has no `on_config`), or why it did not.
        done: oneshot::Sender<Result<bool, ScriptError>>,
    },
    /// Take events again at once, if suspended (an operator's `enable`).
    Resume,
    /// From the next event on, offer what is handled to a shadow candidate
    /// through `to`; answer the `state` the candidate starts from, taken
    /// now, between two events (so it sees every event after it, and none
    /// before).
    Shadow {
        /// Where the candidate takes events, and the rollout's counts.
        to: crate::rollout::shadow::Link,
        /// Told the plugin's `state` now.
        done: oneshot::Sender<serde_json::Value>,
    },
    /// Answer the plugin's `state` now (a gradual candidate starts from a copy).
    State {
        /// Told the plugin's `state`.
        done: oneshot::Sender<serde_json::Value>,
    },
    /// The plugin was promoted from a gradual rollout's candidate: run its
    /// `on_promote(old_state)` with the old version's `state`.
    Promoted {
        /// The old version's `state` when it stopped.
        old_state: serde_json::Value,
    },
}

/// What the consumer got.
#[derive(Debug)]
pub enum Pop {
    /// A control message.
    Control(Control),
    /// An event to handle.
    Event(Delivery),
    /// The deadline passed with nothing to do.
    Timeout,
}

/// What a push did.
#[derive(Debug)]
pub enum Push {
    /// Queued.
    Queued,
    /// Queued, and this older event was discarded to make room (`drop_oldest`).
    DroppedOldest(Arc<Event>),
    /// Not queued: the queue is full and drops new events (`drop_newest`).
    DroppedNewest(Arc<Event>),
    /// Not queued: the queue is full and blocks; wait for room and try again.
    Full(Arc<Event>),
    /// Not queued: the plugin has stopped.
    Closed(Arc<Event>),
    /// Not queued: the plugin is suspended and its queue is full.
    Refused(Arc<Event>),
}

#[derive(Debug)]
struct Inner {
    events: VecDeque<Delivery>,
    control: VecDeque<Control>,
    closed: bool,
    // Who is asleep, so nobody pays for a wake-up (a system call) in vain.
    consumer_waiting: bool,
    producers_waiting: usize,
    capacity: usize,
    overflow: Overflow,
    suspended: bool,
}

/// A bounded queue of deliveries for one plugin.
#[derive(Debug)]
pub struct Queue {
    inner: Mutex<Inner>,
    ready: Condvar,
    room: Condvar,
    room_async: tokio::sync::Notify,
}

/// An async publisher counted in `producers_waiting` while it lives.
struct Waiting<'a>(&'a Queue);

impl<'a> Waiting<'a> {
    fn new(queue: &'a Queue) -> Self {
        queue.lock().producers_waiting += 1;
        Waiting(queue)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.lock().producers_waiting -= 1;
    }
}

impl Queue {
    /// A queue holding at most `capacity` events.
    pub fn new(capacity: usize, overflow: Overflow) -> Self {
        Queue {
            inner: Mutex::new(Inner {
                events: VecDeque::new(),
                control: VecDeque::new(),
                closed: false,
                consumer_waiting: false,
                producers_waiting: 0,
                capacity: capacity.max(1),
                overflow,
                suspended: false,
            }),
            ready: Condvar::new(),
            room: Condvar::new(),
            room_async: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tries to queue an event; never waits. `force` ignores the limit (a
    /// plugin publishing to itself must not wait for its own queue).
    pub fn try_push(&self, event: Arc<Event>, force: bool) -> Push {
        let mut inner = self.lock();
        if inner.closed {
            return Push::Closed(event);
        }
        let mut result = Push::Queued;
        if inner.suspended && inner.events.len() >= inner.capacity {
            return Push::Refused(event);
        }
        if inner.events.len() >= inner.capacity && !force {
            match inner.overflow {
                Overflow::Block => return Push::Full(event),
                Overflow::DropNewest => return Push::DroppedNewest(event),
                Overflow::DropOldest => {
                    if let Some(old) = inner.events.pop_front() {
                        result = Push::DroppedOldest(old.event);
                    }
                }
            }
        }
        inner.events.push_back(Delivery { event, attempt: 1 });
        let wake = inner.consumer_waiting;
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        result
    }

    /// Puts deliveries back at the head of the queue, in order, over the
    /// limit if need be (retries of a thread that was abandoned: they were
    /// accepted already). Returns those refused by a closed queue.
    pub fn requeue(&self, deliveries: Vec<Delivery>) -> Vec<Delivery> {
        let mut inner = self.lock();
        if inner.closed {
            return deliveries;
        }
        for d in deliveries.into_iter().rev() {
            inner.events.push_front(d);
        }
        let wake = inner.consumer_waiting;
        drop(inner);
        if wake {
            self.ready.notify_one();
        }
        Vec::new()
    }

    /// Queues an event, waiting on this thread while a `block` queue is full.
    pub fn push_blocking(&self, event: Arc<Event>, force: bool) -> Push {
        let mut event = event;
        loop {
            match self.try_push(event, force) {
                Push::Full(e) => {
                    let mut inner = self.lock();
                    if inner.events.len() >= inner.capacity && !inner.closed && !inner.suspended {
                        inner.producers_waiting += 1;
                        let mut inner = self.room.wait(inner).unwrap_or_else(|p| p.into_inner());
                        inner.producers_waiting -= 1;
                    }
                    event = e;
                }
                other => return other,
            }
        }
    }

    /// Queues an event, awaiting room while a `block` queue is full.
    pub async fn push_async(&self, event: Arc<Event>) -> Push {
        let mut event = match self.try_push(event, false) {
            Push::Full(e) => e,
            other => return other,
        };
        // Counted as waiting until this returns or the future is dropped
        // mid-wait (a publisher that gave up): the guard uncounts it either way.
        let _waiting = Waiting::new(self);
        loop {
            let notified = self.room_async.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_push(event, false) {
                Push::Full(e) => {
                    notified.await;
                    event = e;
                }
                other => return other,
            }
        }
    }

    /// Sends a control message; it is taken before any queued event.
    pub fn control(&self, msg: Control) {
        self.lock().control.push_back(msg);
        self.ready.notify_one();
    }

    /// Takes the next control message or event, waiting until `deadline` (or
    /// forever). `before_wait` runs (without the lock) once, before the first
    /// wait, so the consumer can finish deferred work when it runs dry.
    /// With `events` false (a suspended plugin between trials) only control
    /// messages are taken, and a drain does not wait for the parked events.
    pub fn pop(
        &self,
        deadline: Option<Instant>,
        events: bool,
        mut before_wait: impl FnMut(),
    ) -> Pop {
        let mut inner = self.lock();
        let mut idle_done = false;
        loop {
            let drain_waits = events
                && matches!(inner.control.front(), Some(Control::Drain))
                && !inner.events.is_empty();
            if let Some(c) = (!drain_waits).then(|| inner.control.pop_front()).flatten() {
                return Pop::Control(c);
            }
            if let Some(d) = events.then(|| inner.events.pop_front()).flatten() {
                // Blocked publishers are woken once the queue is half empty, not
                // for every slot, so a full queue does not ping-pong.
                let wake = inner.producers_waiting > 0 && inner.events.len() <= inner.capacity / 2;
                drop(inner);
                if wake {
                    self.room.notify_all();
                    self.room_async.notify_waiters();
                }
                return Pop::Event(d);
            }
            if !idle_done {
                idle_done = true;
                drop(inner);
                before_wait();
                inner = self.lock();
                continue;
            }
            inner.consumer_waiting = true;
            match deadline {
                None => inner = self.ready.wait(inner).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        inner.consumer_waiting = false;
                        return Pop::Timeout;
                    }
                    inner = self
                        .ready
                        .wait_timeout(inner, d - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            inner.consumer_waiting = false;
        }
    }

    /// Closes the queue and returns what was still in it. Blocked publishers
    /// are released; control messages still waiting are dropped, so whoever
    /// waits for their answer learns that the plugin stopped.
    pub fn close(&self) -> Vec<Delivery> {
        let mut inner = self.lock();
        inner.closed = true;
        let left = inner.events.drain(..).collect();
        let controls: Vec<Control> = inner.control.drain(..).collect();
        drop(inner);
        drop(controls);
        self.room.notify_all();
        self.room_async.notify_waiters();
        left
    }

    /// Parks the queue's events (a suspended plugin) or releases them.
    /// Publishers waiting for room are woken: a suspended queue refuses
    /// rather than makes them wait.
    pub fn set_suspended(&self, suspended: bool) {
        self.lock().suspended = suspended;
        self.room.notify_all();
        self.room_async.notify_waiters();
    }

    /// Whether the plugin is suspended.
    pub fn is_suspended(&self) -> bool {
        self.lock().suspended
    }

    /// Events parked in a suspended queue (0 when it is not suspended).
    pub fn parked(&self) -> usize {
        let inner = self.lock();
        if inner.suspended {
            inner.events.len()
        } else {
            0
        }
    }

    /// Takes every event parked in a suspended queue (none when it is not
    /// suspended).
    pub fn take_parked(&self) -> Vec<Delivery> {
        let mut inner = self.lock();
        if !inner.suspended {
            return Vec::new();
        }
        let left = inner.events.drain(..).collect();
        drop(inner);
        self.room.notify_all();
        self.room_async.notify_waiters();
        left
    }

    /// Whether one more event would exceed the limit.
    pub fn is_full(&self) -> bool {
        let inner = self.lock();
        inner.events.len() >= inner.capacity
    }

    /// The limit (`limits.queue`).
    pub fn capacity(&self) -> usize {
        self.lock().capacity
    }

    /// The overflow policy.
    pub fn overflow(&self) -> Overflow {
        self.lock().overflow
    }

    /// Changes the limit and the overflow policy (a manifest edit). Events
    /// already queued stay, even above a smaller limit.
    pub fn reconfigure(&self, capacity: usize, overflow: Overflow) {
        let mut inner = self.lock();
        inner.capacity = capacity.max(1);
        inner.overflow = overflow;
        drop(inner);
        self.room.notify_all();
        self.room_async.notify_waiters();
    }

    /// Number of queued events.
    pub fn len(&self) -> usize {
        self.lock().events.len()
    }

    /// Whether no event is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::Duration;

    fn ev(n: u32) -> Arc<Event> {
        Arc::new(Event::new(format!("t.{n}"), Value::Null, "host"))
    }

    fn topic(p: Pop) -> String {
        match p {
            Pop::Event(d) => d.event.topic.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn drop_oldest_discards_the_head() {
        let q = Queue::new(2, Overflow::DropOldest);
        q.try_push(ev(1), false);
        q.try_push(ev(2), false);
        let Push::DroppedOldest(old) = q.try_push(ev(3), false) else {
            panic!()
        };
        assert_eq!(old.topic, "t.1");
        assert_eq!(topic(q.pop(None, true, || {})), "t.2");
        assert_eq!(topic(q.pop(None, true, || {})), "t.3");
    }

    #[test]
    fn drop_newest_refuses_the_new_event() {
        let q = Queue::new(1, Overflow::DropNewest);
        q.try_push(ev(1), false);
        assert!(matches!(q.try_push(ev(2), false), Push::DroppedNewest(_)));
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn block_waits_for_room() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        q.try_push(ev(1), false);
        assert!(matches!(q.try_push(ev(2), false), Push::Full(_)));
        let q2 = q.clone();
        let publisher = std::thread::spawn(move || q2.push_blocking(ev(2), false));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!publisher.is_finished());
        assert_eq!(topic(q.pop(None, true, || {})), "t.1");
        assert!(matches!(publisher.join().unwrap(), Push::Queued));
        assert_eq!(topic(q.pop(None, true, || {})), "t.2");
    }

    #[test]
    fn an_async_publisher_that_gives_up_is_no_longer_counted_as_waiting() {
        let q = Queue::new(1, Overflow::Block);
        q.try_push(ev(1), false);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(20), q.push_async(ev(2))).await
        });
        assert!(waited.is_err(), "the queue was full: {waited:?}");
        assert_eq!(q.lock().producers_waiting, 0);
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn forced_pushes_ignore_the_limit() {
        let q = Queue::new(1, Overflow::Block);
        q.try_push(ev(1), false);
        assert!(matches!(q.try_push(ev(2), true), Push::Queued));
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn drain_waits_for_the_queued_events() {
        let q = Queue::new(4, Overflow::Block);
        q.try_push(ev(1), false);
        q.control(Control::Drain);
        assert_eq!(topic(q.pop(None, true, || {})), "t.1");
        assert!(matches!(
            q.pop(None, true, || {}),
            Pop::Control(Control::Drain)
        ));
    }

    #[test]
    fn reconfiguring_changes_the_limit() {
        let q = Queue::new(1, Overflow::Block);
        q.try_push(ev(1), false);
        assert!(matches!(q.try_push(ev(2), false), Push::Full(_)));
        q.reconfigure(2, Overflow::DropNewest);
        assert!(matches!(q.try_push(ev(2), false), Push::Queued));
        assert!(matches!(q.try_push(ev(3), false), Push::DroppedNewest(_)));
    }

    #[test]
    fn control_comes_first_and_timeouts_expire() {
        let q = Queue::new(4, Overflow::Block);
        q.try_push(ev(1), false);
        q.control(Control::Stop);
        assert!(matches!(
            q.pop(None, true, || {}),
            Pop::Control(Control::Stop)
        ));
        assert_eq!(topic(q.pop(None, true, || {})), "t.1");
        let start = Instant::now();
        assert!(matches!(
            q.pop(Some(start + Duration::from_millis(10)), true, || {}),
            Pop::Timeout
        ));
    }

    #[test]
    fn a_suspended_queue_parks_its_events_and_refuses_when_full() {
        let q = Arc::new(Queue::new(2, Overflow::Block));
        q.try_push(ev(1), false);
        q.set_suspended(true);
        q.try_push(ev(2), false);
        assert_eq!(q.parked(), 2);
        // Full and suspended: refused at once, never waiting, whatever the policy.
        assert!(matches!(q.push_blocking(ev(3), false), Push::Refused(_)));
        assert!(matches!(q.try_push(ev(3), true), Push::Refused(_)));
        // Only control messages come out until events are asked for.
        let soon = Instant::now() + Duration::from_millis(5);
        assert!(matches!(q.pop(Some(soon), false, || {}), Pop::Timeout));
        q.control(Control::Drain);
        assert!(matches!(
            q.pop(None, false, || {}),
            Pop::Control(Control::Drain)
        ));
        assert_eq!(topic(q.pop(None, true, || {})), "t.1");
        assert_eq!(q.take_parked().len(), 1);
        q.set_suspended(false);
        assert_eq!(q.parked(), 0);
    }

    #[test]
    fn a_publisher_waiting_on_a_queue_that_is_suspended_is_refused() {
        let q = Arc::new(Queue::new(1, Overflow::Block));
        q.try_push(ev(1), false);
        let q2 = q.clone();
        let publisher = std::thread::spawn(move || q2.push_blocking(ev(2), false));
        std::thread::sleep(Duration::from_millis(20));
        q.set_suspended(true);
        let pushed = publisher.join().unwrap();
        assert!(matches!(pushed, Push::Refused(_)), "{pushed:?}");
    }

    #[test]
    fn closing_answers_the_waiting_control_messages() {
        let q = Queue::new(4, Overflow::Block);
        let (done, answer) = oneshot::channel();
        q.control(Control::Resume);
        q.control(Control::Swap {
            def: Box::new(PluginDef {
                manifest: crate::manifest::parse(
                    std::path::Path::new("p/plugin.yaml"),
                    "name: p\nversion: 1.0.0\n",
                )
                .unwrap(),
                dir: "p".into(),
                runtime: plughost_bindings::RuntimeKind::Lua,
                entry: "p/main.lua".into(),
            }),
            done,
        });
        q.close();
        // The sender is gone: the one waiting is told instead of waiting forever.
        assert!(answer.blocking_recv().is_err());
    }

    #[test]
    fn close_returns_the_rest_and_refuses_more() {
        let q = Queue::new(4, Overflow::Block);
        q.try_push(ev(1), false);
        assert_eq!(q.close().len(), 1);
        assert!(matches!(q.try_push(ev(2), false), Push::Closed(_)));
    }
}
