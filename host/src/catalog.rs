//! The catalog: every discovered plugin, its manifest, and what is wrong with it.
//!
//! Built once from the plugins directories: each folder's manifest is parsed,
//! its runtime and entry resolved, duplicate names and dependency problems
//! found. `plughost check` and `list` print it; the host starts the plugins
//! in [`Catalog::start_order`]. One bad plugin never hides the others, and
//! neither does a path that could not be searched (a symlink loop): it is an
//! entry of its own, with one error naming it.
//!
//! A script entry (`main.lua`, `main.rhai`, or the manifest's `entry`) must
//! resolve, links followed, to a file inside the plugin folder, as `require`
//! and `import` must. A native library may live elsewhere (SPEC §7).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use plughost_bindings::{PluginInfo, PluginSpec, RuntimeKind, RuntimeLimits};
use serde_json::Value;

use crate::deps::{self, Node};
use crate::discovery::{self, DiscoveryError, MANIFEST_FILE};
use crate::manifest::{self, Manifest};

/// A plugin whose manifest is valid and whose entry is resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginDef {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The plugin folder, as found under the plugins directory.
    pub dir: PathBuf,
    /// The runtime that runs it.
    pub runtime: RuntimeKind,
    /// The entry file: `dir` joined with the manifest's (or default) entry.
    pub entry: PathBuf,
}

impl PluginDef {
    /// Name, version and runtime, as carried by logs and telemetry.
    pub fn info(&self) -> PluginInfo {
        PluginInfo {
            name: self.manifest.name.clone(),
            version: self.manifest.version.to_string(),
            runtime: self.runtime,
        }
    }

    /// What a runtime needs to load it, starting from `state`.
    pub fn spec(&self, state: Value) -> PluginSpec {
        PluginSpec {
            info: Arc::new(self.info()),
            dir: self.dir.clone(),
            entry: self.entry.clone(),
            config: self.manifest.config.clone(),
            state,
            limits: RuntimeLimits {
                memory_bytes: usize::try_from(self.manifest.limits.memory_mb)
                    .unwrap_or(usize::MAX >> 20)
                    .saturating_mul(1 << 20),
                hook_timeout: std::time::Duration::from_millis(
                    self.manifest.limits.event_timeout_ms,
                ),
            },
        }
    }
}

/// One discovered plugin folder.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The plugin folder.
    pub dir: PathBuf,
    /// Its manifest path.
    pub manifest_path: PathBuf,
    /// The plugin, when its manifest is valid and its entry resolved.
    pub def: Option<PluginDef>,
    /// Everything wrong with it, each `file:line:col: message` where a position is known.
    pub errors: Vec<String>,
}

impl Entry {
    /// The plugin's name, when the manifest gave a valid one.
    pub fn name(&self) -> Option<&str> {
        self.def.as_ref().map(|d| d.manifest.name.as_str())
    }

    /// Whether it will be started (valid, enabled, dependencies met).
    pub fn is_ok(&self) -> bool {
        self.def.is_some() && self.errors.is_empty()
    }
}

/// Every plugin found under the plugins directories.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Plugins in discovery order.
    pub entries: Vec<Entry>,
    /// Indices into `entries` of the enabled, error-free plugins, dependencies first.
    pub start_order: Vec<usize>,
}

impl Catalog {
    /// Discovers and judges every plugin under `roots`.
    pub fn load(roots: &[PathBuf]) -> Result<Catalog, DiscoveryError> {
        let found = discovery::search(roots)?;
        let mut entries: Vec<Entry> = found.folders.into_iter().map(read_entry).collect();
        mark_duplicates(&mut entries);
        entries.extend(found.problems.into_iter().map(|p| Entry {
            manifest_path: p.path.join(MANIFEST_FILE),
            errors: vec![p.to_string()],
            dir: p.path,
            def: None,
        }));

        let nodes: Vec<(usize, Node)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let d = e.def.as_ref().filter(|_| e.errors.is_empty())?;
                Some((
                    i,
                    Node {
                        name: &d.manifest.name,
                        version: &d.manifest.version,
                        enabled: d.manifest.enabled,
                        dependencies: &d.manifest.dependencies,
                    },
                ))
            })
            .collect();
        let just_nodes: Vec<Node> = nodes.iter().map(|(_, n)| n.clone()).collect();
        let resolution = deps::resolve(&just_nodes);
        let start_order = resolution.order.iter().map(|&k| nodes[k].0).collect();
        let mut dep_errors: Vec<(usize, Vec<String>)> = Vec::new();
        for (k, errs) in &resolution.errors {
            let (i, node) = &nodes[*k];
            let file = entries[*i].manifest_path.display().to_string();
            // Point at the dependency's line, as other manifest errors do.
            let at = |e: &deps::DepError| {
                node.dependencies
                    .iter()
                    .find(|d| d.name == e.dependency())
                    .map_or_else(|| file.clone(), |d| format!("{file}:{}", d.position))
            };
            dep_errors.push((*i, errs.iter().map(|e| format!("{}: {e}", at(e))).collect()));
        }
        for (i, errs) in dep_errors {
            entries[i].errors.extend(errs);
        }
        Ok(Catalog {
            entries,
            start_order,
        })
    }

    /// Loads each of `folders` as one plugin folder, in isolation: the way
    /// `plughost test` runs a plugin.
    ///
    /// Nothing is searched below the folders, `enabled: false` is ignored
    /// (the plugin is treated as enabled) and `dependencies` are not
    /// resolved: they are not there in isolation, so they are neither
    /// required nor started. Every error-free plugin is in
    /// [`Catalog::start_order`], in the order given. A folder without
    /// `plugin.yaml` is an error.
    pub fn load_standalone(folders: &[PathBuf]) -> Result<Catalog, DiscoveryError> {
        let mut entries = Vec::new();
        for folder in folders {
            if !folder.join(MANIFEST_FILE).is_file() {
                return Err(DiscoveryError {
                    path: folder.clone(),
                    reason: format!("not a plugin folder (no {MANIFEST_FILE})"),
                });
            }
            let mut entry = read_entry(folder.clone());
            if let Some(def) = &mut entry.def {
                def.manifest.enabled = true;
            }
            entries.push(entry);
        }
        mark_duplicates(&mut entries);
        let start_order = (0..entries.len()).filter(|&i| entries[i].is_ok()).collect();
        Ok(Catalog {
            entries,
            start_order,
        })
    }

    /// Every error of every plugin, in discovery order.
    pub fn errors(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .flat_map(|e| e.errors.iter().map(String::as_str))
    }

    /// The plugin named `name`.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name() == Some(name))
    }
}

pub(crate) fn read_entry(dir: PathBuf) -> Entry {
    let manifest_path = dir.join(MANIFEST_FILE);
    let mut entry = Entry {
        dir: dir.clone(),
        manifest_path: manifest_path.clone(),
        def: None,
        errors: Vec::new(),
    };
    if let Err(e) = manifest_size(&manifest_path) {
        entry.errors.push(e);
        return entry;
    }
    match manifest::parse_file(&manifest_path) {
        Err(errors) => entry.errors = errors.iter().map(ToString::to_string).collect(),
        Ok(m) => match resolve_entry(&dir, &manifest_path, &m) {
            Ok((runtime, path)) => {
                entry.def = Some(PluginDef {
                    manifest: m,
                    dir,
                    runtime,
                    entry: path,
                })
            }
            Err(e) => entry.errors.push(e),
        },
    }
    entry
}

/// Refuses a manifest larger than [`raw::MAX_BYTES`](crate::manifest::raw::MAX_BYTES)
/// before it is read.
fn manifest_size(path: &Path) -> Result<(), String> {
    let max = crate::manifest::raw::MAX_BYTES;
    match std::fs::metadata(path) {
        Ok(meta) if meta.len() > max as u64 => Err(format!(
            "{}: the manifest is {} bytes, over the limit of {max} bytes",
            path.display(),
            meta.len()
        )),
        // An unreadable file is reported by the read itself.
        _ => Ok(()),
    }
}

/// The `name` and `version` a manifest declares, each when valid, whatever
/// else is wrong with it: what `plughost list` shows for a plugin whose
/// manifest has errors. `(None, None)` when the text is not YAML.
pub fn declared_name(text: &str) -> (Option<String>, Option<String>) {
    use crate::manifest::raw::{self, Kind};
    let Ok(root) = raw::read(text) else {
        return (None, None);
    };
    let Kind::Map(entries) = &root.kind else {
        return (None, None);
    };
    let value = |key: &str| {
        let mut found = entries.iter().filter(|(k, _)| k.as_str() == Some(key));
        // A duplicated key is ambiguous: show neither.
        match (found.next(), found.next()) {
            (Some((_, v)), None) => v.as_str().map(str::to_owned),
            _ => None,
        }
    };
    let name = value("name").filter(|n| manifest::is_valid_name(n));
    let version = value("version").filter(|v| semver::Version::parse(v).is_ok());
    (name, version)
}

/// [`declared_name`] of the manifest at `path`; `(None, None)` when it
/// cannot be read or is over the size limit.
pub fn declared_name_of(path: &Path) -> (Option<String>, Option<String>) {
    if manifest_size(path).is_err() {
        return (None, None);
    }
    std::fs::read_to_string(path).map_or((None, None), |text| declared_name(&text))
}

/// Refuses a script entry that resolves (links followed) outside the
/// plugin folder. `shown` is how the entry is named in the message.
fn inside_folder(dir: &Path, path: &Path, shown: &str) -> Result<(), String> {
    let (Ok(folder), Ok(real)) = (dir.canonicalize(), path.canonicalize()) else {
        // Not there: the caller's own check says so.
        return Ok(());
    };
    if real.starts_with(&folder) {
        Ok(())
    } else {
        Err(format!(
            "{shown} leads outside the plugin folder {} (to {}); a script entry must be a \
             file inside it",
            dir.display(),
            real.display()
        ))
    }
}

/// Picks the runtime and entry file as SPEC §2 says.
fn resolve_entry(
    dir: &Path,
    manifest_path: &Path,
    m: &Manifest,
) -> Result<(RuntimeKind, PathBuf), String> {
    let file = manifest_path.display();
    let at = |key: &str| match m.positions.get(key) {
        Some(p) => format!("{file}:{}:{}", p.line, p.column),
        None => file.to_string(),
    };
    match (m.effective_runtime(), &m.entry) {
        // A library path, or a crate name looked up in cargo's target dir (SPEC §7).
        (Some(RuntimeKind::Native), Some(entry)) => {
            plughost_bindings::native::resolve_entry(dir, entry)
                .map(|path| (RuntimeKind::Native, path))
                .map_err(|m| format!("{}: {m}", at("entry")))
        }
        (Some(runtime), Some(entry)) => {
            let path = dir.join(entry);
            inside_folder(dir, &path, &format!("entry `{entry}`"))
                .map_err(|e| format!("{}: {e}", at("entry")))?;
            if !path.is_file() {
                return Err(format!(
                    "{}: entry `{entry}` not found in {}",
                    at("entry"),
                    dir.display()
                ));
            }
            Ok((runtime, path))
        }
        (Some(runtime), None) => {
            let default = runtime
                .default_entry()
                .ok_or_else(|| format!("{}: `runtime: native` needs `entry`", at("runtime")))?;
            let path = dir.join(default);
            inside_folder(dir, &path, default).map_err(|e| format!("{}: {e}", dir.display()))?;
            if !path.is_file() {
                return Err(format!(
                    "{}: `runtime: {runtime}` but {} has no {default}",
                    at("runtime"),
                    dir.display()
                ));
            }
            Ok((runtime, path))
        }
        (None, _) => {
            let candidates: Vec<RuntimeKind> = [RuntimeKind::Lua, RuntimeKind::Rhai]
                .into_iter()
                .filter(|r| dir.join(r.default_entry().unwrap_or_default()).is_file())
                .collect();
            match candidates.as_slice() {
                [one] => {
                    let default = one.default_entry().unwrap_or_default();
                    let path = dir.join(default);
                    inside_folder(dir, &path, default)
                        .map_err(|e| format!("{}: {e}", dir.display()))?;
                    Ok((*one, path))
                }
                [] => Err(format!(
                    "{file}: no entry script: add main.lua or main.rhai to {}, or set `entry`",
                    dir.display()
                )),
                _ => Err(format!(
                    "{file}: both main.lua and main.rhai are in {}; set `runtime` or `entry` to choose",
                    dir.display()
                )),
            }
        }
    }
}

fn mark_duplicates(entries: &mut [Entry]) {
    let mut by_name: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(name) = e.name() {
            by_name.entry(name.to_owned()).or_default().push(i);
        }
    }
    for (name, idx) in by_name {
        if idx.len() < 2 {
            continue;
        }
        let places: Vec<String> = idx
            .iter()
            .map(|&i| entries[i].dir.display().to_string())
            .collect();
        for &i in &idx {
            let file = entries[i].manifest_path.display().to_string();
            entries[i].errors.push(format!(
                "{file}: duplicate plugin name `{name}` (used by {})",
                places.join(" and ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declared_name_and_version_survive_other_errors() {
        let text = "name: greeter\nversion: 1.2.3\nlimits: {queue: nope}\nbogus: 1\n";
        assert_eq!(
            declared_name(text),
            (Some("greeter".into()), Some("1.2.3".into()))
        );
        assert_eq!(
            declared_name("name: greeter\nversion: 1.0\n"),
            (Some("greeter".into()), None)
        );
        assert_eq!(declared_name("name: Bad Name\nversion: 1.0.0\n").0, None);
        assert_eq!(declared_name("name: a\nname: b\n").0, None);
        assert_eq!(declared_name("name: [unclosed\n"), (None, None));
        assert_eq!(declared_name("- a list\n"), (None, None));
    }

    #[cfg(unix)]
    #[test]
    fn a_script_entry_linked_outside_the_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.lua");
        std::fs::write(&outside, "bus.publish('escaped', {})\n").unwrap();
        let dir = tmp.path().join("p");
        std::fs::create_dir(&dir).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("main.lua")).unwrap();
        // Entry left out: the error names the folder.
        std::fs::write(dir.join("plugin.yaml"), "name: p\nversion: 1.0.0\n").unwrap();
        let e = read_entry(dir.clone());
        assert!(e.def.is_none(), "{e:?}");
        assert_eq!(e.errors.len(), 1, "{e:?}");
        assert!(
            e.errors[0].starts_with(&format!("{}: main.lua leads outside", dir.display())),
            "{e:?}"
        );
        // Entry given: the error names its line and column.
        std::fs::write(
            dir.join("plugin.yaml"),
            "name: p\nversion: 1.0.0\nentry: main.lua\n",
        )
        .unwrap();
        let e = read_entry(dir.clone());
        let at = format!(
            "{}:3:1: entry `main.lua` leads outside",
            dir.join("plugin.yaml").display()
        );
        assert!(e.errors[0].starts_with(&at), "{e:?}");
        // A link inside the folder is fine.
        std::fs::write(dir.join("real.lua"), "").unwrap();
        std::fs::remove_file(dir.join("main.lua")).unwrap();
        std::os::unix::fs::symlink(dir.join("real.lua"), dir.join("main.lua")).unwrap();
        assert!(read_entry(dir).is_ok());
    }

    #[test]
    fn a_manifest_over_the_size_limit_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("p");
        std::fs::create_dir(&dir).unwrap();
        let mut text = String::from("name: p\nversion: 1.0.0\n");
        text.push_str(&"# padding\n".repeat(crate::manifest::raw::MAX_BYTES / 10 + 1));
        std::fs::write(dir.join("plugin.yaml"), text).unwrap();
        std::fs::write(dir.join("main.lua"), "").unwrap();
        let e = read_entry(dir);
        assert_eq!(e.errors.len(), 1, "{e:?}");
        assert!(e.errors[0].contains("over the limit"), "{e:?}");
    }
}
