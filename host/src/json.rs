//! Payloads and events as JSON text and back, without a JSON tree in
//! between: the packed payload the bus carries is written out as JSON text
//! token by token, and JSON text is parsed straight into a packed payload.
//! This is most of what a message body on the cluster, a line of `--input`
//! and a line of `--tap` cost, so each is done in one pass with no
//! intermediate `serde_json::Value`.
//!
//! Pure. The text is what `serde_json` would write for the same value
//! (strings escaped by `serde_json`, a float that is not finite as `null`),
//! and parsed text reads back as the value `serde_json` would have parsed.

use std::fmt;

use plughost_bindings::payload::{Reader, Token, Writer};
use plughost_bindings::{Event, Payload};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Appends `payload` as JSON text to `out`.
pub(crate) fn write(payload: &Payload, out: &mut Vec<u8>) {
    match payload.packed() {
        Some(bytes) => write_value(&mut Reader::new(bytes), out),
        None => {
            // Plain JSON serialization of a JSON value cannot fail.
            let _ = serde_json::to_writer(&mut *out, payload.value());
        }
    }
}

fn write_value(r: &mut Reader<'_>, out: &mut Vec<u8>) {
    match r.next_token() {
        Token::Null => out.extend_from_slice(b"null"),
        Token::Bool(true) => out.extend_from_slice(b"true"),
        Token::Bool(false) => out.extend_from_slice(b"false"),
        Token::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Token::Float(f) if f.is_finite() => {
            let _ = serde_json::to_writer(&mut *out, &f);
        }
        Token::Float(_) => out.extend_from_slice(b"null"),
        Token::Str(s) => write_str(s, out),
        Token::Array(n) => {
            out.push(b'[');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                write_value(r, out);
            }
            out.push(b']');
        }
        Token::Object(n) => {
            out.push(b'{');
            for i in 0..n {
                if i > 0 {
                    out.push(b',');
                }
                write_str(r.key(), out);
                out.push(b':');
                write_value(r, out);
            }
            out.push(b'}');
        }
    }
}

/// Appends `event` as one line of JSON (no newline) to `out`: the text of
/// [`Event::to_json_line`], with a packed payload written without decoding it.
pub(crate) fn write_event(event: &Event, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"id\":");
    write_str(&event.id, out);
    out.extend_from_slice(b",\"topic\":");
    write_str(&event.topic, out);
    out.extend_from_slice(b",\"payload\":");
    write(&event.payload, out);
    out.extend_from_slice(b",\"source\":");
    write_str(&event.source, out);
    out.extend_from_slice(b",\"timestamp\":");
    write_str(&event.timestamp, out);
    out.extend_from_slice(b",\"correlation_id\":");
    match &event.correlation_id {
        Some(c) => write_str(c, out),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"headers\":{");
    for (i, (k, v)) in event.headers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(k, out);
        out.push(b':');
        write_str(v, out);
    }
    out.extend_from_slice(b"}}");
}

fn write_str(s: &str, out: &mut Vec<u8>) {
    // Writing a string into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Parses a JSON body into a packed payload (an empty body is `null`).
pub(crate) fn read(body: &[u8]) -> Result<Payload, serde_json::Error> {
    let mut w = Writer::new();
    if body.is_empty() {
        w.null();
    } else {
        let mut de = serde_json::Deserializer::from_slice(body);
        Pack(&mut w).deserialize(&mut de)?;
        de.end()?;
    }
    Ok(w.finish())
}

/// Writes the value it is handed into the packed payload: a seed for
/// `serde`, so a payload inside a larger document is packed in the same pass.
pub(crate) struct Pack<'w>(pub(crate) &'w mut Writer);

impl<'de> DeserializeSeed<'de> for Pack<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pack<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.0.null();
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.0.bool(b);
        Ok(())
    }

    fn visit_i64<E>(self, i: i64) -> Result<(), E> {
        self.0.int(i);
        Ok(())
    }

    fn visit_u64<E>(self, u: u64) -> Result<(), E> {
        // As packing a `Value` does: an integer past i64 is a float.
        match i64::try_from(u) {
            Ok(i) => self.0.int(i),
            Err(_) => self.0.float(u as f64),
        }
        Ok(())
    }

    fn visit_f64<E>(self, f: f64) -> Result<(), E> {
        self.0.float(f);
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.0.str(s);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let slot = self.0.begin_array();
        let mut n = 0;
        while seq.next_element_seed(Pack(self.0))?.is_some() {
            n += 1;
        }
        self.0.finish_container(slot, n);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let slot = self.0.begin_object();
        let mut n = 0;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            self.0.key(&key);
            map.next_value_seed(Pack(self.0))?;
            n += 1;
        }
        self.0.finish_container(slot, n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn samples() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(-7),
            json!(1.5),
            json!("é\"\n\u{1}"),
            json!([]),
            json!({}),
            json!({"n": 1, "s": "x", "list": [1, 2.5, {"deep": [null, false]}], "big": 18446744073709551615u64}),
        ]
    }

    #[test]
    fn a_packed_payload_writes_what_serde_json_writes() {
        for v in samples() {
            let mut p = Payload::from(v.clone());
            p.pack_in_place();
            let mut out = Vec::new();
            write(&p, &mut out);
            let back: Value = serde_json::from_slice(&out).unwrap();
            // What the packed payload holds (an integer past i64 is a float there).
            assert_eq!(
                back,
                plughost_bindings::payload::pack(&v).into_value(),
                "{v}"
            );
            // Unpacked, the same text.
            let mut plain = Vec::new();
            write(&Payload::from(v.clone()), &mut plain);
            assert_eq!(plain, serde_json::to_vec(&v).unwrap());
        }
    }

    #[test]
    fn an_event_writes_what_serde_json_writes() {
        for v in samples() {
            let mut e = Event::new("a.b", v.clone(), "host");
            e.headers.insert("k\"".into(), "v\n".into());
            e.headers.insert("a".into(), "b".into());
            let mut out = Vec::new();
            write_event(&e, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), e.to_json_line(), "{v}");
            e.correlation_id = Some("c".into());
            e.headers.clear();
            e.payload.pack_in_place();
            let mut out = Vec::new();
            write_event(&e, &mut out);
            let back: Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, e.to_value(), "{v}");
        }
    }

    #[test]
    fn a_body_reads_as_serde_json_reads_it() {
        for v in samples() {
            let text = serde_json::to_vec(&v).unwrap();
            let p = read(&text).unwrap();
            assert!(p.packed().is_some());
            let want: Value = serde_json::from_slice(&text).unwrap();
            // Integers past i64 are floats, as packing a value makes them.
            let want = plughost_bindings::payload::pack(&want).into_value();
            assert_eq!(p.into_value(), want, "{v}");
        }
        assert_eq!(read(b"").unwrap().into_value(), json!(null));
        assert_eq!(read(b" {\"a\": 1} ").unwrap().into_value(), json!({"a": 1}));
    }

    #[test]
    fn what_is_not_json_is_an_error() {
        for bad in [
            &b"not json"[..],
            b"{\"a\": 1} trailing",
            b"[1, 2",
            b"{\"a\" 1}",
        ] {
            assert!(read(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Deeper than serde_json allows: refused, not a stack overflow.
        let deep = "[".repeat(10_000);
        assert!(read(deep.as_bytes()).is_err());
    }
}
