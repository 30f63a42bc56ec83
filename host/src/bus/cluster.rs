//! The bus's side of the cluster (SPEC §14): the export buffer it feeds,
//! shared plugins' routes skipped for events their queue group brings, the
//! events a group gives this host, and the receipts of stored deliveries
//! (settled by the worker, handed back when a plugin could not take or
//! finish an event for reasons not its own).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use plughost_bindings::Event;

use super::{Bus, Push, Route, SUSPENDED, Via};
use crate::cluster::outbox::Outbox;
use crate::cluster::receipts::{Receipt, Receipts};

impl Bus {
    /// Hands every event published from now on (but imported ones) to the
    /// cluster's export buffer. Set once.
    pub(crate) fn set_outbox(&self, outbox: Arc<Outbox>) {
        let _ = self.outbox.set(outbox);
    }

    /// Holds the receipts of stored deliveries. Set once.
    pub(crate) fn set_receipts(&self, receipts: Arc<Receipts>) {
        let _ = self.receipts.set(receipts);
    }

    /// Offers `event` for export from a thread (waits while a stored event
    /// finds no room); one branch without a cluster.
    pub(super) fn export_blocking(&self, event: &Arc<Event>, taken: &[Arc<str>]) {
        if let Some(outbox) = self.outbox.get() {
            outbox.offer_blocking(event, taken);
        }
    }

    /// Notes whether shared plugin `plugin` is in its queue group now.
    pub(crate) fn set_in_group(&self, plugin: &str, joined: bool) {
        let mut set = self.in_group.write().unwrap_or_else(|p| p.into_inner());
        if joined {
            set.insert(plugin.to_owned());
        } else {
            set.remove(plugin);
        }
    }

    /// Takes shared plugins' routes out of `routes` when the event reaches
    /// them through their queue group instead; returns the shared plugins
    /// that receive it directly although it is exported (out of their group).
    pub(super) fn through_groups(
        &self,
        routes: &mut Vec<Arc<Route>>,
        topic: &str,
        via: Via,
    ) -> Vec<Arc<str>> {
        let mut taken = Vec::new();
        if !routes.iter().any(|r| r.shared) {
            return taken;
        }
        let Some(outbox) = self.outbox.get() else {
            return taken;
        };
        let exported = outbox.exports(topic);
        let in_group = self.in_group.read().unwrap_or_else(|p| p.into_inner());
        routes.retain(|r| {
            if !r.shared {
                return true;
            }
            match via {
                // The group gives it to one host: the fan-out copy is not for it.
                Via::Imported => false,
                Via::Local if !exported => true,
                Via::Local if in_group.contains(&r.plugin) => false,
                Via::Local => {
                    taken.push(Arc::from(r.plugin.as_str()));
                    true
                }
            }
        });
        taken
    }

    /// Hands an event its queue group gave this host to shared plugin
    /// `plugin` alone (application subscribers saw it as fan-out, if at
    /// all). A stored delivery (`receipt`) is queued even past the queue's
    /// limit (the consumer bounds how many it holds); one the plugin cannot
    /// take (stopped, suspended and full) is handed back.
    pub(crate) async fn deliver_to(
        &self,
        plugin: &str,
        mut event: Event,
        receipt: Option<Receipt>,
    ) {
        event.payload.pack_in_place();
        let event = Arc::new(event);
        let route = self.route(plugin);
        let stored = receipt.is_some();
        if let (Some(receipt), Some(receipts)) = (receipt, self.receipts.get()) {
            receipts.hold(plugin, &event.id, receipt);
        }
        let Some(route) = route else {
            if !self.hand_back(plugin, &event) {
                tracing::warn!(plugin, event.id = %event.id, "plugin stopped before its group's event could be queued");
            }
            return;
        };
        self.pending.fetch_add(1, Ordering::SeqCst);
        let queue = route.queue_for(&event);
        let outcome = if stored {
            queue.try_push(event.clone(), true)
        } else {
            queue.push_async(event.clone()).await
        };
        match self.retry_closed(&route, outcome) {
            Push::Refused(ev) | Push::Closed(ev) if self.hand_back(plugin, &ev) => self.done(),
            other => self.account(&route, other),
        }
    }

    /// Takes the receipt of `plugin`'s stored delivery of event `id`, if it holds one.
    pub(crate) fn take_receipt(&self, plugin: &str, id: &str) -> Option<Receipt> {
        self.receipts.get()?.take(plugin, id)
    }

    /// Hands a stored delivery back to the stream (redelivered to a host
    /// running `plugin`, maybe this one); `false` when `event` is no stored
    /// delivery of `plugin`'s.
    pub(crate) fn hand_back(&self, plugin: &str, event: &Event) -> bool {
        match self.take_receipt(plugin, &event.id) {
            Some(receipt) => {
                receipt.hand_back();
                true
            }
            None => false,
        }
    }

    /// Hands back the stored deliveries parked in suspended `plugin`'s
    /// queue (it left its group); its other parked events stay. Returns how
    /// many went back.
    pub(crate) fn hand_back_parked(&self, plugin: &str) -> usize {
        let Some(route) = self.route(plugin) else {
            return 0;
        };
        let mut kept = Vec::new();
        let mut handed = 0;
        for d in route.queue.take_parked() {
            if self.hand_back(plugin, &d.event) {
                handed += 1;
                self.done();
            } else {
                kept.push(d);
            }
        }
        for d in route.queue.requeue(kept) {
            self.unhandled(plugin, &d.event, d.attempt, SUSPENDED);
            self.done();
        }
        handed
    }

    /// An event `plugin` did not handle for a reason not its own (it was
    /// stopped, suspended or unloaded): a stored delivery is handed back,
    /// any other event dead-lettered with `why`.
    pub(crate) fn unhandled(&self, plugin: &str, event: &Event, attempts: u32, why: &str) {
        if !self.hand_back(plugin, event) {
            self.dead_letter(plugin, event, attempts, why);
        }
    }
}
