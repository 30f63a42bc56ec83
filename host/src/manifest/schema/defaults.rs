//! The schema's `default`s filled into the config where a key is missing,
//! recursively through `properties`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::*;

/// Where defaults were filled in: instance pointer → pointer of the schema
/// node that gave it (the `default`, or the object schema for a created object).
#[derive(Default)]
pub(super) struct Filled {
    pub(super) places: BTreeMap<String, String>,
}

impl Filled {
    pub(super) fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The filled place that holds `pointer` (itself or an ancestor), with its origin.
    pub(super) fn covering(&self, pointer: &str) -> Option<(&str, &str)> {
        self.places
            .iter()
            .filter(|(at, _)| {
                pointer == at.as_str()
                    || pointer
                        .strip_prefix(at.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
            .max_by_key(|(at, _)| at.len())
            .map(|(at, origin)| (at.as_str(), origin.as_str()))
    }
}

/// Fills the defaults of `schema` (at schema pointer `at`) into `value` (at
/// instance pointer `path`), recursively through `properties`.
pub(super) fn fill(schema: &Value, at: &str, path: &str, value: &mut Value, filled: &mut Filled) {
    let (Some(props), Value::Object(object)) = (
        schema.get("properties").and_then(Value::as_object),
        &mut *value,
    ) else {
        return;
    };
    for (name, sub) in props {
        let sub_at = format!("{at}/properties/{}", escape(name));
        let sub_path = format!("{path}/{}", escape(name));
        if let Some(present) = object.get_mut(name) {
            fill(sub, &sub_at, &sub_path, present, filled);
        } else if let Some(default) = sub.get("default") {
            object.insert(name.clone(), default.clone());
            filled.places.insert(sub_path, format!("{sub_at}/default"));
        } else if let Some(created) = created_object(sub, &sub_at, &sub_path, filled) {
            object.insert(name.clone(), created);
            filled.places.insert(sub_path, sub_at);
        }
    }
}

/// The object a missing property gets when its schema says `type: object`
/// and has defaults inside, and those defaults cover every `required` key;
/// otherwise `None` (creating it would make a valid config invalid).
pub(super) fn created_object(
    schema: &Value,
    at: &str,
    path: &str,
    filled: &mut Filled,
) -> Option<Value> {
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        return None;
    }
    let mut inner = Filled::default();
    let mut object = Value::Object(Map::new());
    fill(schema, at, path, &mut object, &mut inner);
    let Value::Object(map) = &object else {
        return None;
    };
    let required_met = schema
        .get("required")
        .and_then(Value::as_array)
        .is_none_or(|keys| {
            keys.iter()
                .all(|k| k.as_str().is_some_and(|k| map.contains_key(k)))
        });
    if map.is_empty() || !required_met {
        return None;
    }
    filled.places.extend(inner.places);
    Some(object)
}
