//! The native scaffold's crate: `Cargo.toml` (a `cdylib`, a workspace of its
//! own, depending on `plughost-sdk`) and `src/lib.rs` (a type implementing
//! every hook of `Plugin`, each with a comment saying when it runs).
//! `@name@` stands for the plugin's name, `@Type@` for its Rust type name
//! and `@dependency@` for the SDK line.

use super::SdkDependency;

/// The plugin's Rust type name: `word-count` → `WordCount`, or
/// `HostPlugin` where the plain name would clash with a name the scaffold uses.
pub(super) fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split(['-', '_']).filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    const TAKEN: &[&str] = &[
        "Box",
        "ConfigChange",
        "Default",
        "Err",
        "Event",
        "Host",
        "None",
        "Ok",
        "Option",
        "Outcome",
        "Plugin",
        "Result",
        "Self",
        "Some",
        "String",
        "Value",
        "Vec",
    ];
    if out.is_empty() || TAKEN.contains(&out.as_str()) {
        out.push_str("Plugin");
    }
    out
}

/// The `plughost-sdk` line of `Cargo.toml`'s `[dependencies]`; a version
/// comes with a comment saying how to point it at an SDK, since
/// `plughost-sdk` is not published.
pub(super) fn sdk_line(sdk: &SdkDependency) -> String {
    match sdk {
        SdkDependency::Path(p) => format!("plughost-sdk = {{ path = {} }}", toml_string(p)),
        SdkDependency::Version(v) => format!(
            "# No plughost checkout was found on this machine, and plughost-sdk is not on\n\
             # crates.io: replace this line with the path to `bindings/sdk` of the\n\
             # plughost checkout your plughost was built from, e.g.\n\
             # plughost-sdk = {{ path = \"/src/plughost/bindings/sdk\" }}\n\
             plughost-sdk = \"{v}\""
        ),
    }
}

/// `s` as a TOML basic string: quoted, with `\\` and `"` escaped (a Windows
/// path has backslashes).
fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `Cargo.toml`.
pub(super) const CARGO_TOML: &str = r#"[package]
name = "@name@"
description = "A plughost plugin: greets the name of each @name@.in event on @name@.out."
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A shared library the host loads (see plugin.yaml's `entry`).
crate-type = ["cdylib"]

[dependencies]
# Build against the plughost-sdk of the host that loads the plugin.
@dependency@

# A workspace of its own, so `cargo build` in this folder builds the crate
# standalone, even inside another cargo workspace. To make it a member of an
# enclosing workspace instead, remove this table and add the folder to that
# workspace's `members`.
[workspace]
"#;

/// `src/lib.rs`.
pub(super) const LIB_RS: &str = r#"//! @name@: a plughost plugin written in Rust. It greets the name of each
//! `@name@.in` event on `@name@.out`.
//!
//! The host calls the hooks of [`Plugin`] one at a time, on the plugin's own
//! thread; each gets `host`, the same bindings a script has (publish, config,
//! state, log, telemetry, timers). Every hook but `on_event` is optional:
//! delete the ones you do not need. See docs/native.md of the plughost repository.

use plughost_sdk::serde_json::json;
use plughost_sdk::{ConfigChange, Event, Host, Outcome, Plugin, Value, export_plugin};

/// The plugin. The host makes a fresh one with `Default` on each load,
/// reload or restart, so its fields start afresh: keep what must survive in
/// `host.state()`.
#[derive(Debug)]
struct @Type@ {
    /// `config.greeting`, read in `init` and again in `on_config`.
    greeting: String,
}

impl Default for @Type@ {
    fn default() -> Self {
        @Type@ {
            greeting: "Hello".to_owned(),
        }
    }
}

impl @Type@ {
    fn configure(&mut self, config: &Value) {
        if let Some(greeting) = config["greeting"].as_str() {
            self.greeting = greeting.to_owned();
        }
    }
}

impl Plugin for @Type@ {
    /// Runs once after the plugin loads, and again after each reload, before
    /// any event. An error here keeps the plugin from starting.
    fn init(&mut self, host: &Host) -> Result<(), String> {
        self.configure(&host.config());
        host.info(&format!("greeting with {}", self.greeting));
        Ok(())
    }

    /// Runs for each event matching `subscriptions` in plugin.yaml, one at a
    /// time, in publish order. An `Err` (or a panic) dead-letters the event,
    /// and the plugin goes on with the next one.
    fn on_event(&mut self, host: &Host, event: &Event) -> Result<Outcome, String> {
        // A borrowed view of the packed payload: reads one field, copies nothing.
        let Some(name) = event.payload.view().get("name").and_then(|n| n.as_str()) else {
            // Dead-letters the event (on plughost.dead_letter) with this reason.
            return Ok(Outcome::drop("payload.name must be a string"));
        };
        // `state()` is a copy: `set_state` stores the change.
        let mut state = host.state();
        let count = state["count"].as_u64().unwrap_or(0) + 1;
        state["count"] = json!(count);
        host.set_state(state)?;
        host.publish(
            "@name@.out",
            json!({"text": format!("{}, {name}!", self.greeting), "count": count}),
        )?;
        Ok(Outcome::Ack)
    }

    /// Runs when a save of plugin.yaml changed only `config`, with the new
    /// config. `Applied` keeps the plugin running; returning
    /// `ConfigChange::Restart` (or leaving this hook out) restarts it.
    fn on_config(&mut self, host: &Host, config: &Value) -> Result<ConfigChange, String> {
        self.configure(config);
        host.info(&format!("greeting now with {}", self.greeting));
        Ok(ConfigChange::Applied)
    }

    // Runs when a timer this instance set is due, between two events:
    // `host.after(Duration)` and `host.every(Duration)` return the id it
    // gets; `host.cancel_timer(id)` stops one. To use it, import
    // `plughost_sdk::TimerId` and uncomment:
    //
    // fn on_timer(&mut self, host: &Host, timer: TimerId) -> Result<(), String> {
    //     host.info(&format!("{timer:?} is due"));
    //     Ok(())
    // }

    /// Runs before the plugin stops: host shutdown, unload, or a reload
    /// replacing it.
    fn shutdown(&mut self, host: &Host) -> Result<(), String> {
        let count = host.state()["count"].as_u64().unwrap_or(0);
        host.info(&format!("greeted {count} time(s)"));
        Ok(())
    }
}

export_plugin!(@Type@);
"#;

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::tests::{rendered, text};
    use super::super::{SchemaLink, SdkDependency, Surroundings, render};
    use super::*;
    use crate::RuntimeKind;

    #[test]
    fn type_names_are_camel_case_and_never_clash() {
        assert_eq!(type_name("word-count"), "WordCount");
        assert_eq!(type_name("a_b2"), "AB2");
        assert_eq!(type_name("host"), "HostPlugin");
        assert_eq!(type_name("plugin"), "PluginPlugin");
        assert_eq!(type_name("string"), "StringPlugin");
    }

    #[test]
    fn the_native_crate_builds_standalone_against_the_sdk() {
        let files = rendered("word-count", RuntimeKind::Native);
        let cargo = text(&files, "Cargo.toml");
        assert!(cargo.contains("name = \"word-count\""), "{cargo}");
        assert!(cargo.contains("crate-type = [\"cdylib\"]"), "{cargo}");
        assert!(
            cargo.contains("plughost-sdk = { path = \"../../bindings/sdk\" }"),
            "{cargo}"
        );
        assert!(cargo.trim_end().ends_with("\n[workspace]"), "{cargo}");
        let lib = text(&files, "src/lib.rs");
        assert!(lib.contains("impl Plugin for WordCount {"), "{lib}");
        assert!(lib.contains("export_plugin!(WordCount);"), "{lib}");
        assert!(lib.contains("\"word-count.out\""), "{lib}");
        assert!(!lib.contains('@'), "a placeholder was left: {lib}");

        let by_version = render(
            "word-count",
            RuntimeKind::Native,
            Path::new("plugins"),
            &Surroundings {
                sdk: SdkDependency::Version("0.1".into()),
                schema: SchemaLink::Beside,
            },
        );
        let cargo = text(&by_version, "Cargo.toml");
        assert!(cargo.contains("\nplughost-sdk = \"0.1\"\n"), "{cargo}");
        assert!(
            cargo.contains("plughost-sdk is not on\n# crates.io"),
            "{cargo}"
        );
        assert_eq!(
            sdk_line(&SdkDependency::Path(r"C:\p\sdk".into())),
            r#"plughost-sdk = { path = "C:\\p\\sdk" }"#
        );
    }
}
