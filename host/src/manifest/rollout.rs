//! How a new version of a plugin is brought in (`rollout:` in
//! `plugin.yaml`, SPEC §13): the types, their defaults, and reading them
//! from the manifest with every bad value reported at its place.

use serde::Serialize;

use super::raw::{Kind, Node};
use super::validate::set;
use super::values::Check;
use super::{KeyPositions, suggest};

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
    /// Every strategy, in the order the docs list them.
    pub const ALL: [Strategy; 3] = [Strategy::Replace, Strategy::Shadow, Strategy::Gradual];

    /// The strategy written as `name` in `plugin.yaml`, if it is one.
    pub fn from_name(name: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.as_str() == name)
    }

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

impl Rollout {
    /// The largest `rollout.promote_after`: a billion events. A rollout that
    /// needs more before trusting the new version is one to promote by hand.
    pub const MAX_PROMOTE_AFTER: u64 = 1_000_000_000;

    /// The largest `rollout.max_candidate_errors`: a billion, which already
    /// means "never abandon by itself".
    pub const MAX_CANDIDATE_ERRORS: u64 = 1_000_000_000;
}

/// The keys under `rollout:`.
pub(super) const KEYS: &[&str] = &[
    "strategy",
    "percent",
    "key",
    "promote_after",
    "max_candidate_errors",
];

/// Reads the `rollout:` mapping into `rollout`, recording each key's
/// position; a key left empty keeps its default, and a bad value is reported
/// at the value and leaves the default.
/// Keys that only matter with `gradual` (`percent`, `key`) are accepted with
/// any strategy: the author may switch strategy later.
pub(super) fn read(
    check: &mut Check,
    value: &Node,
    rollout: &mut Rollout,
    positions: &mut KeyPositions,
) {
    if let Some(strategy) = value.as_str().and_then(Strategy::from_name) {
        let name = strategy.as_str();
        let message = format!(
            "rollout: expected a mapping of keys to values, found the string `{name}` \
             (write `rollout: {{strategy: {name}}}`)"
        );
        check.report(Some(value.pos), message);
        return;
    }
    let Some(entries) = check.mapping("rollout", value) else {
        return;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str().filter(|k| KEYS.contains(k)) else {
            check.unknown_key(Some("rollout"), key, KEYS);
            continue;
        };
        positions.insert(format!("rollout.{name}"), key.pos);
        if value.is_null() {
            // Left empty, like a top-level key: the default (`key: ~` is "by event id").
            continue;
        }
        let label = format!("rollout.{name}");
        match name {
            "strategy" => set(&mut rollout.strategy, strategy(check, &label, value)),
            "percent" => set(
                &mut rollout.percent,
                check
                    .integer(&label, value, 1, 100)
                    .and_then(|p| u8::try_from(p).ok()),
            ),
            "key" => set(
                &mut rollout.key,
                payload_path(check, &label, value).map(Some),
            ),
            "promote_after" => {
                let why = "0 would promote at once, which is what `strategy: replace` does";
                let count = at_least_one(check, &label, value, Rollout::MAX_PROMOTE_AFTER, why);
                set(&mut rollout.promote_after, count.map(Some));
            }
            "max_candidate_errors" => {
                let why = "0 would abandon the rollout at once";
                let max = Rollout::MAX_CANDIDATE_ERRORS;
                let count = at_least_one(check, &label, value, max, why);
                set(&mut rollout.max_candidate_errors, count);
            }
            _ => unreachable!("`{name}` is in rollout::KEYS but not handled"),
        }
    }
}

fn strategy(check: &mut Check, label: &str, value: &Node) -> Option<Strategy> {
    let text = check.string(label, value)?;
    if let Some(strategy) = Strategy::from_name(text) {
        return Some(strategy);
    }
    let hint = suggest::hint(text, &Strategy::ALL.map(Strategy::as_str));
    let message = format!(
        "{label}: `{}` is not one of `replace`, `shadow`, `gradual`{hint}",
        check.text(value)
    );
    check.report(Some(value.pos), message);
    None
}

/// A count from 1 to `max`; a written `0` is refused with `why`.
fn at_least_one(check: &mut Check, label: &str, value: &Node, max: u64, why: &str) -> Option<u64> {
    if matches!(value.kind, Kind::UInt(0)) {
        let message = format!("{label}: must be at least 1, found `0` ({why})");
        check.report(Some(value.pos), message);
        return None;
    }
    check.integer(label, value, 1, max)
}

/// `rollout.key`: a dotted path of payload field names.
fn payload_path(check: &mut Check, label: &str, value: &Node) -> Option<String> {
    let Some(path) = value.as_str() else {
        check.wrong_type(label, value, "a dotted payload path like `user.id`");
        return None;
    };
    let problem = if path.is_empty() {
        format!("{label}: cannot be empty (leave `key` out to choose by event id)")
    } else if let Some(problem) = path_problem(path) {
        format!("{label}: `{}` {problem}", check.text(value))
    } else {
        return Some(path.to_owned());
    };
    check.report(Some(value.pos), problem);
    None
}

/// What is wrong with a non-empty `path` as a dotted path of payload field
/// names, if anything, as the end of a sentence about it: each
/// `.`-separated field name is a non-empty run of ASCII letters, digits, `_`
/// and `-`.
fn path_problem(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("$.") {
        return Some(format!(
            "starts with `$.`: write the path inside the payload without it (`{rest}`)"
        ));
    }
    if path.split('.').any(str::is_empty) {
        return Some("has an empty field name (check for `..` or a dot at either end)".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    path.chars().find(|c| !allowed(*c)).map(|c| {
        format!(
            "has {c:?}, which cannot be in a field name \
             (use letters, digits, `_` and `-`, with `.` between field names)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_are_read_by_their_written_name() {
        for strategy in Strategy::ALL {
            assert_eq!(Strategy::from_name(strategy.as_str()), Some(strategy));
        }
        assert_eq!(Strategy::from_name("Shadow"), None);
        assert_eq!(Strategy::from_name(""), None);
    }

    #[test]
    fn payload_paths_are_dotted_field_names() {
        for good in ["user", "user.id", "a-b.c_d.0", "X9"] {
            assert_eq!(path_problem(good), None, "{good}");
        }
        let empty = "has an empty field name (check for `..` or a dot at either end)";
        let rule = "which cannot be in a field name \
                    (use letters, digits, `_` and `-`, with `.` between field names)";
        for (bad, problem) in [
            ("user..id", empty.to_owned()),
            (".user", empty.to_owned()),
            ("user.", empty.to_owned()),
            (".", empty.to_owned()),
            (
                "$.user.id",
                "starts with `$.`: write the path inside the payload without it (`user.id`)"
                    .to_owned(),
            ),
            ("user id", format!("has ' ', {rule}")),
            ("items[0]", format!("has '[', {rule}")),
            ("prénom", format!("has 'é', {rule}")),
            ("$user", format!("has '$', {rule}")),
        ] {
            assert_eq!(path_problem(bad), Some(problem), "{bad}");
        }
    }
}
