//! Live reload: turns file changes under the plugins directories into reloads.
//!
//! Raw events from the watcher become changes (`events`: a file closed
//! after writing or renamed into place ends a save) and are settled per
//! plugin folder, so a folder is due a few milliseconds after a save ends,
//! or after a quiet period when no end is seen, and an editor's
//! write-rename-chmod burst yields one reload. What an event means is
//! `events`, *when* a folder is due is `settle` and *what* to do (reload,
//! reconfigure, load, unload) is `plan::plan`, all pure and tested on
//! their own (`settle` with a hand-driven clock, `events` with editors'
//! event sequences); `watcher` only watches, and `apply` carries a plan out. A failed reload never touches
//! the running version: the old interpreter keeps handling events.

pub(crate) mod apply;
pub(crate) mod events;
pub(crate) mod fingerprint;
pub(crate) mod library;
pub(crate) mod plan;
pub(crate) mod seen;
pub(crate) mod settle;
pub(crate) mod state;
pub(crate) mod toggle;
pub(crate) mod watcher;

pub use apply::{ReloadOutcome, WatchHandle};
pub use state::{LiveState, ReloadRecord};
pub use toggle::ToggleError;
