//! Rollouts (SPEC §13): a new version of a plugin brought in beside the
//! running one, in its shadow or on a share of the events, until it is
//! promoted or rolled back.
//!
//! This module holds what a rollout is to its readers ([`RolloutStatus`])
//! and why a verb was refused ([`RolloutError`]). The rollout's life is the
//! supervisor's (`supervisor::rollout`): it starts a candidate when a new
//! version arrives, and promotes or rolls it back.

pub(crate) mod compare;
pub(crate) mod record;
pub(crate) mod shadow;
pub(crate) mod split;

use serde::Serialize;

use crate::manifest::Strategy;

/// A rollout in progress, as `GET /plugins/{name}` and `plughost status` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RolloutStatus {
    /// `shadow` or `gradual`.
    pub strategy: Strategy,
    /// The running version.
    pub from: String,
    /// The candidate's version.
    pub to: String,
    /// With `gradual`: the share of events the candidate handles.
    pub percent: Option<u8>,
    /// Events both versions handled and were compared (`shadow`).
    pub compared: u64,
    /// Of those, the ones where the versions differed.
    pub differed: u64,
    /// Events the candidate could not keep up with, not compared (`shadow`).
    pub skipped: u64,
    /// Errors of the candidate.
    pub candidate_errors: u64,
    /// Events the candidate handled for real (`gradual`).
    pub handled_by_candidate: u64,
}

/// Why a rollout verb (promote, rollback, a new share) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RolloutError {
    /// No plugin by that name is running.
    #[error("no plugin named `{0}` is running")]
    UnknownPlugin(String),
    /// The plugin runs one version only.
    #[error("plugin `{0}` has no rollout in progress")]
    NoRollout(String),
    /// Only a gradual rollout has a share of events to change.
    #[error("plugin `{plugin}`'s rollout is `{}`: only a `gradual` one has a share to change", strategy.as_str())]
    NotGradual {
        /// The plugin.
        plugin: String,
        /// Its rollout's strategy.
        strategy: Strategy,
    },
    /// A share out of 1 to 100.
    #[error("a rollout's share is 1 to 100 percent, found {0}")]
    Percent(u32),
    /// The candidate could not take over (its `init` failed, or it stopped).
    #[error("plugin `{plugin}`'s new version could not take over: {error}")]
    Candidate {
        /// The plugin.
        plugin: String,
        /// Why.
        error: String,
    },
}
