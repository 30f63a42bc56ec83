//! A violation in words a plugin author reads: the key path, the value as
//! written, and what the schema wanted.

use jsonschema::ValidationError;
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

use super::super::raw::{Kind, Node};
use super::super::suggest;
use super::super::values::Check;

/// A violation by a value, worded for a plugin author; `shown` is the value as written.
pub(super) fn describe_value_violation(error: &ValidationError, shown: &str) -> String {
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
pub(super) fn allowed_keys(schema: &Value, keyword: &str) -> Vec<String> {
    let parent = keyword.rsplit_once('/').map_or("", |(parent, _)| parent);
    schema
        .pointer(parent)
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default()
}

/// A config value as written: numbers bare (`150`), anything else in backticks.
pub(super) fn shown_node(check: &Check, node: &Node) -> String {
    match node.kind {
        Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => check.text(node),
        Kind::Seq(_) => "the list".to_owned(),
        Kind::Map(_) => "the mapping".to_owned(),
        _ => format!("`{}`", check.text(node)),
    }
}

/// A JSON value in a message: numbers bare, anything else in backticks.
pub(super) fn render_json(value: &Value) -> String {
    match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "the list".to_owned(),
        Value::Object(_) => "the mapping".to_owned(),
        other => format!("`{other}`"),
    }
}

/// What a JSON value is, for "expected X, found Y".
pub(super) fn describe_json(value: &Value) -> String {
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
pub(super) fn type_names(kind: &jsonschema::error::TypeKind) -> String {
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

pub(super) fn type_name(json_type: &str) -> &'static str {
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

pub(super) fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        word.to_owned()
    } else {
        format!("{word}s")
    }
}
