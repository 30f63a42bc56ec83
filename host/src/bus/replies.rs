//! The reply registry: requests of this process waiting for their answer.
//!
//! A `bus.request` registers a waiter under a reply subject,
//! `_INBOX.<instance>.<request event id>`, a valid NATS subject that names
//! this process (its instance id, fresh per process) and the request. The
//! request event carries the subject in `reply_to`; whoever handles it
//! answers on that subject ([`Replies::answer`]): a subject of this process
//! completes its waiter here, the first reply winning and later ones
//! ignored; any other goes to the remote sink the cluster sets, which sends
//! it to the host that asked. Replies arriving from the cluster complete
//! their waiter with [`Replies::complete`].
//!
//! A [`Waiter`] blocks the plugin thread (a plain OS thread) on a condition
//! variable until its reply or its deadline, and unregisters itself when
//! dropped, so a timed-out request leaves nothing behind and its late
//! replies find nobody.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use plughost_bindings::Payload;

/// Where replies for other processes go: the reply subject and the payload.
/// Set by the cluster; it must never block.
pub type ReplySink = Arc<dyn Fn(String, Payload) + Send + Sync>;

/// The prefix of every reply subject.
const INBOX: &str = "_INBOX";

/// Where one pending request stands.
#[derive(Default)]
enum Answer {
    /// No reply yet.
    #[default]
    Waiting,
    /// The first reply, not yet taken by the waiter.
    Arrived(Payload),
    /// The waiter took the first reply.
    Taken,
}

/// One pending request's answer, once it came.
#[derive(Default)]
struct Slot {
    answer: Mutex<Answer>,
    arrived: Condvar,
}

impl Slot {
    /// Hands the reply over unless one came first; `true` when taken.
    fn fill(&self, payload: Payload) -> bool {
        let mut answer = self.answer.lock().unwrap_or_else(|p| p.into_inner());
        if !matches!(*answer, Answer::Waiting) {
            return false;
        }
        *answer = Answer::Arrived(payload);
        self.arrived.notify_all();
        true
    }
}

type Pending = Arc<Mutex<HashMap<String, Arc<Slot>>>>;

/// The requests of this process waiting for a reply, and the way out for
/// replies to other processes.
pub(crate) struct Replies {
    /// This process's instance id (a ULID).
    instance: String,
    /// `_INBOX.<instance>.`: the prefix of this process's reply subjects.
    prefix: String,
    pending: Pending,
    sink: OnceLock<ReplySink>,
}

impl Default for Replies {
    fn default() -> Self {
        let instance = plughost_bindings::event::new_id();
        Replies {
            prefix: format!("{INBOX}.{instance}."),
            instance,
            pending: Pending::default(),
            sink: OnceLock::new(),
        }
    }
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

impl Replies {
    /// This process's instance id.
    pub(crate) fn instance(&self) -> &str {
        &self.instance
    }

    /// Registers a waiter for the reply to request `request_id`; returns
    /// its reply subject and the waiter.
    pub(crate) fn expect(&self, request_id: &str) -> (String, Waiter) {
        let subject = format!("{}{request_id}", self.prefix);
        let slot = Arc::new(Slot::default());
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(subject.clone(), slot.clone());
        let waiter = Waiter {
            subject: subject.clone(),
            slot,
            pending: self.pending.clone(),
        };
        (subject, waiter)
    }

    /// Completes the waiter of `subject` with `payload`; `true` when a
    /// waiter took it (`false`: none waits, or another reply came first).
    pub(crate) fn complete(&self, subject: &str, payload: Payload) -> bool {
        let slot = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subject)
            .cloned();
        slot.is_some_and(|slot| slot.fill(payload))
    }

    /// Answers the request whose reply subject is `reply_to`: here when it
    /// is this process's, else through the sink when one is set.
    pub(crate) fn answer(&self, reply_to: &str, payload: Payload) {
        if reply_to.starts_with(&self.prefix) {
            if !self.complete(reply_to, payload) {
                tracing::debug!(
                    reply_to,
                    "reply not delivered: the requester is gone or was answered already"
                );
            }
            return;
        }
        match self.sink.get() {
            Some(sink) => sink(reply_to.to_owned(), payload),
            None => tracing::debug!(
                reply_to,
                "reply not delivered: the requester is on no host this one reaches"
            ),
        }
    }

    /// Sets where replies to other processes go. Set once; later calls are
    /// ignored.
    pub(crate) fn set_sink(&self, sink: ReplySink) {
        let _ = self.sink.set(sink);
    }

    /// How many requests are waiting (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// A request waiting for its reply; unregisters when dropped.
pub struct Waiter {
    subject: String,
    slot: Arc<Slot>,
    pending: Pending,
}

impl std::fmt::Debug for Waiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiter")
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl Waiter {
    /// The reply subject this waiter answers to.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Blocks the calling thread until the reply comes or `timeout` has
    /// passed; the reply, or `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> Option<Payload> {
        let deadline = Instant::now().checked_add(timeout);
        let mut answer = self.slot.answer.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match std::mem::replace(&mut *answer, Answer::Taken) {
                Answer::Arrived(payload) => return Some(payload),
                Answer::Taken => return None,
                Answer::Waiting => *answer = Answer::Waiting,
            }
            // A deadline past what `Instant` can hold is no deadline: wait
            // in long steps.
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                return None;
            }
            answer = self
                .slot
                .arrived
                .wait_timeout(answer, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn p(v: Value) -> Payload {
        Payload::from(v)
    }

    #[test]
    fn subjects_name_the_instance_and_the_request() {
        let replies = Replies::default();
        let (subject, _waiter) = replies.expect("01REQUEST");
        assert_eq!(subject, format!("_INBOX.{}.01REQUEST", replies.instance()));
        assert_eq!(replies.instance().len(), 26);
        assert_ne!(Replies::default().instance(), replies.instance());
    }

    #[test]
    fn the_first_reply_wins_and_a_late_one_is_ignored() {
        let replies = Replies::default();
        let (subject, waiter) = replies.expect("r");
        assert!(replies.complete(&subject, p(json!(1))));
        assert!(!replies.complete(&subject, p(json!(2))), "a second reply");
        replies.answer(&subject, p(json!(3)));
        assert_eq!(
            waiter.wait(Duration::from_secs(5)).map(Payload::into_value),
            Some(json!(1))
        );
        assert!(!replies.complete(&subject, p(json!(4))), "after the wait");
    }

    #[test]
    fn a_reply_from_another_thread_wakes_the_waiter() {
        let replies = Arc::new(Replies::default());
        let (subject, waiter) = replies.expect("r");
        let answering = replies.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            answering.answer(&subject, p(json!("yes")));
        });
        let started = Instant::now();
        let got = waiter.wait(Duration::from_secs(30));
        assert_eq!(got.map(Payload::into_value), Some(json!("yes")));
        assert!(started.elapsed() < Duration::from_secs(10));
        t.join().unwrap();
    }

    #[test]
    fn a_wait_times_out_and_dropping_the_waiter_unregisters_it() {
        let replies = Replies::default();
        let (subject, waiter) = replies.expect("r");
        let started = Instant::now();
        assert!(waiter.wait(Duration::from_millis(30)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(replies.waiting(), 1);
        drop(waiter);
        assert_eq!(replies.waiting(), 0);
        assert!(!replies.complete(&subject, p(json!(1))), "nobody waits");
        // A reply to a gone requester of this process is not sent out.
        let sent = Arc::new(Mutex::new(Vec::new()));
        let out = sent.clone();
        replies.set_sink(Arc::new(move |s, _| out.lock().unwrap().push(s)));
        replies.answer(&subject, p(json!(1)));
        assert!(sent.lock().unwrap().is_empty());
    }

    #[test]
    fn replies_to_other_processes_go_to_the_sink() {
        let replies = Replies::default();
        // Without a sink: logged and dropped.
        replies.answer("_INBOX.OTHER.r", p(json!(0)));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let out = sent.clone();
        replies.set_sink(Arc::new(move |s, payload: Payload| {
            out.lock().unwrap().push((s, payload.into_value()))
        }));
        replies.answer("_INBOX.OTHER.r", p(json!({"n": 1})));
        assert_eq!(
            *sent.lock().unwrap(),
            [("_INBOX.OTHER.r".to_owned(), json!({"n": 1}))]
        );
    }
}
