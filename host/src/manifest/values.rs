//! Reading typed values out of positioned YAML nodes, collecting a problem per bad value.
//!
//! Every reader takes a label (the key as the author knows it, like
//! `limits.queue`) and a node, and either returns the value or records one
//! problem at the node's position and returns `None`, so the caller carries
//! on and the author sees every mistake of the file at once.

use std::collections::HashMap;

use super::Position;
use super::raw::{Kind, Node};
use super::suggest;

/// One thing wrong with the manifest: where (when known) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub pos: Option<Position>,
    pub message: String,
}

/// The problems found so far, and the source text for quoting values as written.
pub(crate) struct Check<'s> {
    source: &'s str,
    problems: Vec<Problem>,
}

/// Longest quoted value in a message; longer ones are cut with `…`.
const QUOTE_MAX: usize = 40;

impl<'s> Check<'s> {
    pub fn new(source: &'s str) -> Self {
        Check {
            source,
            problems: Vec::new(),
        }
    }

    /// Records a problem.
    pub fn report(&mut self, pos: Option<Position>, message: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            message: message.into(),
        });
    }

    /// The problems in file order; those without a position first.
    pub fn into_problems(mut self) -> Vec<Problem> {
        // Stable: problems at the same position keep the order they were found in.
        self.problems.sort_by_key(|p| p.pos);
        self.problems
    }

    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// How many problems were found so far (to tell whether a step added any).
    pub fn problem_count(&self) -> usize {
        self.problems.len()
    }

    /// A scalar as written in the file (`1.0` stays `1.0`), cut to a readable length.
    pub fn text(&self, node: &Node) -> String {
        let text = match &node.kind {
            Kind::Str(s) => s.clone(),
            Kind::Null => "~".to_owned(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => node
                .spelling(self.source)
                .map_or(i.to_string(), str::to_owned),
            Kind::UInt(u) => node
                .spelling(self.source)
                .map_or(u.to_string(), str::to_owned),
            Kind::Float(f) => node
                .spelling(self.source)
                .map_or(f.to_string(), str::to_owned),
            Kind::Seq(_) => "[…]".to_owned(),
            Kind::Map(_) => "{…}".to_owned(),
        };
        shorten(&text)
    }

    /// What a node is, for "expected X, found Y" messages.
    pub fn describe(&self, node: &Node) -> String {
        match &node.kind {
            Kind::Null => "nothing".to_owned(),
            Kind::Bool(_) => format!("`{}`", self.text(node)),
            Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => {
                format!("the number `{}`", self.text(node))
            }
            Kind::Str(_) => format!("the string `{}`", self.text(node)),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
        }
    }

    /// Records "`label`: expected `expected`, found …" at the node.
    pub fn wrong_type(&mut self, label: &str, node: &Node, expected: &str) {
        let message = format!(
            "{label}: expected {expected}, found {}",
            self.describe(node)
        );
        self.report(Some(node.pos), message);
    }

    /// A string value.
    pub fn string<'n>(&mut self, label: &str, node: &'n Node) -> Option<&'n str> {
        let found = node.as_str();
        if found.is_none() {
            self.wrong_type(label, node, "a string");
        }
        found
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, label: &str, node: &Node) -> Option<bool> {
        match node.kind {
            Kind::Bool(b) => Some(b),
            _ => {
                self.wrong_type(label, node, "`true` or `false`");
                None
            }
        }
    }

    /// A whole number in `min..=max`.
    pub fn integer(&mut self, label: &str, node: &Node, min: u64, max: u64) -> Option<u64> {
        let value = match node.kind {
            Kind::UInt(u) => u,
            Kind::Int(_) => {
                let message = format!(
                    "{label}: must be at least {min}, found `{}`",
                    self.text(node)
                );
                self.report(Some(node.pos), message);
                return None;
            }
            Kind::Str(ref s) if s.trim().parse::<u64>().is_ok() => {
                let message = format!(
                    "{label}: expected an integer, found the string `{}` (remove the quotes)",
                    self.text(node)
                );
                self.report(Some(node.pos), message);
                return None;
            }
            _ => {
                self.wrong_type(label, node, "an integer");
                return None;
            }
        };
        if value < min {
            self.report(
                Some(node.pos),
                format!("{label}: must be at least {min}, found `{value}`"),
            );
            None
        } else if value > max {
            self.report(
                Some(node.pos),
                format!("{label}: must be at most {max}, found `{value}`"),
            );
            None
        } else {
            Some(value)
        }
    }

    /// A list's items; `what` names them (`topic patterns`). A lone scalar where the
    /// list belongs gets a hint to wrap it in brackets.
    pub fn list<'n>(&mut self, label: &str, node: &'n Node, what: &str) -> Option<&'n [Node]> {
        match &node.kind {
            Kind::Seq(items) => Some(items),
            Kind::Str(_) | Kind::UInt(_) | Kind::Int(_) | Kind::Float(_) | Kind::Bool(_) => {
                let text = self.text(node);
                let message = format!(
                    "{label}: expected a list of {what}, found {} (write `[{text}]` for a list of one)",
                    self.describe(node)
                );
                self.report(Some(node.pos), message);
                None
            }
            _ => {
                self.wrong_type(label, node, &format!("a list of {what}"));
                None
            }
        }
    }

    /// A mapping's entries, each key once: later duplicates are reported and left out.
    pub fn mapping<'n>(&mut self, label: &str, node: &'n Node) -> Option<Vec<&'n (Node, Node)>> {
        match &node.kind {
            Kind::Map(entries) => Some(self.unique(entries)),
            _ => {
                self.wrong_type(label, node, "a mapping of keys to values");
                None
            }
        }
    }

    /// The entries of a mapping with duplicate keys reported and dropped (the first one counts).
    pub fn unique<'n>(&mut self, entries: &'n [(Node, Node)]) -> Vec<&'n (Node, Node)> {
        let mut seen: HashMap<String, Position> = HashMap::new();
        let mut kept = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = self.text(&entry.0);
            match seen.get(&key) {
                Some(first) => {
                    let message = format!(
                        "duplicate key `{key}` (first written at line {}, column {})",
                        first.line, first.column
                    );
                    self.report(Some(entry.0.pos), message);
                }
                None => {
                    seen.insert(key, entry.0.pos);
                    kept.push(entry);
                }
            }
        }
        kept
    }

    /// Records an unknown key, with the closest of `valid` when it is close.
    /// `section` is `Some("limits")` for keys under `limits:`.
    pub fn unknown_key(&mut self, section: Option<&str>, key: &Node, valid: &[&str]) {
        let typed = self.text(key);
        let hint = suggest::hint(&typed, valid);
        let message = match section {
            Some(section) => format!("unknown key `{typed}` in `{section}`{hint}"),
            None => format!("unknown key `{typed}`{hint}"),
        };
        self.report(Some(key.pos), message);
    }

    /// Any YAML value as JSON: integers stay integers, mapping keys must be strings.
    pub fn json(&mut self, label: &str, node: &Node) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match &node.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::UInt(u) => Value::from(*u),
            Kind::Float(f) => match serde_json::Number::from_f64(*f) {
                Some(n) => Value::Number(n),
                None => {
                    let message = format!(
                        "{label}: `{}` cannot be passed to a plugin (not a finite number)",
                        self.text(node)
                    );
                    self.report(Some(node.pos), message);
                    return None;
                }
            },
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(items) => {
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.json(&format!("{label}[{i}]"), item) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Array(out)
            }
            Kind::Map(entries) => {
                let mut out = serde_json::Map::with_capacity(entries.len());
                let mut ok = true;
                for (key, value) in self.unique(entries) {
                    let Some(name) = key.as_str() else {
                        let message = format!(
                            "{label}: keys must be strings, found {} (quote it: `\"{}\"`)",
                            self.describe(key),
                            self.text(key)
                        );
                        self.report(Some(key.pos), message);
                        ok = false;
                        continue;
                    };
                    match self.json(&format!("{label}.{name}"), value) {
                        Some(v) => {
                            out.insert(name.to_owned(), v);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Object(out)
            }
        })
    }
}

fn shorten(text: &str) -> String {
    let first_line = text.lines().next().unwrap_or("");
    let multi_line = first_line.len() < text.trim_end().len();
    if first_line.chars().count() > QUOTE_MAX {
        let cut: String = first_line.chars().take(QUOTE_MAX).collect();
        format!("{cut}…")
    } else if multi_line {
        format!("{first_line}…")
    } else {
        first_line.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_and_multi_line_values_are_cut() {
        assert_eq!(shorten("short"), "short");
        assert_eq!(shorten("one\ntwo"), "one…");
        assert_eq!(shorten("line\n"), "line");
        assert_eq!(shorten(&"x".repeat(50)), format!("{}…", "x".repeat(40)));
    }
}
