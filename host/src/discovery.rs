//! Discovery: finding plugin folders under the plugins directories.
//!
//! A folder holding `plugin.yaml` is one plugin, and its subfolders are not
//! searched further. Hidden folders and `target/` are skipped. This module
//! only walks the file system; reading and judging the manifests is the
//! catalog's job.
//!
//! Links are followed. A path that cannot be searched below a plugins
//! directory (a symlink loop, a dangling link, a folder that cannot be
//! read) is one [`PathProblem`] for that path: the search goes on around
//! it, so the other plugins still load.

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

/// A path below a plugins directory that could not be searched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct PathProblem {
    /// The path (a link, a folder).
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Every plugin folder, sorted by path within each root.
    pub folders: Vec<PathBuf>,
    /// The paths that could not be searched, in the order met.
    pub problems: Vec<PathProblem>,
}

/// Every plugin folder under `roots`, sorted by path within each root; the
/// paths that could not be searched are left out (see [`search`]).
pub fn plugin_folders(roots: &[PathBuf]) -> Result<Vec<PathBuf>, DiscoveryError> {
    search(roots).map(|found| found.folders)
}

/// Every plugin folder under `roots`, and every path below them that could
/// not be searched. Fails only when a root itself is missing or not a
/// directory.
pub fn search(roots: &[PathBuf]) -> Result<Found, DiscoveryError> {
    let mut found = Vec::new();
    let mut problems = Vec::new();
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
        let first_problem = problems.len();
        let mut walk = walkdir::WalkDir::new(root).follow_links(true).into_iter();
        while let Some(entry) = walk.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if e.depth() > 0 => {
                    // Hidden paths are skipped, broken or not (an editor's
                    // lock file is a dangling link named `.#file`).
                    if !e.path().is_some_and(skipped) {
                        problems.push(problem(&e, root));
                    }
                    continue;
                }
                Err(e) => {
                    return Err(DiscoveryError {
                        path: root.clone(),
                        reason: e.to_string(),
                    });
                }
            };
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
        problems[first_problem..].sort_by(|a: &PathProblem, b| a.path.cmp(&b.path));
    }
    Ok(Found {
        folders: found,
        problems,
    })
}

/// The OS error of a path whose links go round in circles.
const ELOOP: i32 = if cfg!(any(target_os = "linux", target_os = "android")) {
    40
} else {
    62
};

/// The problem of one path walkdir could not enter.
fn problem(e: &walkdir::Error, root: &Path) -> PathProblem {
    let path = e.path().unwrap_or(root).to_path_buf();
    let reason = match (e.loop_ancestor(), e.io_error()) {
        (Some(ancestor), _) => format!(
            "symlink loop (leads back to {}); not searched",
            ancestor.display()
        ),
        (None, Some(io)) if io.raw_os_error() == Some(ELOOP) => {
            "symlink loop (too many levels of links); not searched".into()
        }
        (None, Some(io)) => format!("cannot be searched: {io}"),
        (None, None) => format!("cannot be searched: {e}"),
    };
    PathProblem { path, reason }
}

/// Whether `dir` is skipped: hidden, or a `target/` folder.
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

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_one_problem_and_the_rest_is_found() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let r = tmp.path();
        touch(r, "a/plugin.yaml");
        touch(r, "z/plugin.yaml");
        std::fs::create_dir(r.join("group")).unwrap();
        symlink(r, r.join("group/up")).unwrap();
        symlink(r.join("self"), r.join("self")).unwrap();
        symlink("user@host.1234", r.join(".#main.lua")).unwrap();
        let found = search(&[r.to_path_buf()]).unwrap();
        assert_eq!(found.folders, vec![r.join("a"), r.join("z")]);
        let paths: Vec<&Path> = found.problems.iter().map(|p| p.path.as_path()).collect();
        assert_eq!(paths, [r.join("group/up"), r.join("self")], "{found:?}");
        assert!(
            found
                .problems
                .iter()
                .all(|p| p.reason.contains("symlink loop")),
            "{found:?}"
        );
        assert_eq!(plugin_folders(&[r.to_path_buf()]).unwrap(), found.folders);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let err = plugin_folders(&[PathBuf::from("/no/such/dir")]).unwrap_err();
        assert!(err.to_string().contains("no such directory"), "{err}");
    }
}
