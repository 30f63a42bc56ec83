//! Native plugins' libraries under watch (SPEC §7: "the host watches the
//! resolved file too").
//!
//! A native plugin's library usually lies outside the plugins directories
//! (in cargo's `target/`), so the watcher also watches the folder of every
//! library a running native plugin loads, not recursively, and maps a change
//! of that one file to the plugin's folder. An enabled native plugin that is
//! not running (its library not built yet, or refused) is watched the same
//! way, so that a build starts it ([`watched_native`]). For an `entry` naming a crate,
//! both `release/` and `debug/` are watched, since a build in either may
//! make it the newer file that wins. A folder that does not exist yet
//! (`release/` before the first release build) is awaited through its
//! parent. [`LibraryWatch`] keeps this set in sync with the running plugins.
//!
//! A linker writes the library over a while, so a change is acted on only
//! once the file is complete: [`ready`] waits until its size and time have
//! held still, then tries loading it (a file still being written fails to
//! load) a few times before letting the reload go ahead and report what is
//! wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use plughost_bindings::RuntimeKind;
use plughost_bindings::native::locate::is_crate_name;

use super::watcher::Watcher;
use crate::catalog::{PluginDef, read_entry};

/// A library file is complete once two looks this far apart see the same
/// size and modification time.
pub const STABLE: Duration = Duration::from_millis(50);

/// The longest wait for a library file to hold still (or to appear, when
/// the build replaces it).
pub const STABLE_LIMIT: Duration = Duration::from_secs(5);

/// How many more times a library that fails to load is tried, [`STABLE`]
/// apart, before the reload goes ahead and reports the error.
pub const LOAD_RETRIES: u32 = 3;

/// The libraries a running native plugin loads, or may load after a
/// rebuild: its resolved file and, for an `entry` naming a crate, the same
/// file in the other profile's folder (the newer of the two wins).
pub fn candidates(def: &PluginDef) -> Vec<PathBuf> {
    if def.runtime != RuntimeKind::Native {
        return Vec::new();
    }
    let mut files = vec![def.entry.clone()];
    if !def.manifest.entry.as_deref().is_some_and(is_crate_name) {
        return files;
    }
    let (Some(profile), Some(name)) = (def.entry.parent(), def.entry.file_name()) else {
        return files;
    };
    let other = match profile.file_name().and_then(|p| p.to_str()) {
        Some("debug") => "release",
        Some("release") => "debug",
        _ => return files,
    };
    if let Some(target) = profile.parent() {
        files.push(target.join(other).join(name));
    }
    files
}

/// What an event's path is to the library watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hit {
    /// A wanted library file: as the host resolves it, and the folders of
    /// the plugins that load it (or may).
    Library(PathBuf, BTreeSet<PathBuf>),
    /// A folder that was awaited (it did not exist): the watch set must
    /// be synced again.
    Awaited,
    /// Something else in a folder watched only for libraries.
    Ignored,
    /// Not the library watch's business.
    None,
}

/// The folders watched for native plugins' libraries, kept in sync with the
/// running plugins.
#[derive(Debug, Default)]
pub struct LibraryWatch {
    /// The plugins directories, canonical: already watched recursively.
    roots: Vec<PathBuf>,
    /// Every wanted library file, by each form an event may name it in (as
    /// resolved, and with its folder canonical): the file as resolved, and
    /// the plugin folders it belongs to.
    files: BTreeMap<PathBuf, (PathBuf, BTreeSet<PathBuf>)>,
    /// Folders watched (not recursively), canonical.
    watched: BTreeSet<PathBuf>,
    /// Library folders (or their parents) that do not exist yet, watched
    /// through the nearest folder that does.
    awaited: BTreeSet<PathBuf>,
    /// Wanted files (as resolved) whose folder does not exist.
    missing: BTreeSet<PathBuf>,
    /// Folders that could not be watched (reported once).
    failed: BTreeSet<PathBuf>,
}

/// The nearest ancestor of `dir` that exists (canonical), and its child
/// on the way to `dir`.
fn nearest_existing(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let mut child = dir;
    for up in dir.ancestors().skip(1) {
        if let Ok(found) = up.canonicalize() {
            return Some((found.clone(), found.join(child.file_name()?)));
        }
        child = up;
    }
    None
}

impl LibraryWatch {
    /// A watch beside the recursive one on `roots` (canonical paths).
    pub fn new(roots: Vec<PathBuf>) -> LibraryWatch {
        LibraryWatch {
            roots,
            ..LibraryWatch::default()
        }
    }

    /// Watches the library folders of `running` (plugin folder and the
    /// version running from it) and stops watching the others. Returns the
    /// wanted files (as resolved) whose folder did not exist at the last
    /// sync and that are there now: they may have been written before
    /// their folder was watched.
    pub fn sync(&mut self, w: &mut Watcher, running: &[(PathBuf, PluginDef)]) -> Vec<PathBuf> {
        let mut files: BTreeMap<PathBuf, (PathBuf, BTreeSet<PathBuf>)> = BTreeMap::new();
        let mut dirs = BTreeSet::new();
        let mut awaited = BTreeSet::new();
        let mut missing = BTreeSet::new();
        for (folder, def) in running {
            for file in candidates(def) {
                let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
                    continue;
                };
                let mut forms = vec![file.clone()];
                match parent.canonicalize() {
                    Ok(dir) => {
                        forms.push(dir.join(name));
                        if self.may_watch(&dir) {
                            dirs.insert(dir);
                        }
                    }
                    Err(_) => {
                        // Not built in this profile yet, or `cargo clean`
                        // removed it: watch for the next missing folder to
                        // appear in the nearest one that exists.
                        missing.insert(file.clone());
                        if let Some((up, next)) = nearest_existing(parent)
                            && self.may_watch(&up)
                        {
                            awaited.insert(next);
                            dirs.insert(up);
                        }
                    }
                }
                for form in forms {
                    files
                        .entry(form)
                        .or_insert_with(|| (file.clone(), BTreeSet::new()))
                        .1
                        .insert(folder.clone());
                }
            }
        }
        let gone: Vec<PathBuf> = self.watched.difference(&dirs).cloned().collect();
        for dir in &gone {
            w.unwatch_dir(dir);
            self.watched.remove(dir);
        }
        for dir in &dirs {
            // Unwatching a folder may drop the watches below it (one
            // watch per folder, shared): watching one again restores it.
            let again = gone.iter().any(|g| dir.starts_with(g));
            if self.watched.contains(dir) && !again {
                continue;
            }
            match w.watch_dir(dir) {
                Ok(()) => {
                    self.watched.insert(dir.clone());
                    self.failed.remove(dir);
                }
                Err(e) => {
                    if self.failed.insert(dir.clone()) {
                        tracing::warn!(
                            "file watcher: cannot watch {} for native libraries: {e}",
                            dir.display()
                        );
                    }
                }
            }
        }
        let appeared = files
            .values()
            .map(|(file, _)| file)
            .filter(|file| self.missing.contains(*file) && !missing.contains(*file))
            .filter(|file| file.is_file())
            .cloned()
            .collect::<BTreeSet<_>>();
        self.files = files;
        self.awaited = awaited;
        self.missing = missing;
        appeared.into_iter().collect()
    }

    /// Whether `dir` (canonical) gets a watch of its own: not when it lies
    /// in a plugins directory, which is watched recursively already.
    fn may_watch(&self, dir: &Path) -> bool {
        !self.roots.iter().any(|r| dir.starts_with(r))
    }

    /// What a changed `path` is to the library watch.
    pub fn classify(&self, path: &Path) -> Hit {
        if let Some((file, folders)) = self.files.get(path) {
            return Hit::Library(file.clone(), folders.clone());
        }
        // A folder awaited appeared, or a watched one went (`cargo clean`).
        if self.awaited.contains(path) || self.watched.contains(path) {
            return Hit::Awaited;
        }
        if path.parent().is_some_and(|p| self.watched.contains(p)) {
            return Hit::Ignored;
        }
        Hit::None
    }
}

/// The native plugins whose libraries are watched, with the version to
/// watch for: every running one, and every enabled one that is not running
/// although its folder is known (its library is not built yet, or it failed
/// to load or `init`), so that a build starts it. For the latter the
/// library is where it is now, or where the first build will put it.
pub fn watched_native(host: &crate::host::Host) -> Vec<(PathBuf, PluginDef)> {
    let all = host.inner.plugins.all();
    let mut list: Vec<(PathBuf, PluginDef)> = all
        .iter()
        .filter(|v| v.def.runtime == RuntimeKind::Native)
        .map(|v| (v.dir.clone(), v.def.clone()))
        .collect();
    let running: BTreeSet<PathBuf> = all.into_iter().map(|v| v.dir).collect();
    for dir in host.known_folders() {
        if running.contains(&dir) {
            continue;
        }
        if let Some(def) = awaited_native(host, &dir) {
            list.push((dir, def));
        }
    }
    list
}

/// The version a stopped native plugin in `dir` would start, for an enabled
/// plugin whose `entry` names a crate: its library as resolved, or where a
/// release build will write it.
fn awaited_native(host: &crate::host::Host, dir: &Path) -> Option<PluginDef> {
    let path = dir.join(crate::discovery::MANIFEST_FILE);
    let manifest = crate::manifest::parse_file(&path).ok()?;
    let entry = manifest.entry.clone().filter(|e| is_crate_name(e))?;
    if manifest.effective_runtime() != Some(RuntimeKind::Native)
        || !host.effective_enabled(dir, manifest.enabled)
    {
        return None;
    }
    let library = plughost_bindings::native::resolve_entry(dir, &entry)
        .ok()
        .or_else(|| plughost_bindings::native::locate::expected_library(dir, &entry))?;
    Some(PluginDef {
        manifest,
        dir: dir.to_path_buf(),
        runtime: RuntimeKind::Native,
        entry: library,
    })
}

/// What identifies one version of a file: its size, time and (on Unix) inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The file's stamp, `None` when it is not there.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// Waits until `path` exists and two looks [`STABLE`] apart see the same
/// stamp, for at most [`STABLE_LIMIT`]; returns the last stamp seen.
pub async fn settle(path: &Path) -> Option<Stamp> {
    settle_within(path, STABLE_LIMIT).await
}

async fn settle_within(path: &Path, limit: Duration) -> Option<Stamp> {
    let deadline = Instant::now() + limit;
    let mut last = stamp(path);
    loop {
        tokio::time::sleep(STABLE).await;
        let now = stamp(path);
        if (now.is_some() && now == last) || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}

/// Whether a change of the libraries `changed` of plugin folder `dir`
/// calls for a reload, once they are complete.
///
/// Waits for each changed file to hold still, then finds the library the
/// folder resolves to now (a crate's newer build wins). `last` is what the
/// library flow loaded for this folder before (file and stamp): the same
/// file unchanged needs no reload (a second event of one build). Otherwise
/// the library is tried: one that fails to load is tried again a few times
/// while a build may still be finishing, and then the reload goes ahead all
/// the same to report the error. Returns the file and stamp to reload with,
/// or `None` for no reload.
pub async fn ready(
    dir: &Path,
    changed: &BTreeSet<PathBuf>,
    last: Option<&(PathBuf, Stamp)>,
) -> Option<(PathBuf, Option<Stamp>)> {
    for file in changed {
        settle(file).await;
    }
    let mut tries = 0;
    loop {
        let entry = read_entry(dir.to_path_buf());
        // A broken folder or a missing library: the reload reports it.
        let Some(def) = entry.def.filter(|d| d.runtime == RuntimeKind::Native) else {
            return Some((dir.to_path_buf(), None));
        };
        let now = stamp(&def.entry);
        if let (Some((file, seen)), Some(now)) = (last, now)
            && *file == def.entry
            && *seen == now
        {
            return None;
        }
        let spec = def.spec(serde_json::Value::Null);
        let errors = tokio::task::spawn_blocking(move || plughost_bindings::native::check(&spec))
            .await
            .unwrap_or_default();
        if errors.is_empty() || tries >= LOAD_RETRIES {
            return Some((def.entry, now));
        }
        tries += 1;
        tracing::debug!(
            library = %def.entry.display(),
            "the rebuilt library does not load yet, trying again: {}",
            errors[0]
        );
        tokio::time::sleep(STABLE).await;
        settle(&def.entry).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn native(dir: &Path, entry: &str, resolved: &Path) -> PluginDef {
        let yaml = format!("name: p\nversion: 1.0.0\nruntime: native\nentry: {entry}\n");
        let manifest = crate::manifest::parse(&dir.join("plugin.yaml"), &yaml)
            .unwrap_or_else(|e| panic!("{e:?}"));
        PluginDef {
            manifest,
            dir: dir.to_path_buf(),
            runtime: RuntimeKind::Native,
            entry: resolved.to_path_buf(),
        }
    }

    #[test]
    fn a_crate_is_watched_in_both_profiles_a_path_alone() {
        let lib = Path::new("/t/debug/libp.so");
        let def = native(Path::new("/plugins/p"), "p", lib);
        assert_eq!(
            candidates(&def),
            [lib.to_path_buf(), PathBuf::from("/t/release/libp.so")]
        );
        let def = native(
            Path::new("/plugins/p"),
            "p",
            Path::new("/t/release/libp.so"),
        );
        assert_eq!(candidates(&def)[1], PathBuf::from("/t/debug/libp.so"));
        let path = Path::new("/plugins/p/lib/libp.so");
        let def = native(Path::new("/plugins/p"), "lib/libp.so", path);
        assert_eq!(candidates(&def), [path.to_path_buf()]);
        let mut lua = def.clone();
        lua.runtime = RuntimeKind::Lua;
        assert!(candidates(&lua).is_empty());
    }

    #[test]
    fn library_folders_are_watched_and_awaited() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let plugins = base.join("plugins");
        let target = base.join("target");
        std::fs::create_dir_all(plugins.join("p/lib")).unwrap();
        std::fs::create_dir_all(target.join("debug")).unwrap();
        let debug = target.join("debug/libp.so");
        std::fs::write(&debug, "").unwrap();
        let inside = plugins.join("q/lib/libq.so");

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut w = super::super::watcher::watch(std::slice::from_ref(&plugins), tx).unwrap();
        let mut lw = LibraryWatch::new(vec![plugins.clone()]);
        let running = vec![
            (plugins.join("p"), native(&plugins.join("p"), "p", &debug)),
            (
                plugins.join("q"),
                native(&plugins.join("q"), "lib/libq.so", &inside),
            ),
        ];
        assert!(lw.sync(&mut w, &running).is_empty());
        // target/debug watched; release/ awaited through target/; the
        // folder inside the plugins directory is watched already.
        assert_eq!(
            lw.watched,
            BTreeSet::from([target.clone(), target.join("debug")])
        );
        assert_eq!(lw.awaited, BTreeSet::from([target.join("release")]));
        let p = BTreeSet::from([plugins.join("p")]);
        assert_eq!(lw.classify(&debug), Hit::Library(debug.clone(), p.clone()));
        assert_eq!(
            lw.classify(&inside),
            Hit::Library(inside.clone(), BTreeSet::from([plugins.join("q")]))
        );
        assert_eq!(lw.classify(&target.join("release")), Hit::Awaited);
        assert_eq!(lw.classify(&target.join("debug/libp.d")), Hit::Ignored);
        assert_eq!(lw.classify(&plugins.join("p/main.lua")), Hit::None);

        // The first release build: its folder appears with the library in it.
        let release = target.join("release/libp.so");
        std::fs::create_dir_all(release.parent().unwrap()).unwrap();
        std::fs::write(&release, "").unwrap();
        assert_eq!(lw.sync(&mut w, &running), std::slice::from_ref(&release));
        assert_eq!(
            lw.watched,
            BTreeSet::from([target.join("debug"), target.join("release")])
        );
        assert_eq!(lw.classify(&release), Hit::Library(release.clone(), p));

        // `cargo clean`: the folders go, the nearest one left is watched
        // (it holds the plugins directory, which must stay watched).
        std::fs::remove_dir_all(&target).unwrap();
        assert_eq!(lw.classify(&target.join("debug")), Hit::Awaited);
        assert!(lw.sync(&mut w, &running).is_empty());
        assert_eq!(lw.watched, BTreeSet::from([base.clone()]));
        assert_eq!(lw.awaited, BTreeSet::from([target.clone()]));
        assert_eq!(lw.classify(&target), Hit::Awaited);
        // The next build: the library is there by the time of the sync.
        std::fs::create_dir_all(target.join("debug")).unwrap();
        std::fs::write(&debug, "").unwrap();
        assert_eq!(lw.sync(&mut w, &running), std::slice::from_ref(&debug));
        assert!(lw.watched.contains(&target.join("debug")));
        assert!(!lw.watched.contains(&base));

        // The plugin stops: nothing is watched any more.
        assert!(lw.sync(&mut w, &running[1..]).is_empty());
        assert!(lw.watched.is_empty());
        assert_eq!(lw.classify(&debug), Hit::None);

        // The plugins directory is still watched after its parent was
        // watched and unwatched.
        while rx.try_recv().is_ok() {}
        std::fs::write(plugins.join("p/main.lua"), "-- saved\n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let seen = loop {
            match rx.try_recv() {
                Ok((_, changes)) if changes.iter().any(|(p, _)| p.ends_with("p/main.lua")) => {
                    break true;
                }
                _ if Instant::now() > deadline => break false,
                _ => std::thread::sleep(Duration::from_millis(10)),
            }
        };
        assert!(seen, "no event from the plugins directory");
    }

    #[tokio::test]
    async fn settling_waits_for_the_writer_to_finish() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("libx.so");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(&path).unwrap();
                for _ in 0..8 {
                    f.write_all(&[7; 4096]).unwrap();
                    f.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let settled = settle(&path).await.expect("the file is there");
        writer.join().unwrap();
        assert_eq!(settled.len, 8 * 4096);
        assert_eq!(Some(settled), stamp(&path));
    }

    #[tokio::test]
    async fn settling_a_missing_file_gives_up_at_the_limit() {
        let limit = Duration::from_millis(200);
        let started = Instant::now();
        let missing = Path::new("/nonexistent/libx.so");
        assert_eq!(settle_within(missing, limit).await, None);
        assert!(started.elapsed() >= limit);
    }
}
