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
use std::time::Duration;

use async_nats::Client;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;

use super::receipts::Receipts;
use super::{Counters, wire};
use crate::bus::Bus;
use crate::topic::{Pattern, PatternSet};

/// How long the server may hold a stored delivery unacknowledged before it
/// redelivers it (the host says "in progress" well within it while it holds one).
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(10);

/// How many stored deliveries a member asks for at a time.
const PULL_BATCH: usize = 16;

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
    /// The stream's name.
    pub stream: String,
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
    task: tokio::task::JoinHandle<()>,
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
                leave(&bus, stored.as_ref(), name);
            }
            keep
        });
        for (name, shape) in wanted {
            if members.contains_key(&name) {
                continue;
            }
            let task = tokio::spawn(member(
                client.clone(),
                bus.clone(),
                stored.clone(),
                counters.clone(),
                name.clone(),
                shape.patterns.clone(),
            ));
            members.insert(name, Member { shape, task });
        }
        // Out of the server's reach, nobody is in a group: local events
        // reach the shared plugins directly meanwhile.
        for name in members.keys() {
            bus.set_in_group(name, up);
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
    stored: Option<Stored>,
    counters: Arc<Counters>,
    name: String,
    patterns: Vec<String>,
) {
    let consumer = stored.as_ref().and_then(|s| {
        let filters = stored_filters(&patterns, &s.topics);
        (!filters.is_empty()).then(|| {
            tokio::spawn(consume(
                s.clone(),
                bus.clone(),
                counters.clone(),
                name.clone(),
                filters,
            ))
        })
    });
    let _consumer = consumer.map(AbortOnDrop);
    let mut subs = Vec::with_capacity(patterns.len());
    for pattern in &patterns {
        match client.queue_subscribe(pattern.clone(), name.clone()).await {
            Ok(sub) => subs.push(sub),
            Err(e) => {
                tracing::error!(plugin = %name, "cluster: cannot join the queue group on `{pattern}`: {e}")
            }
        }
    }
    // The server has the subscriptions once a flush came back.
    let _ = client.flush().await;
    tracing::info!(plugin = %name, subjects = ?patterns, "cluster: joined the queue group");
    let topics = stored.map(|s| s.topics);
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
                bus.deliver_to(&name, incoming.event, None).await;
            }
            Err(e) => {
                tracing::warn!(plugin = %name, subject, "cluster: message not delivered: {e}")
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
/// its receipt. At most [`MAX_HELD`] (or the plugin's queue limit, if
/// smaller) are held at a time, so other hosts take their share.
async fn consume(
    stored: Stored,
    bus: Arc<Bus>,
    counters: Arc<Counters>,
    name: String,
    filters: Vec<String>,
) {
    loop {
        match consume_once(&stored, &bus, &counters, &name, &filters).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(plugin = %name, stream = %stored.stream, "cluster: stored deliveries: {e}; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

async fn consume_once(
    stored: &Stored,
    bus: &Arc<Bus>,
    counters: &Counters,
    name: &str,
    filters: &[String],
) -> Result<(), async_nats::Error> {
    let stream = stored.js.get_stream(&stored.stream).await?;
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
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(PULL_BATCH.min(limit))
        .messages()
        .await?;
    tracing::info!(plugin = name, stream = %stored.stream, subjects = ?filters, "cluster: consuming stored deliveries");
    loop {
        let permit = permits.clone().acquire_owned().await?;
        let Some(message) = messages.next().await else {
            return Ok(());
        };
        let message = message?;
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
}
