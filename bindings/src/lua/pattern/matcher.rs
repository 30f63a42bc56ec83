//! Lua 5.4's pattern matcher (`lstrlib.c`), ported to Rust so that it can
//! be stopped: it counts its steps and asks, every few thousand, whether to
//! stop. Pure logic over byte slices; the Lua glue is in `mod.rs`.
//!
//! The port follows the C function by function and keeps its behaviour
//! exactly, down to reading a `\0` past the end of the pattern or subject
//! (Lua's strings are `\0`-terminated, and the C matcher relies on it).

use thiserror::Error;

/// Steps between two looks at the stop flag.
const CHECK_EVERY: u32 = 2048;

/// Lua's `LUA_MAXCAPTURES`.
const MAX_CAPTURES: usize = 32;

/// Lua's `MAXCCALLS` for the matcher: its recursion depth.
const MAX_DEPTH: u32 = 200;

/// A capture still open.
const CAP_UNFINISHED: isize = -1;

/// A position capture, `()`.
const CAP_POSITION: isize = -2;

/// Lua's pattern specials: a pattern without them is searched for plainly.
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Why a match failed to run: Lua's own messages, or the stop flag.
#[derive(Debug, Error, PartialEq, Eq)]
pub(crate) enum PatternError {
    /// A pattern ending with `%`.
    #[error("malformed pattern (ends with '%')")]
    EndsWithEscape,
    /// A `[` set without its `]`.
    #[error("malformed pattern (missing ']')")]
    MissingBracket,
    /// `%b` without its two characters.
    #[error("malformed pattern (missing arguments to '%b')")]
    MissingBalanceArguments,
    /// `%f` not followed by a set.
    #[error("missing '[' after '%f' in pattern")]
    MissingFrontierSet,
    /// `%N` naming no closed capture (shown 1-based, as Lua does).
    #[error("invalid capture index %{0}")]
    InvalidCaptureIndex(i32),
    /// A `)` closing no capture.
    #[error("invalid pattern capture")]
    InvalidPatternCapture,
    /// A capture still open when the match ended.
    #[error("unfinished capture")]
    UnfinishedCapture,
    /// More than 32 captures.
    #[error("too many captures")]
    TooManyCaptures,
    /// Recursion deeper than Lua allows.
    #[error("pattern too complex")]
    TooComplex,
    /// `%` followed by something else in a `gsub` replacement string.
    #[error("invalid use of '%' in replacement string")]
    InvalidReplacement,
    /// The stop flag was up.
    #[error("the pattern match was stopped")]
    Stopped,
}

/// One capture's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture<'a> {
    /// Captured text.
    Text(&'a [u8]),
    /// A position capture: the 0-based offset in the subject.
    Position(usize),
}

/// Lua's `posrelatI`: a 1-based start position from a possibly negative
/// argument, clipped to 1.
pub(crate) fn start_position(pos: i64, len: usize) -> usize {
    if pos > 0 {
        usize::try_from(pos).unwrap_or(usize::MAX)
    } else if pos == 0 || pos.unsigned_abs() > len as u64 {
        1
    } else {
        len - pos.unsigned_abs() as usize + 1
    }
}

/// Whether `pattern` has none of Lua's special characters.
pub(crate) fn no_specials(pattern: &[u8]) -> bool {
    !pattern.iter().any(|c| SPECIALS.contains(c))
}

/// Lua's `lmemfind`: the first offset of `needle` in `hay`, counting steps.
pub(crate) fn find_plain(
    hay: &[u8],
    needle: &[u8],
    stop: &dyn Fn() -> bool,
) -> Result<Option<usize>, PatternError> {
    if needle.is_empty() {
        return Ok(Some(0));
    }
    if needle.len() > hay.len() {
        return Ok(None);
    }
    let mut steps: usize = 0;
    // Each candidate costs about the bytes compared.
    let cost = 1 + needle.len() / 64;
    for start in 0..=hay.len() - needle.len() {
        if hay[start] == needle[0] {
            steps += cost;
            if steps >= CHECK_EVERY as usize {
                steps = 0;
                if stop() {
                    return Err(PatternError::Stopped);
                }
            }
            if &hay[start..start + needle.len()] == needle {
                return Ok(Some(start));
            }
        }
    }
    Ok(None)
}

/// Lua's `match_class`, in the C locale.
fn match_class(c: u8, class: u8) -> bool {
    let res = match class.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace also counts \v, which Rust's is_ascii_whitespace does not.
        b's' => c == b' ' || (b'\t'..=b'\r').contains(&c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        b'z' => c == 0,
        _ => return class == c,
    };
    if class.is_ascii_lowercase() {
        res
    } else {
        !res
    }
}

/// Lua's `MatchState`: one subject, one pattern (without its `^` anchor),
/// and the captures of the match in progress.
pub(crate) struct Matcher<'a> {
    src: &'a [u8],
    pat: &'a [u8],
    depth: u32,
    level: usize,
    capture: [(usize, isize); MAX_CAPTURES],
    steps: u32,
    stop: &'a dyn Fn() -> bool,
}

impl<'a> Matcher<'a> {
    /// A matcher of `pat` against `src`, asking `stop` every few thousand
    /// steps whether to give up.
    pub(crate) fn new(src: &'a [u8], pat: &'a [u8], stop: &'a dyn Fn() -> bool) -> Self {
        Matcher {
            src,
            pat,
            depth: MAX_DEPTH,
            level: 0,
            capture: [(0, 0); MAX_CAPTURES],
            steps: 0,
            stop,
        }
    }

    /// The subject.
    pub(crate) fn subject(&self) -> &'a [u8] {
        self.src
    }

    /// Tries a match starting at offset `s`; returns where it ends.
    pub(crate) fn match_at(&mut self, s: usize) -> Result<Option<usize>, PatternError> {
        self.depth = MAX_DEPTH;
        self.level = 0;
        self.do_match(s, 0)
    }

    /// Lua's `push_captures`: the captures of the last match, or the whole
    /// match `whole` when there is none and `whole` is given.
    pub(crate) fn captures(
        &self,
        whole: Option<(usize, usize)>,
    ) -> Result<Vec<Capture<'a>>, PatternError> {
        let n = if self.level == 0 && whole.is_some() {
            1
        } else {
            self.level
        };
        let (s, e) = whole.unwrap_or((0, 0));
        (0..n).map(|i| self.capture(i, s, e)).collect()
    }

    /// Lua's `get_onecapture`: capture `i` (0-based) of the match `s..e`.
    pub(crate) fn capture(
        &self,
        i: usize,
        s: usize,
        e: usize,
    ) -> Result<Capture<'a>, PatternError> {
        if i >= self.level {
            if i != 0 {
                return Err(PatternError::InvalidCaptureIndex(i as i32 + 1));
            }
            return Ok(Capture::Text(&self.src[s..e]));
        }
        let (init, len) = self.capture[i];
        match len {
            CAP_UNFINISHED => Err(PatternError::UnfinishedCapture),
            CAP_POSITION => Ok(Capture::Position(init)),
            len => Ok(Capture::Text(&self.src[init..init + len as usize])),
        }
    }

    fn p_at(&self, i: usize) -> u8 {
        self.pat.get(i).copied().unwrap_or(0)
    }

    fn s_at(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    fn tick(&mut self) -> Result<(), PatternError> {
        self.steps = self.steps.wrapping_add(1);
        if self.steps.is_multiple_of(CHECK_EVERY) && (self.stop)() {
            return Err(PatternError::Stopped);
        }
        Ok(())
    }

    fn check_capture(&self, l: u8) -> Result<usize, PatternError> {
        let l = i32::from(l) - i32::from(b'1');
        match usize::try_from(l) {
            Ok(i) if i < self.level && self.capture[i].1 != CAP_UNFINISHED => Ok(i),
            _ => Err(PatternError::InvalidCaptureIndex(l + 1)),
        }
    }

    fn capture_to_close(&self) -> Result<usize, PatternError> {
        (0..self.level)
            .rev()
            .find(|&l| self.capture[l].1 == CAP_UNFINISHED)
            .ok_or(PatternError::InvalidPatternCapture)
    }

    fn class_end(&self, mut p: usize) -> Result<usize, PatternError> {
        let c = self.p_at(p);
        p += 1;
        match c {
            b'%' => {
                if p >= self.pat.len() {
                    return Err(PatternError::EndsWithEscape);
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.p_at(p) == b'^' {
                    p += 1;
                }
                loop {
                    if p >= self.pat.len() {
                        return Err(PatternError::MissingBracket);
                    }
                    let c = self.p_at(p);
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.p_at(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// Lua's `matchbracketclass`: `p` at the `[`, `ec` at the `]`.
    fn match_bracket_class(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.p_at(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            if self.p_at(p) == b'%' {
                p += 1;
                if match_class(c, self.p_at(p)) {
                    return sig;
                }
            } else if self.p_at(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p_at(p - 2) <= c && c <= self.p_at(p) {
                    return sig;
                }
            } else if self.p_at(p) == c {
                return sig;
            }
        }
    }

    fn single_match(&self, s: usize, p: usize, ep: usize) -> bool {
        let Some(&c) = self.src.get(s) else {
            return false;
        };
        match self.p_at(p) {
            b'.' => true,
            b'%' => match_class(c, self.p_at(p + 1)),
            b'[' => self.match_bracket_class(c, p, ep - 1),
            pc => pc == c,
        }
    }

    fn match_balance(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        if p + 1 >= self.pat.len() {
            return Err(PatternError::MissingBalanceArguments);
        }
        if self.s_at(s) != self.p_at(p) {
            return Ok(None);
        }
        let (open, close) = (self.p_at(p), self.p_at(p + 1));
        let mut depth = 1;
        for i in s + 1..self.src.len() {
            self.tick()?;
            let c = self.src[i];
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Result<Option<usize>, PatternError> {
        let mut i = 0;
        while self.single_match(s + i, p, ep) {
            self.tick()?;
            i += 1;
        }
        loop {
            if let Some(end) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(end));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(
        &mut self,
        mut s: usize,
        p: usize,
        ep: usize,
    ) -> Result<Option<usize>, PatternError> {
        loop {
            if let Some(end) = self.do_match(s, ep + 1)? {
                return Ok(Some(end));
            }
            if !self.single_match(s, p, ep) {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(
        &mut self,
        s: usize,
        p: usize,
        what: isize,
    ) -> Result<Option<usize>, PatternError> {
        if self.level >= MAX_CAPTURES {
            return Err(PatternError::TooManyCaptures);
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.level -= 1;
        }
        Ok(res)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Result<Option<usize>, PatternError> {
        let l = self.capture_to_close()?;
        self.capture[l].1 = (s - self.capture[l].0) as isize;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.capture[l].1 = CAP_UNFINISHED;
        }
        Ok(res)
    }

    fn match_capture(&self, s: usize, l: u8) -> Result<Option<usize>, PatternError> {
        let l = self.check_capture(l)?;
        let (init, len) = self.capture[l];
        // A position capture has no text: C compares a huge length, never equal.
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        if self.src.len() - s >= len && self.src[init..init + len] == self.src[s..s + len] {
            Ok(Some(s + len))
        } else {
            Ok(None)
        }
    }

    /// Lua's `match`; the C's `goto init` tail calls are the loop.
    fn do_match(&mut self, mut s: usize, mut p: usize) -> Result<Option<usize>, PatternError> {
        if self.depth == 0 {
            return Err(PatternError::TooComplex);
        }
        self.depth -= 1;
        self.tick()?;
        let result = loop {
            if p == self.pat.len() {
                break Some(s);
            }
            let next = self.p_at(p + 1);
            match self.pat[p] {
                b'(' if next == b')' => break self.start_capture(s, p + 2, CAP_POSITION)?,
                b'(' => break self.start_capture(s, p + 1, CAP_UNFINISHED)?,
                b')' => break self.end_capture(s, p + 1)?,
                b'$' if p + 1 == self.pat.len() => break (s == self.src.len()).then_some(s),
                b'%' if next == b'b' => match self.match_balance(s, p + 2)? {
                    Some(end) => {
                        s = end;
                        p += 4;
                    }
                    None => break None,
                },
                b'%' if next == b'f' => {
                    p += 2;
                    if self.p_at(p) != b'[' {
                        return Err(PatternError::MissingFrontierSet);
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    if !self.match_bracket_class(previous, p, ep - 1)
                        && self.match_bracket_class(self.s_at(s), p, ep - 1)
                    {
                        p = ep;
                    } else {
                        break None;
                    }
                }
                b'%' if next.is_ascii_digit() => match self.match_capture(s, next)? {
                    Some(end) => {
                        s = end;
                        p += 2;
                    }
                    None => break None,
                },
                _ => {
                    let ep = self.class_end(p)?;
                    let suffix = self.p_at(ep);
                    if !self.single_match(s, p, ep) {
                        if matches!(suffix, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        break None;
                    }
                    match suffix {
                        b'?' => {
                            if let Some(end) = self.do_match(s + 1, ep + 1)? {
                                break Some(end);
                            }
                            p = ep + 1;
                        }
                        b'+' => break self.max_expand(s + 1, p, ep)?,
                        b'*' => break self.max_expand(s, p, ep)?,
                        b'-' => break self.min_expand(s, p, ep)?,
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        };
        self.depth += 1;
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn never() -> bool {
        false
    }

    fn first(src: &str, pat: &str) -> Option<(usize, usize)> {
        let mut m = Matcher::new(src.as_bytes(), pat.as_bytes(), &never);
        (0..=src.len()).find_map(|s| m.match_at(s).unwrap().map(|e| (s, e)))
    }

    #[test]
    fn classes_sets_and_repetitions() {
        assert_eq!(first("hello world", "o w"), Some((4, 7)));
        assert_eq!(first("abc123", "%d+"), Some((3, 6)));
        assert_eq!(first("a\x0bb", "%s"), Some((1, 2)), "\\v is a space in C");
        assert_eq!(first("xyz", "[^x]-z"), Some((1, 3)));
        assert_eq!(first("f(a(b)c)", "%b()"), Some((1, 8)));
        assert_eq!(first("THE (quick) fox", "%f[%a]%a+"), Some((0, 3)));
        assert_eq!(first("abab", "(ab)%1"), Some((0, 4)));
    }

    #[test]
    fn errors_are_lua_s() {
        let run = |pat: &str| Matcher::new(b"abc", pat.as_bytes(), &never).match_at(0);
        assert_eq!(run("%"), Err(PatternError::EndsWithEscape));
        assert_eq!(run("[a"), Err(PatternError::MissingBracket));
        assert_eq!(run("(a"), Ok(Some(1)), "unfinished only when read");
        assert_eq!(run("a)"), Err(PatternError::InvalidPatternCapture));
        assert_eq!(run("%1"), Err(PatternError::InvalidCaptureIndex(1)));
        assert_eq!(run("%b"), Err(PatternError::MissingBalanceArguments));
        assert_eq!(run("%fa"), Err(PatternError::MissingFrontierSet));
        assert_eq!(run(&"(".repeat(33)), Err(PatternError::TooManyCaptures));
        assert_eq!(
            PatternError::InvalidCaptureIndex(0).to_string(),
            "invalid capture index %0"
        );
    }

    #[test]
    fn a_backtracking_match_stops_when_asked() {
        let subject = "a".repeat(400);
        let pattern = format!("{}b", ".-".repeat(8));
        let asked = std::cell::Cell::new(0);
        let stop = || {
            asked.set(asked.get() + 1);
            asked.get() > 3
        };
        let mut m = Matcher::new(subject.as_bytes(), pattern.as_bytes(), &stop);
        assert_eq!(m.match_at(0), Err(PatternError::Stopped));
        assert_eq!(asked.get(), 4);
    }

    #[test]
    fn start_positions_are_lua_s() {
        assert_eq!(start_position(1, 5), 1);
        assert_eq!(start_position(0, 5), 1);
        assert_eq!(start_position(-2, 5), 4);
        assert_eq!(start_position(-9, 5), 1);
        assert_eq!(start_position(9, 5), 9);
        assert_eq!(start_position(i64::MIN, 5), 1);
    }
}
