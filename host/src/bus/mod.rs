//! The event bus: routes each published event to the queues of the plugins
//! whose subscriptions match it, and to the application's subscribers.
//!
//! Every plugin has its own bounded [`Queue`] and its own thread, so a slow
//! plugin delays only itself (and, by design, publishers into its queue when
//! its overflow policy is `block`). The bus also keeps the count of events
//! not yet finished (queued, being handled, or waiting for a retry), which is
//! how the host knows it is idle, and it publishes dead letters.
//!
//! A plugin that publishes into its own full queue is never made to wait
//! (it would wait for itself): with `block` the publish is refused with
//! [`OwnQueueFull`], with a dropping policy one event is dropped and
//! counted, so a plugin that feeds itself cannot grow its queue past its
//! limit. Two plugins that publish into each other's full `block` queues can
//! still wait for each other while the host runs; shutdown closes their
//! queues past the drain deadline so they stop.
//!
//! Events parked in a suspended plugin's queue (SPEC §12) do not keep the
//! host from being idle. A chain of events each published while handling
//! the one before is cut at [`MAX_HOPS`], so a forward loop ends.
//!
//! With a cluster configured, every published event is also offered to the
//! cluster's export buffer (`cluster::outbox`), which never waits (but for
//! a stored topic, whose publisher waits for room); events received from
//! the cluster are published with [`Bus::publish_imported`], which does not
//! offer them, so they are never exported again.
//!
//! A shared plugin (`cluster.shared`) takes its events through its NATS
//! queue group while it is in it: the bus skips its route for events
//! imported by fan-out, and for local events on exported topics (they reach
//! the group through the export), and the cluster hands it what the group
//! gives this host with [`Bus::deliver_to`]. While it is out of its group
//! (suspended, or the server away) local events reach it directly and say
//! so on export, so its group skips them. A delivery from a stored topic
//! holds a receipt (`cluster::receipts`): its outcome is the acknowledgement
//! (the worker settles it), and an event the plugin could not take or
//! finish for reasons not its own is handed back ([`Bus::unhandled`]).
//!
//! Every dead letter is also kept in the host's dead-letter store
//! ([`Bus::dead_letters`], SPEC §15); [`Bus::replay`] delivers a kept one's
//! event again to its plugin alone.
//!
//! Requests (`bus.request`) wait for their reply in the bus's reply
//! registry (`replies`): [`Bus::expect_reply`] registers one, and
//! [`Bus::answer`] delivers a reply here or hands it to the cluster.

mod cluster;
mod counted;
pub mod inbox;
pub(crate) mod index;
pub mod queue;
mod replies;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use plughost_bindings::{Event, HOST_SOURCE};
use serde_json::Value;

pub use self::inbox::{EventStream, Inbox, flush_deferred};
pub use self::queue::{Control, Delivery, Pop, Push, Queue};
pub use self::replies::{ReplySink, Waiter};
use crate::cluster::outbox::Outbox;
use crate::cluster::receipts::Receipts;
use crate::topic::PatternSet;
use counted::Counted;

pub use crate::host_events::DEAD_LETTER_TOPIC;
use crate::host_events::HostEvent;

/// The reason given for events dead-lettered because their plugin is
/// suspended (SPEC §12).
pub const SUSPENDED: &str = "suspended";

/// The longest chain of events each published while handling the one
/// before: past it, a publish from a hook is refused (a loop of forwards).
pub const MAX_HOPS: u32 = 64;

/// Why the bus refused a plugin's publish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The plugin published into its own queue, which is full and blocks:
    /// it cannot wait for itself.
    #[error(
        "queue full: `{plugin}` publishes into its own queue, which already holds limits.queue = {limit} events"
    )]
    OwnQueueFull {
        /// The plugin.
        plugin: String,
        /// Its queue's limit.
        limit: usize,
    },
    /// The event would be too far down a chain of events each published
    /// while handling the one before.
    #[error(
        "too many hops: this event would be number {hops} in a chain of events each published while handling the one before (at most {MAX_HOPS}); is it a loop?"
    )]
    TooManyHops {
        /// Its place in the chain.
        hops: u32,
    },
}
/// What [`Bus::replay`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replay {
    /// The event is in the plugin's queue.
    Queued,
    /// The plugin has no route, or stopped meanwhile.
    NotRunning,
    /// The plugin is suspended and its queue full.
    Suspended,
    /// The plugin's queue is full and drops new events.
    QueueFull,
}

/// A plugin's place on the bus.
#[derive(Debug)]
pub struct Route {
    /// The plugin's name.
    pub plugin: String,
    /// Its subscriptions.
    pub patterns: PatternSet,
    /// Its queue.
    pub queue: Arc<Queue>,
    /// Events discarded by its overflow policy (the plugin's counter,
    /// [`crate::telemetry::Metrics::dropped_counter`], kept across routes).
    pub dropped: Arc<AtomicU64>,
    /// `cluster.shared`: with a cluster, events reach it through its queue group.
    pub shared: bool,
    /// A gradual rollout's share of its events (SPEC §13), when one runs.
    pub split: Option<Arc<Split>>,
}

/// A gradual rollout's share of a plugin's events: the candidate's queue
/// takes those [`crate::rollout::split::to_candidate`] picks.
#[derive(Debug)]
pub struct Split {
    /// The candidate's queue.
    pub queue: Arc<Queue>,
    /// The candidate's share, 1 to 100.
    pub percent: std::sync::atomic::AtomicU8,
    /// `rollout.key`: the payload path whose value picks the version.
    pub key: Option<String>,
}

impl Route {
    /// The queue `event` goes to: the candidate's for its share in a
    /// gradual rollout, else the plugin's.
    pub fn queue_for(&self, event: &Event) -> &Arc<Queue> {
        match &self.split {
            Some(s)
                if crate::rollout::split::to_candidate(
                    event,
                    s.key.as_deref(),
                    s.percent.load(Ordering::Relaxed),
                ) =>
            {
                &s.queue
            }
            _ => &self.queue,
        }
    }
}

/// Where a published event comes from, for a shared plugin's route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Published on this host.
    Local,
    /// Imported from the cluster by fan-out.
    Imported,
}

struct Subscriber {
    patterns: PatternSet,
    inbox: Arc<Inbox>,
}

/// The plugins' routes in the order they were added, and their index.
///
/// Each route gets a key when added, larger than every key before it, and
/// keeps it when replaced: `keys` is ascending, parallel to `list`, so the
/// index's answer (keys in ascending order) maps back to routes in `list`'s
/// order by a binary search.
#[derive(Debug, Default)]
struct Routes {
    list: Vec<Arc<Route>>,
    keys: Vec<u64>,
    next: u64,
    index: index::TopicIndex<u64>,
}

impl Routes {
    fn push(&mut self, route: Arc<Route>) {
        let key = self.next;
        self.next += 1;
        self.index.insert(key, route.patterns.patterns());
        self.list.push(route);
        self.keys.push(key);
    }

    fn set(&mut self, at: usize, route: Arc<Route>) {
        let key = self.keys[at];
        self.index.remove(key, self.list[at].patterns.patterns());
        self.index.insert(key, route.patterns.patterns());
        self.list[at] = route;
    }

    fn remove(&mut self, at: usize) -> Arc<Route> {
        let key = self.keys.remove(at);
        let route = self.list.remove(at);
        self.index.remove(key, route.patterns.patterns());
        route
    }

    fn matching(&self, topic: &str) -> Vec<Arc<Route>> {
        self.index
            .lookup(topic)
            .iter()
            .filter_map(|key| self.keys.binary_search(key).ok())
            .map(|at| self.list[at].clone())
            .collect()
    }
}

/// The event bus shared by the host and every plugin thread.
#[derive(Default)]
pub struct Bus {
    routes: RwLock<Routes>,
    subscribers: Mutex<Vec<Subscriber>>,
    pending: AtomicUsize,
    /// Plugins suspended now: while any is, every finished event wakes the
    /// idle waiters, who count the parked events.
    suspended: AtomicUsize,
    idle: tokio::sync::Notify,
    /// The cluster's export buffer, when a cluster is configured: every
    /// event published here is offered to it (it keeps the exported ones).
    outbox: OnceLock<Arc<Outbox>>,
    /// Shared plugins in their queue group now (set by the cluster).
    in_group: RwLock<std::collections::HashSet<String>>,
    /// Stored deliveries not settled yet, when the cluster stores topics.
    receipts: OnceLock<Arc<Receipts>>,
    /// Bumped whenever a route or a suspension changes: the cluster's
    /// queue groups follow it.
    routes_changed: tokio::sync::watch::Sender<u64>,
    /// This process's instance id and its requests waiting for a reply.
    replies: replies::Replies,
    /// The last dead letters, for listing and replay.
    dead_letters: crate::dead_letters::DeadLetters,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// An empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver told whenever routes or suspensions change.
    pub(crate) fn watch_routes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.routes_changed.subscribe()
    }

    fn routes_changed(&self) {
        self.routes_changed.send_modify(|n| *n += 1);
    }

    /// Adds a plugin's route; events published from now on reach its queue.
    pub fn add_route(&self, route: Arc<Route>) {
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(route);
        self.routes_changed();
    }

    /// Replaces a plugin's route (new subscriptions, same queue).
    pub fn replace_route(&self, route: Arc<Route>) {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        match routes.list.iter().position(|r| r.plugin == route.plugin) {
            Some(at) => routes.set(at, route),
            None => routes.push(route),
        }
        drop(routes);
        self.routes_changed();
    }

    /// Removes a plugin's route and returns it.
    pub fn remove_route(&self, plugin: &str) -> Option<Arc<Route>> {
        let mut routes = self.routes.write().unwrap_or_else(|p| p.into_inner());
        // Shutdown stops the plugins last started first: from the back,
        // each is found at once.
        let at = routes.list.iter().rposition(|r| r.plugin == plugin)?;
        let route = routes.remove(at);
        drop(routes);
        self.routes_changed();
        Some(route)
    }

    /// The route of a plugin.
    pub fn route(&self, plugin: &str) -> Option<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .iter()
            .find(|r| r.plugin == plugin)
            .cloned()
    }

    /// Every plugin's route, now.
    pub fn routes(&self) -> Vec<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list
            .clone()
    }

    /// Adds an application subscriber receiving every event matching `patterns`.
    pub fn subscribe(&self, patterns: PatternSet) -> EventStream {
        let inbox = Arc::new(Inbox::default());
        self.subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Subscriber {
                patterns,
                inbox: inbox.clone(),
            });
        EventStream::new(inbox)
    }

    /// Ends every subscriber's stream (after the events already in it).
    pub fn close_subscribers(&self) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        for s in subs.drain(..) {
            s.inbox.close();
        }
    }

    /// The routes whose subscriptions match `topic`, in the order they
    /// were added (found through the index, not by matching every route).
    fn matching_routes(&self, topic: &str) -> Vec<Arc<Route>> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .matching(topic)
    }

    /// Hands `event` to every matching subscriber. A plugin thread (`defer`)
    /// wakes the readers later, in a batch; other callers wake them now.
    fn notify_subscribers(&self, event: &Arc<Event>, defer: bool) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|p| p.into_inner());
        // A plain pass: the list is rewritten only when a reader is gone.
        let mut gone = false;
        for s in subs.iter() {
            if !s.patterns.matches(&event.topic) {
                continue;
            }
            if !s.inbox.push(event.clone()) {
                gone = true;
            } else if defer {
                inbox::defer_wake(&s.inbox);
            } else {
                s.inbox.wake();
            }
        }
        if gone {
            subs.retain(|s| !s.inbox.is_closed());
        }
    }

    /// Publishes from a plugin thread (or any non-async caller): waits while a
    /// `block` queue is full, except the publisher's own queue, which refuses
    /// (before the event reaches anyone) when it is full and blocks.
    pub fn publish_blocking(
        &self,
        event: Event,
        publisher: Option<&str>,
    ) -> Result<String, Refused> {
        if event.hops > MAX_HOPS {
            return Err(Refused::TooManyHops { hops: event.hops });
        }
        let mut routes = self.matching_routes(&event.topic);
        let taken = self.through_groups(&mut routes, &event.topic, Via::Local);
        if let Some(own) = publisher.and_then(|p| routes.iter().find(|r| r.plugin == p))
            && own.queue.overflow() == crate::manifest::Overflow::Block
            && own.queue.is_full()
        {
            return Err(Refused::OwnQueueFull {
                plugin: own.plugin.clone(),
                limit: own.queue.capacity(),
            });
        }
        Ok(self.deliver_blocking(event, publisher, routes, &taken, false))
    }

    /// Publishes an event from the application on a thread outside the
    /// async runtime (`--input`'s reader): as [`Bus::publish_async`], but
    /// waits for room in a full `block` queue by blocking the thread.
    pub(crate) fn publish_app_blocking(&self, mut event: Event) -> String {
        event.payload.pack_in_place();
        let mut routes = self.matching_routes(&event.topic);
        let taken = self.through_groups(&mut routes, &event.topic, Via::Local);
        self.deliver_blocking(event, None, routes, &taken, false)
    }

    /// Delivers to `routes`: waits while a `block` queue is full, except the
    /// publisher's own queue, which takes the event over its limit when
    /// `force_own` (a dead letter) and applies its overflow policy otherwise.
    fn deliver_blocking(
        &self,
        event: Event,
        publisher: Option<&str>,
        routes: Vec<Arc<Route>>,
        taken: &[Arc<str>],
        force_own: bool,
    ) -> String {
        let event = Arc::new(event);
        self.export_blocking(&event, taken);
        self.notify_subscribers(&event, publisher.is_some());
        for route in routes {
            let own = publisher == Some(route.plugin.as_str());
            self.pending.fetch_add(1, Ordering::SeqCst);
            let outcome = if own {
                // Never wait for oneself: over the limit, a dropping policy
                // drops (counted); a blocking one was refused before.
                route.queue_for(&event).try_push(event.clone(), force_own)
            } else {
                route.queue_for(&event).push_blocking(event.clone(), false)
            };
            let outcome = match outcome {
                Push::Full(e) => route.queue_for(&event).try_push(e, true),
                other => other,
            };
            let outcome = self.retry_closed(&route, outcome);
            self.account(&route, outcome);
        }
        event.id.clone()
    }

    /// Publishes from async code: awaits room while a `block` queue is full.
    pub async fn publish_async(&self, event: Event) -> String {
        self.publish_async_from(event, Via::Local).await
    }

    /// Publishes an event received from the cluster: as
    /// [`Bus::publish_async`], but never exported again.
    pub(crate) async fn publish_imported(&self, event: Event) -> String {
        self.publish_async_from(event, Via::Imported).await
    }

    async fn publish_async_from(&self, mut event: Event, via: Via) -> String {
        // Packing here, on the publisher's thread, saves every plugin that
        // receives the event from walking the JSON tree on its own thread.
        event.payload.pack_in_place();
        let event = Arc::new(event);
        let mut routes = self.matching_routes(&event.topic);
        let taken = self.through_groups(&mut routes, &event.topic, via);
        if via == Via::Local
            && let Some(outbox) = self.outbox.get()
        {
            outbox.offer_async(&event, &taken).await;
        }
        self.notify_subscribers(&event, false);
        for route in routes {
            let counted = Counted::new(self);
            let outcome = route.queue_for(&event).push_async(event.clone()).await;
            counted.handed();
            let outcome = self.retry_closed(&route, outcome);
            self.account(&route, outcome);
        }
        event.id.clone()
    }

    /// Announces a host event (`plughost.*`, see [`HostEvent`]).
    pub(crate) fn announce(&self, event: &HostEvent<'_>) -> String {
        self.publish_host(event.topic(), event.payload())
    }

    /// Publishes a host event (`plughost.*`), never waiting: host events may
    /// exceed a queue's limit rather than stall the host.
    fn publish_host(&self, topic: &str, payload: Value) -> String {
        let event = Arc::new(Event::new(topic, payload, HOST_SOURCE));
        self.notify_subscribers(&event, false);
        for route in self.matching_routes(&event.topic) {
            self.pending.fetch_add(1, Ordering::SeqCst);
            let outcome = route.queue_for(&event).try_push(event.clone(), true);
            let outcome = self.retry_closed(&route, outcome);
            self.account(&route, outcome);
        }
        event.id.clone()
    }

    /// A push that found its queue closed because the plugin's queues
    /// changed meanwhile (a rollout's candidate stopped, a promoted one
    /// took over) goes to the queue the plugin's route names now.
    fn retry_closed(&self, route: &Route, outcome: Push) -> Push {
        let Push::Closed(event) = outcome else {
            return outcome;
        };
        match self.route(&route.plugin) {
            Some(now) if !Arc::ptr_eq(now.queue_for(&event), route.queue_for(&event)) => {
                now.queue_for(&event).try_push(event, true)
            }
            _ => Push::Closed(event),
        }
    }

    fn account(&self, route: &Route, outcome: Push) {
        match outcome {
            Push::Queued => {}
            Push::DroppedOldest(old) | Push::DroppedNewest(old) => {
                route.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    plugin = %route.plugin,
                    event.id = %old.id,
                    topic = %old.topic,
                    "queue full (limits.queue): event dropped by the overflow policy"
                );
                self.done();
            }
            Push::Closed(ev) => {
                tracing::warn!(plugin = %route.plugin, event.id = %ev.id, "plugin stopped before the event could be queued");
                self.done();
            }
            Push::Refused(ev) => {
                self.unhandled(&route.plugin, &ev, 0, SUSPENDED);
                self.done();
            }
            Push::Full(_) => unreachable!("blocking pushes wait for room"),
        }
    }

    /// Publishes a dead letter for `event`, which `plugin` failed to handle.
    ///
    /// A dead letter that itself fails is logged, never dead-lettered again,
    /// so a plugin subscribed to `>` cannot loop.
    pub fn dead_letter(&self, plugin: &str, event: &Event, attempts: u32, error: &str) {
        tracing::warn!(
            plugin,
            event.id = %event.id,
            topic = %event.topic,
            attempts,
            "dead letter: {}",
            error.lines().next().unwrap_or_default()
        );
        if event.topic == DEAD_LETTER_TOPIC {
            tracing::error!(plugin, event.id = %event.id, "failed to handle a dead letter: {error}");
            return;
        }
        let letter = HostEvent::DeadLetter {
            plugin,
            event,
            attempts,
            error,
        };
        let mut letter = event.caused(letter.topic(), letter.payload(), HOST_SOURCE);
        crate::telemetry::trace::inject_current(&mut letter.headers);
        // Kept before it is published: whoever sees the letter can look it up.
        self.dead_letters
            .record(&letter.id, plugin, event, attempts, error);
        let routes = self.matching_routes(&letter.topic);
        self.deliver_blocking(letter, Some(plugin), routes, &[], true);
        // A stored delivery that ends as a dead letter is done for the stream too.
        if let Some(receipt) = self.take_receipt(plugin, &event.id) {
            receipt.terminate();
        }
    }

    /// The host's dead-letter store.
    pub fn dead_letters(&self) -> &crate::dead_letters::DeadLetters {
        &self.dead_letters
    }

    /// Delivers `event` again to `plugin` alone (no other route, no
    /// application subscriber, no export), as its first attempt, through
    /// the queue any event to it would take (a gradual rollout's share
    /// included); waits for room in a full `block` queue.
    pub(crate) async fn replay(&self, plugin: &str, mut event: Event) -> Replay {
        let Some(route) = self.route(plugin) else {
            return Replay::NotRunning;
        };
        event.payload.pack_in_place();
        let event = Arc::new(event);
        let counted = Counted::new(self);
        let outcome = route.queue_for(&event).push_async(event.clone()).await;
        counted.handed();
        match self.retry_closed(&route, outcome) {
            Push::Closed(_) => {
                self.done();
                Replay::NotRunning
            }
            Push::Refused(_) => {
                self.done();
                Replay::Suspended
            }
            Push::DroppedNewest(_) => {
                self.done();
                Replay::QueueFull
            }
            other => {
                self.account(&route, other);
                Replay::Queued
            }
        }
    }

    /// Marks one queued event as finished (handled, dead-lettered or discarded).
    pub fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1
            || self.suspended.load(Ordering::SeqCst) > 0
        {
            self.idle.notify_waiters();
        }
    }

    /// A plugin was suspended (`true`) or takes events again (`false`).
    pub(crate) fn suspension(&self, suspended: bool) {
        if suspended {
            self.suspended.fetch_add(1, Ordering::SeqCst);
        } else {
            self.suspended.fetch_sub(1, Ordering::SeqCst);
        }
        self.idle.notify_waiters();
        self.routes_changed();
    }

    /// Events parked in suspended plugins' queues.
    fn parked(&self) -> usize {
        if self.suspended.load(Ordering::SeqCst) == 0 {
            return 0;
        }
        self.routes().iter().map(|r| r.queue.parked()).sum()
    }

    /// Marks work that must keep the host from being idle (a timer callback).
    pub fn begin_work(&self) {
        self.pending.fetch_add(1, Ordering::SeqCst);
    }

    /// Events queued, being handled or waiting for a retry.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Whether no event is pending anywhere but parked for a suspended plugin.
    pub fn is_idle(&self) -> bool {
        // Parked first: an event counted there was counted pending before.
        let parked = self.parked();
        self.pending() <= parked
    }

    /// Waits until no event is pending anywhere (but parked for a suspended
    /// plugin: those wait for a fix, not for the host).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_idle() {
                return;
            }
            notified.await;
        }
    }
}

/// Requests and replies (`bus.request`, `outcome.reply`).
impl Bus {
    /// This process's instance id: a ULID made with the bus, fresh in each
    /// process (reply subjects name it; the cluster tells its own echoes by it).
    pub fn instance(&self) -> &str {
        self.replies.instance()
    }

    /// Registers a wait for the reply to the request event `request_id`;
    /// returns its reply subject (`_INBOX.<instance>.<request_id>`, for the
    /// event's `reply_to`) and the waiter, which blocks the calling thread
    /// until the reply or a deadline and unregisters when dropped.
    pub fn expect_reply(&self, request_id: &str) -> (String, Waiter) {
        self.replies.expect(request_id)
    }

    /// Answers the request whose reply subject is `reply_to`: completes it
    /// when it is this process's own and still waiting (the first reply
    /// wins, later ones are ignored), else hands it to the reply sink when
    /// the cluster set one; otherwise the requester is gone (logged at debug).
    pub fn answer(&self, reply_to: &str, payload: plughost_bindings::Payload) {
        self.replies.answer(reply_to, payload);
    }

    /// Sets where replies to requests of other processes go (the cluster,
    /// once; the sink must never block).
    pub fn set_reply_sink(&self, sink: ReplySink) {
        self.replies.set_sink(sink);
    }

    /// Completes the waiting request of `subject` with a reply that came
    /// from the cluster; `true` when a waiter took it.
    pub fn complete_reply(&self, subject: &str, payload: plughost_bindings::Payload) -> bool {
        self.replies.complete(subject, payload)
    }

    /// Whether the cluster's export buffer would export `topic` (`false`
    /// without a cluster).
    pub fn exports(&self, topic: &str) -> bool {
        self.outbox.get().is_some_and(|o| o.exports(topic))
    }

    /// Whether any plugin (but `except`) or application subscriber on this
    /// host subscribes to `topic`.
    pub fn has_subscriber(&self, topic: &str, except: Option<&str>) -> bool {
        let routed = self
            .matching_routes(topic)
            .iter()
            .any(|r| Some(r.plugin.as_str()) != except);
        routed
            || self
                .subscribers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .any(|s| s.patterns.matches(topic))
    }
}
