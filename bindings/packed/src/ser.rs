//! [`Serializer`]: serde into packed bytes, so a plugin publishes its own
//! `#[derive(Serialize)]` types without building a JSON tree. The shapes
//! are `serde_json`'s: structs and maps are objects, sequences and tuples
//! arrays, `None` and units `null`, enums externally tagged, NaN and
//! infinities `null`, integers beyond `i64` floats.

use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::{Error, Slot, Writer};

/// Packs `value` into a new buffer.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    let mut w = Writer::new();
    to_writer(&mut w, value)?;
    Ok(w.into_bytes())
}

/// Packs `value` at the end of `w` (reuse a writer to reuse its buffer).
pub fn to_writer<T: Serialize + ?Sized>(w: &mut Writer, value: &T) -> Result<(), Error> {
    let at = w.position();
    value
        .serialize(&mut Serializer { w })
        .inspect_err(|_| w.truncate(at))
}

/// A serde serializer writing into a [`Writer`].
#[derive(Debug)]
pub struct Serializer<'w> {
    w: &'w mut Writer,
}

impl<'w> Serializer<'w> {
    /// A serializer appending to `w`.
    pub fn new(w: &'w mut Writer) -> Self {
        Serializer { w }
    }
}

/// An array or object being written: its count slot, the items so far, and
/// the one-pair object around it for an enum variant.
#[doc(hidden)]
#[derive(Debug)]
pub struct Compound<'a, 'w> {
    ser: &'a mut Serializer<'w>,
    slot: Slot,
    count: usize,
    variant: Option<Slot>,
}

impl Compound<'_, '_> {
    fn end(self) -> Result<(), Error> {
        self.ser.w.finish_container(self.slot, self.count);
        if let Some(outer) = self.variant {
            self.ser.w.finish_container(outer, 1);
        }
        Ok(())
    }
}

impl<'a, 'w> Serializer<'w> {
    fn array(&'a mut self, variant: Option<&'static str>) -> Compound<'a, 'w> {
        let variant = variant.map(|v| self.variant(v));
        let slot = self.w.begin_array();
        Compound {
            ser: self,
            slot,
            count: 0,
            variant,
        }
    }

    fn object(&'a mut self, variant: Option<&'static str>) -> Compound<'a, 'w> {
        let variant = variant.map(|v| self.variant(v));
        let slot = self.w.begin_object();
        Compound {
            ser: self,
            slot,
            count: 0,
            variant,
        }
    }

    /// Opens `{variant: …}`.
    fn variant(&mut self, variant: &str) -> Slot {
        let outer = self.w.begin_object();
        self.w.key(variant);
        outer
    }
}

impl<'a, 'w> ser::Serializer for &'a mut Serializer<'w> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a, 'w>;
    type SerializeTuple = Compound<'a, 'w>;
    type SerializeTupleStruct = Compound<'a, 'w>;
    type SerializeTupleVariant = Compound<'a, 'w>;
    type SerializeMap = Compound<'a, 'w>;
    type SerializeStruct = Compound<'a, 'w>;
    type SerializeStructVariant = Compound<'a, 'w>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.w.bool(v);
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.w.int(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => self.serialize_f64(v as f64),
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_i64(v.into())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => self.serialize_f64(v as f64),
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        match i64::try_from(v) {
            Ok(i) => self.serialize_i64(i),
            Err(_) => self.serialize_f64(v as f64),
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_finite() {
            self.w.float(v);
        } else {
            self.w.null();
        }
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.w.str(v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let slot = self.w.begin_array();
        v.iter().for_each(|b| self.w.int((*b).into()));
        self.w.finish_container(slot, v.len());
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.w.null();
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let outer = self.variant(variant);
        value.serialize(&mut *self)?;
        self.w.finish_container(outer, 1);
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.array(None))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.array(None))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.array(None))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.array(Some(variant)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.object(None))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.object(None))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a, 'w>, Error> {
        Ok(self.object(Some(variant)))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.count += 1;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        key.serialize(KeySerializer { w: self.ser.w })
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.count += 1;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.ser.w.key(key);
        self.count += 1;
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

/// Writes a map key: a string, or (as `serde_json` does) a number, a
/// boolean or a char as its text.
struct KeySerializer<'w> {
    w: &'w mut Writer,
}

impl KeySerializer<'_> {
    fn text(self, t: impl std::fmt::Display) -> Result<(), Error> {
        self.w.key(&t.to_string());
        Ok(())
    }
}

fn key_must_be_a_string() -> Error {
    Error::new("a map key must be a string, a number, a boolean or a char")
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.w.key(v);
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.text(v)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_must_be_a_string())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_must_be_a_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::*;
    use crate::{pack_value, unpack_value};

    #[derive(Serialize)]
    struct Reading<'a> {
        name: &'a str,
        count: u64,
        ratio: f64,
        tags: Vec<&'a str>,
        missing: Option<u8>,
        kind: Kind,
        at: BTreeMap<u32, bool>,
    }

    #[derive(Serialize)]
    enum Kind {
        Plain,
        Pair(i8, i8),
        Named { x: i32 },
        Wrapped(String),
    }

    #[test]
    fn structs_pack_as_serde_json_shapes_them() {
        let kinds = [
            Kind::Plain,
            Kind::Pair(1, -2),
            Kind::Named { x: 3 },
            Kind::Wrapped("w".into()),
        ];
        for kind in kinds {
            let r = Reading {
                name: "a",
                count: 5,
                ratio: f64::NAN,
                tags: vec!["x", "y"],
                missing: None,
                kind,
                at: BTreeMap::from([(7, true)]),
            };
            let packed = to_vec(&r).unwrap();
            crate::validate(&packed).unwrap();
            assert_eq!(unpack_value(&packed), serde_json::to_value(&r).unwrap());
        }
    }

    #[test]
    fn a_json_value_packs_the_same_either_way() {
        let v = json!({"a": [1, 2.5, "é", null, {"b": false}]});
        assert_eq!(to_vec(&v).unwrap(), pack_value(&v));
    }

    #[test]
    fn a_key_that_is_no_string_fails_and_leaves_the_writer_as_it_was() {
        let mut w = Writer::new();
        w.int(1);
        let bad = BTreeMap::from([(vec![1], 2)]);
        let e = to_writer(&mut w, &bad).unwrap_err();
        assert!(e.to_string().contains("map key must be a string"), "{e}");
        assert_eq!(unpack_value(w.as_bytes()), json!(1));
    }
}
