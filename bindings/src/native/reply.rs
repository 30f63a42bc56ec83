//! Reading what a plugin's hook returned: its status and data, the panic it
//! reported, the outcome of `on_event`, each turned into host values or a
//! positioned [`ScriptError`].

use plughost_sdk::abi::{
    CallResult, PluginVTable, STATUS_ERROR, STATUS_FATAL, STATUS_OK, STATUS_PANIC, STATUS_RESTART,
};
use serde_json::Value;

use crate::{ErrorKind, HookName, Outcome, Payload, ScriptError};

/// A successful hook call.
#[derive(Debug)]
pub(crate) enum Reply {
    /// Done; the data (empty for hooks without a result).
    Done(Vec<u8>),
    /// `on_config` asked for a restart.
    Restart,
}

/// Copies a hook's result out of the plugin's buffer, frees the buffer on
/// the plugin's side, and turns a failure into a [`ScriptError`] in `hook`
/// of `file` (the library as shown).
pub(crate) fn read(
    vt: &PluginVTable,
    r: CallResult,
    hook: HookName,
    file: &str,
) -> Result<Reply, ScriptError> {
    // SAFETY: the plugin made this buffer and has not freed it; we copy it
    // before handing it back to the plugin's `free`, once.
    let data = unsafe { r.data.as_bytes() }.to_vec();
    // SAFETY: as above.
    unsafe { (vt.free)(r.data) };
    let fail = |e: ScriptError| Err(e.or_file(file).in_hook(hook));
    match r.status {
        STATUS_OK => Ok(Reply::Done(data)),
        STATUS_RESTART if hook == HookName::OnConfig => Ok(Reply::Restart),
        STATUS_ERROR => fail(ScriptError::new(ErrorKind::Runtime, bounded(&data))),
        STATUS_PANIC => fail(panic_error(&data, file)),
        STATUS_FATAL => {
            let mut e = panic_error(&data, file);
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
    }
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

/// Reads `on_event`'s outcome JSON (see `plughost_sdk::abi`).
pub(crate) fn outcome(data: &[u8]) -> Result<Outcome, ScriptError> {
    let bad = |why: String| {
        ScriptError::new(
            ErrorKind::BadReturn,
            format!("on_event returned a bad outcome: {why}"),
        )
    };
    let mut v: Value = serde_json::from_slice(data).map_err(|e| bad(e.to_string()))?;
    let kind = v["outcome"].as_str().unwrap_or_default().to_owned();
    match kind.as_str() {
        "ack" => Ok(Outcome::Ack),
        "retry" => Ok(Outcome::Retry {
            delay_ms: v["delay_ms"].as_u64(),
        }),
        "forward" => {
            let topic = v["topic"]
                .as_str()
                .ok_or_else(|| bad("forward without a topic".into()))?
                .to_owned();
            let payload = Payload::from(v["payload"].take());
            Ok(crate::core::forward(topic, payload))
        }
        "drop" => Ok(crate::core::drop(v["reason"].as_str().map(str::to_owned))),
        "reply" => Ok(crate::core::reply(Payload::from(v["payload"].take()))),
        other => Err(bad(format!("unknown outcome `{other}`"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn outcomes_read_back() {
        let read = |v: Value| outcome(v.to_string().as_bytes());
        assert_eq!(read(json!({"outcome": "ack"})).unwrap(), Outcome::Ack);
        assert_eq!(
            read(json!({"outcome": "retry", "delay_ms": 5})).unwrap(),
            Outcome::Retry { delay_ms: Some(5) }
        );
        assert_eq!(
            read(json!({"outcome": "forward", "topic": "a", "payload": [1]})).unwrap(),
            Outcome::Forward {
                topic: "a".into(),
                payload: json!([1]).into()
            }
        );
        assert_eq!(
            read(json!({"outcome": "reply", "payload": {"n": 2}})).unwrap(),
            Outcome::Reply {
                payload: json!({"n": 2}).into()
            }
        );
        let e = read(json!({"outcome": "maybe"})).unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadReturn);
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
