//! One delivery handled: the hook called inside the thread's
//! [`InHook`](super::InHook), what it returned decided by
//! [`delivery::decide`] and carried out (ack, forward through the same path
//! as `bus.publish`, retry later, dead letter), and the pending retries.
//! A stored delivery (from a shared plugin's durable consumer) is settled
//! with the stream instead: its retry is a redelivery by the server.

use std::sync::atomic::Ordering;
use std::time::Instant;

use plughost_bindings::{ErrorKind, HostApi, PluginInfo, PluginInstance, ScriptError};

use super::telemetry::Telemetry;
use super::{Ctx, InHook, Stats, record_error};
use crate::bus::{Bus, Delivery};
use crate::catalog::PluginDef;
use crate::cluster::receipts::Receipt;
use crate::delivery::{self, Action};
use crate::manifest::Retry;
use crate::rollout::compare::Seen;
use crate::rollout::record;
use crate::rollout::shadow::{ShadowItem, ShadowSlot};
use crate::services::Services;

/// Carries out what the plugin asked for, and keeps the pending retries.
pub(super) struct Worker<'a> {
    name: &'a str,
    /// The running version's identity, for its publishes.
    pub(super) info: PluginInfo,
    /// The running version's `retry:` settings.
    pub(super) retry: Retry,
    bus: &'a Bus,
    services: &'a Services,
    stats: &'a Stats,
    in_hook: &'a InHook,
    shadow: &'a ShadowSlot,
    /// Deliveries waiting in `in_hook`'s retries: while 0, none is looked up.
    retries: usize,
    seq: u64,
    /// The running version's instruments.
    pub(super) telemetry: Telemetry<'a>,
}

impl<'a> Worker<'a> {
    /// A worker for plugin `name` running `def`.
    pub(super) fn new(
        name: &'a str,
        def: &PluginDef,
        ctx: &Ctx<'a>,
        telemetry: Telemetry<'a>,
    ) -> Self {
        Worker {
            name,
            info: def.info(),
            retry: def.manifest.retry,
            bus: ctx.bus,
            services: ctx.services,
            stats: ctx.stats,
            in_hook: ctx.in_hook,
            shadow: ctx.shadow,
            retries: 0,
            seq: 0,
            telemetry,
        }
    }

    /// Takes every delivery waiting for a retry.
    pub(super) fn take_retries(&mut self) -> Vec<Delivery> {
        self.retries = 0;
        self.in_hook.take_retries()
    }

    /// The first retry due at `now`, if any.
    pub(super) fn due_retry(&mut self, now: Instant) -> Option<Delivery> {
        if self.retries == 0 {
            return None;
        }
        let mut retries = self.in_hook.retries();
        let (&(at, _), _) = retries.first_key_value()?;
        if at > now {
            return None;
        }
        self.retries -= 1;
        retries.pop_first().map(|(_, d)| d)
    }

    /// When the next retry is due.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        if self.retries == 0 {
            return None;
        }
        let retries = self.in_hook.retries();
        retries.first_key_value().map(|(&(at, _), _)| at)
    }

    /// Handles one delivery. Returns the error when it ended in one (SPEC
    /// §12's errors, which supervision counts), or, as `Err`, a crash: the
    /// plugin cannot go on, and the delivery stays in the hook for the
    /// crash handling to dead-letter. `None` when the watch abandoned the
    /// call meanwhile (and took the delivery): the thread ends.
    pub(super) fn handle(
        &mut self,
        plugin: &mut dyn PluginInstance,
        mut d: Delivery,
    ) -> Option<Result<Option<String>, ScriptError>> {
        let span = self.telemetry.span(&d.event);
        let _entered = span.enter();
        let started = Instant::now();
        self.in_hook.enter(started, Some(d.clone()));
        let shadowing = self.shadow.is_active();
        if shadowing {
            record::start();
        }
        let result = plugin.on_event(&d.event);
        let recorded = if shadowing { record::take() } else { None };
        if let Err(e) = &result
            && e.kind == ErrorKind::Crash
            && !self.in_hook.is_abandoned()
        {
            record_error(&span, e);
            return Some(Err(result.unwrap_err()));
        }
        if !self.in_hook.leave() {
            return None;
        }
        let elapsed = started.elapsed();
        self.stats.latency.record(elapsed);
        let elapsed_ms = elapsed.as_secs_f64() * 1e3;
        if let Some(rec) = recorded {
            self.shadow.offer(ShadowItem {
                event: d.event.clone(),
                published: rec.publishes,
                outcome: Seen::of(&result),
                requests: rec.requests,
            });
        }
        let receipt = self.bus.take_receipt(self.name, &d.event.id);
        let stored = receipt.is_some();
        let (action, error) = self.carry_out(result, &mut d, receipt, &span);
        if !span.is_disabled() {
            span.record("outcome", Action::NAMES[action]);
        }
        // Recorded before the event counts as done, so a reader that waited
        // for the host to be idle sees it.
        self.telemetry.record(&d.event.topic, elapsed_ms, action);
        if action != Action::RETRY || stored {
            self.bus.done();
        }
        Some(Ok(error))
    }

    /// Carries out the plugin's answer; the caller marks the event done
    /// (unless it is to be retried). Returns the action carried out (its
    /// [`Action::index`]) and the error, when the event ended in one.
    fn carry_out(
        &mut self,
        result: Result<plughost_bindings::Outcome, ScriptError>,
        d: &mut Delivery,
        mut receipt: Option<Receipt>,
        span: &tracing::Span,
    ) -> (usize, Option<String>) {
        let raised = result.is_err();
        if let Some(r) = &receipt {
            d.attempt = r.attempt();
        }
        let action = delivery::decide(result, d.attempt, &self.retry);
        let index = action.index();
        match action {
            Action::Ack => {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
            }
            Action::Forward { topic, payload } => {
                // The very path of `bus.publish`.
                let published = self
                    .services
                    .publish(&self.info, &topic, payload, Some(&d.event));
                if let Err(refused) = published {
                    // A refused forward is an error (SPEC §12).
                    let error = format!("outcome.forward: {refused}");
                    self.dead_letter(d, &error, span, receipt);
                    return (Action::DEAD_LETTER, Some(error));
                }
                self.stats.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Action::Retry { after, .. } if receipt.is_some() => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin = self.name, event.id = %d.event.id, after_ms = after.as_millis() as u64, "redelivery by the stream asked");
                if let Some(r) = receipt.take() {
                    r.retry(after);
                }
            }
            Action::Retry { after, attempt } => {
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(plugin = self.name, event.id = %d.event.id, attempt, after_ms = after.as_millis() as u64, "retry scheduled");
                self.seq += 1;
                self.retries += 1;
                self.in_hook.retries().insert(
                    (Instant::now() + after, self.seq),
                    Delivery {
                        event: d.event.clone(),
                        attempt,
                    },
                );
            }
            Action::DeadLetter { error } => {
                self.dead_letter(d, &error, span, receipt);
                return (index, raised.then_some(error));
            }
            Action::Reply { payload } => {
                match &d.event.reply_to {
                    Some(reply_to) => self.bus.answer(reply_to, payload),
                    None => {
                        tracing::debug!(plugin = self.name, event.id = %d.event.id, "outcome.reply to an event that is no request: acknowledged")
                    }
                }
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
            }
        }
        // Handled: a stored delivery is acknowledged.
        if let Some(r) = receipt {
            r.acknowledge();
        }
        (index, None)
    }

    /// Dead-letters the delivery; a stored one is done for the stream too.
    fn dead_letter(
        &self,
        d: &Delivery,
        error: &str,
        span: &tracing::Span,
        receipt: Option<Receipt>,
    ) {
        record_error(span, &error);
        self.bus.dead_letter(self.name, &d.event, d.attempt, error);
        self.stats.dead_lettered(&d.event.id, error);
        if let Some(r) = receipt {
            r.terminate();
        }
    }
}
