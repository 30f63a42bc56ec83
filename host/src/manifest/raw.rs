//! The YAML text as a tree of positioned nodes, before any meaning is given to it.
//!
//! serde-saphyr parses the text and hands every node over together with its
//! line and column (`Spanned`), keys included. Reading into this loose tree
//! rather than into `#[derive(Deserialize)]` structs means a wrong type or an
//! unknown key is not the end of the road: `validate` walks the whole tree and
//! reports every problem it finds, each at its own position. The only errors
//! raised here are those of the YAML syntax itself.
//!
//! Booleans follow YAML 1.2 (`true`/`false` only; `yes`, `no`, `on`, `off`
//! stay strings), so `n: 1` or a config value `country: no` means what it says.
//! Duplicate keys are passed through to the tree; `validate` refuses them with
//! the position of both occurrences.
//!
//! A manifest is small: a text over [`MAX_BYTES`] is refused before it is
//! parsed, and serde-saphyr's budget (on by default) refuses alias bombs
//! ("billion laughs") and runaway nesting as syntax errors.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, MessageFormatter, NonFiniteFloatPolicy, Spanned};

use super::Position;

/// One YAML node: where it starts and what it holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Line and column of the node's first character (for aliases, of the `*alias`).
    pub pos: Position,
    /// Byte range of the node in the source, when known; gives a scalar's spelling.
    pub span: Option<(usize, usize)>,
    /// The value.
    pub kind: Kind,
}

/// What a node holds. Mappings keep their entries in file order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `~`, `null`, or nothing at all (`key:`).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A negative integer.
    Int(i64),
    /// A non-negative integer.
    UInt(u64),
    /// A number with a fraction or exponent (or too large for an integer).
    Float(f64),
    /// A string, quoted or not.
    Str(String),
    /// A list.
    Seq(Vec<Node>),
    /// A mapping, entries in file order.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The node as written in `source`, for scalars whose value alone would
    /// misquote the author (`1.0` read as a float prints as `1`).
    pub fn spelling<'a>(&'a self, source: &'a str) -> Option<&'a str> {
        let (start, len) = self.span?;
        source
            .get(start..start.checked_add(len)?)
            .filter(|s| !s.is_empty())
    }

    /// The string value, if the node is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the node is `~`, `null` or empty.
    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Null)
    }
}

/// A YAML syntax error: the position serde-saphyr gives, if any, and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub pos: Option<Position>,
    pub message: String,
}

/// The largest manifest accepted, in bytes: 1 MiB.
pub(crate) const MAX_BYTES: usize = 1024 * 1024;

/// Parses `text` into a node tree; an empty document is a [`Kind::Null`] root.
pub(crate) fn read(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_BYTES {
        return Err(SyntaxError {
            pos: None,
            message: format!(
                "the manifest is {} bytes, over the limit of {MAX_BYTES} bytes",
                text.len()
            ),
        });
    }
    let options = serde_saphyr::options! {
        strict_booleans: true,
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
        non_finite_float_policy: NonFiniteFloatPolicy::PassThrough,
        // We print `file:line:col: message` on one line; no source snippets.
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|err| {
        let pos = err
            .location()
            .filter(|l| l.line() > 0)
            .map(|l| position(l.line(), l.column()));
        // The user-facing wording, without serde-saphyr's own location suffix.
        let message = serde_saphyr::UserMessageFormatter.format_message(&err);
        SyntaxError {
            pos,
            message: one_line(&message),
        }
    })
}

fn position(line: u64, column: u64) -> Position {
    Position {
        line: usize::try_from(line).unwrap_or(usize::MAX).max(1),
        column: usize::try_from(column).unwrap_or(usize::MAX).max(1),
    }
}

fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Kind>::deserialize(deserializer)?;
        let at = spanned.referenced;
        let span = at.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(start), Some(len)) => usize::try_from(start).ok().zip(usize::try_from(len).ok()),
            _ => None,
        };
        Ok(Node {
            pos: position(at.line(), at.column()),
            span,
            kind: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        Kind::deserialize(deserializer)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(if v >= 0 {
            Kind::UInt(v.unsigned_abs())
        } else {
            Kind::Int(v)
        })
    }

    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::UInt(v))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Kind, E> {
        Ok(match (u64::try_from(v), i64::try_from(v)) {
            (Ok(u), _) => Kind::UInt(u),
            (_, Ok(i)) => Kind::Int(i),
            _ => Kind::Float(v as f64),
        })
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Kind, E> {
        Ok(u64::try_from(v).map_or(Kind::Float(v as f64), Kind::UInt))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Float(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Str(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Str(v))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Kind, E> {
        // `!!binary` data: kept as text, the manifest has no use for raw bytes.
        Ok(Kind::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<Node, Node>()? {
            entries.push(entry);
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    #[test]
    fn keys_values_and_items_carry_their_positions() {
        let root = read("name: x\nlist:\n  - a\n  - 'b'\n").unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!("not a map: {root:?}")
        };
        assert_eq!(entries[0].0.pos, at(1, 1));
        assert_eq!(entries[0].1.pos, at(1, 7));
        assert_eq!(entries[1].0.pos, at(2, 1));
        let Kind::Seq(items) = &entries[1].1.kind else {
            panic!("not a list")
        };
        assert_eq!(items[0].pos, at(3, 5));
        assert_eq!(items[1].pos, at(4, 5));
        assert_eq!(items[1].kind, Kind::Str("b".into()));
    }

    #[test]
    fn scalars_keep_their_yaml_type_and_spelling() {
        let text = "a: 1.0\nb: -3\nc: yes\nd: true\ne:\nf: '7'\n";
        let root = read(text).unwrap();
        let Kind::Map(entries) = &root.kind else {
            panic!()
        };
        let kinds: Vec<&Kind> = entries.iter().map(|(_, v)| &v.kind).collect();
        assert_eq!(
            kinds,
            [
                &Kind::Float(1.0),
                &Kind::Int(-3),
                &Kind::Str("yes".into()),
                &Kind::Bool(true),
                &Kind::Null,
                &Kind::Str("7".into()),
            ]
        );
        assert_eq!(entries[0].1.spelling(text), Some("1.0"));
    }

    #[test]
    fn duplicates_reach_the_tree_and_syntax_errors_are_one_line() {
        let root = read("a: 1\na: 2\n").unwrap();
        assert!(matches!(&root.kind, Kind::Map(e) if e.len() == 2));

        let err = read("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(err.pos, Some(at(2, 2)));
        assert!(!err.message.contains('\n'), "{}", err.message);
    }

    #[test]
    fn a_text_over_the_limit_is_not_parsed() {
        let text = format!("a: 1\n{}", "#".repeat(MAX_BYTES));
        let err = read(&text).unwrap_err();
        assert!(err.message.contains("over the limit"), "{}", err.message);
    }

    #[test]
    fn an_alias_bomb_is_a_syntax_error() {
        let mut text = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h", "i"]
            .iter()
            .zip(["b", "c", "d", "e", "f", "g", "h", "i", "j"])
        {
            let refs = vec![format!("*{prev}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
        }
        let err = read(&text).unwrap_err();
        assert!(
            err.message.contains("too large or too complex"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_empty_document_is_null() {
        assert!(read("").unwrap().is_null());
        assert!(read("# nothing here\n").unwrap().is_null());
    }
}
