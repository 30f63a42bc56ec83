//! What the running version did for one event while a shadow candidate
//! watches (SPEC §13): its publishes and its requests' answers, recorded
//! on the plugin's own thread as the host carries them out, so the
//! candidate can be compared with it and replay its requests.

use std::cell::RefCell;

use serde_json::Value;

/// One event's record.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Recording {
    /// Topics and payloads published, in order.
    pub publishes: Vec<(String, Value)>,
    /// Each `bus.request`'s answer, in order: the reply's payload or the error's text.
    pub requests: Vec<Result<Value, String>>,
}

thread_local! {
    static RECORDING: RefCell<Option<Recording>> = const { RefCell::new(None) };
}

/// Starts recording on this thread (what was recorded before is dropped).
pub(crate) fn start() {
    RECORDING.with(|r| *r.borrow_mut() = Some(Recording::default()));
}

/// Stops recording on this thread and returns the record.
pub(crate) fn take() -> Option<Recording> {
    RECORDING.with(|r| r.borrow_mut().take())
}

/// Records a publish, when this thread records.
pub(crate) fn publish(topic: &str, payload: impl FnOnce() -> Value) {
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.publishes.push((topic.to_owned(), payload()));
        }
    });
}

/// Records a request's answer, when this thread records.
pub(crate) fn request(answer: Result<Value, String>) {
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.requests.push(answer);
        }
    });
}

/// Whether this thread records now.
pub(crate) fn is_on() -> bool {
    RECORDING.with(|r| r.borrow().is_some())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_recording_thread_records() {
        publish("a", || json!(1));
        assert!(take().is_none());
        start();
        assert!(is_on());
        publish("a", || json!(1));
        request(Err("timeout".into()));
        let other = std::thread::spawn(|| {
            publish("b", || json!(2));
            take()
        });
        assert!(other.join().unwrap().is_none());
        let rec = take().unwrap();
        assert_eq!(rec.publishes, [("a".to_owned(), json!(1))]);
        assert_eq!(rec.requests, [Err("timeout".to_owned())]);
        assert!(!is_on());
    }
}
