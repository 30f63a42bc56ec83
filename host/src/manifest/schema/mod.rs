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

mod defaults;
mod guard;
mod messages;
mod pointer;
#[cfg(test)]
mod tests;

use std::collections::HashSet;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{PatternOptions, ValidationError, Validator};
use serde_json::Value;

use self::defaults::*;
use self::guard::*;
use self::messages::*;
use self::pointer::*;
use super::raw::Node;
use super::suggest;
use super::values::Check;

/// The most values (mappings, lists and scalars) a schema may hold.
pub(crate) const MAX_VALUES: usize = 10_000;

/// The deepest a schema may nest (each `properties:` level costs two).
pub(crate) const MAX_DEPTH: usize = 32;

/// The largest compiled size of one `pattern`, in bytes.
pub(super) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The only `$schema` accepted: plughost reads JSON Schema 2020-12.
pub(super) const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

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
pub(super) fn identity(error: &ValidationError) -> (String, String) {
    (
        error.instance_path().as_str().to_owned(),
        error.schema_path().as_str().to_owned(),
    )
}

/// The checks of the schema itself, then the compiled validator.
pub(super) fn compile(check: &mut Check, at: Entry, schema: &Value) -> Option<Validator> {
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

/// Reports an error of the schema itself (from the meta-schema or the compiler).
pub(super) fn report_schema_error(check: &mut Check, at: Entry, error: &ValidationError) {
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
pub(super) fn report_violation(
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
