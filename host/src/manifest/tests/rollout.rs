//! `rollout:` in whole manifests (SPEC §13): every key read with its
//! position, the defaults, and each bad value refused at its place.

use super::*;

/// A manifest whose `rollout:` section holds `keys` (indented lines).
fn with_rollout(keys: &str) -> String {
    with_head(&format!("rollout:\n{keys}"))
}

#[test]
fn every_rollout_key_is_read_with_its_position() {
    let m = ok(&with_rollout(
        "  strategy: gradual\n  percent: 25\n  key: user.id\n  promote_after: 500\n  max_candidate_errors: 3\n",
    ));
    assert_eq!(
        m.rollout,
        Rollout {
            strategy: Strategy::Gradual,
            percent: 25,
            key: Some("user.id".to_owned()),
            promote_after: Some(500),
            max_candidate_errors: 3,
        }
    );
    assert_eq!(m.positions.get("rollout"), Some(Position::new(3, 1)));
    assert_eq!(
        m.positions.get("rollout.strategy"),
        Some(Position::new(4, 3))
    );
    assert_eq!(m.positions.get("rollout.key"), Some(Position::new(6, 3)));
    assert_eq!(
        m.positions.get("rollout.max_candidate_errors"),
        Some(Position::new(8, 3))
    );
    assert_eq!(m.positions.iter().count(), 2 + 1 + 5);
}

#[test]
fn rollout_keys_left_out_keep_their_defaults() {
    assert_eq!(ok(HEAD).rollout, Rollout::default());
    assert_eq!(ok(&with_head("rollout:\n")).rollout, Rollout::default());
    assert_eq!(
        Rollout::default(),
        Rollout {
            strategy: Strategy::Replace,
            percent: 10,
            key: None,
            promote_after: None,
            max_candidate_errors: 10,
        }
    );
    assert_eq!(
        ok(&with_rollout("  strategy: shadow\n")).rollout,
        Rollout {
            strategy: Strategy::Shadow,
            ..Rollout::default()
        }
    );
    assert_eq!(
        ok(&with_head("rollout: {promote_after: 1, percent: 100}\n")).rollout,
        Rollout {
            percent: 100,
            promote_after: Some(1),
            ..Rollout::default()
        }
    );
}

#[test]
fn percent_and_key_are_allowed_with_any_strategy() {
    // The author may switch strategy later: no error, no warning.
    for strategy in ["replace", "shadow"] {
        let m = ok(&with_rollout(&format!(
            "  strategy: {strategy}\n  percent: 50\n  key: order.customer\n"
        )));
        assert_eq!(m.rollout.percent, 50);
        assert_eq!(m.rollout.key.as_deref(), Some("order.customer"));
    }
    assert_eq!(ok(&with_rollout("  percent: 5\n")).rollout.percent, 5);
}

#[test]
fn an_unknown_rollout_key_suggests_the_closest() {
    assert_eq!(
        error(&with_rollout("  percnt: 5\n")),
        "4:3: unknown key `percnt` in `rollout` (did you mean `percent`?)"
    );
    assert_eq!(
        error(&with_rollout("  promote: 5\n")),
        "4:3: unknown key `promote` in `rollout` (did you mean `promote_after`?)"
    );
    assert_eq!(
        error(&with_rollout("  stratgy: shadow\n")),
        "4:3: unknown key `stratgy` in `rollout` (did you mean `strategy`?)"
    );
    assert_eq!(
        error(&with_rollout("  colour: red\n")),
        "4:3: unknown key `colour` in `rollout`"
    );
    assert_eq!(
        error(&with_rollout("  percent: 5\n  percent: 6\n")),
        "5:3: duplicate key `percent` (first written at line 4, column 3)"
    );
}

#[test]
fn a_rollout_key_written_at_the_top_is_pointed_to_its_place() {
    assert_eq!(
        error(&with_head("percent: 50\n")),
        "3:1: unknown key `percent` (did you mean `rollout.percent`?)"
    );
    assert_eq!(
        error(&with_head("strategy: shadow\n")),
        "3:1: unknown key `strategy` (did you mean `rollout.strategy`?)"
    );
    assert_eq!(
        error(&with_head("max_candidate_errors: 3\n")),
        "3:1: unknown key `max_candidate_errors` (did you mean `rollout.max_candidate_errors`?)"
    );
    assert_eq!(
        error(&with_head("rolout:\n  strategy: shadow\n")),
        "3:1: unknown key `rolout` (did you mean `rollout`?)"
    );
}

#[test]
fn a_wrong_strategy_names_the_three_and_suggests_the_closest() {
    assert_eq!(
        error(&with_rollout("  strategy: shadw\n")),
        "4:13: rollout.strategy: `shadw` is not one of `replace`, `shadow`, `gradual` \
         (did you mean `shadow`?)"
    );
    assert_eq!(
        error(&with_rollout("  strategy: Gradual\n")),
        "4:13: rollout.strategy: `Gradual` is not one of `replace`, `shadow`, `gradual` \
         (did you mean `gradual`?)"
    );
    assert_eq!(
        error(&with_rollout("  strategy: canary\n")),
        "4:13: rollout.strategy: `canary` is not one of `replace`, `shadow`, `gradual`"
    );
    assert_eq!(
        error(&with_rollout("  strategy: [shadow]\n")),
        "4:13: rollout.strategy: expected a string, found a list"
    );
}

#[test]
fn rollout_must_be_a_mapping() {
    assert_eq!(
        error(&with_head("rollout: shadow\n")),
        "3:10: rollout: expected a mapping of keys to values, found the string `shadow` \
         (write `rollout: {strategy: shadow}`)"
    );
    assert_eq!(
        error(&with_head("rollout: [gradual]\n")),
        "3:10: rollout: expected a mapping of keys to values, found a list"
    );
    assert_eq!(
        error(&with_head("rollout: 50\n")),
        "3:10: rollout: expected a mapping of keys to values, found the number `50`"
    );
}

#[test]
fn percent_is_from_1_to_100() {
    assert_eq!(
        errors(&with_rollout(
            "  percent: 0\n  strategy: gradual\n  promote_after: 3\n"
        )),
        ["4:12: rollout.percent: must be at least 1, found `0`"]
    );
    assert_eq!(
        error(&with_rollout("  percent: 101\n")),
        "4:12: rollout.percent: must be at most 100, found `101`"
    );
    assert_eq!(
        error(&with_rollout("  percent: -5\n")),
        "4:12: rollout.percent: must be at least 1, found `-5`"
    );
    assert_eq!(
        error(&with_rollout("  percent: 12.5\n")),
        "4:12: rollout.percent: expected an integer, found the number `12.5`"
    );
    assert_eq!(
        error(&with_rollout("  percent: 50%\n")),
        "4:12: rollout.percent: expected an integer, found the string `50%`"
    );
    assert_eq!(
        error(&with_rollout("  percent: \"50\"\n")),
        "4:12: rollout.percent: expected an integer, found the string `50` (remove the quotes)"
    );
    assert_eq!(ok(&with_rollout("  percent: 1\n")).rollout.percent, 1);
    assert_eq!(ok(&with_rollout("  percent: 100\n")).rollout.percent, 100);
}

#[test]
fn a_bad_key_path_is_refused_at_its_value() {
    assert_eq!(
        error(&with_rollout("  key: user..id\n")),
        "4:8: rollout.key: `user..id` has an empty field name \
         (check for `..` or a dot at either end)"
    );
    assert_eq!(
        error(&with_rollout("  key: \"user id\"\n")),
        "4:8: rollout.key: `user id` has ' ', which cannot be in a field name \
         (use letters, digits, `_` and `-`, with `.` between field names)"
    );
    assert_eq!(
        error(&with_rollout("  key: items[0].id\n")),
        "4:8: rollout.key: `items[0].id` has '[', which cannot be in a field name \
         (use letters, digits, `_` and `-`, with `.` between field names)"
    );
    assert_eq!(
        error(&with_rollout("  key: $.user.id\n")),
        "4:8: rollout.key: `$.user.id` starts with `$.`: write the path inside the \
         payload without it (`user.id`)"
    );
    assert_eq!(
        error(&with_rollout("  key: \"\"\n")),
        "4:8: rollout.key: cannot be empty (leave `key` out to choose by event id)"
    );
    assert_eq!(
        error(&with_rollout("  key: 42\n")),
        "4:8: rollout.key: expected a dotted payload path like `user.id`, found the number `42`"
    );
    assert_eq!(
        error(&with_rollout("  key: {user: id}\n")),
        "4:8: rollout.key: expected a dotted payload path like `user.id`, found a mapping"
    );
    assert_eq!(
        ok(&with_rollout("  key: order.customer-id\n")).rollout.key,
        Some("order.customer-id".to_owned())
    );
    assert_eq!(
        ok(&with_rollout("  key: \"42\"\n")).rollout.key,
        Some("42".to_owned())
    );
}

#[test]
fn promote_after_is_at_least_1_and_says_why() {
    assert_eq!(
        error(&with_rollout("  promote_after: 0\n")),
        "4:18: rollout.promote_after: must be at least 1, found `0` \
         (0 would promote at once, which is what `strategy: replace` does)"
    );
    assert_eq!(
        error(&with_rollout("  promote_after: 1000000001\n")),
        "4:18: rollout.promote_after: must be at most 1000000000, found `1000000001`"
    );
    assert_eq!(
        error(&with_rollout("  promote_after: manual\n")),
        "4:18: rollout.promote_after: expected an integer, found the string `manual`"
    );
    assert_eq!(
        ok(&with_rollout("  promote_after: 1000000000\n"))
            .rollout
            .promote_after,
        Some(Rollout::MAX_PROMOTE_AFTER)
    );
}

#[test]
fn max_candidate_errors_refuses_0_because_it_would_abandon_at_once() {
    assert_eq!(
        error(&with_rollout("  max_candidate_errors: 0\n")),
        "4:25: rollout.max_candidate_errors: must be at least 1, found `0` \
         (0 would abandon the rollout at once)"
    );
    assert_eq!(
        error(&with_rollout("  max_candidate_errors: -1\n")),
        "4:25: rollout.max_candidate_errors: must be at least 1, found `-1`"
    );
    assert_eq!(
        error(&with_rollout("  max_candidate_errors: 1000000001\n")),
        "4:25: rollout.max_candidate_errors: must be at most 1000000000, found `1000000001`"
    );
    assert_eq!(
        ok(&with_rollout("  max_candidate_errors: 1\n"))
            .rollout
            .max_candidate_errors,
        1
    );
}

#[test]
fn every_bad_rollout_value_is_reported_in_file_order() {
    assert_eq!(
        errors(&with_rollout(
            "  max_candidate_errors: 0\n  strategy: gradul\n  percnt: 5\n  key: a.\n  promote_after: 0\n"
        )),
        [
            "4:25: rollout.max_candidate_errors: must be at least 1, found `0` \
             (0 would abandon the rollout at once)",
            "5:13: rollout.strategy: `gradul` is not one of `replace`, `shadow`, `gradual` \
             (did you mean `gradual`?)",
            "6:3: unknown key `percnt` in `rollout` (did you mean `percent`?)",
            "7:8: rollout.key: `a.` has an empty field name (check for `..` or a dot at either end)",
            "8:18: rollout.promote_after: must be at least 1, found `0` \
             (0 would promote at once, which is what `strategy: replace` does)",
        ]
    );
}

#[test]
fn a_rollout_key_left_empty_keeps_its_default() {
    let m = ok(&with_rollout(
        "  strategy:\n  percent: ~\n  key:\n  promote_after: ~\n  max_candidate_errors:\n",
    ));
    assert_eq!(m.rollout, Rollout::default());
    assert_eq!(m.positions.get("rollout.key"), Some(Position::new(6, 3)));
}

#[test]
fn the_example_manifest_shows_every_rollout_key_with_its_default() {
    let m = ok(include_str!("../../../../plugin.yaml.example"));
    assert_eq!(m.rollout, Rollout::default());
    let written: Vec<&str> = m
        .positions
        .iter()
        .filter_map(|(key, _)| key.strip_prefix("rollout."))
        .collect();
    let mut every = crate::manifest::rollout::KEYS.to_vec();
    every.sort_unstable();
    assert_eq!(written, every);
}
