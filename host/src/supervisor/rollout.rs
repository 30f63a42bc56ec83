//! The rollout verbs on [`Host`] (SPEC §13): promote, roll back, change a
//! gradual share, and read a rollout's state.

use crate::host::Host;
use crate::rollout::{RolloutError, RolloutStatus};

impl Host {
    /// Makes plugin `name`'s candidate the running version; answers once it
    /// is in effect.
    pub async fn promote(&self, name: &str) -> Result<(), RolloutError> {
        self.rollout_of(name)?;
        Err(RolloutError::NoRollout(name.to_owned()))
    }

    /// Discards plugin `name`'s candidate; the running version goes on alone.
    pub async fn rollback(&self, name: &str) -> Result<(), RolloutError> {
        self.rollout_of(name)?;
        Err(RolloutError::NoRollout(name.to_owned()))
    }

    /// Changes the share of events plugin `name`'s gradual candidate
    /// handles, 1 to 100; 100 promotes it.
    pub async fn set_rollout_percent(&self, name: &str, percent: u32) -> Result<(), RolloutError> {
        if !(1..=100).contains(&percent) {
            return Err(RolloutError::Percent(percent));
        }
        self.rollout_of(name)?;
        Err(RolloutError::NoRollout(name.to_owned()))
    }

    /// Plugin `name`'s rollout in progress, if any.
    pub fn rollout_status(&self, name: &str) -> Option<RolloutStatus> {
        self.rollout_of(name).ok().flatten()
    }

    /// The rollout of running plugin `name` (`None`: it runs one version).
    fn rollout_of(&self, name: &str) -> Result<Option<RolloutStatus>, RolloutError> {
        match self.inner.plugins.named(name) {
            Some(_) => Ok(None),
            None => Err(RolloutError::UnknownPlugin(name.to_owned())),
        }
    }
}
