//! `plughost schema plugin|host`: the JSON Schemas of `plugin.yaml` and
//! `plughost.yaml`, for editors' YAML language servers.
//!
//! The schemas are files of the repository (`schemas/plugin.schema.json`,
//! `schemas/plughost.schema.json`), so an editor can point at them by path;
//! the binary embeds them as they are and prints them unchanged. They are
//! draft-07, the draft `yaml-language-server` (the VS Code YAML extension)
//! handles best: hover text from each `description`, completion from
//! `enum`s and `default`s, and a squiggle where the parser would refuse a key
//! or a value. They describe what the parsers (`manifest`, `config`) accept;
//! the suite (`tests/suite/schema_cmd.rs`) holds the two to agreement. What a
//! schema cannot say (a dependency on itself, `config` against
//! `config_schema`) is left to `plughost check`.

/// Which file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaFile {
    /// A plugin's manifest, `plugin.yaml` (SPEC §2).
    Plugin,
    /// The host config, `plughost.yaml` (SPEC §11).
    Host,
}

/// `schemas/plugin.schema.json`: the schema of `plugin.yaml`.
pub const PLUGIN: &str = include_str!("../../../schemas/plugin.schema.json");

/// `schemas/plughost.schema.json`: the schema of `plughost.yaml`.
pub const HOST: &str = include_str!("../../../schemas/plughost.schema.json");

impl SchemaFile {
    /// Both schemas, plugin first.
    pub const ALL: [SchemaFile; 2] = [SchemaFile::Plugin, SchemaFile::Host];

    /// The schema's text, exactly as committed in `schemas/`.
    pub fn text(self) -> &'static str {
        match self {
            SchemaFile::Plugin => PLUGIN,
            SchemaFile::Host => HOST,
        }
    }

    /// The schema's file name in the repository's `schemas/` folder.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaFile::Plugin => "plugin.schema.json",
            SchemaFile::Host => "plughost.schema.json",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn parsed(file: SchemaFile) -> Value {
        serde_json::from_str(file.text())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", file.file_name()))
    }

    /// Every property (and every definition) declared under `at`, with its
    /// path; the conditions between keys (`allOf`'s `if`/`then`, `not`)
    /// constrain properties declared elsewhere and are not walked.
    fn properties<'a>(at: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
        match at {
            Value::Object(map) => {
                for (key, value) in map {
                    if matches!(key.as_str(), "allOf" | "if" | "then" | "else" | "not") {
                        continue;
                    }
                    let here = format!("{path}/{key}");
                    if let ("properties" | "definitions", Value::Object(props)) =
                        (key.as_str(), value)
                    {
                        for (name, prop) in props {
                            out.push((format!("{here}/{name}"), prop));
                        }
                    }
                    properties(value, &here, out);
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    properties(item, &format!("{path}/{i}"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn both_are_draft_07_schemas() {
        for file in SchemaFile::ALL {
            let schema = parsed(file);
            assert_eq!(
                schema["$schema"],
                "http://json-schema.org/draft-07/schema#",
                "{}",
                file.file_name()
            );
            if let Err(e) = jsonschema::draft7::meta::validate(&schema) {
                panic!("{} breaks the draft-07 meta-schema: {e}", file.file_name());
            }
            assert!(jsonschema::draft7::new(&schema).is_ok());
        }
    }

    /// The hover text: an editor shows a property's `description`.
    #[test]
    fn every_property_is_described() {
        for file in SchemaFile::ALL {
            let schema = parsed(file);
            let mut found = Vec::new();
            properties(&schema, "", &mut found);
            assert!(found.len() > 20, "{}: {}", file.file_name(), found.len());
            for (path, prop) in found {
                let text = prop["description"].as_str().unwrap_or_default();
                assert!(
                    text.len() > 10,
                    "{}: {path} has no description",
                    file.file_name()
                );
            }
        }
    }

    /// Every mapping the parsers read key by key refuses unknown keys.
    #[test]
    fn mappings_refuse_unknown_keys() {
        for (file, sections) in [
            (
                SchemaFile::Plugin,
                &["", "limits", "retry", "supervision", "cluster", "rollout"][..],
            ),
            (
                SchemaFile::Host,
                &[
                    "",
                    "admin",
                    "telemetry",
                    "cluster",
                    "cluster/tls",
                    "cluster/jetstream",
                ][..],
            ),
        ] {
            let schema = parsed(file);
            for section in sections {
                let mut at = &schema;
                for part in section.split('/').filter(|p| !p.is_empty()) {
                    at = &at["properties"][part];
                }
                assert_eq!(
                    at["additionalProperties"],
                    Value::Bool(false),
                    "{}: `{section}`",
                    file.file_name()
                );
            }
        }
    }
}
