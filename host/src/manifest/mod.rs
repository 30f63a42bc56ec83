//! Plugin manifests: the text of a `plugin.yaml` in, a typed [`Manifest`] or positioned errors out.
//!
//! This module owns the meaning of every manifest key (SPEC §2): types,
//! defaults, and the rules a value must follow. It does no I/O beyond
//! [`parse_file`]'s one read; whether the entry file exists, whether
//! dependencies are present, and which `main.*` decides an unset runtime are
//! for discovery, which has the folder. To let it report those problems at the
//! right place, a manifest keeps the position of every key that was written
//! ([`Manifest::positions`]).
//!
//! Parsing happens in two steps. `raw` reads the YAML into a tree of nodes that
//! each know their line and column; `validate` then walks that tree and turns
//! it into a [`Manifest`], collecting every problem rather than stopping at the
//! first, so an author fixing a file sees all of its mistakes at once, in file
//! order, each printed as `file:line:col: message`.
//!
//! # Example
//!
//! ```
//! use std::path::Path;
//! use plughost::manifest;
//!
//! let text = "name: greeter\nversion: 1.0.0\nsubscriptions: [text.raw]\n";
//! let m = manifest::parse(Path::new("plugins/greeter/plugin.yaml"), text).unwrap();
//! assert_eq!(m.name, "greeter");
//! assert_eq!(m.limits.queue, 1024);
//!
//! let errors = manifest::parse(Path::new("plugin.yaml"), "name: greeter\nversion: 1.0\n").unwrap_err();
//! assert_eq!(
//!     errors[0].to_string(),
//!     "plugin.yaml:2:10: version `1.0` is not semver (expected MAJOR.MINOR.PATCH, e.g. 1.0.0)"
//! );
//! ```

pub mod edit;
mod limits;
pub(crate) mod raw;
mod schema;
pub(crate) mod suggest;
#[cfg(test)]
mod tests;
mod validate;
pub(crate) mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use plughost_bindings::RuntimeKind;

use crate::topic::Pattern;

pub use limits::{Limits, Overflow, Retry, Supervision};

/// Whether `name` is a valid plugin name, `[a-z0-9][a-z0-9_-]{0,63}`.
pub fn is_valid_name(name: &str) -> bool {
    validate::is_valid_name(name)
}

/// The name of the manifest file that makes a folder a plugin.
pub const FILE_NAME: &str = "plugin.yaml";

/// A place in the manifest text: 1-based line and column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Line, starting at 1.
    pub line: usize,
    /// Column, starting at 1, counted in characters.
    pub column: usize,
}

impl Position {
    /// A position from a 1-based line and column.
    pub const fn new(line: usize, column: usize) -> Self {
        Position { line, column }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where each key that was written in the manifest starts.
///
/// Top-level keys are named as written (`entry`, `config`); keys under
/// `limits:`, `retry:` and `supervision:` are dotted (`limits.queue`). Keys that were left
/// out, and unknown keys, have no position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPositions {
    keys: BTreeMap<String, Position>,
}

impl KeyPositions {
    /// The position of `key` (`"entry"`, `"limits.queue"`), if it was written.
    pub fn get(&self, key: &str) -> Option<Position> {
        self.keys.get(key).copied()
    }

    /// Every written key with its position, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Position)> {
        self.keys.iter().map(|(k, p)| (k.as_str(), *p))
    }

    fn insert(&mut self, key: impl Into<String>, position: Position) {
        self.keys.insert(key.into(), position);
    }
}

/// A validated `plugin.yaml`. Every field holds its default when the key was left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Unique plugin name, `[a-z0-9][a-z0-9_-]{0,63}`.
    pub name: String,
    /// Plugin version.
    pub version: semver::Version,
    /// One-line description; `""` when left out.
    pub description: String,
    /// The runtime as written; `None` when left out (see [`Manifest::effective_runtime`]).
    pub runtime: Option<RuntimeKind>,
    /// The entry file as written, relative to the plugin folder; `None` when left out.
    pub entry: Option<String>,
    /// Whether the plugin is started; a disabled plugin is still discovered and listed.
    pub enabled: bool,
    /// Patterns of the topics the plugin receives.
    pub subscriptions: Vec<Pattern>,
    /// When given, the only topics the plugin may publish on; `None` means anywhere.
    pub publications: Option<Vec<Pattern>>,
    /// Plugins that must be started before this one, in the order written.
    pub dependencies: Vec<Dependency>,
    /// The plugin's own configuration; always a JSON object, `{}` by default,
    /// with the `default`s of `config_schema` filled in.
    pub config: serde_json::Value,
    /// The JSON Schema `config` was checked against (`config_schema`), if any.
    pub config_schema: Option<serde_json::Value>,
    /// Resource limits.
    pub limits: Limits,
    /// Redelivery settings for `outcome.retry`.
    pub retry: Retry,
    /// How the host supervises the plugin (SPEC §12).
    pub supervision: Supervision,
    /// `cluster.shared`: with a cluster (SPEC §14), each event for this
    /// plugin is handled by one of the hosts running it (a NATS queue group
    /// named after it), not by every host.
    pub shared: bool,
    /// Where each written key starts, for errors raised later (say, a missing entry file).
    pub positions: KeyPositions,
}

impl Manifest {
    /// The runtime that runs the plugin as far as the manifest tells: `runtime`,
    /// else the one `entry`'s extension implies (`.lua`, `.rhai`).
    ///
    /// `None` when both were left out: the folder's `main.lua` or `main.rhai` decides.
    pub fn effective_runtime(&self) -> Option<RuntimeKind> {
        self.runtime
            .or_else(|| self.entry.as_deref().and_then(runtime_from_entry))
    }
}

/// The script runtime an entry path's extension implies, case-insensitively.
fn runtime_from_entry(entry: &str) -> Option<RuntimeKind> {
    let ext = Path::new(entry).extension()?.to_str()?;
    RuntimeKind::from_extension(&ext.to_ascii_lowercase())
}

/// One entry of `dependencies`: a plugin that must be started first.
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    /// The name of the plugin depended on.
    pub name: String,
    /// The versions accepted; `None` for any version.
    pub req: Option<semver::VersionReq>,
    /// Where the dependency is written (its name), for "missing dependency" errors.
    pub position: Position,
}

/// A problem with a manifest: file, position when known, and a one-line message.
///
/// Displays as `file:line:col: message`, or `file: message` without a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", location(.file, .position))]
pub struct ManifestError {
    /// The manifest file, as the caller named it.
    pub file: PathBuf,
    /// Where in the file, when the problem has a place.
    pub position: Option<Position>,
    /// What is wrong, on one line.
    pub message: String,
}

impl ManifestError {
    /// An error in `file` at `position` (or about the whole file).
    pub fn new(
        file: impl Into<PathBuf>,
        position: Option<Position>,
        message: impl Into<String>,
    ) -> Self {
        ManifestError {
            file: file.into(),
            position,
            message: message.into(),
        }
    }
}

fn location(file: &Path, position: &Option<Position>) -> String {
    match position {
        Some(p) => format!("{}:{}", file.display(), p),
        None => file.display().to_string(),
    }
}

/// Parses and validates the text of a manifest; `file` only names it in errors.
///
/// On failure, returns every problem found, in file order (problems about the
/// whole file, like a missing `name`, first). A YAML syntax error stops
/// parsing and is the only error.
pub fn parse(file: &Path, text: &str) -> Result<Manifest, Vec<ManifestError>> {
    let to_error = |pos, message| ManifestError::new(file, pos, message);
    let root = raw::read(text).map_err(|e| vec![to_error(e.pos, e.message)])?;
    validate::manifest(&root, text).map_err(|problems| {
        problems
            .into_iter()
            .map(|p| to_error(p.pos, p.message))
            .collect()
    })
}

/// Reads `path` and parses it; an unreadable file is one error without a position.
///
/// At most one byte over the size limit is read: a huge file is refused
/// without being held in memory.
pub fn parse_file(path: &Path) -> Result<Manifest, Vec<ManifestError>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(raw::MAX_BYTES as u64 + 1).read_to_string(&mut text))
        .map_err(|e| {
            vec![ManifestError::new(
                path,
                None,
                format!("cannot read the manifest: {e}"),
            )]
        })?;
    parse(path, &text)
}
