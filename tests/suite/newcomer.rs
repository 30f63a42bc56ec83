//! What a new user reads first, held to what the host does: the line
//! `plughost run` logs once plugins started (how the run will stop), the
//! native scaffold's README on which hooks are required, and the bundled
//! `alerts` example's description.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::support::{Fixture, Runtime, ev, run_binary, tokio_rt};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A plugins directory with one Lua plugin that acknowledges `in` events.
fn one_plugin() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        "subscriptions: [in]\n",
        "function on_event(e) end",
    );
    fx
}

/// The log line saying the host is running (the one with `started=`).
fn running_line(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("plughost running"))
        .unwrap_or_else(|| panic!("no `plughost running` line in the log:\n{log}"))
}

/// With `--input` and `--exit-when-idle` the run ends with the input, and
/// the log says so, not that Ctrl-C stops it.
#[test]
fn exit_when_idle_with_input_logs_that_it_stops_when_idle() {
    let fx = one_plugin();
    let run = fx.run(&[ev("in", json!({"n": 1}))]);
    run.expect_code(0);
    let line = running_line(&run.stderr);
    assert!(
        line.contains("until the input is done and every queue empty"),
        "{line}"
    );
    assert!(!line.contains("Ctrl-C"), "{line}");
}

/// The command line refuses `--exit-when-idle` without `--input` (usage
/// error, exit 2) before anything runs, so it never claims Ctrl-C either.
#[test]
fn exit_when_idle_without_input_is_refused_by_the_command_line() {
    let fx = one_plugin();
    let run = run_binary(
        &[
            "run",
            "--plugins",
            fx.path().to_str().unwrap(),
            "--exit-when-idle",
        ],
        None,
    );
    run.expect_code(2);
    assert!(run.stderr.contains("--input"), "{}", run.stderr);
    assert!(!run.stderr.contains("Ctrl-C"), "{}", run.stderr);
}

/// A log sink for one thread's `tracing` dispatcher.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The library's `run` with `exit_when_idle` and no input: nothing ends it
/// but its shutdown future, and the log says that instead of "Ctrl-C to
/// stop" (the caller's future need not be Ctrl-C at all).
#[test]
fn exit_when_idle_without_input_logs_that_only_a_stop_ends_it() {
    use plughost::cli::run::{RunOptions, run};
    let fx = one_plugin();
    let opts = RunOptions {
        plugins: vec![fx.path().to_owned()],
        input: None,
        taps: Vec::new(),
        exit_when_idle: true,
        drain_timeout: Duration::from_secs(1),
        watch: false,
        export: None,
        admin: None,
    };
    let log = Captured::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    // The line is logged by the `run` future itself, polled on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);
    let report = tokio_rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(20), run(opts, std::future::ready(())))
            .await
            .expect("a run whose shutdown future is ready stops")
            .expect("a run that went to its end")
    });
    assert!(!report.had_errors(), "{report:?}");
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = running_line(&text);
    assert!(!line.contains("Ctrl-C"), "{line}");
    assert!(line.contains("until stopped"), "{line}");
    assert!(line.contains("there is none"), "{line}");
}

/// The native scaffold's README agrees with `plughost_sdk::Plugin` (and
/// docs/native.md): `on_event` has no default, every other hook does.
#[test]
fn the_native_scaffold_readme_says_on_event_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let made = run_binary(
        &[
            "new",
            "hello",
            "--runtime",
            "native",
            "--dir",
            dir.path().to_str().unwrap(),
        ],
        None,
    );
    made.expect_code(0);
    let readme = std::fs::read_to_string(dir.path().join("hello/README.md")).unwrap();
    assert!(!readme.contains("Every hook is optional"), "{readme}");
    assert!(readme.contains("`on_event` is required"), "{readme}");
    let sdk = std::fs::read_to_string(format!("{ROOT}/bindings/sdk/src/lib.rs")).unwrap();
    assert!(
        sdk.contains(
            "fn on_event(&mut self, host: &Host, event: &Event) -> Result<Outcome, String>;"
        ),
        "the SDK's on_event has no default body"
    );
    let guide = std::fs::read_to_string(format!("{ROOT}/docs/native.md")).unwrap();
    assert!(guide.contains("`on_event` is required"), "docs/native.md");
}

/// The `alerts` example's description names only the check it makes: a
/// text over `max_words` alerts, a short text that repeats a word does not,
/// so the description must not promise that.
#[test]
fn the_alerts_description_matches_what_it_checks() {
    let manifest = std::fs::read_to_string(format!("{ROOT}/plugins/alerts/plugin.yaml")).unwrap();
    let description = manifest
        .lines()
        .find_map(|l| l.strip_prefix("description: "))
        .expect("alerts has a description");
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let repeated = json!({"topic": "text.stats", "payload": {"text": "go go", "words": 2}});
    let long = json!({"topic": "text.stats", "payload": {"text": "a b c d e f g h i", "words": 9}});
    std::fs::write(&events, format!("{repeated}\n{long}\n")).unwrap();
    let run = run_binary(
        &[
            "test",
            &format!("{ROOT}/plugins/alerts"),
            "--events",
            events.to_str().unwrap(),
        ],
        None,
    );
    run.expect_code(0);
    let alerts: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("text.alert"))
        .collect();
    assert_eq!(alerts.len(), 1, "only the long text alerts: {}", run.stdout);
    assert!(alerts[0].contains("\"event\":2"), "{}", run.stdout);
    assert!(!description.contains("repeat"), "{description}");
    assert!(description.contains("max_words"), "{description}");
}
