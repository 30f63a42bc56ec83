//! Stored delivery (SPEC §14, `cluster.jetstream`): a shared plugin consumes
//! stored topics through a durable consumer; its outcome is the
//! acknowledgement, and a host killed mid-stream loses nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::shared::{host_with, until_all_done, until_every_host_answers, worker};
use super::*;
use crate::live::Live;

/// The `cluster:` lines storing `prefix.job.>` in stream `stream`.
fn jetstream(stream: &str, prefix: &str) -> String {
    format!("  jetstream:\n    stream: {stream}\n    topics: ['{prefix}.job.>']\n")
}

/// The `prefix.done` payloads seen so far.
fn done_payloads(live: &Live, prefix: &str) -> Vec<Value> {
    let topic = format!("{prefix}.done");
    live.events()
        .into_iter()
        .filter(|e| e["topic"] == topic.as_str())
        .map(|e| e["payload"].clone())
        .filter(|p| p["n"].as_i64().is_some_and(|n| n >= 0))
        .collect()
}

#[test]
fn the_outcome_acknowledges_retries_through_the_stream_and_terminates_a_dead_letter() {
    let nats = shared();
    let p = "js1";
    let js = jetstream("JSONE", p);
    let (a_dir, a_conf) = host_with("a", &nats.url(), p, &js);
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, &js);
    // Every job ending in 3 asks for a retry on its first delivery; job 7 is refused.
    // Job 5 is answered with `outcome.reply` (acknowledged like any handled event).
    let body = "  if e.payload.n % 10 == 3 and e.headers.delivery_attempt == '1' then return outcome.retry(100) end\n  \
                if e.payload.n == 7 then return outcome.drop('seven is refused') end\n  \
                if e.payload.n == 5 then\n    \
                  bus.publish('js1.done', {n = 5, host = config.host, attempt = e.headers.delivery_attempt, id = e.id})\n    \
                  return outcome.reply({})\n  \
                end";
    worker(&a_dir, p, "a", "", body);
    worker(&b_dir, p, "b", "", body);
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    until_every_host_answers(&mut a, p, &["a", "b"], Duration::from_secs(20));

    const JOBS: i64 = 40;
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    // Every job but 7 is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen: BTreeSet<i64> = done_payloads(&a, p)
            .iter()
            .filter_map(|d| d["n"].as_i64())
            .collect();
        if seen.len() as i64 == JOBS - 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs not done: {:?}",
            (0..JOBS).filter(|n| !seen.contains(n)).collect::<Vec<_>>()
        );
        a.read_for(Duration::from_millis(100));
    }
    // A redelivery or a second dead letter would show within this.
    a.read_for(Duration::from_millis(1500));
    b.read_for(Duration::from_millis(100));

    let done = done_payloads(&a, p);
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &done {
        *times.entry(d["n"].as_i64().unwrap()).or_default() += 1;
        let n = d["n"].as_i64().unwrap();
        let attempt = if n % 10 == 3 { "2" } else { "1" };
        assert_eq!(d["attempt"], attempt, "job {n}'s delivery: {d}");
    }
    assert!(
        times.values().all(|&t| t == 1),
        "each job acknowledged once: {times:?}"
    );
    assert!(!times.contains_key(&7));
    let letters: Vec<Value> = a
        .events()
        .into_iter()
        .chain(b.events())
        .filter(|e| {
            e["topic"] == "plughost.dead_letter" && e["payload"]["event"]["payload"]["n"] == 7
        })
        .collect();
    assert_eq!(
        letters.len(),
        1,
        "terminated, never redelivered: {letters:#?}"
    );
    assert_eq!(letters[0]["payload"]["error"], "seven is refused");
    assert_eq!(
        letters[0]["payload"]["event"]["headers"]["delivery_attempt"],
        "1"
    );
    // The server holds nothing unsettled: every delivery was acked or terminated.
    let (pending, waiting) = consumer_backlog(&nats.url(), "JSONE", "worker");
    assert_eq!((pending, waiting), (0, 0), "ack pending, not delivered");
}

/// The consumer's deliveries not settled yet and messages not delivered yet,
/// as the server counts them.
fn consumer_backlog(url: &str, stream: &str, consumer: &str) -> (usize, u64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let js = async_nats::jetstream::new(client);
        let stream = js.get_stream(stream).await.unwrap();
        let info = stream.consumer_info(consumer).await.unwrap();
        (info.num_ack_pending, info.num_pending)
    })
}

#[test]
fn a_host_killed_mid_stream_loses_nothing_its_deliveries_come_again_with_their_attempt() {
    let nats = shared();
    let p = "js2";
    let js = jetstream("JSKILL", p);
    // A publishes and watches; B and C share the worker, each job taking a while.
    let (_a_dir, a_conf) = host_with("a", &nats.url(), p, &js);
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, &js);
    let (c_dir, c_conf) = host_with("c", &nats.url(), p, &js);
    let slow = "  local t = os.clock()\n  while os.clock() - t < 0.005 do end";
    worker(&b_dir, p, "b", "", slow);
    worker(&c_dir, p, "c", "", slow);
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    let mut c = spawn(&c_conf);
    for live in [&mut a, &mut b, &mut c] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    until_every_host_answers(&mut a, p, &["b", "c"], Duration::from_secs(20));

    const JOBS: i64 = 300;
    let mut ids = BTreeMap::new();
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    // Kill B once it has done some of the work, while it holds more.
    let deadline = Instant::now() + Duration::from_secs(20);
    while done_payloads(&a, p)
        .iter()
        .filter(|d| d["host"] == "b")
        .count()
        < 20
    {
        assert!(Instant::now() < deadline, "B never got going");
        a.read_for(Duration::from_millis(20));
    }
    b.signal("KILL");
    let _ = b.finish();
    // What B held unacknowledged comes again, to C, after the stream's ack wait.
    until_all_done(&mut a, p, JOBS, Duration::from_secs(60));
    a.read_for(Duration::from_millis(500));

    for e in a.events() {
        if e["topic"] == format!("{p}.job.x").as_str() {
            ids.insert(e["payload"]["n"].as_i64().unwrap(), e["id"].clone());
        }
    }
    let done = done_payloads(&a, p);
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &done {
        let n = d["n"].as_i64().unwrap();
        *times.entry(n).or_default() += 1;
        assert_eq!(d["id"], ids[&n], "a redelivery keeps the event's id: {d}");
    }
    assert_eq!(times.len() as i64, JOBS, "every job handled at least once");
    let duplicates: usize = times.values().map(|t| t - 1).sum();
    let again: Vec<&Value> = done
        .iter()
        .filter(|d| d["attempt"].as_str().is_some_and(|a| a != "1"))
        .collect();
    println!(
        "{JOBS} jobs, {} handlings, {duplicates} handled twice (at-least-once), {} redelivered",
        done.len(),
        again.len()
    );
    assert!(
        !again.is_empty(),
        "B held deliveries when it died: they came again, saying so"
    );
    assert!(
        again.iter().all(|d| d["host"] == "c"),
        "redelivered to the host still running"
    );
}

#[test]
fn a_suspended_member_hands_its_stored_deliveries_back_to_the_others() {
    let nats = shared();
    let p = "js3";
    let js = jetstream("JSBACK", p);
    let (a_dir, a_conf) = host_with("a", &nats.url(), p, &js);
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, &js);
    let slow = "  local t = os.clock()\n  while os.clock() - t < 0.002 do end";
    worker(&a_dir, p, "a", "", slow);
    // B's copy fails its first real job and is suspended, holding others.
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
    const JOBS: i64 = 200;
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    b.wait_for("B suspended", is("plughost.plugin.suspended"));
    // Every job but the one B failed is done, by A, well before the
    // stream's ack wait would have redelivered what B held.
    let deadline = Instant::now() + Duration::from_secs(8);
    let failed = b.wait_for("B's dead letter", is("plughost.dead_letter"))["payload"]["event"]
        ["payload"]["n"]
        .as_i64()
        .unwrap();
    loop {
        let seen: BTreeSet<i64> = done_payloads(&a, p)
            .iter()
            .filter_map(|d| d["n"].as_i64())
            .collect();
        if seen.len() as i64 == JOBS - 1 {
            assert!(!seen.contains(&failed));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs not done within 8 s: {:?}",
            (0..JOBS)
                .filter(|n| !seen.contains(n) && *n != failed)
                .collect::<Vec<_>>()
        );
        a.read_for(Duration::from_millis(100));
    }
    b.read_for(Duration::from_millis(300));
    let letters = b
        .events()
        .into_iter()
        .filter(|e| e["topic"] == "plughost.dead_letter")
        .count();
    assert_eq!(letters, 1, "only the failed job is a dead letter");
}

#[test]
fn stored_events_wait_for_a_server_that_went_away_and_none_is_dropped() {
    let nats = Nats::start();
    let p = "js4";
    let js = jetstream("JSDOWN", p);
    // A's buffer is small: its stored events wait for room, never dropped.
    let (_a_dir, a_conf) = host_with("a", &nats.url(), p, &format!("{js}  buffer: 5\n"));
    let (b_dir, b_conf) = host_with("b", &nats.url(), p, &js);
    worker(&b_dir, p, "b", "", "");
    let mut a = spawn(&a_conf);
    let mut b = spawn(&b_conf);
    for live in [&mut a, &mut b] {
        live.wait_for("connected", is("plughost.cluster.connected"));
    }
    until_every_host_answers(&mut a, p, &["b"], Duration::from_secs(20));
    let (port, store) = nats.stop();
    a.wait_for("disconnected", is("plughost.cluster.disconnected"));
    // Four times the buffer, while the server is away: the publisher waits.
    const JOBS: i64 = 20;
    for n in 0..JOBS {
        a.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    std::thread::sleep(Duration::from_millis(500));
    let _nats = Nats::start_on(port, store);
    until_all_done(&mut a, p, JOBS, Duration::from_secs(30));
    a.signal("TERM");
    let run = a.finish();
    assert!(
        !run.stderr.contains("export buffer full"),
        "no stored event was dropped: {}",
        run.stderr
    );
    drop(b);
}

#[test]
fn a_stored_event_handled_directly_while_the_server_was_away_is_not_handled_again() {
    let nats = Nats::start();
    let p = "js5";
    let (dir, conf) = host_with("solo", &nats.url(), p, &jetstream("JSAWAY", p));
    worker(&dir, p, "solo", "", "");
    let mut h = spawn(&conf);
    h.wait_for("connected", is("plughost.cluster.connected"));
    until_every_host_answers(&mut h, p, &["solo"], Duration::from_secs(20));
    let (port, store) = nats.stop();
    h.wait_for("disconnected", is("plughost.cluster.disconnected"));
    // Out of its group, the shared plugin takes its host's events directly.
    const JOBS: i64 = 10;
    for n in 0..JOBS {
        h.send(&json!({"topic": format!("{p}.job.x"), "payload": {"n": n}}));
    }
    until_all_done(&mut h, p, JOBS, Duration::from_secs(20));
    // The server comes back: the events reach the stream, and the
    // plugin's consumer does not handle them a second time.
    let _nats = Nats::start_on(port, store);
    let deadline = Instant::now() + Duration::from_secs(20);
    while h
        .events()
        .iter()
        .filter(|e| is("plughost.cluster.connected")(e))
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "never connected again");
        h.read_for(Duration::from_millis(100));
    }
    // Time for the consumer to pull what the stream now holds.
    h.read_for(Duration::from_secs(3));
    let done = done_payloads(&h, p);
    let mut times: BTreeMap<i64, usize> = BTreeMap::new();
    for d in &done {
        *times.entry(d["n"].as_i64().unwrap()).or_default() += 1;
    }
    assert_eq!(times.len() as i64, JOBS);
    assert!(times.values().all(|&t| t == 1), "handled twice: {times:?}");
}
