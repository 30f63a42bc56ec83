//! Resolving `require "x"` / `import "x"` to a file inside the plugin's folder.
//!
//! Module names use `.` or `/` as separators (`util.text` and `util/text`
//! both mean `util/text.lua`). A name that is absolute, contains `..`, or
//! resolves (after following links) outside the folder is refused with a
//! message the script sees as an ordinary, catchable error.

use std::path::{Component, Path, PathBuf};

/// A module file found inside the plugin folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Where to read it.
    pub path: PathBuf,
    /// The path relative to the plugin folder, for chunk names and messages.
    pub relative: PathBuf,
}

/// Resolves module `name` with file extension `ext` inside `dir`.
pub fn resolve(dir: &Path, name: &str, ext: &str) -> Result<ModuleFile, String> {
    if name.is_empty() {
        return Err("module name is empty".into());
    }
    // Leaving the folder is refused before anything else, so the message says so.
    let climbs = name.split(['/', '\\']).any(|seg| seg == "..") || name.starts_with("..");
    if name.starts_with(['/', '\\']) || climbs {
        return Err(format!(
            "module `{name}` is outside the plugin folder (only files inside it can be loaded)"
        ));
    }
    let stem = name.strip_suffix(&format!(".{ext}")).unwrap_or(name);
    let mut relative = PathBuf::new();
    for part in stem.split(['.', '/']) {
        if part.is_empty() {
            return Err(format!("module `{name}`: empty path segment"));
        }
        relative.push(part);
    }
    relative.set_extension(ext);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(format!(
            "module `{name}` is outside the plugin folder (only files inside it can be loaded)"
        ));
    }
    let root = dir
        .canonicalize()
        .map_err(|e| format!("plugin folder {}: {e}", dir.display()))?;
    let candidate = root.join(&relative);
    let real = candidate.canonicalize().map_err(|_| {
        format!(
            "module `{name}` not found (looked for {})",
            relative.display()
        )
    })?;
    if !real.starts_with(&root) {
        return Err(format!(
            "module `{name}` resolves outside the plugin folder (through a link); refused"
        ));
    }
    if !real.is_file() {
        return Err(format!(
            "module `{name}`: {} is not a file",
            relative.display()
        ));
    }
    Ok(ModuleFile {
        path: real,
        relative,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("util")).unwrap();
        std::fs::write(dir.path().join("util/text.lua"), "return {}").unwrap();
        std::fs::write(dir.path().join("helpers.lua"), "return {}").unwrap();
        dir
    }

    #[test]
    fn dotted_and_slashed_names_resolve_inside() {
        let dir = folder();
        let a = resolve(dir.path(), "util.text", "lua").unwrap();
        let b = resolve(dir.path(), "util/text", "lua").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.relative, PathBuf::from("util/text.lua"));
        assert!(resolve(dir.path(), "helpers", "lua").is_ok());
        assert!(resolve(dir.path(), "helpers.lua", "lua").is_ok());
    }

    #[test]
    fn escapes_are_refused() {
        let dir = folder();
        for name in ["../x", "/etc/passwd", "util/../../x", "..", ""] {
            assert!(resolve(dir.path(), name, "lua").is_err(), "{name}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn links_leaving_the_folder_are_refused() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.lua"), "return 1").unwrap();
        let dir = folder();
        std::os::unix::fs::symlink(
            outside.path().join("secret.lua"),
            dir.path().join("leak.lua"),
        )
        .unwrap();
        let err = resolve(dir.path(), "leak", "lua").unwrap_err();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn missing_modules_say_where_they_looked() {
        let dir = folder();
        let err = resolve(dir.path(), "nope", "lua").unwrap_err();
        assert!(err.contains("nope.lua"), "{err}");
    }
}
