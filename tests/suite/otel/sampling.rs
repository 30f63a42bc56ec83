//! Sampling (`OTEL_TRACES_SAMPLER`), the transports (HTTPS, gRPC) and a
//! refused endpoint, against the collector of the parent module.

use super::*;

/// Runs [`two_plugins`] on `n` independent `in` events, exporting to `endpoint`.
fn run_many(fx: &Fixture, n: usize, env: &[(&str, &str)]) -> Run {
    let input: String = (0..n)
        .map(|i| format!("{}\n", ev("in", serde_json::json!({"n": i}))))
        .collect();
    let args = [
        "run",
        "--input",
        "-",
        "--exit-when-idle",
        "--plugins",
        fx.path().to_str().unwrap(),
    ];
    let run: Run = run_binary_with_env(&args, Some(&input), env);
    run.expect_code(0);
    run
}

/// Waits (bounded) until `done` holds for what the collector received.
fn wait_for(collector: &Collector, done: impl Fn(&Received) -> bool) -> Received {
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    loop {
        let got = collector.received();
        if done(&got) || Instant::now() >= deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `always_off`: no span leaves the host, the metrics still do.
#[test]
fn always_off_exports_metrics_and_no_span() {
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        20,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER", "always_off"),
        ],
    );
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    assert!(
        got.metric_names().contains("plugin.messages"),
        "metrics arrive with always_off\n{run}\n{}",
        collector.output()
    );
    // The metrics were sent at shutdown, after the spans would have been.
    assert!(
        got.spans.is_empty(),
        "no span with always_off: {:?}",
        got.spans
    );
}

/// A ratio of 0.5 keeps about half of the independent events' traces, and
/// each kept trace whole: both plugins' delivery spans (and B's own span).
#[test]
fn a_ratio_keeps_about_its_share_of_whole_traces() {
    const N: usize = 200;
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        N,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.5"),
        ],
    );
    // Settled: the metrics come last, at shutdown.
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    let traces = |spans: Vec<&Span>| -> BTreeSet<String> {
        spans.into_iter().map(|s| s.trace_id.clone()).collect()
    };
    let a = traces(got.deliveries("a", "in"));
    let b = traces(got.deliveries("b", "mid"));
    let work: BTreeSet<String> = got
        .spans
        .iter()
        .filter(|s| s.name == SCRIPT_SPAN)
        .map(|s| s.trace_id.clone())
        .collect();
    assert!(
        (N * 3 / 10..=N * 7 / 10).contains(&a.len()),
        "about half of {N} traces kept, got {}\n{run}",
        a.len()
    );
    assert_eq!(
        a.len(),
        got.deliveries("a", "in").len(),
        "one A span per trace"
    );
    assert_eq!(
        a, b,
        "each kept trace has both plugins' spans, no other has either"
    );
    assert_eq!(b, work, "and B's own span");
}

/// A trace the sampler drops goes down the chain with the `traceparent` it
/// came in with, flags `00` (an unsampled span is never recorded, so it
/// gets no span id of its own), so every plugin drops it, and no span of it
/// is exported: under a parent-based sampler, a header already unsampled
/// passes on as it is; under `always_off`, a sampled one passes on with
/// its ids and flags `00`.
#[test]
fn a_dropped_trace_goes_on_with_the_traceparent_it_came_in_with() {
    const IDS: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7";
    for (sampler, flags) in [("parentbased_always_on", "00"), ("always_off", "01")] {
        let collector = Collector::start();
        let fx = two_plugins();
        let endpoint = collector.endpoint();
        let mut line = ev("in", serde_json::json!({"n": 1}));
        line["headers"] = serde_json::json!({"traceparent": format!("{IDS}-{flags}")});
        let args = [
            "run",
            "--input",
            "-",
            "--tap",
            "mid",
            "--tap",
            "out",
            "--exit-when-idle",
            "--plugins",
            fx.path().to_str().unwrap(),
        ];
        let run: Run = run_binary_with_env(
            &args,
            Some(&format!("{line}\n")),
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_TRACES_SAMPLER", sampler),
            ],
        );
        run.expect_code(0);
        for topic in ["mid", "out"] {
            let events = run.on(topic);
            assert_eq!(events.len(), 1, "{sampler}: one {topic}\n{run}");
            assert_eq!(
                events[0]["headers"]["traceparent"],
                format!("{IDS}-00"),
                "{sampler}: {topic} carries the trace on, unsampled\n{run}"
            );
        }
        let got = wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
        assert!(
            got.metric_names().contains("plugin.messages"),
            "{sampler}: metrics arrive\n{run}\n{}",
            collector.output()
        );
        // Lifecycle spans are roots of their own; none of the event's trace.
        let of_the_event: Vec<&Span> = got
            .spans
            .iter()
            .filter(|s| IDS.contains(&s.trace_id) || s.name == "plugin.event")
            .collect();
        assert!(
            of_the_event.is_empty(),
            "{sampler}: no span of the event's trace: {of_the_event:?}"
        );
    }
}

/// A collector that is not there is one warning naming the endpoint, over
/// a run of many span batches; not silence, not one per batch.
#[test]
fn a_refused_endpoint_is_warned_about_once() {
    let fx = two_plugins();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let run = run_many(
        &fx,
        100,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {nowhere}/v1/traces failed");
    assert_eq!(
        run.stderr.matches(&traces).count(),
        1,
        "one warning for the trace endpoint\n{run}"
    );
    let metrics = format!("OTLP export to {nowhere}/v1/metrics failed");
    assert_eq!(
        run.stderr.matches(&metrics).count(),
        1,
        "one warning for the metric endpoint\n{run}"
    );
}

/// A failed TLS handshake (an `https://` endpoint where the collector
/// speaks plain HTTP) is a warning naming the endpoint, once.
#[test]
fn a_tls_failure_is_warned_about_once() {
    let collector = Collector::start();
    let fx = two_plugins();
    let https = collector.endpoint().replacen("http://", "https://", 1);
    let run = run_many(
        &fx,
        50,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &https),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {https}/v1/traces failed");
    assert_eq!(run.stderr.matches(&traces).count(), 1, "{run}");
}

/// Over `https://`, trusting the collector's certificate through
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`, everything arrives. rotel's receiver
/// has no TLS option, so a TLS front started here (a self-signed
/// certificate for `localhost`) forwards the decrypted bytes to it.
#[test]
fn spans_and_metrics_reach_a_collector_over_https() {
    let collector = Collector::start();
    let front = TlsFront::start(collector.http, &[]);
    let fx = two_plugins();
    let endpoint = front.endpoint();
    let ca = front.ca.to_str().unwrap().to_owned();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// `OTEL_EXPORTER_OTLP_PROTOCOL=grpc`: everything arrives over gRPC.
#[test]
fn spans_and_metrics_reach_a_collector_over_grpc() {
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.grpc_endpoint();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// gRPC over TLS (`https://`), trusting the front's certificate.
#[test]
fn spans_and_metrics_reach_a_collector_over_grpc_with_tls() {
    let collector = Collector::start();
    let front = TlsFront::start(collector.grpc, &[b"h2"]);
    let fx = two_plugins();
    let endpoint = front.endpoint();
    let ca = front.ca.to_str().unwrap().to_owned();
    let run = run_two_plugins(
        &["--plugins", fx.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca),
            ("OTEL_SERVICE_NAME", SERVICE),
        ],
    );
    expect_all_received(&collector, &run);
    assert!(
        !run.stderr.contains("OTLP export"),
        "no export failed\n{run}"
    );
}

/// A gRPC endpoint with nothing listening: one warning for the spans.
#[test]
fn a_refused_grpc_endpoint_is_warned_about_once() {
    let fx = two_plugins();
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let run = run_many(
        &fx,
        100,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &nowhere),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
            ("OTEL_BSP_SCHEDULE_DELAY", "10"),
        ],
    );
    let traces = format!("OTLP export to {nowhere} failed");
    assert_eq!(run.stderr.matches(&traces).count(), 1, "{run}");
}

/// A TLS listener on loopback forwarding each connection to `target`.
struct TlsFront {
    port: u16,
    /// The PEM file of its (self-signed) certificate.
    ca: PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsFront {
    /// `alpn`: the protocols it agrees to (gRPC's clients ask for `h2`).
    fn start(target: SocketAddr, alpn: &[&[u8]]) -> TlsFront {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("temp dir");
        let key = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, key.cert.pem()).expect("write the certificate");
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.signing_key.serialize_der().into());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![key.cert.der().clone()], der)
        .expect("the server certificate");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let port = listener.local_addr().expect("address").port();
        // Lives as long as the test process; each connection is forwarded.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((tcp, _)) = listener.accept().await {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        if let Ok(mut up) = tokio::net::TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                        }
                    });
                }
            });
        });
        TlsFront {
            port,
            ca,
            _dir: dir,
        }
    }

    fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }
}

/// Spans the export queue has no room for are counted and said at exit,
/// and with the spans that arrived they make up every span recorded.
#[test]
fn spans_dropped_by_a_full_queue_are_counted() {
    const N: usize = 200;
    let collector = Collector::start();
    let fx = two_plugins();
    let endpoint = collector.endpoint();
    let run = run_many(
        &fx,
        N,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "2"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "1"),
        ],
    );
    let dropped: usize = run
        .stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" spans were dropped: the export queue was full")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("a count of the dropped spans\n{run}"));
    wait_for(&collector, |r| r.metric_names().contains("plugin.messages"));
    std::thread::sleep(Duration::from_millis(500));
    let got = collector.received();
    // A's and B's delivery spans and B's own, per event (and the lifecycle spans).
    assert!(
        dropped > 0 && got.spans.len() + dropped >= 3 * N,
        "{} received + {dropped} dropped < {}\n{run}",
        got.spans.len(),
        3 * N
    );
}
