//! [`validate`]: the check of packed bytes that come from elsewhere (a
//! plugin library, another process) before anything trusts them. One pass
//! over the bytes, without recursion and without allocating per value.

use std::fmt;

use crate::tag;

/// How deep containers may nest in a packed value (as `serde_json` allows
/// when it parses text).
pub const MAX_DEPTH: usize = 128;

/// Why bytes are not one packed value. Offsets count from the buffer's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PackedError {
    /// No bytes at all.
    Empty,
    /// The buffer ends inside a value.
    Truncated {
        /// Where the value that does not fit starts.
        offset: usize,
    },
    /// A byte that is no tag where a value starts.
    UnknownTag {
        /// Where.
        offset: usize,
        /// The byte.
        tag: u8,
    },
    /// A string or key that is not UTF-8.
    NotUtf8 {
        /// Where the string's tag or the key's length is.
        offset: usize,
    },
    /// A float that is NaN or infinite (JSON has neither).
    NotFinite {
        /// Where its tag is.
        offset: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    TooDeep {
        /// Where the container too many is.
        offset: usize,
    },
    /// Bytes after the value.
    Trailing {
        /// Where they start.
        offset: usize,
    },
}

impl fmt::Display for PackedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PackedError::Empty => write!(f, "no bytes"),
            PackedError::Truncated { offset } => {
                write!(f, "byte {offset}: the buffer ends inside a value")
            }
            PackedError::UnknownTag { offset, tag } => {
                write!(f, "byte {offset}: unknown tag {tag:#04x}")
            }
            PackedError::NotUtf8 { offset } => write!(f, "byte {offset}: a string is not UTF-8"),
            PackedError::NotFinite { offset } => {
                write!(f, "byte {offset}: a float is NaN or infinite")
            }
            PackedError::TooDeep { offset } => {
                write!(f, "byte {offset}: nested more than {MAX_DEPTH} levels deep")
            }
            PackedError::Trailing { offset } => {
                write!(f, "byte {offset}: bytes after the value")
            }
        }
    }
}

impl std::error::Error for PackedError {}

/// A cursor over untrusted bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, from: usize) -> Result<&[u8], PackedError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(PackedError::Truncated { offset: from })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn u32(&mut self, from: usize) -> Result<usize, PackedError> {
        let b = self.take(4, from)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    /// A length and that many UTF-8 bytes, of the string or key at `from`.
    fn text(&mut self, from: usize) -> Result<(), PackedError> {
        let n = self.u32(from)?;
        let bytes = self.take(n, from)?;
        if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
            Ok(())
        } else {
            Err(PackedError::NotUtf8 { offset: from })
        }
    }

    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }
}

/// The containers [`validate`] is inside of, innermost last: the first
/// `len` of `walked`, each with its items left and whether it is an object.
struct Open {
    walked: [(usize, bool); MAX_DEPTH],
    len: usize,
}

/// Checks that `bytes` are exactly one packed value: known tags, lengths
/// and counts within the buffer, UTF-8 strings and keys, finite floats, at
/// most [`MAX_DEPTH`] levels, nothing after. A value that passes reads the
/// same with a [`Reader`](crate::Reader) as it was written.
pub fn validate(bytes: &[u8]) -> Result<(), PackedError> {
    if bytes.is_empty() {
        return Err(PackedError::Empty);
    }
    let mut c = Cursor { bytes, at: 0 };
    // The containers being walked: items left, and whether keys come first
    // (on the stack: validating a payload allocates nothing).
    let mut open = Open {
        walked: [(0, false); MAX_DEPTH],
        len: 0,
    };
    loop {
        let from = c.at;
        let t = c.take(1, from)?[0];
        match t {
            tag::NULL | tag::FALSE | tag::TRUE => {}
            tag::INT => {
                c.take(8, from)?;
            }
            tag::FLOAT => {
                let b = c.take(8, from)?;
                let f = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
                if !f.is_finite() {
                    return Err(PackedError::NotFinite { offset: from });
                }
            }
            tag::STR => c.text(from)?,
            tag::ARRAY | tag::OBJECT => {
                let n = c.u32(from)?;
                // Each item takes at least one byte, each pair five.
                let least = if t == tag::OBJECT {
                    n.saturating_mul(5)
                } else {
                    n
                };
                if least > c.left() {
                    return Err(PackedError::Truncated { offset: from });
                }
                if n > 0 {
                    if open.len == MAX_DEPTH {
                        return Err(PackedError::TooDeep { offset: from });
                    }
                    open.walked[open.len] = (n, t == tag::OBJECT);
                    open.len += 1;
                }
            }
            other => {
                return Err(PackedError::UnknownTag {
                    offset: from,
                    tag: other,
                });
            }
        }
        // The next item of the innermost container not done yet.
        let more = loop {
            match open.len.checked_sub(1).map(|i| &mut open.walked[i]) {
                None => break false,
                Some((0, _)) => open.len -= 1,
                Some((left, keyed)) => {
                    *left -= 1;
                    if *keyed {
                        c.text(c.at)?;
                    }
                    break true;
                }
            }
        };
        if !more {
            break;
        }
    }
    if c.at != bytes.len() {
        return Err(PackedError::Trailing { offset: c.at });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Writer, pack_value as to_value};
    use serde_json::json;

    #[test]
    fn written_values_pass() {
        for v in [
            json!(null),
            json!({"s": "é", "i": -3, "f": 1.5, "a": [[], {}, [1, [2, [3]]]], "o": {"k": true}}),
            json!([]),
        ] {
            assert_eq!(validate(&to_value(&v)), Ok(()), "{v}");
        }
    }

    #[test]
    fn garbage_is_refused_at_its_byte() {
        let ok = to_value(&json!({"k": "v"}));
        let cases: [(&[u8], PackedError); 9] = [
            (&[], PackedError::Empty),
            (
                b"{}",
                PackedError::UnknownTag {
                    offset: 0,
                    tag: b'{',
                },
            ),
            (&[3, 1, 2], PackedError::Truncated { offset: 0 }),
            (
                &[5, 2, 0, 0, 0, 0xff, 0xfe],
                PackedError::NotUtf8 { offset: 0 },
            ),
            (
                &[5, 255, 255, 255, 255, b'a'],
                PackedError::Truncated { offset: 0 },
            ),
            (
                &[6, 255, 255, 255, 127, 0],
                PackedError::Truncated { offset: 0 },
            ),
            (&[6, 1, 0, 0, 0, 0, 0], PackedError::Trailing { offset: 6 }),
            (
                &[7, 1, 0, 0, 0, 1, 0, 0, 0, 0xc3, 0],
                PackedError::NotUtf8 { offset: 5 },
            ),
            (
                &ok[..ok.len() - 1],
                PackedError::Truncated {
                    offset: ok.len() - 6,
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(validate(bytes), Err(want), "{bytes:?}");
        }
        let mut nan = vec![4];
        nan.extend_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(validate(&nan), Err(PackedError::NotFinite { offset: 0 }));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |levels: usize| {
            let mut w = Writer::new();
            let slots: Vec<_> = (0..levels).map(|_| w.begin_array()).collect();
            w.null();
            for s in slots.into_iter().rev() {
                w.finish_container(s, 1);
            }
            w.into_bytes()
        };
        assert_eq!(validate(&deep(MAX_DEPTH)), Ok(()));
        assert_eq!(
            validate(&deep(MAX_DEPTH + 1)),
            Err(PackedError::TooDeep {
                offset: 5 * MAX_DEPTH
            })
        );
        // A million levels of garbage: refused, not a stack overflow.
        let mut bytes = [6u8, 1, 0, 0, 0].repeat(1_000_000);
        bytes.push(0);
        assert!(matches!(validate(&bytes), Err(PackedError::TooDeep { .. })));
    }
}
