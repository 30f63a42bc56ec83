//! A shadow candidate (SPEC §13): the new version on a thread of its own,
//! fed what the running version handled and what it did, compared event by
//! event, never acting on the world.
//!
//! The running version's thread offers each handled event with its record
//! ([`ShadowSlot::offer`]) without waiting: a full queue skips the event
//! (counted). The candidate's thread runs it with [`ShadowApi`] as its host:
//! publishes are captured (checked as real ones are, never reaching the
//! bus), `bus.request` answers what the running version's same request got,
//! `time.now_ms()` reads what the running version's clock read,
//! application functions are refused unless registered shadow-safe, metrics
//! are dropped, and timers never run. A difference is published as `plughost.plugin.shadow_diff` (the
//! first 100; the rest are counted).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plughost_bindings::{
    Event, HostApi, HostCall, HostCallError, LogRecord, MetricKind, Payload, PluginInfo,
    PluginInstance, ScriptError, SpanGuard,
};
use serde_json::{Map, Value};

use super::compare::{Observed, Seen};
use super::record::{Answer, Replies};
use crate::bus::Bus;
use crate::catalog::PluginDef;
use crate::host_events::HostEvent;
use crate::services::Services;
use crate::telemetry::Metrics;
use crate::topic::PatternSet;

/// The most `shadow_diff` events one candidate publishes.
pub(crate) const MAX_DIFFS: u64 = 100;

/// One event the running version handled, for the candidate.
#[derive(Debug)]
pub struct ShadowItem {
    /// The event.
    pub event: Arc<Event>,
    /// What the running version published, as it published it (packed:
    /// decoded on the candidate's thread).
    pub published: Vec<(String, Payload)>,
    /// The running version's outcome.
    pub outcome: Seen,
    /// What the running version's requests and clock readings got, in order.
    pub requests: Replies,
}

impl ShadowItem {
    /// What the running version did, for the comparison.
    fn live(&self) -> Observed {
        Observed {
            publishes: self
                .published
                .iter()
                .map(|(topic, payload)| (topic.clone(), payload.value().clone()))
                .collect(),
            outcome: self.outcome.clone(),
        }
    }
}

/// A rollout's counts (SPEC §13), shared by the threads that make them.
#[derive(Debug, Default)]
pub struct Counts {
    /// Events both versions handled and were compared.
    pub compared: AtomicU64,
    /// Of those, the ones where they differed.
    pub differed: AtomicU64,
    /// Events the candidate could not keep up with.
    pub skipped: AtomicU64,
    /// The candidate's errors.
    pub candidate_errors: AtomicU64,
    /// Events the candidate handled for real (`gradual`).
    pub handled_by_candidate: AtomicU64,
    /// `shadow_diff` events published.
    pub diffs_published: AtomicU64,
}

/// Where a running version sends what it handled: the candidate's bounded
/// queue, and the rollout's counts (for the events skipped).
#[derive(Debug, Clone)]
pub struct Link {
    /// The candidate's queue.
    pub tx: SyncSender<ShadowItem>,
    /// The rollout's counts.
    pub counts: Arc<Counts>,
}

/// The running version's side of a shadow: where it offers what it handled.
/// Empty while no shadow runs (one relaxed load per event).
#[derive(Debug, Default)]
pub(crate) struct ShadowSlot {
    active: AtomicBool,
    link: Mutex<Option<Link>>,
}

impl ShadowSlot {
    /// Whether a shadow candidate watches now.
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Offers a handled event; skipped (and counted) when the candidate's
    /// queue is full. Never waits.
    pub(crate) fn offer(&self, item: ShadowItem) {
        let link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Link { tx, counts }) = link.as_ref() else {
            return;
        };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counts.skipped.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Sends what the running version handles through `link` from now on
    /// (called on the running version's thread, between two events).
    pub(crate) fn attach(&self, link: Link) {
        *self.link.lock().unwrap_or_else(|p| p.into_inner()) = Some(link);
        self.active.store(true, Ordering::Relaxed);
    }

    /// Stops offering; the candidate's thread ends once it has run what it got.
    pub(crate) fn detach(&self) {
        self.active.store(false, Ordering::Relaxed);
        self.link.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

/// Why a candidate call was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ShadowRefused {
    /// Application functions may act on the world (unless registered shadow-safe).
    #[error(
        "host function `{0}` is not available to a shadow candidate: it could act on the world twice (an application registers a function without effects with HostBuilder::shadow_safe_function)"
    )]
    Function(String),
    /// The running version made no such request for this event.
    #[error(
        "bus.request: the running version made no request #{0} for this event, so there is no answer to replay"
    )]
    NoRecordedRequest(usize),
}

/// The host as a shadow candidate sees it.
#[derive(Debug)]
pub(crate) struct ShadowApi {
    services: Arc<Services>,
    /// The candidate's own `publications` (its manifest's, not the running version's).
    publications: Option<PatternSet>,
    turn: Mutex<Turn>,
}

#[derive(Debug, Default)]
struct Turn {
    published: Vec<(String, Value)>,
    replies: VecDeque<Answer>,
    asked: usize,
    clock: VecDeque<i64>,
}

impl ShadowApi {
    /// Checks publishes as a real publish is checked, against the
    /// candidate's own `publications`.
    pub(crate) fn new(services: Arc<Services>, publications: Option<PatternSet>) -> Self {
        ShadowApi {
            services,
            publications,
            turn: Mutex::default(),
        }
    }

    fn check(&self, topic: &str, call: HostCall) -> Result<(), HostCallError> {
        crate::services::check_publish(topic, self.publications.as_ref())
            .map_err(|e| HostCallError::new(call, e))
    }

    fn turn(&self) -> std::sync::MutexGuard<'_, Turn> {
        self.turn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts an event: these are the answers its requests get and the
    /// readings its clock gives.
    fn begin(&self, replies: Replies) {
        *self.turn() = Turn {
            published: Vec::new(),
            replies: replies.answers.into(),
            asked: 0,
            clock: replies.clock.into(),
        };
    }

    /// What the candidate published for the event.
    fn published(&self) -> Vec<(String, Value)> {
        std::mem::take(&mut self.turn().published)
    }
}

impl HostApi for ShadowApi {
    fn publish(
        &self,
        _plugin: &PluginInfo,
        topic: &str,
        payload: Payload,
        _cause: Option<&Event>,
    ) -> Result<String, HostCallError> {
        self.check(topic, HostCall::Publish)?;
        self.turn()
            .published
            .push((topic.to_owned(), payload.into_value()));
        Ok(plughost_bindings::event::new_id())
    }

    fn request(
        &self,
        _plugin: &PluginInfo,
        topic: &str,
        _payload: Payload,
        _cause: Option<&Event>,
        _wait: Duration,
    ) -> Result<Payload, HostCallError> {
        self.check(topic, HostCall::Request)?;
        let mut turn = self.turn();
        turn.asked += 1;
        let n = turn.asked;
        match turn.replies.pop_front() {
            Some(Ok(reply)) => Ok(reply.into()),
            // The very error the running version's same request got.
            Some(Err(error)) => Err(HostCallError::new(HostCall::Request, error)),
            None => Err(HostCallError::new(
                HostCall::Request,
                ShadowRefused::NoRecordedRequest(n),
            )),
        }
    }

    fn log(&self, plugin: &PluginInfo, record: LogRecord<'_>) {
        self.services.log(plugin, record);
    }

    /// The running version's reading for this event, in order; past its
    /// last (the candidate reads the clock more often, or the running
    /// version read it more than `record::MAX_CLOCK_READINGS` times), the
    /// wall clock.
    fn now_ms(&self, _plugin: &PluginInfo) -> i64 {
        self.turn()
            .clock
            .pop_front()
            .unwrap_or_else(plughost_bindings::host_api::wall_clock_ms)
    }

    fn metric(
        &self,
        _plugin: &PluginInfo,
        _kind: MetricKind,
        _name: &str,
        _value: f64,
        _attributes: &Map<String, Value>,
    ) -> Result<(), HostCallError> {
        // The running version's metrics are the plugin's; the candidate's
        // would count the same events twice.
        Ok(())
    }

    fn span(
        &self,
        _plugin: &PluginInfo,
        _name: &str,
        _attributes: &Map<String, Value>,
        _cause: Option<&Event>,
    ) -> SpanGuard {
        Box::new(())
    }

    fn function_names(&self) -> Vec<String> {
        self.services.function_names()
    }

    fn call_function(
        &self,
        plugin: &PluginInfo,
        name: &str,
        args: Vec<Value>,
    ) -> Result<Value, HostCallError> {
        if self.services.is_shadow_safe(name) {
            return self.services.call_function(plugin, name, args);
        }
        Err(HostCallError::new(
            HostCall::Function,
            ShadowRefused::Function(name.to_owned()),
        ))
    }
}

/// What the candidate's thread tells its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// `promote_after` events were compared without a difference.
    Promote,
    /// `max_candidate_errors` errors: the rollout is abandoned.
    Abandon,
}

/// What the candidate's thread needs.
pub(crate) struct Candidate {
    /// The new version.
    pub def: PluginDef,
    /// The running version's `state`, copied.
    pub state: Value,
    /// Its host.
    pub api: Arc<ShadowApi>,
    /// Where differences are announced.
    pub bus: Arc<Bus>,
    /// Where `plugin.rollout.events` is counted.
    pub metrics: Arc<Metrics>,
    /// The rollout's counts.
    pub counts: Arc<Counts>,
    /// Told of a verdict, once.
    pub verdict: Box<dyn FnOnce(Verdict) + Send>,
}

/// Runs the candidate: load and `init` (told through `ready`), then every
/// item `items` brings until it closes; then its `shutdown` (captured too).
pub(crate) fn run(
    c: Candidate,
    items: Receiver<ShadowItem>,
    ready: tokio::sync::oneshot::Sender<Result<(), ScriptError>>,
) {
    let Candidate {
        def,
        state,
        api,
        bus,
        metrics,
        counts,
        verdict,
    } = c;
    let spec = def.spec(state);
    let mut plugin = match plughost_bindings::load(&spec, api.clone()).and_then(|mut p| {
        api.begin(Replies::default());
        p.init().map(|()| p)
    }) {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    plugin.clear_timers();
    let _ = ready.send(Ok(()));
    let name = def.manifest.name.as_str();
    let rollout = &def.manifest.rollout;
    let mut verdict = Some(verdict);
    let mut skipped = 0;
    while let Ok(item) = items.recv() {
        let seen = compare_one(plugin.as_mut(), &api, &item);
        let live = item.live();
        let now_skipped = counts.skipped.load(Ordering::Relaxed);
        metrics.rollout_events(name, "skipped", now_skipped - skipped);
        skipped = now_skipped;
        if matches!(seen.outcome, Seen::Error(_)) {
            counts.candidate_errors.fetch_add(1, Ordering::Relaxed);
            metrics.rollout_events(name, "candidate_error", 1);
        }
        let differs = live.differs(&seen);
        metrics.rollout_events(name, if differs { "differed" } else { "same" }, 1);
        if differs {
            counts.differed.fetch_add(1, Ordering::Relaxed);
            if counts.diffs_published.fetch_add(1, Ordering::Relaxed) < MAX_DIFFS {
                let (live, candidate) = (live.to_json(), seen.to_json());
                bus.announce(&HostEvent::ShadowDiff {
                    plugin: name,
                    event: &item.event.id,
                    live: &live,
                    candidate: &candidate,
                });
            }
        }
        // Counted last: a reader that sees it compared sees the rest too.
        let compared = counts.compared.fetch_add(1, Ordering::Relaxed) + 1;
        let errors = counts.candidate_errors.load(Ordering::Relaxed);
        let differed = counts.differed.load(Ordering::Relaxed);
        let decided = if errors >= rollout.max_candidate_errors {
            Some(Verdict::Abandon)
        } else if differed == 0 && rollout.promote_after.is_some_and(|n| compared >= n) {
            Some(Verdict::Promote)
        } else {
            None
        };
        if let Some(v) = decided
            && let Some(tell) = verdict.take()
        {
            tell(v);
        }
    }
    api.begin(Replies::default());
    if let Err(e) = plugin.shutdown() {
        tracing::debug!(plugin = name, "shadow candidate's shutdown: {e}");
    }
}

/// Runs one event on the candidate and says what it did.
fn compare_one(plugin: &mut dyn PluginInstance, api: &ShadowApi, item: &ShadowItem) -> Observed {
    api.begin(item.requests.clone());
    let result = plugin.on_event(&item.event);
    // Its timers never run: what it set for later is dropped.
    plugin.clear_timers();
    Observed {
        publishes: api.published(),
        outcome: Seen::of(&result),
    }
}

#[cfg(test)]
mod tests {
    use plughost_bindings::RuntimeKind;

    use super::*;
    use crate::functions::Functions;

    fn api() -> ShadowApi {
        let bus = Arc::new(Bus::new());
        let metrics = Arc::new(Metrics::off(&bus));
        ShadowApi::new(
            Arc::new(Services::new(bus, Functions::default(), metrics)),
            None,
        )
    }

    fn info() -> PluginInfo {
        PluginInfo {
            name: "p".into(),
            version: "2.0.0".into(),
            runtime: RuntimeKind::Lua,
        }
    }

    #[test]
    fn the_candidate_reads_the_running_versions_clock() {
        let api = api();
        api.begin(Replies {
            answers: Vec::new(),
            clock: vec![5, 7],
        });
        assert_eq!(api.now_ms(&info()), 5);
        assert_eq!(api.now_ms(&info()), 7);
        // Read more often than the running version did: the wall clock.
        let before = plughost_bindings::host_api::wall_clock_ms();
        assert!(api.now_ms(&info()) >= before);
        // The next event starts from its own readings.
        api.begin(Replies {
            answers: Vec::new(),
            clock: vec![11],
        });
        assert_eq!(api.now_ms(&info()), 11);
    }
}
