//! `--input`: one JSON event per line, from a file or stdin.
//!
//! Parsing a line is pure ([`parse_line`]); [`publish_lines`] reads the
//! stream line by line (stdin is never read to the end first) and publishes
//! each event as it arrives. A bad line is reported as `name:line:col:
//! message` and skipped; the rest still flow.

use std::collections::BTreeMap;

use plughost_bindings::{Event, HOST_SOURCE};
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::Host;

/// One input line as written.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Line {
    topic: String,
    #[serde(default)]
    payload: Value,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    correlation_id: Option<String>,
}

/// A line that could not become an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// 1-based column of the problem.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses one line into an event with source `host`; `Ok(None)` for a blank line.
pub fn parse_line(text: &str) -> Result<Option<Event>, LineError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let line: Line = serde_json::from_str(text).map_err(|e| LineError {
        column: e.column().max(1),
        message: format!(
            "{} (expected {{\"topic\": \"a.b\", \"payload\": ...}})",
            strip_position(&e.to_string())
        ),
    })?;
    let topic_col = text.find("\"topic\"").map(|c| c + 1).unwrap_or(1);
    crate::topic::validate_topic(&line.topic).map_err(|e| LineError {
        column: topic_col,
        message: e.to_string(),
    })?;
    if line.topic.starts_with(crate::services::HOST_TOPIC_PREFIX) {
        return Err(LineError {
            column: topic_col,
            message: format!("topic `{}` is reserved for the host", line.topic),
        });
    }
    let mut event = Event::new(line.topic, line.payload, HOST_SOURCE);
    event.headers = line.headers;
    event.correlation_id = line.correlation_id;
    Ok(Some(event))
}

fn strip_position(msg: &str) -> &str {
    msg.rfind(" at line ").map_or(msg, |at| &msg[..at])
}

/// What reading the input did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct InputStats {
    /// Events published.
    pub published: u64,
    /// Lines refused.
    pub errors: u64,
}

/// Publishes every line of `reader` (named `name` in messages) as it arrives.
pub async fn publish_lines<R: AsyncBufRead + Unpin>(
    host: &Host,
    name: &str,
    reader: R,
) -> InputStats {
    let mut stats = InputStats::default();
    let mut lines = reader.lines();
    let mut number = 0usize;
    loop {
        let line = match lines.next_line().await {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                tracing::error!("{name}:{}: cannot read input: {e}", number + 1);
                stats.errors += 1;
                break;
            }
        };
        number += 1;
        match parse_line(&line) {
            Ok(None) => {}
            Ok(Some(event)) => match host.publish_event(event).await {
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
}
