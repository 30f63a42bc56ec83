//! Which version handles an event in a gradual rollout (SPEC §13): a share
//! of 100 drawn from a hash stable across hosts and restarts.
//!
//! Pure. The hash is 64-bit FNV-1a of the JSON text of the payload's value
//! at `rollout.key` (a dotted path), or of the event's id when there is no
//! key or no value there; the event goes to the candidate when
//! `hash % 100 < percent`. So one key stays on one version as long as the
//! share does not shrink below it, and a larger share only adds keys.

use plughost_bindings::Event;
use serde_json::Value;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    })
}

/// The value at dotted `path` in `payload`, if there is one.
fn at<'a>(payload: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(payload, |v, key| match v {
        Value::Object(map) => map.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// The event's place in 0..100: by the value at `key`, else by its id.
pub(crate) fn slot(event: &Event, key: Option<&str>) -> u8 {
    let hash = match key.and_then(|k| at(event.payload.value(), k)) {
        Some(value) => fnv1a(value.to_string().as_bytes()),
        None => fnv1a(event.id.as_bytes()),
    };
    (hash % 100) as u8
}

/// Whether the candidate handles `event` at a share of `percent`.
pub(crate) fn to_candidate(event: &Event, key: Option<&str>, percent: u8) -> bool {
    slot(event, key) < percent
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn fnv1a_is_the_standard_one() {
        // The published test vectors of 64-bit FNV-1a.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn one_key_stays_on_one_version_and_a_larger_share_only_adds() {
        let ev = |user: &str| Event::new("t", json!({"user": {"id": user}, "n": 1}), "host");
        for user in ["ada", "bob", "cy"] {
            let a = ev(user);
            let b = ev(user);
            assert_ne!(a.id, b.id);
            assert_eq!(slot(&a, Some("user.id")), slot(&b, Some("user.id")));
            let s = slot(&a, Some("user.id"));
            assert_eq!(s, (fnv1a(format!("\"{user}\"").as_bytes()) % 100) as u8);
            for p in 1..=100u8 {
                assert_eq!(to_candidate(&a, Some("user.id"), p), s < p);
            }
        }
        // No value at the key, or no key: by the event's id.
        let e = ev("x");
        assert_eq!(slot(&e, Some("missing.path")), slot(&e, None));
        assert_eq!(slot(&e, None), (fnv1a(e.id.as_bytes()) % 100) as u8);
        assert!(to_candidate(&e, None, 100));
    }

    #[test]
    fn the_share_is_about_the_percent_asked() {
        let events: Vec<Event> = (0..10_000)
            .map(|n| Event::new("t", json!({"n": n}), "host"))
            .collect();
        for percent in [1u8, 10, 50, 90] {
            let taken = events
                .iter()
                .filter(|e| to_candidate(e, Some("n"), percent))
                .count();
            let want = 100 * usize::from(percent);
            assert!(
                taken.abs_diff(want) <= want / 5 + 30,
                "{percent}%: {taken} of 10000"
            );
        }
    }

    #[test]
    fn a_path_reaches_into_lists() {
        let e = Event::new("t", json!({"items": [{"sku": "a"}, {"sku": "b"}]}), "host");
        assert_eq!(at(e.payload.value(), "items.1.sku"), Some(&json!("b")));
        assert_eq!(at(e.payload.value(), "items.9.sku"), None);
    }
}
