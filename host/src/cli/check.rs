//! `plughost check`: validate manifests and compile scripts, run nothing.

use std::path::PathBuf;

use crate::catalog::Catalog;

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
