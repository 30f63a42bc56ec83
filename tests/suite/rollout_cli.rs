//! SPEC §13, §8 and §10: the rollout verbs from outside a running host,
//! the real binary on both sides. `POST /plugins/{name}/promote|rollback`
//! and `POST /plugins/{name}/rollout` refuse as JSON (404 unknown, 409 no
//! rollout, 400 bad share or name), `GET /plugins/{name}` shows
//! `"rollout": null` for a plugin running one version, and `plughost
//! promote|rollback|rollout` say why they were refused and exit 1 (2 for a
//! usage error); a draining host takes none of them (503). No rollout can
//! start in these tests: they drive the refusals; the rollouts themselves
//! are the engine's tests.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin::{Answer, request, try_request, wait_ready};
use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Run, Runtime, free_port, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// `echo` running, `idle` known but disabled in its manifest.
fn fixture() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    fx.plugin(
        Runtime::Lua,
        "idle",
        "subscriptions: [in.*]\nenabled: false\n",
        ECHO,
    );
    fx
}

/// Runs the host on `fx` with its admin endpoint on a free port and `env`;
/// returns it and the port once the endpoint answers.
fn host(fx: &Fixture, env: &[(&str, &str)], headers: &[&str]) -> (Live, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let live = Live::spawn_with_env(&["run", "--plugins", &plugins, "--admin", &addr], env);
    let ready = wait_ready(port, headers);
    assert_eq!(ready.status, 200, "{ready:?}");
    (live, port)
}

fn post(port: u16, path: &str, body: &str) -> Answer {
    request(port, "POST", path, &[], body.as_bytes())
}

/// Asserts a JSON error: `status`, and an `error` holding `words`.
fn refused(answer: &Answer, status: u16, words: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let error = answer.body["error"].as_str().unwrap_or_default();
    assert!(error.contains(words), "`{words}` in {answer:?}");
}

/// Runs `plughost ARGS` as a client of the host at `port`, with `env`.
fn client(port: u16, args: &[&str], env: &[(&str, &str)]) -> Run {
    let addr = format!("127.0.0.1:{port}");
    let mut args = args.to_vec();
    args.extend(["--admin", addr.as_str()]);
    run_binary_with_env(&args, None, env)
}

fn stop(live: Live) {
    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
}

#[test]
fn the_rollout_routes_refuse_as_json_and_describe_shows_no_rollout() {
    let fx = fixture();
    let (live, port) = host(&fx, &[], &[]);

    // A running plugin with one version: every verb is 409.
    for verb in ["promote", "rollback"] {
        let a = post(port, &format!("/plugins/echo/{verb}"), "");
        refused(&a, 409, "plugin `echo` has no rollout in progress");
    }
    let a = post(port, "/plugins/echo/rollout", r#"{"percent": 50}"#);
    refused(&a, 409, "plugin `echo` has no rollout in progress");
    // Known but not running: no rollout either.
    let a = post(port, "/plugins/idle/promote", "");
    refused(&a, 409, "plugin `idle` is not running");
    // Unknown: 404, as for the other routes.
    for verb in ["promote", "rollback"] {
        let a = post(port, &format!("/plugins/nope/{verb}"), "");
        refused(&a, 404, "no plugin named `nope`");
    }
    let a = post(port, "/plugins/nope/rollout", r#"{"percent": 5}"#);
    refused(&a, 404, "no plugin named `nope`");
    // A malformed name is 400 before any lookup.
    let a = post(port, "/plugins/Bad%20Name/promote", "");
    refused(&a, 400, "is not a plugin name");

    // The share: 1 to 100, in a body that says `percent`.
    let a = post(port, "/plugins/echo/rollout", r#"{"percent": 0}"#);
    refused(&a, 400, "a rollout's share is 1 to 100 percent, found 0");
    let a = post(port, "/plugins/echo/rollout", r#"{"percent": 101}"#);
    refused(&a, 400, "found 101");
    let a = post(port, "/plugins/echo/rollout", "");
    refused(&a, 400, "the body is empty");
    let a = post(port, "/plugins/echo/rollout", "{percent: 5}");
    refused(&a, 400, "the body is not JSON");
    let a = post(port, "/plugins/echo/rollout", r#"{"share": 5}"#);
    refused(&a, 400, "unknown field `share`");
    let a = post(port, "/plugins/echo/rollout", r#"{"percent": "5"}"#);
    refused(&a, 400, "`percent` must be a whole number");

    // No rollout is shown as `null`, in one plugin's description and the list's.
    let one = request(port, "GET", "/plugins/echo", &[], b"");
    assert_eq!(one.status, 200, "{one:?}");
    assert_eq!(one.body.get("rollout"), Some(&Value::Null), "{one:?}");
    let idle = request(port, "GET", "/plugins/idle", &[], b"");
    assert_eq!(idle.body.get("rollout"), Some(&Value::Null), "{idle:?}");
    let all = request(port, "GET", "/plugins", &[], b"");
    let all = all.body.as_array().expect("an array");
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.iter().all(|p| p.get("rollout") == Some(&Value::Null)));

    // Nothing changed: echo still runs and handles events.
    let a = post(port, "/events/in.x", r#"{"n": 1}"#);
    assert_eq!(a.status, 200, "{a:?}");
    let one = request(port, "GET", "/plugins/echo", &[], b"");
    assert_eq!(one.body["state"], "running", "{one:?}");
    stop(live);
}

#[test]
fn the_rollout_commands_say_why_they_were_refused() {
    let fx = fixture();
    let (live, port) = host(&fx, &[], &[]);

    let run = client(port, &["promote", "echo"], &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains("plughost: plugin `echo` has no rollout in progress (HTTP 409)"),
        "{run}"
    );
    assert_eq!(run.stdout, "", "{run}");
    let run = client(port, &["rollback", "echo"], &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("no rollout in progress (HTTP 409)"),
        "{run}"
    );
    let run = client(port, &["rollout", "echo", "--percent", "30"], &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("no rollout in progress (HTTP 409)"),
        "{run}"
    );
    let run = client(port, &["promote", "nope"], &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("no plugin named `nope` (HTTP 404)"),
        "{run}"
    );

    // Usage errors: nothing is sent, exit 2.
    for percent in ["0", "101", "ten"] {
        let run = client(port, &["rollout", "echo", "--percent", percent], &[]);
        assert_eq!(run.code, 2, "--percent {percent}: {run}");
        assert!(run.stderr.contains("--percent"), "{run}");
    }
    let run = client(port, &["rollout", "echo"], &[]);
    assert_eq!(run.code, 2, "no --percent: {run}");
    let run = client(port, &["rollback", "Bad Name"], &[]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("is not a plugin name"), "{run}");

    // `status`: no rollout line without a rollout; `--json` has `"rollout": null`.
    let run = client(port, &["status", "echo"], &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.starts_with("NAME"), "{run}");
    assert!(!run.stdout.contains("rollout"), "{run}");
    let run = client(port, &["status"], &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(!run.stdout.contains("rollout"), "{run}");
    let run = client(port, &["status", "echo", "--json"], &[]);
    assert_eq!(run.code, 0, "{run}");
    let answer: Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(answer["name"], json!("echo"), "{run}");
    assert_eq!(answer.get("rollout"), Some(&Value::Null), "{run}");
    stop(live);
}

#[test]
fn the_rollout_routes_need_the_token_when_one_is_set() {
    let fx = fixture();
    let token = [("PLUGHOST_ADMIN_TOKEN", "r0llout-token")];
    let bearer = "Authorization: Bearer r0llout-token";
    let (live, port) = host(&fx, &token, &[bearer]);

    for (path, body) in [
        ("/plugins/echo/promote", ""),
        ("/plugins/echo/rollback", ""),
        ("/plugins/echo/rollout", r#"{"percent": 20}"#),
    ] {
        let missing = post(port, path, body);
        refused(&missing, 401, "bearer token");
        let wrong = request(
            port,
            "POST",
            path,
            &["Authorization: Bearer r0llout-tokeN"],
            body.as_bytes(),
        );
        refused(&wrong, 401, "bearer token");
        // With the token the request reaches the route, which refuses it on its merits.
        let authed = request(port, "POST", path, &[bearer], body.as_bytes());
        refused(&authed, 409, "no rollout in progress");
    }
    let run = client(port, &["promote", "echo"], &[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("HTTP 401"), "{run}");
    let run = client(port, &["rollout", "echo", "--percent", "20"], &token);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("HTTP 409"), "{run}");
    stop(live);
}

/// Spends `config.busy` seconds of CPU per event: a queue that takes a
/// while to drain.
const SLOW: &str = "function on_event(e)\n  local t = os.clock()\n  while os.clock() - t < config.busy do end\nend\n";

#[test]
fn the_rollout_routes_are_503_while_the_host_drains() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "slow",
        "subscriptions: [in.*]\nconfig: {busy: 0.2}\n",
        SLOW,
    );
    let (live, port) = host(&fx, &[], &[]);
    for _ in 0..10 {
        assert_eq!(post(port, "/events/in.x", "{}").status, 200);
    }
    live.signal("TERM");
    // About two seconds of queue to drain: wait for the endpoint to say so.
    let deadline = Instant::now() + LIMIT;
    loop {
        match try_request(port, "GET", "/health", &[], b"") {
            Ok(a) if a.status == 503 => break,
            Ok(a) => assert_eq!(a.status, 200, "{a:?}"),
            Err(e) => panic!("the endpoint closed before answering 503: {e}"),
        }
        assert!(Instant::now() < deadline, "never answered 503");
        std::thread::sleep(Duration::from_millis(10));
    }
    // A rollout verb is a change: the draining host takes none.
    for (path, body) in [
        ("/plugins/slow/promote", ""),
        ("/plugins/slow/rollback", ""),
        ("/plugins/slow/rollout", r#"{"percent": 30}"#),
    ] {
        refused(&post(port, path, body), 503, "the host is shutting down");
    }
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
}
