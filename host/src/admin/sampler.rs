//! Recent rates and processing times for `GET /overview`.
//!
//! A plugin's [`Stats`](crate::Stats) only count up. Every second the
//! admin server's sampler task copies each running plugin's counts and
//! latency histogram into a [`History`] of about a minute; a reader takes a
//! fresh [`Sample`] and compares it with an older one: events and errors
//! per second over the last ~5 s, p50 and p99 over the last ~60 s. The
//! windowing is pure and tested here; the task only calls [`Sampler::tick`].

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Host;
use crate::Stats;
use crate::actor::latency::Snapshot;

/// How often the sampler task samples.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);
/// The window of `events_per_s` and `errors_per_s`.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(5);
/// The window of `p50_ms` and `p99_ms`.
pub(crate) const LATENCY_WINDOW: Duration = Duration::from_secs(60);
/// Samples kept per plugin: the latency window's, and one more.
const KEEP: usize = 62;

/// One plugin's counts at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When they were read.
    pub(crate) at: Instant,
    /// Events handled (acked, forwarded, retried, dead-lettered).
    pub(crate) handled: u64,
    /// Events that ended in an error.
    pub(crate) errors: u64,
    /// The processing times.
    pub(crate) latency: Snapshot,
}

impl Sample {
    /// `stats` read at `at`.
    pub(crate) fn of(stats: &Stats, at: Instant) -> Sample {
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Sample {
            at,
            handled: n(&stats.acked)
                + n(&stats.forwarded)
                + n(&stats.retried)
                + n(&stats.dead_lettered),
            errors: n(&stats.errors),
            latency: stats.latency.snapshot(),
        }
    }
}

/// What the windows say of one plugin now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recent {
    /// Events handled per second over [`RATE_WINDOW`].
    pub(crate) events_per_s: f64,
    /// Errors per second over [`RATE_WINDOW`].
    pub(crate) errors_per_s: f64,
    /// The median processing time over [`LATENCY_WINDOW`], in ms.
    pub(crate) p50_ms: Option<f64>,
    /// The 99th percentile processing time over [`LATENCY_WINDOW`], in ms.
    pub(crate) p99_ms: Option<f64>,
}

/// One plugin's samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    /// Adds `sample`, forgetting what is older than the latency window needs.
    pub(crate) fn push(&mut self, sample: Sample) {
        if self.samples.len() >= KEEP {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The oldest sample at most `window` older than `now` (with half a
    /// period of slack, so the sample taken `window` ago counts); when every
    /// sample is older, the newest.
    fn baseline(&self, now: Instant, window: Duration) -> Option<&Sample> {
        let window = window + PERIOD / 2;
        self.samples
            .iter()
            .find(|s| now.saturating_duration_since(s.at) <= window)
            .or_else(|| self.samples.back())
    }

    /// The windows, for `now` read from the plugin's stats.
    pub(crate) fn recent(&self, now: &Sample) -> Recent {
        let (events_per_s, errors_per_s) = match self.baseline(now.at, RATE_WINDOW) {
            Some(old) if now.at > old.at => {
                let secs = (now.at - old.at).as_secs_f64();
                (
                    now.handled.saturating_sub(old.handled) as f64 / secs,
                    now.errors.saturating_sub(old.errors) as f64 / secs,
                )
            }
            _ => (0.0, 0.0),
        };
        let latency = match self.baseline(now.at, LATENCY_WINDOW) {
            Some(old) => now.latency.since(&old.latency),
            None => now.latency.clone(),
        };
        let ms = |q: f64| latency.quantile(q).map(|d| d.as_secs_f64() * 1e3);
        Recent {
            events_per_s,
            errors_per_s,
            p50_ms: ms(0.5),
            p99_ms: ms(0.99),
        }
    }
}

/// Every running plugin's history.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    histories: Mutex<HashMap<String, History>>,
}

impl Sampler {
    /// Samples every running plugin of `host` now; forgets plugins that no
    /// longer run.
    pub(crate) fn tick(&self, host: &Host) {
        let now = Instant::now();
        let running = host.running();
        let mut histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        histories.retain(|name, _| running.contains(name));
        for name in running {
            if let Some(stats) = host.stats(&name) {
                histories
                    .entry(name)
                    .or_default()
                    .push(Sample::of(&stats, now));
            }
        }
    }

    /// Plugin `name`'s windows, from `stats` read now.
    pub(crate) fn recent(&self, name: &str, stats: &Stats) -> Recent {
        let now = Sample::of(stats, Instant::now());
        let histories = self.histories.lock().unwrap_or_else(|p| p.into_inner());
        match histories.get(name) {
            Some(h) => h.recent(&now),
            None => History::default().recent(&now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, secs: u64, handled: u64, errors: u64, latency: &[u64]) -> Sample {
        Sample {
            at: t0 + Duration::from_secs(secs),
            handled,
            errors,
            latency: Snapshot::from_counts(latency),
        }
    }

    #[test]
    fn rates_are_over_the_last_five_seconds() {
        let t0 = Instant::now();
        let mut h = History::default();
        // 1000 events a second for 10 s, then 10 a second.
        for s in 0..=10 {
            h.push(at(t0, s, s * 1000, 0, &[]));
        }
        for s in 11..=20 {
            h.push(at(t0, s, 10_000 + (s - 10) * 10, s - 10, &[]));
        }
        let now = at(t0, 20, 10_100, 10, &[]);
        let r = h.recent(&now);
        assert!((r.events_per_s - 10.0).abs() < 1e-9, "{r:?}");
        assert!((r.errors_per_s - 1.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn a_young_history_rates_what_it_has_and_an_empty_one_nothing() {
        let t0 = Instant::now();
        let mut h = History::default();
        assert_eq!(h.recent(&at(t0, 0, 5, 0, &[])).events_per_s, 0.0);
        h.push(at(t0, 0, 0, 0, &[]));
        let r = h.recent(&at(t0, 2, 100, 0, &[]));
        assert!((r.events_per_s - 50.0).abs() < 1e-9, "{r:?}");
        // Samples all older than the window (a stalled sampler): the newest.
        let r = h.recent(&at(t0, 100, 1000, 0, &[]));
        assert!((r.events_per_s - 10.0).abs() < 1e-9, "{r:?}");
    }

    #[test]
    fn quantiles_are_over_the_last_minute() {
        let t0 = Instant::now();
        let mut h = History::default();
        // Slow calls (bucket 60) long ago, fast ones (bucket 1) lately.
        let mut slow = vec![0; 61];
        slow[60] = 100;
        h.push(at(t0, 0, 100, 0, &slow));
        for s in 1..=70 {
            let mut counts = slow.clone();
            counts[1] = s;
            h.push(at(t0, s, 100 + s, 0, &counts));
        }
        let mut counts = slow.clone();
        counts[1] = 71;
        let r = h.recent(&at(t0, 71, 171, 0, &counts));
        let p99 = r.p99_ms.expect("calls in the window");
        assert!(p99 < 0.0013, "only the fast calls: {r:?}");
        // Nothing handled in the window: no quantile.
        let mut idle = History::default();
        idle.push(at(t0, 0, 0, 0, &counts));
        assert_eq!(idle.recent(&at(t0, 30, 0, 0, &counts)).p50_ms, None);
        // No history at all: the lifetime counts.
        assert!(
            History::default()
                .recent(&at(t0, 0, 0, 0, &slow))
                .p50_ms
                .is_some()
        );
    }

    #[test]
    fn keeps_about_a_minute() {
        let t0 = Instant::now();
        let mut h = History::default();
        for s in 0..200 {
            h.push(at(t0, s, s, 0, &[]));
        }
        assert_eq!(h.samples.len(), KEEP);
        assert_eq!(
            h.samples.front().map(|s| s.handled),
            Some(200 - KEEP as u64)
        );
    }
}
