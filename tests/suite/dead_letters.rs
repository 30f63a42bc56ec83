//! The dead-letter store (SPEC §15), end to end with the real binary:
//! `GET /dead_letters` lists what a plugin failed, a fixed plugin takes the
//! original event again through `plughost dead-letters replay` (alone: no
//! other subscriber sees it twice), the count bound of `admin.dead_letters`,
//! a payload over 1 MiB kept truncated and refused for replay, and a replay
//! refused while the plugin is disabled.

use std::time::Duration;

use serde_json::{Value, json};

use crate::admin::{request, wait_ready};
use crate::live::Live;
use crate::support::{Fixture, Runtime, free_port, run_binary};

/// Fails every event, naming its payload's `n`.
const FAILING: &str = "function on_event(e) error('cannot handle ' .. tostring(e.payload.n)) end\n";

/// Never suspended, whatever it fails: the tests count every dead letter.
const NEVER_SUSPENDED: &str = "supervision:\n  max_consecutive_errors: 0\n";

/// A host on `fx` with the admin endpoint on `port`, tapping `tap`.
fn host(fx: &Fixture, port: u16, tap: &str) -> Live {
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--tap", tap]);
    wait_ready(port, &[]);
    live
}

fn publish(port: u16, topic: &str, payload: Value) -> String {
    let answer = request(
        port,
        "POST",
        &format!("/events/{topic}"),
        &[],
        payload.to_string().as_bytes(),
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["id"].as_str().expect("an event id").to_owned()
}

fn letters(port: u16, query: &str) -> Vec<Value> {
    let answer = request(port, "GET", &format!("/dead_letters{query}"), &[], b"");
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body.as_array().expect("an array").clone()
}

/// Waits for the `plughost.dead_letter` event of event `event_id`; returns its id.
fn dead_letter_of(live: &mut Live, event_id: &str) -> String {
    let letter = live.wait_for("the dead letter", |e| {
        e["topic"] == "plughost.dead_letter" && e["payload"]["event"]["id"] == event_id
    });
    letter["id"].as_str().expect("a dead letter id").to_owned()
}

fn cli(port: u16, args: &[&str]) -> crate::support::Run {
    let addr = format!("127.0.0.1:{port}");
    let mut all = vec!["dead-letters"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--admin", &addr]);
    run_binary(&all, None)
}

#[test]
fn a_fixed_plugin_takes_its_dead_letter_again_and_alone() {
    let fx = Fixture::new();
    let entry = fx.plugin(
        Runtime::Lua,
        "picky",
        "subscriptions: [orders.*]\n",
        FAILING,
    );
    fx.plugin(
        Runtime::Lua,
        "watcher",
        "subscriptions: [orders.*]\n",
        "function on_event(e) bus.publish('seen.by_watcher', {id = e.id}) end\n",
    );
    let port = free_port();
    let mut live = host(&fx, port, ">");

    let event_id = publish(port, "orders.created", json!({"n": 7}));
    let letter_id = dead_letter_of(&mut live, &event_id);
    live.wait_for("the watcher's handling", |e| {
        e["topic"] == "seen.by_watcher" && e["payload"]["id"] == event_id.as_str()
    });

    let kept = letters(port, "");
    assert_eq!(kept.len(), 1, "{kept:?}");
    let l = &kept[0];
    assert_eq!(l["id"], letter_id.as_str());
    assert_eq!(l["plugin"], "picky");
    assert_eq!(l["event"]["id"], event_id.as_str());
    assert_eq!(l["event"]["topic"], "orders.created");
    assert_eq!(l["event"]["payload"], json!({"n": 7}));
    assert_eq!(l["attempts"], 1);
    assert_eq!(l["truncated"], false);
    let error = l["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("main.lua:1:") && error.contains("cannot handle 7"),
        "{error}"
    );
    assert_eq!(letters(port, "?plugin=picky").len(), 1);
    // The overview (the dashboard's and `top`'s source) carries it too.
    let overview = request(port, "GET", "/overview", &[], b"");
    assert_eq!(overview.status, 200, "{overview:?}");
    let shown = &overview.body["dead_letters"];
    assert_eq!(
        (shown["kept"].clone(), shown["total"].clone()),
        (json!(1), json!(1))
    );
    // Each summed up without the payload: the overview is resent every second.
    assert_eq!(
        shown["recent"],
        json!([{
            "id": letter_id,
            "plugin": "picky",
            "topic": "orders.created",
            "event_id": event_id,
            "error": l["error"],
            "attempts": 1,
            "at": l["at"],
            "truncated": false,
        }]),
        "{shown}"
    );
    let picky = overview.body["plugins"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == "picky"))
        .expect("picky in the overview");
    let last = picky["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("cannot handle 7"), "{picky}");
    assert!(letters(port, "?plugin=watcher").is_empty());

    let table = cli(port, &["list"]);
    assert_eq!(table.code, 0, "{table:?}");
    assert!(
        table.stdout.contains(&letter_id)
            && table.stdout.contains("picky")
            && table.stdout.contains("orders.created")
            && table.stdout.contains("cannot handle 7"),
        "{}",
        table.stdout
    );
    let listed = cli(port, &["list", "--json", "--plugin", "picky"]);
    let listed: Value = serde_json::from_str(listed.stdout.trim()).expect("JSON");
    assert_eq!(listed, json!(kept));

    // The fix, saved: live reload picks it up.
    std::fs::write(
        &entry,
        "function on_event(e) bus.publish('fixed.orders', {id = e.id, n = e.payload.n}) end\n",
    )
    .unwrap();
    live.wait_for("the fixed version", |e| {
        e["topic"] == "plughost.plugin.reloaded" && e["payload"]["plugin"] == "picky"
    });

    let replayed = cli(port, &["replay", &letter_id]);
    assert_eq!(replayed.code, 0, "{replayed:?}");
    assert_eq!(replayed.stdout.trim(), event_id);
    let fixed = live.wait_for("the fixed plugin's result", |e| {
        e["topic"] == "fixed.orders"
    });
    assert_eq!(fixed["payload"], json!({"id": event_id, "n": 7}));
    // Anything the replay would have sent elsewhere shows before an event
    // published after it: events to one plugin (and to the tap) keep their order.
    let sentinel = publish(port, "orders.created", json!({"n": 8}));
    live.wait_for("the watcher's handling of the event after", |e| {
        e["topic"] == "seen.by_watcher" && e["payload"]["id"] == sentinel.as_str()
    });
    let events = live.events();
    let seen = |topic: &str, id_at: &dyn Fn(&Value) -> &Value| {
        events
            .iter()
            .filter(|e| e["topic"] == topic && id_at(e) == event_id.as_str())
            .count()
    };
    assert_eq!(
        seen("seen.by_watcher", &|e| &e["payload"]["id"]),
        1,
        "the other subscriber saw it twice"
    );
    assert_eq!(
        seen("orders.created", &|e| &e["id"]),
        1,
        "the tap saw it twice"
    );
    assert!(
        letters(port, "").is_empty(),
        "the replayed letter is still kept"
    );

    let again = cli(port, &["replay", &letter_id]);
    assert_eq!(again.code, 1, "{again:?}");
    assert!(again.stderr.contains("no dead letter with id"), "{again:?}");
    let unknown = request(
        port,
        "POST",
        "/dead_letters/01NOSUCHLETTER/replay",
        &[],
        b"",
    );
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.body["error"].as_str().is_some(), "{unknown:?}");

    live.signal("TERM");
    live.finish();
}

#[test]
fn the_count_bound_keeps_the_newest_letters() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "failing",
        &format!("subscriptions: [jobs.*]\n{NEVER_SUSPENDED}"),
        FAILING,
    );
    let port = free_port();
    let conf = tempfile::tempdir().unwrap();
    let config = conf.path().join("plughost.yaml");
    std::fs::write(
        &config,
        format!("admin:\n  listen: 127.0.0.1:{port}\n  dead_letters: 3\n"),
    )
    .unwrap();
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &plugins,
        "--config",
        config.to_str().unwrap(),
        "--tap",
        ">",
    ]);
    wait_ready(port, &[]);
    let ids: Vec<String> = (1..=5)
        .map(|n| publish(port, "jobs.run", json!({"n": n})))
        .collect();
    for id in &ids {
        dead_letter_of(&mut live, id);
    }
    let kept = letters(port, "");
    let kept_ns: Vec<&Value> = kept.iter().map(|l| &l["event"]["payload"]["n"]).collect();
    assert_eq!(kept_ns, [&json!(3), &json!(4), &json!(5)], "{kept:?}");
    live.signal("TERM");
    live.finish();
}

#[test]
fn a_payload_over_one_mib_is_kept_truncated_and_not_replayed() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "maker",
        "subscriptions: [make.big]\n",
        "function on_event(e) bus.publish('blob.in', {data = string.rep('x', 1100000)}) end\n",
    );
    fx.plugin(Runtime::Lua, "sink", "subscriptions: [blob.in]\n", FAILING);
    let port = free_port();
    // The tap would print the megabyte twice: only the dead letters.
    let mut live = host(&fx, port, "plughost.dead_letter");
    publish(port, "make.big", json!({}));
    live.wait_for("the big dead letter", |e| {
        e["topic"] == "plughost.dead_letter" && e["payload"]["plugin"] == "sink"
    });

    let kept = letters(port, "");
    assert_eq!(kept.len(), 1, "{}", kept.len());
    let l = &kept[0];
    assert_eq!(l["truncated"], true);
    assert_eq!(l["event"]["topic"], "blob.in");
    let prefix = l["event"]["payload"].as_str().expect("a string prefix");
    assert!(
        prefix.starts_with("{\"data\":\"xxxx"),
        "{}",
        &prefix[..40.min(prefix.len())]
    );
    assert!(prefix.len() < 1024 * 1024, "{}", prefix.len());

    let id = l["id"].as_str().unwrap();
    let refused = request(
        port,
        "POST",
        &format!("/dead_letters/{id}/replay"),
        &[],
        b"",
    );
    assert_eq!(refused.status, 409, "{refused:?}");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("truncated"),
        "{refused:?}"
    );
    let cli_refused = cli(port, &["replay", id]);
    assert_eq!(cli_refused.code, 1, "{cli_refused:?}");
    assert!(cli_refused.stderr.contains("truncated"), "{cli_refused:?}");
    assert_eq!(
        letters(port, "").len(),
        1,
        "a refused replay keeps the letter"
    );
    live.signal("TERM");
    live.finish();
}

/// Asks for a retry every time, saying so first: each delivery shows.
const RETRYING: &str = "function on_event(e) bus.publish('tried.work', {n = e.payload.n}) return outcome.retry(1) end\n";

#[test]
fn a_replay_waits_for_a_disabled_plugin_and_a_failure_again_is_a_new_letter() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "flaky",
        &format!("subscriptions: [work.*]\nretry:\n  max_attempts: 2\n{NEVER_SUSPENDED}"),
        RETRYING,
    );
    let port = free_port();
    let mut live = host(&fx, port, ">");
    let event_id = publish(port, "work.item", json!({"n": 1}));
    let first = dead_letter_of(&mut live, &event_id);
    assert_eq!(letters(port, "")[0]["attempts"], 2);

    let disabled = request(port, "POST", "/plugins/flaky/disable", &[], b"");
    assert_eq!(disabled.status, 200, "{disabled:?}");
    let refused = request(
        port,
        "POST",
        &format!("/dead_letters/{first}/replay"),
        &[],
        b"",
    );
    assert_eq!(refused.status, 409, "{refused:?}");
    let message = refused.body["error"].as_str().unwrap_or_default();
    assert!(message.contains("`flaky` is disabled"), "{message}");
    assert_eq!(
        letters(port, "").len(),
        1,
        "a refused replay keeps the letter"
    );

    let enabled = request(port, "POST", "/plugins/flaky/enable", &[], b"");
    assert_eq!(enabled.status, 200, "{enabled:?}");
    let replayed = request(
        port,
        "POST",
        &format!("/dead_letters/{first}/replay"),
        &[],
        b"",
    );
    assert_eq!(replayed.status, 200, "{replayed:?}");
    assert_eq!(
        replayed.body,
        json!({"id": first, "plugin": "flaky", "event_id": event_id})
    );
    // Still failing: the same event is a new dead letter, with a new id,
    // after as many deliveries as the first time (the count starts again).
    let second = live.wait_for("the second dead letter", |e| {
        e["topic"] == "plughost.dead_letter"
            && e["payload"]["event"]["id"] == event_id.as_str()
            && e["id"] != first.as_str()
    });
    let tries = live
        .events()
        .iter()
        .filter(|e| e["topic"] == "tried.work")
        .count();
    assert_eq!(tries, 4, "two deliveries, then two again after the replay");
    let kept = letters(port, "");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0]["id"], second["id"]);
    assert_eq!(kept[0]["attempts"], 2);
    live.signal("TERM");
    live.finish();
}

/// The embedding API: `Host::dead_letters()` lists, `Host::replay_dead_letter`
/// answers each refusal as a typed [`ReplayError`], the bounds are set on
/// the store, and a host that shut down replays nothing.
#[test]
fn an_application_lists_and_replays_through_the_host() {
    use futures::StreamExt;
    use plughost::Host;
    use plughost::dead_letters::{Limits, ReplayError};

    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "flaky",
        &format!("subscriptions: [work.*]\n{NEVER_SUSPENDED}"),
        FAILING,
    );
    crate::support::tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        host.dead_letters().set_limits(Limits {
            count: 2,
            max_bytes: 1024 * 1024,
        });
        let mut letters_seen = host.subscribe("plughost.dead_letter").unwrap();
        host.start().await;
        let mut event_ids = Vec::new();
        for n in 1..=3 {
            event_ids.push(host.publish("work.item", json!({"n": n})).await.unwrap());
        }
        for _ in 0..3 {
            tokio::time::timeout(crate::live::LIMIT, letters_seen.next())
                .await
                .expect("a dead letter in time")
                .expect("stream open");
        }
        let kept = host.dead_letters().list(Some("flaky"));
        let kept_events: Vec<&str> = kept.iter().map(|l| l.event.id.as_str()).collect();
        assert_eq!(
            kept_events,
            [&event_ids[1], &event_ids[2]],
            "the newest two"
        );
        assert_eq!(host.dead_letters().counts(), (2, 3));

        assert_eq!(
            host.replay_dead_letter("nope").await,
            Err(ReplayError::Unknown("nope".into()))
        );
        host.set_enabled("flaky", false, false).await.unwrap();
        let id = kept[0].id.clone();
        match host.replay_dead_letter(&id).await {
            Err(ReplayError::NotRunning { plugin, state, .. }) => {
                assert_eq!((plugin.as_str(), state), ("flaky", "disabled"));
            }
            other => panic!("{other:?}"),
        }
        host.set_enabled("flaky", true, false).await.unwrap();
        let done = host.replay_dead_letter(&id).await.expect("replayed");
        assert_eq!(done.event_id, event_ids[1]);
        assert!(host.dead_letters().get(&id).is_none());

        host.shutdown(Duration::from_secs(5)).await;
        let left = host.dead_letters().list(None);
        let any = left.first().expect("the replay failed again: a new letter");
        assert_eq!(
            host.replay_dead_letter(&any.id).await,
            Err(ReplayError::ShuttingDown)
        );
    });
}

/// Fails an event asking to, else busy-waits `hold` ms.
const HOLDING: &str = r#"
function on_event(e)
  if e.payload.fail then error('cannot handle') end
  local t = time.now_ms()
  while time.now_ms() - t < e.payload.hold do end
end
"#;

/// A replay or a publish waiting for room in a full `block` queue whose
/// caller gives up (a dropped future, as an HTTP client that hangs up):
/// the letter stays kept, and nothing is left counted pending, so the host
/// goes idle and drains at once.
#[test]
fn a_replay_or_publish_given_up_while_waiting_keeps_the_letter_and_leaks_nothing() {
    use futures::StreamExt;
    use plughost::Host;

    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "slow",
        &format!(
            "subscriptions: [work.*]\nlimits:\n  queue: 1\n  overflow: block\n  event_timeout_ms: 20000\n{NEVER_SUSPENDED}"
        ),
        HOLDING,
    );
    crate::support::tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut letters_seen = host.subscribe("plughost.dead_letter").unwrap();
        host.start().await;
        host.publish("work.item", json!({"fail": true}))
            .await
            .unwrap();
        tokio::time::timeout(crate::live::LIMIT, letters_seen.next())
            .await
            .expect("a dead letter in time")
            .expect("stream open");
        let id = host.dead_letters().list(None)[0].id.clone();

        // One event being handled for 1.5 s, one filling the queue.
        host.publish("work.item", json!({"hold": 1500}))
            .await
            .unwrap();
        host.publish("work.item", json!({"hold": 0})).await.unwrap();
        let short = Duration::from_millis(200);
        let replay = tokio::time::timeout(short, host.replay_dead_letter(&id)).await;
        assert!(replay.is_err(), "the queue was full: {replay:?}");
        assert!(
            host.dead_letters().get(&id).is_some(),
            "a replay given up lost its letter"
        );
        let publish =
            tokio::time::timeout(short, host.publish("work.item", json!({"hold": 0}))).await;
        assert!(publish.is_err(), "the queue was full: {publish:?}");

        tokio::time::timeout(crate::live::LIMIT, host.wait_idle())
            .await
            .expect("idle once the queued events are handled: nothing leaked pending");
        assert_eq!(host.pending(), 0);
        let done = host.replay_dead_letter(&id).await.expect("replayed now");
        assert_eq!(done.id, id);
        let report = host.shutdown(Duration::from_secs(10)).await;
        assert!(report.drained, "{report:?}");
    });
}
