//! JSON pointers (the validator's instance paths) walked back through the
//! YAML node tree to a node and its position, and shown as key paths.

use serde_json::Value;

use super::super::raw::{Kind, Node};

/// The node a JSON pointer names under `root`, and the key node of its last
/// step (when that step is a mapping key). Stops at the deepest node found.
pub(super) fn locate<'n>(root: &'n Node, pointer: &str) -> (Option<&'n Node>, &'n Node) {
    let mut key = None;
    let mut node = root;
    for token in tokens(pointer) {
        let next = match &node.kind {
            Kind::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(token.as_str()))
                .map(|(k, v)| (Some(k), v)),
            Kind::Seq(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i))
                .map(|v| (None, v)),
            _ => None,
        };
        match next {
            Some((k, v)) => {
                key = k;
                node = v;
            }
            None => break,
        }
    }
    (key, node)
}

/// The node a JSON pointer names under `root` (or the deepest one found).
pub(super) fn locate_node<'n>(root: &'n Node, pointer: &str) -> &'n Node {
    locate(root, pointer).1
}

/// The key node of `name` in a mapping node.
pub(super) fn entry_key<'n>(mapping: &'n Node, name: &str) -> Option<&'n Node> {
    match &mapping.kind {
        Kind::Map(entries) => entries
            .iter()
            .map(|(k, _)| k)
            .find(|k| k.as_str() == Some(name)),
        _ => None,
    }
}

/// The unescaped tokens of a JSON pointer (`/a~1b/0` → `a/b`, `0`).
pub(super) fn tokens(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
}

/// A key as a JSON pointer token.
pub(super) fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A pointer as an author reads it: `/nested/words/2` under `config` is `config.nested.words[2]`.
pub(super) fn key_path(root: &str, pointer: &str) -> String {
    let mut out = root.to_owned();
    for token in tokens(pointer) {
        let plain = !token.is_empty()
            && token
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == '$');
        if token.parse::<usize>().is_ok() {
            out.push_str(&format!("[{token}]"));
        } else if plain {
            out.push('.');
            out.push_str(&token);
        } else {
            out.push_str(&format!("[{}]", Value::String(token)));
        }
    }
    out
}

/// The position of a node, for tests.
#[cfg(test)]
pub(super) fn position_of(root: &Node, pointer: &str) -> super::super::Position {
    locate_node(root, pointer).pos
}
