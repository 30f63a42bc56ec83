//! The NATS side of the cluster: the connection (async-nats, which
//! reconnects on its own), the task that publishes the export buffer, the
//! task that delivers imported messages to the local bus, and the
//! connection events turned into `plughost.cluster.*` host events.
//!
//! Nothing here makes local work wait: the connection is made in the
//! background (an unreachable server at start is a warning and a retry),
//! exports wait in the [`Outbox`], and imports are published on the bus
//! as they arrive.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::{Client, ConnectOptions, ServerAddr, jetstream};
use futures::StreamExt;

use super::outbox::Outbox;
use super::{Counters, Identity, wire};
use crate::bus::Bus;
use crate::config::{ClusterConfig, JetStreamConfig};
use crate::host_events::HostEvent;
use crate::topic::Pattern;

/// The least room a subscription has for messages the bus has not taken yet.
const SUBSCRIPTION_CAPACITY: usize = 65_536;

/// How many exports the publishing task takes at a time.
const BATCH: usize = 256;

/// How long shutdown waits for the server to confirm the last exports.
const FLUSH_LIMIT: Duration = Duration::from_secs(1);

/// How long a stored event the stream refused waits before it is sent again.
const RESEND_AFTER: Duration = Duration::from_millis(500);

/// How long the connection may take at start before a warning says it is not there.
const START_GRACE: Duration = Duration::from_secs(2);

/// Why the cluster could not even try to connect.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    /// A server URL is not one.
    #[error("cluster.nats: `{url}` is not a NATS server URL: {error}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        error: std::io::Error,
    },
    /// The client refused its settings.
    #[error("the NATS client cannot start: {0}")]
    Client(#[from] async_nats::ConnectError),
    /// The `.creds` file cannot be read.
    #[error("cluster.creds: cannot read {path}: {error}")]
    Creds {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

/// The connection's options, from the config; the connection events go to `bus`.
async fn options(
    config: &ClusterConfig,
    identity: &Arc<Identity>,
    counters: &Arc<Counters>,
    bus: Weak<Bus>,
) -> Result<ConnectOptions, LinkError> {
    let mut options = ConnectOptions::new()
        .name(format!("plughost {}", identity.name))
        // Topics are checked where they are published; not again per message.
        .skip_subject_validation(true)
        // Core NATS has no flow control: room for bursts the bus is slower
        // to take (never less than the client's default).
        .subscription_capacity(config.buffer.max(SUBSCRIPTION_CAPACITY))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2));
    if let Some(path) = &config.creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|error| LinkError::Creds {
                path: path.clone(),
                error,
            })?;
    }
    let tls_url = config.servers.iter().any(|s| s.starts_with("tls://"));
    if let Some(tls) = &config.tls {
        if let Some(ca) = &tls.ca {
            options = options.add_root_certificates(ca.clone());
        }
        if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
    }
    if tls_url || config.tls.is_some() {
        options = options.require_tls(true);
    }
    let identity = identity.clone();
    let counters = counters.clone();
    Ok(options.event_callback(move |event| {
        let identity = identity.clone();
        let counters = counters.clone();
        let bus = bus.clone();
        async move { on_connection_event(event, &identity, &counters, &bus) }
    }))
}

fn on_connection_event(
    event: async_nats::Event,
    identity: &Identity,
    counters: &Counters,
    bus: &Weak<Bus>,
) {
    let announce = |e: HostEvent<'_>| {
        if let Some(bus) = bus.upgrade() {
            bus.announce(&e);
        }
    };
    let name = identity.name.as_str();
    let instance = identity.instance.as_str();
    match event {
        async_nats::Event::Connected => {
            counters.connected.send_replace(true);
            counters.ever_connected.store(true, Ordering::SeqCst);
            tracing::info!(cluster.name = name, "cluster: connected to NATS");
            announce(HostEvent::ClusterConnected { name, instance });
        }
        async_nats::Event::Disconnected => {
            counters.connected.send_replace(false);
            tracing::warn!(
                cluster.name = name,
                "cluster: NATS connection lost; reconnecting (local work goes on, exports wait in cluster.buffer)"
            );
            announce(HostEvent::ClusterDisconnected { name, instance });
        }
        async_nats::Event::SlowConsumer(sid) => tracing::warn!(
            subscription = sid,
            "cluster: a NATS subscription could not keep up and the client dropped messages \
             (core NATS has no flow control: store the topics that must not be lost, cluster.jetstream)"
        ),
        async_nats::Event::ClientError(e) => tracing::debug!("cluster: NATS client: {e}"),
        // The host closed it (shutdown).
        async_nats::Event::Closed => tracing::debug!("cluster: NATS connection closed"),
        other => tracing::warn!("cluster: NATS: {other}"),
    }
}

/// Connects in the background; returns at once with the client.
pub(crate) async fn connect(
    config: &ClusterConfig,
    identity: &Arc<Identity>,
    counters: &Arc<Counters>,
    bus: &Arc<Bus>,
) -> Result<Client, LinkError> {
    let servers = config
        .servers
        .iter()
        .map(|url| {
            url.parse::<ServerAddr>().map_err(|error| LinkError::Url {
                url: url.clone(),
                error,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let options = options(config, identity, counters, Arc::downgrade(bus)).await?;
    // With `retry_on_initial_connect` this fails only on settings it
    // cannot use (the servers list); the connection itself is made later.
    let client = options.connect(servers).await?;
    let counters = counters.clone();
    let shown = config.servers.join(", ");
    tokio::spawn(async move {
        tokio::time::sleep(START_GRACE).await;
        if !counters.ever_connected.load(Ordering::SeqCst) {
            tracing::warn!(
                servers = %shown,
                "cluster: cannot reach NATS; retrying in the background (local plugins run meanwhile)"
            );
        }
    });
    Ok(client)
}

/// Publishes what the outbox holds, in order, while the connection is up
/// (while it is down, events wait in the outbox, which drops the oldest
/// ordinary one when full); ends when closing and the outbox is empty or
/// the server away. Stored topics go through JetStream (`js`): a batch's
/// stored events are all sent, then their acknowledgements awaited; one
/// the server did not take is put back and sent again. The outbox learns
/// which events the server took, in order.
pub(crate) async fn export(
    client: Client,
    js: Option<jetstream::Context>,
    outbox: Arc<Outbox>,
    identity: Arc<Identity>,
    counters: Arc<Counters>,
) {
    let mut connected = counters.connected.subscribe();
    loop {
        let closing = counters.closing.load(Ordering::SeqCst);
        if !*connected.borrow_and_update() {
            if closing {
                // Waiting for an absent server would only hold shutdown up.
                return;
            }
            tokio::select! {
                _ = connected.changed() => {}
                () = outbox.ready() => {}
            }
            continue;
        }
        let batch = outbox.take(BATCH);
        if batch.is_empty() {
            if closing {
                let _ = tokio::time::timeout(FLUSH_LIMIT, client.flush()).await;
                return;
            }
            tokio::select! {
                _ = connected.changed() => {}
                () = outbox.ready() => {}
            }
            continue;
        }
        let last = batch.last().map_or(0, |e| e.seq);
        let mut stored = Vec::new();
        let mut refused = Vec::new();
        for export in batch {
            let event = &export.event;
            let out = wire::encode(
                event,
                &identity.name,
                &identity.instance,
                &export.taken,
                export.stored,
            );
            if !out.skipped.is_empty() {
                tracing::warn!(
                    event.id = %event.id,
                    headers = ?out.skipped,
                    "cluster: headers NATS cannot carry (not a token, or a line break) are left out"
                );
            }
            let reply = event.reply_to.clone();
            let sent = match (&js, export.stored) {
                // A request crosses as a NATS request (its reply subject is
                // this host's inbox); it is not stored.
                _ if reply.is_some() => client
                    .publish_with_reply_and_headers(
                        out.subject,
                        reply.clone().unwrap_or_default(),
                        out.headers,
                        out.body.into(),
                    )
                    .await
                    .map_err(|e| e.to_string()),
                (Some(js), true) => js
                    .publish_with_headers(out.subject, out.headers, out.body.into())
                    .await
                    .map(|ack| stored.push((export.clone(), ack)))
                    .map_err(|e| e.to_string()),
                _ => client
                    .publish_with_headers(out.subject, out.headers, out.body.into())
                    .await
                    .map_err(|e| e.to_string()),
            };
            match sent {
                Ok(()) => counters.sent(&event.topic),
                // A stored event is never given up: it goes again.
                Err(e) if export.stored && reply.is_none() => {
                    tracing::warn!(event.id = %event.id, topic = %event.topic, "cluster: a stored event was not sent ({e}); sending it again");
                    refused.push(export.clone());
                }
                Err(e) => {
                    tracing::warn!(event.id = %event.id, topic = %event.topic, "cluster: export failed: {e}")
                }
            }
        }
        for (export, ack) in stored {
            if let Err(e) = ack.await {
                tracing::warn!(event.id = %export.event.id, topic = %export.event.topic, "cluster: the stream did not take a stored event ({e}); sending it again");
                refused.push(export);
            }
        }
        refused.sort_by_key(|e| e.seq);
        match refused.first() {
            None => outbox.accepted(last),
            Some(first) => {
                outbox.accepted(first.seq.saturating_sub(1));
                outbox.put_back(refused);
                tokio::time::sleep(RESEND_AFTER).await;
            }
        }
    }
}

/// Where replies go: NATS inboxes.
const INBOX_PREFIX: &str = "_INBOX.";

/// How many replies to other hosts' requests may wait for the connection.
const REPLIES_WAITING: usize = 10_000;

/// Carries replies across hosts: replies this host's plugins give to other
/// hosts' requests are published to the request's reply subject, and
/// replies to this host's requests (on its inbox, `_INBOX.<instance>.>`)
/// reach the waiting plugin.
pub(crate) async fn replies(client: Client, bus: Arc<Bus>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, Vec<u8>)>(REPLIES_WAITING);
    bus.set_reply_sink(Arc::new(
        move |subject: String, payload: plughost_bindings::Payload| {
            // A reply goes to an inbox only: a request naming a topic as
            // its reply subject would make a plugin publish there, unchecked.
            if !subject.starts_with(INBOX_PREFIX) {
                tracing::warn!(subject = %subject, "cluster: a request's reply subject is not an inbox (`_INBOX.…`); no reply sent");
                return;
            }
            let body = serde_json::to_vec(payload.value()).unwrap_or_default();
            if let Err(e) = tx.try_send((subject, body)) {
                tracing::warn!("cluster: a reply to another host is dropped: {e}");
            }
        },
    ));
    let inbox = format!("{INBOX_PREFIX}{}.>", bus.instance());
    let mut answers = match client.subscribe(inbox.clone()).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(
                "cluster: cannot subscribe to this host's inbox `{inbox}`: {e}; requests across hosts get no reply"
            );
            return;
        }
    };
    loop {
        tokio::select! {
            Some((subject, body)) = rx.recv() => {
                if let Err(e) = client.publish(subject, body.into()).await {
                    tracing::warn!("cluster: a reply to another host failed: {e}");
                }
            }
            Some(message) = answers.next() => {
                let payload: serde_json::Value = if message.payload.is_empty() {
                    serde_json::Value::Null
                } else {
                    match serde_json::from_slice(&message.payload) {
                        Ok(v) => v,
                        Err(e) => {
                            tracing::warn!(subject = %message.subject, "cluster: a reply is not JSON: {e}");
                            continue;
                        }
                    }
                };
                bus.complete_reply(message.subject.as_str(), payload.into());
            }
            else => return,
        }
    }
}

/// The stream of stored topics: made, or found made by another host.
pub(crate) async fn stream(
    js: &jetstream::Context,
    config: &JetStreamConfig,
) -> Result<jetstream::stream::Stream, jetstream::context::CreateStreamError> {
    js.get_or_create_stream(jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: config.topics.clone(),
        ..Default::default()
    })
    .await
}

/// Makes the stream of stored topics once the server is there (so
/// publishes are stored even on a host running no shared plugin), trying
/// again while it refuses; warns when it exists with other subjects.
pub(crate) async fn make_stream(
    js: jetstream::Context,
    config: JetStreamConfig,
    counters: Arc<Counters>,
) {
    let mut connected = counters.connected.subscribe();
    loop {
        let _ = connected.wait_for(|up| *up).await;
        match stream(&js, &config).await {
            Ok(mut stream) => {
                let subjects = stream
                    .info()
                    .await
                    .map(|i| i.config.subjects.clone())
                    .unwrap_or_default();
                if config.topics.iter().any(|t| !subjects.contains(t)) {
                    tracing::warn!(
                        stream = %config.stream,
                        stored = ?subjects,
                        wanted = ?config.topics,
                        "cluster.jetstream: the stream exists with other subjects; events on topics it does not store are not kept"
                    );
                }
                tracing::info!(stream = %config.stream, subjects = ?subjects, "cluster: stream ready");
                return;
            }
            Err(e) => {
                tracing::warn!(stream = %config.stream, "cluster.jetstream: cannot make the stream: {e}; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Subscribes to every `import` pattern and publishes what arrives on the
/// local bus, except this process's own exports. A message matching several
/// patterns is delivered once: through the first pattern it matches.
pub(crate) async fn import(
    client: Client,
    patterns: Vec<String>,
    bus: Arc<Bus>,
    identity: Arc<Identity>,
    counters: Arc<Counters>,
) {
    let mut streams = Vec::with_capacity(patterns.len());
    for (i, pattern) in patterns.iter().enumerate() {
        match client.subscribe(pattern.clone()).await {
            Ok(sub) => streams.push(sub.map(move |m| (i, m)).boxed()),
            Err(e) => tracing::error!("cluster: cannot subscribe to `{pattern}`: {e}"),
        }
    }
    let parsed: Vec<Option<Pattern>> = patterns.iter().map(|p| Pattern::parse(p).ok()).collect();
    let mut all = futures::stream::select_all(streams);
    while let Some((i, message)) = all.next().await {
        let subject = message.subject.as_str();
        if subject.starts_with("_INBOX.") || subject.starts_with('$') {
            continue;
        }
        if parsed[..i].iter().flatten().any(|p| p.matches(subject)) {
            continue;
        }
        match wire::decode(subject, message.headers.as_ref(), &message.payload) {
            Ok(incoming) if incoming.instance.as_deref() == Some(identity.instance.as_str()) => {}
            Ok(incoming) => {
                if incoming.origin.as_deref() == Some(identity.name.as_str())
                    && !counters.duplicate_name.swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        cluster.name = %identity.name,
                        "cluster: another host is named `{}` too; host names should be unique (cluster.name)",
                        identity.name
                    );
                }
                counters.received(&incoming.event.topic);
                let mut event = incoming.event;
                event.reply_to = message.reply.as_ref().map(|r| r.to_string());
                bus.publish_imported(event).await;
            }
            Err(e) => tracing::warn!(subject, "cluster: message not imported: {e}"),
        }
    }
}
