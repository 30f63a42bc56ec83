//! `plughost list`: what is installed, as a table or as JSON.
//!
//! A plugin whose manifest has errors still shows the `name` and `version`
//! it declares when those are valid ([`crate::catalog::declared_name`]).

use serde::Serialize;

use crate::catalog::Catalog;

/// One row of `plughost list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The plugin's name (`null` when its manifest declares no valid name).
    pub name: Option<String>,
    /// Its version.
    pub version: Option<String>,
    /// Its runtime.
    pub runtime: Option<String>,
    /// Whether it is enabled.
    pub enabled: Option<bool>,
    /// Its subscription patterns.
    pub subscriptions: Vec<String>,
    /// The plugin folder.
    pub path: String,
    /// Everything wrong with it.
    pub errors: Vec<String>,
}

/// The rows of a catalog, in discovery order.
pub fn rows(catalog: &Catalog) -> Vec<Row> {
    catalog
        .entries
        .iter()
        .map(|e| {
            let def = e.def.as_ref();
            let (name, version) = match def {
                Some(d) => (
                    Some(d.manifest.name.clone()),
                    Some(d.manifest.version.to_string()),
                ),
                None => crate::catalog::declared_name_of(&e.manifest_path),
            };
            Row {
                name,
                version,
                runtime: def.map(|d| d.runtime.to_string()),
                enabled: def.map(|d| d.manifest.enabled),
                subscriptions: def
                    .map(|d| {
                        d.manifest
                            .subscriptions
                            .iter()
                            .map(|p| p.to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
                path: e.dir.display().to_string(),
                errors: e.errors.clone(),
            }
        })
        .collect()
}

/// The rows as an aligned text table, errors indented under their plugin.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone().unwrap_or_else(|| format!("? ({})", r.path)),
                r.version.clone().unwrap_or_else(|| "-".into()),
                r.runtime.clone().unwrap_or_else(|| "-".into()),
                r.enabled
                    .map_or("-".into(), |e| if e { "yes".into() } else { "no".into() }),
                if r.subscriptions.is_empty() {
                    "-".into()
                } else {
                    r.subscriptions.join(", ")
                },
            ]
        })
        .collect();
    let header = ["NAME", "VERSION", "RUNTIME", "ENABLED", "SUBSCRIPTIONS"];
    let mut width = header.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.len());
        }
    }
    let line = |c: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in c.iter().zip(width).enumerate() {
            if i == 4 {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header);
    for (row, c) in rows.iter().zip(&cells) {
        out.push_str(&line([&c[0], &c[1], &c[2], &c[3], &c[4]]));
        for e in &row.errors {
            out.push_str(&format!("  error: {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_with_errors_elsewhere_shows_its_name_and_version() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("folder");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join("plugin.yaml"),
            "name: greeter\nversion: 2.0.0\nlimits: {queue: lots}\n",
        )
        .unwrap();
        std::fs::write(dir.join("main.lua"), "").unwrap();
        let catalog = Catalog::load(&[tmp.path().to_path_buf()]).unwrap();
        let rows = rows(&catalog);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name.as_deref(), Some("greeter"));
        assert_eq!(rows[0].version.as_deref(), Some("2.0.0"));
        assert_eq!(rows[0].runtime, None);
        assert!(!rows[0].errors.is_empty());
        let table = table(&rows);
        assert!(
            table.lines().nth(1).unwrap().starts_with("greeter  2.0.0"),
            "{table}"
        );
    }
}
