//! The watcher: file changes under the plugins directories, as they happen.
//!
//! notify's raw events (no debouncer: when a save is over is
//! `super::settle`'s business, told by `super::events`) are turned into
//! changes on notify's own thread and sent on; reads are not watched at all.
//! This module also maps each path to the plugin folder it belongs to and
//! drops files editors and tools use as scratch (`.main.lua.swp`,
//! `main.lua~`, vim's `4913`, JetBrains' `___jb_tmp___`, `sed -i`'s
//! `sedXXXXXX`). Which folder a path belongs to is decided by [`folder_of`],
//! tested on its own.
//!
//! The same watcher also watches the folders of native plugins' libraries,
//! each on its own and not recursively ([`Watcher::watch_dir`]); which
//! folders, and what a change there means, is `super::library`'s business.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};
use std::time::Instant;

use notify::{Config, Event, EventKindMask, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc::UnboundedSender;

use super::events::changes_of;
use super::settle::Change;
use crate::discovery::{MANIFEST_FILE, plugin_folders};

/// The changes one event reported, and when it was read (so that a busy
/// receiver still times a folder's wait from the change itself).
pub type Batch = (Instant, Vec<(PathBuf, Change)>);

/// A running watcher; dropping it stops watching.
pub struct Watcher {
    inner: RecommendedWatcher,
    /// The plugins directories, watched recursively: as given, and canonical.
    roots: Vec<(PathBuf, PathBuf)>,
}

impl Watcher {
    /// Also watches `dir`, not its subfolders (a native plugin's library
    /// folder: the linker replaces the file, so its folder is watched).
    pub fn watch_dir(&mut self, dir: &Path) -> notify::Result<()> {
        self.inner.watch(dir, RecursiveMode::NonRecursive)
    }

    /// Stops watching a folder given to [`Watcher::watch_dir`].
    pub fn unwatch_dir(&mut self, dir: &Path) {
        if let Err(e) = self.inner.unwatch(dir) {
            tracing::debug!("file watcher: unwatching {}: {e}", dir.display());
        }
        // A folder watched both on its own and as part of a plugins
        // directory is one watch: unwatching it (or a folder above a
        // plugins directory) may drop watches the plugins directory needs,
        // so a plugins directory in it is watched again.
        for (root, canonical) in &self.roots {
            if (canonical.starts_with(dir) || root.starts_with(dir))
                && let Err(e) = self.inner.watch(root, RecursiveMode::Recursive)
            {
                tracing::warn!("file watcher: {}: {e}", root.display());
            }
        }
    }
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Watches `roots` recursively; the changes each event reports are sent to
/// `tx` as they come (see `super::events`), with the time they were read.
pub fn watch(roots: &[PathBuf], tx: UnboundedSender<Batch>) -> notify::Result<Watcher> {
    // Opens and closes after reading are not asked for: only changes, and
    // closes after writing.
    let config =
        Config::default().with_event_kinds(EventKindMask::CORE | EventKindMask::ACCESS_CLOSE);
    let handler = move |result: notify::Result<Event>| match result {
        Ok(event) => {
            if event.need_rescan() {
                tracing::warn!(
                    "file watcher: events were lost (too many at once); save again to reload"
                );
            }
            let changes = changes_of(&event, Path::exists);
            if !changes.is_empty() {
                let _ = tx.send((Instant::now(), changes));
            }
        }
        Err(e) => tracing::warn!("file watcher: {e}"),
    };
    let mut inner = RecommendedWatcher::new(handler, config)?;
    for root in roots {
        inner.watch(root, RecursiveMode::Recursive)?;
    }
    let roots = roots
        .iter()
        .map(|r| (r.clone(), r.canonicalize().unwrap_or_else(|_| r.clone())))
        .collect();
    Ok(Watcher { inner, roots })
}

/// Whether a file name is an editor's or a tool's scratch file rather than
/// a plugin file: hidden files, backups (`main.lua~`), swap files, `*.tmp`,
/// vim's `4913` probe, JetBrains' safe-write files (`main.lua___jb_tmp___`,
/// `main.lua___jb_old___`), Emacs' auto-saves (`#main.lua#`) and
/// `sed -i`'s temporary file (`sed` and six letters or digits).
pub fn is_scratch(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".tmp")
        || name.ends_with("___jb_tmp___")
        || name.ends_with("___jb_old___")
        || (name.len() > 1 && name.starts_with('#') && name.ends_with('#'))
        || name == "4913"
        || is_sed_temp(name)
}

/// `sed -i`'s temporary file: `sedXXXXXX`, with six letters or digits.
fn is_sed_temp(name: &str) -> bool {
    name.len() == 9
        && name.starts_with("sed")
        && name[3..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The plugin folder a changed `path` belongs to, as the host names it.
///
/// `roots` are the plugins directories as given and as canonical paths;
/// `known` the folders the host knows (a removed folder is only known).
/// A folder is a plugin folder when it is known or holds `plugin.yaml`; the
/// topmost one under the root wins, as in discovery. Paths inside hidden
/// folders or `target/`, and editor scratch files, belong to none.
pub fn folder_of(
    path: &Path,
    roots: &[(PathBuf, PathBuf)],
    known: &BTreeSet<PathBuf>,
) -> Option<PathBuf> {
    let (root, parts) = locate(path, roots)?;
    let mut dir = root;
    for part in parts {
        if ignored(part) {
            return None;
        }
        dir.push(part);
        if known.contains(&dir) || dir.join(MANIFEST_FILE).is_file() {
            return Some(dir);
        }
    }
    None
}

/// The plugin folders inside `path` when it is a plain folder (in no
/// plugin folder, holding no `plugin.yaml`) that was created, moved in,
/// removed or moved out, as the host names them: those on disk now (found
/// as discovery finds them) and those `known` from before. A plugin folder
/// may sit in such a folder (`group/a/plugin.yaml`), and moving or creating
/// the folder whole reports only its own path. Empty for a plugin folder
/// (see [`folder_of`]), a file, a root, and whatever `folder_of` ignores.
pub fn folders_inside(
    path: &Path,
    roots: &[(PathBuf, PathBuf)],
    known: &BTreeSet<PathBuf>,
) -> Vec<PathBuf> {
    let Some((root, parts)) = locate(path, roots) else {
        return Vec::new();
    };
    if parts.is_empty()
        || parts.iter().any(|p| ignored(p))
        || folder_of(path, roots, known).is_some()
    {
        return Vec::new();
    }
    let dir: PathBuf = parts.iter().fold(root, |d, p| d.join(p));
    let mut found: BTreeSet<PathBuf> = known
        .iter()
        .filter(|k| k.starts_with(&dir) && **k != dir)
        .cloned()
        .collect();
    if dir.is_dir() {
        found.extend(plugin_folders(std::slice::from_ref(&dir)).unwrap_or_default());
    }
    found.into_iter().collect()
}

/// `path` as the host names it when it is a plain folder (in no plugin
/// folder, holding no `plugin.yaml`, not ignored, not a root) that exists
/// now: a folder created or moved in, whose plugin folders are to be looked
/// for once it is quiet.
pub fn plain_folder(
    path: &Path,
    roots: &[(PathBuf, PathBuf)],
    known: &BTreeSet<PathBuf>,
) -> Option<PathBuf> {
    let (root, parts) = locate(path, roots)?;
    if parts.is_empty()
        || parts.iter().any(|p| ignored(p))
        || folder_of(path, roots, known).is_some()
    {
        return None;
    }
    let dir: PathBuf = parts.iter().fold(root, |d, p| d.join(p));
    dir.is_dir().then_some(dir)
}

/// `path` as the root it lies under (as given) and its parts below it;
/// `None` when it lies under no root or is an editor's scratch file.
fn locate<'p>(path: &'p Path, roots: &[(PathBuf, PathBuf)]) -> Option<(PathBuf, Vec<&'p str>)> {
    let (root, rel) = roots.iter().find_map(|(shown, canonical)| {
        path.strip_prefix(canonical)
            .or_else(|_| path.strip_prefix(shown))
            .ok()
            .map(|rel| (shown, rel))
    })?;
    let parts: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => p.to_str(),
            _ => None,
        })
        .collect();
    if parts.last().is_some_and(|name| is_scratch(name)) {
        return None;
    }
    Some((root.clone(), parts))
}

/// Folders discovery skips: hidden ones and `target/`.
fn ignored(part: &str) -> bool {
    part.starts_with('.') || part == "target"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_files_are_recognised() {
        for name in [
            ".main.lua.swp",
            "main.lua~",
            "4913",
            ".#main.lua",
            "#main.lua#",
            "x.tmp",
            "main.lua___jb_tmp___",
            "main.lua___jb_old___",
            "sedAb3xQ9",
        ] {
            assert!(is_scratch(name), "{name}");
        }
        for name in [
            "main.lua",
            "plugin.yaml",
            "words.lua",
            "checks.rhai",
            "sed.lua",
            "sedation",
            "sedations.lua",
            "#",
        ] {
            assert!(!is_scratch(name), "{name}");
        }
    }

    #[test]
    fn paths_map_to_their_plugin_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let shown = tmp.path().join("plugins");
        std::fs::create_dir_all(shown.join("a/lib")).unwrap();
        std::fs::write(shown.join("a/plugin.yaml"), "").unwrap();
        std::fs::create_dir_all(shown.join("group/b")).unwrap();
        std::fs::write(shown.join("group/b/plugin.yaml"), "").unwrap();
        let roots = vec![(shown.clone(), shown.canonicalize().unwrap())];
        let mut known = BTreeSet::new();
        known.insert(shown.join("gone"));

        let canon = &roots[0].1;
        assert_eq!(
            folder_of(&canon.join("a/main.lua"), &roots, &known),
            Some(shown.join("a"))
        );
        assert_eq!(
            folder_of(&canon.join("a/lib/x.lua"), &roots, &known),
            Some(shown.join("a"))
        );
        assert_eq!(
            folder_of(&shown.join("group/b/plugin.yaml"), &roots, &known),
            Some(shown.join("group/b"))
        );
        assert_eq!(
            folder_of(&canon.join("gone"), &roots, &known),
            Some(shown.join("gone"))
        );
        assert_eq!(
            folder_of(&canon.join("gone/main.lua"), &roots, &known),
            Some(shown.join("gone"))
        );
        assert_eq!(
            folder_of(&canon.join("a/.main.lua.swp"), &roots, &known),
            None
        );
        assert_eq!(folder_of(&canon.join("stray.txt"), &roots, &known), None);
        assert_eq!(folder_of(&canon.join("target/a/x"), &roots, &known), None);
        assert_eq!(
            folder_of(Path::new("/elsewhere/a/main.lua"), &roots, &known),
            None
        );
    }

    #[test]
    fn plain_folders_map_to_the_plugin_folders_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let shown = tmp.path().join("plugins");
        std::fs::create_dir_all(shown.join("group/b/lib")).unwrap();
        std::fs::write(shown.join("group/b/plugin.yaml"), "").unwrap();
        std::fs::create_dir_all(shown.join("group/deeper/c")).unwrap();
        std::fs::write(shown.join("group/deeper/c/plugin.yaml"), "").unwrap();
        std::fs::create_dir_all(shown.join("group/.hidden/d")).unwrap();
        std::fs::write(shown.join("group/.hidden/d/plugin.yaml"), "").unwrap();
        std::fs::create_dir_all(shown.join("a")).unwrap();
        std::fs::write(shown.join("a/plugin.yaml"), "").unwrap();
        let roots = vec![(shown.clone(), shown.canonicalize().unwrap())];
        let mut known = BTreeSet::new();
        known.insert(shown.join("gone/e"));
        known.insert(shown.join("group/b"));

        let canon = &roots[0].1;
        // Created or moved in: what is on disk, and what was known there.
        assert_eq!(
            folders_inside(&canon.join("group"), &roots, &known),
            [shown.join("group/b"), shown.join("group/deeper/c")]
        );
        // Removed or moved out: what was known there.
        assert_eq!(
            folders_inside(&canon.join("gone"), &roots, &known),
            [shown.join("gone/e")]
        );
        // A plain folder that exists is looked into again later.
        assert_eq!(
            plain_folder(&canon.join("group"), &roots, &known),
            Some(shown.join("group"))
        );
        for path in [
            canon.join("a"),
            canon.join("group/b"),
            canon.join("gone"),
            canon.join("group/.hidden"),
            canon.clone(),
        ] {
            assert_eq!(
                plain_folder(&path, &roots, &known),
                None,
                "{}",
                path.display()
            );
        }
        // Plugin folders, files in them, roots and ignored paths: none.
        for path in [
            canon.join("a"),
            canon.join("group/b"),
            canon.join("group/b/lib"),
            canon.join("stray.txt"),
            canon.clone(),
            canon.join(".hidden"),
            canon.join("group/.hidden"),
            PathBuf::from("/elsewhere/group"),
        ] {
            assert_eq!(
                folders_inside(&path, &roots, &known),
                Vec::<PathBuf>::new(),
                "{}",
                path.display()
            );
        }
    }
}
