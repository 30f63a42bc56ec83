//! The [`Session`] helper: a running `plughost run` with live reload on,
//! watching a fixture's plugins directory, with the waits a test needs and
//! the barrier that proves every earlier change was handled; and the ways an
//! editor saves a file (in place, atomic rename, vim's backup dance).

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::live::Live;
use crate::support::{Fixture, Run, Runtime, ev};

/// The plugin whose manifest is touched to prove the watcher has handled
/// every earlier change. Its folder sorts after every other plugin's.
const BARRIER: &str = "zz-barrier";

/// A running `plughost run` with live reload on, the plugins directory it
/// watches, and the runtime the plugins are written in.
pub(super) struct Session {
    pub(super) fx: Fixture,
    pub(super) live: Live,
    rt: Runtime,
    barriers: u32,
}

impl Session {
    /// Writes the plugins with `setup`, adds the barrier plugin, runs
    /// `plughost run --input - --tap '>'` (plus `extra`) and waits until the
    /// host reads input, which it does only once the watcher runs.
    pub(super) fn start(rt: Runtime, setup: impl FnOnce(&Fixture)) -> Session {
        Self::start_with(rt, &[], setup)
    }

    pub(super) fn start_with(rt: Runtime, extra: &[&str], setup: impl FnOnce(&Fixture)) -> Session {
        let fx = Fixture::new();
        setup(&fx);
        fx.plugin(rt, BARRIER, "", "");
        let dir = fx.path().to_str().unwrap().to_owned();
        let mut args = vec!["run", "--plugins", &dir, "--input", "-", "--tap", ">"];
        args.extend_from_slice(extra);
        let mut live = Live::spawn(&args);
        live.send(&ev("ping", json!({})));
        live.wait_for("the first input line tapped", |e| e["topic"] == "ping");
        Session {
            fx,
            live,
            rt,
            barriers: 0,
        }
    }

    /// A path under the plugins directory.
    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.fx.path().join(rel)
    }

    /// The entry script of plugin `name`.
    pub(super) fn entry(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}/{}", self.rt.entry()))
    }

    pub(super) fn send(&mut self, topic: &str, payload: Value) {
        self.live.send(&ev(topic, payload));
    }

    /// Waits for a tapped event matching `pred` (already read or to come).
    pub(super) fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.live.wait_for(what, pred)
    }

    /// Waits until `n` tapped events in all match `pred`; returns the `n`th.
    pub(super) fn wait_nth(
        &mut self,
        what: &str,
        n: usize,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        // `wait_for` offers each event to the predicate once: the ones read
        // so far, then each new one, and stops at the first `true`.
        let seen = Cell::new(0);
        self.live.wait_for(&format!("{what} (#{n})"), |e| {
            if pred(e) {
                seen.set(seen.get() + 1);
            }
            seen.get() >= n
        })
    }

    /// Waits for the `n`th `plughost.plugin.<what>` about `plugin`; returns its payload.
    pub(super) fn wait_host(&mut self, what: &str, plugin: &str, n: usize) -> Value {
        let topic = format!("plughost.plugin.{what}");
        self.wait_nth(&format!("{topic} for {plugin}"), n, |e| {
            e["topic"] == topic.as_str() && e["payload"]["plugin"] == plugin
        })["payload"]
            .clone()
    }

    /// Tapped events read so far matching `pred`.
    pub(super) fn seen(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.live.events().into_iter().filter(|e| pred(e)).collect()
    }

    /// Payloads read so far on `topic`.
    pub(super) fn payloads(&self, topic: &str) -> Vec<Value> {
        self.seen(|e| e["topic"] == topic)
            .into_iter()
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// `plughost.plugin.<what>` events about `plugin` read so far.
    pub(super) fn host_events(&self, what: &str, plugin: &str) -> usize {
        let topic = format!("plughost.plugin.{what}");
        self.seen(|e| e["topic"] == topic.as_str() && e["payload"]["plugin"] == plugin)
            .len()
    }

    /// Position in the tap of the first event matching `pred`.
    pub(super) fn position(&self, what: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.live
            .events()
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{what} not tapped; so far:\n{}", self.dump()))
    }

    /// Saves the barrier plugin's manifest with a new version and waits for
    /// its reload: every change made before has been handled by then.
    ///
    /// The manifest is written and kept open until the reload is seen, so
    /// no close ends the save: the barrier waits for the quiet period, the
    /// longest wait of any change (a save that ends waits less), and a
    /// change made before it is never still waiting when it is handled.
    pub(super) fn barrier(&mut self) {
        self.barriers += 1;
        let version = format!("1.0.{}", self.barriers);
        let path = self.path(&format!("{BARRIER}/plugin.yaml"));
        let mut open = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        open.write_all(format!("name: {BARRIER}\nversion: {version}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        self.wait(&format!("the barrier's reload to {version}"), |e| {
            e["topic"] == "plughost.plugin.reloaded"
                && e["payload"]["plugin"] == BARRIER
                && e["payload"]["version"] == version.as_str()
        });
        drop(open);
    }

    pub(super) fn dump(&self) -> String {
        self.live
            .events()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the host with SIGTERM and returns everything it printed.
    pub(super) fn finish(self) -> Run {
        self.live.signal("TERM");
        self.live.finish()
    }
}

/// A plain save: the file is truncated and written in place.
pub(super) fn save(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// An atomic save (gedit, IntelliJ, VS Code's safe write): a temp file in
/// the same folder, then renamed over the original.
pub(super) fn save_atomic(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!(".{name}.goutputstream-4KZQ1"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

/// vim's save with `backupcopy=no`: probe with `4913`, move the original to
/// `NAME~`, write a new file, delete the backup.
pub(super) fn save_vim(path: &Path, text: &str) {
    let probe = path.with_file_name("4913");
    std::fs::write(&probe, "").unwrap();
    std::fs::remove_file(&probe).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let backup = path.with_file_name(format!("{name}~"));
    std::fs::rename(path, &backup).unwrap();
    save(path, text);
    std::fs::remove_file(&backup).unwrap();
}
