//! SPEC §12 supervision: suspension after errors in a row, half-open trials,
//! resumption by a saved fix or `enable`, crash restarts with `state` kept,
//! stopped for good after too many, for every runtime.

use std::time::{Duration, Instant};

use futures::StreamExt;
use plughost::{EventStream, Host};
use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev, tokio_rt};

/// Raises when the payload says `fail`; otherwise publishes `ok` with the
/// number of events seen so far (kept in `state`).
const RAISE: Src = Src {
    lua: r#"
function on_event(e)
  state.before = (state.before or 0) + 1
  if e.payload.fail then error("raised on purpose") end
  bus.publish("ok", { before = state.before })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.before = (state.before ?? 0) + 1;
  if e.payload.fail == true { throw "raised on purpose"; }
  bus::publish("ok", #{ before: state.before });
}
"#,
    native: Some("raise"),
};

/// The next event on `stream`, waiting at most 10 s.
async fn next(stream: &mut EventStream, what: &str) -> std::sync::Arc<plughost::Event> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 10 s"))
        .unwrap_or_else(|| panic!("the stream ended before {what}"))
}

fn errors_in_a_row_suspend_and_exit_dead_letters_the_waiting_events(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 3, resume_after_ms: 60000}\n",
        RAISE.get(rt),
    );
    fx.plugin(
        Runtime::Lua,
        "neighbour",
        "subscriptions: [in]\n",
        "function on_event(e) bus.publish('neighbour.seen', {}) end",
    );
    let mut input = vec![ev("in", json!({"fail": false}))];
    input.extend((0..3).map(|_| ev("in", json!({"fail": true}))));
    input.extend((0..4).map(|n| ev("in", json!({"fail": false, "n": n}))));
    let started = Instant::now();
    let run = fx.run(&input);
    // --exit-when-idle does not wait a minute for the trial.
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");
    run.expect_code(0);
    assert_eq!(run.payloads("neighbour.seen").len(), 8, "{run}");
    assert_eq!(run.payloads("ok").len(), 1, "{run}");
    let suspended = run.payloads("plughost.plugin.suspended");
    assert_eq!(suspended.len(), 1, "{run}");
    assert_eq!(suspended[0]["plugin"], "p");
    assert_eq!(suspended[0]["errors"], 3);
    assert!(
        suspended[0]["error"]
            .as_str()
            .unwrap()
            .contains("raised on purpose"),
        "{run}"
    );
    // Three errors dead-lettered as always, then the four waiting events as
    // `suspended`: every event is accounted for.
    let dl: Vec<Value> = run
        .dead_letters()
        .into_iter()
        .filter(|d| d["plugin"] == "p")
        .collect();
    assert_eq!(dl.len(), 7, "{run}");
    assert!(
        dl[..3]
            .iter()
            .all(|d| d["event"]["payload"]["fail"] == true)
    );
    assert!(dl[3..].iter().all(|d| d["error"] == "suspended"), "{run}");
    let waiting: Vec<&Value> = dl[3..]
        .iter()
        .map(|d| &d["event"]["payload"]["n"])
        .collect();
    assert_eq!(waiting, [0, 1, 2, 3]);
}

fn a_trial_event_resumes_the_plugin(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 2, resume_after_ms: 300}\n",
        RAISE.get(rt),
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut life = host
            .subscribe_all(&["plughost.plugin.suspended", "plughost.plugin.resumed"])
            .unwrap();
        let mut ok = host.subscribe("ok").unwrap();
        host.start().await;
        host.publish("in", json!({"fail": true})).await.unwrap();
        host.publish("in", json!({"fail": true})).await.unwrap();
        let suspended = next(&mut life, "the suspension").await;
        assert_eq!(suspended.topic, "plughost.plugin.suspended");
        let at = Instant::now();
        // Waits in the queue: no output until the trial.
        host.publish("in", json!({"fail": false, "n": 1}))
            .await
            .unwrap();
        host.publish("in", json!({"fail": false, "n": 2}))
            .await
            .unwrap();
        let resumed = next(&mut life, "the resumption").await;
        assert_eq!(resumed.topic, "plughost.plugin.resumed");
        assert_eq!(resumed.payload["by"], "trial");
        assert!(
            at.elapsed() >= Duration::from_millis(200),
            "{:?}",
            at.elapsed()
        );
        // The trial was the oldest waiting event; the other follows.
        let first = next(&mut ok, "the trial's output").await;
        let second = next(&mut ok, "the next output").await;
        assert_eq!(first.payload["before"], 3);
        assert_eq!(second.payload["before"], 4);
        let stats = host.stats("p").unwrap();
        assert_eq!(stats.health(), plughost::Health::Running);
        assert_eq!(stats.errors.load(std::sync::atomic::Ordering::Relaxed), 2);
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
    });
}

fn a_failed_trial_doubles_the_wait(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 1, resume_after_ms: 200}\n",
        RAISE.get(rt),
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut dead = host.subscribe("plughost.dead_letter").unwrap();
        let mut life = host.subscribe("plughost.plugin.resumed").unwrap();
        host.start().await;
        host.publish("in", json!({"fail": true})).await.unwrap();
        next(&mut dead, "the first error").await;
        let suspended_at = Instant::now();
        // The trial fails: dead-lettered, and the next trial waits 400 ms.
        host.publish("in", json!({"fail": true, "trial": 1}))
            .await
            .unwrap();
        let trial = next(&mut dead, "the failed trial").await;
        assert_eq!(trial.payload["event"]["payload"]["trial"], 1);
        let first_trial = suspended_at.elapsed();
        assert!(first_trial >= Duration::from_millis(150), "{first_trial:?}");
        let failed_at = Instant::now();
        host.publish("in", json!({"fail": false})).await.unwrap();
        next(&mut life, "the resumption").await;
        let second_wait = failed_at.elapsed();
        assert!(second_wait >= Duration::from_millis(350), "{second_wait:?}");
        host.shutdown(Duration::from_secs(5)).await;
    });
}

fn a_saved_fix_resumes_and_the_waiting_events_go_to_the_new_version(rt: Runtime) {
    let fx = Fixture::new();
    let manifest =
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 2, resume_after_ms: 300000}\n";
    fx.plugin(rt, "p", manifest, RAISE.get(rt));
    // A script's fix is saved; a native plugin's is a new build, which
    // `native_reload.rs` makes: here the same library is loaded again.
    let (fixed, topic) = match rt {
        Runtime::Lua => (
            Some("function on_event(e) bus.publish('fixed', { n = e.payload.n }) end"),
            "fixed",
        ),
        Runtime::Rhai => (
            Some("fn on_event(e) { bus::publish(\"fixed\", #{ n: e.payload.n }); }"),
            "fixed",
        ),
        Runtime::Native => (None, "ok"),
    };
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut life = host
            .subscribe_all(&["plughost.plugin.suspended", "plughost.plugin.resumed"])
            .unwrap();
        let mut out = host.subscribe(topic).unwrap();
        host.start().await;
        let watch = host.watch().unwrap();
        host.publish("in", json!({"fail": true})).await.unwrap();
        host.publish("in", json!({"fail": true})).await.unwrap();
        next(&mut life, "the suspension").await;
        for n in 0..5 {
            host.publish("in", json!({"n": n})).await.unwrap();
        }
        match fixed {
            Some(src) => {
                fx.file(&format!("p/{}", rt.entry()), src);
            }
            None => {
                let outcome = host.reload_plugin("p").await;
                assert_eq!(outcome, Some(plughost::reload::ReloadOutcome::Reloaded));
            }
        }
        let resumed = next(&mut life, "the resumption").await;
        assert_eq!(resumed.payload["by"], "reload");
        for n in 0..5 {
            let e = next(&mut out, "a waiting event").await;
            if fixed.is_some() {
                assert_eq!(e.payload["n"], n);
            }
        }
        watch.stop().await;
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
    });
}

fn enable_resumes_a_suspended_plugin(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nsupervision: {max_consecutive_errors: 1, resume_after_ms: 300000}\n",
        RAISE.get(rt),
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut life = host
            .subscribe_all(&["plughost.plugin.suspended", "plughost.plugin.resumed"])
            .unwrap();
        let mut ok = host.subscribe("ok").unwrap();
        host.start().await;
        host.publish("in", json!({"fail": true})).await.unwrap();
        next(&mut life, "the suspension").await;
        host.publish("in", json!({"fail": false})).await.unwrap();
        assert_eq!(
            host.stats("p").unwrap().health(),
            plughost::Health::Suspended
        );
        host.set_enabled("p", true, false).await.unwrap();
        let resumed = next(&mut life, "the resumption").await;
        assert_eq!(resumed.payload["by"], "enable");
        assert_eq!(
            next(&mut ok, "the waiting event").await.payload["before"],
            2
        );
        host.shutdown(Duration::from_secs(5)).await;
    });
}

fn a_full_queue_of_a_suspended_plugin_dead_letters_instead_of_blocking(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {queue: 2, overflow: block}\nsupervision: {max_consecutive_errors: 1, resume_after_ms: 300000}\n",
        RAISE.get(rt),
    );
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut life = host.subscribe("plughost.plugin.suspended").unwrap();
        let mut dead = host.subscribe("plughost.dead_letter").unwrap();
        host.start().await;
        host.publish("in", json!({"fail": true})).await.unwrap();
        next(&mut life, "the suspension").await;
        next(&mut dead, "the error's dead letter").await;
        // Two wait; the next three would block a publisher: refused at once.
        let publishing = async {
            for n in 0..5 {
                host.publish("in", json!({"n": n})).await.unwrap();
            }
        };
        tokio::time::timeout(Duration::from_secs(5), publishing)
            .await
            .expect("publishers never wait for a suspended plugin");
        for n in 2..5 {
            let d = next(&mut dead, "a refused event").await;
            assert_eq!(d.payload["error"], "suspended");
            assert_eq!(d.payload["event"]["payload"]["n"], n);
        }
        // Idle does not wait for the two parked events; shutdown
        // dead-letters them.
        tokio::time::timeout(Duration::from_secs(5), host.wait_idle())
            .await
            .expect("parked events do not keep the host busy");
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
        for n in 0..2 {
            let d = next(&mut dead, "a parked event at shutdown").await;
            assert_eq!(d.payload["error"], "suspended");
            assert_eq!(d.payload["event"]["payload"]["n"], n);
        }
    });
}

behaviours! {
    errors_in_a_row_suspend_and_exit_dead_letters_the_waiting_events [Native],
    a_trial_event_resumes_the_plugin [Native],
    a_failed_trial_doubles_the_wait [Native],
    a_saved_fix_resumes_and_the_waiting_events_go_to_the_new_version [Native],
    enable_resumes_a_suspended_plugin [Native],
    a_full_queue_of_a_suspended_plugin_dead_letters_instead_of_blocking [Native],
}

// ---------------------------------------------------------------- crashes

/// Counts events in `state`; crashes when the payload says so: a script
/// calls the application's `crash` function (which panics: the interpreter
/// is retired), a native plugin calls `plughost_sdk::fatal`.
const CRASHY: Src = Src {
    lua: r#"
function on_event(e)
  state.count = (state.count or 0) + 1
  if e.payload.crash then host.crash() end
  bus.publish("counted", { count = state.count })
end
"#,
    rhai: r#"
fn on_event(e) {
  state.count = (state.count ?? 0) + 1;
  if e.payload.crash == true { host::crash(); }
  bus::publish("counted", #{ count: state.count });
}
"#,
    native: Some("crashy"),
};

fn crashing_host(fx: &Fixture) -> Host {
    Host::builder()
        .plugins_dir(fx.path())
        .function("crash", |_| panic!("the application's function panicked"))
        .build()
        .unwrap()
}

fn a_crash_restarts_the_plugin_with_its_state(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", CRASHY.get(rt));
    tokio_rt().block_on(async {
        let host = crashing_host(&fx);
        let mut restarted = host.subscribe("plughost.plugin.restarted").unwrap();
        let mut counted = host.subscribe("counted").unwrap();
        let mut dead = host.subscribe("plughost.dead_letter").unwrap();
        host.start().await;
        host.publish("in", json!({})).await.unwrap();
        assert_eq!(
            next(&mut counted, "the first count").await.payload["count"],
            1
        );
        let crashed_at = Instant::now();
        let crash_id = host.publish("in", json!({"crash": true})).await.unwrap();
        host.publish("in", json!({})).await.unwrap();
        let r = next(&mut restarted, "the restart").await;
        assert_eq!(r.payload["plugin"], "p");
        assert_eq!(r.payload["restarts"], 1);
        let error = r.payload["error"].as_str().unwrap();
        assert!(
            error.contains("panicked") || error.contains("cannot go on: asked to crash"),
            "{r:?}"
        );
        assert!(crashed_at.elapsed() >= Duration::from_millis(90));
        // The event in flight is dead-lettered; the state of the crashed
        // hook's changes is kept (2), the next event counts on from there.
        let d = next(&mut dead, "the crashed event's dead letter").await;
        assert_eq!(d.payload["event"]["id"], crash_id.as_str());
        assert!(d.payload["error"].as_str().unwrap().contains("crashed"));
        assert_eq!(
            next(&mut counted, "a count after the restart")
                .await
                .payload["count"],
            3
        );
        let stats = host.stats("p").unwrap();
        assert_eq!(stats.restarts.load(std::sync::atomic::Ordering::Relaxed), 1);
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
    });
}

fn too_many_crashes_stop_the_plugin_for_good(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nsupervision: {max_restarts: 2, window_s: 60}\n",
        CRASHY.get(rt),
    );
    tokio_rt().block_on(async {
        let host = crashing_host(&fx);
        let mut life = host
            .subscribe_all(&["plughost.plugin.restarted", "plughost.plugin.failed"])
            .unwrap();
        let mut dead = host.subscribe("plughost.dead_letter").unwrap();
        host.start().await;
        for _ in 0..3 {
            host.publish("in", json!({"crash": true})).await.unwrap();
        }
        // Waiting behind the crashes: dead-lettered when it gives up.
        host.publish("in", json!({"waiting": true})).await.unwrap();
        assert_eq!(next(&mut life, "a restart").await.payload["restarts"], 1);
        assert_eq!(next(&mut life, "a restart").await.payload["restarts"], 2);
        let failed = next(&mut life, "the end").await;
        assert_eq!(failed.topic, "plughost.plugin.failed");
        assert_eq!(failed.payload["reason"], "restarts");
        let mut letters = Vec::new();
        for _ in 0..4 {
            letters.push(next(&mut dead, "a dead letter").await);
        }
        assert!(
            letters
                .iter()
                .any(|d| d.payload["event"]["payload"]["waiting"] == true
                    && d.payload["error"]
                        .as_str()
                        .unwrap()
                        .contains("stopped for good")),
            "{letters:?}"
        );
        assert_eq!(host.stats("p").unwrap().health(), plughost::Health::Failed);
        // An operator's `enable` starts it again, from its files.
        let mut counted = host.subscribe("counted").unwrap();
        host.set_enabled("p", true, false).await.unwrap();
        assert_eq!(host.stats("p").unwrap().health(), plughost::Health::Running);
        host.publish("in", json!({})).await.unwrap();
        next(&mut counted, "an event after the restart").await;
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
    });
}

fn disable_and_enable_keep_state_and_counts(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", RAISE.get(rt));
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut ok = host.subscribe("ok").unwrap();
        host.start().await;
        host.publish("in", json!({})).await.unwrap();
        host.publish("in", json!({})).await.unwrap();
        next(&mut ok, "an output").await;
        next(&mut ok, "an output").await;
        host.set_enabled("p", false, false).await.unwrap();
        host.set_enabled("p", true, false).await.unwrap();
        host.publish("in", json!({})).await.unwrap();
        assert_eq!(
            next(&mut ok, "an output after enable").await.payload["before"],
            3
        );
        let acked = host
            .stats("p")
            .unwrap()
            .acked
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(acked, 3);
        host.shutdown(Duration::from_secs(5)).await;
    });
}

/// Calls the application's `block` function, which never returns in time,
/// when the payload says `stuck`: the call ignores its time limit. The
/// native fixture loops in its own code.
const STUCK: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.stuck then
    host.block()
    bus.publish("late", {})
  end
  bus.publish("handled", { n = e.payload.n })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.stuck == true {
    host::block();
    bus::publish("late", #{});
  }
  bus::publish("handled", #{ n: e.payload.n });
}
"#,
    native: Some("stuck"),
};

fn a_call_that_ignores_its_time_limit_is_abandoned_and_the_plugin_restarted(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        "subscriptions: [in]\nlimits: {event_timeout_ms: 100}\n",
        STUCK.get(rt),
    );
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("block", |_| {
                std::thread::sleep(Duration::from_millis(2500));
                Ok(Value::Null)
            })
            .build()
            .unwrap();
        let mut restarted = host.subscribe("plughost.plugin.restarted").unwrap();
        let mut handled = host.subscribe("handled").unwrap();
        let mut dead = host.subscribe("plughost.dead_letter").unwrap();
        let mut late = host.subscribe("late").unwrap();
        host.start().await;
        let stuck_at = Instant::now();
        let stuck_id = host
            .publish("in", json!({"stuck": true, "late": true, "n": 0}))
            .await
            .unwrap();
        host.publish("in", json!({"n": 1})).await.unwrap();
        host.publish("in", json!({"n": 2})).await.unwrap();
        let r = next(&mut restarted, "the restart").await;
        assert!(
            r.payload["error"].as_str().unwrap().contains("abandoned"),
            "{r:?}"
        );
        let d = next(&mut dead, "the stuck event's dead letter").await;
        assert_eq!(d.payload["event"]["id"], stuck_id.as_str());
        // The events behind it go to the new thread.
        assert_eq!(next(&mut handled, "an event after").await.payload["n"], 1);
        assert_eq!(next(&mut handled, "an event after").await.payload["n"], 2);
        // The abandoned thread comes back from its call at 2.5 s: what it
        // asks then is refused (its event was dead-lettered already).
        let until = stuck_at + Duration::from_millis(3500);
        let came = tokio::time::timeout_at(until.into(), late.next()).await;
        assert!(came.is_err(), "an abandoned call published: {came:?}");
        let at = Instant::now();
        let report = host.shutdown(Duration::from_secs(5)).await;
        assert!(report.undelivered.is_empty(), "{report:?}");
        assert!(at.elapsed() < Duration::from_secs(5), "{:?}", at.elapsed());
    });
}

mod crashes {
    use super::*;

    behaviours! {
        a_crash_restarts_the_plugin_with_its_state [Native],
        too_many_crashes_stop_the_plugin_for_good [Native],
        disable_and_enable_keep_state_and_counts [Native],
        a_call_that_ignores_its_time_limit_is_abandoned_and_the_plugin_restarted [Native],
    }
}
