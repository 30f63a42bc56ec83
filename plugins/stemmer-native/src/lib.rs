//! stemmer-native: a plughost plugin written in Rust.
//!
//! It stems the words of each `text.raw` event (a small suffix stripper in
//! the spirit of Porter's) and publishes `text.stems` with the stems and the
//! most frequent ones. A text without a `text` string is dropped, which
//! dead-letters it. The running totals live in the host's `state`, so they
//! survive reloads, as a script's would.

use std::collections::BTreeMap;

use plughost_sdk::{ConfigChange, Event, Host, Outcome, Plugin, Value, export_plugin};
use serde_json::json;

/// The plugin: its config, read in `init` and again in `on_config`.
#[derive(Debug)]
struct Stemmer {
    min_length: usize,
    top: usize,
}

impl Default for Stemmer {
    fn default() -> Self {
        Stemmer {
            min_length: 3,
            top: 3,
        }
    }
}

impl Stemmer {
    fn configure(&mut self, config: &Value) {
        let get = |key: &str, default: usize| {
            config[key]
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .unwrap_or(default)
        };
        self.min_length = get("min_length", 3);
        self.top = get("top", 3);
    }
}

impl Plugin for Stemmer {
    fn init(&mut self, host: &Host) -> Result<(), String> {
        self.configure(&host.config());
        host.info(&format!(
            "stemming words of {} letters or more",
            self.min_length
        ));
        Ok(())
    }

    fn on_event(&mut self, host: &Host, event: &Event) -> Result<Outcome, String> {
        // A borrowed view: reads the one field, decodes nothing else.
        let Some(text) = event.payload.view().get("text").and_then(|t| t.as_str()) else {
            return Ok(Outcome::drop("payload.text must be a string"));
        };
        let stems: Vec<String> = words(text)
            .filter(|w| w.chars().count() >= self.min_length)
            .map(|w| stem(&w))
            .collect();

        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for s in &stems {
            *counts.entry(s).or_default() += 1;
        }
        let mut ranked: Vec<(&str, u64)> = counts.iter().map(|(s, n)| (*s, *n)).collect();
        // Most frequent first; ties alphabetically (the map's order, kept by a stable sort).
        ranked.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        let top: Vec<Value> = ranked
            .iter()
            .take(self.top)
            .map(|(s, n)| json!({"stem": s, "count": n}))
            .collect();

        let mut state = host.state();
        let texts = state["texts"].as_u64().unwrap_or(0) + 1;
        state["texts"] = json!(texts);
        host.set_state(state)?;
        host.counter("stemmer.words", stems.len() as f64)?;

        host.publish(
            "text.stems",
            json!({
                "text": text,
                "stems": stems,
                "distinct": counts.len(),
                "top": top,
                "texts": texts,
            }),
        )?;
        Ok(Outcome::Ack)
    }

    fn on_config(&mut self, host: &Host, config: &Value) -> Result<ConfigChange, String> {
        self.configure(config);
        host.info("config applied");
        Ok(ConfigChange::Applied)
    }

    fn shutdown(&mut self, host: &Host) -> Result<(), String> {
        let texts = host.state()["texts"].as_u64().unwrap_or(0);
        host.info(&format!("stemmed {texts} text(s)"));
        Ok(())
    }
}

export_plugin!(Stemmer);

/// The lowercase alphabetic words of `text`.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphabetic())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Suffixes to strip, longest first, with what replaces them. Endings that
/// look like a suffix but are not (`ss`, `us`, `is`) map to themselves.
const SUFFIXES: &[(&str, &str)] = &[
    ("ational", "ate"),
    ("ization", "ize"),
    ("fulness", "ful"),
    ("iveness", "ive"),
    ("ousness", "ous"),
    ("ingly", ""),
    ("sses", "ss"),
    ("ness", ""),
    ("ment", ""),
    ("edly", ""),
    ("ies", "y"),
    ("ing", ""),
    ("ss", "ss"),
    ("us", "us"),
    ("is", "is"),
    ("ed", ""),
    ("ly", ""),
    ("es", ""),
    ("s", ""),
];

/// The stem of a lowercase word: one suffix stripped when what remains
/// still has a vowel and three letters, and a doubled final consonant undone
/// (`running` → `run`).
fn stem(word: &str) -> String {
    for (suffix, replacement) in SUFFIXES {
        let Some(base) = word.strip_suffix(suffix) else {
            continue;
        };
        if base.chars().count() < 3 || !base.contains(['a', 'e', 'i', 'o', 'u', 'y']) {
            continue;
        }
        let mut out = format!("{base}{replacement}");
        if replacement.is_empty() && suffix.len() > 1 {
            undouble(&mut out);
        }
        return out;
    }
    word.to_owned()
}

fn undouble(s: &mut String) {
    let mut rev = s.chars().rev();
    if let (Some(a), Some(b)) = (rev.next(), rev.next())
        && a == b
        && !"aeioulsz".contains(a)
    {
        s.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_common_suffixes() {
        let cases = [
            ("jumps", "jump"),
            ("running", "run"),
            ("glass", "glass"),
            ("ponies", "pony"),
            ("relational", "relate"),
            ("quickly", "quick"),
            ("the", "the"),
            ("bus", "bus"),
            ("saved", "sav"),
        ];
        for (word, want) in cases {
            assert_eq!(stem(word), want, "{word}");
        }
    }

    #[test]
    fn words_are_lowercase_letters() {
        let w: Vec<String> = words("Save a file, see it!").collect();
        assert_eq!(w, ["save", "a", "file", "see", "it"]);
    }
}
