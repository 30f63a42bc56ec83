//! Live reload: turns file changes under the plugins directories into reloads.
//!
//! Events from the watcher are debounced per path and then settled per
//! plugin folder, so an editor's write-rename-chmod burst yields one reload.
//! Deciding *when* a folder is due is `settle` and *what* to do (reload,
//! reconfigure, load, unload) is `plan::plan`, both pure and tested on
//! their own (the first with a hand-driven clock); `watcher` only
//! watches, and `apply` carries a plan out. A failed reload never touches
//! the running version: the old interpreter keeps handling events.

pub(crate) mod apply;
pub(crate) mod fingerprint;
pub(crate) mod library;
pub(crate) mod plan;
pub(crate) mod settle;
pub(crate) mod state;
pub(crate) mod toggle;
pub(crate) mod watcher;

pub use apply::{ReloadOutcome, WatchHandle};
pub use state::{LiveState, ReloadRecord};
pub use toggle::ToggleError;
