//! Hostile native libraries: attacks a malicious or buggy library makes
//! against the C ABI (statuses the host does not know, results that are
//! not outcomes, callbacks with bad arguments, a forged or stolen `ctx`,
//! lies in the handshake, `fatal` from every hook, a hook that never
//! returns). The attacker is `tests/fixtures/native/abuse/`, written against
//! the raw ABI; each attack runs through the real binary beside a
//! well-behaved Lua neighbour whose every event must be handled, and the
//! host must neither crash nor hang, and must name the library and the
//! problem.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::{Fixture, Run, Runtime, ev, native_library, run_binary_with_env};

/// The attacker's library file on this platform.
const LIBRARY: &str = if cfg!(windows) {
    "native_abuse.dll"
} else if cfg!(target_os = "macos") {
    "libnative_abuse.dylib"
} else {
    "libnative_abuse.so"
};

/// The attacker's library, built with the other fixtures (same workspace,
/// same target dir).
fn abuse_library() -> PathBuf {
    let lib = native_library()
        .parent()
        .expect("the fixtures' target folder")
        .join(LIBRARY);
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

/// A Lua plugin answering every `in` event on `neighbour.seen`.
fn neighbour(fx: &Fixture) {
    fx.plugin(
        Runtime::Lua,
        "neighbour",
        "subscriptions: [in]\n",
        "function on_event(e) bus.publish('neighbour.seen', { n = e.payload.n }) end",
    );
}

/// The attacker, plugin `attacker` subscribed to `in`, playing `attack`,
/// with `extra` manifest lines.
fn attacker(fx: &Fixture, attack: &str, extra: &str) {
    fx.file(
        "attacker/plugin.yaml",
        &format!(
            "name: attacker\nversion: 1.0.0\nruntime: native\nentry: {LIBRARY}\n\
             subscriptions: [in]\nconfig: {{attack: {attack}}}\n{extra}"
        ),
    );
    let to = fx.path().join("attacker").join(LIBRARY);
    std::fs::copy(abuse_library(), &to).expect("copy the attacker's library");
}

/// A neighbour and an attacker playing `attack`.
fn fixture(attack: &str, extra: &str) -> Fixture {
    let fx = Fixture::new();
    neighbour(&fx);
    attacker(&fx, attack, extra);
    fx
}

fn inputs(n: usize) -> Vec<Value> {
    (0..n).map(|n| ev("in", json!({"n": n}))).collect()
}

/// `run --exit-when-idle --tap '>'` over `fx` with `input` and `env`.
fn run(fx: &Fixture, input: &[Value], env: &[(&str, &str)]) -> Run {
    let text: String = input.iter().map(|v| format!("{v}\n")).collect();
    let dir = fx.path().to_str().unwrap();
    let args = [
        "run",
        "--plugins",
        dir,
        "--input",
        "-",
        "--tap",
        ">",
        "--exit-when-idle",
    ];
    let started = Instant::now();
    let run = run_binary_with_env(&args, Some(&text), env);
    assert!(started.elapsed() < Duration::from_secs(30), "{run}");
    run
}

fn numbers(run: &Run, topic: &str) -> Vec<i64> {
    let mut seen: Vec<i64> = run
        .payloads(topic)
        .iter()
        .filter_map(|p| p["n"].as_i64())
        .collect();
    seen.sort();
    seen
}

fn assert_neighbour_saw_all(run: &Run, n: usize) {
    assert_eq!(
        numbers(run, "neighbour.seen"),
        (0..n as i64).collect::<Vec<_>>(),
        "{run}"
    );
}

/// Every one of the `n` events is dead-lettered by the attacker with an
/// error naming the library and saying `says`; returns the errors.
fn each_dead_lettered(run: &Run, n: usize, says: &str) -> Vec<String> {
    let letters = run.dead_letters();
    let mut dead: Vec<i64> = letters
        .iter()
        .map(|d| {
            assert_eq!(d["plugin"], "attacker", "{run}");
            d["event"]["payload"]["n"].as_i64().unwrap()
        })
        .collect();
    dead.sort();
    assert_eq!(dead, (0..n as i64).collect::<Vec<_>>(), "{run}");
    letters
        .iter()
        .map(|d| {
            let error = d["error"].as_str().unwrap().to_owned();
            assert!(error.contains(LIBRARY), "names the library: {error}");
            assert!(error.contains(says), "says {says:?}: {error}");
            error
        })
        .collect()
}

/// Runs `attack` on `n` events: each is dead-lettered saying `says`, the
/// neighbour handles all, the host exits 0.
fn dead_letters_each(attack: &str, n: usize, says: &str) -> Run {
    let fx = fixture(attack, "");
    let run = run(&fx, &inputs(n), &[]);
    run.expect_code(0);
    assert_neighbour_saw_all(&run, n);
    each_dead_lettered(&run, n, says);
    assert!(run.on("plughost.plugin.failed").is_empty(), "{run}");
    run
}

/// What the attacker's abused callback answered: `attacker.result`
/// payloads, one per event, with the status and message.
fn results(run: &Run, n: usize) -> Vec<Value> {
    let results = run.payloads("attacker.result");
    assert_eq!(results.len(), n, "{run}");
    results
}

/// A callback abused on each of 3 events answers an error (status 1)
/// saying `says`; the attacker goes on, nothing reaches `attacker.out`.
fn callback_refused(attack: &str, says: &str) {
    let fx = fixture(attack, "");
    let run = run(&fx, &inputs(3), &[]);
    run.expect_code(0);
    assert_neighbour_saw_all(&run, 3);
    for r in results(&run, 3) {
        assert_eq!(r["status"], 1, "{run}");
        let message = r["message"].as_str().unwrap();
        assert!(message.contains(says), "says {says:?}: {message}");
    }
    assert!(run.on("attacker.out").is_empty(), "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

#[test]
fn an_unknown_status_is_dead_lettered_naming_the_library() {
    dead_letters_each("unknown_status", 3, "unknown status 77 (in on_event)");
}

#[test]
fn ok_with_data_that_is_not_json_is_a_bad_outcome() {
    dead_letters_each("ok_not_json", 3, "on_event returned a bad outcome");
}

#[test]
fn ok_with_data_that_is_not_utf8_is_a_bad_outcome() {
    dead_letters_each("ok_not_utf8", 3, "on_event returned a bad outcome");
}

/// A `reply` whose payload claims an array of 2^32 - 1 items and holds
/// none: the host validates the packed bytes before it trusts them, so each
/// event is dead-lettered saying why, and the attacker (which sees all 3
/// events) and its neighbour go on.
#[test]
fn ok_with_a_payload_that_is_not_packed_is_a_bad_outcome() {
    let run = dead_letters_each(
        "ok_bad_packed",
        3,
        "on_event returned a bad outcome: the payload is not a packed value",
    );
    for d in run.dead_letters() {
        let error = d["error"].as_str().unwrap();
        assert!(
            error.contains("the buffer ends inside a value"),
            "says where the bytes fail: {error}"
        );
    }
}

/// A null data pointer with a length is read as no data: the host never
/// reads through it.
#[test]
fn ok_with_a_null_data_pointer_and_a_length_is_a_bad_outcome() {
    dead_letters_each("ok_null_data", 3, "on_event returned a bad outcome");
}

#[test]
fn ok_with_100_mb_of_data_is_a_bad_outcome() {
    dead_letters_each("ok_huge", 2, "on_event returned a bad outcome");
}

/// A 16 MB error message is cut in the dead letter (and the log): the
/// host does not pass megabytes on to every subscriber and log line.
#[test]
fn a_huge_error_message_is_cut() {
    let run = dead_letters_each("error_huge", 2, "xxxxxxxx");
    for d in run.dead_letters() {
        let error = d["error"].as_str().unwrap();
        assert!(error.len() < 80 * 1024, "{} bytes", error.len());
        assert!(
            error.contains("bytes cut)"),
            "says it was cut: {error:.200}"
        );
        assert!(
            error.ends_with("(in on_event)"),
            "{:.200}",
            &error[error.len() - 200..]
        );
    }
    assert!(
        run.stderr.len() < 1024 * 1024,
        "{} bytes of log",
        run.stderr.len()
    );
}

#[test]
fn publish_with_a_topic_that_is_not_utf8_is_refused() {
    callback_refused("bad_topic", "topic is not UTF-8");
}

#[test]
fn publish_with_a_payload_that_is_not_json_is_refused() {
    callback_refused("bad_payload", "payload is not JSON");
}

/// A callback with a null `ctx` is refused, not dereferenced.
#[test]
fn a_callback_with_a_null_ctx_is_refused() {
    callback_refused(
        "null_ctx",
        "not the context of the hook running on this thread",
    );
}

/// A forged `ctx` is refused, not dereferenced.
#[test]
fn a_callback_with_a_dangling_ctx_is_refused() {
    callback_refused(
        "dangling_ctx",
        "not the context of the hook running on this thread",
    );
}

/// A callback from a thread the plugin spawned, while its hook runs, is
/// refused: the context belongs to the plugin's thread.
#[test]
fn a_callback_from_another_thread_is_refused() {
    callback_refused(
        "other_thread",
        "not the context of the hook running on this thread",
    );
}

/// A `ctx` kept past the hook and used from a thread when no hook runs is
/// refused; nothing is published.
#[test]
fn a_callback_after_the_hook_returned_is_refused() {
    let fx = fixture("after_return", "");
    let dir = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&["run", "--plugins", &dir, "--input", "-", "--tap", ">"]);
    live.send(&ev("in", json!({"n": 0})));
    let late = live.wait_for("the late call's report", |e| {
        e["topic"] == "attacker.result"
    });
    live.wait_for("the neighbour's output", |e| e["topic"] == "neighbour.seen");
    live.signal("TERM");
    let run = live.finish();
    assert_eq!(late["payload"]["status"], 1, "{run}");
    let message = late["payload"]["message"].as_str().unwrap();
    assert!(
        message.contains("not the context of the hook running on this thread"),
        "{message}"
    );
    assert!(run.on("attacker.out").is_empty(), "{run}");
    assert_eq!(numbers(&run, "attacker.seen"), [0], "{run}");
}

/// Runs a handshake attack: the attacker does not start, with an error
/// naming the library and saying `says`; the neighbour handles every event.
fn refused_at_load(handshake: &str, says: &[&str]) {
    let fx = fixture("none", "");
    let run = run(&fx, &inputs(3), &[("PLUGHOST_ABUSE_HANDSHAKE", handshake)]);
    assert_neighbour_saw_all(&run, 3);
    let failed = run.only("plughost.plugin.failed");
    assert_eq!(failed["plugin"], "attacker", "{run}");
    let error = failed["error"].as_str().unwrap();
    assert!(error.contains(LIBRARY), "names the library: {error}");
    for s in says {
        assert!(error.contains(s), "says {s:?}: {error}");
    }
    assert!(run.on("attacker.seen").is_empty(), "{run}");
}

#[test]
fn an_abi_version_of_zero_is_refused() {
    refused_at_load(
        "abi_zero",
        &["ABI version 0, but this host speaks ABI version 5", "6.6.6"],
    );
}

/// `u32::MAX` for the ABI version, and an SDK version that is not UTF-8:
/// refused, the SDK version shown as unknown.
#[test]
fn an_abi_version_of_u32_max_with_a_garbled_sdk_version_is_refused() {
    refused_at_load(
        "abi_max",
        &[
            "ABI version 4294967295, but this host speaks ABI version 5",
            "plughost-sdk of unknown version",
        ],
    );
}

#[test]
fn a_null_hook_table_is_refused() {
    refused_at_load("table_null", &["plugin table is missing"]);
}

/// A table with a null entry (a C plugin that left `on_timer` out) is
/// refused at load, naming the entry, instead of crashing the host when
/// the entry is first called.
#[test]
fn a_hook_table_with_a_null_entry_is_refused() {
    refused_at_load("table_hole", &["`on_timer` is a null pointer"]);
}

/// The SDK version is for messages only: a null one does not keep a
/// library of the right ABI version from running.
#[test]
fn a_null_sdk_version_is_harmless() {
    let fx = fixture("none", "");
    let run = run(&fx, &inputs(3), &[("PLUGHOST_ABUSE_HANDSHAKE", "sdk_null")]);
    run.expect_code(0);
    assert_neighbour_saw_all(&run, 3);
    assert_eq!(numbers(&run, "attacker.seen"), [0, 1, 2], "{run}");
}

/// `fatal` from `init`: the attacker does not start, and says why.
#[test]
fn fatal_from_init_fails_the_start_naming_the_library() {
    let fx = fixture(
        "fatal_init",
        "supervision: {max_restarts: 2, window_s: 60}\n",
    );
    let run = run(&fx, &inputs(3), &[]);
    assert_neighbour_saw_all(&run, 3);
    let failed = run.only("plughost.plugin.failed");
    assert_eq!(failed["plugin"], "attacker", "{run}");
    assert_eq!(failed["reason"], "start", "{run}");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("abuse/src/hooks.rs:") && error.contains("cannot go on: abuse cannot start"),
        "{error}"
    );
    assert!(error.contains(LIBRARY), "names the library: {error}");
    // A plugin that never started subscribes to nothing.
    assert!(run.on("attacker.seen").is_empty(), "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

/// `fatal` from `on_event`: a crash; the event is dead-lettered, the
/// plugin restarted, and the events after it handled.
#[test]
fn fatal_from_on_event_restarts_the_plugin() {
    let fx = fixture("fatal_event", "");
    let mut input = inputs(4);
    input[1] = ev("in", json!({"n": 1, "fatal": true}));
    let run = run(&fx, &input, &[]);
    run.expect_code(0);
    assert_neighbour_saw_all(&run, 4);
    let restarted = run.only("plughost.plugin.restarted");
    assert_eq!(restarted["plugin"], "attacker", "{run}");
    let letters = run.dead_letters();
    assert_eq!(letters.len(), 1, "{run}");
    assert_eq!(letters[0]["event"]["payload"]["n"], 1, "{run}");
    let error = letters[0]["error"].as_str().unwrap();
    assert!(
        error.contains("cannot go on: abuse cannot go on"),
        "{error}"
    );
    assert!(error.contains(LIBRARY), "names the library: {error}");
    assert_eq!(numbers(&run, "attacker.seen"), [0, 2, 3], "{run}");
}

/// `fatal` from every `on_event`: restarted `max_restarts` times, then
/// stopped for good with `reason: restarts`; every event is accounted for.
#[test]
fn fatal_from_every_call_stops_the_plugin_for_good() {
    let fx = fixture(
        "fatal_every_event",
        "supervision: {max_restarts: 2, window_s: 60}\n",
    );
    let run = run(&fx, &inputs(5), &[]);
    assert_neighbour_saw_all(&run, 5);
    assert_eq!(run.on("plughost.plugin.restarted").len(), 2, "{run}");
    let failed = run.only("plughost.plugin.failed");
    assert_eq!(failed["plugin"], "attacker", "{run}");
    assert_eq!(failed["reason"], "restarts", "{run}");
    each_dead_lettered(&run, 5, "");
}

/// `fatal` from `shutdown`: the host still ends, and logs the error with
/// the library.
#[test]
fn fatal_from_shutdown_does_not_keep_the_host_from_ending() {
    let fx = fixture("fatal_shutdown", "");
    let run = run(&fx, &inputs(3), &[]);
    assert_neighbour_saw_all(&run, 3);
    assert_eq!(numbers(&run, "attacker.seen"), [0, 1, 2], "{run}");
    assert!(
        run.stderr.contains("abuse cannot stop") && run.stderr.contains(LIBRARY),
        "{run}"
    );
}

/// An `on_event` that never returns: the host abandons the call 1 s past
/// its limit, dead-letters the event and restarts the plugin on a new
/// thread; the neighbour handles every event meanwhile, the attacker the
/// events behind the stuck one, and SIGTERM ends the host within
/// `--drain-timeout` and a second.
#[test]
fn an_on_event_that_never_returns_is_abandoned() {
    let fx = fixture("hang", "limits: {event_timeout_ms: 100}\n");
    let dir = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        &dir,
        "--input",
        "-",
        "--tap",
        ">",
        "--drain-timeout",
        "1s",
    ]);
    live.send(&ev("in", json!({"n": 0, "hang": true})));
    for n in 1..4 {
        live.send(&ev("in", json!({"n": n})));
    }
    for n in 0..4 {
        live.wait_for("the neighbour's output", |e| {
            e["topic"] == "neighbour.seen" && e["payload"]["n"] == n
        });
    }
    let letter = live.wait_for("the stuck event's dead letter", |e| {
        e["topic"] == "plughost.dead_letter"
    });
    live.wait_for("the events behind it", |e| {
        e["topic"] == "attacker.seen" && e["payload"]["n"] == 3
    });
    // A second stuck call, on the new thread, while SIGTERM comes.
    live.send(&ev("in", json!({"n": 4, "hang": true})));
    live.wait_for("the neighbour's output", |e| {
        e["topic"] == "neighbour.seen" && e["payload"]["n"] == 4
    });
    let at = Instant::now();
    live.signal("TERM");
    let run = live.finish();
    assert!(
        at.elapsed() < Duration::from_secs(2),
        "{:?}: {run}",
        at.elapsed()
    );
    assert_eq!(letter["payload"]["event"]["payload"]["n"], 0, "{run}");
    let error = letter["payload"]["error"].as_str().unwrap();
    assert!(error.contains("abandoned"), "{error}");
    assert_eq!(numbers(&run, "attacker.seen"), [1, 2, 3], "{run}");
    // The second stuck event is accounted for too: abandoned during the
    // drain, or left undelivered when the drain timed out.
    let dead: Vec<i64> = run
        .dead_letters()
        .iter()
        .filter_map(|d| d["event"]["payload"]["n"].as_i64())
        .collect();
    assert!(
        dead == [0, 4] || (dead == [0] && run.stderr.contains("undelivered")),
        "{dead:?}: {run}"
    );
}
