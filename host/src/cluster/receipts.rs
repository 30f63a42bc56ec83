//! Receipts of stored deliveries (SPEC §14): a message a shared plugin's
//! durable consumer received, held until the plugin's outcome settles it.
//!
//! The bus keeps each receipt by plugin and event id while the event waits
//! in the plugin's queue or is handled; the plugin thread takes it back
//! when the outcome is known and settles it: an ack (sent only once the
//! server took every event exported until then, the handler's own
//! publishes among them), a redelivery after a delay (`outcome.retry`),
//! a termination (dead letter), or a hand-back (not the plugin's doing: it
//! was stopped or suspended; redelivered at once, maybe to another host).
//! Settling never blocks the plugin thread: it is a task on the cluster's
//! runtime. While a receipt is held, the server is told every few seconds
//! that the work is in progress, so a long queue does not make it
//! redeliver what this host still holds; a host that dies stops saying so,
//! and what it held is redelivered after the consumer's `ack_wait`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{AckKind, Message};
use tokio::sync::OwnedSemaphorePermit;

use super::outbox::Outbox;

/// How often held messages are said to be in progress (well inside `ack_wait`).
pub(crate) const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// What the receipts share: the runtime settling runs on and what it waits for.
#[derive(Debug)]
struct Shared {
    runtime: tokio::runtime::Handle,
    outbox: Arc<Outbox>,
    /// Settlements sent but not confirmed sent yet.
    settling: AtomicUsize,
    settled: tokio::sync::Notify,
}

/// One stored delivery to one plugin, not settled yet.
#[derive(Debug)]
pub(crate) struct Receipt {
    message: Message,
    attempt: u32,
    /// The consumer's room for one more held delivery, given back when settled.
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
}

/// A delivery held: what a receipt is while the bus keeps it.
#[derive(Debug)]
struct Held {
    message: Message,
    attempt: u32,
    permit: OwnedSemaphorePermit,
}

impl Receipt {
    /// Which delivery of the message this is (1 for the first).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Handled: acknowledged once the server took what was exported until now.
    pub(crate) fn acknowledge(self) {
        let seq = self.shared.outbox.last_seq();
        let outbox = self.shared.outbox.clone();
        self.settle(AckKind::Ack, Some((outbox, seq)));
    }

    /// `outcome.retry`: redelivered after `after`.
    pub(crate) fn retry(self, after: Duration) {
        self.settle(AckKind::Nak(Some(after)), None);
    }

    /// Dead-lettered: never delivered again.
    pub(crate) fn terminate(self) {
        self.settle(AckKind::Term, None);
    }

    /// Not handled, not for the plugin's fault: redelivered at once.
    pub(crate) fn hand_back(self) {
        self.settle(AckKind::Nak(None), None);
    }

    fn settle(self, kind: AckKind, after: Option<(Arc<Outbox>, u64)>) {
        let shared = self.shared.clone();
        shared.settling.fetch_add(1, Ordering::SeqCst);
        let message = self.message;
        let permit = self.permit;
        self.shared.runtime.spawn(async move {
            if let Some((outbox, seq)) = after {
                outbox.wait_accepted(seq).await;
            }
            if let Err(e) = message.ack_with(kind).await {
                tracing::warn!(subject = %message.subject, "cluster: settling a stored delivery failed ({kind:?}): {e}; the server redelivers it");
            }
            drop(permit);
            if shared.settling.fetch_sub(1, Ordering::SeqCst) == 1 {
                shared.settled.notify_waiters();
            }
        });
    }
}

/// The receipts held now, by plugin and event id.
#[derive(Debug)]
pub(crate) struct Receipts {
    /// By plugin, then event id: looked up by `&str`, so the plugin thread
    /// asking after every event it handled allocates nothing.
    held: Mutex<HashMap<String, HashMap<String, Vec<Held>>>>,
    shared: Arc<Shared>,
}

impl Receipts {
    /// Receipts settled on `runtime`, acknowledgements waiting for `outbox`.
    pub(crate) fn new(runtime: tokio::runtime::Handle, outbox: Arc<Outbox>) -> Self {
        Receipts {
            held: Mutex::default(),
            shared: Arc::new(Shared {
                runtime,
                outbox,
                settling: AtomicUsize::new(0),
                settled: tokio::sync::Notify::new(),
            }),
        }
    }

    /// A receipt for `message`, delivery number `attempt`, holding `permit`.
    pub(crate) fn receipt(
        &self,
        message: Message,
        attempt: u32,
        permit: OwnedSemaphorePermit,
    ) -> Receipt {
        Receipt {
            message,
            attempt,
            permit,
            shared: self.shared.clone(),
        }
    }

    /// Holds `receipt` for `plugin`'s delivery of event `id`.
    pub(crate) fn hold(&self, plugin: &str, id: &str, receipt: Receipt) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let of_plugin = held.entry(plugin.to_owned()).or_default();
        of_plugin.entry(id.to_owned()).or_default().push(Held {
            message: receipt.message,
            attempt: receipt.attempt,
            permit: receipt.permit,
        });
    }

    /// Takes back the oldest receipt held for `plugin`'s delivery of event `id`.
    pub(crate) fn take(&self, plugin: &str, id: &str) -> Option<Receipt> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let of_plugin = held.get_mut(plugin)?;
        let messages = of_plugin.get_mut(id)?;
        let Held {
            message,
            attempt,
            permit,
        } = messages.remove(0);
        if messages.is_empty() {
            of_plugin.remove(id);
        }
        Some(Receipt {
            message,
            attempt,
            permit,
            shared: self.shared.clone(),
        })
    }

    /// Tells the server, every [`PROGRESS_EVERY`], that the held deliveries
    /// are being worked on. Runs until aborted.
    pub(crate) async fn keep_alive(self: Arc<Self>) {
        loop {
            tokio::time::sleep(PROGRESS_EVERY).await;
            let messages: Vec<Message> = {
                let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                held.values()
                    .flat_map(HashMap::values)
                    .flatten()
                    .map(|h| h.message.clone())
                    .collect()
            };
            for message in messages {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }

    /// Waits, up to `within`, until every settlement sent was sent.
    pub(crate) async fn settled(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let notified = self.shared.settled.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.shared.settling.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }
}
