//! Discovery: finding plugin folders under the plugins directories.
//!
//! A folder holding `plugin.yaml` is one plugin, and its subfolders are not
//! searched further. Hidden folders and `target/` are skipped. This module
//! only walks the file system; reading and judging the manifests is the
//! catalog's job.

use std::path::{Path, PathBuf};

/// The manifest file name that marks a plugin folder.
pub const MANIFEST_FILE: &str = "plugin.yaml";

/// A plugins directory that could not be searched.
#[derive(Debug, thiserror::Error)]
#[error("plugins directory {}: {reason}", path.display())]
pub struct DiscoveryError {
    /// The directory.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
}

/// Every plugin folder under `roots`, sorted by path within each root.
pub fn plugin_folders(roots: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoveryError> {
    let mut found = Vec::new();
    for root in roots {
        if !root.is_dir() {
            return Err(DiscoveryError {
                path: root.clone(),
                reason: if root.exists() {
                    "not a directory".into()
                } else {
                    "no such directory".into()
                },
            });
        }
        let mut here = Vec::new();
        let mut walk = walkdir::WalkDir::new(root).follow_links(true).into_iter();
        while let Some(entry) = walk.next() {
            let entry = entry.map_err(|e| DiscoveryError {
                path: root.clone(),
                reason: e.to_string(),
            })?;
            if !entry.file_type().is_dir() {
                continue;
            }
            if entry.depth() > 0 && skipped(entry.path()) {
                walk.skip_current_dir();
                continue;
            }
            if entry.path().join(MANIFEST_FILE).is_file() {
                here.push(entry.path().to_path_buf());
                walk.skip_current_dir();
            }
        }
        here.sort();
        found.extend(here);
    }
    Ok(found)
}

fn skipped(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.') || n == "target")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, rel: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, "").unwrap();
    }

    #[test]
    fn finds_folders_with_manifests_and_skips_hidden_target_and_nested() {
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        touch(r, "a/plugin.yaml");
        touch(r, "a/inner/plugin.yaml");
        touch(r, "group/b/plugin.yaml");
        touch(r, ".hidden/c/plugin.yaml");
        touch(r, "target/d/plugin.yaml");
        touch(r, "e/main.lua");
        let found = plugin_folders(&[r.to_path_buf()]).unwrap();
        assert_eq!(found, vec![r.join("a"), r.join("group/b")]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = plugin_folders(&[PathBuf::from("/no/such/dir")]).unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }
}
