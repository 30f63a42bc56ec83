//! `config_schema`: a plugin's JSON Schema (2020-12, written in YAML) checked against its `config`.
//!
//! The schema is first checked itself: its size and nesting are bounded, every
//! `$ref` must point inside it (nothing is ever fetched) and must not go round
//! in a circle, and it must follow the 2020-12 meta-schema and compile (a bad
//! `pattern` is caught here). Problems with the schema are reported at the
//! `config_schema` key, naming the offending part and its line and column.
//!
//! The config as written is then validated, and every violation is reported
//! at the offending value: the validator's instance path (a JSON pointer) is
//! walked back through the YAML node tree to the node it names. The crate's
//! messages are rewritten for a plugin author (`config.threshold: 150 is
//! greater than the maximum 100`), and an unknown key under
//! `additionalProperties: false` gets the closest allowed key.
//!
//! Last, the schema's `default`s are filled in where a key is missing
//! (recursively through `properties`), and the filled config is validated
//! again so a default that breaks the schema is reported at that `default`.
//! Pure: nodes and values in, problems (through [`Check`]) and the filled
//! config out. The compiled validator lives only for the call.

use std::collections::{BTreeMap, HashSet};

use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, ValidationError, Validator};
use serde_json::{Map, Value};

#[cfg(test)]
use super::Position;
use super::raw::{Kind, Node};
use super::suggest;
use super::values::Check;

/// The most values (mappings, lists and scalars) a schema may hold.
pub(crate) const MAX_VALUES: usize = 10_000;

/// The deepest a schema may nest (each `properties:` level costs two).
pub(crate) const MAX_DEPTH: usize = 32;

/// The largest compiled size of one `pattern`, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The only `$schema` accepted: plughost reads JSON Schema 2020-12.
const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// A top-level manifest entry: its key node and its value node.
#[derive(Clone, Copy)]
pub(super) struct Entry<'n> {
    pub key: &'n Node,
    pub value: &'n Node,
}

/// Checks `config` against `schema` and fills in the schema's defaults.
///
/// `schema` is the value of the `config_schema` entry `schema_at`; `config_at`
/// is the `config` entry when one was written. Every problem goes to `check`;
/// `config` is filled in place (only meaningful when `check` stays clean).
pub(super) fn apply(
    check: &mut Check,
    schema_at: Entry,
    schema: &Value,
    config_at: Option<Entry>,
    config: &mut Value,
) {
    let Some(validator) = compile(check, schema_at, schema) else {
        return;
    };
    let config_node = config_at.map(|e| e.value).filter(|n| !n.is_null());
    let written: Vec<ValidationError> = validator.iter_errors(config).collect();
    let mut seen = HashSet::new();
    for error in &written {
        seen.insert(identity(error));
        report_violation(check, schema, config_at, config_node, error);
    }

    let mut filled = Filled::default();
    let mut with_defaults = config.clone();
    fill(schema, "", "", &mut with_defaults, &mut filled);
    if filled.is_empty() {
        return;
    }
    for error in validator.iter_errors(&with_defaults) {
        let at = error.instance_path().as_str();
        if let Some((instance, origin)) = filled.covering(at) {
            let place = locate_node(schema_at.value, origin);
            let message = format!(
                "config_schema: the default of `{}` breaks the schema: {}",
                key_path("config", instance),
                describe_value_violation(&error, &render_json(error.instance())),
            );
            check.report(Some(place.pos), message);
        } else if !seen.contains(&identity(&error)) {
            let message = format!(
                "config_schema: the defaults filled into `config` break the schema: {}: {}",
                key_path("config", at),
                describe_value_violation(&error, &render_json(error.instance())),
            );
            check.report(Some(schema_at.key.pos), message);
        }
    }
    *config = with_defaults;
}

/// An error's identity across two validations: where, and by which keyword.
fn identity(error: &ValidationError) -> (String, String) {
    (
        error.instance_path().as_str().to_owned(),
        error.schema_path().as_str().to_owned(),
    )
}

/// The checks of the schema itself, then the compiled validator.
fn compile(check: &mut Check, at: Entry, schema: &Value) -> Option<Validator> {
    let before = check.problem_count();
    if let Some(message) = too_big(schema) {
        check.report(Some(at.key.pos), format!("config_schema: {message}"));
        return None;
    }
    if let Some(dialect) = schema.get("$schema")
        && dialect.as_str() != Some(DIALECT)
    {
        let node = locate_node(at.value, "/$schema");
        let message = format!(
            "config_schema.$schema (line {}, column {}): must be `{DIALECT}` \
             (plughost reads JSON Schema 2020-12), found {}",
            node.pos.line,
            node.pos.column,
            describe_json(dialect)
        );
        check.report(Some(at.key.pos), message);
    }
    for problem in references(schema) {
        let node = locate_node(at.value, &problem.pointer);
        let message = format!(
            "{} (line {}, column {}): {}",
            key_path("config_schema", &problem.pointer),
            node.pos.line,
            node.pos.column,
            problem.message
        );
        check.report(Some(at.key.pos), message);
    }
    if check.problem_count() > before {
        return None;
    }
    let meta = jsonschema::draft202012::meta::validator();
    let mut invalid = false;
    for error in meta.iter_errors(schema) {
        invalid = true;
        report_schema_error(check, at, &error);
    }
    if invalid {
        return None;
    }
    let built = jsonschema::draft202012::options()
        .offline()
        .with_pattern_options(PatternOptions::regex().size_limit(REGEX_SIZE_LIMIT))
        .build(schema);
    match built {
        Ok(validator) => Some(validator),
        Err(error) => {
            report_schema_error(check, at, &error);
            None
        }
    }
}

/// Why a schema is too large or too deep to be checked, if it is.
fn too_big(schema: &Value) -> Option<String> {
    let mut stack = vec![(schema, 1usize)];
    let mut count = 0usize;
    while let Some((value, depth)) = stack.pop() {
        count += 1;
        if count > MAX_VALUES {
            return Some(format!(
                "the schema is too large (more than {MAX_VALUES} values)"
            ));
        }
        if depth > MAX_DEPTH {
            return Some(format!(
                "the schema nests too deeply (more than {MAX_DEPTH} levels)"
            ));
        }
        match value {
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    None
}

/// The keywords whose value maps names (not keywords) to schemas.
const NAME_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// A `$ref` that cannot be followed: where it is written (a JSON pointer) and why.
#[derive(Debug, PartialEq)]
struct RefProblem {
    pointer: String,
    message: String,
}

/// Every `$ref` that leaves the schema, points nowhere, or goes round in a
/// circle without ever reaching a schema that checks something.
fn references(schema: &Value) -> Vec<RefProblem> {
    let mut problems = Vec::new();
    // Each entry: a value, its pointer, and whether its keys are names (of
    // `properties`, `$defs`…) rather than keywords.
    let mut stack = vec![(schema, String::new(), false)];
    while let Some((value, pointer, names)) = stack.pop() {
        match value {
            Value::Object(map) => {
                let refs = ["$ref", "$dynamicRef"].into_iter().filter(|_| !names);
                for keyword in refs {
                    if let Some(target) = map.get(keyword) {
                        let at = format!("{pointer}/{}", escape(keyword));
                        if let Some(message) = reference_problem(schema, &pointer, target) {
                            problems.push(RefProblem {
                                pointer: at,
                                message,
                            });
                        }
                    }
                }
                for (key, child) in map {
                    // Values that are data, not schemas, hold no references.
                    let data = matches!(key.as_str(), "const" | "default" | "enum" | "examples");
                    if names || !data {
                        let holds_names = !names && NAME_MAPS.contains(&key.as_str());
                        stack.push((child, format!("{pointer}/{}", escape(key)), holds_names));
                    }
                }
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    stack.push((child, format!("{pointer}/{i}"), false));
                }
            }
            _ => {}
        }
    }
    problems.sort_by(|a, b| a.pointer.cmp(&b.pointer));
    problems
}

/// What is wrong with the reference `target` written in the schema at `from`, if anything.
fn reference_problem(schema: &Value, from: &str, target: &Value) -> Option<String> {
    let Some(text) = target.as_str() else {
        return None; // the meta-schema says what a `$ref` must be
    };
    let Some(fragment) = text.strip_prefix('#') else {
        return Some(format!(
            "`$ref` `{text}` points outside the schema; only references inside \
             `config_schema` (like `#/$defs/name`) are allowed, nothing is ever fetched"
        ));
    };
    if !fragment.is_empty() && !fragment.starts_with('/') {
        return None; // an `$anchor` name: the validator resolves it
    }
    let Some(mut current) = schema.pointer(fragment) else {
        return Some(format!("`$ref` `{text}` points to nothing in the schema"));
    };
    // Follow a chain of schemas that only refer on: coming back to one seen
    // before means the chain never reaches anything to check.
    let mut chain = vec![from.to_owned(), fragment.to_owned()];
    while let Some(next) = current.get("$ref").and_then(Value::as_str) {
        // A reference to an `$anchor` ends the chain: the validator resolves it.
        let next = next
            .strip_prefix('#')
            .filter(|f| f.is_empty() || f.starts_with('/'))?;
        if chain.iter().any(|seen| seen == next) {
            chain.push(next.to_owned());
            let shown: Vec<String> = chain.iter().map(|p| format!("#{p}")).collect();
            return Some(format!(
                "`$ref` goes round in a circle ({}) without reaching a schema",
                shown.join(" → ")
            ));
        }
        current = schema.pointer(next)?;
        chain.push(next.to_owned());
    }
    None
}

/// Reports an error of the schema itself (from the meta-schema or the compiler).
fn report_schema_error(check: &mut Check, at: Entry, error: &ValidationError) {
    let pointer = error.instance_path().as_str();
    let node = locate_node(at.value, pointer);
    let found = error.instance();
    let what = match error.kind() {
        ValidationErrorKind::Format { format } if format == "regex" => format!(
            "{} is not a valid regular expression (lookaround and backreferences are not supported)",
            render_json(found)
        ),
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::Enum { .. }
            if pointer.ends_with("/type") || pointer.contains("/type/") =>
        {
            let types = [
                "array", "boolean", "integer", "null", "number", "object", "string",
            ];
            let hint = found
                .as_str()
                .map(|t| suggest::hint(t, &types))
                .unwrap_or_default();
            format!(
                "{} is not a JSON Schema type: use one of `array`, `boolean`, `integer`, \
                 `null`, `number`, `object`, `string`{hint}",
                describe_json(found)
            )
        }
        ValidationErrorKind::Type { kind } => {
            format!(
                "expected {}, found {}",
                type_names(kind),
                describe_json(found)
            )
        }
        ValidationErrorKind::Referencing(e) => format!("a `$ref` cannot be resolved: {e}"),
        _ => error.to_string(),
    };
    let message = if pointer.is_empty() {
        format!("config_schema: {what}")
    } else {
        format!(
            "{} (line {}, column {}): {what}",
            key_path("config_schema", pointer),
            node.pos.line,
            node.pos.column
        )
    };
    check.report(Some(at.key.pos), message);
}

/// Reports one violation of the config as written, at the offending value.
fn report_violation(
    check: &mut Check,
    schema: &Value,
    config_at: Option<Entry>,
    config: Option<&Node>,
    error: &ValidationError,
) {
    let pointer = error.instance_path().as_str();
    let label = key_path("config", pointer);
    let located = config.map(|root| locate(root, pointer));
    // The key that names the offending mapping: `config` itself at the root.
    let key_pos = match located {
        Some((Some(key), _)) => Some(key.pos),
        _ => config_at.map(|e| e.key.pos),
    };
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or(property.to_string(), str::to_owned);
            check.report(key_pos, format!("{label}: missing required key `{name}`"));
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            let allowed = allowed_keys(schema, error.schema_path().as_str());
            let allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let mapping = located.map(|(_, node)| node);
            for name in unexpected {
                let at = mapping
                    .and_then(|m| entry_key(m, name))
                    .map(|k| k.pos)
                    .or(key_pos);
                let hint = suggest::hint(name, &allowed);
                check.report(at, format!("{label}: unknown key `{name}`{hint}"));
            }
        }
        _ => {
            let (at, shown) = match located {
                Some((_, node)) => (Some(node.pos), shown_node(check, node)),
                None => (key_pos, render_json(error.instance())),
            };
            let message = format!("{label}: {}", describe_value_violation(error, &shown));
            check.report(at, message);
        }
    }
}

/// A violation by a value, worded for a plugin author; `shown` is the value as written.
fn describe_value_violation(error: &ValidationError, shown: &str) -> String {
    let found = error.instance();
    match error.kind() {
        ValidationErrorKind::Type { kind } => {
            format!(
                "expected {}, found {}",
                type_names(kind),
                describe_json(found)
            )
        }
        ValidationErrorKind::Maximum { limit } => {
            format!("{shown} is greater than the maximum {limit}")
        }
        ValidationErrorKind::Minimum { limit } => {
            format!("{shown} is less than the minimum {limit}")
        }
        ValidationErrorKind::ExclusiveMaximum { limit } => {
            format!("{shown} must be less than {limit}")
        }
        ValidationErrorKind::ExclusiveMinimum { limit } => {
            format!("{shown} must be greater than {limit}")
        }
        ValidationErrorKind::MaxLength { limit } => {
            format!(
                "{shown} is longer than {limit} {}",
                plural(*limit, "character")
            )
        }
        ValidationErrorKind::MinLength { limit } => {
            format!(
                "{shown} is shorter than {limit} {}",
                plural(*limit, "character")
            )
        }
        ValidationErrorKind::MaxItems { limit } => {
            format!("has more than {limit} {}", plural(*limit, "item"))
        }
        ValidationErrorKind::MinItems { limit } => {
            format!("has fewer than {limit} {}", plural(*limit, "item"))
        }
        ValidationErrorKind::MaxProperties { limit } => {
            format!("has more than {limit} {}", plural(*limit, "key"))
        }
        ValidationErrorKind::MinProperties { limit } => {
            format!("has fewer than {limit} {}", plural(*limit, "key"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            format!("{shown} does not match the pattern `{pattern}`")
        }
        ValidationErrorKind::Enum { options } => {
            let choices: Vec<String> = match options.as_ref() {
                Value::Array(items) => items.iter().map(render_json).collect(),
                other => vec![render_json(other)],
            };
            let strings: Vec<&str> = match options.as_ref() {
                Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let hint = found
                .as_str()
                .map(|s| suggest::hint(s, &strings))
                .unwrap_or_default();
            format!("{shown} is not one of {}{hint}", choices.join(", "))
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!("must be {}, found {shown}", render_json(expected_value))
        }
        ValidationErrorKind::MultipleOf { multiple_of } => {
            format!("{shown} is not a multiple of {multiple_of}")
        }
        ValidationErrorKind::UniqueItems => "has items that are not unique".to_owned(),
        ValidationErrorKind::FalseSchema => "is not allowed here".to_owned(),
        ValidationErrorKind::Format { format } => format!("{shown} is not a valid {format}"),
        ValidationErrorKind::AnyOf { .. } | ValidationErrorKind::OneOfNotValid { .. } => {
            format!("{shown} matches none of the allowed shapes (`anyOf`/`oneOf`)")
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            format!("{shown} matches more than one of the `oneOf` shapes")
        }
        ValidationErrorKind::Not { .. } => format!("{shown} is not allowed (`not`)"),
        _ => error.to_string(),
    }
}

/// The keys `properties` allows next to the `additionalProperties` at `keyword`.
fn allowed_keys(schema: &Value, keyword: &str) -> Vec<String> {
    let parent = keyword.rsplit_once('/').map_or("", |(parent, _)| parent);
    schema
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// Where defaults were filled in: instance pointer → pointer of the schema
/// node that gave it (the `default`, or the object schema for a created object).
#[derive(Default)]
struct Filled {
    places: BTreeMap<String, String>,
}

impl Filled {
    fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// The filled place that holds `pointer` (itself or an ancestor), with its origin.
    fn covering(&self, pointer: &str) -> Option<(&str, &str)> {
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
fn fill(schema: &Value, at: &str, path: &str, value: &mut Value, filled: &mut Filled) {
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
fn created_object(schema: &Value, at: &str, path: &str, filled: &mut Filled) -> Option<Value> {
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

/// The node a JSON pointer names under `root`, and the key node of its last
/// step (when that step is a mapping key). Stops at the deepest node found.
fn locate<'n>(root: &'n Node, pointer: &str) -> (Option<&'n Node>, &'n Node) {
    let mut key = None;
    let mut node = root;
    for token in tokens(pointer) {
        let next = match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(token.as_str()))
                .map(|(k, v)| (Some(k), v)),
            Kind::Seq(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .map(|v| (None, v)),
            _ => None,
        };
        match next {
            Some((k, v)) => {
                key = k;
                node = v;
            }
            None => break,
        }
    }
    (key, node)
}

/// The node a JSON pointer names under `root` (or the deepest one found).
fn locate_node<'n>(root: &'n Node, pointer: &str) -> &'n Node {
    locate(root, pointer).1
}

/// The key node of `name` in a mapping node.
fn entry_key<'n>(mapping: &'n Node, name: &str) -> Option<&'n Node> {
    match &mapping.kind {
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, _)| k)
            .find(|k| k.as_str() == Some(name)),
        _ => None,
    }
}

/// The unescaped tokens of a JSON pointer (`/a~1b/0` → `a/b`, `0`).
fn tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// A key as a JSON pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A pointer as an author reads it: `/nested/words/2` under `config` is `config.nested.words[2]`.
fn key_path(root: &str, pointer: &str) -> String {
    let mut out = root.to_owned();
    for token in tokens(pointer) {
        let plain = !token.is_empty()
            && token
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '$');
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else if plain {
            out.push('.');
            out.push_str(&token);
        } else {
            out.push_str(&format!("[{}]", Value::String(token)));
        }
    }
    out
}

/// A config value as written: numbers bare (`150`), anything else in backticks.
fn shown_node(check: &Check, node: &Node) -> String {
    match node.kind {
        Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => check.text(node),
        Kind::Seq(_) => "the list".to_owned(),
        Kind::Map(_) => "the mapping".to_owned(),
        _ => format!("`{}`", check.text(node)),
    }
}

/// A JSON value in a message: numbers bare, anything else in backticks.
fn render_json(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "the list".to_owned(),
        Value::Object(_) => "the mapping".to_owned(),
        other => format!("`{other}`"),
    }
}

/// What a JSON value is, for "expected X, found Y".
fn describe_json(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number `{n}`"),
        Value::String(s) => format!("the string `{s}`"),
        Value::Array(_) => "a list".to_owned(),
        Value::Object(_) => "a mapping".to_owned(),
    }
}

/// `a string`, `an integer or nothing`: the types a `type` keyword asks for.
fn type_names(kind: &jsonschema::error::TypeKind) -> String {
    use jsonschema::error::TypeKind;
    let names: Vec<&str> = match kind {
        TypeKind::Single(t) => vec![type_name(&t.to_string())],
        TypeKind::Multiple(set) => set.iter().map(|t| type_name(&t.to_string())).collect(),
    };
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => "nothing".to_owned(),
    }
}

fn type_name(json_type: &str) -> &'static str {
    match json_type {
        "array" => "a list",
        "boolean" => "`true` or `false`",
        "integer" => "an integer",
        "null" => "nothing (`~`)",
        "number" => "a number",
        "object" => "a mapping",
        _ => "a string",
    }
}

fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}

/// The position of a node, for tests.
#[cfg(test)]
fn position_of(root: &Node, pointer: &str) -> Position {
    locate_node(root, pointer).pos
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::raw;
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
}
