//! SPEC §4 the script API: every binding and hook, for every runtime.
//!
//! Scripts mark the lines whose position an error or a log record must name
//! with an `@marker` comment; [`line_of`] finds them, so the assertions keep
//! holding when a script is edited.
//!
//! One module per part of the API, each running its behaviours with
//! `behaviours!`; a behaviour marked `[Native]` there also runs against the
//! native fixture crate. The helpers here name script positions and find
//! log lines, for these modules and the rest of the suite.

use crate::support::{Run, Runtime};

mod config_state;
mod events;
mod hooks_timers;
mod logs_telemetry;
mod publish;

/// The 1-based line of `src` holding `@marker`.
pub(crate) fn line_of(src: &str, marker: &str) -> usize {
    let tag = format!("@{marker}");
    let mut hits = src
        .lines()
        .enumerate()
        .filter(|(_, l)| l.split_whitespace().any(|w| w == tag));
    let (i, _) = hits
        .next()
        .unwrap_or_else(|| panic!("no line marked {tag} in\n{src}"));
    assert!(hits.next().is_none(), "{tag} marks several lines");
    i + 1
}

/// `/<plugin>/<file>:<line>`: how errors and log records name a script line
/// (the plugins directory in front is the fixture's temp dir).
pub(crate) fn at(plugin: &str, file: &str, line: usize) -> String {
    format!("/{plugin}/{file}:{line}")
}

/// Whether `text` names the script position `pos` (from [`at`]) followed by
/// `then`. Lua's errors stop at the line (`main.lua:3: boom`); Rhai's add
/// the column (`main.rhai:3:5: boom`), which may be any number, and so do
/// native panics (`src/lib.rs:3:5: panicked: boom`).
pub(crate) fn names_at(rt: Runtime, text: &str, pos: &str, then: &str) -> bool {
    match rt {
        Runtime::Lua => text.contains(&format!("{pos}{then}")),
        Runtime::Rhai | Runtime::Native => text.match_indices(pos).any(|(i, _)| {
            let Some(rest) = text[i + pos.len()..].strip_prefix(':') else {
                return false;
            };
            let column = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
            column > 0 && rest[column..].starts_with(then)
        }),
    }
}

/// The one stderr line holding `needle`.
pub(crate) fn log_line<'a>(run: &'a Run, needle: &str) -> &'a str {
    let hits: Vec<&str> = run.stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        hits.len(),
        1,
        "expected one log line with {needle:?}\n{run}"
    );
    hits[0]
}
