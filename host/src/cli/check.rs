//! `plughost check`: validate manifests and compile scripts, run nothing.

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;

/// `plughost check [DIR]... [--config FILE]`: the host config's problems
/// (with `config`), then every plugin's under `dirs`, else the config's
/// `plugins`, else `./plugins`.
pub fn check_with_config(
    dirs: Vec<PathBuf>,
    config: Option<&Path>,
) -> Result<(usize, Vec<String>), crate::discovery::DiscoveryError> {
    let mut problems = Vec::new();
    let host_config = match config.map(crate::config::load) {
        None => crate::config::HostConfig::default(),
        Some(Ok(c)) => c,
        Some(Err(errors)) => {
            problems.extend(errors.iter().map(ToString::to_string));
            if dirs.is_empty() {
                // Its `plugins` are unknown: the config's problems are all.
                return Ok((0, problems));
            }
            crate::config::HostConfig::default()
        }
    };
    let (count, more) = check(&host_config.plugins_dirs(dirs))?;
    problems.extend(more);
    Ok((count, problems))
}

/// Every problem found under `dirs`, one `file:line:col: message` per item,
/// and the number of plugins looked at. Fails only when a directory cannot
/// be searched.
pub fn check(dirs: &[PathBuf]) -> Result<(usize, Vec<String>), crate::discovery::DiscoveryError> {
    let catalog = Catalog::load(dirs)?;
    let mut problems: Vec<String> = Vec::new();
    for entry in &catalog.entries {
        problems.extend(entry.errors.iter().cloned());
        if let Some(def) = &entry.def {
            let spec = def.spec(serde_json::Value::Null);
            problems.extend(
                plughost_bindings::check(&spec)
                    .iter()
                    .map(ToString::to_string),
            );
        }
    }
    Ok((catalog.entries.len(), problems))
}
