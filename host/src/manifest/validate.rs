//! From the YAML tree to a [`Manifest`]: each key of SPEC §2, and the rules between keys.
//!
//! Keys are read one by one in file order into a draft; each bad value is
//! recorded where it stands and the walk goes on. Rules that involve several
//! keys (`runtime: native` needs `entry`, no dependency on oneself) run once
//! the whole mapping has been read. A [`Manifest`] is built only when nothing
//! was found wrong.

use plughost_bindings::RuntimeKind;
use semver::{Version, VersionReq};

use super::raw::{Kind, Node};
use super::values::{Check, Problem};
use super::{Dependency, KeyPositions, Limits, Manifest, Overflow, Position, Retry, Supervision};
use super::{runtime_from_entry, schema, suggest};
use crate::topic::Pattern;

/// The top-level keys, in the order the docs list them.
const KEYS: &[&str] = &[
    "name",
    "version",
    "description",
    "runtime",
    "entry",
    "enabled",
    "subscriptions",
    "publications",
    "dependencies",
    "config",
    "config_schema",
    "limits",
    "retry",
    "supervision",
    "cluster",
];

/// The keys under `limits:`.
const LIMITS_KEYS: &[&str] = &["memory_mb", "event_timeout_ms", "queue", "overflow"];

/// The keys under `retry:`.
const RETRY_KEYS: &[&str] = &["max_attempts", "backoff_ms"];

/// The keys under `supervision:`.
const SUPERVISION_KEYS: &[&str] = &[
    "max_consecutive_errors",
    "resume_after_ms",
    "max_restarts",
    "window_s",
];

/// The keys under `cluster:`.
const CLUSTER_KEYS: &[&str] = &["shared"];

/// The longest `supervision.window_s`: a day. A longer window would make
/// `max_restarts` a lifetime budget, which is what `0` restarts already says.
const MAX_WINDOW_S: u64 = 24 * 60 * 60;

/// The largest `supervision.resume_after_ms`: the cap on the doubled wait.
const MAX_RESUME_AFTER_MS: u64 = Supervision::MAX_RESUME_AFTER.as_secs() * 1000;

const NAME_RULE: &str =
    "use 1 to 64 lowercase letters, digits, `_` and `-`, starting with a letter or digit";

/// Whether `name` is a valid plugin name, `[a-z0-9][a-z0-9_-]{0,63}`.
pub(super) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// The manifest as read so far; `None` where a key was left out or was wrong.
#[derive(Default)]
struct Draft {
    name: Option<String>,
    version: Option<Version>,
    description: String,
    runtime: Option<(RuntimeKind, Position)>,
    entry: Option<(String, Position)>,
    enabled: Option<bool>,
    subscriptions: Vec<Pattern>,
    publications: Option<Vec<Pattern>>,
    dependencies: Vec<Dependency>,
    config: Option<serde_json::Value>,
    config_schema: Option<serde_json::Value>,
    limits: Limits,
    retry: Retry,
    supervision: Supervision,
    shared: bool,
    positions: KeyPositions,
}

/// Validates the whole document.
pub(super) fn manifest(root: &Node, source: &str) -> Result<Manifest, Vec<Problem>> {
    let mut check = Check::new(source);
    let mut draft = Draft::default();
    match &root.kind {
        Kind::Map(entries) => {
            for (key, value) in check.unique(entries) {
                top_level(&mut check, &mut draft, key, value);
            }
        }
        Kind::Null => {
            check.report(None, "empty manifest: needs at least `name` and `version`");
            return Err(check.into_problems());
        }
        _ => {
            let message = format!(
                "a manifest is a mapping of keys like `name: greeter`, found {}",
                check.describe(root)
            );
            check.report(Some(root.pos), message);
            return Err(check.into_problems());
        }
    }
    for required in ["name", "version"] {
        if draft.positions.get(required).is_none() {
            check.report(None, format!("missing required key `{required}`"));
        }
    }
    across_keys(&mut check, &draft);
    config_against_schema(&mut check, &mut draft, root);

    match draft {
        Draft {
            name: Some(name),
            version: Some(version),
            ..
        } if check.is_clean() => Ok(Manifest {
            name,
            version,
            description: draft.description,
            runtime: draft.runtime.map(|(r, _)| r),
            entry: draft.entry.map(|(e, _)| e),
            enabled: draft.enabled.unwrap_or(true),
            subscriptions: draft.subscriptions,
            publications: draft.publications,
            dependencies: draft.dependencies,
            config: draft
                .config
                .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new())),
            config_schema: draft.config_schema,
            limits: draft.limits,
            retry: draft.retry,
            supervision: draft.supervision,
            shared: draft.shared,
            positions: draft.positions,
        }),
        _ => Err(check.into_problems()),
    }
}

/// Reads one top-level key. A key left empty (`key:` or `key: ~`) counts as
/// left out, except the required ones.
fn top_level(check: &mut Check, draft: &mut Draft, key: &Node, value: &Node) {
    let Some(name) = key.as_str().filter(|k| KEYS.contains(k)) else {
        unknown_top_level_key(check, key);
        return;
    };
    draft.positions.insert(name, key.pos);
    if value.is_null() && !matches!(name, "name" | "version") {
        return;
    }
    match name {
        "name" => draft.name = plugin_name(check, value),
        "version" => draft.version = version(check, value),
        "description" => {
            if let Some(text) = check.string("description", value) {
                draft.description = text.to_owned();
            }
        }
        "runtime" => draft.runtime = runtime(check, value).map(|r| (r, value.pos)),
        "entry" => draft.entry = entry(check, value).map(|e| (e, value.pos)),
        "enabled" => draft.enabled = check.boolean("enabled", value),
        "subscriptions" => {
            draft.subscriptions = patterns(check, "subscriptions", value).unwrap_or_default();
        }
        "publications" => draft.publications = patterns(check, "publications", value),
        "dependencies" => draft.dependencies = dependencies(check, value),
        "config" => draft.config = config(check, value),
        "config_schema" => draft.config_schema = config_schema(check, value),
        "limits" => limits(check, value, &mut draft.limits, &mut draft.positions),
        "retry" => retry(check, value, &mut draft.retry, &mut draft.positions),
        "supervision" => supervision(check, value, &mut draft.supervision, &mut draft.positions),
        "cluster" => cluster(check, value, &mut draft.shared, &mut draft.positions),
        _ => unreachable!("`{name}` is in KEYS but not handled"),
    }
}

/// An unknown top-level key. A key of `limits`, `retry` or `supervision` written at the top
/// (`queue: 5`) is pointed to its place (`limits.queue`).
fn unknown_top_level_key(check: &mut Check, key: &Node) {
    let nested = LIMITS_KEYS
        .iter()
        .map(|k| format!("limits.{k}"))
        .chain(RETRY_KEYS.iter().map(|k| format!("retry.{k}")))
        .chain(SUPERVISION_KEYS.iter().map(|k| format!("supervision.{k}")))
        .chain(CLUSTER_KEYS.iter().map(|k| format!("cluster.{k}")));
    let all: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).chain(nested).collect();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    check.unknown_key(None, key, &all);
}

fn plugin_name(check: &mut Check, value: &Node) -> Option<String> {
    let name = check.string("name", value)?;
    if is_valid_name(name) {
        Some(name.to_owned())
    } else {
        let message = format!(
            "name `{}` is not a valid plugin name: {NAME_RULE}",
            check.text(value)
        );
        check.report(Some(value.pos), message);
        None
    }
}

fn version(check: &mut Check, value: &Node) -> Option<Version> {
    // `version: 1.0` is a YAML number; quote it as written, not as the float it became.
    if !matches!(
        value.kind,
        Kind::Str(_) | Kind::UInt(_) | Kind::Int(_) | Kind::Float(_)
    ) {
        check.wrong_type("version", value, "a semver version like `1.0.0`");
        return None;
    }
    let text = check.text(value);
    let written = value.as_str().unwrap_or(&text);
    match Version::parse(written) {
        Ok(version) => Some(version),
        Err(e) => {
            let shape = "(expected MAJOR.MINOR.PATCH, e.g. 1.0.0)";
            let message = if e.to_string().contains("unexpected end of input") {
                format!("version `{text}` is not semver {shape}")
            } else {
                format!("version `{text}` is not semver: {e} {shape}")
            };
            check.report(Some(value.pos), message);
            None
        }
    }
}

fn runtime(check: &mut Check, value: &Node) -> Option<RuntimeKind> {
    let text = check.string("runtime", value)?;
    if let Some(kind) = RuntimeKind::ALL.into_iter().find(|k| k.as_str() == text) {
        return Some(kind);
    }
    let hint = suggest::hint(text, &RuntimeKind::ALL.map(RuntimeKind::as_str));
    let message = format!(
        "runtime `{}` is not one of `lua`, `rhai`, `native`{hint}",
        check.text(value)
    );
    check.report(Some(value.pos), message);
    None
}

/// A path relative to the plugin folder that stays inside it.
fn entry(check: &mut Check, value: &Node) -> Option<String> {
    let path = check.string("entry", value)?;
    let problem = if path.trim().is_empty() {
        Some("entry: cannot be empty".to_owned())
    } else if is_absolute(path) {
        Some(format!(
            "entry `{}` must be a path relative to the plugin folder",
            check.text(value)
        ))
    } else if path.split(['/', '\\']).any(|part| part == "..") {
        Some(format!(
            "entry `{}` leaves the plugin folder (`..` is not allowed)",
            check.text(value)
        ))
    } else {
        None
    };
    match problem {
        Some(message) => {
            check.report(Some(value.pos), message);
            None
        }
        None => Some(path.to_owned()),
    }
}

/// Absolute on any platform: `/x`, `\x`, `C:\x`, `C:/x`.
fn is_absolute(path: &str) -> bool {
    let bytes = path.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    path.starts_with(['/', '\\']) || drive || std::path::Path::new(path).is_absolute()
}

/// A list of topic patterns; `None` when any item is wrong.
fn patterns(check: &mut Check, label: &str, value: &Node) -> Option<Vec<Pattern>> {
    let items = check.list(label, value, "topic patterns")?;
    let mut patterns = Vec::with_capacity(items.len());
    let mut ok = true;
    for item in items {
        let Some(text) = item.as_str() else {
            check.wrong_type(label, item, "a topic pattern (a string)");
            ok = false;
            continue;
        };
        match Pattern::parse(text) {
            Ok(pattern) => patterns.push(pattern),
            Err(e) => {
                check.report(Some(item.pos), format!("{label}: {e}"));
                ok = false;
            }
        }
    }
    ok.then_some(patterns)
}

/// `- name` or `- name: "semver-req"` items; the good ones are kept.
fn dependencies(check: &mut Check, value: &Node) -> Vec<Dependency> {
    let Some(items) = check.list("dependencies", value, "plugin names") else {
        return Vec::new();
    };
    let mut found: Vec<Dependency> = Vec::with_capacity(items.len());
    for item in items {
        let Some(dependency) = dependency(check, item) else {
            continue;
        };
        if let Some(first) = found.iter().find(|d| d.name == dependency.name) {
            let message = format!(
                "dependency `{}` is listed twice (first at line {}, column {})",
                dependency.name, first.position.line, first.position.column
            );
            check.report(Some(dependency.position), message);
        } else {
            found.push(dependency);
        }
    }
    found
}

const DEPENDENCY_SHAPE: &str = "a plugin name, or `name: \"semver-req\"`";

fn dependency(check: &mut Check, item: &Node) -> Option<Dependency> {
    let (key, req) = match &item.kind {
        Kind::Str(_) => (item, None),
        Kind::Map(entries) => {
            let entries = check.unique(entries);
            let (key, value) = match entries.as_slice() {
                [] => {
                    check.wrong_type("dependencies", item, DEPENDENCY_SHAPE);
                    return None;
                }
                [(key, value)] => (key, value),
                [_, (extra, _), ..] => {
                    let hint = if entries.iter().any(|(k, _)| k.as_str() == Some("name")) {
                        "write `- tokenizer: \">=1.2\"`, not `name:` and `version:` keys"
                    } else {
                        "each dependency is its own `- name: \"semver-req\"` item"
                    };
                    let message = format!(
                        "unknown key `{}` in a dependency: {hint}",
                        check.text(extra)
                    );
                    check.report(Some(extra.pos), message);
                    return None;
                }
            };
            (key, Some(value))
        }
        _ => {
            check.wrong_type("dependencies", item, DEPENDENCY_SHAPE);
            return None;
        }
    };
    let Some(name) = key.as_str() else {
        check.wrong_type("dependencies", key, "a plugin name");
        return None;
    };
    if !is_valid_name(name) {
        let message = format!(
            "dependency `{}` is not a valid plugin name: {NAME_RULE}",
            check.text(key)
        );
        check.report(Some(key.pos), message);
        return None;
    }
    let req = match req {
        Some(value) if !value.is_null() => Some(requirement(check, name, value)?),
        _ => None,
    };
    Some(Dependency {
        name: name.to_owned(),
        req,
        position: key.pos,
    })
}

fn requirement(check: &mut Check, name: &str, value: &Node) -> Option<VersionReq> {
    let Some(text) = value.as_str() else {
        let message = format!(
            "dependency `{name}`: expected a semver requirement in quotes (like \">=1.2, <2\"), found {}",
            check.describe(value)
        );
        check.report(Some(value.pos), message);
        return None;
    };
    match VersionReq::parse(text) {
        Ok(req) => Some(req),
        Err(e) => {
            let mut message = format!(
                "dependency `{name}`: `{}` is not a semver requirement: {e}",
                check.text(value)
            );
            if name == "name" && is_valid_name(text) {
                message.push_str(&format!(" (to depend on `{text}`, write `- {text}`)"));
            }
            check.report(Some(value.pos), message);
            None
        }
    }
}

fn config(check: &mut Check, value: &Node) -> Option<serde_json::Value> {
    if !matches!(value.kind, Kind::Map(_)) {
        check.wrong_type("config", value, "a mapping of keys to values");
        return None;
    }
    check.json("config", value)
}

fn config_schema(check: &mut Check, value: &Node) -> Option<serde_json::Value> {
    if !matches!(value.kind, Kind::Map(_)) {
        check.wrong_type(
            "config_schema",
            value,
            "a mapping (a JSON Schema written in YAML)",
        );
        return None;
    }
    check.json("config_schema", value)
}

/// Checks `config` against `config_schema` when both were read without a
/// problem, and fills in the schema's defaults.
fn config_against_schema(check: &mut Check, draft: &mut Draft, root: &Node) {
    let Kind::Map(entries) = &root.kind else {
        return;
    };
    // The first of duplicate keys is the one that counts, as in `Check::unique`.
    let entry = |name: &str| {
        entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(key, value)| schema::Entry { key, value })
    };
    let (Some(schema), Some(schema_at)) = (&draft.config_schema, entry("config_schema")) else {
        return;
    };
    let config_at = entry("config");
    let config_written = config_at.is_some_and(|e| !e.value.is_null());
    if config_written && draft.config.is_none() {
        return; // `config` itself is wrong, and reported
    }
    let config = draft
        .config
        .get_or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
    schema::apply(check, schema_at, schema, config_at, config);
}

fn limits(check: &mut Check, value: &Node, limits: &mut Limits, positions: &mut KeyPositions) {
    let Some(entries) = check.mapping("limits", value) else {
        return;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().filter(|k| LIMITS_KEYS.contains(k)) else {
            check.unknown_key(Some("limits"), key, LIMITS_KEYS);
            continue;
        };
        positions.insert(format!("limits.{name}"), key.pos);
        let label = format!("limits.{name}");
        match name {
            "memory_mb" => set(
                &mut limits.memory_mb,
                check.integer(&label, value, 1, Limits::MAX_MEMORY_MB),
            ),
            "event_timeout_ms" => set(
                &mut limits.event_timeout_ms,
                check.integer(&label, value, 1, Limits::MAX_EVENT_TIMEOUT_MS),
            ),
            "queue" => set(
                &mut limits.queue,
                check
                    .integer(&label, value, 1, Limits::MAX_QUEUE as u64)
                    .and_then(|q| usize::try_from(q).ok()),
            ),
            "overflow" => set(&mut limits.overflow, overflow(check, &label, value)),
            _ => unreachable!("`{name}` is in LIMITS_KEYS but not handled"),
        }
    }
}

fn overflow(check: &mut Check, label: &str, value: &Node) -> Option<Overflow> {
    let text = check.string(label, value)?;
    if let Some(overflow) = Overflow::from_name(text) {
        return Some(overflow);
    }
    let hint = suggest::hint(text, &Overflow::ALL.map(Overflow::as_str));
    let message = format!(
        "{label}: `{}` is not one of `block`, `drop_oldest`, `drop_newest`{hint}",
        check.text(value)
    );
    check.report(Some(value.pos), message);
    None
}

fn retry(check: &mut Check, value: &Node, retry: &mut Retry, positions: &mut KeyPositions) {
    let Some(entries) = check.mapping("retry", value) else {
        return;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().filter(|k| RETRY_KEYS.contains(k)) else {
            check.unknown_key(Some("retry"), key, RETRY_KEYS);
            continue;
        };
        positions.insert(format!("retry.{name}"), key.pos);
        let label = format!("retry.{name}");
        match name {
            "max_attempts" => set(
                &mut retry.max_attempts,
                check
                    .integer(&label, value, 1, u32::MAX.into())
                    .and_then(|n| u32::try_from(n).ok()),
            ),
            "backoff_ms" => set(
                &mut retry.backoff_ms,
                check.integer(&label, value, 0, u64::MAX),
            ),
            _ => unreachable!("`{name}` is in RETRY_KEYS but not handled"),
        }
    }
}

fn supervision(
    check: &mut Check,
    value: &Node,
    supervision: &mut Supervision,
    positions: &mut KeyPositions,
) {
    let Some(entries) = check.mapping("supervision", value) else {
        return;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().filter(|k| SUPERVISION_KEYS.contains(k)) else {
            check.unknown_key(Some("supervision"), key, SUPERVISION_KEYS);
            continue;
        };
        positions.insert(format!("supervision.{name}"), key.pos);
        let label = format!("supervision.{name}");
        let count = |check: &mut Check| {
            check
                .integer(&label, value, 0, u32::MAX.into())
                .and_then(|n| u32::try_from(n).ok())
        };
        match name {
            // 0 never suspends (SPEC §12).
            "max_consecutive_errors" => set(&mut supervision.max_consecutive_errors, count(check)),
            // 0 would try a failing plugin in a busy loop: at least 1 ms; more
            // than the cap on the doubled wait could never take effect.
            "resume_after_ms" => set(
                &mut supervision.resume_after_ms,
                check.integer(&label, value, 1, MAX_RESUME_AFTER_MS),
            ),
            // 0 stops the plugin at its first crash.
            "max_restarts" => set(&mut supervision.max_restarts, count(check)),
            "window_s" => set(
                &mut supervision.window_s,
                check.integer(&label, value, 1, MAX_WINDOW_S),
            ),
            _ => unreachable!("`{name}` is in SUPERVISION_KEYS but not handled"),
        }
    }
}

/// `cluster:` (SPEC §14): `shared` only.
fn cluster(check: &mut Check, value: &Node, shared: &mut bool, positions: &mut KeyPositions) {
    let Some(entries) = check.mapping("cluster", value) else {
        return;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().filter(|k| CLUSTER_KEYS.contains(k)) else {
            check.unknown_key(Some("cluster"), key, CLUSTER_KEYS);
            continue;
        };
        positions.insert(format!("cluster.{name}"), key.pos);
        match name {
            "shared" => set(shared, check.boolean("cluster.shared", value)),
            _ => unreachable!("`{name}` is in CLUSTER_KEYS but not handled"),
        }
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// The rules that involve more than one key.
fn across_keys(check: &mut Check, draft: &Draft) {
    let runtime = draft.runtime;
    let entry = draft.entry.as_ref();
    match (runtime, entry) {
        (Some((RuntimeKind::Native, at)), None) => check.report(
            Some(at),
            "`runtime: native` needs `entry` (the shared library, or the cargo crate's name)",
        ),
        (None, Some((entry, at))) if runtime_from_entry(entry).is_none() => check.report(
            Some(*at),
            format!(
                "entry `{entry}`: cannot tell the runtime from its extension; \
                 use a `.lua` or `.rhai` file, or set `runtime`"
            ),
        ),
        (Some((kind, _)), Some((entry, at))) => {
            if let Some(script) = runtime_from_entry(entry).filter(|s| *s != kind) {
                check.report(
                    Some(*at),
                    format!("entry `{entry}` is a {script} script but `runtime` is `{kind}`"),
                );
            }
        }
        _ => {}
    }
    if let Some(name) = &draft.name {
        for dependency in draft.dependencies.iter().filter(|d| &d.name == name) {
            check.report(
                Some(dependency.position),
                format!("plugin `{name}` cannot depend on itself"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_spec_pattern() {
        for good in ["a", "0", "greeter", "text-stats_2", &"a".repeat(64)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Greeter",
            "a b",
            "a.b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn absolute_paths_are_recognised_on_any_platform() {
        for abs in ["/x.lua", "\\x.lua", "C:\\x.lua", "c:/x.lua"] {
            assert!(is_absolute(abs), "{abs}");
        }
        for rel in ["x.lua", "src/x.lua", "./x.lua"] {
            assert!(!is_absolute(rel), "{rel}");
        }
    }
}
