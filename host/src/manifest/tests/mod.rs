//! Whole-manifest tests: text in, manifest or the exact printed errors out.

use std::path::Path;

use plughost_bindings::RuntimeKind;
use serde_json::json;

use super::*;

mod schema;

const FILE: &str = "plugins/demo/plugin.yaml";

fn ok(text: &str) -> Manifest {
    match parse(Path::new(FILE), text) {
        Ok(m) => m,
        Err(errors) => panic!("unexpected errors: {errors:#?}"),
    }
}

/// The errors as they print, without the file name: `line:col: message`.
fn errors(text: &str) -> Vec<String> {
    let errors = parse(Path::new(FILE), text).expect_err("the manifest should be refused");
    errors
        .iter()
        .map(|e| {
            let shown = e.to_string();
            shown
                .strip_prefix(&format!("{FILE}:"))
                .unwrap_or_else(|| panic!("`{shown}` does not start with the file"))
                .to_owned()
        })
        .collect()
}

/// The single error, as it prints without the file name.
fn error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(all.len(), 1, "expected one error, got {all:#?}");
    all.into_iter().next().unwrap()
}

const HEAD: &str = "name: demo\nversion: 1.0.0\n";

fn with_head(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_full_manifest_reads_every_key() {
    let m = ok(r#"
name: text-stats
version: 1.2.3-beta.1
description: Counts words
runtime: rhai
entry: src/stats.rhai
enabled: false
subscriptions:
  - text.*
  - plughost.>
publications: [stats.words]
dependencies:
  - tokenizer
  - stemmer: ">=1.2, <2"
config:
  threshold: 3
  ratio: 0.5
  big: -7
  words: [a, b]
  nested: {deep: true, none: ~}
limits:
  memory_mb: 16
  event_timeout_ms: 250
  queue: 8
  overflow: drop_oldest
retry:
  max_attempts: 5
  backoff_ms: 0
"#);
    assert_eq!(m.name, "text-stats");
    assert_eq!(m.version, semver::Version::parse("1.2.3-beta.1").unwrap());
    assert_eq!(m.description, "Counts words");
    assert_eq!(m.runtime, Some(RuntimeKind::Rhai));
    assert_eq!(m.entry.as_deref(), Some("src/stats.rhai"));
    assert!(!m.enabled);
    let subs: Vec<&str> = m.subscriptions.iter().map(|p| p.as_str()).collect();
    assert_eq!(subs, ["text.*", "plughost.>"]);
    let pubs: Vec<&str> = m
        .publications
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.as_str())
        .collect();
    assert_eq!(pubs, ["stats.words"]);
    assert_eq!(m.dependencies.len(), 2);
    assert_eq!(m.dependencies[0].name, "tokenizer");
    assert_eq!(m.dependencies[0].req, None);
    assert_eq!(m.dependencies[0].position, Position::new(13, 5));
    assert_eq!(m.dependencies[1].name, "stemmer");
    assert_eq!(
        m.dependencies[1].req,
        Some(semver::VersionReq::parse(">=1.2, <2").unwrap())
    );
    assert_eq!(m.dependencies[1].position, Position::new(14, 5));
    assert_eq!(
        m.config,
        json!({"threshold": 3, "ratio": 0.5, "big": -7, "words": ["a", "b"],
               "nested": {"deep": true, "none": null}})
    );
    assert!(m.config["threshold"].is_u64() && m.config["ratio"].is_f64());
    let keys: Vec<&str> = m
        .config
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    // JSON objects keep their keys sorted everywhere in plughost (deterministic output).
    assert_eq!(
        keys,
        ["big", "nested", "ratio", "threshold", "words"],
        "sorted order"
    );
    assert_eq!(
        m.limits,
        Limits {
            memory_mb: 16,
            event_timeout_ms: 250,
            queue: 8,
            overflow: Overflow::DropOldest
        }
    );
    assert_eq!(
        m.retry,
        Retry {
            max_attempts: 5,
            backoff_ms: 0
        }
    );
    assert_eq!(m.positions.get("name"), Some(Position::new(2, 1)));
    assert_eq!(m.positions.get("entry"), Some(Position::new(6, 1)));
    assert_eq!(m.positions.get("config"), Some(Position::new(15, 1)));
    assert_eq!(m.positions.get("limits.queue"), Some(Position::new(24, 3)));
    assert_eq!(
        m.positions.get("retry.backoff_ms"),
        Some(Position::new(28, 3))
    );
    assert_eq!(m.positions.iter().count(), 12 + 4 + 2);
    assert_eq!(m.effective_runtime(), Some(RuntimeKind::Rhai));
}

#[test]
fn a_minimal_manifest_gets_the_defaults() {
    let m = ok(HEAD);
    assert_eq!(m.description, "");
    assert_eq!(m.runtime, None);
    assert_eq!(m.entry, None);
    assert!(m.enabled);
    assert!(m.subscriptions.is_empty());
    assert_eq!(m.publications, None);
    assert!(m.dependencies.is_empty());
    assert_eq!(m.config, json!({}));
    assert_eq!(m.limits, Limits::default());
    assert_eq!(m.retry, Retry::default());
    assert_eq!(m.effective_runtime(), None);
    assert_eq!(m.positions.get("version"), Some(Position::new(2, 1)));
    assert_eq!(m.positions.get("entry"), None);
}

#[test]
fn empty_values_count_as_left_out() {
    let m = ok(&with_head(
        "description:\nsubscriptions:\npublications: ~\nconfig:\nlimits:\n",
    ));
    assert_eq!(m.publications, None);
    assert_eq!(m.config, json!({}));
    assert_eq!(m.limits, Limits::default());
    assert_eq!(m.positions.get("publications"), Some(Position::new(5, 1)));
    // An empty list is not left out: it allows publishing nowhere.
    assert_eq!(
        ok(&with_head("publications: []\n")).publications,
        Some(vec![])
    );
}

#[test]
fn partial_limits_keep_the_other_defaults() {
    let m = ok(&with_head("limits:\n  queue: 2\nretry:\n  backoff_ms: 5\n"));
    assert_eq!(m.limits.queue, 2);
    assert_eq!(m.limits.memory_mb, 64);
    assert_eq!(m.retry.backoff_ms, 5);
    assert_eq!(m.retry.max_attempts, 3);
}

#[test]
fn the_runtime_comes_from_the_entry_extension_when_left_out() {
    let m = ok(&with_head("entry: scripts/Main.LUA\n"));
    assert_eq!(m.runtime, None);
    assert_eq!(m.effective_runtime(), Some(RuntimeKind::Lua));
    let native = ok(&with_head("runtime: native\nentry: libdemo.so\n"));
    assert_eq!(native.effective_runtime(), Some(RuntimeKind::Native));
}

#[test]
fn an_unknown_top_level_key_suggests_the_closest() {
    assert_eq!(
        error(&with_head("subscritions: [a]\n")),
        "3:1: unknown key `subscritions` (did you mean `subscriptions`?)"
    );
    assert_eq!(
        error(&with_head("colour: red\n")),
        "3:1: unknown key `colour`"
    );
    assert_eq!(
        error(&with_head("timeout: 5\n")),
        "3:1: unknown key `timeout` (did you mean `limits.event_timeout_ms`?)"
    );
    assert_eq!(error(&with_head("? [a]\n: 1\n")), "3:3: unknown key `[…]`");
    assert_eq!(
        error(&with_head("queue: 5\n")),
        "3:1: unknown key `queue` (did you mean `limits.queue`?)"
    );
}

#[test]
fn an_unknown_key_under_limits_or_retry_suggests_the_closest() {
    assert_eq!(
        error(&with_head("limits:\n  memory_mb: 8\n  qeue: 5\n")),
        "5:3: unknown key `qeue` in `limits` (did you mean `queue`?)"
    );
    assert_eq!(
        error(&with_head("retry:\n  attempts: 5\n")),
        "4:3: unknown key `attempts` in `retry` (did you mean `max_attempts`?)"
    );
}

#[test]
fn a_wrong_type_names_the_key_at_the_value() {
    assert_eq!(
        error(&with_head("limits:\n  queue: \"lots\"\n")),
        "4:10: limits.queue: expected an integer, found the string `lots`"
    );
    assert_eq!(
        error(&with_head("limits: {queue: \"12\"}\n")),
        "3:17: limits.queue: expected an integer, found the string `12` (remove the quotes)"
    );
    assert_eq!(
        error(&with_head("enabled: maybe\n")),
        "3:10: enabled: expected `true` or `false`, found the string `maybe`"
    );
    assert_eq!(
        error(&with_head("enabled: yes\n")),
        "3:10: enabled: expected `true` or `false`, found the string `yes`"
    );
    assert_eq!(
        error(&with_head("subscriptions: text.raw\n")),
        "3:16: subscriptions: expected a list of topic patterns, \
         found the string `text.raw` (write `[text.raw]` for a list of one)"
    );
    assert_eq!(
        error(&with_head("description: [a]\n")),
        "3:14: description: expected a string, found a list"
    );
    assert_eq!(
        error(&with_head("limits: 5\n")),
        "3:9: limits: expected a mapping of keys to values, found the number `5`"
    );
    assert_eq!(
        error(&with_head("subscriptions:\n  - a\n  - 5\n")),
        "5:5: subscriptions: expected a topic pattern (a string), found the number `5`"
    );
}

#[test]
fn numbers_out_of_range_are_refused() {
    assert_eq!(
        error(&with_head("limits:\n  memory_mb: 0\n")),
        "4:14: limits.memory_mb: must be at least 1, found `0`"
    );
    assert_eq!(
        error(&with_head("limits:\n  event_timeout_ms: -5\n")),
        "4:21: limits.event_timeout_ms: must be at least 1, found `-5`"
    );
    assert_eq!(
        error(&with_head("retry:\n  max_attempts: 4294967296\n")),
        "4:17: retry.max_attempts: must be at most 4294967295, found `4294967296`"
    );
    assert_eq!(
        error(&with_head("retry:\n  backoff_ms: 1.5\n")),
        "4:15: retry.backoff_ms: expected an integer, found the number `1.5`"
    );
    assert_eq!(
        ok(&with_head("retry:\n  backoff_ms: 0\n")).retry.backoff_ms,
        0
    );
}

#[test]
fn overflow_must_be_one_of_three() {
    assert_eq!(
        error(&with_head("limits:\n  overflow: drop_olderst\n")),
        "4:13: limits.overflow: `drop_olderst` is not one of `block`, `drop_oldest`, \
         `drop_newest` (did you mean `drop_oldest`?)"
    );
    assert_eq!(
        ok(&with_head("limits:\n  overflow: drop_newest\n"))
            .limits
            .overflow,
        Overflow::DropNewest
    );
}

#[test]
fn a_bad_name_is_refused_at_its_value() {
    assert_eq!(
        error("name: My Plugin\nversion: 1.0.0\n"),
        "1:7: name `My Plugin` is not a valid plugin name: use 1 to 64 lowercase letters, \
         digits, `_` and `-`, starting with a letter or digit"
    );
    assert_eq!(
        error("name:\nversion: 1.0.0\n"),
        "1:5: name: expected a string, found nothing"
    );
}

#[test]
fn a_bad_version_says_what_semver_expects() {
    assert_eq!(
        error("name: demo\nversion: 1.0\n"),
        "2:10: version `1.0` is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)"
    );
    assert_eq!(
        error("name: demo\nversion: \"2\"\n"),
        "2:10: version `2` is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)"
    );
    assert_eq!(
        error("name: demo\nversion: v1.0.0\n"),
        "2:10: version `v1.0.0` is not semver: unexpected character 'v' while parsing \
         major version number (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)"
    );
}

#[test]
fn a_bad_runtime_suggests_the_closest() {
    assert_eq!(
        error(&with_head("runtime: Lua\n")),
        "3:10: runtime `Lua` is not one of `lua`, `rhai`, `native` (did you mean `lua`?)"
    );
    assert_eq!(
        error(&with_head("runtime: python\n")),
        "3:10: runtime `python` is not one of `lua`, `rhai`, `native`"
    );
}

#[test]
fn a_bad_pattern_is_reported_at_its_list_item() {
    assert_eq!(
        error(&with_head("subscriptions:\n  - text.raw\n  - a.>.b\n")),
        "5:5: subscriptions: pattern `a.>.b`: `>` may only be the last token"
    );
    assert_eq!(
        error(&with_head("publications: [ok, \"a..b\"]\n")),
        "3:20: publications: topic `a..b` has an empty token (check for `..` or a dot at either end)"
    );
}

#[test]
fn dependencies_need_valid_names_and_requirements() {
    assert_eq!(
        error(&with_head("dependencies:\n  - stemmer: \">=1.2,, <2\"\n")),
        "4:14: dependency `stemmer`: `>=1.2,, <2` is not a semver requirement: \
         unexpected character ',' while parsing major version number"
    );
    assert_eq!(
        error(&with_head("dependencies:\n  - stemmer: 1.2\n")),
        "4:14: dependency `stemmer`: expected a semver requirement in quotes \
         (like \">=1.2, <2\"), found the number `1.2`"
    );
    assert_eq!(
        error(&with_head("dependencies:\n  - Stemmer\n")),
        "4:5: dependency `Stemmer` is not a valid plugin name: use 1 to 64 lowercase \
         letters, digits, `_` and `-`, starting with a letter or digit"
    );
    assert_eq!(
        error(&with_head("dependencies:\n  - a\n  - b: \"^1\"\n  - a\n")),
        "6:5: dependency `a` is listed twice (first at line 4, column 5)"
    );
    assert_eq!(
        error(&with_head("dependencies:\n  - [a]\n")),
        "4:5: dependencies: expected a plugin name, or `name: \"semver-req\"`, found a list"
    );
    // A requirement left empty means any version.
    assert_eq!(
        ok(&with_head("dependencies:\n  - a:\n")).dependencies[0].req,
        None
    );
}

#[test]
fn a_dependency_written_as_name_and_version_keys_gets_a_hint() {
    assert_eq!(
        error(&with_head(
            "dependencies:\n  - name: tokenizer\n    version: \"^1\"\n"
        )),
        "5:5: unknown key `version` in a dependency: write `- tokenizer: \">=1.2\"`, \
         not `name:` and `version:` keys"
    );
    assert_eq!(
        error(&with_head("dependencies:\n  - name: tokenizer\n")),
        "4:11: dependency `name`: `tokenizer` is not a semver requirement: unexpected \
         character 't' while parsing major version number (to depend on `tokenizer`, \
         write `- tokenizer`)"
    );
}

#[test]
fn a_plugin_cannot_depend_on_itself() {
    assert_eq!(
        error(&with_head("dependencies:\n  - other\n  - demo: \"^1\"\n")),
        "5:5: plugin `demo` cannot depend on itself"
    );
}

#[test]
fn config_must_be_a_mapping_with_string_keys() {
    assert_eq!(
        error(&with_head("config: [1, 2]\n")),
        "3:9: config: expected a mapping of keys to values, found a list"
    );
    assert_eq!(
        error(&with_head("config:\n  ok: 1\n  inner:\n    1: one\n")),
        "6:5: config.inner: keys must be strings, found the number `1` (quote it: `\"1\"`)"
    );
    assert_eq!(
        error(&with_head("config:\n  ratio: .nan\n")),
        "4:10: config.ratio: `.nan` cannot be passed to a plugin (not a finite number)"
    );
}

#[test]
fn native_needs_an_entry() {
    assert_eq!(
        error(&with_head("runtime: native\n")),
        "3:10: `runtime: native` needs `entry` (the shared library, or the cargo crate's name)"
    );
}

#[test]
fn an_entry_without_runtime_needs_a_script_extension() {
    assert_eq!(
        error(&with_head("entry: plugin.py\n")),
        "3:8: entry `plugin.py`: cannot tell the runtime from its extension; \
         use a `.lua` or `.rhai` file, or set `runtime`"
    );
    assert_eq!(
        error(&with_head("runtime: lua\nentry: main.rhai\n")),
        "4:8: entry `main.rhai` is a rhai script but `runtime` is `lua`"
    );
}

#[test]
fn an_entry_must_stay_inside_the_folder() {
    assert_eq!(
        error(&with_head("entry: ../shared/main.lua\n")),
        "3:8: entry `../shared/main.lua` leaves the plugin folder (`..` is not allowed)"
    );
    assert_eq!(
        error(&with_head("entry: lib\\..\\..\\x.lua\n")),
        "3:8: entry `lib\\..\\..\\x.lua` leaves the plugin folder (`..` is not allowed)"
    );
    assert_eq!(
        error(&with_head("entry: /etc/main.lua\n")),
        "3:8: entry `/etc/main.lua` must be a path relative to the plugin folder"
    );
    assert_eq!(
        error(&with_head("entry: \"\"\n")),
        "3:8: entry: cannot be empty"
    );
    assert_eq!(
        ok(&with_head("entry: ./src/..x.lua\n")).entry.as_deref(),
        Some("./src/..x.lua")
    );
}

#[test]
fn duplicate_keys_are_refused_at_the_second() {
    assert_eq!(
        error("name: demo\nversion: 1.0.0\nname: other\n"),
        "3:1: duplicate key `name` (first written at line 1, column 1)"
    );
    assert_eq!(
        error(&with_head("limits:\n  queue: 1\n  queue: 2\n")),
        "5:3: duplicate key `queue` (first written at line 4, column 3)"
    );
    assert_eq!(
        error(&with_head("config:\n  a: 1\n  a: 2\n")),
        "5:3: duplicate key `a` (first written at line 4, column 3)"
    );
}

#[test]
fn a_yaml_syntax_error_has_its_position() {
    assert_eq!(
        error("name: demo\nversion: 1.0.0\nsubscriptions: [a, b\nenabled: true\n"),
        "4:8: illegal placement of ':' indicator"
    );
    assert_eq!(
        error("name: demo\n  version: 1.0.0\n"),
        "2:10: mapping values are not allowed in this context"
    );
}

#[test]
fn missing_required_keys_are_reported_about_the_file() {
    let all = parse(Path::new(FILE), "description: x\n").unwrap_err();
    let shown: Vec<String> = all.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            format!("{FILE}: missing required key `name`"),
            format!("{FILE}: missing required key `version`"),
        ]
    );
    assert!(all.iter().all(|e| e.position.is_none()));
}

#[test]
fn an_empty_file_is_an_error() {
    for text in ["", "\n\n", "# just a comment\n", "---\n"] {
        let all = parse(Path::new(FILE), text).unwrap_err();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].to_string(),
            format!("{FILE}: empty manifest: needs at least `name` and `version`")
        );
    }
}

#[test]
fn a_document_that_is_not_a_mapping_is_an_error() {
    assert_eq!(
        error("- name: demo\n"),
        "1:1: a manifest is a mapping of keys like `name: greeter`, found a list"
    );
}

#[test]
fn several_errors_are_collected_in_file_order() {
    let text = "\
name: Demo
version: 1.0
enabled: maybe
subscriptions:
  - a..b
limits:
  qeue: 1
  memory_mb: 0
retry:
  max_attempts: 0
runtime: native
";
    assert_eq!(
        errors(text),
        [
            "1:7: name `Demo` is not a valid plugin name: use 1 to 64 lowercase letters, \
             digits, `_` and `-`, starting with a letter or digit",
            "2:10: version `1.0` is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)",
            "3:10: enabled: expected `true` or `false`, found the string `maybe`",
            "5:5: subscriptions: topic `a..b` has an empty token (check for `..` or a dot at either end)",
            "7:3: unknown key `qeue` in `limits` (did you mean `queue`?)",
            "8:14: limits.memory_mb: must be at least 1, found `0`",
            "10:17: retry.max_attempts: must be at least 1, found `0`",
            "11:10: `runtime: native` needs `entry` (the shared library, or the cargo crate's name)",
        ]
    );
}

#[test]
fn errors_print_file_line_and_column() {
    let e = ManifestError::new("p/plugin.yaml", Some(Position::new(3, 7)), "bad");
    assert_eq!(e.to_string(), "p/plugin.yaml:3:7: bad");
    let e = ManifestError::new("p/plugin.yaml", None, "bad");
    assert_eq!(e.to_string(), "p/plugin.yaml: bad");
}

#[test]
fn an_unreadable_file_is_one_error_without_position() {
    let path = Path::new("/nonexistent/plughost/plugin.yaml");
    let all = parse_file(path).unwrap_err();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].position, None);
    assert!(
        all[0]
            .to_string()
            .starts_with("/nonexistent/plughost/plugin.yaml: cannot read the manifest: "),
        "{}",
        all[0]
    );
}

#[test]
fn the_example_manifest_parses() {
    let text = include_str!("../../../../plugin.yaml.example");
    let m = ok(text);
    assert!(!m.subscriptions.is_empty());
    assert_eq!(
        m.positions.iter().count(),
        14 + 4 + 2 + 4,
        "the example shows every key"
    );
    assert!(m.config_schema.is_some());
    assert_eq!(
        m.config["output"],
        json!({"topic": "stats.words", "every": 10})
    );
    assert_eq!(m.supervision, Supervision::default());
}

#[test]
fn supervision_keys_are_read_and_the_others_keep_their_defaults() {
    let m = ok(&with_head(
        "supervision:\n  max_consecutive_errors: 0\n  resume_after_ms: 250\n  max_restarts: 2\n  window_s: 30\n",
    ));
    assert_eq!(
        m.supervision,
        Supervision {
            max_consecutive_errors: 0,
            resume_after_ms: 250,
            max_restarts: 2,
            window_s: 30,
        }
    );
    assert_eq!(
        m.positions.get("supervision.window_s"),
        Some(Position::new(7, 3))
    );
    let partial = ok(&with_head("supervision:\n  max_restarts: 0\n"));
    assert_eq!(
        partial.supervision,
        Supervision {
            max_restarts: 0,
            ..Supervision::default()
        }
    );
    assert_eq!(ok(HEAD).supervision, Supervision::default());
    assert_eq!(
        ok(&with_head("supervision:\n")).supervision,
        Supervision::default()
    );
}

#[test]
fn an_unknown_supervision_key_suggests_the_closest() {
    assert_eq!(
        error(&with_head("supervision:\n  max_restart: 3\n")),
        "4:3: unknown key `max_restart` in `supervision` (did you mean `max_restarts`?)"
    );
    assert_eq!(
        error(&with_head("supervision:\n  window: 3\n")),
        "4:3: unknown key `window` in `supervision` (did you mean `window_s`?)"
    );
    // Written at the top level, the key is pointed to its section.
    assert_eq!(
        error(&with_head("resume_after_ms: 5\n")),
        "3:1: unknown key `resume_after_ms` (did you mean `supervision.resume_after_ms`?)"
    );
}

#[test]
fn bad_supervision_values_are_refused_at_the_value() {
    assert_eq!(
        errors(&with_head(
            "supervision:\n  max_consecutive_errors: -1\n  resume_after_ms: 0\n  max_restarts: \"3\"\n  window_s: 0\n"
        )),
        [
            "4:27: supervision.max_consecutive_errors: must be at least 0, found `-1`",
            "5:20: supervision.resume_after_ms: must be at least 1, found `0`",
            "6:17: supervision.max_restarts: expected an integer, found the string `3` (remove the quotes)",
            "7:13: supervision.window_s: must be at least 1, found `0`",
        ]
    );
    assert_eq!(
        errors(&with_head(
            "supervision:\n  max_restarts: 4294967296\n  window_s: 86401\n  resume_after_ms: 300001\n  max_consecutive_errors: 1.5\n"
        )),
        [
            "4:17: supervision.max_restarts: must be at most 4294967295, found `4294967296`",
            "5:13: supervision.window_s: must be at most 86400, found `86401`",
            "6:20: supervision.resume_after_ms: must be at most 300000, found `300001`",
            "7:27: supervision.max_consecutive_errors: expected an integer, found the number `1.5`",
        ]
    );
    assert_eq!(
        error(&with_head("supervision: [1]\n")),
        "3:14: supervision: expected a mapping of keys to values, found a list"
    );
    assert_eq!(
        ok(&with_head(
            "supervision:\n  window_s: 86400\n  resume_after_ms: 300000\n"
        ))
        .supervision
        .window_s,
        86400
    );
}

#[test]
fn a_huge_file_is_refused_without_being_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plugin.yaml");
    let mut text = String::from("name: big\nversion: 1.0.0\n");
    text.push_str(&"# padding\n".repeat(super::raw::MAX_BYTES / 10 + 1));
    std::fs::write(&path, text).unwrap();
    let errors = super::parse_file(&path).unwrap_err();
    assert!(
        errors[0].to_string().contains("over the limit"),
        "{errors:?}"
    );
}

#[test]
fn cluster_shared_is_read_with_its_position_and_defaults_to_false() {
    let m = ok(&with_head("cluster:\n  shared: true\n"));
    assert!(m.shared);
    assert_eq!(m.positions.get("cluster.shared"), Some(Position::new(4, 3)));
    assert!(!ok(HEAD).shared);
    assert!(!ok(&with_head("cluster:\n  shared: false\n")).shared);
    assert!(!ok(&with_head("cluster:\n")).shared);
}

#[test]
fn bad_cluster_keys_are_refused_at_their_place() {
    assert_eq!(
        error(&with_head("cluster:\n  shard: true\n")),
        "4:3: unknown key `shard` in `cluster` (did you mean `shared`?)"
    );
    assert_eq!(
        error(&with_head("cluster:\n  shared: \"yes\"\n")),
        "4:11: cluster.shared: expected `true` or `false`, found the string `yes`"
    );
    assert_eq!(
        error(&with_head("shared: true\n")),
        "3:1: unknown key `shared` (did you mean `cluster.shared`?)"
    );
}
