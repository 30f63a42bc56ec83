//! The schema checks, defaults and error positions, tested inline.
use serde_json::{Map, Value, json};

use super::super::Position;
use super::super::raw;
use super::pointer::position_of;
use super::*;

#[test]
fn pointers_read_as_key_paths() {
    assert_eq!(key_path("config", ""), "config");
    assert_eq!(key_path("config", "/threshold"), "config.threshold");
    assert_eq!(key_path("config", "/words/2"), "config.words[2]");
    assert_eq!(key_path("config", "/a~1b/c d"), "config[\"a/b\"][\"c d\"]");
    assert_eq!(
        key_path("config_schema", "/properties/x/type"),
        "config_schema.properties.x.type"
    );
}

#[test]
fn pointers_lead_back_to_nodes() {
    let root = raw::read("a:\n  b: [1, 2]\n  \"c/d\": x\n").unwrap();
    assert_eq!(position_of(&root, "/a/b/1"), Position::new(2, 10));
    assert_eq!(position_of(&root, "/a/c~1d"), Position::new(3, 10));
    let (key, _) = locate(&root, "/a/b");
    assert_eq!(key.unwrap().pos, Position::new(2, 3));
    // A path that cannot be followed stops at the deepest node found.
    assert_eq!(position_of(&root, "/a/nope/3"), Position::new(2, 3));
}

#[test]
fn size_and_depth_are_bounded() {
    assert_eq!(too_big(&json!({"type": "object"})), None);
    let mut deep = json!({"type": "string"});
    for _ in 0..MAX_DEPTH {
        deep = json!({ "items": deep });
    }
    assert_eq!(
        too_big(&deep).unwrap(),
        format!("the schema nests too deeply (more than {MAX_DEPTH} levels)")
    );
    let wide: Map<String, Value> = (0..MAX_VALUES)
        .map(|i| (format!("k{i}"), json!({})))
        .collect();
    assert_eq!(
        too_big(&json!({ "properties": wide })).unwrap(),
        format!("the schema is too large (more than {MAX_VALUES} values)")
    );
}

#[test]
fn remote_and_circular_references_are_refused_and_local_ones_kept() {
    let schema = json!({
        "$defs": {
            "a": {"$ref": "#/$defs/b"},
            "b": {"$ref": "#/$defs/a"},
            "leaf": {"type": "string"},
        },
        "properties": {
            "x": {"$ref": "https://example.com/s.json"},
            "y": {"$ref": "#/$defs/leaf"},
            "z": {"$ref": "#/$defs/missing"},
            "tree": {"type": "array", "items": {"$ref": "#"}},
        }
    });
    let problems = references(&schema);
    let at: Vec<&str> = problems.iter().map(|p| p.pointer.as_str()).collect();
    assert_eq!(
        at,
        [
            "/$defs/a/$ref",
            "/$defs/b/$ref",
            "/properties/x/$ref",
            "/properties/z/$ref"
        ]
    );
    assert_eq!(
        problems[0].message,
        "`$ref` goes round in a circle (#/$defs/a → #/$defs/b → #/$defs/a) without reaching a schema"
    );
    assert!(problems[2].message.contains("nothing is ever fetched"));
    assert_eq!(
        problems[3].message,
        "`$ref` `#/$defs/missing` points to nothing in the schema"
    );
    // A `$ref` in data (a default, an enum value) is not a reference.
    let data = json!({"properties": {"x": {"default": {"$ref": "https://example.com"},
                                           "enum": [{"$ref": "#/nowhere"}]}}});
    assert_eq!(references(&data), []);
    // A property named `default` is a schema like any other.
    let named = json!({"properties": {"default": {"$ref": "https://example.com"}}});
    assert_eq!(
        references(&named)
            .iter()
            .map(|p| p.pointer.as_str())
            .collect::<Vec<_>>(),
        ["/properties/default/$ref"]
    );
    assert_eq!(
        references(&json!({"$ref": "#"}))[0].message,
        "`$ref` goes round in a circle (# → # → #) without reaching a schema"
    );
}

#[test]
fn defaults_are_filled_through_properties() {
    let schema = json!({
        "type": "object",
        "properties": {
            "threshold": {"type": "integer", "default": 10},
            "given": {"type": "integer", "default": 1},
            "opts": {
                "type": "object",
                "properties": {"mode": {"default": "fast"}, "n": {"type": "integer"}}
            },
            "strict": {
                "type": "object",
                "required": ["key"],
                "properties": {"mode": {"default": "fast"}, "key": {"type": "string"}}
            },
            "plain": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "deep": {"type": "object", "properties": {"inner": {"type": "object",
                "properties": {"level": {"default": 3}}}}}
        }
    });
    let mut config = json!({"given": 5, "deep": {}});
    let mut filled = Filled::default();
    fill(&schema, "", "", &mut config, &mut filled);
    assert_eq!(
        config,
        json!({"threshold": 10, "given": 5, "opts": {"mode": "fast"},
               "deep": {"inner": {"level": 3}}})
    );
    assert_eq!(
        filled.covering("/opts/mode"),
        Some(("/opts/mode", "/properties/opts/properties/mode/default"))
    );
    assert_eq!(
        filled.covering("/deep/inner"),
        Some(("/deep/inner", "/properties/deep/properties/inner"))
    );
    assert_eq!(filled.covering("/given"), None);
    assert_eq!(filled.covering("/threshold2"), None);
}
