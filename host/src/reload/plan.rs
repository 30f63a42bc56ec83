//! Reload planning: what a change to a plugin folder means. Pure.
//!
//! The running version (if any), what the folder holds now, and whether a
//! file other than `plugin.yaml` changed go in; one [`Action`] comes out.
//! The rules are SPEC §5: a script change reloads; a `config`-only change
//! reconfigures (`on_config`, or a reload when the plugin has none); any
//! other manifest change restarts the plugin the same safe way as a reload;
//! `enabled` starts and stops it; a broken folder keeps the running version.

use crate::catalog::{Entry, PluginDef};

/// What to do about a changed plugin folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing runs from this folder; start this version.
    Start(Box<PluginDef>),
    /// Stop the running version (folder removed, or `enabled: false`).
    Stop,
    /// Replace the running version by this one, between two events.
    Swap(Box<PluginDef>),
    /// Only `config` changed: hand it to the running version.
    Configure(Box<PluginDef>),
    /// The running version is replaced by a plugin of another name.
    Replace(Box<PluginDef>),
    /// The folder is broken: report this, keep whatever runs.
    Fail(String),
    /// Nothing to do.
    Nothing,
}

/// Decides what a change to one plugin folder calls for.
///
/// `running` is the version running from the folder, `found` what the folder
/// holds now (`None` when it or its `plugin.yaml` is gone), `scripts_changed`
/// whether a file other than `plugin.yaml` changed.
pub fn plan(running: Option<&PluginDef>, found: Option<&Entry>, scripts_changed: bool) -> Action {
    let Some(found) = found else {
        return if running.is_some() {
            Action::Stop
        } else {
            Action::Nothing
        };
    };
    let def = match (&found.def, found.errors.is_empty()) {
        (Some(def), true) => def,
        _ => return Action::Fail(found.errors.join("\n")),
    };
    if !def.manifest.enabled {
        return if running.is_some() {
            Action::Stop
        } else {
            Action::Nothing
        };
    }
    let Some(old) = running else {
        return Action::Start(Box::new(def.clone()));
    };
    if old.manifest.name != def.manifest.name {
        return Action::Replace(Box::new(def.clone()));
    }
    if !scripts_changed && only_config_differs(old, def) {
        return Action::Configure(Box::new(def.clone()));
    }
    Action::Swap(Box::new(def.clone()))
}

/// Whether the two versions differ in `config` (and its `config_schema`,
/// often edited with it) and nothing else.
fn only_config_differs(old: &PluginDef, new: &PluginDef) -> bool {
    if old.manifest.config == new.manifest.config {
        return false;
    }
    let strip = |d: &PluginDef| {
        let mut m = d.manifest.clone();
        m.config = serde_json::Value::Null;
        m.config_schema = None;
        m.positions = Default::default();
        (m, d.runtime, d.entry.clone())
    };
    strip(old) == strip(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn entry(yaml: &str) -> Entry {
        let dir = PathBuf::from("plugins/p");
        let manifest = crate::manifest::parse(Path::new("plugins/p/plugin.yaml"), yaml)
            .unwrap_or_else(|e| panic!("{e:?}"));
        Entry {
            manifest_path: dir.join("plugin.yaml"),
            def: Some(PluginDef {
                manifest,
                runtime: plughost_bindings::RuntimeKind::Lua,
                entry: dir.join("main.lua"),
                dir: dir.clone(),
            }),
            dir,
            errors: Vec::new(),
        }
    }

    const BASE: &str = "name: p\nversion: 1.0.0\nsubscriptions: [a]\nconfig: {x: 1}\n";

    fn def(yaml: &str) -> PluginDef {
        entry(yaml).def.unwrap()
    }

    #[test]
    fn a_new_folder_starts_and_a_removed_one_stops() {
        assert!(matches!(
            plan(None, Some(&entry(BASE)), true),
            Action::Start(_)
        ));
        assert_eq!(plan(Some(&def(BASE)), None, true), Action::Stop);
        assert_eq!(plan(None, None, true), Action::Nothing);
    }

    #[test]
    fn a_script_change_swaps() {
        let old = def(BASE);
        assert!(matches!(
            plan(Some(&old), Some(&entry(BASE)), true),
            Action::Swap(_)
        ));
        // plugin.yaml saved unchanged (a comment edited): reload all the same.
        assert!(matches!(
            plan(Some(&old), Some(&entry(BASE)), false),
            Action::Swap(_)
        ));
    }

    #[test]
    fn a_config_change_with_its_schema_reconfigures() {
        let old = def(BASE);
        let new = entry(&format!(
            "{}config_schema: {{type: object, properties: {{y: {{type: integer, default: 3}}}}}}\n",
            BASE.replace("x: 1", "x: 2")
        ));
        assert!(matches!(
            plan(Some(&old), Some(&new), false),
            Action::Configure(_)
        ));
    }

    #[test]
    fn a_config_only_change_reconfigures_unless_scripts_changed_too() {
        let old = def(BASE);
        let new = entry(&BASE.replace("x: 1", "x: 2"));
        assert!(matches!(
            plan(Some(&old), Some(&new), false),
            Action::Configure(_)
        ));
        assert!(matches!(
            plan(Some(&old), Some(&new), true),
            Action::Swap(_)
        ));
    }

    #[test]
    fn other_manifest_changes_restart_by_swapping() {
        let old = def(BASE);
        for changed in [
            BASE.replace("[a]", "[b]"),
            format!("{BASE}limits: {{queue: 5}}\n"),
            BASE.replace("x: 1", "x: 2").replace("[a]", "[b]"),
        ] {
            assert!(
                matches!(
                    plan(Some(&old), Some(&entry(&changed)), false),
                    Action::Swap(_)
                ),
                "{changed}"
            );
        }
    }

    #[test]
    fn enabled_starts_and_stops() {
        let off = entry(&format!("{BASE}enabled: false\n"));
        assert_eq!(plan(Some(&def(BASE)), Some(&off), false), Action::Stop);
        assert_eq!(plan(None, Some(&off), false), Action::Nothing);
        assert!(matches!(
            plan(None, Some(&entry(BASE)), false),
            Action::Start(_)
        ));
    }

    #[test]
    fn a_broken_folder_fails_and_keeps_the_running_version() {
        let mut broken = entry(BASE);
        broken.def = None;
        broken.errors = vec!["plugins/p/plugin.yaml:2:10: version `1` is not semver".into()];
        assert_eq!(
            plan(Some(&def(BASE)), Some(&broken), false),
            Action::Fail("plugins/p/plugin.yaml:2:10: version `1` is not semver".into())
        );
    }

    #[test]
    fn a_renamed_plugin_replaces_the_old_one() {
        let renamed = entry(&BASE.replace("name: p", "name: q"));
        assert!(matches!(
            plan(Some(&def(BASE)), Some(&renamed), false),
            Action::Replace(_)
        ));
    }
}
