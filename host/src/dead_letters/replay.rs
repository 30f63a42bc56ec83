//! Replaying a kept dead letter (SPEC §15): the host's side, checking the
//! letter and its plugin, then handing the original event to the bus's
//! delivery path for that plugin alone. A plugin that fails again makes a
//! new dead letter, with a new id.

use crate::Host;
use crate::actor::Health;
use crate::bus::Replay;

use super::{DeadLetters, Taken};

/// What a replay queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The dead letter's id (it left the store).
    pub id: String,
    /// The plugin it was delivered to.
    pub plugin: String,
    /// The original event's id, the same again.
    pub event_id: String,
}

/// Why a dead letter was not replayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// No kept dead letter has this id (never was, evicted, or replayed).
    #[error("no dead letter with id `{0}` (it may have been replayed or evicted)")]
    Unknown(String),
    /// The letter's payload was over 1 MiB and only a prefix was kept.
    #[error(
        "dead letter `{0}` is truncated (its event's payload was over 1 MiB): it cannot be replayed"
    )]
    Truncated(String),
    /// The plugin does not take events now.
    #[error("dead letter `{id}`: plugin `{plugin}` is {state}; replay it once the plugin runs")]
    NotRunning {
        /// The dead letter's id.
        id: String,
        /// The plugin.
        plugin: String,
        /// What it is instead: `disabled`, `failed`, `suspended`, `stopped`.
        state: &'static str,
    },
    /// The plugin's queue is full and drops new events.
    #[error(
        "dead letter `{id}`: plugin `{plugin}`'s queue is full and drops new events; try again"
    )]
    QueueFull {
        /// The dead letter's id.
        id: String,
        /// The plugin.
        plugin: String,
    },
    /// The host is shutting down and takes no new event.
    #[error("the host is shutting down")]
    ShuttingDown,
}

impl Host {
    /// The host's dead-letter store: list ([`DeadLetters::list`]) and look
    /// up the last dead letters, or change its bounds
    /// ([`DeadLetters::set_limits`]; default 1000 letters, 64 MiB).
    pub fn dead_letters(&self) -> &DeadLetters {
        self.inner.bus.dead_letters()
    }

    /// Delivers dead letter `id`'s original event (same id, topic, payload,
    /// headers) again to the plugin that dead-lettered it, alone, as a
    /// first attempt; once it is queued the letter leaves the store. A
    /// plugin that fails again makes a new dead letter.
    pub async fn replay_dead_letter(&self, id: &str) -> Result<Replayed, ReplayError> {
        if self.inner.live.is_closed() {
            return Err(ReplayError::ShuttingDown);
        }
        let store = self.dead_letters();
        let letter = store
            .get(id)
            .ok_or_else(|| ReplayError::Unknown(id.to_owned()))?;
        if letter.truncated {
            return Err(ReplayError::Truncated(id.to_owned()));
        }
        let not_running = |state| ReplayError::NotRunning {
            id: id.to_owned(),
            plugin: letter.plugin.clone(),
            state,
        };
        if let Some(state) = self.not_running(&letter.plugin) {
            return Err(not_running(state));
        }
        // Taken out first: two replays of one letter cannot both deliver it.
        // Put back unless queued, even when this future is dropped while it
        // waits for room (the client gave up, the server stopped).
        let taken = store
            .take(id)
            .ok_or_else(|| ReplayError::Unknown(id.to_owned()))?;
        let event = taken.letter.event.clone();
        let event_id = event.id.clone();
        let mut held = Held {
            store,
            taken: Some(taken),
        };
        let refused = match self.inner.bus.replay(&letter.plugin, event).await {
            Replay::Queued => None,
            Replay::NotRunning => Some(not_running("stopped")),
            Replay::Suspended => Some(not_running("suspended")),
            Replay::QueueFull => Some(ReplayError::QueueFull {
                id: id.to_owned(),
                plugin: letter.plugin.clone(),
            }),
        };
        match refused {
            // `held` still holds the letter: it goes back in its place.
            Some(e) => Err(e),
            None => {
                held.taken = None;
                Ok(Replayed {
                    id: id.to_owned(),
                    plugin: letter.plugin.clone(),
                    event_id,
                })
            }
        }
    }

    /// What `plugin` is when it does not take events now, `None` when it runs.
    fn not_running(&self, plugin: &str) -> Option<&'static str> {
        match self.stats(plugin).map(|s| s.health()) {
            Some(Health::Running) => None,
            Some(Health::Suspended) => Some("suspended"),
            Some(Health::Failed) => Some("failed"),
            None if self.is_enabled(plugin) == Some(false) => Some("disabled"),
            None if self.catalog().find(plugin).is_none() => Some("unknown now"),
            None => Some("stopped"),
        }
    }
}

/// A letter taken out for a replay, put back in its place when dropped
/// still holding it (the replay was refused or cancelled before queuing).
struct Held<'a> {
    store: &'a DeadLetters,
    taken: Option<Taken>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            self.store.restore(taken);
        }
    }
}
