//! What the running version did for one event while a shadow candidate
//! watches (SPEC §13): its publishes, its requests' answers and its clock
//! readings (`time.now_ms()`), recorded on the plugin's own thread as the
//! host carries them out, so the candidate can be compared with it and
//! replay what it got from the outside world.

use std::cell::RefCell;

use plughost_bindings::Payload;
use serde_json::Value;

use crate::services::RequestError;

/// The most `time.now_ms()` readings kept for one event: a hook that
/// busy-waits on the clock would otherwise record without bound. Past
/// them the candidate reads the wall clock, as it does when it reads the
/// clock more often than the running version did.
pub(crate) const MAX_CLOCK_READINGS: usize = 4096;

/// What one `bus.request` got: the reply's payload, or why none.
pub(crate) type Answer = Result<Value, RequestError>;

/// What the running version got from the host for one event, each kind in
/// the order it asked: replayed to a shadow candidate, which would get
/// other answers from the world (a later clock, another reply).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Replies {
    /// Each `bus.request`'s answer.
    pub answers: Vec<Answer>,
    /// Each `time.now_ms()` reading.
    pub clock: Vec<i64>,
}

/// One event's record.
#[derive(Debug, Default, Clone)]
pub(crate) struct Recording {
    /// Topics and payloads published, in order (still packed: decoding
    /// them is the candidate's thread's work, not the running version's).
    pub publishes: Vec<(String, Payload)>,
    /// What its requests and clock readings got.
    pub requests: Replies,
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
pub(crate) fn publish(topic: &str, payload: impl FnOnce() -> Payload) {
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.publishes.push((topic.to_owned(), payload()));
        }
    });
}

/// Records a request's answer, when this thread records.
pub(crate) fn request(answer: Answer) {
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut() {
            rec.requests.answers.push(answer);
        }
    });
}

/// Records a `time.now_ms()` reading, when this thread records and has
/// kept fewer than [`MAX_CLOCK_READINGS`] for this event.
pub(crate) fn clock(ms: i64) {
    RECORDING.with(|r| {
        if let Some(rec) = r.borrow_mut().as_mut()
            && rec.requests.clock.len() < MAX_CLOCK_READINGS
        {
            rec.requests.clock.push(ms);
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
        publish("a", || json!(1).into());
        assert!(take().is_none());
        start();
        assert!(is_on());
        publish("a", || json!(1).into());
        let timeout = RequestError::Timeout {
            topic: "t".into(),
            ms: 5,
        };
        request(Err(timeout.clone()));
        clock(1_714_564_800_123);
        let other = std::thread::spawn(|| {
            publish("b", || json!(2).into());
            clock(1);
            take()
        });
        assert!(other.join().unwrap().is_none());
        let rec = take().unwrap();
        assert_eq!(rec.publishes.len(), 1);
        assert_eq!(rec.publishes[0].0, "a");
        assert_eq!(rec.publishes[0].1.value(), &json!(1));
        assert_eq!(rec.requests.answers, [Err(timeout)]);
        assert_eq!(rec.requests.clock, [1_714_564_800_123]);
        assert!(!is_on());
    }

    #[test]
    fn clock_readings_stop_at_the_cap() {
        start();
        for ms in 0..MAX_CLOCK_READINGS as i64 + 1000 {
            clock(ms);
        }
        let rec = take().unwrap();
        assert_eq!(rec.requests.clock.len(), MAX_CLOCK_READINGS);
        assert_eq!(rec.requests.clock.first(), Some(&0));
        assert_eq!(
            rec.requests.clock.last(),
            Some(&(MAX_CLOCK_READINGS as i64 - 1))
        );
    }
}
