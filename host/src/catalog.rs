//! The catalog: every discovered plugin, its manifest, and what is wrong with it.
//!
//! Built once from the plugins directories: each folder's manifest is parsed,
//! its runtime and entry resolved, duplicate names and dependency problems
//! found. `plughost check` and `list` print it; the host starts the plugins
//! in [`Catalog::start_order`]. One bad plugin never hides the others.

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
        let folders = discovery::plugin_folders(roots)?;
        let mut entries: Vec<Entry> = folders.into_iter().map(read_entry).collect();
        mark_duplicates(&mut entries);

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
                [one] => Ok((*one, dir.join(one.default_entry().unwrap_or_default()))),
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
