//! `plughost dead-letters list|replay` (SPEC §15): clients of a running
//! host's `GET /dead_letters` and `POST /dead_letters/{id}/replay`.
//!
//! `list` prints a table (id, plugin, topic, attempts, the error's first
//! line) or, with `--json`, the host's array; `replay ID…` replays each in
//! turn, printing each replayed event's id, and reports every failure
//! (exit 1 when any failed). The table is pure and tested here.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use super::client::{Client, ClientError};
use crate::manifest::is_valid_name;

/// What is percent-encoded in an id put in the path: all but unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The widest an error cell is in the table.
const ERROR_WIDTH: usize = 80;

/// `GET /dead_letters[?plugin=NAME]`: the kept dead letters, oldest first.
pub fn list(client: &Client, plugin: Option<&str>) -> Result<Vec<Value>, ClientError> {
    let path = match plugin {
        Some(name) if !is_valid_name(name) => {
            return Err(ClientError::Usage(format!(
                "`{name}` is not a plugin name: use 1 to 64 lowercase letters, digits, `_` and `-`"
            )));
        }
        Some(name) => format!("/dead_letters?plugin={name}"),
        None => "/dead_letters".to_owned(),
    };
    match client.get(&path)? {
        Value::Array(letters) => Ok(letters),
        other => Err(ClientError::Failed(format!(
            "the host answered something other than a list: {other}"
        ))),
    }
}

/// `POST /dead_letters/{id}/replay`: the replayed event's id.
pub fn replay(client: &Client, id: &str) -> Result<String, ClientError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(ClientError::Usage("a dead letter id is empty".to_owned()));
    }
    let path = format!("/dead_letters/{}/replay", utf8_percent_encode(id, SEGMENT));
    let answer = client.post(&path, Vec::new())?;
    answer["event_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| {
            ClientError::Failed(format!("the host answered without an event_id: {answer}"))
        })
}

/// What `replay ID…` did: a line per replayed event id on stdout, a line
/// per failure (naming its id) for stderr.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The replayed events' ids, one per line.
    pub replayed: String,
    /// Every failure, one per line.
    pub failed: Vec<String>,
    /// Whether a failure was a usage error (nothing was sent for it).
    pub usage: bool,
}

/// Replays every id in turn; a failure does not stop the others.
pub fn replay_all(client: &Client, ids: &[String]) -> ReplayReport {
    let mut report = ReplayReport::default();
    for id in ids {
        match replay(client, id) {
            Ok(event_id) => {
                report.replayed.push_str(&event_id);
                report.replayed.push('\n');
            }
            Err(e) => {
                report.usage |= matches!(e, ClientError::Usage(_));
                report.failed.push(format!("{id}: {e}"));
            }
        }
    }
    report
}

/// The table `list` prints: a header, then a line per dead letter.
pub fn table(letters: &[Value]) -> String {
    if letters.is_empty() {
        return "no dead letters\n".to_owned();
    }
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let mut rows = vec![["ID", "PLUGIN", "TOPIC", "ATTEMPTS", "ERROR"].map(str::to_owned)];
    for l in letters {
        let error = l["error"].as_str().unwrap_or_default();
        let mut first: String = error.lines().next().unwrap_or_default().to_owned();
        if first.chars().count() > ERROR_WIDTH {
            first = first.chars().take(ERROR_WIDTH - 1).collect::<String>() + "…";
        }
        let topic = text(&l["event"]["topic"]);
        let topic = if l["truncated"] == Value::Bool(true) {
            format!("{topic} (truncated)")
        } else {
            topic
        };
        rows.push([
            text(&l["id"]),
            text(&l["plugin"]),
            topic,
            text(&l["attempts"]),
            first,
        ]);
    }
    super::table::aligned(&rows, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_shows_the_errors_first_line() {
        let letters = [
            json!({"id": "01J", "plugin": "orders", "event": {"topic": "orders.created"},
                   "error": "orders/main.lua:3:5: boom\nstack traceback:\n\t...", "attempts": 1,
                   "truncated": false}),
            json!({"id": "01K", "plugin": "big", "event": {"topic": "blob.in"},
                   "error": "x".repeat(200), "attempts": 3, "truncated": true}),
        ];
        let t = table(&letters);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("ID "), "{t}");
        assert!(lines[1].contains("orders.created"), "{t}");
        assert!(lines[1].ends_with("orders/main.lua:3:5: boom"), "{t}");
        assert!(!t.contains("traceback"), "{t}");
        assert!(lines[2].contains("blob.in (truncated)"), "{t}");
        assert!(lines[2].ends_with('…'), "{t}");
    }

    #[test]
    fn an_empty_store_says_so() {
        assert_eq!(table(&[]), "no dead letters\n");
    }
}
