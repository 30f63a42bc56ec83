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
        async_nats::Event::ClientError(e) => tracing::debug!("cluster: NATS client: {e}"),
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
            let sent = match (&js, export.stored) {
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
                Err(e) => {
                    tracing::warn!(event.id = %event.id, topic = %event.topic, "cluster: export failed: {e}")
                }
            }
        }
        let mut refused = Vec::new();
        for (export, ack) in stored {
            if let Err(e) = ack.await {
                tracing::warn!(event.id = %export.event.id, topic = %export.event.topic, "cluster: the stream did not take a stored event ({e}); sending it again");
                refused.push(export);
            }
        }
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

/// Makes the stream of stored topics (or finds it made by another host),
/// trying again while the server is away or refuses.
pub(crate) async fn make_stream(
    js: jetstream::Context,
    config: JetStreamConfig,
    counters: Arc<Counters>,
) {
    let mut connected = counters.connected.subscribe();
    loop {
        let _ = connected.wait_for(|up| *up).await;
        let wanted = jetstream::stream::Config {
            name: config.stream.clone(),
            subjects: config.topics.clone(),
            ..Default::default()
        };
        match js.get_or_create_stream(wanted).await {
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
                bus.publish_imported(incoming.event).await;
            }
            Err(e) => tracing::warn!(subject, "cluster: message not imported: {e}"),
        }
    }
}
