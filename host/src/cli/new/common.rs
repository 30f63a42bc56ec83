//! The files every runtime's scaffold has: `plugin.yaml`, every key shown
//! with a comment, and `README.md`, saying what to edit and how to try the
//! plugin; and the `plughost check` command and shell quoting they (and
//! [`summary`](super::summary)) print.

use std::fmt::Write as _;
use std::path::Path;

use crate::RuntimeKind;

use super::SchemaLink;

/// `plughost check` for `dir` (no argument for the default `plugins`).
pub(super) fn check_command(dir: &Path) -> String {
    match dir_argument(dir) {
        Some(d) => format!("plughost check {d}"),
        None => "plughost check".to_owned(),
    }
}

/// `dir` quoted for a shell, or `None` for the default plugins directory.
fn dir_argument(dir: &Path) -> Option<String> {
    let text = dir.display().to_string();
    let text = text.trim_end_matches('/');
    match text {
        "plugins" | "./plugins" => None,
        _ => Some(shell_quote(text)),
    }
}

/// `s` as one word for a POSIX shell.
pub(super) fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The manifest of plugin `name` for `runtime`: the scaffold's plugin.yaml,
/// its first line pointing editors at the JSON Schema at `schema` (a path
/// relative to the plugin folder).
pub(super) fn manifest(name: &str, runtime: RuntimeKind, schema: &str) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "\
# yaml-language-server: $schema={schema}
# {name}: a plughost plugin. Every key a manifest may hold is shown, with a
# comment, in plugin.yaml.example at the root of the plughost repository
# (reference: docs/manifest.md).

# The plugin's unique name: lowercase letters, digits, `_` and `-`.
name: {name}

# A semver version, MAJOR.MINOR.PATCH.
version: 0.1.0

# One line saying what the plugin does.
description: Greets the name of each {name}.in event on {name}.out
"
    );
    match runtime {
        RuntimeKind::Native => {
            let _ = write!(
                out,
                "
# A Rust shared library built from this folder's crate.
runtime: native
# The crate's name: the host loads lib{lib}.so (.dylib on macOS, {lib}.dll
# on Windows) from $CARGO_TARGET_DIR when it is set, else from this crate's
# target/, in release/ or debug/, whichever build is newer.
# Build it first: cargo build
entry: {name}
",
                lib = name.replace('-', "_"),
            );
        }
        script => {
            let _ = write!(
                out,
                "
# `runtime` and `entry` are left out: the folder's {} decides.
",
                script.default_entry().unwrap_or("script")
            );
        }
    }
    let (retry, limits_note) = match runtime {
        RuntimeKind::Native => (
            "Ok(Outcome::Retry(ms))",
            "\n# (memory_mb and event_timeout_ms are not enforced for native plugins.)",
        ),
        RuntimeKind::Rhai => ("outcome::retry(ms)", ""),
        RuntimeKind::Lua => ("outcome.retry(ms)", ""),
    };
    let _ = write!(
        out,
        "
# Topic patterns of the events the plugin receives: `.`-separated tokens,
# `*` matches one token, `>` one or more trailing tokens.
subscriptions:
  - {name}.in

# The only topics the plugin may publish on; publishing elsewhere is an
# error. Remove the key to allow any topic.
publications:
  - {name}.out

# Handed to the plugin as `config` (read-only). Saving a change to this
# alone calls the plugin's `on_config` hook instead of reloading it.
config:
  # How on_event greets.
  greeting: Hello

# Resource limits, shown with their defaults: to change one, uncomment
# `limits:` and its line.{limits_note}
# limits:
#   memory_mb: 64           # interpreter memory cap, in MiB
#   event_timeout_ms: 1000  # wall-clock budget of one hook call
#   queue: 1024             # pending events held for the plugin
#   overflow: block         # a full queue: block, drop_oldest or drop_newest

# Redelivery of events for which on_event returned {retry}, shown
# with their defaults.
# retry:
#   max_attempts: 3         # deliveries before the event is dead-lettered
#   backoff_ms: 100         # first retry delay, doubled each time, capped at 30 s
"
    );
    out
}

/// `plughost test` of plugin `name` in `dir` against its own recorded events.
pub(super) fn test_command(dir: &Path, name: &str) -> String {
    let folder = dir.join(name);
    let q = |rel: &str| shell_quote(&folder.join(rel).display().to_string());
    format!(
        "plughost test {} --events {} --expect {}",
        q(""),
        q("tests/events.jsonl"),
        q("tests/expect.jsonl")
    )
    .replace("/ --events", " --events")
}

/// The scaffold's `tests/events.jsonl`: events for `plughost test`.
pub(super) fn test_events(name: &str) -> String {
    format!(
        "\
# Events for `plughost test`, one JSON object {{\"topic\", \"payload\"}} per line
# (as for `plughost run --input`). Record more as the plugin grows.
{{\"topic\": \"{name}.in\", \"payload\": {{\"name\": \"world\"}}}}
{{\"topic\": \"{name}.in\", \"payload\": {{\"name\": \"plughost\"}}}}
{{\"topic\": \"{name}.in\", \"payload\": {{\"nom\": \"world\"}}}}
"
    )
}

/// The scaffold's `tests/expect.jsonl`: what `plughost test` prints for
/// [`test_events`].
pub(super) fn test_expect(name: &str) -> String {
    format!(
        "\
# What `plughost test` prints for tests/events.jsonl: for each event N, what the
# plugin published, then its outcome. A line matches an output line when every
# key it has is equal to the output's, so leave out what does not matter.
{{\"event\": 1, \"publish\": {{\"topic\": \"{name}.out\", \"payload\": {{\"text\": \"Hello, world!\", \"count\": 1}}}}}}
{{\"event\": 1, \"outcome\": \"acked\"}}
{{\"event\": 2, \"publish\": {{\"topic\": \"{name}.out\", \"payload\": {{\"text\": \"Hello, plughost!\", \"count\": 2}}}}}}
{{\"event\": 2, \"outcome\": \"acked\"}}
{{\"event\": 3, \"outcome\": \"dead_lettered\", \"error\": \"payload.name must be a string\"}}
"
    )
}

/// The scaffold's README.md: what the plugin does, what to edit, and the
/// commands to try it, with `plugins_dir` as the user named it; `schema`
/// says where the manifest's first line points editors.
pub(super) fn readme(
    name: &str,
    runtime: RuntimeKind,
    plugins_dir: &Path,
    schema: &SchemaLink,
) -> String {
    let (language, script, doc) = match runtime {
        RuntimeKind::Lua => ("Lua", "main.lua", "docs/lua.md"),
        RuntimeKind::Rhai => ("Rhai", "main.rhai", "docs/rhai.md"),
        RuntimeKind::Native => ("Rust", "src/lib.rs", "docs/native.md"),
    };
    // `plughost_sdk::Plugin` has no default for `on_event`; a script may leave any hook out.
    let optional = match runtime {
        RuntimeKind::Native => {
            "`on_event` is required (`plughost_sdk::Plugin` has no\n  default for it); every other hook is optional."
        }
        RuntimeKind::Lua | RuntimeKind::Rhai => "Every hook is optional.",
    };
    let dir = dir_argument(plugins_dir);
    let plugins_flag = dir
        .as_ref()
        .map(|d| format!("--plugins {d} "))
        .unwrap_or_default();
    let check = check_command(plugins_dir);
    let test = test_command(plugins_dir, name);
    let schema = match schema {
        SchemaLink::Checkout(path) => {
            format!("the JSON Schema of the manifest, `{path}`\n  in the plughost checkout")
        }
        SchemaLink::Beside => "`plugin.schema.json`, the JSON Schema of the\n  \
             manifest; after upgrading plughost, refresh it with\n  \
             `plughost schema plugin > plugin.schema.json`"
            .to_owned(),
    };
    let mut out = format!(
        "\
# {name}

A plughost plugin written in {language}, scaffolded by `plughost new`. For each
`{name}.in` event whose payload has a `name`, it publishes `{name}.out` with a
greeting made of `config.greeting` and the name, and a count of the events it
handled, kept in `state` (which survives reloads). An event without a `name`
string is dropped, which dead-letters it.

## What to edit

- `plugin.yaml`: the `description`, the topics in `subscriptions` and
  `publications`, and `config`; uncomment `limits` or `retry` to change them.
  Its first line points editors with a YAML language server (VS Code's YAML
  extension) at {schema}, for completion and checks as you type.
- `{script}`: the hooks. `init` runs once after load (and after each reload),
  `on_event` for each event, `on_config` when only `config` changed, `shutdown`
  before the plugin stops. {optional}

The bindings (publish, config, state, log, telemetry, timers) are described in
{doc} in the plughost repository.

## Try it
"
    );
    if !plugins_dir.is_absolute() {
        out.push_str("\nFrom the folder `plughost new` ran in");
        out.push_str(if runtime == RuntimeKind::Native {
            ", build the crate, then check and run it:\n"
        } else {
            ", check the plugin, then run it with one event:\n"
        });
    } else if runtime == RuntimeKind::Native {
        out.push_str("\nBuild the crate, then check and run it:\n");
    } else {
        out.push_str("\nCheck the plugin, then run it with one event:\n");
    }
    out.push_str("\n```sh\n");
    if runtime == RuntimeKind::Native {
        let manifest = shell_quote(
            &plugins_dir
                .join(name)
                .join("Cargo.toml")
                .display()
                .to_string(),
        );
        let _ = writeln!(out, "cargo build --manifest-path {manifest}");
    }
    let _ = write!(
        out,
        "\
{check}
echo '{{\"topic\":\"{name}.in\",\"payload\":{{\"name\":\"world\"}}}}' \\
  | plughost run {plugins_flag}--input - --tap '{name}.>' --exit-when-idle
```

The tap prints the event you sent and the plugin's answer, one JSON object per
line, on stdout:
`{{\"topic\":\"{name}.out\",\"payload\":{{\"count\":1,\"text\":\"Hello, world!\"}},…}}`.
The log (stderr) shows `init` and `shutdown` at work. Leave out
`--exit-when-idle` and the host keeps running: save a change to `{script}` and
the plugin reloads; change `greeting` in `plugin.yaml` and `on_config` runs.

## Test it

`tests/events.jsonl` holds recorded events and `tests/expect.jsonl` what the
plugin must do with them. `plughost test` runs the plugin alone against them
and prints a diff when the output does not match (exit 1):

```sh
{test}
```
"
    );
    if runtime == RuntimeKind::Native {
        out.push_str(
            "
The host loads the library cargo built, from `$CARGO_TARGET_DIR` when it is
set, else from this folder's `target/` (the crate is a workspace of its own,
so it builds the same inside another cargo workspace). Rebuilding it while the
host runs reloads the plugin.
",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::tests::{rendered, text};
    use super::super::{SchemaLink, SdkDependency, Surroundings, render};
    use super::*;
    use crate::manifest::{self, Limits, Retry};

    const ALL: [RuntimeKind; 3] = RuntimeKind::ALL;

    #[test]
    fn manifests_are_valid_with_the_example_topic_and_config() {
        for rt in ALL {
            let files = rendered("word-count", rt);
            let m = manifest::parse(Path::new("plugin.yaml"), text(&files, "plugin.yaml"))
                .unwrap_or_else(|e| panic!("{rt}: {e:?}"));
            assert_eq!(m.name, "word-count");
            assert_eq!(m.version.to_string(), "0.1.0");
            assert!(!m.description.is_empty());
            let subs: Vec<String> = m.subscriptions.iter().map(|p| p.to_string()).collect();
            assert_eq!(subs, ["word-count.in"]);
            assert_eq!(m.config, serde_json::json!({"greeting": "Hello"}));
            assert_eq!(m.limits, Limits::default());
            assert_eq!(m.retry, Retry::default());
            match rt {
                RuntimeKind::Native => {
                    assert_eq!(m.runtime, Some(RuntimeKind::Native));
                    assert_eq!(m.entry.as_deref(), Some("word-count"));
                }
                _ => assert_eq!((m.runtime, m.entry), (None, None)),
            }
        }
    }

    /// The commented-out `limits` and `retry` show the real defaults:
    /// uncommented, they parse to exactly what leaving them out gives.
    #[test]
    fn commented_limits_and_retry_are_the_defaults() {
        for rt in ALL {
            let files = rendered("hello", rt);
            let yaml = text(&files, "plugin.yaml");
            let uncommented: String = yaml
                .lines()
                .map(|l| {
                    let body = l.strip_prefix("# ").unwrap_or(l);
                    if body.starts_with("limits:")
                        || body.starts_with("retry:")
                        || body.starts_with("  ")
                    {
                        format!("{body}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            assert!(
                uncommented.contains("\nlimits:\n  memory_mb: 64"),
                "{uncommented}"
            );
            assert!(
                uncommented.contains("\nretry:\n  max_attempts: 3"),
                "{uncommented}"
            );
            let m = manifest::parse(Path::new("plugin.yaml"), &uncommented)
                .unwrap_or_else(|e| panic!("{rt}: {e:?}\n{uncommented}"));
            assert_eq!(m.limits, Limits::default());
            assert_eq!(m.retry, Retry::default());
        }
    }

    #[test]
    fn readmes_say_how_to_try_it() {
        let lua = rendered("hello", RuntimeKind::Lua);
        let readme = text(&lua, "README.md");
        assert!(readme.contains("\nplughost check\n"), "{readme}");
        assert!(
            readme.contains(
                "echo '{\"topic\":\"hello.in\",\"payload\":{\"name\":\"world\"}}' \\\n  \
                 | plughost run --input - --tap 'hello.>' --exit-when-idle\n"
            ),
            "{readme}"
        );
        assert!(!readme.contains("cargo build"), "{readme}");

        let native = render(
            "hello",
            RuntimeKind::Native,
            Path::new("my plugins"),
            &Surroundings {
                sdk: SdkDependency::Version("0.1".into()),
                schema: SchemaLink::Beside,
            },
        );
        let readme = text(&native, "README.md");
        assert!(
            readme.contains("cargo build --manifest-path 'my plugins/hello/Cargo.toml'\n"),
            "{readme}"
        );
        assert!(
            readme.contains("\nplughost check 'my plugins'\n"),
            "{readme}"
        );
        assert!(
            readme.contains("plughost run --plugins 'my plugins' --input -"),
            "{readme}"
        );
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_quote("plugins/a-b"), "plugins/a-b");
        assert_eq!(shell_quote("my dir"), "'my dir'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
