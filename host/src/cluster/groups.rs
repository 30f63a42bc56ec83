//! Shared plugins (SPEC §14): each runs as a NATS queue group named after
//! it, so each event for it is handled by one of the hosts running it,
//! this one included; on stored topics it consumes through a JetStream
//! durable consumer named after it instead.
//!
//! One task follows the bus's routes ([`Bus::watch_routes`]) and the
//! connection: a shared plugin that runs and is not suspended is a member
//! (its subscriptions queue-subscribed, its consumer pulled, each in a task
//! of its own), any other leaves, and a member that left hands back the
//! stored deliveries it held. The bus is told who is in a group now
//! ([`Bus::set_in_group`]): while a plugin is out (suspended, or the server
//! away) local events reach it directly, and say so on export.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

use super::config::JetStreamConfig;
use super::receipts::Receipts;
use super::{Counters, wire};
use crate::bus::Bus;
use crate::topic::{Pattern, PatternSet};

/// How long the server may hold a stored delivery unacknowledged before it
/// redelivers it (the host says "in progress" well within it while it holds one).
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(10);

/// How many stored deliveries a member asks for at a time.
const PULL_BATCH: usize = 16;

/// How long one request for stored deliveries waits for them (and so how
/// long a consumer told to stop may take to notice).
const PULL_WAIT: Duration = Duration::from_millis(500);

/// The most stored deliveries a member holds unsettled (fewer when its
/// queue is smaller): the rest stays in the stream for the other hosts.
const MAX_HELD: usize = 64;

/// How long a failed consumer waits before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Stored delivery: the stream and what it stores.
#[derive(Clone)]
pub(crate) struct Stored {
    /// JetStream on this connection.
    pub js: jetstream::Context,
    /// The stream's settings.
    pub config: JetStreamConfig,
    /// The stored topics.
    pub topics: PatternSet,
    /// Where deliveries wait to be settled.
    pub receipts: Arc<Receipts>,
}

/// What a member is, to tell when it must join again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    patterns: Vec<String>,
}

struct Member {
    shape: Shape,
    /// Its queue subscriptions' task.
    task: tokio::task::JoinHandle<()>,
    /// Tells its consumer to stop; dropped, it stops too. The consumer is
    /// never aborted: it hands back what it fetched and did not deliver.
    stop: tokio::sync::watch::Sender<bool>,
    /// Whether the server has its queue subscriptions (set by its task).
    joined: Arc<AtomicBool>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the groups in step with the shared plugins running now. Runs
/// until aborted; every member leaves then.
pub(crate) async fn follow(
    client: Client,
    bus: Arc<Bus>,
    stored: Option<Stored>,
    counters: Arc<Counters>,
) {
    let mut routes = bus.watch_routes();
    let mut connected = counters.connected.subscribe();
    let mut members: HashMap<String, Member> = HashMap::new();
    let _leave_all = LeaveAll(bus.clone());
    loop {
        let up = *connected.borrow_and_update();
        routes.borrow_and_update();
        let wanted: HashMap<String, Shape> = bus
            .routes()
            .iter()
            .filter(|r| r.shared && !r.queue.is_suspended())
            .map(|r| {
                let patterns = r
                    .patterns
                    .patterns()
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect();
                (r.plugin.clone(), Shape { patterns })
            })
            .collect();
        members.retain(|name, member| {
            let keep = wanted.get(name) == Some(&member.shape);
            if !keep {
                // Nothing more from the group, then back with what it held.
                member.task.abort();
                let _ = member.stop.send(true);
                leave(&bus, stored.as_ref(), name);
            }
            keep
        });
        for (name, shape) in wanted {
            if members.contains_key(&name) {
                continue;
            }
            let (stop, stopped) = tokio::sync::watch::channel(false);
            if let Some(s) = &stored {
                let filters = stored_filters(&shape.patterns, &s.topics);
                if !filters.is_empty() {
                    tokio::spawn(consume(
                        s.clone(),
                        bus.clone(),
                        counters.clone(),
                        name.clone(),
                        filters,
                        stopped,
                    ));
                }
            }
            let joined = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(member(
                client.clone(),
                bus.clone(),
                stored.as_ref().map(|s| s.topics.clone()),
                counters.clone(),
                name.clone(),
                shape.patterns.clone(),
                joined.clone(),
            ));
            members.insert(
                name,
                Member {
                    shape,
                    task,
                    stop,
                    joined,
                },
            );
        }
        // Out of the server's reach, nobody is in a group: local events
        // reach the shared plugins directly meanwhile. A member is in its
        // group once the server has its subscriptions.
        for (name, member) in &members {
            bus.set_in_group(name, up && member.joined.load(Ordering::SeqCst));
        }
        tokio::select! {
            r = routes.changed() => if r.is_err() { return },
            r = connected.changed() => if r.is_err() { return },
        }
    }
}

/// Takes every member out of its group when the following task ends.
struct LeaveAll(Arc<Bus>);

impl Drop for LeaveAll {
    fn drop(&mut self) {
        for r in self.0.routes() {
            if r.shared {
                self.0.set_in_group(&r.plugin, false);
            }
        }
    }
}

/// Plugin `name` leaves its group: local events reach it directly, and the
/// stored deliveries it holds (parked while suspended) go back to the stream.
fn leave(bus: &Bus, stored: Option<&Stored>, name: &str) {
    bus.set_in_group(name, false);
    if stored.is_some() {
        let n = bus.hand_back_parked(name);
        if n > 0 {
            tracing::info!(
                plugin = name,
                handed_back = n,
                "cluster: a shared plugin left its group and handed back its stored deliveries"
            );
        }
    }
    tracing::info!(plugin = name, "cluster: left the queue group");
}

/// One member: its queue subscriptions, and its durable consumer when some
/// of its subscriptions are stored.
async fn member(
    client: Client,
    bus: Arc<Bus>,
    topics: Option<PatternSet>,
    counters: Arc<Counters>,
    name: String,
    patterns: Vec<String>,
    joined: Arc<AtomicBool>,
) {
    let mut subs = Vec::with_capacity(patterns.len());
    for pattern in &patterns {
        match client.queue_subscribe(pattern.clone(), name.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::error!(plugin = %name, "cluster: cannot join the queue group on `{pattern}`: {e}")
            }
        }
    }
    // The server has the subscriptions once a flush came back: from then
    // on local events may go through the group (not before: one published
    // meanwhile would reach no member).
    if client.flush().await.is_ok() {
        joined.store(true, Ordering::SeqCst);
        if counters.is_connected() {
            bus.set_in_group(&name, true);
        }
    }
    tracing::info!(plugin = %name, subjects = ?patterns, "cluster: joined the queue group");
    let mut all = futures::stream::select_all(subs);
    while let Some(message) = all.next().await {
        let subject = message.subject.as_str();
        // A stored topic reaches the plugin through its consumer.
        if topics.as_ref().is_some_and(|t| t.matches(subject)) {
            continue;
        }
        match wire::decode(subject, message.headers.as_ref(), &message.payload) {
            Ok(incoming) if incoming.taken_by(&name) => {}
            Ok(incoming) => {
                counters.received(subject);
                let mut event = incoming.event;
                event.reply_to = message.reply.as_ref().map(|r| r.to_string());
                bus.deliver_to(&name, event, None).await;
            }
            Err(e) => {
                tracing::warn!(plugin = %name, subject, "cluster: message not delivered: {e}")
            }
        }
    }
}

/// The subjects of `patterns` that are stored: each pattern's meeting with
/// each stored topic, once.
fn stored_filters(patterns: &[String], topics: &PatternSet) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for p in patterns.iter().filter_map(|p| Pattern::parse(p).ok()) {
        for t in topics.patterns() {
            if let Some(m) = p.intersect(t)
                && !out.iter().any(|o| o == m.as_str())
            {
                out.push(m.as_str().to_owned());
            }
        }
    }
    out
}

/// Pulls plugin `name`'s stored deliveries and hands them to it, each with
/// its receipt, until told to stop. It asks for no more than it has room
/// for: at most [`MAX_HELD`] (or the plugin's queue limit, if smaller) are
/// held at a time, so other hosts take their share, and what it fetched
/// but did not deliver when told to stop is handed back at once.
async fn consume(
    stored: Stored,
    bus: Arc<Bus>,
    counters: Arc<Counters>,
    name: String,
    filters: Vec<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match consume_once(&stored, &bus, &counters, &name, &filters, &mut stop).await {
            Ok(()) => {
                // A delivery that reached a suspended plugin after it left
                // its group goes back too.
                bus.hand_back_parked(&name);
                return;
            }
            Err(e) => {
                tracing::warn!(plugin = %name, stream = %stored.config.stream, "cluster: stored deliveries: {e}; trying again");
                tokio::select! {
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// Whether the consumer was told to stop (or its member is gone).
fn stopping(stop: &tokio::sync::watch::Receiver<bool>) -> bool {
    *stop.borrow() || stop.has_changed().is_err()
}

async fn consume_once(
    stored: &Stored,
    bus: &Arc<Bus>,
    counters: &Counters,
    name: &str,
    filters: &[String],
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), async_nats::Error> {
    let stream = super::link::stream(&stored.js, &stored.config).await?;
    let config = pull::Config {
        durable_name: Some(name.to_owned()),
        filter_subjects: filters.to_vec(),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        ..Default::default()
    };
    let consumer: jetstream::consumer::PullConsumer =
        match stream.create_consumer(config.clone()).await {
            Ok(c) => c,
            // Made before with other subjects: follow this plugin's.
            Err(_) => stream.update_consumer(config).await?,
        };
    let limit = bus
        .route(name)
        .map_or(MAX_HELD, |r| r.queue.capacity().clamp(1, MAX_HELD));
    let permits = Arc::new(tokio::sync::Semaphore::new(limit));
    tracing::info!(plugin = name, stream = %stored.config.stream, subjects = ?filters, "cluster: consuming stored deliveries");
    loop {
        // Room for one delivery at least, then for as many as are free.
        let first = tokio::select! {
            p = permits.clone().acquire_owned() => p?,
            _ = stop.changed() => return Ok(()),
        };
        if stopping(stop) {
            return Ok(());
        }
        let mut room = vec![first];
        while room.len() < PULL_BATCH {
            match permits.clone().try_acquire_owned() {
                Ok(p) => room.push(p),
                Err(_) => break,
            }
        }
        let mut batch = consumer
            .batch()
            .max_messages(room.len())
            .expires(PULL_WAIT)
            .messages()
            .await?;
        while let Some(message) = batch.next().await {
            let message = message?;
            let Some(permit) = room.pop() else {
                // More than asked for: not held, so back at once.
                let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
                continue;
            };
            if stopping(stop) {
                let _ = message.ack_with(jetstream::AckKind::Nak(None)).await;
                continue;
            }
            deliver(stored, bus, counters, name, message, permit).await;
        }
    }
}

/// Hands one stored message to plugin `name` with its receipt.
async fn deliver(
    stored: &Stored,
    bus: &Arc<Bus>,
    counters: &Counters,
    name: &str,
    message: jetstream::Message,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let attempt = message
        .info()
        .map(|i| u32::try_from(i.delivered).unwrap_or(1))
        .unwrap_or(1)
        .max(1);
    match wire::decode(
        message.subject.as_str(),
        message.headers.as_ref(),
        &message.payload,
    ) {
        // Its host's copy of the plugin received it directly (out of its
        // group when it was published): done already.
        Ok(incoming) if incoming.taken_by(name) => {
            drop(permit);
            let _ = message.ack().await;
        }
        Ok(incoming) => {
            let mut event = incoming.event;
            event
                .headers
                .insert(wire::DELIVERY_ATTEMPT.to_owned(), attempt.to_string());
            counters.received(&event.topic);
            let receipt = stored.receipts.receipt(message, attempt, permit);
            bus.deliver_to(name, event, Some(receipt)).await;
        }
        Err(e) => {
            tracing::warn!(plugin = name, subject = %message.subject, "cluster: a stored message is not an event ({e}); terminated");
            let _ = message.ack_with(jetstream::AckKind::Term).await;
        }
    }
}
