//! What a plugin folder holds, as one number: the watcher reloads a plugin
//! only when it changed since the last change it applied.
//!
//! A file system reports one save as several events, and a late one can
//! arrive after the first batch has settled and been applied; a `touch`
//! changes nothing either. The fingerprint covers every file discovery and
//! the runtimes can read (editors' scratch files, hidden files and `target/`
//! are left out, as the watcher leaves them out), names and contents.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use walkdir::WalkDir;

use super::watcher::is_scratch;

/// Past this many bytes in all, a folder is not fingerprinted (and every
/// change to it reloads).
const MAX_BYTES: u64 = 64 << 20;

/// The fingerprint of folder `dir`, or `None` when it cannot be read whole
/// (gone, unreadable, too large).
pub fn of_folder(dir: &Path) -> Option<u64> {
    let mut hasher = DefaultHasher::new();
    let mut total = 0u64;
    let entries = WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0 || {
                let name = e.file_name().to_string_lossy();
                !(name.starts_with('.') || name == "target" || is_scratch(&name))
            }
        });
    for entry in entries {
        let entry = entry.ok()?;
        if !entry.file_type().is_file() {
            continue;
        }
        total += entry.metadata().ok()?.len();
        if total > MAX_BYTES {
            return None;
        }
        let bytes = std::fs::read(entry.path()).ok()?;
        entry.path().strip_prefix(dir).ok()?.hash(&mut hasher);
        bytes.hash(&mut hasher);
    }
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_and_names_count_and_scratch_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("plugin.yaml"), "name: p\n").unwrap();
        std::fs::write(d.join("main.lua"), "-- v1\n").unwrap();
        let v1 = of_folder(d).unwrap();
        // Written again as it was, and editors' leftovers: the same.
        std::fs::write(d.join("main.lua"), "-- v1\n").unwrap();
        std::fs::write(d.join(".main.lua.swp"), "x").unwrap();
        std::fs::write(d.join("main.lua~"), "x").unwrap();
        std::fs::create_dir(d.join("target")).unwrap();
        std::fs::write(d.join("target/lib.so"), "x").unwrap();
        assert_eq!(of_folder(d), Some(v1));
        // Another content, a new module, a renamed file: different.
        std::fs::write(d.join("main.lua"), "-- v2\n").unwrap();
        let v2 = of_folder(d).unwrap();
        assert_ne!(v2, v1);
        std::fs::create_dir(d.join("util")).unwrap();
        std::fs::write(d.join("util/words.lua"), "").unwrap();
        let with_module = of_folder(d).unwrap();
        assert_ne!(with_module, v2);
        std::fs::rename(d.join("util/words.lua"), d.join("util/other.lua")).unwrap();
        assert_ne!(of_folder(d), Some(with_module));
        assert_eq!(of_folder(&d.join("gone")), None);
    }
}
