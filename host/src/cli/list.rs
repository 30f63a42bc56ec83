//! `plughost list`: what is installed, as a table or as JSON.

use serde::Serialize;

use crate::catalog::Catalog;

/// One row of `plughost list`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    /// The plugin's name (`null` when its manifest has no valid name).
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
            Row {
                name: def.map(|d| d.manifest.name.clone()),
                version: def.map(|d| d.manifest.version.to_string()),
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
