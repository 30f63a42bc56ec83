//! The routing index: which subscriptions match a topic, found without
//! looking at every subscription.
//!
//! As NATS's sublist does, the patterns are kept in a trie of tokens: each
//! node has its literal children by token, one child for `*` (any one
//! token), and the keys of the patterns that end there or end there with
//! `>` (one or more tokens more). A lookup walks the topic's tokens once,
//! following at each level the literal child and the `*` child, and picks
//! up the `>` keys it passes; its cost depends on the topic and on the
//! patterns that share its tokens, not on how many patterns there are.
//! Recent answers are cached by topic (at most [`CACHE_MAX`] of them), and
//! the cache is emptied by every change.
//!
//! Keys are whatever the caller identifies a subscriber with (the bus uses
//! the order in which routes were added): a lookup returns each matching key
//! once, in ascending order, so the caller can keep its delivery order.
//! Everything here is pure; the bus holds the index under its routes' lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::topic::Pattern;

/// How many topics' answers the cache keeps; past it, it starts over.
pub(crate) const CACHE_MAX: usize = 1024;

/// One level of the trie.
#[derive(Debug)]
struct Node<K> {
    /// Children by literal token.
    literal: HashMap<Box<[u8]>, Node<K>>,
    /// The child for `*`.
    star: Option<Box<Node<K>>>,
    /// Keys of the patterns that end at this node.
    ends: Vec<K>,
    /// Keys of the patterns that end at this node with `>`.
    rest: Vec<K>,
}

impl<K> Default for Node<K> {
    fn default() -> Self {
        Node {
            literal: HashMap::new(),
            star: None,
            ends: Vec::new(),
            rest: Vec::new(),
        }
    }
}

impl<K> Node<K> {
    fn is_empty(&self) -> bool {
        self.literal.is_empty()
            && self.star.is_none()
            && self.ends.is_empty()
            && self.rest.is_empty()
    }
}

/// Subscriptions' patterns by key, looked up by topic.
#[derive(Debug)]
pub(crate) struct TopicIndex<K> {
    root: Node<K>,
    /// Recent answers by topic. Looked at with `try_lock`: a lookup that
    /// finds it busy walks the trie instead of waiting.
    cache: Mutex<HashMap<Box<str>, Arc<[K]>>>,
}

impl<K> Default for TopicIndex<K> {
    fn default() -> Self {
        TopicIndex {
            root: Node::default(),
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Copy + Ord + Hash> TopicIndex<K> {
    /// Adds `patterns` under `key`.
    pub(crate) fn insert(&mut self, key: K, patterns: &[Pattern]) {
        for pattern in patterns {
            let mut node = &mut self.root;
            let mut tokens = pattern.as_str().as_bytes().split(|&b| b == b'.').peekable();
            while let Some(token) = tokens.next() {
                if token == b">" && tokens.peek().is_none() {
                    node.rest.push(key);
                    break;
                }
                node = match token {
                    b"*" => node.star.get_or_insert_with(Box::default),
                    _ => node.literal.entry(token.into()).or_default(),
                };
                if tokens.peek().is_none() {
                    node.ends.push(key);
                }
            }
        }
        self.forget();
    }

    /// Takes `patterns` (as given to [`TopicIndex::insert`]) off `key`.
    pub(crate) fn remove(&mut self, key: K, patterns: &[Pattern]) {
        for pattern in patterns {
            let tokens: Vec<&[u8]> = pattern.as_str().as_bytes().split(|&b| b == b'.').collect();
            remove_from(&mut self.root, &tokens, key);
        }
        self.forget();
    }

    /// The keys whose patterns match the concrete `topic`, each once, in
    /// ascending order.
    pub(crate) fn lookup(&self, topic: &str) -> Arc<[K]> {
        let mut cache = self.cache.try_lock().ok();
        if let Some(found) = cache.as_ref().and_then(|c| c.get(topic)) {
            return found.clone();
        }
        let tokens: Vec<&[u8]> = topic.as_bytes().split(|&b| b == b'.').collect();
        let mut keys = Vec::new();
        collect(&self.root, &tokens, &mut keys);
        keys.sort_unstable();
        keys.dedup();
        let keys: Arc<[K]> = keys.into();
        if let Some(cache) = cache.as_mut() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(topic.into(), keys.clone());
        }
        keys
    }

    /// Empties the cache (the patterns changed).
    fn forget(&mut self) {
        self.cache
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Adds to `keys` those of the patterns below `node` matching `tokens`.
fn collect<K: Copy>(node: &Node<K>, tokens: &[&[u8]], keys: &mut Vec<K>) {
    let Some((first, more)) = tokens.split_first() else {
        keys.extend_from_slice(&node.ends);
        return;
    };
    // `>` takes one token or more, and there is at least one left.
    keys.extend_from_slice(&node.rest);
    if let Some(child) = node.literal.get(*first) {
        collect(child, more, keys);
    }
    if let Some(child) = &node.star {
        collect(child, more, keys);
    }
}

/// Takes `key` off the pattern of `tokens` below `node`, and prunes the
/// nodes left empty.
fn remove_from<K: PartialEq>(node: &mut Node<K>, tokens: &[&[u8]], key: K) {
    let Some((first, more)) = tokens.split_first() else {
        return;
    };
    if *first == b">" && more.is_empty() {
        drop_key(&mut node.rest, &key);
        return;
    }
    if *first == b"*" {
        if let Some(child) = node.star.as_mut() {
            remove_at(child, more, key);
            if child.is_empty() {
                node.star = None;
            }
        }
    } else if let Some(child) = node.literal.get_mut(*first) {
        remove_at(child, more, key);
        if child.is_empty() {
            node.literal.remove(*first);
        }
    }
}

/// Takes `key` off the pattern of `more` below `child`, the node of the
/// pattern's token before them.
fn remove_at<K: PartialEq>(child: &mut Node<K>, more: &[&[u8]], key: K) {
    if more.is_empty() {
        drop_key(&mut child.ends, &key);
    } else {
        remove_from(child, more, key);
    }
}

/// Removes one occurrence of `key` (a pattern given twice is there twice).
fn drop_key<K: PartialEq>(keys: &mut Vec<K>, key: &K) {
    if let Some(at) = keys.iter().position(|k| k == key) {
        keys.remove(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: every pattern set matched one by one.
    fn linear(sets: &[(u32, Vec<Pattern>)], topic: &str) -> Vec<u32> {
        let mut keys: Vec<u32> = sets
            .iter()
            .filter(|(_, ps)| ps.iter().any(|p| p.matches(topic)))
            .map(|(k, _)| *k)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn parse(patterns: &[&str]) -> Vec<Pattern> {
        patterns
            .iter()
            .map(|p| Pattern::parse(p).unwrap())
            .collect()
    }

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    const WORDS: [&str; 4] = ["a", "b", "cd", "plughost"];

    fn random_topic(rng: &mut Rng) -> String {
        let n = 1 + rng.below(4);
        (0..n)
            .map(|_| WORDS[rng.below(WORDS.len())])
            .collect::<Vec<_>>()
            .join(".")
    }

    fn random_pattern(rng: &mut Rng) -> Pattern {
        let n = 1 + rng.below(4);
        let mut tokens: Vec<&str> = (0..n)
            .map(|_| match rng.below(4) {
                0 => "*",
                _ => WORDS[rng.below(WORDS.len())],
            })
            .collect();
        if rng.below(3) == 0 {
            tokens.push(">");
        }
        Pattern::parse(&tokens.join(".")).unwrap()
    }

    #[test]
    fn finds_literals_stars_and_tails() {
        let mut index = TopicIndex::default();
        index.insert(1, &parse(&["text.raw"]));
        index.insert(2, &parse(&["text.*"]));
        index.insert(3, &parse(&["text.>"]));
        index.insert(4, &parse(&["*.raw", ">"]));
        index.insert(5, &parse(&["other"]));
        assert_eq!(&*index.lookup("text.raw"), &[1, 2, 3, 4]);
        assert_eq!(&*index.lookup("text.raw.more"), &[3, 4]);
        // `>` needs one token at least.
        assert_eq!(&*index.lookup("text"), &[4]);
        assert_eq!(&*index.lookup("other"), &[4, 5]);
        assert_eq!(&*index.lookup("nothing.here.at.all"), &[4]);
    }

    #[test]
    fn a_change_empties_the_cache() {
        let mut index = TopicIndex::default();
        index.insert(1, &parse(&["a.b"]));
        assert_eq!(&*index.lookup("a.b"), &[1]);
        index.insert(2, &parse(&["a.*"]));
        assert_eq!(&*index.lookup("a.b"), &[1, 2]);
        index.remove(1, &parse(&["a.b"]));
        assert_eq!(&*index.lookup("a.b"), &[2]);
        index.remove(2, &parse(&["a.*"]));
        assert!(index.lookup("a.b").is_empty());
        assert!(
            index.root.is_empty(),
            "removing every pattern prunes the trie"
        );
    }

    #[test]
    fn a_key_with_two_matching_patterns_is_returned_once() {
        let mut index = TopicIndex::default();
        index.insert(7, &parse(&["a.*", "a.>", "*.b", "a.b"]));
        assert_eq!(&*index.lookup("a.b"), &[7]);
        index.remove(7, &parse(&["a.*", "a.>", "*.b", "a.b"]));
        assert!(index.lookup("a.b").is_empty());
    }

    #[test]
    fn matches_the_linear_scan_on_random_patterns_and_topics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut index = TopicIndex::default();
        let mut sets: Vec<(u32, Vec<Pattern>)> = Vec::new();
        let mut next = 0u32;
        for round in 0..400 {
            // Add, replace or remove a subscriber, then compare on topics.
            match rng.below(4) {
                0 if !sets.is_empty() => {
                    let (key, old) = sets.remove(rng.below(sets.len()));
                    index.remove(key, &old);
                }
                1 if !sets.is_empty() => {
                    let at = rng.below(sets.len());
                    let key = sets[at].0;
                    index.remove(key, &sets[at].1);
                    let new: Vec<Pattern> = (0..1 + rng.below(3))
                        .map(|_| random_pattern(&mut rng))
                        .collect();
                    index.insert(key, &new);
                    sets[at].1 = new;
                }
                _ => {
                    let new: Vec<Pattern> = (0..1 + rng.below(3))
                        .map(|_| random_pattern(&mut rng))
                        .collect();
                    index.insert(next, &new);
                    sets.push((next, new));
                    next += 1;
                }
            }
            for _ in 0..20 {
                let topic = random_topic(&mut rng);
                assert_eq!(
                    &*index.lookup(&topic),
                    linear(&sets, &topic).as_slice(),
                    "round {round}, topic {topic}, patterns {sets:?}"
                );
            }
        }
    }
}
