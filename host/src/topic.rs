//! Topics and topic patterns: which events a subscription receives.
//!
//! A topic is a `.`-separated list of non-empty tokens (`text.raw`). A pattern
//! is a topic whose tokens may be `*` (exactly one token) or, as the last
//! token, `>` (one or more trailing tokens), the NATS convention, so a bridge
//! to NATS maps one to one. Everything here is pure: parsing validates once,
//! matching walks two token lists without allocating.

use std::fmt;

/// Why a topic or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The text was empty.
    #[error("a topic cannot be empty")]
    Empty,
    /// Two dots in a row, or a dot at either end.
    #[error("topic `{0}` has an empty token (check for `..` or a dot at either end)")]
    EmptyToken(String),
    /// A wildcard where a concrete topic is required.
    #[error("topic `{0}` contains a wildcard; `*` and `>` are for subscriptions only")]
    Wildcard(String),
    /// `>` anywhere but as the last token.
    #[error("pattern `{0}`: `>` may only be the last token")]
    TailNotLast(String),
    /// A wildcard glued to other characters, like `text*`.
    #[error("pattern `{0}`: `*` and `>` must be whole tokens, like `text.*`")]
    PartialWildcard(String),
    /// Whitespace or control characters.
    #[error("topic `{0}` contains whitespace or control characters")]
    BadCharacter(String),
}

/// Checks that `topic` is a concrete topic (no wildcards) that events can be published on.
pub fn validate_topic(topic: &str) -> Result<(), TopicError> {
    if check_tokens(topic)? {
        return Err(TopicError::Wildcard(topic.to_owned()));
    }
    Ok(())
}

/// The `.`-separated tokens of `text`, as bytes: topics are checked and
/// matched on every publish, and splitting bytes costs less than splitting
/// a `str` on a `char`.
fn tokens(text: &str) -> impl Iterator<Item = &[u8]> {
    text.as_bytes().split(|&b| b == b'.')
}

/// Checks the tokens of a topic or pattern; returns whether one of them is
/// a wildcard. One pass over the bytes: this runs on every publish.
fn check_tokens(text: &str) -> Result<bool, TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    // Every ASCII whitespace or control character is at most a space, or DEL.
    let bad = match text.is_ascii() {
        true => text.bytes().any(|b| b <= b' ' || b == 0x7f),
        false => text.chars().any(|c| c.is_whitespace() || c.is_control()),
    };
    if bad {
        return Err(TopicError::BadCharacter(text.to_owned()));
    }
    let bytes = text.as_bytes();
    let (mut start, mut wild, mut any_wildcard) = (0, false, false);
    for end in 0..=bytes.len() {
        match bytes.get(end) {
            Some(b'*' | b'>') => wild = true,
            Some(b'.') | None => {
                let token = &bytes[start..end];
                if token.is_empty() {
                    return Err(TopicError::EmptyToken(text.to_owned()));
                }
                if wild && token.len() > 1 {
                    return Err(TopicError::PartialWildcard(text.to_owned()));
                }
                if token == b">" && end < bytes.len() {
                    return Err(TopicError::TailNotLast(text.to_owned()));
                }
                any_wildcard |= wild;
                (start, wild) = (end + 1, false);
            }
            Some(_) => {}
        }
    }
    Ok(any_wildcard)
}

/// A validated subscription pattern such as `text.*` or `plughost.>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
}

impl Pattern {
    /// Parses and validates a pattern.
    ///
    /// ```
    /// use plughost::topic::Pattern;
    /// let p = Pattern::parse("text.*").unwrap();
    /// assert!(p.matches("text.raw"));
    /// assert!(!p.matches("text.raw.en"));
    /// assert!(Pattern::parse("a.>.b").is_err());
    /// ```
    pub fn parse(text: &str) -> Result<Self, TopicError> {
        check_tokens(text)?;
        Ok(Pattern {
            text: text.to_owned(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `topic` is matched by this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        matches(&self.text, topic)
    }

    /// The pattern matching exactly the topics both `self` and `other`
    /// match, or `None` when no topic matches both (`orders.>` and `*.new`
    /// give `orders.new`; `a.>` and `b.*` give none).
    pub fn intersect(&self, other: &Pattern) -> Option<Pattern> {
        let a: Vec<&str> = self.text.split('.').collect();
        let b: Vec<&str> = other.text.split('.').collect();
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        let mut i = 0;
        loop {
            match (a.get(i).copied(), b.get(i).copied()) {
                // `>` takes the other side's rest, which needs at least one token.
                (Some(">"), Some(_)) => out.extend(&b[i..]),
                (Some(_), Some(">")) => out.extend(&a[i..]),
                (Some("*"), Some(t)) | (Some(t), Some("*")) => {
                    out.push(t);
                    i += 1;
                    continue;
                }
                (Some(x), Some(y)) if x == y => {
                    out.push(x);
                    i += 1;
                    continue;
                }
                (None, None) => {}
                _ => return None,
            }
            break;
        }
        Some(Pattern {
            text: out.join("."),
        })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Pattern {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Pattern::parse(s)
    }
}

/// Whether the (already validated) `pattern` matches the concrete `topic`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    let mut pat = tokens(pattern);
    let mut top = tokens(topic);
    loop {
        match (pat.next(), top.next()) {
            (Some(b">"), Some(_)) => return true,
            (Some(b"*"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A set of patterns; an event matches when any of them does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatternSet {
    patterns: Vec<Pattern>,
}

impl PatternSet {
    /// Builds a set from parsed patterns.
    pub fn new(patterns: Vec<Pattern>) -> Self {
        PatternSet { patterns }
    }

    /// Whether any pattern matches `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        self.patterns.iter().any(|p| p.matches(topic))
    }

    /// Whether the set holds no pattern.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The patterns, in the order given.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    fn meet(a: &str, b: &str) -> Option<String> {
        let (a, b) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
        let one = a.intersect(&b).map(|p| p.as_str().to_owned());
        assert_eq!(
            one,
            b.intersect(&a).map(|p| p.as_str().to_owned()),
            "not symmetric"
        );
        one
    }

    #[test]
    fn two_patterns_meet_in_the_topics_both_match() {
        assert_eq!(meet("orders.>", "*.new").as_deref(), Some("orders.new"));
        assert_eq!(meet(">", "orders.>").as_deref(), Some("orders.>"));
        assert_eq!(meet("orders.>", "orders.>").as_deref(), Some("orders.>"));
        assert_eq!(meet("a.*.c", "a.b.*").as_deref(), Some("a.b.c"));
        assert_eq!(meet("a.*", "a.>").as_deref(), Some("a.*"));
        assert_eq!(meet("a.b", "a.b").as_deref(), Some("a.b"));
        assert_eq!(meet("a.>", "b.*"), None);
        assert_eq!(meet("a.>", "a"), None);
        assert_eq!(meet("a.*", "a.b.c"), None);
        assert_eq!(meet("a.b", "a.c"), None);
        // Each result matches just what both match, on a few topics.
        for (a, b) in [("orders.>", "*.new"), ("a.*", "a.>"), (">", "x.*.z")] {
            let m = Pattern::parse(&meet(a, b).unwrap()).unwrap();
            for t in ["orders.new", "orders.new.x", "a.b", "a.b.c", "x.y.z", "x"] {
                assert_eq!(
                    m.matches(t),
                    matches(a, t) && matches(b, t),
                    "{a} ∩ {b} on {t}"
                );
            }
        }
    }

    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Pattern::parse(p).unwrap().matches(t)
    }

    #[test]
    fn literal_patterns_match_only_the_same_topic() {
        assert!(m("text.raw", "text.raw"));
        assert!(!m("text.raw", "text.raws"));
        assert!(!m("text.raw", "text"));
        assert!(!m("text", "text.raw"));
    }

    #[test]
    fn star_matches_exactly_one_token() {
        assert!(m("text.*", "text.raw"));
        assert!(m("*.raw", "text.raw"));
        assert!(m("*", "text"));
        assert!(!m("*", "text.raw"));
        assert!(!m("text.*", "text"));
        assert!(!m("text.*", "text.raw.en"));
        assert!(m("a.*.c", "a.b.c"));
        assert!(!m("a.*.c", "a.b.d"));
    }

    #[test]
    fn tail_matches_one_or_more_trailing_tokens() {
        assert!(m(">", "text"));
        assert!(m(">", "a.b.c"));
        assert!(m("text.>", "text.raw"));
        assert!(m("text.>", "text.raw.en"));
        assert!(!m("text.>", "text"));
        assert!(m("*.>", "a.b"));
        assert!(!m("*.>", "a"));
        assert!(m("plughost.>", "plughost.dead_letter"));
    }

    #[test]
    fn malformed_patterns_are_refused_with_a_reason() {
        assert_eq!(Pattern::parse(""), Err(TopicError::Empty));
        assert!(matches!(
            Pattern::parse("a..b"),
            Err(TopicError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse(".a"),
            Err(TopicError::EmptyToken(_))
        ));
        assert!(matches!(
            Pattern::parse("a.>.b"),
            Err(TopicError::TailNotLast(_))
        ));
        assert!(matches!(
            Pattern::parse("a.b*"),
            Err(TopicError::PartialWildcard(_))
        ));
        assert!(matches!(
            Pattern::parse("a b"),
            Err(TopicError::BadCharacter(_))
        ));
    }

    #[test]
    fn whitespace_and_control_characters_are_refused() {
        for bad in [
            "a\tb",
            "a\u{7f}",
            "a\u{0}",
            "a\u{1f}",
            "é\u{2003}",
            "é\u{85}",
            " ",
        ] {
            assert!(
                matches!(validate_topic(bad), Err(TopicError::BadCharacter(_))),
                "{bad:?}"
            );
        }
        assert!(validate_topic("é.ü~!").is_ok());
    }

    #[test]
    fn concrete_topics_refuse_wildcards() {
        assert!(validate_topic("text.raw").is_ok());
        assert!(matches!(
            validate_topic("text.*"),
            Err(TopicError::Wildcard(_))
        ));
        assert!(matches!(validate_topic(">"), Err(TopicError::Wildcard(_))));
        assert!(matches!(
            validate_topic("a.b.>"),
            Err(TopicError::Wildcard(_))
        ));
        assert!(matches!(
            validate_topic("a.>.b"),
            Err(TopicError::TailNotLast(_))
        ));
        assert!(matches!(
            validate_topic("a.b>"),
            Err(TopicError::PartialWildcard(_))
        ));
        assert!(matches!(
            validate_topic("a."),
            Err(TopicError::EmptyToken(_))
        ));
        assert!(Pattern::parse("*.>").is_ok() && Pattern::parse("a.*.b").is_ok());
        assert!(validate_topic("a..b").is_err());
    }

    #[test]
    fn a_set_matches_when_any_pattern_does() {
        let set = PatternSet::new(vec![
            Pattern::parse("a.*").unwrap(),
            Pattern::parse("b.>").unwrap(),
        ]);
        assert!(set.matches("a.x"));
        assert!(set.matches("b.x.y"));
        assert!(!set.matches("c"));
        assert!(!PatternSet::default().matches("a"));
    }
}
