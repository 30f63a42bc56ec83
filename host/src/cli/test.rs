//! `plughost test`: one plugin, in isolation, against recorded events.
//!
//! The plugin folder is loaded standalone ([`crate::HostBuilder::standalone`]:
//! whatever its `enabled:` and `dependencies:` say), with telemetry off and
//! no watcher. Every bus event is tapped from before `init`. The input events
//! are published one at a time and the host is left to go idle (retries
//! included) after each, so everything the plugin publishes is attributed to
//! the event that caused it. What the plugin published and what became of
//! each input event are printed as JSON lines on stdout; with `--expect` the
//! lines are compared with an expect file ([`super::expect`]) and a diff is
//! printed on stderr when they differ.
//!
//! Attribution: an event the plugin publishes while handling input event N
//! carries N's correlation id, and is reported with `"event": N`. Events
//! published by `init`, `shutdown` or a timer carry none of them and are
//! reported with `"event": 0`, where they happened.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use plughost_bindings::Event;
use serde_json::Value;

use super::expect::{self, ExpectLine};
use super::input;
use crate::actor::Stats;
use crate::bus::DEAD_LETTER_TOPIC;
use crate::topic::PatternSet;
use crate::{EventStream, Host};

/// How long the plugin's `shutdown` may take once the input is done.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Lines of context around each difference in the `--expect` diff.
const DIFF_CONTEXT: usize = 2;

/// Options of `plughost test`.
#[derive(Debug, Clone)]
pub struct TestOptions {
    /// The plugin folder (holding `plugin.yaml`).
    pub plugin: PathBuf,
    /// The input events, one JSON object per line.
    pub events: PathBuf,
    /// The expected output, in the output's format.
    pub expect: Option<PathBuf>,
}

/// Why `plughost test` could not test the plugin. Usage errors (exit 2)
/// are found before the plugin runs; the others are the plugin's (exit 1).
/// Each problem's own lines were printed on stderr already.
#[derive(Debug, thiserror::Error)]
pub enum TestError {
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    /// The events or expect file is unreadable or malformed.
    #[error("{0}: bad input (see the lines above)")]
    Input(String),
    /// The plugin folder is not there.
    #[error(transparent)]
    Host(#[from] crate::HostError),
    /// Its manifest is broken.
    #[error("{0} cannot be loaded")]
    CannotLoad(String),
    /// It failed to load or its `init` failed.
    #[error("plugin `{0}` failed to start")]
    FailedToStart(String),
}

impl TestError {
    /// Whether this is a usage error (the command line or its files), not
    /// the plugin's.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            TestError::Runtime(_) | TestError::Input(_) | TestError::Host(_)
        )
    }
}

/// How a test run went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TestReport {
    /// Events still queued when the plugin was stopped.
    pub undelivered: usize,
    /// `Some(false)` when the output did not match `--expect`.
    pub matched: Option<bool>,
}

impl TestReport {
    /// Whether the plugin passed: everything delivered, the output as expected.
    pub fn passed(&self) -> bool {
        self.undelivered == 0 && self.matched != Some(false)
    }
}

/// Runs `plughost test` on its own async runtime. What the plugin did is
/// printed on stdout, problems on stderr; the caller picks the exit code.
pub fn test(opts: &TestOptions) -> Result<TestReport, TestError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TestError::Runtime)?
        .block_on(run(opts))
}

/// What became of one input event.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    acked: u64,
    forwarded: u64,
    retried: u64,
    dead_lettered: u64,
}

impl Tally {
    fn of(stats: &Stats) -> Tally {
        Tally {
            acked: stats.acked.load(Ordering::Relaxed),
            forwarded: stats.forwarded.load(Ordering::Relaxed),
            retried: stats.retried.load(Ordering::Relaxed),
            dead_lettered: stats.dead_lettered.load(Ordering::Relaxed),
        }
    }

    fn since(self, before: Tally) -> Tally {
        Tally {
            acked: self.acked - before.acked,
            forwarded: self.forwarded - before.forwarded,
            retried: self.retried - before.retried,
            dead_lettered: self.dead_lettered - before.dead_lettered,
        }
    }
}

/// The output so far: each line's text (as printed) and value (as compared).
#[derive(Debug, Default)]
struct Output {
    lines: Vec<(String, Value)>,
    published: usize,
    outcomes: Vec<&'static str>,
}

impl Output {
    fn push(&mut self, text: String) {
        let value = serde_json::from_str(&text).expect("output lines are JSON");
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) does not stop the test: the verdict
        // still counts.
        let _ = writeln!(out, "{text}").and_then(|()| out.flush());
        self.lines.push((text, value));
    }

    fn publish(&mut self, n: usize, event: &Event) {
        let mut headers = event.headers.clone();
        headers.remove(crate::telemetry::trace::TRACEPARENT);
        let mut text = format!(
            "{{\"event\":{n},\"publish\":{{\"topic\":{},\"payload\":{}",
            json(&Value::String(event.topic.clone())),
            json(event.payload.value()),
        );
        if !headers.is_empty() {
            text.push_str(&format!(
                ",\"headers\":{}",
                serde_json::to_string(&headers).expect("headers serialize")
            ));
        }
        text.push_str("}}");
        self.published += 1;
        self.push(text);
    }

    fn outcome(&mut self, n: usize, outcome: &'static str, fields: &[(&str, Value)]) {
        let mut text = format!("{{\"event\":{n},\"outcome\":\"{outcome}\"");
        for (key, value) in fields {
            text.push_str(&format!(",\"{key}\":{}", json(value)));
        }
        text.push('}');
        self.outcomes.push(outcome);
        self.push(text);
    }

    /// `3 event(s): 2 acked, 1 dead-lettered; 2 published`.
    fn summary(&self) -> String {
        let mut counts: Vec<String> = Vec::new();
        for (word, shown) in [
            ("acked", "acked"),
            ("forwarded", "forwarded"),
            ("dead_lettered", "dead-lettered"),
            ("unmatched", "unmatched"),
            ("undelivered", "undelivered"),
        ] {
            let k = self.outcomes.iter().filter(|o| **o == word).count();
            if k > 0 {
                counts.push(format!("{k} {shown}"));
            }
        }
        let counts = if counts.is_empty() {
            String::new()
        } else {
            format!(": {}", counts.join(", "))
        };
        format!(
            "{} event(s){counts}; {} published",
            self.outcomes.len(),
            self.published
        )
    }
}

fn json(v: &Value) -> String {
    serde_json::to_string(v).expect("JSON values serialize")
}

async fn run(opts: &TestOptions) -> Result<TestReport, TestError> {
    let events_name = opts.events.display().to_string();
    let inputs = match read_events(&opts.events) {
        Ok(events) => events,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return Err(TestError::Input(events_name));
        }
    };
    let expected = match &opts.expect {
        None => None,
        Some(path) => match read_expect(path) {
            Ok(lines) => Some((path.display().to_string(), lines)),
            Err(errors) => {
                for e in &errors {
                    eprintln!("{e}");
                }
                return Err(TestError::Input(path.display().to_string()));
            }
        },
    };
    let host = Host::builder()
        .plugins_dir(&opts.plugin)
        .standalone(true)
        .telemetry(false)
        .build()?;
    let Some((name, subscriptions)) = host
        .catalog()
        .entries
        .first()
        .and_then(|e| e.def.as_ref())
        .map(|d| {
            (
                d.manifest.name.clone(),
                PatternSet::new(d.manifest.subscriptions.clone()),
            )
        })
    else {
        // The manifest itself is broken: its errors are all there is.
        for e in host.catalog().errors() {
            eprintln!("{e}");
        }
        return Err(TestError::CannotLoad(opts.plugin.display().to_string()));
    };
    let mut tap = host.subscribe(">").expect("`>` is a valid pattern");
    let report = host.start().await;
    if !report.failed.is_empty() {
        for (_, error) in &report.failed {
            eprintln!("{error}");
        }
        host.shutdown(Duration::ZERO).await;
        return Err(TestError::FailedToStart(name));
    }
    let stats = host.stats(&name).expect("the plugin is running");
    let mut out = Output::default();

    host.wait_idle().await;
    for event in drain(&mut tap) {
        if event.source == name {
            out.publish(0, &event);
        }
    }
    for (k, (line, event)) in inputs.into_iter().enumerate() {
        let n = k + 1;
        let before = Tally::of(&stats);
        let id = event.id.clone();
        let key = event.correlation_key().to_owned();
        let topic = event.topic.clone();
        if let Err(e) = host.publish_event(event).await {
            eprintln!("{events_name}:{line}:1: {e}");
            host.shutdown(Duration::ZERO).await;
            return Err(TestError::Input(events_name));
        }
        host.wait_idle().await;
        let mut dead_letter: Option<Value> = None;
        let mut others = 0usize;
        for e in drain(&mut tap) {
            if e.id == id {
                continue;
            }
            if subscriptions.matches(&e.topic) {
                others += 1;
            }
            if e.source == name {
                let caused = e.correlation_id.as_deref() == Some(key.as_str());
                out.publish(if caused { n } else { 0 }, &e);
            } else if e.topic == DEAD_LETTER_TOPIC {
                let p = e.payload.value();
                if p["plugin"] == name.as_str() && p["event"]["id"] == id.as_str() {
                    dead_letter = Some(p.clone());
                }
            }
        }
        let delta = Tally::of(&stats).since(before);
        report_outcome(
            &mut out,
            n,
            subscriptions.matches(&topic),
            dead_letter,
            delta,
            others,
        );
    }

    let shutdown = host.shutdown(SHUTDOWN_TIMEOUT).await;
    for event in drain(&mut tap) {
        if event.source == name {
            out.publish(0, &event);
        }
    }
    eprintln!("{}", out.summary());
    let mut report = TestReport {
        undelivered: shutdown.undelivered.len(),
        matched: None,
    };
    if let Some((file, lines)) = expected {
        let want: Vec<Value> = lines.iter().map(|l| l.value.clone()).collect();
        let have: Vec<Value> = out.lines.iter().map(|(_, v)| v.clone()).collect();
        let ops = expect::align(&want, &have);
        report.matched = Some(expect::agrees(&ops));
        if expect::agrees(&ops) {
            eprintln!("output matches {file}");
        } else {
            let texts: Vec<String> = out.lines.iter().map(|(t, _)| t.clone()).collect();
            eprintln!(
                "plughost test: the output does not match {file} (- expected, + actual):\n{}",
                expect::render(&ops, &lines, &texts, &file, DIFF_CONTEXT).trim_end()
            );
        }
    }
    Ok(report)
}

/// The outcome line of input event `n`. `others` counts the other events the
/// plugin received meanwhile (its own publications, dead letters): their
/// deliveries are in `delta` too, so the line then adds `handled`, the
/// counts of every delivery of the step.
fn report_outcome(
    out: &mut Output,
    n: usize,
    subscribed: bool,
    dead_letter: Option<Value>,
    delta: Tally,
    others: usize,
) {
    let mut fields: Vec<(&str, Value)> = Vec::new();
    let outcome = if !subscribed {
        fields.push(("attempts", Value::from(0)));
        "unmatched"
    } else if let Some(letter) = dead_letter {
        fields.push(("attempts", letter["attempts"].clone()));
        let error = letter["error"].as_str().unwrap_or_default();
        // The first line is the positioned message; the traceback goes to stderr.
        fields.push((
            "error",
            Value::from(error.lines().next().unwrap_or_default()),
        ));
        if error.lines().nth(1).is_some() {
            eprintln!("event {n}: {error}");
        }
        "dead_lettered"
    } else {
        fields.push(("attempts", Value::from(delta.retried + 1)));
        if delta.forwarded > 0 && (delta.acked == 0 || others == 0) {
            "forwarded"
        } else if delta.acked > 0 {
            "acked"
        } else {
            "undelivered"
        }
    };
    if others > 0 {
        fields.push((
            "handled",
            serde_json::json!({
                "acked": delta.acked,
                "forwarded": delta.forwarded,
                "retried": delta.retried,
                "dead_lettered": delta.dead_lettered,
            }),
        ));
    }
    out.outcome(n, outcome, &fields);
}

/// Every event already in the tap, without waiting.
fn drain(tap: &mut EventStream) -> Vec<Arc<Event>> {
    let mut events = Vec::new();
    while let Some(Some(e)) = tap.recv().now_or_never() {
        events.push(e);
    }
    events
}

/// Whether a line of an events or expect file is left out: blank, or a
/// comment starting with `#` (which no JSON value does).
fn skipped(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

/// The input events with their 1-based line numbers; every bad line is an
/// error `file:line:col: message`.
fn read_events(path: &Path) -> Result<Vec<(usize, Event)>, Vec<String>> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for (k, line) in text.lines().enumerate() {
        if skipped(line) {
            continue;
        }
        match input::parse_line(line) {
            Ok(Some(event)) => events.push((k + 1, event)),
            Ok(None) => {}
            Err(e) => errors.push(format!("{name}:{}:{}: {}", k + 1, e.column, e.message)),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(errors)
    }
}

/// The expect file's lines; every line that is not JSON is an error.
fn read_expect(path: &Path) -> Result<Vec<ExpectLine>, Vec<String>> {
    let name = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| vec![format!("{name}: {e}")])?;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (k, line) in text.lines().enumerate() {
        if skipped(line) {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(value) => lines.push(ExpectLine {
                line: k + 1,
                text: line.trim().to_owned(),
                value,
            }),
            Err(e) => {
                let message = e.to_string();
                let message = message
                    .rfind(" at line ")
                    .map_or(message.as_str(), |at| &message[..at]);
                errors.push(format!("{name}:{}:{}: {message}", k + 1, e.column().max(1)));
            }
        }
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}
