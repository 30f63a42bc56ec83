//! Shared plugins (SPEC §14, `cluster.shared`): a NATS queue group per
//! plugin, so each event for it is handled by exactly one of the hosts
//! running it, its own host's events included; a suspended member leaves
//! its group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::live::Live;
use crate::support::{Fixture, Runtime};

/// A host folder whose `plughost.yaml` joins `url` as `name`, exporting and
/// importing `prefix.>`, with `extra` lines under `cluster:`.
pub(crate) fn host_with(name: &str, url: &str, prefix: &str, extra: &str) -> (Fixture, String) {
    let fx = Fixture::new();
    let config = fx.file(
        "plughost.yaml",
        &format!(
            "plugins: ['.']\ncluster:\n  nats: {url}\n  name: {name}\n  \
             export: ['{prefix}.>']\n  import: ['{prefix}.>']\n{extra}"
        ),
    );
    (fx, config.to_str().unwrap().to_owned())
}

/// A shared Lua plugin `worker` on `prefix.job.>` that answers each job
/// with `prefix.done` naming the job and its host; `body` runs first.
pub(crate) fn worker(fx: &Fixture, prefix: &str, host: &str, manifest: &str, body: &str) {
    fx.plugin(
        Runtime::Lua,
        "worker",
        &format!(
            "subscriptions: ['{prefix}.job.>']\ncluster:\n  shared: true\nconfig:\n  host: {host}\n{manifest}"
        ),
        &format!(
            "function on_event(e)\n{body}\n  bus.publish('{prefix}.done', {{n = e.payload.n, host = config.host, \
             attempt = e.headers.delivery_attempt, id = e.id}})\nend\n"
        ),
    );
}

/// The `prefix.done` events seen so far, as (n, host).
pub(crate) fn done(live: &Live, prefix: &str) -> Vec<(i64, String)> {
    let topic = format!("{prefix}.done");
    live.events()
        .iter()
        .filter(|e| e["topic"] == topic.as_str())
        .map(|e| {
            (
                e["payload"]["n"].as_i64().unwrap_or(i64::MIN),
                e["payload"]["host"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// Sends probe jobs (negative numbers) from `from` until every host in
/// `hosts` answered one (they are all in the group), within `limit`.
pub(crate) fn until_every_host_answers(
    from: &mut Live,
    prefix: &str,
    hosts: &[&str],
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut n = -1;
    loop {
        from.send(&json!({"topic": format!("{prefix}.job.probe"), "payload": {"n": n}}));
        n -= 1;
        from.read_for(Duration::from_millis(150));
        let seen: BTreeSet<String> = done(from, prefix)
            .into_iter()
            .filter(|(n, _)| *n < 0)
            .map(|(_, h)| h)
            .collect();
        if hosts.iter().all(|h| seen.contains(*h)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not every host answered a probe within {limit:?}: {seen:?}"
        );
    }
}

/// Waits until `live` saw `prefix.done` for every job in `0..n`.
pub(crate) fn until_all_done(live: &mut Live, prefix: &str, n: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let seen: BTreeSet<i64> = done(live, prefix)
            .into_iter()
            .map(|(n, _)| n)
            .filter(|n| *n >= 0)
            .collect();
        if seen.len() as i64 >= n {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "only {} of {n} jobs done within {limit:?}; missing: {:?}",
            seen.len(),
            (0..n)
                .filter(|i| !seen.contains(i))
                .take(20)
                .collect::<Vec<_>>()
        );
        live.read_for(left.min(Duration::from_millis(100)));
    }
}

fn per_host(done: &[(i64, String)]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for (_, h) in done {
        *by.entry(h.clone()).or_default() += 1;
    }
    by
}

#[test]
fn each_event_for_a_shared_plugin_is_handled_by_exactly_one_host() {
    let nats = shared();
    let p = "sh3";
    let hosts = ["a", "b", "c"];
    let mut lives = Vec::new();
    let mut dirs = Vec::new();
    for h in hosts {
        let (fx, conf) = host_with(h, &nats.url(), p, "");
        worker(&fx, p, h, "", "");
        lives.push(spawn(&conf));
        dirs.push(fx);
    }
    for live in &mut lives {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    let mut a = lives.remove(0);
    until_every_host_answers(&mut a, p, &hosts, Duration::from_secs(20));

    const JOBS: i64 = 300;
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    until_all_done(&mut a, p, JOBS, Duration::from_secs(30));
    // Duplicates would come right behind: give them a moment to show.
    a.read_for(Duration::from_millis(800));
    let jobs: Vec<(i64, String)> = done(&a, p).into_iter().filter(|(n, _)| *n >= 0).collect();
    let distinct: BTreeSet<i64> = jobs.iter().map(|(n, _)| *n).collect();
    assert_eq!(distinct.len() as i64, JOBS);
    assert_eq!(
        jobs.len() as i64,
        JOBS,
        "some job was handled twice: {:?}",
        per_host(&jobs)
    );
    let by = per_host(&jobs);
    for h in hosts {
        assert!(
            by.get(h).copied().unwrap_or(0) > 0,
            "host {h} took none: {by:?}"
        );
    }
    for live in lives {
        drop(live);
    }
}

#[test]
fn a_lone_shared_plugin_gets_its_own_hosts_events_once_and_unexported_ones_directly() {
    let nats = shared();
    let p = "sh1";
    let (fx, conf) = host_with("solo", &nats.url(), p, "");
    // Subscribed to an exported topic and to one this host keeps local.
    fx.plugin(
        Runtime::Lua,
        "worker",
        &format!("subscriptions: ['{p}.job.>', 'local.job']\ncluster:\n  shared: true\n"),
        &format!(
            "function on_event(e) bus.publish('{p}.done', {{n = e.payload.n, host = e.topic}}) end\n"
        ),
    );
    let mut live = spawn(&conf);
    live.wait_for("connected", is("plughost.cluster.connected"));
    until_every_host_answers(
        &mut live,
        p,
        &[&format!("{p}.job.probe")],
        Duration::from_secs(20),
    );
    for n in 0..50 {
        live.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    live.send(&json!({"topic": "local.job", "payload": {"n": 50}}));
    until_all_done(&mut live, p, 51, Duration::from_secs(20));
    live.read_for(Duration::from_millis(800));
    let jobs: Vec<(i64, String)> = done(&live, p)
        .into_iter()
        .filter(|(n, _)| *n >= 0)
        .collect();
    assert_eq!(jobs.len(), 51, "each job once: {jobs:?}");
    assert!(jobs.contains(&(50, "local.job".to_owned())));
}

#[test]
fn a_suspended_shared_plugin_leaves_its_group_and_the_others_take_every_event() {
    let nats = shared();
    let p = "shs";
    let (a_dir, a_conf) = host_with("a", &nats.url(), p, "");
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, "");
    worker(&a_dir, p, "a", "", "");
    // B's copy fails every real job, and is suspended at its first error.
    worker(
        &b_dir,
        p,
        "b",
        "supervision:\n  max_consecutive_errors: 1\n  resume_after_ms: 300000\n",
        "  if e.payload.n >= 0 then error('broken on b') end",
    );
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    until_every_host_answers(&mut a, p, &["a", "b"], Duration::from_secs(20));
    // Jobs until one reaches B and suspends its copy.
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !b.events().iter().any(is("plughost.plugin.suspended")) {
        assert!(Instant::now() < deadline, "B's copy was never suspended");
        a.send(&json!({"topic": format!("{p}.job.warm"), "payload": {"n": 1000 + n}}));
        n += 1;
        b.read_for(Duration::from_millis(100));
    }
    // B left its group: every job from now on is A's.
    std::thread::sleep(Duration::from_millis(300));
    const JOBS: i64 = 100;
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    until_all_done(&mut a, p, JOBS, Duration::from_secs(20));
    let jobs: Vec<(i64, String)> = done(&a, p)
        .into_iter()
        .filter(|(n, _)| (0..JOBS).contains(n))
        .collect();
    assert_eq!(jobs.len() as i64, JOBS, "{:?}", per_host(&jobs));
    assert!(jobs.iter().all(|(_, h)| h == "a"), "{:?}", per_host(&jobs));
    b.read_for(Duration::from_millis(300));
    assert!(
        !b.events()
            .iter()
            .any(|e| e["topic"] == "plughost.dead_letter"
                && (0..JOBS)
                    .contains(&e["payload"]["event"]["payload"]["n"].as_i64().unwrap_or(-1))),
        "B got none of the jobs after it left"
    );
}
