//! `config_schema` in whole manifests: violations at their values, the
//! schema's own problems at its key, defaults filled in.

use serde_json::json;

use super::*;

/// A manifest with `config_schema` and `config` after the head.
fn with_schema(schema: &str, config: &str) -> String {
    with_head(&format!("config_schema:\n{schema}config:\n{config}"))
}

const SCHEMA: &str = "  type: object
  additionalProperties: false
  required: [threshold]
  properties:
    threshold: {type: integer, minimum: 0, maximum: 100}
    mode: {enum: [fast, slow], default: fast}
    name: {type: string, minLength: 2, pattern: \"^[a-z]+$\"}
    words: {type: array, items: {type: string}, maxItems: 3}
    nested:
      type: object
      required: [deep]
      properties:
        deep: {type: boolean}
        level: {type: integer, default: 1}
";

#[test]
fn every_config_violation_is_reported_at_its_value_in_file_order() {
    let config = "  threshold: 150
  mode: fats
  name: Ab
  words: [a, 2, c, d]
  treshold: 1
  nested:
    level: x
";
    assert_eq!(
        errors(&with_schema(SCHEMA, config)),
        [
            "19:14: config.threshold: 150 is greater than the maximum 100",
            "20:9: config.mode: `fats` is not one of `fast`, `slow` (did you mean `fast`?)",
            "21:9: config.name: `Ab` does not match the pattern `^[a-z]+$`",
            "22:10: config.words: has more than 3 items",
            "22:14: config.words[1]: expected a string, found the number `2`",
            "23:3: config: unknown key `treshold` (did you mean `threshold`?)",
            "24:3: config.nested: missing required key `deep`",
            "25:12: config.nested.level: expected an integer, found the string `x`",
        ]
    );
}

#[test]
fn a_missing_required_key_is_reported_at_the_config_key() {
    assert_eq!(
        error(&with_schema(SCHEMA, "  mode: slow\n")),
        "18:1: config: missing required key `threshold`"
    );
    // `config:` left empty is checked as `{}`, still at its key.
    assert_eq!(
        error(&with_schema(SCHEMA, "")),
        "18:1: config: missing required key `threshold`"
    );
    // Without `config:` at all, the error is about the file.
    let all = parse(
        Path::new(FILE),
        &with_head(&format!("config_schema:\n{SCHEMA}")),
    )
    .unwrap_err();
    assert_eq!(
        all[0].to_string(),
        format!("{FILE}: config: missing required key `threshold`")
    );
}

#[test]
fn the_filled_config_and_the_schema_are_kept_in_the_manifest() {
    let m = ok(&with_schema(
        SCHEMA,
        "  threshold: 5\n  nested: {deep: true}\n",
    ));
    assert_eq!(
        m.config,
        json!({"threshold": 5, "mode": "fast", "nested": {"deep": true, "level": 1}})
    );
    let schema = m.config_schema.expect("the schema is kept");
    assert_eq!(schema["required"], json!(["threshold"]));
    assert_eq!(schema["properties"]["threshold"]["maximum"], json!(100));
    // A written value wins over the default.
    let m = ok(&with_schema(SCHEMA, "  threshold: 5\n  mode: slow\n"));
    assert_eq!(m.config, json!({"threshold": 5, "mode": "slow"}));
    assert_eq!(ok(HEAD).config_schema, None);
}

#[test]
fn a_missing_object_with_defaults_inside_is_created() {
    let schema = "  properties:
    cache:
      type: object
      properties:
        size: {type: integer, default: 64}
        ttl_s: {type: integer, default: 30}
    auth:
      type: object
      required: [token]
      properties:
        scheme: {default: bearer}
        token: {type: string}
";
    // `auth` is not created: its required `token` has no default, and
    // creating it would make a valid config invalid.
    assert_eq!(
        ok(&with_schema(schema, "")).config,
        json!({"cache": {"size": 64, "ttl_s": 30}})
    );
    assert_eq!(
        ok(&with_schema(
            schema,
            "  cache: {size: 8}\n  auth: {token: t}\n"
        ))
        .config,
        json!({"cache": {"size": 8, "ttl_s": 30}, "auth": {"token": "t", "scheme": "bearer"}})
    );
}

#[test]
fn a_default_that_breaks_the_schema_is_reported_at_the_default() {
    let text = with_head(
        "config_schema:\n  properties:\n    y: {type: integer, maximum: 5, default: 7}\n",
    );
    assert_eq!(
        error(&text),
        "5:45: config_schema: the default of `config.y` breaks the schema: 7 is greater than the maximum 5"
    );
    // Written, the value is checked as written; the default plays no part.
    let ok_text = with_head(
        "config_schema:\n  properties:\n    y: {type: integer, maximum: 5, default: 7}\nconfig: {y: 2}\n",
    );
    assert_eq!(ok(&ok_text).config, json!({"y": 2}));
}

#[test]
fn an_invalid_schema_is_reported_at_the_config_schema_key() {
    let text = with_head(
        "config_schema:
  properties:
    x: {type: strng}
    z: {minimum: ten}
",
    );
    assert_eq!(
        errors(&text),
        [
            "3:1: config_schema.properties.x.type (line 5, column 15): the string `strng` is not \
             a JSON Schema type: use one of `array`, `boolean`, `integer`, `null`, `number`, \
             `object`, `string` (did you mean `string`?)",
            "3:1: config_schema.properties.z.minimum (line 6, column 18): expected a number, \
             found the string `ten`",
        ]
    );
    assert_eq!(
        error(&with_head("config_schema: [a]\n")),
        "3:16: config_schema: expected a mapping (a JSON Schema written in YAML), found a list"
    );
    assert_eq!(
        error(&with_head(
            "config_schema:\n  $schema: http://json-schema.org/draft-07/schema#\n"
        )),
        "3:1: config_schema.$schema (line 4, column 12): must be \
         `https://json-schema.org/draft/2020-12/schema` (plughost reads JSON Schema 2020-12), \
         found the string `http://json-schema.org/draft-07/schema#`"
    );
}

#[test]
fn a_bad_regex_pattern_is_named() {
    let text = with_head(
        "config_schema:\n  properties:\n    y: {type: string, pattern: \"[a-\"}\nconfig: {y: a}\n",
    );
    assert_eq!(
        error(&text),
        "3:1: config_schema.properties.y.pattern (line 5, column 32): `[a-` is not a valid \
         regular expression (lookaround and backreferences are not supported)"
    );
}

#[test]
fn a_remote_ref_is_refused_and_never_fetched() {
    // A port nothing listens on: were it fetched, the error would be a connection failure.
    let text = with_head(
        "config_schema:\n  properties:\n    y: {$ref: \"http://127.0.0.1:9/schema.json\"}\n",
    );
    assert_eq!(
        error(&text),
        "3:1: config_schema.properties.y.$ref (line 5, column 15): `$ref` \
         `http://127.0.0.1:9/schema.json` points outside the schema; only references inside \
         `config_schema` (like `#/$defs/name`) are allowed, nothing is ever fetched"
    );
}

#[test]
fn recursive_refs_are_refused_when_circular_and_kept_when_they_descend() {
    let circular = with_head(
        "config_schema:
  $defs:
    a: {$ref: \"#/$defs/b\"}
    b: {$ref: \"#/$defs/a\"}
  properties:
    x: {$ref: \"#/$defs/a\"}
",
    );
    let all = errors(&circular);
    assert_eq!(all.len(), 3, "{all:#?}");
    assert_eq!(
        all[0],
        "3:1: config_schema.$defs.a.$ref (line 5, column 15): `$ref` goes round in a circle \
         (#/$defs/a → #/$defs/b → #/$defs/a) without reaching a schema"
    );
    // A tree: each level of the config is checked by the same schema.
    let tree = "  type: object
  properties:
    name: {type: string}
    children: {type: array, items: {$ref: \"#\"}}
";
    let config = "  name: root\n  children:\n    - name: a\n      children: [{name: 3}]\n";
    assert_eq!(
        error(&with_schema(tree, config)),
        "12:25: config.children[0].children[0].name: expected a string, found the number `3`"
    );
}

#[test]
fn huge_or_deep_schemas_are_refused() {
    let mut deep = String::from("{type: string}");
    for _ in 0..crate::manifest::schema::MAX_DEPTH {
        deep = format!("{{items: {deep}}}");
    }
    assert_eq!(
        error(&with_head(&format!("config_schema: {deep}\n"))),
        format!(
            "3:1: config_schema: the schema nests too deeply (more than {} levels)",
            crate::manifest::schema::MAX_DEPTH
        )
    );
    let mut wide = String::from("config_schema:\n  properties:\n");
    for i in 0..crate::manifest::schema::MAX_VALUES {
        wide.push_str(&format!("    k{i}: {{}}\n"));
    }
    assert_eq!(
        error(&with_head(&wide)),
        format!(
            "3:1: config_schema: the schema is too large (more than {} values)",
            crate::manifest::schema::MAX_VALUES
        )
    );
}

#[test]
fn a_config_with_errors_of_its_own_is_not_checked_against_the_schema() {
    let text = with_schema(SCHEMA, "  1: x\n");
    assert_eq!(
        error(&text),
        "19:3: config: keys must be strings, found the number `1` (quote it: `\"1\"`)"
    );
}
