//! `regex.is_match`, `regex.find`, `regex.captures` and `regex.replace`:
//! Rust `regex` syntax, linear in the haystack whatever the pattern.
//!
//! Patterns are bounded three ways: their length ([`MAX_PATTERN`]), the
//! size of the compiled program ([`SIZE_LIMIT`]) and of the lazy DFA's
//! cache ([`DFA_SIZE_LIMIT`]). Each plugin keeps its compiled patterns in a
//! [`Cache`] of at most [`CACHE_SIZE`] entries, the least recently used
//! going first, so the cache, which the plugin's memory limit does not
//! count, holds at most [`CACHE_BOUND`] (32 MiB) whatever the patterns; a
//! reload builds a new plugin and so a new cache. A bad
//! pattern's error names its column (`regex: a(b: column 2: unclosed
//! group`). `replace` refuses a result past the memory the plugin has left
//! before it is built, and gives up when the hook's time is up.

use std::collections::HashMap;

use regex::{Regex, RegexBuilder};

use super::HelperError;

/// The longest pattern accepted, in bytes.
pub(crate) const MAX_PATTERN: usize = 4096;
/// The most one compiled automaton of a pattern may take
/// (`RegexBuilder::size_limit`): the forward and reverse NFAs each.
pub(crate) const SIZE_LIMIT: usize = 1 << 20;
/// The most one lazy DFA of a pattern may cache
/// (`RegexBuilder::dfa_size_limit`): a pattern has a forward and one or two
/// reverse ones. Small enough that a whole cache of them stays within
/// [`CACHE_BOUND`]; a pattern whose lazy DFA needs more is run by the
/// (slower, still linear) NFA simulation.
pub(crate) const DFA_SIZE_LIMIT: usize = 256 << 10;
/// What `regex` keeps per pattern that the builder does not bound: the
/// one-pass DFA (1 MiB at most), the bounded backtracker's visited set
/// (256 KiB) and the small full DFAs (40 KiB each way).
const UNBOUNDED_BY_BUILDER: usize = (1 << 20) + (256 << 10) + 2 * (40 << 10);
/// The most one cached pattern may hold, all its automata and caches
/// counted: up to three NFAs and three lazy DFAs (forward, reverse, and the
/// reverse of a literal-split prefix), plus the rest.
pub(crate) const PATTERN_BOUND: usize = 3 * SIZE_LIMIT + 3 * DFA_SIZE_LIMIT + UNBOUNDED_BY_BUILDER;
/// Compiled patterns kept per plugin.
pub(crate) const CACHE_SIZE: usize = 6;
/// The most a plugin's pattern cache may hold: outside the plugin's memory
/// limit (the runtimes count only what scripts allocate), so kept small.
pub(crate) const CACHE_BOUND: usize = 32 << 20;

// A full cache of the largest patterns fits the bound.
const _: () = assert!(CACHE_SIZE * PATTERN_BOUND <= CACHE_BOUND);
/// Matches `replace` handles between two looks at the time limit.
const LOOK_EVERY: usize = 1024;

/// A plugin's compiled patterns, by their text.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    compiled: HashMap<String, (Regex, u64)>,
    /// Increases on every use; an entry's is its last use.
    clock: u64,
}

impl Cache {
    /// The compiled `pattern`, from the cache or compiled now (and kept,
    /// the least recently used entry leaving when the cache is full).
    pub(crate) fn get(&mut self, pattern: &str) -> Result<Regex, HelperError> {
        self.clock += 1;
        if let Some((re, used)) = self.compiled.get_mut(pattern) {
            *used = self.clock;
            return Ok(re.clone());
        }
        let re = compile(pattern)?;
        if self.compiled.len() >= CACHE_SIZE
            && let Some(oldest) = self
                .compiled
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            self.compiled.remove(&oldest);
        }
        self.compiled
            .insert(pattern.to_owned(), (re.clone(), self.clock));
        Ok(re)
    }

    /// How many patterns are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.compiled.len()
    }
}

/// Compiles `pattern` within the limits.
pub(crate) fn compile(pattern: &str) -> Result<Regex, HelperError> {
    let refuse = |message: String| HelperError::Pattern {
        pattern: shorten(pattern),
        message,
    };
    if pattern.len() > MAX_PATTERN {
        return Err(refuse(format!(
            "the pattern is {} bytes long, more than {MAX_PATTERN}",
            pattern.len()
        )));
    }
    // regex-syntax first: its errors carry the position regex's own
    // message only draws.
    if let Err(e) = regex_syntax::ParserBuilder::new().build().parse(pattern) {
        return Err(refuse(syntax_message(&e)));
    }
    RegexBuilder::new(pattern)
        .size_limit(SIZE_LIMIT)
        .dfa_size_limit(DFA_SIZE_LIMIT)
        .build()
        .map_err(|e| {
            refuse(match e {
                regex::Error::CompiledTooBig(limit) => {
                    format!("the compiled pattern is larger than its limit of {limit} bytes")
                }
                other => other.to_string(),
            })
        })
}

/// `column N: why` of a syntax error.
fn syntax_message(e: &regex_syntax::Error) -> String {
    match e {
        regex_syntax::Error::Parse(e) => {
            format!("column {}: {}", e.span().start.column, e.kind())
        }
        regex_syntax::Error::Translate(e) => {
            format!("column {}: {}", e.span().start.column, e.kind())
        }
        other => other.to_string(),
    }
}

/// The first match's text.
pub(crate) fn find<'h>(re: &Regex, haystack: &'h str) -> Option<&'h str> {
    re.find(haystack).map(|m| m.as_str())
}

/// The first match's whole text, then each group's (`None` for a group
/// that took no part); `None` when nothing matches.
pub(crate) fn captures<'h>(re: &Regex, haystack: &'h str) -> Option<Vec<Option<&'h str>>> {
    re.captures(haystack)
        .map(|caps| caps.iter().map(|g| g.map(|m| m.as_str())).collect())
}

/// Every match of `re` in `haystack` replaced by `with` (`$1`, `$name`,
/// `${name}` name groups, `$$` is a dollar). Refuses a result longer than
/// `max` bytes before it is built, and stops when `time_up` says so
/// (looked at every [`LOOK_EVERY`] matches). `helper` names the call in
/// the messages.
pub(crate) fn replace(
    helper: &str,
    re: &Regex,
    haystack: &str,
    with: &str,
    max: usize,
    time_up: &dyn Fn() -> bool,
) -> Result<String, HelperError> {
    let mut b = Builder {
        helper,
        haystack,
        out: String::new(),
        last: 0,
        matches: 0,
        max,
        time_up,
    };
    // A `$` may name the whole match or a group, which is no longer.
    let refs = with.matches('$').count();
    if refs > 0 {
        for caps in re.captures_iter(haystack) {
            let whole = caps.get(0).expect("group 0 is the whole match");
            b.gap(
                whole.start(),
                with.len().saturating_add(refs.saturating_mul(whole.len())),
            )?;
            caps.expand(with, &mut b.out);
            b.after(whole.end())?;
        }
    } else {
        for whole in re.find_iter(haystack) {
            b.gap(whole.start(), with.len())?;
            b.out.push_str(with);
            b.after(whole.end())?;
        }
    }
    b.gap(haystack.len(), 0)?;
    Ok(b.out)
}

/// `replace`'s result as it is built, with its limits.
struct Builder<'a> {
    helper: &'a str,
    haystack: &'a str,
    out: String,
    /// Where the text not yet copied starts.
    last: usize,
    matches: usize,
    max: usize,
    time_up: &'a dyn Fn() -> bool,
}

impl Builder<'_> {
    /// Copies the text up to `start`, once sure that it and `next` more
    /// bytes still fit.
    fn gap(&mut self, start: usize, next: usize) -> Result<(), HelperError> {
        let gap = &self.haystack[self.last..start];
        if self
            .out
            .len()
            .saturating_add(gap.len())
            .saturating_add(next)
            > self.max
        {
            return Err(HelperError::TooLarge {
                helper: self.helper.to_owned(),
                what: "result",
                limit: self.max,
            });
        }
        self.out.push_str(gap);
        Ok(())
    }

    /// A match ended at `end`; looks at the time every [`LOOK_EVERY`] matches.
    fn after(&mut self, end: usize) -> Result<(), HelperError> {
        self.last = end;
        self.matches += 1;
        if self.matches.is_multiple_of(LOOK_EVERY) && (self.time_up)() {
            return Err(HelperError::TimeUp);
        }
        Ok(())
    }
}

/// At most 64 characters of a pattern, for messages.
fn shorten(pattern: &str) -> String {
    match pattern.char_indices().nth(64) {
        Some((at, _)) => format!("{}…", &pattern[..at]),
        None => pattern.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    fn re(p: &str) -> Regex {
        compile(p).unwrap()
    }

    #[test]
    fn captures_list_the_whole_match_then_each_group() {
        let r = re(r"(\d+)(x)?-(?P<tail>\w+)");
        assert_eq!(
            captures(&r, "id 42-abc"),
            Some(vec![Some("42-abc"), Some("42"), None, Some("abc")])
        );
        assert_eq!(captures(&r, "nothing"), None);
        assert_eq!(find(&r, "a 7-b c"), Some("7-b"));
        assert_eq!(find(&r, "zzz"), None);
    }

    #[test]
    fn replace_replaces_every_match_naming_groups() {
        let r = re(r"(?P<k>\w+)=(\d+)");
        let never = || false;
        assert_eq!(
            replace("r", &r, "a=1, b=22", "$2:${k}", 1 << 20, &never).unwrap(),
            "1:a, 22:b"
        );
        assert_eq!(
            replace("r", &re("o"), "foo", "0", 1 << 20, &never).unwrap(),
            "f00"
        );
        assert_eq!(
            replace("r", &re("z"), "foo", "$$", 1 << 20, &never).unwrap(),
            "foo"
        );
        assert_eq!(
            replace("r", &re(""), "ab", "-", 1 << 20, &never).unwrap(),
            "-a-b-"
        );
    }

    #[test]
    fn a_result_past_the_cap_is_refused_before_it_is_built() {
        let never = || false;
        let with = "y".repeat(1000);
        let err = replace(
            "regex.replace",
            &re("x"),
            &"x".repeat(10_000),
            &with,
            100_000,
            &never,
        )
        .unwrap_err();
        assert!(err.is_memory(), "{err}");
        assert!(replace("r", &re("x"), "xx", "yy", 4, &never).is_ok());
        assert!(replace("r", &re("x"), "xx", "yyy", 5, &never).is_err());
    }

    #[test]
    fn replace_stops_when_the_time_is_up() {
        let up = || true;
        let err = replace("r", &re("a"), &"a".repeat(10_000), "b", 1 << 20, &up).unwrap_err();
        assert!(matches!(err, HelperError::TimeUp));
        // Fewer matches than one look: done before it looks.
        assert!(replace("r", &re("a"), "aaa", "b", 1 << 20, &up).is_ok());
    }

    #[test]
    fn a_bad_pattern_names_its_column() {
        let err = compile("ab(c").unwrap_err();
        assert_eq!(err.to_string(), "regex: ab(c: column 3: unclosed group");
        let err = compile(r"x\qy").unwrap_err();
        assert_eq!(
            err.to_string(),
            r"regex: x\qy: column 2: unrecognized escape sequence"
        );
        let err = compile(&"a".repeat(MAX_PATTERN + 1)).unwrap_err();
        assert!(err.to_string().contains("more than 4096"), "{err}");
    }

    #[test]
    fn a_pattern_past_the_size_limit_is_refused() {
        let err = compile(r"\w{1000}").unwrap_err();
        assert!(err.to_string().contains("larger than its limit"), "{err}");
        assert!(compile(r"\w{10}").is_ok());
    }

    #[test]
    fn nested_quantifiers_run_in_linear_time() {
        let r = re("(a+)+$");
        let hay = format!("{}!", "a".repeat(100_000));
        let started = Instant::now();
        assert!(!r.is_match(&hay));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_full_cache_of_the_largest_patterns_stays_within_its_bound() {
        // Each entry is built with the limits PATTERN_BOUND counts; a
        // pattern needing more than SIZE_LIMIT is refused, not cached.
        let mut cache = Cache::default();
        assert!(cache.get(r"\w{1000}").is_err());
        assert_eq!(cache.len(), 0);
        for i in 0..CACHE_SIZE * 2 {
            cache.get(&format!("p{i}")).unwrap();
        }
        let worst = cache.len() * PATTERN_BOUND;
        assert!(
            worst <= CACHE_BOUND,
            "{} patterns of up to {PATTERN_BOUND} bytes: {worst} > {CACHE_BOUND}",
            cache.len()
        );
    }

    #[test]
    fn the_cache_keeps_at_most_its_size_dropping_the_least_recently_used() {
        let mut cache = Cache::default();
        cache.get("keep").unwrap();
        for i in 0..CACHE_SIZE + 10 {
            cache.get(&format!("p{i}")).unwrap();
            cache.get("keep").unwrap();
        }
        assert_eq!(cache.len(), CACHE_SIZE);
        assert!(cache.compiled.contains_key("keep"));
        assert!(!cache.compiled.contains_key("p0"));
        assert!(cache.get("(").is_err());
        assert_eq!(cache.len(), CACHE_SIZE);
    }
}
