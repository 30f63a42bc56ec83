//! Reading what a plugin's hook returned: its status and data, the panic it
//! reported, the outcome of `on_event` (a kind byte and packed fields,
//! checked before they are trusted), each turned into host values or a
//! positioned [`ScriptError`].

use plughost_sdk::abi::{
    CallResult, PluginVTable, STATUS_ERROR, STATUS_FATAL, STATUS_OK, STATUS_PANIC, STATUS_RESTART,
    outcome as kind,
};
use serde_json::Value;

use crate::{ErrorKind, HookName, Outcome, Payload, ScriptError};

/// A successful hook call.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Done (the hooks read this way have no result data).
    Done,
    /// `on_config` asked for a restart.
    Restart,
}

/// Reads a hook's status, frees the plugin's buffer on the plugin's side,
/// and turns a failure into a [`ScriptError`] in `hook`
/// of `file` (the library as shown).
pub(crate) fn read(
    vt: &PluginVTable,
    r: CallResult,
    hook: HookName,
    file: &str,
) -> Result<Reply, ScriptError> {
    Ok(match read_with(vt, r, hook, file, |_| Ok(()))? {
        Some(()) => Reply::Done,
        None => Reply::Restart,
    })
}

/// Reads a hook's result: on success, `f` reads the data straight from the
/// plugin's buffer (`None`: `on_config` asked for a restart); then the
/// buffer goes back to the plugin's `free`, once, whatever happened.
pub(crate) fn read_with<T>(
    vt: &PluginVTable,
    r: CallResult,
    hook: HookName,
    file: &str,
    f: impl FnOnce(&[u8]) -> Result<T, ScriptError>,
) -> Result<Option<T>, ScriptError> {
    let fail = |e: ScriptError| Err(e.or_file(file).in_hook(hook));
    // A null pointer with a length is no buffer: it reads as nothing, which
    // for a result that means something is a lie.
    let lie = r.data.ptr.is_null() && r.data.len != 0;
    // SAFETY: the plugin made this buffer and has not freed it; it is read
    // here before it goes back to the plugin's `free`, once, below.
    let data = unsafe { r.data.as_bytes() };
    let read = match r.status {
        STATUS_OK if lie && hook == HookName::OnEvent => fail(ScriptError::new(
            ErrorKind::BadReturn,
            format!(
                "on_event returned a bad outcome: a null data pointer with a length of {}",
                r.data.len
            ),
        )),
        STATUS_OK => f(data).map(Some).or_else(fail),
        STATUS_RESTART if hook == HookName::OnConfig => Ok(None),
        STATUS_ERROR => fail(ScriptError::new(ErrorKind::Runtime, bounded(data))),
        STATUS_PANIC => fail(panic_error(data, file)),
        STATUS_FATAL => {
            let mut e = panic_error(data, file);
            e.kind = ErrorKind::Crash;
            e.message = e
                .message
                .strip_prefix("panicked: ")
                .map(|m| format!("cannot go on: {m}"))
                .unwrap_or(e.message);
            fail(e)
        }
        other => fail(ScriptError::new(
            ErrorKind::BadReturn,
            format!("the plugin returned unknown status {other}"),
        )),
    };
    // SAFETY: as above; `data` is not used after this.
    unsafe { (vt.free)(r.data) };
    read
}

/// The most of a plugin's message the host keeps: an error or panic
/// message goes into a dead letter, its subscribers and a log line, so
/// megabytes from a library must not.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A plugin's message as text (not UTF-8 is replaced), cut at a character
/// boundary after [`MAX_MESSAGE_BYTES`] with a note of how much was cut.
fn bounded(message: &[u8]) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return String::from_utf8_lossy(message).into_owned();
    }
    // Back off to the start of the character the cut would split (a UTF-8
    // character is at most 4 bytes; continuation bytes are 0b10xxxxxx).
    let mut cut = MAX_MESSAGE_BYTES;
    while cut > MAX_MESSAGE_BYTES - 3 && message[cut] & 0b1100_0000 == 0b1000_0000 {
        cut -= 1;
    }
    format!(
        "{}… ({} bytes cut)",
        String::from_utf8_lossy(&message[..cut]),
        message.len() - cut
    )
}

/// A panic report (`{"message", "file", "line", "column"}`) as an error
/// positioned at the `panic!` in the plugin's source.
fn panic_error(data: &[u8], library: &str) -> ScriptError {
    let v: Value = serde_json::from_slice(data).unwrap_or_default();
    let message = v["message"]
        .as_str()
        .map_or_else(|| "unknown panic".to_owned(), |m| bounded(m.as_bytes()));
    let mut e = ScriptError::new(ErrorKind::Runtime, format!("panicked: {message}"));
    e.file = v["file"].as_str().map(str::to_owned);
    let number = |key: &str| v[key].as_u64().and_then(|n| usize::try_from(n).ok());
    e.line = number("line");
    e.column = number("column");
    e.traceback = Some(format!("in native library {library}"));
    e
}

/// Reads `on_event`'s outcome: no data is `ack`, else a kind byte and its
/// fields (see `plughost_sdk::abi`'s Outcomes). A payload is validated
/// before it is trusted, then copied once into the event it becomes.
pub(crate) fn outcome(data: &[u8]) -> Result<Outcome, ScriptError> {
    let bad = |why: String| {
        ScriptError::new(
            ErrorKind::BadReturn,
            format!("on_event returned a bad outcome: {why}"),
        )
    };
    let payload = |bytes: &[u8]| {
        crate::payload::validate(bytes)
            .map(|()| Payload::from_packed(bytes.to_vec()))
            .map_err(|e| bad(format!("the payload is not a packed value: {e}")))
    };
    let Some((&k, rest)) = data.split_first() else {
        return Ok(Outcome::Ack);
    };
    match k {
        kind::ACK if rest.is_empty() => Ok(Outcome::Ack),
        kind::RETRY => match rest {
            [0] => Ok(Outcome::Retry { delay_ms: None }),
            [1, ms @ ..] if ms.len() == 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(ms);
                Ok(Outcome::Retry {
                    delay_ms: Some(u64::from_le_bytes(b)),
                })
            }
            _ => Err(bad("a retry is 1 byte, or 9 with a delay".into())),
        },
        kind::FORWARD => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("a forward without a topic".into()))?;
            let len = u32::from_le_bytes(*len) as usize;
            if len > rest.len() {
                return Err(bad("a forward's topic runs past the data".into()));
            }
            let (topic, body) = rest.split_at(len);
            let topic = std::str::from_utf8(topic)
                .map_err(|_| bad("a forward's topic is not UTF-8".into()))?;
            Ok(crate::core::forward(topic.to_owned(), payload(body)?))
        }
        kind::DROP => {
            let reason = std::str::from_utf8(rest)
                .map_err(|_| bad("a drop's reason is not UTF-8".into()))?;
            Ok(crate::core::drop(
                (!reason.is_empty()).then(|| bounded(reason.as_bytes())),
            ))
        }
        kind::REPLY => Ok(crate::core::reply(payload(rest)?)),
        other => Err(bad(format!("unknown outcome kind {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_read_back() {
        use plughost_sdk::Outcome as Sdk;
        let read = |o: Sdk| outcome(&o.encode());
        assert_eq!(read(Sdk::Ack).unwrap(), Outcome::Ack);
        assert_eq!(outcome(&[kind::ACK]).unwrap(), Outcome::Ack);
        assert_eq!(
            read(Sdk::Retry(Some(5))).unwrap(),
            Outcome::Retry { delay_ms: Some(5) }
        );
        assert_eq!(
            read(Sdk::Retry(None)).unwrap(),
            Outcome::Retry { delay_ms: None }
        );
        assert_eq!(
            read(Sdk::forward("a", json!([1]))).unwrap(),
            Outcome::Forward {
                topic: "a".into(),
                payload: json!([1]).into()
            }
        );
        assert_eq!(
            read(Sdk::reply(json!({"n": 2}))).unwrap(),
            Outcome::Reply {
                payload: json!({"n": 2}).into()
            }
        );
        assert_eq!(
            read(Sdk::drop("why")).unwrap(),
            crate::core::drop(Some("why".into()))
        );
    }

    #[test]
    fn a_malformed_outcome_is_a_bad_return_never_trusted() {
        let cases: [(&[u8], &str); 8] = [
            (b"this is not json", "unknown outcome kind 116"),
            (&[kind::ACK, 1], "unknown outcome kind 0"),
            (&[kind::RETRY, 1, 2], "a retry is 1 byte, or 9 with a delay"),
            (&[kind::FORWARD, 1], "a forward without a topic"),
            (
                &[kind::FORWARD, 9, 0, 0, 0, b'a'],
                "topic runs past the data",
            ),
            (&[kind::FORWARD, 1, 0, 0, 0, 0xff, 0], "topic is not UTF-8"),
            (
                &[kind::FORWARD, 1, 0, 0, 0, b'a', 6, 9, 0, 0, 0],
                "not a packed value",
            ),
            (
                &[kind::REPLY, b'{', b'}'],
                "not a packed value: byte 0: unknown tag 0x7b",
            ),
        ];
        for (data, says) in cases {
            let e = outcome(data).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadReturn, "{data:?}");
            assert!(e.message.contains(says), "{data:?}: {}", e.message);
            assert!(
                e.message.starts_with("on_event returned a bad outcome"),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn a_long_message_is_cut_at_a_character_with_a_note() {
        assert_eq!(bounded(b"short \xff"), "short \u{FFFD}");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = bounded(long.as_bytes());
        let total = long.len();
        let kept = MAX_MESSAGE_BYTES;
        assert_eq!(
            cut,
            format!("{}… ({} bytes cut)", &long[..kept], total - kept)
        );
        let odd = format!("x{long}");
        let cut = bounded(odd.as_bytes());
        assert!(
            cut.starts_with('x') && !cut.contains('\u{FFFD}'),
            "{:.20}",
            cut
        );
        assert!(
            cut.ends_with(&format!("… ({} bytes cut)", odd.len() - kept + 1)),
            "{}",
            &cut[cut.len() - 40..]
        );
    }

    #[test]
    fn a_huge_error_status_is_cut_and_names_the_hook() {
        let r = CallResult::error(&"x".repeat(10 * MAX_MESSAGE_BYTES));
        let e = read(
            &crate::native::tests::PROBE,
            r,
            HookName::OnEvent,
            "x/libx.so",
        )
        .unwrap_err();
        let text = e.to_string();
        assert!(text.len() < MAX_MESSAGE_BYTES + 100, "{}", text.len());
        assert!(
            text.ends_with("bytes cut) (in on_event)"),
            "{}",
            &text[text.len() - 60..]
        );
    }

    #[test]
    fn a_panic_is_positioned_in_the_plugin_source() {
        let data = json!({"message": "boom", "file": "src/lib.rs", "line": 4, "column": 9});
        let e = panic_error(data.to_string().as_bytes(), "x/libx.so").in_hook(HookName::OnEvent);
        assert_eq!(
            e.to_string(),
            "src/lib.rs:4:9: panicked: boom (in on_event)"
        );
        assert_eq!(e.traceback.as_deref(), Some("in native library x/libx.so"));
    }
}
