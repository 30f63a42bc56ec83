//! "Did you mean …?": the one closest valid word for a misspelt key or value.
//!
//! A suggestion is offered only when it is likely to be what the author meant
//! (a close spelling, or one word containing the other); otherwise none.
//! Listing every valid key would bury the one that matters.

/// How similar two words must be (Jaro-Winkler, 0 to 1) to be suggested.
const THRESHOLD: f64 = 0.8;

/// The candidate closest to `typed`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(typed: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let typed = typed.to_lowercase();
    // On a tie the candidate listed first wins, so the answer never depends on luck.
    let mut best: Option<(&'a str, f64)> = None;
    for &candidate in candidates {
        let score = score(&typed, candidate);
        if score >= THRESHOLD && best.is_none_or(|(_, top)| score > top) {
            best = Some((candidate, score));
        }
    }
    best.map(|(candidate, _)| candidate)
}

/// `" (did you mean `x`?)"` for the closest candidate, or `""` when none is close.
pub(crate) fn hint(typed: &str, candidates: &[&str]) -> String {
    closest(typed, candidates)
        .map(|better| format!(" (did you mean `{better}`?)"))
        .unwrap_or_default()
}

fn score(typed: &str, candidate: &str) -> f64 {
    let similarity = strsim::jaro_winkler(typed, candidate);
    // `timeout` for `event_timeout_ms`, `memory` for `memory_mb`: a part of the
    // right word is as good a hint as a typo, though ranked below an exact-ish one.
    let contained = typed.len() >= 4 && (candidate.contains(typed) || typed.contains(candidate));
    if contained {
        similarity.max(THRESHOLD)
    } else {
        similarity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[&str] = &["memory_mb", "event_timeout_ms", "queue", "overflow"];

    #[test]
    fn typos_get_the_intended_key() {
        assert_eq!(closest("qeue", KEYS), Some("queue"));
        assert_eq!(closest("overflw", KEYS), Some("overflow"));
        assert_eq!(closest("memory", KEYS), Some("memory_mb"));
        assert_eq!(closest("timeout", KEYS), Some("event_timeout_ms"));
        assert_eq!(closest("Queue", KEYS), Some("queue"));
        assert_eq!(
            closest("drop", &["block", "drop_oldest", "drop_newest"]),
            Some("drop_oldest")
        );
        assert_eq!(
            closest("subscritions", &["subscriptions", "publications"]),
            Some("subscriptions")
        );
    }

    #[test]
    fn the_hint_reads_as_a_parenthesis_or_nothing() {
        assert_eq!(hint("qeue", KEYS), " (did you mean `queue`?)");
        assert_eq!(hint("colour", KEYS), "");
    }

    #[test]
    fn unrelated_words_get_nothing() {
        assert_eq!(closest("colour", KEYS), None);
        assert_eq!(closest("x", KEYS), None);
        assert_eq!(closest("", KEYS), None);
    }
}
