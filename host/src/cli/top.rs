//! `plughost top [--once] [--interval DURATION]`: a running host's plugins,
//! live, in the terminal.
//!
//! Every interval it reads `GET /overview` (SPEC §15) and prints a table:
//! per plugin its state, events per second, errors, errors per second,
//! queue depth, p50 and p99 processing times and restarts, with rollouts
//! marked and described under the table. On a terminal the screen is
//! redrawn (ANSI clear); otherwise successive tables are printed, separated
//! by a blank line. `--once` prints one table and exits. The table is pure
//! formatting of the overview's JSON, tested here.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use serde_json::Value;

use super::client::{self, Client, ClientError};

/// Moves the cursor home and clears the screen.
const CLEAR: &str = "\x1b[H\x1b[2J";
/// The shortest refresh interval: faster would only load the host.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Prints the table once, or every `interval` until the host cannot be
/// reached or stdout is closed.
pub fn run(client: &Client, once: bool, interval: Duration) -> Result<(), ClientError> {
    let terminal = std::io::stdout().is_terminal();
    let mut first = true;
    loop {
        let overview = client.overview()?;
        let mut text = String::new();
        if terminal && !once {
            text.push_str(CLEAR);
        } else if !first {
            text.push('\n');
        }
        text.push_str(&screen(&overview));
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            // stdout closed (`| head`): nothing more to show.
            return Ok(());
        }
        drop(out);
        if once {
            return Ok(());
        }
        first = false;
        std::thread::sleep(interval.max(MIN_INTERVAL));
    }
}

/// The whole screen for `overview`: a header line, the table, each
/// rollout's line, and the cluster's state when there is one.
pub fn screen(overview: &Value) -> String {
    let plugins = overview["plugins"]
        .as_array()
        .map_or(&[][..], Vec::as_slice);
    let mut out = format!(
        "plughost {}  up {}  {}  {} plugins\n",
        overview["version"].as_str().unwrap_or("?"),
        uptime(overview["uptime_ms"].as_u64().unwrap_or(0)),
        overview["status"].as_str().unwrap_or("?"),
        plugins.len(),
    );
    out.push_str(&table(plugins));
    out.push_str(&client::rollout_lines(plugins));
    if let Some(cluster) = overview.get("cluster").filter(|c| c.is_object()) {
        out.push_str(
            &client::cluster_line(&serde_json::json!({ "cluster": cluster })).unwrap_or_default(),
        );
    }
    if let Some(kept) = overview["dead_letters"]["kept"].as_u64() {
        out.push_str(&format!("dead letters kept: {kept}\n"));
    }
    out
}

/// The plugins' table, columns aligned (numbers to the right).
pub fn table(plugins: &[Value]) -> String {
    const HEAD: [&str; 9] = [
        "PLUGIN", "STATE", "EVENTS/S", "ERRORS", "ERR/S", "QUEUE", "P50", "P99", "RESTARTS",
    ];
    let mut rows = vec![HEAD.map(str::to_owned)];
    for p in plugins {
        let int = |key: &str| p[key].as_u64().unwrap_or(0).to_string();
        let mut state = p["state"].as_str().unwrap_or("?").to_owned();
        if let Some(mark) = rollout_mark(&p["rollout"]) {
            state.push_str(&format!(" ({mark})"));
        }
        rows.push([
            p["name"].as_str().unwrap_or("?").to_owned(),
            state,
            rate(p["events_per_s"].as_f64().unwrap_or(0.0)),
            int("errors"),
            rate(p["errors_per_s"].as_f64().unwrap_or(0.0)),
            int("queue_depth"),
            millis(p["p50_ms"].as_f64()),
            millis(p["p99_ms"].as_f64()),
            int("restarts"),
        ]);
    }
    super::table::aligned(&rows, 2)
}

/// A rollout in short, for the state column: `shadow` or `gradual N%`.
fn rollout_mark(rollout: &Value) -> Option<String> {
    let strategy = rollout.get("strategy")?.as_str()?;
    Some(match rollout["percent"].as_u64() {
        Some(percent) => format!("{strategy} {percent}%"),
        None => strategy.to_owned(),
    })
}

/// A rate: one decimal under 100 a second, whole numbers above.
fn rate(per_s: f64) -> String {
    if per_s >= 100.0 {
        format!("{per_s:.0}")
    } else {
        format!("{per_s:.1}")
    }
}

/// A processing time: `-` for none, µs, ms or s as fits.
fn millis(ms: Option<f64>) -> String {
    match ms {
        None => "-".to_owned(),
        Some(ms) if ms < 1.0 => format!("{:.0}µs", ms * 1000.0),
        Some(ms) if ms < 1000.0 => format!("{ms:.1}ms"),
        Some(ms) => format!("{:.2}s", ms / 1000.0),
    }
}

/// An uptime as `3s`, `4m05s` or `2h03m`.
fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plugin(name: &str, events: f64, p50: Option<f64>, rollout: Value) -> Value {
        json!({
            "name": name, "state": "running", "events_per_s": events, "errors": 3,
            "errors_per_s": 0.5, "queue_depth": 7, "p50_ms": p50, "p99_ms": p50.map(|p| p * 10.0),
            "restarts": 1, "rollout": rollout,
        })
    }

    #[test]
    fn the_table_has_every_plugin_with_aligned_columns() {
        let t = table(&[
            plugin("echo", 1234.4, Some(0.12), Value::Null),
            plugin("b", 2.24, None, Value::Null),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("PLUGIN  STATE    EVENTS/S"), "{t}");
        assert!(
            lines[1].starts_with("echo    running      1234       3"),
            "{t}"
        );
        assert!(lines[1].contains("120µs"), "{t}");
        assert!(lines[1].contains("1.2ms"), "{t}");
        assert!(lines[2].contains("2.2") && lines[2].contains(" - "), "{t}");
        // Numbers line up on the right.
        let end = |l: &str, cell: &str| l.find(cell).map(|i| i + cell.len());
        assert_eq!(end(lines[0], "EVENTS/S"), end(lines[1], "1234"), "{t}");
    }

    #[test]
    fn rollouts_are_marked_and_described() {
        let shadow = json!({"strategy": "shadow", "from": "1.0.0", "to": "1.1.0", "percent": null,
            "compared": 5, "differed": 1, "skipped": 0, "candidate_errors": 0, "handled_by_candidate": 0});
        let gradual = json!({"strategy": "gradual", "from": "1.0.0", "to": "2.0.0", "percent": 20,
            "compared": 0, "differed": 0, "skipped": 0, "candidate_errors": 2, "handled_by_candidate": 9});
        let s = screen(&json!({
            "status": "ok", "uptime_ms": 125_000, "version": "0.9.0",
            "plugins": [plugin("a", 1.0, None, shadow), plugin("g", 1.0, None, gradual)],
            "cluster": null,
        }));
        assert!(
            s.starts_with("plughost 0.9.0  up 2m05s  ok  2 plugins\n"),
            "{s}"
        );
        assert!(s.contains("running (shadow)"), "{s}");
        assert!(s.contains("running (gradual 20%)"), "{s}");
        assert!(
            s.contains("a: rollout shadow 1.0.0 → 1.1.0: 5 compared"),
            "{s}"
        );
        assert!(s.contains("g: rollout gradual 1.0.0 → 2.0.0 20%"), "{s}");
        assert!(!s.contains("cluster"), "{s}");
    }

    #[test]
    fn units_fit_the_value() {
        assert_eq!(millis(None), "-");
        assert_eq!(millis(Some(0.0123)), "12µs");
        assert_eq!(millis(Some(12.34)), "12.3ms");
        assert_eq!(millis(Some(2500.0)), "2.50s");
        assert_eq!(rate(0.0), "0.0");
        assert_eq!(rate(99.94), "99.9");
        assert_eq!(rate(150.4), "150");
        assert_eq!(uptime(59_999), "59s");
        assert_eq!(uptime(7_380_000), "2h03m");
    }
}
