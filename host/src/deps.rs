//! Dependency resolution: which plugins can start, and in what order.
//!
//! Pure: plugin names, versions and `dependencies` in; a start order and the
//! errors that name the plugins out. A plugin with a missing, disabled,
//! unsatisfied or cyclic dependency does not start, and neither does anything
//! that depends on it; every other plugin still does.

use std::collections::{BTreeMap, BTreeSet};

use semver::Version;

use crate::manifest::Dependency;

/// One plugin as dependency resolution sees it.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    /// Unique name.
    pub name: &'a str,
    /// Its version.
    pub version: &'a Version,
    /// Whether it will be started.
    pub enabled: bool,
    /// What it needs started first.
    pub dependencies: &'a [Dependency],
}

/// Why a plugin cannot start because of its dependencies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepError {
    /// No plugin has that name (or it failed to load).
    #[error("plugin `{plugin}` depends on `{dependency}`, which was not found")]
    Missing {
        /// The dependent plugin.
        plugin: String,
        /// The missing one.
        dependency: String,
    },
    /// The dependency is `enabled: false`.
    #[error("plugin `{plugin}` depends on `{dependency}`, which is disabled")]
    Disabled {
        /// The dependent plugin.
        plugin: String,
        /// The disabled one.
        dependency: String,
    },
    /// The dependency's version does not satisfy the requirement.
    #[error("plugin `{plugin}` needs `{dependency}` {requirement}, but found version {found}")]
    Version {
        /// The dependent plugin.
        plugin: String,
        /// The dependency.
        dependency: String,
        /// The requirement as written.
        requirement: String,
        /// The version found.
        found: String,
    },
    /// The plugin is part of a dependency cycle.
    #[error("plugin `{plugin}` is in a dependency cycle: {}", cycle.join(" -> "))]
    Cycle {
        /// The plugin.
        plugin: String,
        /// The cycle, starting and ending at the same plugin.
        cycle: Vec<String>,
    },
    /// A dependency cannot start, so neither can this plugin.
    #[error("plugin `{plugin}` depends on `{dependency}`, which cannot start")]
    Blocked {
        /// The dependent plugin.
        plugin: String,
        /// The dependency that cannot start.
        dependency: String,
    },
}

impl DepError {
    /// The dependency the error is about, as written in the manifest (for a
    /// cycle, the plugin's next one on the cycle), so the error can point at
    /// its line.
    pub fn dependency(&self) -> &str {
        match self {
            DepError::Missing { dependency, .. }
            | DepError::Disabled { dependency, .. }
            | DepError::Version { dependency, .. }
            | DepError::Blocked { dependency, .. } => dependency,
            DepError::Cycle { cycle, .. } => cycle.get(1).map_or("", String::as_str),
        }
    }
}

/// The result of resolution.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Indices of the enabled plugins that can start, dependencies first.
    pub order: Vec<usize>,
    /// Errors by plugin index.
    pub errors: BTreeMap<usize, Vec<DepError>>,
}

/// Orders `nodes` so every plugin comes after its dependencies.
///
/// Ties keep the input order, so the start order is stable.
pub fn resolve(nodes: &[Node<'_>]) -> Resolution {
    let index: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (n.name, i)).collect();
    let mut res = Resolution::default();
    for (i, node) in nodes.iter().enumerate() {
        if !node.enabled {
            continue;
        }
        for dep in node.dependencies {
            let err = match index.get(dep.name.as_str()) {
                None => Some(DepError::Missing {
                    plugin: node.name.into(),
                    dependency: dep.name.clone(),
                }),
                Some(&j) if !nodes[j].enabled => Some(DepError::Disabled {
                    plugin: node.name.into(),
                    dependency: dep.name.clone(),
                }),
                Some(&j) => match &dep.req {
                    Some(req) if !req.matches(nodes[j].version) => Some(DepError::Version {
                        plugin: node.name.into(),
                        dependency: dep.name.clone(),
                        requirement: req.to_string(),
                        found: nodes[j].version.to_string(),
                    }),
                    _ => None,
                },
            };
            if let Some(e) = err {
                res.errors.entry(i).or_default().push(e);
            }
        }
    }
    for (i, cycle) in find_cycles(nodes, &index) {
        res.errors.entry(i).or_default().push(DepError::Cycle {
            plugin: nodes[i].name.into(),
            cycle,
        });
    }
    // Kahn's algorithm over the plugins without errors; a plugin whose
    // dependency never becomes startable is blocked.
    let mut started: BTreeSet<usize> = BTreeSet::new();
    loop {
        let mut progressed = false;
        for (i, node) in nodes.iter().enumerate() {
            if !node.enabled || started.contains(&i) || res.errors.contains_key(&i) {
                continue;
            }
            let ready = node.dependencies.iter().all(|d| {
                index
                    .get(d.name.as_str())
                    .is_some_and(|j| started.contains(j))
            });
            if ready {
                started.insert(i);
                res.order.push(i);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        if !node.enabled || started.contains(&i) || res.errors.contains_key(&i) {
            continue;
        }
        let blocker = node
            .dependencies
            .iter()
            .find(|d| {
                index
                    .get(d.name.as_str())
                    .is_none_or(|j| !started.contains(j))
            })
            .map(|d| d.name.clone())
            .unwrap_or_default();
        res.errors.entry(i).or_default().push(DepError::Blocked {
            plugin: node.name.into(),
            dependency: blocker,
        });
    }
    res
}

/// Every enabled plugin on a cycle, with one cycle through it.
fn find_cycles(nodes: &[Node<'_>], index: &BTreeMap<&str, usize>) -> Vec<(usize, Vec<String>)> {
    let deps = |i: usize| -> Vec<usize> {
        nodes[i]
            .dependencies
            .iter()
            .filter_map(|d| index.get(d.name.as_str()).copied())
            .filter(|&j| nodes[j].enabled)
            .collect()
    };
    let mut found = Vec::new();
    for start in 0..nodes.len() {
        if !nodes[start].enabled {
            continue;
        }
        // Depth-first search for a path from start's dependencies back to start.
        let mut stack = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((at, path)) = stack.pop() {
            for next in deps(at) {
                if next == start {
                    let mut cycle: Vec<String> =
                        path.iter().map(|&k| nodes[k].name.to_owned()).collect();
                    cycle.push(nodes[start].name.to_owned());
                    found.push((start, cycle));
                    stack.clear();
                    break;
                }
                if seen.insert(next) {
                    let mut p = path.clone();
                    p.push(next);
                    stack.push((next, p));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Position;

    fn dep(name: &str, req: Option<&str>) -> Dependency {
        Dependency {
            name: name.into(),
            req: req.map(|r| semver::VersionReq::parse(r).unwrap()),
            position: Position { line: 1, column: 1 },
        }
    }

    struct Fixture {
        names: Vec<&'static str>,
        versions: Vec<Version>,
        enabled: Vec<bool>,
        deps: Vec<Vec<Dependency>>,
    }

    impl Fixture {
        fn new(spec: &[(&'static str, &str, Vec<Dependency>)]) -> Self {
            Fixture {
                names: spec.iter().map(|s| s.0).collect(),
                versions: spec.iter().map(|s| Version::parse(s.1).unwrap()).collect(),
                enabled: vec![true; spec.len()],
                deps: spec.iter().map(|s| s.2.clone()).collect(),
            }
        }
        fn resolve(&self) -> Resolution {
            let nodes: Vec<Node> = (0..self.names.len())
                .map(|i| Node {
                    name: self.names[i],
                    version: &self.versions[i],
                    enabled: self.enabled[i],
                    dependencies: &self.deps[i],
                })
                .collect();
            resolve(&nodes)
        }
    }

    #[test]
    fn dependencies_start_first_and_ties_keep_input_order() {
        let f = Fixture::new(&[
            ("c", "1.0.0", vec![dep("b", None)]),
            ("b", "1.0.0", vec![dep("a", Some(">=1.0"))]),
            ("a", "1.2.0", vec![]),
            ("z", "1.0.0", vec![]),
        ]);
        let r = f.resolve();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.order, vec![2, 3, 1, 0]);
    }

    #[test]
    fn missing_and_unsatisfied_dependencies_name_the_plugins() {
        let f = Fixture::new(&[
            ("a", "1.0.0", vec![dep("ghost", None)]),
            ("b", "1.0.0", vec![dep("c", Some("^2"))]),
            ("c", "1.4.0", vec![]),
            ("d", "1.0.0", vec![dep("a", None)]),
        ]);
        let r = f.resolve();
        assert_eq!(r.order, vec![2]);
        assert_eq!(
            r.errors[&0][0].to_string(),
            "plugin `a` depends on `ghost`, which was not found"
        );
        assert_eq!(
            r.errors[&1][0].to_string(),
            "plugin `b` needs `c` ^2, but found version 1.4.0"
        );
        assert_eq!(
            r.errors[&3][0].to_string(),
            "plugin `d` depends on `a`, which cannot start"
        );
    }

    #[test]
    fn cycles_are_reported_for_each_member() {
        let f = Fixture::new(&[
            ("a", "1.0.0", vec![dep("b", None)]),
            ("b", "1.0.0", vec![dep("a", None)]),
            ("free", "1.0.0", vec![]),
        ]);
        let r = f.resolve();
        assert_eq!(r.order, vec![2]);
        assert_eq!(
            r.errors[&0][0].to_string(),
            "plugin `a` is in a dependency cycle: a -> b -> a"
        );
        assert!(matches!(r.errors[&1][0], DepError::Cycle { .. }));
    }

    #[test]
    fn disabled_dependencies_block_their_dependents() {
        let mut f = Fixture::new(&[("a", "1.0.0", vec![]), ("b", "1.0.0", vec![dep("a", None)])]);
        f.enabled[0] = false;
        let r = f.resolve();
        assert!(r.order.is_empty());
        assert!(matches!(r.errors[&1][0], DepError::Disabled { .. }));
        assert!(!r.errors.contains_key(&0));
    }
}
