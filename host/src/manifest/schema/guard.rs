//! Guards against hostile schemas: their size and nesting bounded, every
//! `$ref` local to the schema and never round in a circle.

use serde_json::Value;

use super::*;

/// Why a schema is too large or too deep to be checked, if it is.
pub(super) fn too_big(schema: &Value) -> Option<String> {
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
pub(super) const NAME_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];

/// A `$ref` that cannot be followed: where it is written (a JSON pointer) and why.
#[derive(Debug, PartialEq)]
pub(super) struct RefProblem {
    pub(super) pointer: String,
    pub(super) message: String,
}

/// Every `$ref` that leaves the schema, points nowhere, or goes round in a
/// circle without ever reaching a schema that checks something.
pub(super) fn references(schema: &Value) -> Vec<RefProblem> {
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
pub(super) fn reference_problem(schema: &Value, from: &str, target: &Value) -> Option<String> {
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
