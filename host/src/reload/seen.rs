//! The manifests the host last read, kept in memory: each plugin folder's
//! name and the `enabled:` its file says.
//!
//! `GET /plugins/{name}` and the overview report whether a plugin is enabled,
//! stopped plugins included, once per plugin per snapshot. Reading and
//! parsing every `plugin.yaml` for that would cost one file per plugin per
//! second and per open dashboard. Instead the host records what it read
//! whenever it reads a manifest (discovery, a live reload, its own
//! `enabled:` write) and answers from here. Pure data: [`SeenManifests`]
//! does no I/O.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// What a folder's manifest said when the host last read it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The plugin's name.
    name: String,
    /// The file's own `enabled:` (not an operator's override).
    enabled: bool,
}

/// Every plugin folder's last-read manifest, by folder and by name.
#[derive(Debug, Default)]
pub(crate) struct SeenManifests {
    by_dir: HashMap<PathBuf, Seen>,
    /// Folders per name: two folders may claim one name (one runs, at most).
    by_name: HashMap<String, BTreeSet<PathBuf>>,
}

impl SeenManifests {
    /// Records that `dir`'s manifest names plugin `name` with `enabled`.
    pub(crate) fn saw(&mut self, dir: &Path, name: &str, enabled: bool) {
        self.forget(dir);
        self.by_dir.insert(
            dir.to_path_buf(),
            Seen {
                name: name.to_owned(),
                enabled,
            },
        );
        self.by_name
            .entry(name.to_owned())
            .or_default()
            .insert(dir.to_path_buf());
    }

    /// Records that `dir` has no manifest that parses (gone, or broken).
    pub(crate) fn forget(&mut self, dir: &Path) {
        let Some(old) = self.by_dir.remove(dir) else {
            return;
        };
        if let Some(dirs) = self.by_name.get_mut(&old.name) {
            dirs.remove(dir);
            if dirs.is_empty() {
                self.by_name.remove(&old.name);
            }
        }
    }

    /// Records that the host wrote `enabled:` into `dir`'s manifest (the
    /// name is unchanged); nothing when the folder's manifest is unknown.
    pub(crate) fn set_enabled(&mut self, dir: &Path, enabled: bool) {
        if let Some(seen) = self.by_dir.get_mut(dir) {
            seen.enabled = enabled;
        }
    }

    /// The `enabled:` of `dir`'s manifest, `None` when it did not parse.
    pub(crate) fn enabled_in(&self, dir: &Path) -> Option<bool> {
        self.by_dir.get(dir).map(|s| s.enabled)
    }

    /// The name `dir`'s manifest gave, `None` when it did not parse.
    pub(crate) fn name_in(&self, dir: &Path) -> Option<&str> {
        self.by_dir.get(dir).map(|s| s.name.as_str())
    }

    /// The folder whose manifest names `name` (the first by path when
    /// several do).
    pub(crate) fn folder_of(&self, name: &str) -> Option<&Path> {
        self.by_name
            .get(name)
            .and_then(|dirs| dirs.first())
            .map(PathBuf::as_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_folders_by_name_and_follows_renames_and_edits() {
        let mut s = SeenManifests::default();
        let (a, b) = (Path::new("plugins/b-copy"), Path::new("plugins/b"));
        s.saw(b, "b", true);
        s.saw(a, "b", false);
        assert_eq!(s.folder_of("b"), Some(b), "the first by path");
        assert_eq!(s.enabled_in(a), Some(false));
        // The copy is renamed in its manifest; then `enabled:` is written.
        s.saw(a, "c", false);
        assert_eq!(s.folder_of("c"), Some(a));
        assert_eq!(s.folder_of("b"), Some(b));
        assert_eq!(s.name_in(a), Some("c"));
        s.set_enabled(a, true);
        assert_eq!(s.enabled_in(a), Some(true));
        // `b`'s manifest breaks: nothing is known of it any more.
        s.forget(b);
        assert_eq!(s.folder_of("b"), None);
        assert_eq!(s.enabled_in(b), None);
        assert_eq!(s.name_in(b), None);
        s.set_enabled(b, true);
        assert_eq!(s.enabled_in(b), None, "no manifest to write into");
        assert!(!s.by_name.contains_key("b"), "no empty name left behind");
    }
}
