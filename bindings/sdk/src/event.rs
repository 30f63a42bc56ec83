//! The event a native plugin's `on_event` receives: the same fields a
//! script sees, decoded from the JSON the host hands over.

use std::collections::BTreeMap;

use serde_json::Value;

/// One event from the bus.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// Unique id (a ULID).
    pub id: String,
    /// The concrete topic it was published on, e.g. `text.raw`.
    pub topic: String,
    /// The payload, any JSON value (usually an object).
    pub payload: Value,
    /// The publishing plugin's name, or `host`.
    pub source: String,
    /// When it was published, RFC 3339 UTC with milliseconds.
    pub timestamp: String,
    /// The id of the event that started the chain, if any.
    pub correlation_id: Option<String>,
    /// Free-form string headers (trace context travels here).
    pub headers: BTreeMap<String, String>,
}

impl Event {
    /// Reads an event from the host's JSON (SPEC §3's shape).
    pub fn from_json(bytes: &[u8]) -> Result<Event, String> {
        let mut v: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("event is not JSON: {e}"))?;
        let mut text = |key: &str| match v.get_mut(key).map(Value::take) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(format!("event has no `{key}` string")),
        };
        let id = text("id")?;
        let topic = text("topic")?;
        let source = text("source")?;
        let timestamp = text("timestamp")?;
        let correlation_id = match v.get_mut("correlation_id").map(Value::take) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let headers = match v.get_mut("headers").map(Value::take) {
            Some(Value::Object(map)) => map
                .into_iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k, s)),
                    _ => None,
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        let payload = v.get_mut("payload").map(Value::take).unwrap_or_default();
        Ok(Event {
            id,
            topic,
            payload,
            source,
            timestamp,
            correlation_id,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_host_shape() {
        let json = json!({"id": "01J", "topic": "text.raw", "payload": {"text": "hi"},
            "source": "host", "timestamp": "2026-11-21T12:00:00.000Z",
            "correlation_id": null, "headers": {"traceparent": "00-x"}});
        let e = Event::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(e.topic, "text.raw");
        assert_eq!(e.payload["text"], "hi");
        assert_eq!(e.correlation_id, None);
        assert_eq!(e.headers["traceparent"], "00-x");
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = Event::from_json(br#"{"id": "x"}"#).unwrap_err();
        assert_eq!(err, "event has no `topic` string");
    }
}
