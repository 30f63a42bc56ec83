//! SPEC §6 in process: a host run as a library keeps its metrics in process
//! (`Host::metrics_snapshot`), with the plugin's attributes on every point,
//! and the caps on script metrics refuse and count.

use std::time::Duration;

use futures::StreamExt;
use plughost::Host;
use plughost::telemetry::MetricPoint;
use serde_json::json;

use crate::support::{Fixture, Runtime, tokio_rt};

const COUNTING: &str = r#"
function on_event(e)
  telemetry.counter("words", 3, {kind = "x"})
  telemetry.histogram("size", 12.5)
  telemetry.gauge("level", 7)
  if e.payload.fail then error("boom") end
  bus.publish("out", {n = e.payload.n})
end
"#;

const GREEDY: &str = r#"
function on_event(e)
  local refused = 0
  for i = 1, 70 do
    if not pcall(telemetry.counter, "name" .. i, 1) then refused = refused + 1 end
  end
  for i = 1, 40 do
    if not pcall(telemetry.counter, "name1", 1, {user = "u" .. i}) then refused = refused + 1 end
  end
  local many = {}
  for i = 1, 17 do many["k" .. i] = "v" end
  if not pcall(telemetry.counter, "name1", 1, many) then refused = refused + 1 end
  bus.publish("refused", {count = refused})
end
"#;

fn points<'a>(all: &'a [MetricPoint], name: &str, plugin: &str) -> Vec<&'a MetricPoint> {
    all.iter()
        .filter(|p| p.name == name && p.attr("plugin.name") == Some(plugin))
        .collect()
}

/// The value of the point among `points` whose attribute `key` is `value`.
fn value_where(points: &[&MetricPoint], key: &str, value: &str) -> Option<f64> {
    points
        .iter()
        .find(|p| p.attr(key) == Some(value))
        .map(|p| p.value)
}

fn assert_plugin_attrs(p: &MetricPoint, plugin: &str) {
    assert_eq!(p.attr("plugin.name"), Some(plugin), "{p:?}");
    assert_eq!(p.attr("plugin.version"), Some("1.0.0"), "{p:?}");
    assert_eq!(p.attr("plugin.runtime"), Some("lua"), "{p:?}");
}

#[test]
fn host_and_script_metrics_stay_in_process_with_the_plugin_attributes() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "counting",
        "subscriptions: [in]\npublications: [out]\n",
        COUNTING,
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        assert_eq!(host.start().await.started, ["counting"]);
        host.publish("in", json!({"n": 1})).await.unwrap();
        host.publish("in", json!({"n": 2})).await.unwrap();
        host.publish("in", json!({"fail": true})).await.unwrap();
        for _ in 0..2 {
            tokio::time::timeout(Duration::from_secs(5), out.next())
                .await
                .expect("an output within 5 s")
                .expect("stream open");
        }
        host.wait_idle().await;

        let all = host.metrics_snapshot();
        let names: Vec<&str> = all.iter().map(|p| p.name.as_str()).collect();
        for name in [
            "plugin.init.duration_ms",
            "plugin.message.processing_time_ms",
            "plugin.messages",
            "plugin.queue.depth",
            "plugin.queue.dropped",
            "plugin.lifecycle.events",
            "words",
            "size",
            "level",
        ] {
            let found = points(&all, name, "counting");
            assert!(!found.is_empty(), "{name} missing from {names:?}");
            for p in found {
                assert_plugin_attrs(p, "counting");
            }
        }

        // Per-event metrics carry message.topic, never message.id.
        let processing = points(&all, "plugin.message.processing_time_ms", "counting");
        assert_eq!(processing.len(), 1, "{processing:?}");
        assert_eq!(processing[0].attr("message.topic"), Some("in"));
        assert_eq!(processing[0].count, 3);
        assert!(all.iter().all(|p| p.attr("message.id").is_none()));

        let messages = points(&all, "plugin.messages", "counting");
        let by_outcome = |o: &str| value_where(&messages, "outcome", o);
        assert_eq!(by_outcome("ack"), Some(2.0), "{messages:?}");
        assert_eq!(by_outcome("dead_letter"), Some(1.0), "{messages:?}");
        assert!(
            messages
                .iter()
                .all(|p| p.attr("message.topic") == Some("in"))
        );

        // Reported like the depth: 0 when nothing was dropped.
        let dropped = points(&all, "plugin.queue.dropped", "counting");
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert_eq!(dropped[0].value, 0.0);

        let words = points(&all, "words", "counting");
        assert_eq!(words.len(), 1);
        assert_eq!(words[0].attr("kind"), Some("x"));
        assert_eq!(words[0].value, 9.0);
        assert_eq!(points(&all, "level", "counting")[0].value, 7.0);

        let started = points(&all, "plugin.lifecycle.events", "counting");
        assert!(started.iter().any(|p| p.attr("event") == Some("started")));

        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty());
        let all = host.metrics_snapshot();
        assert_eq!(
            points(&all, "plugin.shutdown.duration_ms", "counting").len(),
            1
        );
        assert!(
            points(&all, "plugin.lifecycle.events", "counting")
                .iter()
                .any(|p| p.attr("event") == Some("stopped"))
        );
        // Still reported once the plugin has left the bus (the last export
        // of a run happens then).
        assert_eq!(
            points(&all, "plugin.queue.dropped", "counting").len(),
            1,
            "{all:?}"
        );
    });
}

const SLOW: &str = r#"
function on_event(e)
  host.pause()
end
"#;

#[test]
fn events_dropped_by_the_overflow_policy_are_counted() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "slow",
        "subscriptions: [in]\nlimits: {queue: 1, overflow: drop_newest}\n",
        SLOW,
    );
    const SENT: usize = 6;
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("pause", |_| {
                std::thread::sleep(Duration::from_millis(50));
                Ok(serde_json::Value::Null)
            })
            .build()
            .unwrap();
        assert_eq!(host.start().await.started, ["slow"]);
        for n in 0..SENT {
            host.publish("in", json!({"n": n})).await.unwrap();
        }
        host.wait_idle().await;
        let all = host.metrics_snapshot();
        let dropped = points(&all, "plugin.queue.dropped", "slow");
        assert_eq!(dropped.len(), 1, "{all:?}");
        assert_plugin_attrs(dropped[0], "slow");
        let handled: f64 = points(&all, "plugin.messages", "slow")
            .iter()
            .map(|p| p.value)
            .sum();
        assert!(
            dropped[0].value >= 1.0,
            "a one-event queue overflows: {all:?}"
        );
        assert_eq!(dropped[0].value + handled, SENT as f64, "{all:?}");

        host.shutdown(Duration::from_secs(5)).await;
        let after = host.metrics_snapshot();
        let again = points(&after, "plugin.queue.dropped", "slow");
        assert_eq!(again.len(), 1, "{after:?}");
        assert_eq!(again[0].value, dropped[0].value, "kept after shutdown");
    });
}

#[test]
fn telemetry_off_records_nothing() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "counting",
        "subscriptions: [in]\npublications: [out]\n",
        COUNTING,
    );
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .telemetry(false)
            .build()
            .unwrap();
        let mut out = host.subscribe("out").unwrap();
        assert_eq!(host.start().await.started, ["counting"]);
        host.publish("in", json!({"n": 1})).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .expect("an output within 5 s")
            .expect("stream open");
        assert!(!e.headers.contains_key("traceparent"), "{e:?}");
        host.wait_idle().await;
        assert_eq!(host.metrics_snapshot(), Vec::new());
        host.shutdown(Duration::from_secs(5)).await;
    });
}

#[test]
fn script_metrics_are_capped_and_refusals_counted() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "greedy",
        "subscriptions: [in]\npublications: [refused]\n",
        GREEDY,
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut refused = host.subscribe("refused").unwrap();
        host.start().await;
        host.publish("in", json!({})).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(5), refused.next())
            .await
            .expect("an answer within 5 s")
            .expect("stream open");
        // 6 names over the 64, 8 values over the 32 (name1 already has none
        // for `user`: the first 32 pass), 1 call with 17 attributes.
        assert_eq!(event.payload, json!({"count": 6 + 8 + 1}));
        host.wait_idle().await;

        let all = host.metrics_snapshot();
        let script_names = all
            .iter()
            .filter(|p| p.name.starts_with("name") && p.attr("plugin.name") == Some("greedy"))
            .map(|p| p.name.as_str())
            .collect::<std::collections::BTreeSet<_>>();
        assert_eq!(script_names.len(), 64);
        let users = all
            .iter()
            .filter(|p| p.name == "name1" && p.attr("user").is_some())
            .count();
        assert_eq!(users, 32);
        let refusals = points(&all, "plugin.telemetry.refused", "greedy");
        let by_reason = |r: &str| value_where(&refusals, "reason", r);
        assert_eq!(by_reason("names"), Some(6.0), "{refusals:?}");
        assert_eq!(by_reason("values"), Some(8.0), "{refusals:?}");
        assert_eq!(by_reason("attributes"), Some(1.0), "{refusals:?}");
        for p in &refusals {
            assert_plugin_attrs(p, "greedy");
        }
        host.shutdown(Duration::from_secs(5)).await;
    });
}

/// Not exporting, the events a plugin publishes stay in the trace of the
/// event that caused them. (A new trace for each event the host publishes,
/// when the delivery spans are recorded, is seen end to end in otel.rs.)
#[test]
fn consequences_stay_in_the_trace_of_their_cause() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "counting",
        "subscriptions: [in]\npublications: [out]\n",
        COUNTING,
    );
    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        assert_eq!(host.start().await.started, ["counting"]);
        let mut event = plughost::Event::new("in", json!({"n": 1}), "host");
        event.headers.insert("traceparent".into(), TP.into());
        host.publish_event(event).await.unwrap();
        let e = tokio::time::timeout(Duration::from_secs(5), out.next())
            .await
            .expect("an output within 5 s")
            .expect("stream open");
        assert_eq!(
            e.headers.get("traceparent").map(String::as_str),
            Some(TP),
            "{e:?}"
        );
        host.shutdown(Duration::from_secs(5)).await;
    });
}
