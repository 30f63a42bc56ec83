//! The plughost loops: the relay round trip (1) and stored delivery (4).

use super::*;

/// One host's cluster settings, with an export buffer large enough to
/// hold every event of the run (so none is dropped while NATS catches up).
pub(crate) fn cluster(url: &str, name: &str, export: &str, import: &str, n: u64) -> ClusterConfig {
    let mut config = ClusterConfig::new([url]);
    config.name = Some(name.to_owned());
    config.export = vec![export.to_owned()];
    config.import = vec![import.to_owned()];
    config.buffer = (n as usize + 1_000).max(plughost::cluster::DEFAULT_BUFFER);
    config
}

pub(crate) fn relay_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("relay");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.yaml"),
        "name: relay\nversion: 1.0.0\nsubscriptions: ['there.>']\nlimits: {queue: 4096}\n",
    )
    .unwrap();
    std::fs::write(p.join("main.lua"), RELAY).unwrap();
    dir
}

pub(crate) async fn connected(host: &plughost::Host, name: &str) {
    let deadline = Instant::now() + START_LIMIT;
    while host.cluster_status().is_none_or(|s| s.state != "connected") {
        assert!(
            Instant::now() < deadline,
            "host {name} not connected to NATS within {START_LIMIT:?}: {:?}",
            host.cluster_status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes `there.warm` on A until one comes back: B's and A's
/// subscriptions are on the server from then on.
pub(crate) async fn warm_up(a: &plughost::Host, back: &mut plughost::EventStream) {
    let deadline = Instant::now() + START_LIMIT;
    loop {
        a.publish("there.warm", json!({})).await.unwrap();
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), back.recv()).await
            && e.topic == "back.warm"
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no event came back from host B within {START_LIMIT:?}: A {:?}",
            a.cluster_status()
        );
    }
}

/// Prints, every 100 ms, how many events each stage has passed on.
pub(crate) fn stages(a: Arc<plughost::Host>, b: Arc<plughost::Host>, published: Arc<AtomicU64>) {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let (Some(sa), Some(sb)) = (a.cluster_status(), b.cluster_status()) else {
                return;
            };
            println!(
                "  {:>6} ms  A published {:>7}  A exported {:>7}  B imported {:>7}  \
                 B relayed {:>7}  B exported {:>7}  A imported {:>7}  dropped A {} B {}",
                start.elapsed().as_millis(),
                published.load(Ordering::Relaxed),
                sa.exported,
                sb.imported,
                b.stats("relay")
                    .map_or(0, |s| s.acked.load(Ordering::Relaxed)),
                sb.exported,
                sa.imported,
                sa.dropped,
                sb.dropped,
            );
        }
    });
}

/// A → NATS → B's relay → NATS → A's subscriber; events per second.
pub(crate) fn through_plughost(server: &Server, n: u64, show_stages: bool) -> Run {
    let url = &server.url();
    let relay = relay_dir();
    let empty = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        let a = plughost::Host::builder()
            .plugins_dir(empty.path())
            .cluster(cluster(url, "bench-a", "there.>", "back.>", n))
            .build()
            .unwrap();
        let b = plughost::Host::builder()
            .plugins_dir(relay.path())
            .cluster(cluster(url, "bench-b", "back.>", "there.>", n))
            .build()
            .unwrap();
        let report = b.start().await;
        assert_eq!(report.started.len(), 1, "the relay plugin: {report:?}");
        a.start().await;
        connected(&a, "A").await;
        connected(&b, "B").await;
        let mut back = a.subscribe("back.>").unwrap();
        warm_up(&a, &mut back).await;
        let (a, b) = (Arc::new(a), Arc::new(b));
        let published = Arc::new(AtomicU64::new(0));
        if show_stages {
            stages(a.clone(), b.clone(), published.clone());
        }

        let arrived = Arc::new(AtomicU64::new(0));
        let counter = arrived.clone();
        let counting = tokio::spawn(async move {
            let mut got = 0;
            while got < n {
                let e = back.recv().await.expect("the host is running");
                if e.topic == "back.x" {
                    got += 1;
                    counter.store(got, Ordering::Relaxed);
                }
            }
            Instant::now()
        });
        let clock = Clock::start(server);
        for p in inputs {
            a.publish("there.x", p).await.unwrap();
            published.fetch_add(1, Ordering::Relaxed);
        }
        let state = || format!("A {:?}, B {:?}", a.cluster_status(), b.cluster_status());
        let end = arrival("plughost", counting, &arrived, n, state, stall_limit()).await;
        let run = clock.stop(end, n);
        b.shutdown(Duration::from_secs(5)).await;
        a.shutdown(Duration::from_secs(5)).await;
        run
    })
}

/// A host's settings storing `stored.>` in [`HOST_STREAM`] (the bare
/// JetStream loop's stream holds `js.>`: streams may not overlap).
pub(crate) fn stored_cluster(url: &str, name: &str, export: &str, n: u64) -> ClusterConfig {
    let mut config = cluster(url, name, export, "unused.>", n);
    config.jetstream = Some(JetStreamConfig {
        stream: HOST_STREAM.to_owned(),
        topics: vec!["stored.>".to_owned()],
    });
    config
}

pub(crate) fn sink_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sink");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("plugin.yaml"),
        "name: sink\nversion: 1.0.0\nsubscriptions: ['stored.>']\ncluster: {shared: true}\n\
         limits: {queue: 4096}\n",
    )
    .unwrap();
    std::fs::write(p.join("main.lua"), SINK).unwrap();
    dir
}

/// Events B's sink has handled.
pub(crate) fn handled(b: &plughost::Host) -> u64 {
    b.stats("sink")
        .map_or(0, |s| s.acked.load(Ordering::Relaxed))
}

/// A publishes on a stored topic (JetStream, acknowledged), B's shared
/// plugin consumes it through its durable consumer; events per second
/// until B's plugin has handled all N.
pub(crate) fn through_plughost_stored(server: &Server, n: u64) -> Run {
    let url = &server.url();
    let sink = sink_dir();
    let empty = tempfile::tempdir().unwrap();
    let inputs: Vec<Value> = (0..n).map(payload).collect();
    runtime().block_on(async {
        // A fresh stream (and so a fresh durable consumer) for each run.
        let client = async_nats::connect(url).await.expect("connect");
        let js = jetstream::new(client);
        let _ = js.delete_stream(HOST_STREAM).await;
        let a = plughost::Host::builder()
            .plugins_dir(empty.path())
            .cluster(stored_cluster(url, "bench-a", "stored.>", n))
            .build()
            .unwrap();
        let b = plughost::Host::builder()
            .plugins_dir(sink.path())
            .cluster(stored_cluster(url, "bench-b", "unused.>", n))
            .build()
            .unwrap();
        let report = b.start().await;
        assert_eq!(report.started.len(), 1, "the sink plugin: {report:?}");
        a.start().await;
        connected(&a, "A").await;
        connected(&b, "B").await;
        // Until B's consumer takes stored events, and every warm-up event was handled.
        let deadline = Instant::now() + START_LIMIT;
        let mut warm = 0;
        while warm == 0 || handled(&b) < warm {
            if handled(&b) == 0 {
                a.publish("stored.warm", json!({})).await.unwrap();
                warm += 1;
            }
            assert!(
                Instant::now() < deadline,
                "host B's shared plugin handled {} of {warm} stored events within \
                 {START_LIMIT:?}: A {:?}, B {:?}",
                handled(&b),
                a.cluster_status(),
                b.cluster_status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let before = handled(&b);
        let b = Arc::new(b);
        let arrived = Arc::new(AtomicU64::new(0));
        let (counter, sink_host) = (arrived.clone(), b.clone());
        let counting = tokio::spawn(async move {
            loop {
                let got = handled(&sink_host) - before;
                counter.store(got, Ordering::Relaxed);
                if got >= n {
                    return Instant::now();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        let clock = Clock::start(server);
        for p in inputs {
            a.publish("stored.x", p).await.unwrap();
        }
        let state = || {
            format!(
                "A {:?}, B {:?}, sink acked {}, errors {}; the server's consumers: {}",
                a.cluster_status(),
                b.cluster_status(),
                handled(&b),
                b.stats("sink")
                    .map_or(0, |s| s.errors.load(Ordering::Relaxed)),
                server.consumers()
            )
        };
        // Stored deliveries pause for about 35 s at times (docs/performance.md):
        // late, not lost, so the figure includes them.
        let limit = stall_limit().max(Duration::from_secs(60));
        let end = arrival("plughost stored", counting, &arrived, n, state, limit).await;
        let run = clock.stop(end, n);
        b.shutdown(Duration::from_secs(5)).await;
        a.shutdown(Duration::from_secs(5)).await;
        let _ = js.delete_stream(HOST_STREAM).await;
        run
    })
}

// ---------------------------------------------------------------------------
// The bare loops
