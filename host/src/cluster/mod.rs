//! The cluster (SPEC §14): one bus across hosts, over NATS. This step is
//! fan-out: local events whose topic matches `export` are published to NATS,
//! and what arrives on the `import` patterns is published on the local bus.
//!
//! [`ClusterConfig`] is the `cluster:` section of `plughost.yaml` (parsed in
//! `config`); `wire` turns an event into a NATS message and back; `outbox` is
//! the bounded export buffer the bus feeds without waiting; `link` holds the
//! connection and the export and import tasks. Echo is told by a
//! per-process instance id, so several hosts on one machine (even with one
//! name) work; an event received from NATS is never exported again.
//!
//! Shared plugins (`cluster.shared`) are queue groups, and consume stored
//! topics (`jetstream:`) through durable consumers (`groups`); a stored
//! delivery's receipt (`receipts`) is settled by the plugin's outcome.

pub(crate) mod config;
mod groups;
mod link;
pub(crate) mod outbox;
pub(crate) mod receipts;
mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

pub use self::config::{ClusterConfig, DEFAULT_BUFFER, JetStreamConfig, TlsConfig};
use self::outbox::Outbox;
use crate::bus::Bus;
use crate::telemetry::topic_counts::{Direction, TopicCounts};
use crate::topic::{Pattern, PatternSet};

/// This process in the cluster: its host name and its instance id.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The host's name (`cluster.name`, else the hostname).
    pub name: String,
    /// A fresh id per process: how a host knows its own messages.
    pub instance: String,
}

/// What the cluster counts, shared by its tasks.
#[derive(Debug)]
pub(crate) struct Counters {
    /// Whether the connection is up now; the export task waits on it.
    connected: tokio::sync::watch::Sender<bool>,
    ever_connected: AtomicBool,
    /// Whether another process with this host's name was heard (warned once).
    duplicate_name: AtomicBool,
    closing: AtomicBool,
    exported: AtomicU64,
    imported: AtomicU64,
    /// `cluster.messages`, per direction and topic.
    topics: Arc<TopicCounts>,
}

impl Counters {
    fn new(topics: Arc<TopicCounts>) -> Self {
        Counters {
            connected: tokio::sync::watch::Sender::new(false),
            ever_connected: AtomicBool::new(false),
            duplicate_name: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            exported: AtomicU64::new(0),
            imported: AtomicU64::new(0),
            topics,
        }
    }

    /// One event published to NATS.
    fn sent(&self, topic: &str) {
        self.exported.fetch_add(1, Ordering::Relaxed);
        self.topics.add(Direction::Out, topic);
    }

    /// One event received from NATS and delivered here.
    fn received(&self, topic: &str) {
        self.imported.fetch_add(1, Ordering::Relaxed);
        self.topics.add(Direction::In, topic);
    }

    fn is_connected(&self) -> bool {
        *self.connected.borrow()
    }
}

/// The cluster's state, as `GET /health` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterStatus {
    /// `connected` or `disconnected`.
    pub state: &'static str,
    /// This host's name.
    pub name: String,
    /// Events handed to the NATS connection (while it was up).
    pub exported: u64,
    /// Events received from NATS and published locally.
    pub imported: u64,
    /// Exports dropped because the buffer was full.
    pub dropped: u64,
}

struct Tasks {
    export: tokio::task::JoinHandle<()>,
    import: tokio::task::JoinHandle<()>,
    groups: tokio::task::JoinHandle<()>,
    replies: tokio::task::JoinHandle<()>,
    /// Keeps held stored deliveries alive, and makes the stream.
    stored: Vec<tokio::task::JoinHandle<()>>,
}

/// How long shutdown waits for the last acknowledgements to be sent.
const SETTLE_LIMIT: Duration = Duration::from_secs(2);

/// A host's place in the cluster: the export buffer (on the bus from the
/// host's build), and once started the connection and its tasks.
pub(crate) struct Cluster {
    config: ClusterConfig,
    identity: Arc<Identity>,
    counters: Arc<Counters>,
    outbox: Arc<Outbox>,
    receipts: Mutex<Option<Arc<receipts::Receipts>>>,
    tasks: Mutex<Option<Tasks>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// The cluster of `config`, its export buffer handed to `bus` now (so
    /// events published by plugins' `init` are exported too); it counts
    /// the messages crossing in `topics`.
    pub(crate) fn new(config: ClusterConfig, bus: &Bus, topics: Arc<TopicCounts>) -> Self {
        let parse = |patterns: &[String]| {
            PatternSet::new(
                patterns
                    .iter()
                    .filter_map(|p| Pattern::parse(p).ok())
                    .collect(),
            )
        };
        let stored = config
            .jetstream
            .as_ref()
            .map_or_else(PatternSet::default, |j| parse(&j.topics));
        let outbox = Arc::new(Outbox::new(parse(&config.export), stored, config.buffer));
        bus.set_outbox(outbox.clone());
        let identity = Arc::new(Identity {
            name: config.name.clone().unwrap_or_else(hostname),
            // The bus's id: its requests' reply subjects carry it too.
            instance: bus.instance().to_owned(),
        });
        Cluster {
            config,
            identity,
            counters: Arc::new(Counters::new(topics)),
            outbox,
            receipts: Mutex::new(None),
            tasks: Mutex::new(None),
        }
    }

    /// Connects (in the background) and starts exporting and importing.
    /// A configuration the connection cannot use is logged; local work goes on.
    pub(crate) async fn start(&self, bus: &Arc<Bus>) {
        let client = match link::connect(&self.config, &self.identity, &self.counters, bus).await {
            Ok(client) => client,
            Err(e) => {
                tracing::error!("cluster: not connecting: {e}");
                return;
            }
        };
        tracing::info!(
            cluster.name = %self.identity.name,
            cluster.instance = %self.identity.instance,
            servers = %self.config.servers.join(", "),
            "cluster: joining over NATS"
        );
        let mut stored_tasks = Vec::new();
        let stored = self.config.jetstream.as_ref().map(|j| {
            let js = async_nats::jetstream::new(client.clone());
            let receipts = Arc::new(receipts::Receipts::new(
                tokio::runtime::Handle::current(),
                self.outbox.clone(),
            ));
            bus.set_receipts(receipts.clone());
            stored_tasks.push(tokio::spawn(receipts.clone().keep_alive()));
            stored_tasks.push(tokio::spawn(link::make_stream(
                js.clone(),
                j.clone(),
                self.counters.clone(),
            )));
            groups::Stored {
                js,
                config: j.clone(),
                topics: self.outbox.stored().clone(),
                receipts,
            }
        });
        *self.receipts.lock().unwrap_or_else(|p| p.into_inner()) =
            stored.as_ref().map(|s| s.receipts.clone());
        let export = tokio::spawn(link::export(
            client.clone(),
            stored.as_ref().map(|s| s.js.clone()),
            self.outbox.clone(),
            self.identity.clone(),
            self.counters.clone(),
        ));
        let groups = tokio::spawn(groups::follow(
            client.clone(),
            bus.clone(),
            stored,
            self.counters.clone(),
        ));
        let import = tokio::spawn(link::import(
            client.clone(),
            self.config.import.clone(),
            bus.clone(),
            self.identity.clone(),
            self.counters.clone(),
        ));
        let replies = tokio::spawn(link::replies(client.clone(), bus.clone()));
        *self.tasks.lock().unwrap_or_else(|p| p.into_inner()) = Some(Tasks {
            export,
            import,
            groups,
            replies,
            stored: stored_tasks,
        });
    }

    /// Stops importing (shutdown begins: nothing new arrives from NATS):
    /// fan-out and the shared plugins' groups and consumers end.
    pub(crate) fn stop_import(&self) {
        if let Some(tasks) = &*self.tasks.lock().unwrap_or_else(|p| p.into_inner()) {
            tasks.import.abort();
            tasks.groups.abort();
        }
    }

    /// Publishes what the export buffer still holds, for up to `within`,
    /// then closes the connection.
    pub(crate) async fn close(&self, within: Duration) {
        self.counters.closing.store(true, Ordering::SeqCst);
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(tasks) = tasks else { return };
        tasks.import.abort();
        tasks.groups.abort();
        let export = tasks.export;
        // The task ends once the buffer is empty; wake it in case it waits.
        self.outbox.wake();
        let abort = export.abort_handle();
        if tokio::time::timeout(within, export).await.is_err() {
            abort.abort();
            tracing::warn!(
                buffered = self.outbox.len(),
                "cluster: the last exports were not all sent at shutdown (NATS unreachable or slow)"
            );
        }
        // Publishers still waiting for room (stored topics) give up.
        self.outbox.close();
        let receipts = self
            .receipts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(receipts) = receipts {
            receipts.settled(SETTLE_LIMIT).await;
        }
        tasks.replies.abort();
        for task in tasks.stored {
            task.abort();
        }
    }

    /// The state `GET /health` shows.
    pub(crate) fn status(&self) -> ClusterStatus {
        let c = &self.counters;
        ClusterStatus {
            state: if c.is_connected() {
                "connected"
            } else {
                "disconnected"
            },
            name: self.identity.name.clone(),
            exported: c.exported.load(Ordering::Relaxed),
            imported: c.imported.load(Ordering::Relaxed),
            dropped: self.outbox.dropped(),
        }
    }
}

/// The machine's hostname, for a cluster without `name`.
fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "plughost".to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use plughost_bindings::Event;

    fn cluster(export: &[&str]) -> (Arc<Bus>, Cluster) {
        let bus = Arc::new(Bus::new());
        let mut config = ClusterConfig::new(["nats://127.0.0.1:1"]);
        config.export = export.iter().map(|s| s.to_string()).collect();
        config.buffer = 2;
        config.name = Some("edge-1".into());
        let cluster = Cluster::new(config, &bus, Arc::default());
        (bus, cluster)
    }

    #[tokio::test]
    async fn the_bus_offers_published_events_but_not_imported_ones() {
        let (bus, cluster) = cluster(&["a.>"]);
        bus.publish_async(Event::new("a.one", json!({}), "host"))
            .await;
        bus.publish_blocking(Event::new("a.two", json!({}), "p"), Some("p"))
            .unwrap();
        bus.publish_async(Event::new("b.other", json!({}), "host"))
            .await;
        bus.publish_imported(Event::new("a.from_nats", json!({}), "host"))
            .await;
        let taken: Vec<String> = cluster
            .outbox
            .take(10)
            .iter()
            .map(|e| e.event.topic.clone())
            .collect();
        assert_eq!(taken, ["a.one", "a.two"]);
    }

    #[tokio::test]
    async fn the_status_counts_what_the_full_buffer_dropped() {
        let (bus, cluster) = cluster(&[">"]);
        for n in 0..5 {
            bus.publish_async(Event::new("t", json!({"n": n}), "host"))
                .await;
        }
        assert_eq!(
            cluster.status(),
            ClusterStatus {
                state: "disconnected",
                name: "edge-1".into(),
                exported: 0,
                imported: 0,
                dropped: 3,
            }
        );
        assert_eq!(cluster.identity.instance.len(), 26);
    }
}
