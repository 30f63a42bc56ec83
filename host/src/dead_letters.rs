//! The dead-letter store (SPEC §15): the last dead letters of this host,
//! kept so an operator can list them and, once the plugin is fixed, replay
//! them.
//!
//! The store is bounded twice: by count (`admin.dead_letters`, default
//! 1000) and by bytes (`admin.dead_letters_max_bytes`, default 64 MiB); the
//! oldest letters leave first. An event whose payload is over
//! [`MAX_EVENT_BYTES`] as JSON is kept truncated: its payload becomes a
//! string holding the first [`TRUNCATED_PREFIX`] bytes of that JSON, and it
//! cannot be replayed. The bookkeeping ([`Store`]) is pure and tested here;
//! [`DeadLetters`] puts it behind a lock for the bus, which records every
//! dead letter, and for the host, which lists and replays them (`replay`:
//! [`crate::Host::replay_dead_letter`]).

mod replay;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use plughost_bindings::{Event, Payload};
use serde_json::{Value, json};

pub use replay::{ReplayError, Replayed};

/// How many dead letters are kept when the config does not say.
pub const DEFAULT_COUNT: usize = 1000;

/// How many bytes of dead letters are kept when the config does not say: 64 MiB.
pub const DEFAULT_MAX_BYTES: usize = 64 * 1024 * 1024;

/// The largest payload (as JSON text) kept whole: 1 MiB. A larger one is
/// kept truncated and its letter cannot be replayed.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// How much of a truncated payload's JSON text is kept.
pub const TRUNCATED_PREFIX: usize = 4 * 1024;

/// The store's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// At most this many letters (0 keeps none).
    pub count: usize,
    /// At most this many bytes of letters, as [`DeadLetter::size`] counts them.
    pub max_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            count: DEFAULT_COUNT,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

/// One kept dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The `plughost.dead_letter` event's id.
    pub id: String,
    /// The plugin that dead-lettered the event.
    pub plugin: String,
    /// The original event (its payload a string prefix when `truncated`).
    pub event: Event,
    /// The error or reason.
    pub error: String,
    /// Deliveries made before it was dead-lettered.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub at: SystemTime,
    /// Whether the payload was over [`MAX_EVENT_BYTES`] and cut.
    pub truncated: bool,
    /// What it counts for against the byte bound.
    bytes: usize,
}

impl DeadLetter {
    /// A letter for `event`, truncated when its payload is over
    /// [`MAX_EVENT_BYTES`] as JSON.
    pub fn new(id: &str, plugin: &str, event: &Event, attempts: u32, error: &str) -> Self {
        let mut json = Vec::new();
        crate::json::write(&event.payload, &mut json);
        let truncated = json.len() > MAX_EVENT_BYTES;
        let mut event = event.clone();
        event.payload = if truncated {
            let text = String::from_utf8_lossy(&json);
            packed(Value::String(prefix(&text, TRUNCATED_PREFIX).into()))
        } else {
            match event.payload.packed() {
                Some(bytes) => Payload::from_packed(bytes.to_vec()),
                None => packed(event.payload.value().clone()),
            }
        };
        // Kept packed (no decoded tree beside it); counted as the larger
        // of its packed and JSON forms, so the bound holds for both.
        let payload_bytes = event
            .payload
            .packed()
            .map_or(0, <[u8]>::len)
            .max(if truncated {
                TRUNCATED_PREFIX.min(json.len())
            } else {
                json.len()
            });
        let headers: usize = event.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let bytes = payload_bytes
            + headers
            + event.id.len()
            + event.topic.len()
            + event.source.len()
            + event.timestamp.len()
            + event.correlation_id.as_ref().map_or(0, String::len)
            + id.len()
            + plugin.len()
            + error.len();
        DeadLetter {
            id: id.to_owned(),
            plugin: plugin.to_owned(),
            event,
            error: error.to_owned(),
            attempts,
            at: SystemTime::now(),
            truncated,
            bytes,
        }
    }

    /// The bytes this letter counts for against the byte bound: its
    /// payload's JSON (the prefix when truncated) and its strings.
    pub fn size(&self) -> usize {
        self.bytes
    }

    /// Appends the letter as `GET /dead_letters` answers it, as JSON
    /// text: `{"at", "attempts", "error", "event", "id", "plugin",
    /// "truncated"}` (keys in order, as `serde_json` writes a map), `event`
    /// the original event. The event is written from its packed payload
    /// straight to text: no JSON tree is built, and none decoded into the
    /// store.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let Value::Object(fields) = self.fields() else {
            unreachable!("the fields are an object")
        };
        let mut event = Some(&self.event);
        out.push(b'{');
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            if key.as_str() > "event"
                && let Some(event) = event.take()
            {
                out.extend_from_slice(b"\"event\":");
                crate::json::write_event(event, out);
                out.push(b',');
            }
            // Writing a string or a small JSON value cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            let _ = serde_json::to_writer(&mut *out, value);
        }
        out.push(b'}');
    }

    /// The letter without its event's payload, as the overview shows it:
    /// `id`, `plugin`, `topic` and `event_id` (the original event's),
    /// `error`, `attempts`, `at`, `truncated`.
    pub fn summary(&self) -> Value {
        let mut summary = self.fields();
        summary["topic"] = json!(self.event.topic);
        summary["event_id"] = json!(self.event.id);
        summary
    }

    /// Every field but the event.
    fn fields(&self) -> Value {
        json!({
            "id": self.id,
            "plugin": self.plugin,
            "error": self.error,
            "attempts": self.attempts,
            "at": humantime::format_rfc3339_millis(self.at).to_string(),
            "truncated": self.truncated,
        })
    }
}

/// `value` as a packed payload.
fn packed(value: Value) -> Payload {
    let mut payload = Payload::from(value);
    payload.pack_in_place();
    payload
}

/// The longest prefix of `text` of at most `max` bytes that ends on a
/// character boundary.
fn prefix(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[derive(Debug)]
struct Kept {
    seq: u64,
    bytes: usize,
    letter: Arc<DeadLetter>,
}

/// The bookkeeping of the kept letters, oldest first: insert evicting the
/// oldest past either bound, lookup, removal and listing. No lock, no I/O.
#[derive(Debug, Default)]
pub struct Store {
    limits: Limits,
    kept: VecDeque<Kept>,
    bytes: usize,
    next: u64,
    total: u64,
}

impl Store {
    /// An empty store bounded by `limits`.
    pub fn new(limits: Limits) -> Self {
        Store {
            limits,
            ..Store::default()
        }
    }

    /// New bounds; letters past them leave now, oldest first.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        self.evict();
    }

    /// The bounds.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Keeps `letter` as the newest, evicting the oldest past either bound.
    /// A letter larger than the whole byte bound is counted, not kept.
    pub fn insert(&mut self, letter: DeadLetter) {
        self.total += 1;
        let seq = self.next;
        self.next += 1;
        self.keep(seq, Arc::new(letter));
    }

    fn keep(&mut self, seq: u64, letter: Arc<DeadLetter>) {
        let bytes = letter.size();
        if self.limits.count == 0 || bytes > self.limits.max_bytes {
            return;
        }
        let at = self.kept.partition_point(|k| k.seq < seq);
        self.kept.insert(at, Kept { seq, bytes, letter });
        self.bytes += bytes;
        self.evict();
    }

    fn evict(&mut self) {
        while self.kept.len() > self.limits.count || self.bytes > self.limits.max_bytes {
            match self.kept.pop_front() {
                Some(old) => self.bytes -= old.bytes,
                None => break,
            }
        }
    }

    /// The letter with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<DeadLetter>> {
        self.kept
            .iter()
            .find(|k| k.letter.id == id)
            .map(|k| k.letter.clone())
    }

    /// Takes the letter with `id` out; [`Store::restore`] puts it back where it was.
    pub fn take(&mut self, id: &str) -> Option<Taken> {
        let at = self.kept.iter().position(|k| k.letter.id == id)?;
        let kept = self.kept.remove(at)?;
        self.bytes -= kept.bytes;
        Some(Taken {
            seq: kept.seq,
            letter: kept.letter,
        })
    }

    /// Puts a taken letter back in its place (a replay that could not be
    /// queued), unless the bounds no longer have room for it.
    pub fn restore(&mut self, taken: Taken) {
        self.keep(taken.seq, taken.letter);
    }

    /// The kept letters, oldest first, of `plugin` only when given.
    pub fn list(&self, plugin: Option<&str>) -> Vec<Arc<DeadLetter>> {
        self.kept
            .iter()
            .filter(|k| plugin.is_none_or(|p| k.letter.plugin == p))
            .map(|k| k.letter.clone())
            .collect()
    }

    /// How many letters are kept.
    pub fn len(&self) -> usize {
        self.kept.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }

    /// The bytes the kept letters count for.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many letters were ever recorded, kept or not.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// A letter taken out of the store, to be replayed or put back.
#[derive(Debug)]
pub struct Taken {
    seq: u64,
    /// The letter.
    pub letter: Arc<DeadLetter>,
}

/// The host's dead-letter store, shared by the bus (which records) and the
/// host (which lists and replays).
#[derive(Debug, Default)]
pub struct DeadLetters {
    store: Mutex<Store>,
}

impl DeadLetters {
    fn store(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// New bounds (the host config's), applied at once.
    pub fn set_limits(&self, limits: Limits) {
        self.store().set_limits(limits);
    }

    /// Records a dead letter of `plugin` for `event`; `id` is the
    /// `plughost.dead_letter` event's. Nothing is copied when none is kept.
    pub fn record(&self, id: &str, plugin: &str, event: &Event, attempts: u32, error: &str) {
        if self.store().limits().count == 0 {
            self.store().total += 1;
            return;
        }
        // Built outside the lock: measuring a large payload takes time.
        let letter = DeadLetter::new(id, plugin, event, attempts, error);
        self.store().insert(letter);
    }

    /// The kept letters, oldest first, of `plugin` only when given.
    pub fn list(&self, plugin: Option<&str>) -> Vec<Arc<DeadLetter>> {
        self.store().list(plugin)
    }

    /// The letter with `id`.
    pub fn get(&self, id: &str) -> Option<Arc<DeadLetter>> {
        self.store().get(id)
    }

    /// Takes the letter with `id` out of the store.
    pub fn take(&self, id: &str) -> Option<Taken> {
        self.store().take(id)
    }

    /// Puts a taken letter back in its place.
    pub fn restore(&self, taken: Taken) {
        self.store().restore(taken);
    }

    /// How many letters are kept, and how many were ever recorded.
    pub fn counts(&self) -> (usize, u64) {
        let store = self.store();
        (store.len(), store.total())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: Value) -> Event {
        Event::new("orders.created", payload, "host")
    }

    fn letter(id: &str, plugin: &str, payload: Value) -> DeadLetter {
        DeadLetter::new(id, plugin, &event(payload), 1, "boom")
    }

    fn as_json(letter: &DeadLetter) -> Value {
        let mut text = Vec::new();
        letter.write_json(&mut text);
        serde_json::from_slice(&text).expect("valid JSON")
    }

    fn ids(store: &Store) -> Vec<String> {
        store.list(None).iter().map(|l| l.id.clone()).collect()
    }

    #[test]
    fn the_count_bound_keeps_the_newest() {
        let mut store = Store::new(Limits {
            count: 3,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        for i in 0..5 {
            store.insert(letter(&format!("d{i}"), "p", json!({"n": i})));
        }
        assert_eq!(ids(&store), ["d2", "d3", "d4"]);
        assert_eq!(store.total(), 5);
    }

    #[test]
    fn a_count_of_zero_keeps_none() {
        let mut store = Store::new(Limits {
            count: 0,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        store.insert(letter("d", "p", json!(1)));
        assert!(store.is_empty());
        assert_eq!(store.bytes(), 0);
        assert_eq!(store.total(), 1);
    }

    #[test]
    fn a_flood_of_big_letters_never_exceeds_the_byte_bound() {
        let limits = Limits {
            count: 1000,
            max_bytes: 3 * 1024 * 1024,
        };
        let mut store = Store::new(limits);
        let big = "x".repeat(900 * 1024);
        for i in 0..50 {
            store.insert(letter(&format!("d{i}"), "p", json!(big)));
            assert!(store.bytes() <= limits.max_bytes, "{}", store.bytes());
            let counted: usize = store.list(None).iter().map(|l| l.size()).sum();
            assert_eq!(counted, store.bytes());
        }
        // Three letters of 900 KiB fit in 3 MiB; a fourth never does.
        assert_eq!(store.len(), 3);
        assert_eq!(ids(&store).last().map(String::as_str), Some("d49"));
    }

    #[test]
    fn a_letter_larger_than_the_byte_bound_is_not_kept() {
        let mut store = Store::new(Limits {
            count: 10,
            max_bytes: 100,
        });
        store.insert(letter("small", "p", json!(1)));
        store.insert(letter("big", "p", json!("y".repeat(500))));
        assert_eq!(ids(&store), ["small"]);
    }

    #[test]
    fn a_payload_over_one_mib_is_kept_truncated() {
        let huge = "z".repeat(MAX_EVENT_BYTES + 10);
        let l = letter("d", "p", json!({"blob": huge}));
        assert!(l.truncated);
        let kept = l.event.payload.value().as_str().expect("a string prefix");
        assert_eq!(kept.len(), TRUNCATED_PREFIX);
        assert!(kept.starts_with("{\"blob\":\"zzz"), "{}", &kept[..20]);
        assert!(l.size() < 2 * TRUNCATED_PREFIX);
        assert_eq!(as_json(&l)["truncated"], true);

        // Exactly 1 MiB of JSON is kept whole.
        let exact = "a".repeat(MAX_EVENT_BYTES - 2);
        let l = letter("e", "p", json!(exact));
        assert!(!l.truncated);
        assert_eq!(l.event.payload.value(), &json!(exact));
    }

    #[test]
    fn truncation_ends_on_a_character_boundary() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("hi", 10), "hi");
    }

    #[test]
    fn lookup_take_and_restore_keep_the_order() {
        let mut store = Store::new(Limits::default());
        for id in ["a", "b", "c"] {
            store.insert(letter(id, "p", json!(id)));
        }
        assert_eq!(store.get("b").map(|l| l.id.clone()), Some("b".into()));
        assert!(store.get("zz").is_none());
        let bytes = store.bytes();
        let taken = store.take("b").expect("kept");
        assert_eq!(ids(&store), ["a", "c"]);
        assert!(store.take("b").is_none());
        assert!(store.bytes() < bytes);
        store.restore(taken);
        assert_eq!(ids(&store), ["a", "b", "c"]);
        assert_eq!(store.bytes(), bytes);
    }

    #[test]
    fn list_filters_by_plugin() {
        let mut store = Store::new(Limits::default());
        store.insert(letter("a", "one", json!(1)));
        store.insert(letter("b", "two", json!(2)));
        store.insert(letter("c", "one", json!(3)));
        let of_one: Vec<_> = store
            .list(Some("one"))
            .iter()
            .map(|l| l.id.clone())
            .collect();
        assert_eq!(of_one, ["a", "c"]);
        assert!(store.list(Some("three")).is_empty());
    }

    #[test]
    fn lower_limits_evict_at_once() {
        let mut store = Store::new(Limits::default());
        for id in ["a", "b", "c"] {
            store.insert(letter(id, "p", json!(id)));
        }
        store.set_limits(Limits {
            count: 1,
            max_bytes: DEFAULT_MAX_BYTES,
        });
        assert_eq!(ids(&store), ["c"]);
    }

    #[test]
    fn the_json_shape_is_the_contracts() {
        let l = DeadLetter::new(
            "dl1",
            "p",
            &event(json!({"n": 1})),
            3,
            "p/main.lua:2:1: boom",
        );
        let j = as_json(&l);
        assert_eq!(j["id"], "dl1");
        assert_eq!(j["plugin"], "p");
        assert_eq!(j["event"]["topic"], "orders.created");
        assert_eq!(j["event"]["payload"], json!({"n": 1}));
        assert_eq!(j["error"], "p/main.lua:2:1: boom");
        assert_eq!(j["attempts"], 3);
        assert_eq!(j["truncated"], false);
        // Kept packed, and listing it decodes nothing into the store.
        assert!(l.event.payload.packed().is_some());
        assert!(j["at"].as_str().is_some_and(|s| s.ends_with('Z')), "{j}");
        assert_eq!(j.as_object().map(|o| o.len()), Some(7), "{j}");
        // The keys in the order a JSON tree of the letter writes them, the
        // event as `--tap` prints it.
        let mut text = Vec::new();
        l.write_json(&mut text);
        let mut event = Vec::new();
        crate::json::write_event(&l.event, &mut event);
        let expected = format!(
            r#"{{"at":{},"attempts":3,"error":"p/main.lua:2:1: boom","event":{},"id":"dl1","plugin":"p","truncated":false}}"#,
            j["at"],
            String::from_utf8(event).unwrap()
        );
        assert_eq!(String::from_utf8(text).unwrap(), expected);
    }

    #[test]
    fn the_summary_is_the_letter_without_its_payload() {
        let event = event(json!({"blob": "x".repeat(1000)}));
        let l = DeadLetter::new("dl1", "p", &event, 2, "boom");
        let mut expected = as_json(&l);
        let fields = expected.as_object_mut().unwrap();
        fields.remove("event");
        fields.insert("topic".into(), json!("orders.created"));
        fields.insert("event_id".into(), json!(event.id));
        assert_eq!(l.summary(), expected);
        assert!(l.summary().to_string().len() < 300, "{}", l.summary());
    }
}
