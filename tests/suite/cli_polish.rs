//! SPEC §8 and §10, what users of a command-line tool expect of it: shell
//! completions, a man page, help that says each default once, and topics
//! that reach the host whatever characters they hold.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Run, Runtime, free_port, run_binary, run_binary_with_env};

#[test]
fn completions_print_a_script_for_each_shell() {
    let run = run_binary(&["completions", "bash"], None);
    assert_eq!(run.code, 0, "{run}");
    assert!(run.stdout.contains("plughost"), "{run}");
    assert!(run.stdout.contains("run"), "{run}");
    // Every subcommand and its flags are in it, from the parser's own definition.
    assert!(run.stdout.contains("--exit-when-idle"), "{run}");
    assert!(run.stdout.contains("completions"), "{run}");
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let run = run_binary(&["completions", shell], None);
        assert_eq!(run.code, 0, "{shell}: {run}");
        assert!(run.stdout.contains("plughost"), "{shell}: {run}");
        assert!(run.stdout.contains("publish"), "{shell}: {run}");
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let run = run_binary(&["completions", "tcsh"], None);
    assert_eq!(run.code, 2, "{run}");
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("tcsh"), "{run}");
    assert!(run.stderr.contains("bash"), "the shells it knows: {run}");
    let run = run_binary(&["completions"], None);
    assert_eq!(run.code, 2, "{run}");
}

#[test]
fn man_prints_the_roff_page() {
    let run = run_binary(&["man"], None);
    assert_eq!(run.code, 0, "{run}");
    let th = run
        .stdout
        .lines()
        .find(|l| l.starts_with(".TH"))
        .unwrap_or_else(|| panic!("no .TH line: {run}"));
    assert!(th.starts_with(".TH plughost 1"), "{th}");
    // Nothing but roff requests before the title line.
    assert!(
        run.stdout
            .lines()
            .take_while(|l| !l.starts_with(".TH"))
            .all(|l| l.starts_with('.')),
        "{run}"
    );
    assert!(run.stdout.contains(".SH NAME"), "{run}");
    assert!(run.stdout.contains("publish"), "the subcommands: {run}");
}

#[test]
fn publish_help_says_the_default_payload_once() {
    let run = run_binary(&["publish", "--help"], None);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(
        run.stdout.matches("[default: null]").count(),
        1,
        "{}",
        run.stdout
    );
}

/// Runs `plughost ARGS` as a client until it exits 0 (the host may still be
/// starting); the last run on failure.
fn client_until_ok(args: &[&str], env: &[(&str, &str)]) -> Run {
    let deadline = Instant::now() + LIMIT;
    loop {
        let run = run_binary_with_env(args, None, env);
        if run.code == 0 || Instant::now() >= deadline {
            return run;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A topic holding `/`, `?`, `#` and `%` (a topic allows any character but
/// whitespace, control characters and wildcards) goes into the URL
/// percent-encoded and reaches the plugin subscribed to exactly it.
#[test]
fn publish_encodes_a_topic_with_url_characters() {
    // `%2F` too: decoded once, it must stay `%2F`, not become a `/`.
    let topic = "in.a/b?c#d%2F";
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "echo",
        &format!("subscriptions: ['{topic}']\n"),
        "function on_event(e) bus.publish('out.echoed', {topic = e.topic, n = e.payload.n}) end\n",
    );
    let addr = format!("127.0.0.1:{}", free_port());
    let plugins = fx.path().to_str().unwrap().to_owned();
    let token = [("PLUGHOST_ADMIN_TOKEN", "t0ken")];
    let mut live = Live::spawn_with_env(
        &[
            "run",
            "--plugins",
            &plugins,
            "--admin",
            &addr,
            "--tap",
            "out.>",
        ],
        &token,
    );
    let run = client_until_ok(&["publish", topic, r#"{"n": 3}"#, "--admin", &addr], &token);
    assert_eq!(run.code, 0, "{run}");
    let echoed = live.wait_for("the echo", |e| e["topic"] == "out.echoed");
    assert_eq!(echoed["payload"], json!({"topic": topic, "n": 3}));
    // A space is no part of a topic: the host's refusal, not a malformed request.
    let run = run_binary_with_env(
        &["publish", "in.a/b c", "{}", "--admin", &addr],
        None,
        &token,
    );
    assert_eq!(run.code, 1, "{run}");
    assert!(run.stderr.contains("HTTP 400"), "{run}");
    assert!(run.stderr.contains("whitespace"), "{run}");
    live.signal("TERM");
    let run = live.finish();
    assert_eq!(run.code, 0, "{run}");
}
