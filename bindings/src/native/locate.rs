//! Where a native plugin's library is: `entry` as a path, or a crate name
//! looked up in cargo's target directory (SPEC §7).
//!
//! A crate name is letters, digits, `-` and `_` only; anything else is a
//! path relative to the plugin folder. A crate `my-plugin` builds
//! `libmy_plugin.so` (`.dylib` on macOS, `my_plugin.dll` on Windows) into
//! `$CARGO_TARGET_DIR` when set, else into the `target/` folder of the cargo
//! workspace that holds the plugin folder; `release/` and `debug/` are both
//! looked at and the newer file wins, so the last build is the one loaded.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The library a native plugin's `entry` names, resolved from the plugin
/// folder `dir`, or a message that says where it was looked for and how to
/// build it. Reads `CARGO_TARGET_DIR`.
pub fn resolve_entry(dir: &Path, entry: &str) -> Result<PathBuf, String> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from);
    resolve_entry_in(dir, entry, target.as_deref())
}

/// Where the library of crate `entry` will be once built in release mode
/// (`release/` of the target directory [`resolve_entry`] looks in), for a
/// plugin folder `dir` whose library is not built yet: the host watches
/// there, and in `debug/` beside it, to start the plugin once it is.
/// `None` when `entry` is a path or no target directory can be found.
pub fn expected_library(dir: &Path, entry: &str) -> Option<PathBuf> {
    if !is_crate_name(entry) {
        return None;
    }
    let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|t| !t.is_empty()) {
        Some(t) => PathBuf::from(t),
        None => workspace_root(dir)?.join("target"),
    };
    Some(target.join("release").join(library_file_name(entry)))
}

/// [`resolve_entry`] with the target directory given (`None`: the workspace's).
pub fn resolve_entry_in(
    dir: &Path,
    entry: &str,
    target_dir: Option<&Path>,
) -> Result<PathBuf, String> {
    if !is_crate_name(entry) {
        let path = dir.join(entry);
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!(
            "native library `{entry}` not found in {}: build the plugin's crate \
             (`cargo build --release`) and copy the library there, \
             or set `entry` to the crate's name",
            dir.display()
        ));
    }
    let file = library_file_name(entry);
    let (target, root) = match target_dir {
        Some(t) => (t.to_path_buf(), None),
        None => match workspace_root(dir) {
            Some(root) => (root.join("target"), Some(root)),
            None => {
                return Err(format!(
                    "native library {file} of crate `{entry}`: no Cargo.toml in {} or above it, \
                     so no target/ to look in; set CARGO_TARGET_DIR, or set `entry` to the \
                     library's path",
                    dir.display()
                ));
            }
        },
    };
    let candidates = [
        target.join("release").join(&file),
        target.join("debug").join(&file),
    ];
    newest(&candidates).ok_or_else(|| {
        let place = match &root {
            Some(root) => format!(" (in {})", root.display()),
            None => format!(" (with CARGO_TARGET_DIR={})", target.display()),
        };
        format!(
            "native library {file} of crate `{entry}` not found in {} or {}; \
             build it with `cargo build -p {entry}`{place}",
            candidates[0].parent().unwrap_or(&target).display(),
            candidates[1].parent().unwrap_or(&target).display(),
        )
    })
}

/// Whether `entry` is a crate name rather than a path.
pub fn is_crate_name(entry: &str) -> bool {
    !entry.is_empty()
        && entry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The file cargo builds for a `cdylib` crate on this platform.
pub fn library_file_name(crate_name: &str) -> String {
    format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    )
}

/// The cargo workspace holding `dir`: the nearest ancestor whose Cargo.toml
/// has a `[workspace]` table, else the nearest with any Cargo.toml (a
/// package is its own workspace), as cargo itself decides.
fn workspace_root(dir: &Path) -> Option<PathBuf> {
    let start = dir
        .canonicalize()
        .or_else(|_| std::env::current_dir().map(|cwd| cwd.join(dir)))
        .ok()?;
    let mut package = None;
    for folder in start.ancestors() {
        let Ok(text) = std::fs::read_to_string(folder.join("Cargo.toml")) else {
            continue;
        };
        let has_workspace = text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("[workspace]") || l.starts_with("[workspace.")
        });
        if has_workspace {
            return Some(folder.to_path_buf());
        }
        package.get_or_insert_with(|| folder.to_path_buf());
    }
    package
}

/// The most recently modified of the files that exist.
fn newest(candidates: &[PathBuf]) -> Option<PathBuf> {
    candidates
        .iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(p).ok().filter(|m| m.is_file())?;
            Some((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), p))
        })
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn touch(path: &Path, age_secs: u64) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let f = std::fs::File::create(path).unwrap();
        f.set_modified(SystemTime::now() - Duration::from_secs(age_secs))
            .unwrap();
    }

    #[test]
    fn names_and_paths() {
        assert!(is_crate_name("stemmer-native"));
        assert!(is_crate_name("my_plugin2"));
        assert!(!is_crate_name("libx.so"));
        assert!(!is_crate_name("lib/x"));
        assert!(!is_crate_name(""));
        let f = library_file_name("my-plugin");
        assert!(f.contains("my_plugin"), "{f}");
    }

    #[test]
    fn a_path_entry_is_relative_to_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        touch(&tmp.path().join("lib/libx.so"), 0);
        let found = resolve_entry_in(tmp.path(), "lib/libx.so", None).unwrap();
        assert_eq!(found, tmp.path().join("lib/libx.so"));
        let err = resolve_entry_in(tmp.path(), "liby.so", None).unwrap_err();
        assert!(err.contains("`liby.so` not found"), "{err}");
        assert!(err.contains("cargo build"), "{err}");
    }

    #[test]
    fn a_crate_is_found_in_the_workspace_target_newest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let plugin = root.join("plugins/p");
        std::fs::create_dir_all(&plugin).unwrap();
        std::fs::write(plugin.join("Cargo.toml"), "[package]\nname = \"p-x\"\n").unwrap();
        let file = library_file_name("p-x");
        let release = root.join("target/release").join(&file);
        let debug = root.join("target/debug").join(&file);

        let err = resolve_entry_in(&plugin, "p-x", None).unwrap_err();
        assert!(err.contains("cargo build -p p-x"), "{err}");
        assert!(err.contains("target/release"), "{err}");

        touch(&release, 100);
        touch(&debug, 10);
        let found = resolve_entry_in(&plugin, "p-x", None).unwrap();
        assert_eq!(found.canonicalize().unwrap(), debug.canonicalize().unwrap());
        touch(&release, 0);
        let found = resolve_entry_in(&plugin, "p-x", None).unwrap();
        assert_eq!(
            found.canonicalize().unwrap(),
            release.canonicalize().unwrap()
        );
    }

    #[test]
    fn cargo_target_dir_wins_over_the_workspace() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("elsewhere");
        let lib = target.join("debug").join(library_file_name("q"));
        touch(&lib, 0);
        assert_eq!(
            resolve_entry_in(tmp.path(), "q", Some(&target)).unwrap(),
            lib
        );
        let err = resolve_entry_in(tmp.path(), "r", Some(&target)).unwrap_err();
        assert!(err.contains("CARGO_TARGET_DIR="), "{err}");
    }
}
