//! Messages that crossed to and from NATS, counted per direction and topic
//! (SPEC §14's `cluster.messages`): a map the cluster's tasks add to, read
//! by an observable counter when metrics are collected, so counting a
//! message costs one lookup, not an instrument call with fresh attributes.

use std::collections::HashMap;
use std::sync::Mutex;

/// Which way a message crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Direction {
    /// Published to NATS.
    Out = 0,
    /// Received from NATS and delivered here.
    In = 1,
}

impl Direction {
    /// The `direction` attribute's value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Out => "out",
            Direction::In => "in",
        }
    }
}

/// The counts, by topic, then direction (`[out, in]`).
#[derive(Debug, Default)]
pub(crate) struct TopicCounts {
    counts: Mutex<HashMap<String, [u64; 2]>>,
}

impl TopicCounts {
    /// Counts one message on `topic`.
    pub(crate) fn add(&self, direction: Direction, topic: &str) {
        let at = direction as usize;
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        // Looked up by `&str`: a known topic allocates nothing.
        match counts.get_mut(topic) {
            Some(n) => n[at] += 1,
            None => {
                let mut n = [0; 2];
                n[at] = 1;
                counts.insert(topic.to_owned(), n);
            }
        }
    }

    /// Every count now (a direction nothing crossed in is left out).
    pub(crate) fn snapshot(&self) -> Vec<(Direction, String, u64)> {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = Vec::with_capacity(counts.len() * 2);
        for (topic, n) in counts.iter() {
            for d in [Direction::Out, Direction::In] {
                if n[d as usize] > 0 {
                    all.push((d, topic.clone(), n[d as usize]));
                }
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_direction_and_topic() {
        let c = TopicCounts::default();
        c.add(Direction::Out, "a.b");
        c.add(Direction::Out, "a.b");
        c.add(Direction::In, "a.b");
        c.add(Direction::Out, "c");
        let mut all = c.snapshot();
        all.sort_by(|x, y| (x.0.as_str(), &x.1).cmp(&(y.0.as_str(), &y.1)));
        assert_eq!(
            all,
            [
                (Direction::In, "a.b".to_owned(), 1),
                (Direction::Out, "a.b".to_owned(), 2),
                (Direction::Out, "c".to_owned(), 1),
            ]
        );
    }
}
