//! `--input`: one JSON event per line, from a file or stdin.
//!
//! Parsing a line is pure ([`parse_line`], [`parse_bytes`]): one pass of
//! `serde_json` over the line, its payload packed as it is read (no JSON
//! tree is built). [`spawn_reader`] reads the stream on a thread of its own,
//! line by line (stdin is never read to the end first), and publishes each
//! event as it is parsed, so reading, parsing and routing never wait for the
//! async runtime or the plugins' threads, except where a `block` queue is
//! full. A bad line (not UTF-8, not a JSON object, longer than
//! [`MAX_LINE_BYTES`], a bad or reserved topic) is reported as
//! `name:line:col: message` and skipped; the lines after it still flow. A
//! line over the limit is never held in memory whole: its bytes past the
//! limit are read and thrown away up to its newline.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::BufRead;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use plughost_bindings::payload::Writer;
use plughost_bindings::{Event, HOST_SOURCE};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use crate::Host;
use crate::json::Pack;

/// The keys of an input line.
const FIELDS: &[&str] = &["topic", "payload", "headers", "correlation_id"];

/// A line that could not become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// The longest input line accepted, its newline excluded: 1 MiB, the same
/// bound as an event posted to the admin endpoint.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Parses one line as read (bytes, newline removed): it must be UTF-8, then
/// as [`parse_line`].
pub fn parse_bytes(bytes: &[u8]) -> Result<Option<Event>, LineError> {
    let text = std::str::from_utf8(bytes).map_err(|e| LineError {
        column: e.valid_up_to() + 1,
        message: "the line is not valid UTF-8".into(),
    })?;
    parse_line(text)
}

/// Parses one line into an event with source `host`; `Ok(None)` for a blank line.
pub fn parse_line(text: &str) -> Result<Option<Event>, LineError> {
    let Some(first) = text.find(|c: char| !c.is_whitespace()) else {
        return Ok(None);
    };
    // Only an object is an event (serde would read a struct from an array).
    if !text[first..].starts_with('{') {
        return Err(LineError {
            column: text[..first].chars().count() + 1,
            message: "an input line must be a JSON object \
                      (expected {\"topic\": \"a.b\", \"payload\": ...})"
                .into(),
        });
    }
    let mut payload = Writer::new();
    let mut de = serde_json::Deserializer::from_str(text);
    let line = LineSeed(&mut payload)
        .deserialize(&mut de)
        .and_then(|line| de.end().map(|()| line))
        .map_err(|e| LineError {
            column: e.column().max(1),
            message: format!(
                "{} (expected {{\"topic\": \"a.b\", \"payload\": ...}})",
                strip_position(&e.to_string())
            ),
        })?;
    // Looked for only when the topic is refused.
    let topic_col = || text.find("\"topic\"").map(|c| c + 1).unwrap_or(1);
    crate::topic::validate_topic(&line.topic).map_err(|e| LineError {
        column: topic_col(),
        message: e.to_string(),
    })?;
    if crate::host_events::is_reserved(&line.topic) {
        return Err(LineError {
            column: topic_col(),
            message: format!("topic `{}` is reserved for the host", line.topic),
        });
    }
    if !line.payload {
        payload.null();
    }
    let mut event = Event::new(line.topic, payload.finish(), HOST_SOURCE);
    event.headers = line.headers;
    event.correlation_id = line.correlation_id;
    Ok(Some(event))
}

fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |at| &msg[..at])
}

/// What a line holds besides its payload, which went into the writer.
struct Line {
    topic: String,
    payload: bool,
    headers: BTreeMap<String, String>,
    correlation_id: Option<String>,
}

/// Reads a line's object, packing its `payload` into the writer on the way.
struct LineSeed<'w>(&'w mut Writer);

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Line;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Line, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = Line;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line, A::Error> {
        let mut topic = None;
        let mut payload = false;
        let mut headers = None;
        let mut correlation_id = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match &*key {
                "topic" if topic.is_none() => topic = Some(map.next_value::<String>()?),
                "payload" if !payload => {
                    map.next_value_seed(Pack(self.0))?;
                    payload = true;
                }
                "headers" if headers.is_none() => headers = Some(map.next_value()?),
                "correlation_id" if correlation_id.is_none() => {
                    correlation_id = Some(map.next_value::<Option<String>>()?);
                }
                "topic" | "payload" | "headers" | "correlation_id" => {
                    return Err(de::Error::custom(format_args!("duplicate field `{key}`")));
                }
                other => return Err(de::Error::unknown_field(other, FIELDS)),
            }
        }
        Ok(Line {
            topic: topic.ok_or_else(|| de::Error::missing_field("topic"))?,
            payload,
            headers: headers.unwrap_or_default(),
            correlation_id: correlation_id.flatten(),
        })
    }
}

/// What reading the input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Events published.
    pub published: u64,
    /// Lines refused.
    pub errors: u64,
}

/// The input being read on its own thread.
#[derive(Debug)]
pub struct Reading {
    done: tokio::sync::oneshot::Receiver<InputStats>,
    stop: Arc<AtomicBool>,
}

impl Reading {
    /// Waits for the end of the input; its stats.
    pub async fn finished(&mut self) -> InputStats {
        (&mut self.done).await.unwrap_or_default()
    }

    /// Stops publishing: no line read after this is published. A thread
    /// blocked reading stdin is left to end with the process.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Reads `reader` (named `name` in messages) on a thread of its own and
/// publishes every line as it arrives; the thread ends at the end of the
/// input or once [`Reading::stop`] is called.
pub fn spawn_reader(
    host: Host,
    name: String,
    reader: Box<dyn BufRead + Send>,
) -> std::io::Result<Reading> {
    let (tx, done) = tokio::sync::oneshot::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("plughost-input".into())
        .spawn(move || {
            let stats = publish_lines(&host, &name, reader, &stopped);
            let _ = tx.send(stats);
        })?;
    Ok(Reading { done, stop })
}

/// Publishes every line of `reader` (named `name` in messages) as it
/// arrives, until its end or `stop`.
pub fn publish_lines(
    host: &Host,
    name: &str,
    mut reader: impl BufRead,
    stop: &AtomicBool,
) -> InputStats {
    let mut stats = InputStats::default();
    let mut line = Vec::new();
    let mut number = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let read = match read_line(&mut reader, &mut line) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("{name}:{}: cannot read input: {e}", number + 1);
                stats.errors += 1;
                break;
            }
        };
        number += 1;
        if let Read::TooLong(len) = read {
            tracing::error!(
                "{name}:{number}:{}: the line is {len} bytes long, over the limit of \
                 {MAX_LINE_BYTES} bytes; skipped",
                MAX_LINE_BYTES + 1
            );
            stats.errors += 1;
            continue;
        }
        match parse_bytes(&line) {
            Ok(None) => {}
            Ok(Some(_)) if stop.load(Ordering::Relaxed) => break,
            Ok(Some(event)) => match host.publish_event_blocking(event) {
                Ok(_) => stats.published += 1,
                Err(e) => {
                    tracing::error!("{name}:{number}:1: {e}");
                    stats.errors += 1;
                }
            },
            Err(e) => {
                tracing::error!("{name}:{number}:{}: {}", e.column, e.message);
                stats.errors += 1;
            }
        }
    }
    stats
}

/// How one line was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// The line is in the buffer.
    Whole,
    /// The line was longer than [`MAX_LINE_BYTES`] (its length in bytes); it
    /// was read to its end and thrown away.
    TooLong(usize),
}

/// Reads the next line into `line` (without `\n` or `\r\n`); `None` at the
/// end of the input. A line over [`MAX_LINE_BYTES`] is consumed but not kept.
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<Option<Read>> {
    line.clear();
    let mut len = 0usize;
    let mut any = false;
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            break;
        }
        any = true;
        let newline = chunk.iter().position(|&b| b == b'\n');
        let content = &chunk[..newline.unwrap_or(chunk.len())];
        len = len.saturating_add(content.len());
        if len <= MAX_LINE_BYTES + 1 {
            // One byte over the limit is kept, so a `\r` before the newline
            // does not count against it.
            line.extend_from_slice(content);
        } else if !line.is_empty() {
            *line = Vec::new();
        }
        let used = newline.map_or(chunk.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    if line.last() == Some(&b'\r') && len <= MAX_LINE_BYTES + 1 {
        line.pop();
        len -= 1;
    }
    Ok(Some(if len > MAX_LINE_BYTES {
        line.clear();
        Read::TooLong(len)
    } else {
        Read::Whole
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_becomes_a_host_event() {
        let e = parse_line(
            r#"{"topic": "text.raw", "payload": {"text": "hi"}, "headers": {"k": "v"}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(e.topic, "text.raw");
        assert_eq!(e.payload["text"], "hi");
        assert_eq!(e.source, "host");
        assert_eq!(e.headers["k"], "v");
    }

    #[test]
    fn the_payload_is_packed_as_serde_json_reads_it() {
        let text = r#"{"payload": {"s": "é\"\n", "n": -3, "f": 1.5, "b": [true, null, {}], "o": {"k": []}}, "topic": "a.b", "correlation_id": "c1"}"#;
        let e = parse_line(text).unwrap().unwrap();
        assert!(e.payload.packed().is_some(), "no JSON tree is built");
        let want: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(*e.payload.value(), want["payload"]);
        assert_eq!(e.correlation_id.as_deref(), Some("c1"));
        let e = parse_line(r#"{"topic": "a.b"}"#).unwrap().unwrap();
        assert_eq!(*e.payload.value(), serde_json::Value::Null);
        let e = parse_line(r#"{"topic": "a.b", "correlation_id": null}"#)
            .unwrap()
            .unwrap();
        assert_eq!(e.correlation_id, None);
    }

    #[test]
    fn a_line_with_a_missing_repeated_or_mistyped_key_is_refused() {
        let e = parse_line(r#"{"payload": 1}"#).unwrap_err();
        assert!(e.message.contains("missing field `topic`"), "{}", e.message);
        let e = parse_line(r#"{"topic": "a", "payload": 1, "payload": 2}"#).unwrap_err();
        assert!(
            e.message.contains("duplicate field `payload`"),
            "{}",
            e.message
        );
        let e = parse_line(r#"{"topic": "a", "headers": {"k": 1}}"#).unwrap_err();
        assert!(e.message.contains("invalid type"), "{}", e.message);
        assert_eq!(e.column, 33);
        let e = parse_line(r#"{"topic": "a"} {"topic": "b"}"#).unwrap_err();
        assert!(e.message.contains("trailing characters"), "{}", e.message);
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert_eq!(parse_line("   "), Ok(None));
    }

    #[test]
    fn bad_lines_name_the_column() {
        let e = parse_line(r#"{"topic": "a", "payload": }"#).unwrap_err();
        assert_eq!(e.column, 27);
        let e = parse_line(r#"{"topc": "a"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `topc`"), "{}", e.message);
        let e = parse_line(r#"{"payload": 1, "topic": "a.*"}"#).unwrap_err();
        assert_eq!(e.column, 16);
        assert!(e.message.contains("wildcard"), "{}", e.message);
        let e = parse_line(r#"{"topic": "plughost.dead_letter"}"#).unwrap_err();
        assert!(e.message.contains("reserved"), "{}", e.message);
    }

    #[test]
    fn only_an_object_is_an_event() {
        for text in [r#"["a.b", {}]"#, "  42", r#""a.b""#, "null", "true"] {
            let e = parse_line(text).unwrap_err();
            assert!(
                e.message.contains("must be a JSON object"),
                "{text}: {}",
                e.message
            );
        }
        assert_eq!(parse_line(r#"  ["a.b"]"#).unwrap_err().column, 3);
    }

    #[test]
    fn a_line_that_is_not_utf8_names_the_column() {
        let e = parse_bytes(b"{\"topic\": \"a\xff\"}").unwrap_err();
        assert_eq!(e.column, 13);
        assert!(e.message.contains("UTF-8"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"topic": "a", "payload": {}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let e = parse_line(&deep).unwrap_err();
        assert!(e.message.contains("recursion limit"), "{}", e.message);
    }

    fn read_all(input: &[u8]) -> Vec<(Read, Vec<u8>)> {
        // A small buffer, so lines span several chunks.
        let mut reader = std::io::BufReader::with_capacity(7, input);
        let mut line = Vec::new();
        let mut out = Vec::new();
        while let Some(r) = read_line(&mut reader, &mut line).unwrap() {
            out.push((r, line.clone()));
        }
        out
    }

    #[test]
    fn lines_are_split_with_crlf_removed_and_long_ones_refused() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let exact = vec![b'y'; MAX_LINE_BYTES];
        let mut input = b"a\r\n\nbad \xff\n".to_vec();
        input.extend_from_slice(&long);
        input.push(b'\n');
        input.extend_from_slice(&exact);
        input.extend_from_slice(b"\r\nlast");
        let lines = read_all(&input);
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0], (Read::Whole, b"a".to_vec()));
        assert_eq!(lines[1], (Read::Whole, b"".to_vec()));
        assert_eq!(lines[2], (Read::Whole, b"bad \xff".to_vec()));
        assert_eq!(lines[3].0, Read::TooLong(MAX_LINE_BYTES + 1));
        assert!(lines[3].1.is_empty(), "a refused line is not kept");
        assert_eq!(lines[4], (Read::Whole, exact));
        assert_eq!(lines[5], (Read::Whole, b"last".to_vec()));
    }
}
