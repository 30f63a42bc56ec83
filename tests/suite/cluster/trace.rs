//! One trace across hosts (SPEC §14, §6): the `traceparent` an event carries
//! crosses NATS in the message headers, so the delivery span of an imported
//! event on host B is a child of the span on host A that published it, in
//! the same trace. Both hosts export OTLP to one real collector (rotel, as
//! in `otel.rs`).

use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::live::Live;
use crate::otel::{ARRIVAL_LIMIT, Collector, Span, attr};
use crate::support::Runtime;

/// `plughost run` on `config` like [`spawn`], exporting OTLP to `collector`
/// as service `service`.
fn spawn_exporting(config: &str, collector: &Collector, service: &str) -> Live {
    let endpoint = collector.endpoint();
    Live::spawn_with_env(
        &[
            "run",
            "--config",
            config,
            "--input",
            "-",
            "--tap",
            ">",
            "--no-watch",
        ],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_SERVICE_NAME", service),
        ],
    )
}

/// The delivery spans of `plugin` for `topic` once at least one has reached
/// the collector (bounded by [`ARRIVAL_LIMIT`]).
fn delivery(collector: &Collector, plugin: &str, topic: &str) -> Vec<Span> {
    let deadline = Instant::now() + ARRIVAL_LIMIT;
    loop {
        let received = collector.received();
        let found: Vec<Span> = received
            .spans
            .into_iter()
            .filter(|s| {
                attr(&s.attrs, "plugin.name") == Some(plugin)
                    && attr(&s.attrs, "message.topic") == Some(topic)
            })
            .collect();
        if !found.is_empty() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "no delivery span of plugin `{plugin}` for `{topic}` reached the collector \
             within {ARRIVAL_LIMIT:?}\n{}",
            collector.output()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_events_spans_on_both_hosts_share_one_trace() {
    let nats = shared();
    let p = "trace";
    let collector = Collector::start();
    let (a_dir, a_conf) = host("a", &nats.url(), p);
    let (b_dir, b_conf) = host("b", &nats.url(), p);
    // A's plugin handles the input and publishes an exported event; B's
    // plugin handles that one.
    a_dir.plugin(
        Runtime::Lua,
        "origin",
        "subscriptions: [trace.in]\n",
        "function on_event(e) bus.publish('trace.mid', {n = e.payload.n}) end\n",
    );
    b_dir.plugin(
        Runtime::Lua,
        "far",
        "subscriptions: [trace.mid]\n",
        "function on_event(e) bus.publish('trace.done', {n = e.payload.n}) end\n",
    );
    let mut a = spawn_exporting(&a_conf, &collector, "plughost-trace-a");
    let mut b = spawn_exporting(&b_conf, &collector, "plughost-trace-b");
    for live in [&mut a, &mut b] {
        live.wait_for(
            "plughost.cluster.connected",
            is("plughost.cluster.connected"),
        );
    }
    warm_up(&mut a, &mut [&mut b], p);

    a.send(&json!({"topic": "trace.in", "payload": {"n": 1}}));
    let mid = a.wait_for("trace.mid on A", is("trace.mid"));
    let on_b = b.wait_for("trace.mid on B", is("trace.mid"));
    assert_eq!(on_b["id"], mid["id"], "the same event on both hosts");
    b.wait_for("trace.done on B", is("trace.done"));
    // Each host flushes its spans when it stops.
    for live in [&a, &b] {
        live.signal("TERM");
    }
    let (a_run, b_run) = (a.finish(), b.finish());

    let on_a = delivery(&collector, "origin", "trace.in");
    let on_b = delivery(&collector, "far", "trace.mid");
    let context = || format!("A:\n{a_run}\nB:\n{b_run}\n{}", collector.output());
    assert_eq!(on_a.len(), 1, "one delivery on A\n{}", context());
    assert_eq!(on_b.len(), 1, "one delivery on B\n{}", context());
    let (on_a, on_b) = (&on_a[0], &on_b[0]);
    assert_eq!(
        attr(&on_a.resource, "service.name"),
        Some("plughost-trace-a")
    );
    assert_eq!(
        attr(&on_b.resource, "service.name"),
        Some("plughost-trace-b")
    );
    assert_eq!(
        attr(&on_b.attrs, "message.id"),
        mid["id"].as_str(),
        "B's span is the delivery of A's event"
    );
    assert!(!on_a.trace_id.is_empty(), "{on_a:?}");
    assert_eq!(
        on_b.trace_id,
        on_a.trace_id,
        "B's delivery in A's trace\nA: {on_a:?}\nB: {on_b:?}\n{}",
        context()
    );
    assert_eq!(
        on_b.parent_id,
        on_a.id,
        "B's delivery span a child of A's (the span that published the event)\n\
         A: {on_a:?}\nB: {on_b:?}\n{}",
        context()
    );
}
