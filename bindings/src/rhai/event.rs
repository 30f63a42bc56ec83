//! The `event` a Rhai hook receives: a read-only value with properties.
//!
//! Building an object map of every field for every event costs more than
//! most hooks spend on their work, so `event` is a small handle to the shared
//! event and each property is made when the script reads it: `event.topic`,
//! `event.id`, `event.payload` (converted from the packed payload on each
//! read, like reading a map field), `event.source`, `event.timestamp`,
//! `event.correlation_id` (`()` when none) and `event.headers`.
//! `event.to_map()` gives all of them as one object map.

use std::sync::Arc;

use rhai::{Dynamic, Engine, ImmutableString, Map};

use super::convert::payload_to_dynamic;
use crate::Event;

/// A read-only view of the event being handled.
#[derive(Debug, Clone)]
pub(crate) struct EventView(pub Arc<Event>);

fn text(s: &str) -> Dynamic {
    ImmutableString::from(s).into()
}

fn headers(e: &Event) -> Dynamic {
    let mut m = Map::new();
    for (k, v) in &e.headers {
        m.insert(k.as_str().into(), text(v));
    }
    Dynamic::from_map(m)
}

fn correlation(e: &Event) -> Dynamic {
    e.correlation_id.as_deref().map_or(Dynamic::UNIT, text)
}

/// Every field as an object map.
fn to_map(e: &Event) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), text(&e.id));
    m.insert("topic".into(), text(&e.topic));
    m.insert("payload".into(), payload_to_dynamic(&e.payload));
    m.insert("source".into(), text(&e.source));
    m.insert("timestamp".into(), text(&e.timestamp));
    m.insert("correlation_id".into(), correlation(e));
    m.insert("headers".into(), headers(e));
    m
}

/// Registers the `Event` type and its properties.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<EventView>("Event")
        .register_get("id", |e: &mut EventView| text(&e.0.id))
        .register_get("topic", |e: &mut EventView| text(&e.0.topic))
        .register_get("payload", |e: &mut EventView| {
            payload_to_dynamic(&e.0.payload)
        })
        .register_get("source", |e: &mut EventView| text(&e.0.source))
        .register_get("timestamp", |e: &mut EventView| text(&e.0.timestamp))
        .register_get("correlation_id", |e: &mut EventView| correlation(&e.0))
        .register_get("headers", |e: &mut EventView| headers(&e.0))
        .register_fn("to_map", |e: &mut EventView| to_map(&e.0))
        .register_fn("to_string", |e: &mut EventView| e.0.to_json_line())
        .register_fn("to_debug", |e: &mut EventView| e.0.to_json_line());
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn properties_read_the_event() {
        let mut engine = Engine::new();
        register(&mut engine);
        let mut e = Event::new("a.b", json!({"n": [1, 2]}), "host");
        e.headers.insert("k".into(), "v".into());
        let view = EventView(Arc::new(e.clone()));
        let mut scope = rhai::Scope::new();
        scope.push("event", view);
        let out: Map = engine
            .eval_with_scope(
                &mut scope,
                r#"#{ t: event.topic, n: event.payload.n[1], h: event.headers.k,
                      c: event.correlation_id, all: event.to_map().keys().len() }"#,
            )
            .unwrap();
        assert_eq!(out["t"].clone().into_string().unwrap(), "a.b");
        assert_eq!(out["n"].as_int().unwrap(), 2);
        assert_eq!(out["h"].clone().into_string().unwrap(), "v");
        assert!(out["c"].is_unit());
        assert_eq!(out["all"].as_int().unwrap(), 7);
    }
}
