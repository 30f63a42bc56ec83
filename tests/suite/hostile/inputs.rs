//! Hostile `--input` lines (SPEC §8): malformed, not UTF-8, not an object,
//! huge, deeply nested, blank, reserved and wildcard topics. Each runs the
//! real binary with `run --input FILE --exit-when-idle --tap '>'` beside a
//! well-behaved plugin that echoes every `in.*` event: every line is
//! accounted for, handled (echoed) or refused with its line number, and the
//! lines after a bad one still flow.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::support::{Fixture, Run, Runtime, run_binary};

/// Echoes each event's payload `n` on `out.seen`.
const ECHO: &str = "function on_event(e) bus.publish('out.seen', {n = e.payload.n}) end\n";

/// A plugins directory with the echo plugin, and a separate dir for input files.
struct Inputs {
    fx: Fixture,
    files: tempfile::TempDir,
}

impl Inputs {
    fn new() -> Inputs {
        let fx = Fixture::new();
        fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
        Inputs {
            fx,
            files: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// Runs the host on an input file holding `bytes`; returns the run and
    /// the file's path as the host names it.
    fn run(&self, bytes: &[u8]) -> (Run, String) {
        self.run_written(|f| f.write_all(bytes))
    }

    /// Like [`Inputs::run`], the file written by `write`.
    fn run_written(
        &self,
        write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
    ) -> (Run, String) {
        let file: PathBuf = self.files.path().join("input.jsonl");
        let mut out = std::fs::File::create(&file).expect("create the input");
        write(&mut out).expect("write the input");
        drop(out);
        let file = file.to_str().unwrap().to_owned();
        let run = run_binary(
            &[
                "run",
                "--plugins",
                self.fx.path().to_str().unwrap(),
                "--input",
                &file,
                "--exit-when-idle",
                "--tap",
                ">",
                "--no-watch",
            ],
            None,
        );
        (run, file)
    }
}

/// An input line for `in.x` carrying `n`.
fn good(n: u64) -> Vec<u8> {
    format!("{}\n", json!({"topic": "in.x", "payload": {"n": n}})).into_bytes()
}

/// The `n`s the echo plugin handled, sorted.
fn seen(run: &Run) -> Vec<u64> {
    let mut n: Vec<u64> = run
        .payloads("out.seen")
        .iter()
        .map(|p| p["n"].as_u64().expect("n"))
        .collect();
    n.sort_unstable();
    n
}

/// The line numbers the log refuses in `file` (`FILE:LINE:COL: …` errors).
fn refused(run: &Run, file: &str) -> BTreeSet<usize> {
    let prefix = format!("{file}:");
    run.stderr
        .lines()
        .filter(|l| l.contains("ERROR"))
        .filter_map(|l| {
            let at = l.find(&prefix)? + prefix.len();
            let digits: String = l[at..].chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

/// The one log line refusing line `number` of `file`.
fn refusal(run: &Run, file: &str, number: usize) -> String {
    let needle = format!("{file}:{number}:");
    let hits: Vec<&str> = run.stderr.lines().filter(|l| l.contains(&needle)).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one refusal of line {number}\n{run}"
    );
    hits[0].to_owned()
}

#[test]
fn a_line_that_is_not_utf8_is_refused_by_number_and_the_rest_still_flow() {
    let inputs = Inputs::new();
    let mut text = good(1);
    text.extend_from_slice(b"{\"topic\": \"in.x\", \"payload\": \"\xff\xfe\"}\n");
    text.extend_from_slice(b"\x00\x01\x02\x89PNG\x1a\x00\n");
    text.extend(good(4));
    text.extend(good(5));
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [1, 4, 5], "{run}");
    assert!(refusal(&run, &file, 2).contains("not valid UTF-8"), "{run}");
    assert!(refusal(&run, &file, 3).contains("not valid UTF-8"), "{run}");
    assert_eq!(refused(&run, &file), BTreeSet::from([2, 3]), "{run}");
}

#[test]
fn a_line_that_is_not_a_json_object_is_refused_not_published() {
    let inputs = Inputs::new();
    let mut text = Vec::new();
    for line in [
        r#"["in.x", {"n": 1}]"#,
        r#"[{"topic": "in.x", "payload": {"n": 2}}]"#,
        "42",
        r#""in.x""#,
        "null",
        "true",
    ] {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text.extend(good(7));
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [7], "{run}");
    for number in 1..=6 {
        assert!(
            refusal(&run, &file, number).contains("must be a JSON object"),
            "{run}"
        );
    }
    assert!(
        run.on("in.x").len() == 1,
        "only line 7 was published\n{run}"
    );
}

#[test]
fn malformed_json_is_refused_with_line_and_column() {
    let inputs = Inputs::new();
    let mut text = Vec::new();
    for line in [
        r#"{"topic": "in.x", "payload": }"#,
        r#"{"topic": "in.x""#,
        r#"{"topc": "in.x"}"#,
        r#"{"topic": 7}"#,
        r#"{"topic": "in.x", "headers": {"k": 1}}"#,
        r#"{"topic": "in.x"} trailing"#,
    ] {
        text.extend_from_slice(line.as_bytes());
        text.push(b'\n');
    }
    text.extend(good(7));
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [7], "{run}");
    assert_eq!(refused(&run, &file), (1..=6).collect(), "{run}");
    assert!(
        refusal(&run, &file, 1).contains(&format!("{file}:1:30:")),
        "{run}"
    );
    assert!(
        refusal(&run, &file, 3).contains("unknown field `topc`"),
        "{run}"
    );
}

/// A 100 MB line is refused by number without taking the host down, and
/// the line after it is still read.
#[test]
fn a_huge_line_is_refused_and_the_host_carries_on() {
    let inputs = Inputs::new();
    let (run, file) = inputs.run_written(|f| {
        f.write_all(&good(1))?;
        f.write_all(br#"{"topic": "in.x", "payload": {"n": 2, "pad": ""#)?;
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..100 {
            f.write_all(&chunk)?;
        }
        f.write_all(b"\"}}\n")?;
        f.write_all(&good(3))
    });
    run.expect_code(1);
    assert_eq!(seen(&run), [1, 3], "{run}");
    let line = refusal(&run, &file, 2);
    assert!(line.contains("over the limit of 1048576 bytes"), "{line}");
}

/// A line just under the limit is an ordinary event.
#[test]
fn a_line_just_under_the_limit_is_published() {
    let inputs = Inputs::new();
    let head = r#"{"topic": "in.x", "payload": {"n": 1, "pad": ""#;
    let tail = "\"}}";
    let pad = 1024 * 1024 - head.len() - tail.len();
    let line = format!("{head}{}{tail}\n", "y".repeat(pad));
    assert_eq!(line.len(), 1024 * 1024 + 1);
    let (run, _) = inputs.run(line.as_bytes());
    run.expect_code(0);
    assert_eq!(seen(&run), [1], "{run}");
}

#[test]
fn deeply_nested_json_is_an_error_not_a_crash() {
    let inputs = Inputs::new();
    let depth = 200_000;
    let mut text = format!(
        "{{\"topic\": \"in.x\", \"payload\": {}{}}}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
    .into_bytes();
    text.extend(
        format!(
            "{{\"topic\": \"in.x\", \"payload\": {}\n",
            "{\"a\":".repeat(depth)
        )
        .bytes(),
    );
    text.extend(good(3));
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [3], "{run}");
    assert!(refusal(&run, &file, 1).contains("recursion limit"), "{run}");
    assert!(refusal(&run, &file, 2).contains("recursion limit"), "{run}");
}

#[test]
fn blank_lines_are_skipped_and_still_counted() {
    let inputs = Inputs::new();
    let mut text = b"\n   \n\t\r\n".to_vec();
    text.extend(good(1));
    text.extend_from_slice(b"\n\n{bad\n");
    text.extend(good(2));
    text.extend_from_slice(b"\r\n");
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [1, 2], "{run}");
    assert_eq!(refused(&run, &file), BTreeSet::from([7]), "{run}");
}

#[test]
fn a_file_of_blank_lines_is_no_error() {
    let inputs = Inputs::new();
    let (run, _) = inputs.run(b"\n\n  \n");
    run.expect_code(0);
    assert!(seen(&run).is_empty(), "{run}");
}

#[test]
fn host_and_wildcard_topics_are_refused() {
    let inputs = Inputs::new();
    let mut text = Vec::new();
    for topic in [
        "plughost.plugin.started",
        "plughost.dead_letter",
        "plughost.cluster.connected",
        "in.*",
        "in.>",
        ">",
        "in..x",
        "",
        "in. x",
    ] {
        text.extend(format!("{}\n", json!({"topic": topic, "payload": {"n": 0}})).bytes());
    }
    text.extend(good(10));
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    assert_eq!(seen(&run), [10], "{run}");
    assert_eq!(refused(&run, &file), (1..=9).collect(), "{run}");
    assert!(
        refusal(&run, &file, 1).contains("reserved for the host"),
        "{run}"
    );
    assert!(refusal(&run, &file, 4).contains("wildcard"), "{run}");
    // The host's own events are its own: none came from the input.
    assert!(
        run.on("plughost.dead_letter").is_empty(),
        "an input line reached a host topic\n{run}"
    );
    let started = run.on("plughost.plugin.started");
    assert!(started.iter().all(|e| e["source"] == "host"), "{run}");
    assert_eq!(started.len(), 1, "{run}");
}

/// A mix of every kind of line: each is either handled by the plugin or
/// refused with its own number, never both, never neither.
#[test]
fn every_input_line_is_accounted_for() {
    let inputs = Inputs::new();
    let lines: Vec<Vec<u8>> = vec![
        good(1),
        b"[1, 2]\n".to_vec(),
        good(3),
        b"\xc3\x28\n".to_vec(),
        good(5),
        format!("{}\n", json!({"topic": "plughost.x", "payload": {"n": 6}})).into_bytes(),
        good(7),
        format!(
            "{}\n",
            json!({"topic": "in.x", "payload": {"n": 8}, "extra": 1})
        )
        .into_bytes(),
        good(9),
        format!(
            "{{\"topic\": \"in.x\", \"payload\": {}}}\n",
            "[".repeat(5000)
        )
        .into_bytes(),
        good(11),
        format!("{}\n", json!({"topic": "other.x", "payload": {"n": 12}})).into_bytes(),
    ];
    let text: Vec<u8> = lines.concat();
    let (run, file) = inputs.run(&text);
    run.expect_code(1);
    let handled: BTreeSet<usize> = seen(&run).into_iter().map(|n| n as usize).collect();
    let refused = refused(&run, &file);
    assert!(handled.is_disjoint(&refused), "{run}");
    // Line 12 is published on a topic nobody subscribes to: neither handled
    // nor refused, but tapped.
    assert_eq!(run.on("other.x").len(), 1, "{run}");
    let all: BTreeSet<usize> = handled.union(&refused).copied().chain([12]).collect();
    assert_eq!(all, (1..=lines.len()).collect(), "{run}");
    assert_eq!(handled, BTreeSet::from([1, 3, 5, 7, 9, 11]), "{run}");
}

#[test]
fn events_from_input_come_from_the_host() {
    let inputs = Inputs::new();
    let (run, _) = inputs.run(
        format!(
            "{}\n",
            json!({"topic": "in.x", "payload": {"n": 1}, "headers": {"source": "spoof"}})
        )
        .as_bytes(),
    );
    run.expect_code(0);
    let input: Vec<Value> = run.on("in.x");
    assert_eq!(input.len(), 1, "{run}");
    assert_eq!(input[0]["source"], "host", "{run}");
}
