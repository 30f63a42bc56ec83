//! SPEC §8 and §10: `plughost publish|enable|disable|reload` against a
//! running host's admin endpoint, the real binary on both sides.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Run, Runtime, free_port, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// Runs `plughost ARGS` as a client, with `env`.
fn client(args: &[&str], env: &[(&str, &str)]) -> Run {
    run_binary_with_env(args, None, env)
}

/// Waits until `plughost reload echo` can reach the host.
fn wait_ready(addr: &str, env: &[(&str, &str)]) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let run = client(&["reload", "echo", "--admin", addr], env);
        if run.code == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the host never answered: {run}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answer(run: &Run) -> Value {
    serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {run}"))
}

#[test]
fn client_commands_publish_and_change_plugins() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let token = [("PLUGHOST_ADMIN_TOKEN", "t0ken")];
    let mut live = Live::spawn_with_env(
        &["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"],
        &token,
    );
    wait_ready(&addr, &token);

    // publish: the event id on stdout, the event on the bus.
    let run = client(
        &["publish", "in.x", r#"{"n": 7}"#, "--admin", &addr],
        &token,
    );
    assert_eq!(run.code, 0, "{run}");
    let id = run.stdout.trim().to_owned();
    assert_eq!(id.len(), 26, "a ULID: {run}");
    let echoed = live.wait_for("the echo", |e| e["topic"] == "out.echoed");
    assert_eq!(echoed["payload"], json!({"n": 7}));
    assert_eq!(echoed["correlation_id"], json!(id));

    // The address from $PLUGHOST_ADMIN; disable with --persist.
    let env = [
        ("PLUGHOST_ADMIN_TOKEN", "t0ken"),
        ("PLUGHOST_ADMIN", addr.as_str()),
    ];
    let run = client(&["disable", "echo", "--persist"], &env);
    assert_eq!(run.code, 0, "{run}");
    let a = answer(&run);
    assert_eq!(a["outcome"], "stopped", "{run}");
    assert_eq!(a["persisted"], true, "{run}");
    let manifest = std::fs::read_to_string(fx.path().join("echo/plugin.yaml")).unwrap();
    assert!(manifest.contains("enabled: false"), "{manifest}");
    let run = client(&["enable", "echo"], &env);
    assert_eq!(answer(&run)["state"], "running", "{run}");
    let run = client(&["reload", "echo"], &env);
    assert_eq!(answer(&run)["outcome"], "reloaded", "{run}");

    // Refusals: exit 1 with the host's message; usage errors exit 2.
    let run = client(&["enable", "nope"], &env);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr.contains("no plugin named `nope` (HTTP 404)"),
        "{run}"
    );
    let run = client(&["reload", "echo", "--admin", &addr], &[]);
    assert_eq!(run.code, 1, "no token: {run}");
    assert!(run.stderr.contains("HTTP 401"), "{run}");
    let run = client(&["publish", "in.x", "{n: 1}"], &env);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("not JSON"), "{run}");
    let run = client(&["publish", "in.*", "{}"], &env);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("HTTP 400"), "{run}");

    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
    // Once the host is gone: exit 1, saying where it looked.
    let run = client(&["reload", "echo"], &env);
    assert_eq!(run.code, 1, "{run}");
    assert!(
        run.stderr
            .contains(&format!("cannot reach the admin endpoint at http://{addr}")),
        "{run}"
    );
}

#[test]
fn client_commands_need_an_address() {
    let fx = Fixture::new();
    let run = client(&["reload", "echo"], &[("PLUGHOST_ADMIN", "")]);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stderr.contains("--admin ADDR"), "{run}");
    // The host config's `admin.listen` is an address too.
    let config = fx.file("plughost.yaml", "admin:\n  listen: 127.0.0.1:9\n");
    let run = client(
        &["reload", "echo", "--config", config.to_str().unwrap()],
        &[("PLUGHOST_ADMIN", "")],
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("http://127.0.0.1:9"), "{run}");
    let run = client(&["enable", "Bad Name", "--admin", "127.0.0.1:9"], &[]);
    assert_eq!(run.code, 2, "{run}");
}

/// SPEC §12: `plughost status [NAME]` prints where each plugin stands, a
/// suspended one included, from a running host.
#[test]
fn status_shows_each_plugins_state_errors_and_restarts() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    fx.plugin(
        Runtime::Lua,
        "flaky",
        "subscriptions: [in.*]\nsupervision: {max_consecutive_errors: 2, resume_after_ms: 300000}\n",
        "function on_event(e) error('no') end\n",
    );
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let mut live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"]);
    wait_ready(&addr, &[]);
    for n in 0..3 {
        let run = client(
            &[
                "publish",
                "in.x",
                &format!("{{\"n\": {n}}}"),
                "--admin",
                &addr,
            ],
            &[],
        );
        assert_eq!(run.code, 0, "{run}");
    }
    live.wait_for("the suspension", |e| {
        e["topic"] == "plughost.plugin.suspended"
    });

    let run = client(&["status", "--admin", &addr], &[]);
    assert_eq!(run.code, 0, "{run}");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{run}");
    let row = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .unwrap_or_else(|| panic!("no row for {name}: {run}"))
    };
    assert_eq!(row("echo")[1], "running");
    let flaky = row("flaky");
    assert_eq!(flaky[1], "suspended");
    // QUEUE: the third event waits; ERRORS: two.
    assert_eq!((flaky[4], flaky[5]), ("1", "2"), "{run}");

    let run = client(&["status", "flaky", "--admin", &addr], &[]);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("consecutive errors: 2"), "{run}");
    assert!(run.stdout.contains("main.lua:1:"), "{run}");

    let run = client(&["status", "--json", "--admin", &addr], &[]);
    let all = answer(&run);
    assert_eq!(all.as_array().map(Vec::len), Some(2), "{run}");

    let run = client(&["status", "nobody", "--admin", &addr], &[]);
    assert_eq!(run.code, 1, "{run}");
    live.signal("TERM");
    live.finish();
}
