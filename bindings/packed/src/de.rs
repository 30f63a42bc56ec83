//! [`Deserializer`]: serde out of packed bytes, into a plugin's own
//! `#[derive(Deserialize)]` types, with `&str` fields borrowed from the
//! bytes (zero-copy: packed strings are stored unescaped). It reads what
//! [`to_vec`](crate::to_vec) writes, in `serde_json`'s shapes.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::{Error, Reader, Token, tag};

/// Reads a `T` from packed bytes; fails on bytes left after the value.
pub fn from_slice<'de, T: de::Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let mut d = Deserializer::new(bytes);
    let value = T::deserialize(&mut d).map_err(|e| e.at(d.offset()))?;
    if !d.reader.is_empty() {
        return Err(Error::new("bytes after the value").at(d.offset()));
    }
    Ok(value)
}

/// A serde deserializer over packed bytes.
#[derive(Debug, Clone)]
pub struct Deserializer<'de> {
    reader: Reader<'de>,
    len: usize,
}

impl<'de> Deserializer<'de> {
    /// A deserializer over one packed value.
    pub fn new(bytes: &'de [u8]) -> Self {
        Deserializer {
            reader: Reader::new(bytes),
            len: bytes.len(),
        }
    }

    /// How many bytes were read.
    fn offset(&self) -> usize {
        self.len - self.reader.rest().len()
    }

    fn token(&mut self) -> Result<Token<'de>, Error> {
        match self.reader.peek_tag() {
            None => Err(Error::new("the buffer ends where a value should be")),
            Some(t) if t > tag::OBJECT => Err(Error::new(format!("unknown tag {t:#04x}"))),
            Some(_) => Ok(self.reader.next_token()),
        }
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Null => visitor.visit_unit(),
            Token::Bool(b) => visitor.visit_bool(b),
            Token::Int(i) => visitor.visit_i64(i),
            Token::Float(f) => visitor.visit_f64(f),
            Token::Str(s) => visitor.visit_borrowed_str(s),
            Token::Array(n) => {
                let mut seq = Items { de: self, left: n };
                let value = visitor.visit_seq(&mut seq)?;
                if seq.left > 0 {
                    return Err(de::Error::invalid_length(n, &"fewer items"));
                }
                Ok(value)
            }
            Token::Object(n) => {
                let mut map = Pairs { de: self, left: n };
                let value = visitor.visit_map(&mut map)?;
                if map.left > 0 {
                    return Err(de::Error::invalid_length(n, &"fewer entries"));
                }
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.reader.peek_tag() == Some(tag::NULL) {
            self.reader.next_token();
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.token()? {
            Token::Str(s) => visitor.visit_enum(s.into_deserializer()),
            Token::Object(1) => visitor.visit_enum(Variant { de: self }),
            _ => Err(Error::new(
                "an enum must be a string or an object of one key",
            )),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.reader.skip();
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The items of an array.
struct Items<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::SeqAccess<'de> for Items<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.de).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        // Not trusted for an allocation beyond what the bytes can hold.
        Some(self.left.min(self.de.reader.rest().len()))
    }
}

/// The pairs of an object.
struct Pairs<'a, 'de> {
    de: &'a mut Deserializer<'de>,
    left: usize,
}

impl<'de> de::MapAccess<'de> for Pairs<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        if self.de.reader.is_empty() {
            return Err(Error::new("the buffer ends where a key should be"));
        }
        self.left -= 1;
        let key = self.de.reader.key();
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(self.de.reader.rest().len() / 5))
    }
}

/// An externally tagged enum value: `{variant: content}`.
struct Variant<'a, 'de> {
    de: &'a mut Deserializer<'de>,
}

impl<'a, 'de> de::EnumAccess<'de> for Variant<'a, 'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let key = self.de.reader.key();
        let v = seed.deserialize(BorrowedStrDeserializer::<Error>::new(key))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_, 'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        <de::IgnoredAny as de::Deserialize>::deserialize(&mut *self.de).map(drop)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(&mut *self.de)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_seq(&mut *self.de, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        de::Deserializer::deserialize_map(&mut *self.de, visitor)
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::{Value, json};

    use super::*;
    use crate::{pack_value, to_vec};

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Location<'a> {
        city: &'a str,
        zip: String,
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Reading<'a> {
        name: &'a str,
        count: i64,
        ratio: f64,
        active: bool,
        #[serde(borrow)]
        location: Location<'a>,
        tags: Vec<String>,
        note: Option<String>,
        kind: Kind,
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    enum Kind {
        Plain,
        Pair(i8, i8),
        Named { x: i32 },
    }

    #[test]
    fn a_struct_reads_back_borrowing_its_strings() {
        let v = json!({"name": "sensor", "count": 3, "ratio": 2, "active": true,
            "location": {"city": "Lyon", "zip": "69001"}, "tags": ["a"], "note": null,
            "kind": {"Named": {"x": 4}}, "ignored": [1, {"deep": [2]}]});
        let bytes = pack_value(&v);
        let r: Reading<'_> = from_slice(&bytes).unwrap();
        assert_eq!(r.name, "sensor");
        assert_eq!(
            r.ratio, 2.0,
            "an integer reads as a float where one is wanted"
        );
        assert_eq!(r.kind, Kind::Named { x: 4 });
        let inside = bytes.as_ptr_range();
        assert!(
            inside.contains(&r.location.city.as_ptr()),
            "borrowed, not copied"
        );
        // And round trips through the serializer.
        let again: Reading<'_> = from_slice(&bytes).unwrap();
        let packed = to_vec(&again).unwrap();
        assert_eq!(from_slice::<Reading<'_>>(&packed).unwrap(), r);
    }

    #[test]
    fn enums_and_values_read_as_serde_json_reads_them() {
        for (v, want) in [
            (json!("Plain"), Kind::Plain),
            (json!({"Pair": [1, -1]}), Kind::Pair(1, -1)),
        ] {
            assert_eq!(from_slice::<Kind>(&pack_value(&v)).unwrap(), want);
        }
        let v = json!({"a": [1, 2.5, "x", null, true]});
        assert_eq!(from_slice::<Value>(&pack_value(&v)).unwrap(), v);
    }

    #[test]
    fn a_mismatch_names_what_and_where() {
        let bytes = pack_value(&json!({"name": "x", "count": 1.5}));
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Two {
            name: String,
            count: i64,
        }
        let e = from_slice::<Two>(&bytes).unwrap_err();
        assert!(
            e.message().contains("invalid type: floating point `1.5`"),
            "{e}"
        );
        // Right after the float (keys are sorted: `count` comes first): the
        // object's tag and count, the key's length and bytes, the float.
        assert_eq!(e.offset(), Some(5 + 4 + 5 + 9));
        let e = from_slice::<Two>(&bytes[..bytes.len() - 3]).unwrap_err();
        assert!(e.to_string().contains("(at byte"), "{e}");
        assert!(from_slice::<Value>(&[]).is_err());
        assert!(
            from_slice::<Value>(&[0, 0])
                .unwrap_err()
                .to_string()
                .contains("bytes after")
        );
    }
}
