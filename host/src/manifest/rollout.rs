//! How a new version of a plugin is brought in (`rollout:` in
//! `plugin.yaml`, SPEC §13): the types and their defaults.

use serde::Serialize;

/// What a new version of the plugin does when it is loaded (`rollout.strategy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// It replaces the running version at once (the safe swap of a reload).
    #[default]
    Replace,
    /// It runs beside the running version on the same events; only the
    /// running version's publishes and outcome take effect, and the
    /// candidate's differences are reported.
    Shadow,
    /// It handles `percent` of the events for real, the running version the rest.
    Gradual,
}

impl Strategy {
    /// The name as written in `plugin.yaml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Replace => "replace",
            Strategy::Shadow => "shadow",
            Strategy::Gradual => "gradual",
        }
    }
}

/// The `rollout:` settings.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Rollout {
    /// `rollout.strategy` (default `replace`).
    pub strategy: Strategy,
    /// `rollout.percent`: with `gradual`, the share of events the new
    /// version handles, 1 to 100 (default 10).
    pub percent: u8,
    /// `rollout.key`: with `gradual`, a dotted payload path; events with the
    /// same value there go to the same version. `None`: by event id.
    pub key: Option<String>,
    /// `rollout.promote_after`: events compared without a difference
    /// (`shadow`) or handled without an error (`gradual`) before the new
    /// version is promoted by itself; `None` waits for an operator.
    pub promote_after: Option<u64>,
    /// `rollout.max_candidate_errors`: errors of the new version before the
    /// rollout is abandoned by itself (default 10).
    pub max_candidate_errors: u64,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            strategy: Strategy::Replace,
            percent: 10,
            key: None,
            promote_after: None,
            max_candidate_errors: 10,
        }
    }
}
