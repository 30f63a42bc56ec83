//! SPEC §13 rollouts through the embedding API, for every runtime: a new
//! version in the shadow of the running one, compared event by event,
//! promoted or rolled back while events stream, every event accounted for.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use plughost::{EventStream, Host};
use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, tokio_rt};

/// The running version: `out` with the double of `n`.
const V1: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("out", { n = e.payload.n, double = e.payload.n * 2, v = 1 })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("out", #{ n: e.payload.n, double: e.payload.n * 2, v: 1 });
}
"#,
    native: Some("double"),
};

/// The new version: the same, but wrong for 7.
const V2: Src = Src {
    lua: r#"
function on_event(e)
  local d = e.payload.n * 2
  if e.payload.n == 7 then d = d + 1 end
  bus.publish("out", { n = e.payload.n, double = d, v = 1 })
end
"#,
    rhai: r#"
fn on_event(e) {
  let d = e.payload.n * 2;
  if e.payload.n == 7 { d += 1; }
  bus::publish("out", #{ n: e.payload.n, double: d, v: 1 });
}
"#,
    native: Some("double_wrong_seven"),
};

/// How long any one wait may take.
const LIMIT: Duration = Duration::from_secs(20);

/// `calc`'s manifest at `version`, running `src` (for native: the
/// fixture library's behaviour of that name), with `rollout` lines.
fn manifest(rt: Runtime, version: &str, src: &Src, rollout: &str) -> String {
    let head = format!("name: calc\nversion: {version}\nsubscriptions: [in]\nrollout:\n{rollout}");
    match rt {
        Runtime::Native => format!(
            "{head}runtime: native\nentry: {}\nconfig:\n  behaviour: {}\n",
            crate::support::NATIVE_LIBRARY,
            src.native.unwrap()
        ),
        _ => head,
    }
}

/// Writes version `version` of `calc`, running `src`.
fn write(fx: &Fixture, rt: Runtime, version: &str, src: &Src, rollout: &str) {
    if rt != Runtime::Native {
        fx.file(&format!("calc/{}", rt.entry()), src.get(rt));
    }
    fx.file("calc/plugin.yaml", &manifest(rt, version, src, rollout));
}

const SHADOW: &str = "  strategy: shadow\n";

/// Publishes `n` in `range` on `in`, then reads `count` events from `out`.
async fn stream(host: &Host, out: &mut EventStream, range: std::ops::Range<i64>) -> Vec<Value> {
    for n in range.clone() {
        host.publish("in", json!({ "n": n })).await.unwrap();
    }
    let want = (range.end - range.start) as usize;
    let mut got = Vec::new();
    while got.len() < want {
        let e = tokio::time::timeout(LIMIT, out.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} outputs", got.len()))
            .expect("stream open");
        got.push(e.payload.value().clone());
    }
    got
}

/// Each `n` once, with the double the running version computes.
fn assert_all_once(got: &[Value], range: std::ops::Range<i64>) {
    let mut by_n: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for p in got {
        by_n.entry(p["n"].as_i64().unwrap())
            .or_default()
            .push(p["double"].as_i64().unwrap());
    }
    assert_eq!(
        by_n.len(),
        (range.end - range.start) as usize,
        "every event handled"
    );
    for n in range {
        assert_eq!(
            by_n[&n],
            [n * 2],
            "event {n} handled once, by the running version"
        );
    }
}

async fn next_of(events: &mut EventStream, topic: &str) -> Value {
    loop {
        let e = tokio::time::timeout(LIMIT, events.next())
            .await
            .unwrap_or_else(|_| panic!("no {topic} within {LIMIT:?}"))
            .expect("stream open");
        if e.topic == topic {
            return e.payload.value().clone();
        }
    }
}

fn shadow_reports_the_one_difference_then_promotes(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe("plughost.plugin.*").unwrap();
        host.start().await;

        // A new version arrives: it runs in the shadow of 1.0.0.
        write(&fx, rt, "2.0.0", &V2, SHADOW);
        host.reload_plugin("calc").await.expect("running");
        let started = next_of(&mut events, "plughost.plugin.rollout_started").await;
        assert_eq!(
            started,
            json!({"plugin": "calc", "strategy": "shadow", "from": "1.0.0", "to": "2.0.0"})
        );

        // 1,000 events: the running version handles each once; the candidate
        // differs on one, and only that one is reported.
        let got = stream(&host, &mut out, 0..1000).await;
        assert_all_once(&got, 0..1000);
        let diff = next_of(&mut events, "plughost.plugin.shadow_diff").await;
        assert_eq!(diff["plugin"], "calc");
        assert_eq!(
            diff["live"]["published"],
            json!([{"topic": "out", "payload": {"n": 7, "double": 14, "v": 1}}])
        );
        assert_eq!(
            diff["candidate"]["published"],
            json!([{"topic": "out", "payload": {"n": 7, "double": 15, "v": 1}}])
        );
        assert_eq!(diff["live"]["outcome"]["kind"], "ack");
        let status = wait_compared(&host, 1000).await;
        assert_eq!((status.differed, status.skipped), (1, 0), "{status:?}");
        assert_eq!(status.candidate_errors, 0);
        assert_eq!(rollout_events(&host, "same"), 999.0);
        assert_eq!(rollout_events(&host, "differed"), 1.0);

        // Promoted while events stream: none lost, none handled twice.
        let publisher = {
            let host = host.clone();
            tokio::spawn(async move {
                for n in 1000..2000 {
                    host.publish("in", json!({ "n": n })).await.unwrap();
                }
            })
        };
        host.promote("calc").await.expect("promoted");
        publisher.await.unwrap();
        let promoted = next_of(&mut events, "plughost.plugin.promoted").await;
        assert_eq!(promoted["version"], "2.0.0");
        assert_eq!(promoted["by"], "operator");
        let mut got = Vec::new();
        while got.len() < 1000 {
            let e = tokio::time::timeout(LIMIT, out.next())
                .await
                .unwrap()
                .unwrap();
            got.push(e.payload.value().clone());
        }
        let mut ns: Vec<i64> = got.iter().map(|p| p["n"].as_i64().unwrap()).collect();
        ns.sort_unstable();
        assert_eq!(ns, (1000..2000).collect::<Vec<_>>(), "each once");
        // After the promotion, 2.0.0 answers (its one difference shows).
        let after = stream(&host, &mut out, 7..8).await;
        assert_eq!(after[0]["double"], 15);
        assert!(host.rollout_status("calc").is_none());
        assert_eq!(
            host.promote("calc").await,
            Err(plughost::rollout::RolloutError::NoRollout("calc".into()))
        );
        host.shutdown(Duration::from_secs(10)).await;
    });
}

fn a_rollback_keeps_the_running_version_and_loses_nothing(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe("plughost.plugin.*").unwrap();
        host.start().await;
        write(&fx, rt, "2.0.0", &V2, SHADOW);
        host.reload_plugin("calc").await.expect("running");
        next_of(&mut events, "plughost.plugin.rollout_started").await;
        let publisher = {
            let host = host.clone();
            tokio::spawn(async move {
                for n in 0..1000 {
                    host.publish("in", json!({ "n": n })).await.unwrap();
                }
            })
        };
        host.rollback("calc").await.expect("rolled back");
        publisher.await.unwrap();
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(
            rolled,
            json!({"plugin": "calc", "version": "2.0.0", "reason": "operator"})
        );
        let mut got = Vec::new();
        while got.len() < 1000 {
            let e = tokio::time::timeout(LIMIT, out.next())
                .await
                .unwrap()
                .unwrap();
            got.push(e.payload.value().clone());
        }
        assert_all_once(&got, 0..1000);
        assert!(host.rollout_status("calc").is_none());
        host.shutdown(Duration::from_secs(10)).await;
    });
}

/// `plugin.rollout.events` of `calc` with `result`, now.
fn rollout_events(host: &Host, result: &str) -> f64 {
    host.metrics_snapshot()
        .iter()
        .filter(|p| {
            p.name == "plugin.rollout.events"
                && p.attr("plugin.name") == Some("calc")
                && p.attr("result") == Some(result)
        })
        .map(|p| p.value)
        .sum()
}

/// Waits until the candidate compared `n` events; its status then.
async fn wait_compared(host: &Host, n: u64) -> plughost::rollout::RolloutStatus {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let status = host.rollout_status("calc").expect("a rollout");
        if status.compared + status.skipped >= n {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A new version that fails every event.
const BROKEN: Src = Src {
    lua: "function on_event(e) error('broken') end\n",
    rhai: "fn on_event(e) { throw \"broken\"; }\n",
    native: Some("fail_on_dead_letter"),
};

/// Starts `calc` at 1.0.0 (V1), then brings `next` in with `rollout`.
async fn with_candidate(
    fx: &Fixture,
    rt: Runtime,
    next: &Src,
    rollout: &str,
) -> (Host, EventStream, EventStream) {
    let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
    let out = host.subscribe("out").unwrap();
    let mut events = host
        .subscribe_all(&["plughost.plugin.*", "plughost.dead_letter"])
        .unwrap();
    host.start().await;
    write(fx, rt, "2.0.0", next, rollout);
    host.reload_plugin("calc").await.expect("running");
    next_of(&mut events, "plughost.plugin.rollout_started").await;
    (host, out, events)
}

fn a_clean_candidate_is_promoted_by_itself_after_promote_after(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let rollout = "  strategy: shadow\n  promote_after: 50\n";
        let (host, mut out, mut events) = with_candidate(&fx, rt, &V1, rollout).await;
        let got = stream(&host, &mut out, 0..100).await;
        assert_all_once(&got, 0..100);
        let promoted = next_of(&mut events, "plughost.plugin.promoted").await;
        assert_eq!(
            promoted,
            json!({"plugin": "calc", "version": "2.0.0", "by": "promote_after"})
        );
        assert!(host.rollout_status("calc").is_none());
        host.shutdown(Duration::from_secs(10)).await;
    });
}

fn a_failing_candidate_is_rolled_back_by_itself_and_never_dead_letters(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let rollout = "  strategy: shadow\n  max_candidate_errors: 3\n";
        let (host, mut out, mut events) = with_candidate(&fx, rt, &BROKEN, rollout).await;
        let got = stream(&host, &mut out, 0..20).await;
        assert_all_once(&got, 0..20);
        let diff = next_of(&mut events, "plughost.plugin.shadow_diff").await;
        assert_eq!(diff["candidate"]["outcome"]["kind"], "error");
        let error = diff["candidate"]["outcome"]["error"].as_str().unwrap();
        assert!(
            error.contains("broken") || error.contains("always fails"),
            "{diff}"
        );
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(rolled["reason"], "candidate_errors");
        // Everything published meanwhile was read: no dead letter among it.
        host.shutdown(Duration::from_secs(10)).await;
        while let Some(e) = events.next().await {
            assert_ne!(e.topic, "plughost.dead_letter", "{e:?}");
        }
    });
}

fn a_save_during_a_rollout_replaces_the_candidate(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let (host, mut out, mut events) = with_candidate(&fx, rt, &V2, SHADOW).await;
        stream(&host, &mut out, 0..10).await;
        write(&fx, rt, "3.0.0", &V1, SHADOW);
        host.reload_plugin("calc").await.expect("running");
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(
            rolled,
            json!({"plugin": "calc", "version": "2.0.0", "reason": "replaced"})
        );
        let started = next_of(&mut events, "plughost.plugin.rollout_started").await;
        assert_eq!(started["to"], "3.0.0");
        // The new candidate's counts start at zero; it sees every later event.
        let got = stream(&host, &mut out, 0..100).await;
        assert_all_once(&got, 0..100);
        let status = wait_compared(&host, 100).await;
        assert_eq!(
            (status.to.as_str(), status.compared, status.differed),
            ("3.0.0", 100, 0),
            "{status:?}"
        );
        host.shutdown(Duration::from_secs(10)).await;
    });
}

fn a_candidate_that_cannot_start_leaves_the_running_version_alone(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe("plughost.plugin.*").unwrap();
        host.start().await;
        let broken_init = Src {
            lua: "function init() error('no init') end\n",
            rhai: "fn init() { throw \"no init\"; }\n",
            native: Some("init_error"),
        };
        write(&fx, rt, "2.0.0", &broken_init, SHADOW);
        let outcome = host.reload_plugin("calc").await.expect("running");
        assert!(
            matches!(&outcome, plughost::reload::ReloadOutcome::Failed(e) if e.contains("init")),
            "{outcome:?}"
        );
        let failed = next_of(&mut events, "plughost.plugin.reload_failed").await;
        assert_eq!(failed["plugin"], "calc");
        assert!(host.rollout_status("calc").is_none());
        let got = stream(&host, &mut out, 0..50).await;
        assert_all_once(&got, 0..50);
        host.shutdown(Duration::from_secs(10)).await;
    });
}

behaviours!(
    shadow_reports_the_one_difference_then_promotes[Native],
    a_rollback_keeps_the_running_version_and_loses_nothing[Native],
    a_clean_candidate_is_promoted_by_itself_after_promote_after[Native],
    a_failing_candidate_is_rolled_back_by_itself_and_never_dead_letters[Native],
    a_save_during_a_rollout_replaces_the_candidate[Native],
    a_candidate_that_cannot_start_leaves_the_running_version_alone[Native],
    a_save_that_does_not_compile_keeps_the_candidate_in_progress,
);

/// Version 2 for a gradual rollout: the same double, saying `v = 2`.
const V2_GRADUAL: Src = Src {
    lua: r#"
function on_event(e)
  bus.publish("out", { n = e.payload.n, double = e.payload.n * 2, v = 2 })
end
"#,
    rhai: r#"
fn on_event(e) {
  bus::publish("out", #{ n: e.payload.n, double: e.payload.n * 2, v: 2 });
}
"#,
    native: Some("double_v2"),
};

/// Publishes `n` in `range` with `user = n % 50` while `during` runs;
/// returns every output read (each `n` once, checked), by `n`: its version.
async fn stream_users<F: std::future::Future>(
    host: &Host,
    out: &mut EventStream,
    range: std::ops::Range<i64>,
    during: F,
) -> BTreeMap<i64, i64> {
    let publisher = {
        let host = host.clone();
        let range = range.clone();
        tokio::spawn(async move {
            for n in range {
                host.publish("in", json!({ "n": n, "user": format!("u{}", n % 50) }))
                    .await
                    .unwrap();
            }
        })
    };
    during.await;
    publisher.await.unwrap();
    let mut by_n = BTreeMap::new();
    let want = (range.end - range.start) as usize;
    while by_n.len() < want {
        let e = tokio::time::timeout(LIMIT, out.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {want} outputs", by_n.len()))
            .expect("stream open");
        let p = e.payload.value();
        let n = p["n"].as_i64().unwrap();
        assert_eq!(p["double"], n * 2);
        let again = by_n.insert(n, p["v"].as_i64().unwrap());
        assert!(again.is_none(), "event {n} handled twice");
    }
    by_n
}

/// The users each version handled.
fn users_on(by_n: &BTreeMap<i64, i64>, version: i64) -> std::collections::BTreeSet<i64> {
    by_n.iter()
        .filter(|&(_, &v)| v == version)
        .map(|(n, _)| n % 50)
        .collect()
}

fn a_gradual_candidate_takes_its_share_by_key_then_more_then_all(rt: Runtime) {
    let fx = Fixture::new();
    let gradual = "  strategy: gradual\n  percent: 30\n  key: user\n";
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, gradual);
    tokio_rt().block_on(async {
        let (host, mut out, mut events) = with_candidate(&fx, rt, &V2_GRADUAL, gradual).await;
        // 1,000 events: about 30% of the users on 2.0.0, each user on one version.
        let first = stream_users(&host, &mut out, 0..1000, async {}).await;
        let on_v2 = users_on(&first, 2);
        assert!(
            users_on(&first, 1).is_disjoint(&on_v2),
            "one user, one version"
        );
        assert!(
            (5..=25).contains(&on_v2.len()),
            "{} of 50 users",
            on_v2.len()
        );
        let status = host.rollout_status("calc").unwrap();
        assert_eq!(status.percent, Some(30));
        let handled = first.values().filter(|&&v| v == 2).count() as u64;
        assert_eq!(status.handled_by_candidate, handled, "{status:?}");
        // The metric follows within its look interval.
        let deadline = tokio::time::Instant::now() + LIMIT;
        while rollout_events(&host, "candidate") < handled as f64 {
            assert!(tokio::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // A larger share while events stream: the same users stay, more join.
        let second = stream_users(&host, &mut out, 1000..2000, async {
            host.set_rollout_percent("calc", 70).await.unwrap();
        })
        .await;
        let later: BTreeMap<i64, i64> = second.range(1500..).map(|(n, v)| (*n, *v)).collect();
        assert!(on_v2.is_subset(&users_on(&later, 2)));
        assert!(users_on(&later, 2).len() > on_v2.len());
        assert_eq!(
            host.set_rollout_percent("calc", 0).await,
            Err(plughost::rollout::RolloutError::Percent(0))
        );

        // Promoted while events stream: none lost, none twice, then all on 2.0.0.
        stream_users(&host, &mut out, 2000..3000, async {
            host.promote("calc").await.unwrap();
        })
        .await;
        let promoted = next_of(&mut events, "plughost.plugin.promoted").await;
        assert_eq!(promoted["version"], "2.0.0");
        let after = stream_users(&host, &mut out, 3000..3200, async {}).await;
        assert!(after.values().all(|&v| v == 2), "{after:?}");
        assert!(host.rollout_status("calc").is_none());
        host.shutdown(Duration::from_secs(10)).await;
    });
}

fn a_gradual_rollback_gives_everything_back_to_the_running_version(rt: Runtime) {
    let fx = Fixture::new();
    let gradual = "  strategy: gradual\n  percent: 50\n";
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, gradual);
    tokio_rt().block_on(async {
        let (host, mut out, mut events) = with_candidate(&fx, rt, &V2_GRADUAL, gradual).await;
        let during = stream_users(&host, &mut out, 0..1000, async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            host.rollback("calc").await.unwrap();
        })
        .await;
        assert_eq!(during.len(), 1000);
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(rolled["reason"], "operator");
        let after = stream_users(&host, &mut out, 1000..1300, async {}).await;
        assert!(after.values().all(|&v| v == 1), "{after:?}");
        host.shutdown(Duration::from_secs(10)).await;
    });
}

fn a_failing_gradual_candidate_is_rolled_back_by_itself(rt: Runtime) {
    let fx = Fixture::new();
    let gradual = "  strategy: gradual\n  percent: 50\n  max_candidate_errors: 3\n";
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, gradual);
    tokio_rt().block_on(async {
        let (host, mut out, mut events) = with_candidate(&fx, rt, &BROKEN, gradual).await;
        let mut letters_stream = host.subscribe("plughost.dead_letter").unwrap();
        for n in 0..200 {
            host.publish("in", json!({ "n": n })).await.unwrap();
        }
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(rolled["reason"], "candidate_errors");
        // Every event is accounted for: handled by 1.0.0, or dead-lettered
        // by the candidate (a gradual candidate handles its share for real).
        host.wait_idle().await;
        host.shutdown(Duration::from_secs(10)).await;
        let mut outputs = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_secs(1), out.next()).await {
            outputs += 1;
        }
        let mut letters = 0;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_secs(1), letters_stream.next()).await
        {
            letters += 1;
        }
        assert!(letters >= 3, "{letters} dead letters");
        assert_eq!(
            outputs + letters,
            200,
            "{outputs} outputs, {letters} dead letters"
        );
    });
}

fn a_save_that_does_not_compile_keeps_the_candidate_in_progress(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let (host, mut out, mut events) = with_candidate(&fx, rt, &V2, SHADOW).await;
        let broken = Src {
            lua: "function on_event(e)\n  return (\nend\n",
            rhai: "fn on_event(e) {\n  let x = ;\n}\n",
            native: None,
        };
        write(&fx, rt, "3.0.0", &broken, SHADOW);
        let outcome = host.reload_plugin("calc").await.expect("running");
        assert!(
            matches!(&outcome, plughost::reload::ReloadOutcome::Failed(e) if e.contains(rt.entry())),
            "{outcome:?}"
        );
        let failed = next_of(&mut events, "plughost.plugin.reload_failed").await;
        let error = failed["error"].as_str().unwrap();
        assert!(error.contains(&format!("{}:", rt.entry())), "names file:line: {failed}");
        // The 2.0.0 candidate goes on: it still finds its one difference.
        assert_eq!(host.rollout_status("calc").unwrap().to, "2.0.0");
        let got = stream(&host, &mut out, 0..10).await;
        assert_all_once(&got, 0..10);
        let diff = next_of(&mut events, "plughost.plugin.shadow_diff").await;
        assert_eq!(diff["candidate"]["published"][0]["payload"]["double"], 15);
        host.shutdown(Duration::from_secs(10)).await;
    });
}

/// Counting versions: each keeps a count of what it handled in `state`; the
/// new one merges the old one's count when promoted.
const COUNT_V1: Src = Src {
    lua: r#"
function on_event(e)
  state.count = (state.count or 0) + 1
  bus.publish("out", { n = e.payload.n, double = e.payload.n * 2, v = 1 })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.count = if "count" in state { state.count + 1 } else { 1 };
  bus::publish("out", #{ n: e.payload.n, double: e.payload.n * 2, v: 1 });
}
"#,
    native: None,
};

const COUNT_V2: Src = Src {
    lua: r#"
function on_promote(old)
  state.merged = old.count
end
function on_event(e)
  bus.publish("out", { n = e.payload.n, double = e.payload.n * 2, v = 2, merged = state.merged })
end
"#,
    rhai: r#"
fn on_promote(old) {
  state.merged = old.count;
}
fn on_event(e) {
  let merged = if "merged" in state { state.merged } else { () };
  bus::publish("out", #{ n: e.payload.n, double: e.payload.n * 2, v: 2, merged: merged });
}
"#,
    native: None,
};

fn on_promote_gives_the_new_version_the_old_ones_state(rt: Runtime) {
    let fx = Fixture::new();
    let gradual = "  strategy: gradual\n  percent: 50\n";
    fx.plugin(rt, "calc", "subscriptions: [in]\n", COUNT_V1.get(rt));
    write(&fx, rt, "1.0.0", &COUNT_V1, gradual);
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe("plughost.plugin.*").unwrap();
        host.start().await;
        stream(&host, &mut out, 0..10).await;
        write(&fx, rt, "2.0.0", &COUNT_V2, gradual);
        host.reload_plugin("calc").await.expect("running");
        next_of(&mut events, "plughost.plugin.rollout_started").await;
        let during = stream_users(&host, &mut out, 10..110, async {}).await;
        let by_old = 10 + during.values().filter(|&&v| v == 1).count();
        host.promote("calc").await.unwrap();
        // The hook runs before the next event the new version handles.
        let after = stream(&host, &mut out, 200..201).await;
        assert_eq!(after[0]["v"], 2);
        assert_eq!(after[0]["merged"], by_old as i64, "the old version's count");
        host.shutdown(Duration::from_secs(10)).await;
    });
}

mod gradual {
    use super::*;

    behaviours!(
        a_gradual_candidate_takes_its_share_by_key_then_more_then_all[Native],
        a_gradual_rollback_gives_everything_back_to_the_running_version[Native],
        a_failing_gradual_candidate_is_rolled_back_by_itself[Native],
        on_promote_gives_the_new_version_the_old_ones_state,
    );
}

/// A candidate that never returns from a hook is cut by its time limit,
/// never delays the running version, and is rolled back by its errors.
#[test]
fn a_shadow_candidate_stuck_in_a_loop_never_delays_the_running_version() {
    let rt = Runtime::Lua;
    let fx = Fixture::new();
    fx.plugin(rt, "calc", "subscriptions: [in]\n", V1.get(rt));
    write(&fx, rt, "1.0.0", &V1, SHADOW);
    tokio_rt().block_on(async {
        let stuck = Src {
            lua: "function on_event(e) while true do end end\n",
            rhai: "",
            native: None,
        };
        let rollout =
            "  strategy: shadow\n  max_candidate_errors: 2\nlimits:\n  event_timeout_ms: 100\n";
        let (host, mut out, mut events) = with_candidate(&fx, rt, &stuck, rollout).await;
        let started = std::time::Instant::now();
        let got = stream(&host, &mut out, 0..50).await;
        assert_all_once(&got, 0..50);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the running version waited for the candidate: {:?}",
            started.elapsed()
        );
        let rolled = next_of(&mut events, "plughost.plugin.rolled_back").await;
        assert_eq!(rolled["reason"], "candidate_errors");
        host.shutdown(Duration::from_secs(10)).await;
    });
}

/// Only functions registered shadow-safe reach a shadow candidate: the
/// others are refused to it, so the running version's effect happens once.
#[test]
fn a_shadow_candidate_calls_shadow_safe_functions_only() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let rt = Runtime::Lua;
    let fx = Fixture::new();
    let src = Src {
        lua: r#"
function on_event(e)
  local charged = pcall(host.charge, e.payload.n)
  bus.publish("out", { n = e.payload.n, double = host.twice(e.payload.n), v = 1, charged = charged })
end
"#,
        rhai: "",
        native: None,
    };
    fx.plugin(rt, "calc", "subscriptions: [in]\n", src.get(rt));
    write(&fx, rt, "1.0.0", &src, SHADOW);
    let charges = std::sync::Arc::new(AtomicUsize::new(0));
    let lookups = std::sync::Arc::new(AtomicUsize::new(0));
    tokio_rt().block_on(async {
        let (c, l) = (charges.clone(), lookups.clone());
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("charge", move |_| {
                c.fetch_add(1, Ordering::SeqCst);
                Ok(json!(true))
            })
            .shadow_safe_function("twice", move |args| {
                l.fetch_add(1, Ordering::SeqCst);
                Ok(json!(args[0].as_i64().unwrap_or(0) * 2))
            })
            .build()
            .unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe("plughost.plugin.*").unwrap();
        host.start().await;
        write(&fx, rt, "2.0.0", &src, SHADOW);
        host.reload_plugin("calc").await.expect("running");
        next_of(&mut events, "plughost.plugin.rollout_started").await;
        let got = stream(&host, &mut out, 0..20).await;
        assert_all_once(&got, 0..20);
        assert!(got.iter().all(|p| p["charged"] == true));
        let status = wait_compared(&host, 20).await;
        // The candidate could not charge: every event differs, and the
        // application was charged once per event, by the running version.
        assert_eq!(status.differed, 20, "{status:?}");
        assert_eq!(charges.load(Ordering::SeqCst), 20);
        assert_eq!(
            lookups.load(Ordering::SeqCst),
            40,
            "both versions looked up"
        );
        host.shutdown(Duration::from_secs(10)).await;
    });
}
