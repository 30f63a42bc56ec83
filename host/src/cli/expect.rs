//! `plughost test --expect`: does the output match the expected lines, and
//! if not, what is the smallest readable difference.
//!
//! Pure: JSON values in, a verdict and a rendered diff out. An expected line
//! *matches* an output line when every key it has is equal to the output's
//! ([`matches()`]), so `{"event": 2, "outcome": "dead_lettered"}` matches
//! whatever the error text is. The two sequences are aligned with a longest
//! common subsequence under that predicate ([`align`]); they agree when every
//! line on both sides is paired. [`render`] prints the disagreement like a
//! unified diff, with the expect file's line numbers and a little context.

use serde_json::Value;

/// Whether `expected` matches `actual`: for an object, every key of
/// `expected` is in `actual` with an equal value (values compare exactly,
/// with [`json_eq`]); anything else must equal `actual` as a whole.
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(want), Value::Object(have)) => want
            .iter()
            .all(|(k, v)| have.get(k).is_some_and(|h| json_eq(v, h))),
        _ => json_eq(expected, actual),
    }
}

/// Deep equality of two JSON values where numbers compare by value, so `5`
/// equals `5.0` (a Lua or Rhai script may produce either).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            x == y || matches!((x.as_f64(), y.as_f64()), (Some(x), Some(y)) if x == y)
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// One step of an alignment of expected lines with output lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Expected line `.0` matches output line `.1` (0-based indices).
    Same(usize, usize),
    /// Expected line `.0` has no match in the output.
    Missing(usize),
    /// Output line `.0` was not expected.
    Extra(usize),
}

/// Aligns `expected` with `actual` along a longest common subsequence under
/// [`matches()`], in order. Where both sides differ at one place, the missing
/// expected lines come before the extra output lines.
pub fn align(expected: &[Value], actual: &[Value]) -> Vec<Op> {
    let (n, m) = (expected.len(), actual.len());
    // lcs[i][j]: the longest match of expected[i..] with actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if matches(&expected[i], &actual[j]) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops = Vec::with_capacity(n.max(m));
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && matches(&expected[i], &actual[j]) && lcs[i][j] == lcs[i + 1][j + 1] + 1
        {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(Op::Missing(i));
            i += 1;
        } else {
            ops.push(Op::Extra(j));
            j += 1;
        }
    }
    ops
}

/// Whether an alignment pairs every line on both sides.
pub fn agrees(ops: &[Op]) -> bool {
    ops.iter().all(|op| matches!(op, Op::Same(..)))
}

/// One expected line as written in the expect file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectLine {
    /// 1-based line number in the expect file.
    pub line: usize,
    /// The line's text, as written (trimmed).
    pub text: String,
    /// The parsed value.
    pub value: Value,
}

/// Renders the differences of `ops` as lines: `- FILE:LINE: text` for an
/// expected line with no match, `+ output:N: text` for an unexpected output
/// line, and up to `context` matching lines (`  FILE:LINE: text`) around
/// each change; `...` separates changes further apart. Empty when the
/// alignment agrees.
pub fn render(
    ops: &[Op],
    expected: &[ExpectLine],
    actual: &[String],
    file: &str,
    context: usize,
) -> String {
    let changed: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Same(..)))
        .map(|(k, _)| k)
        .collect();
    let shown = |k: usize| {
        changed
            .iter()
            .any(|&c| k + context >= c && k <= c + context)
    };
    let mut out = String::new();
    let mut last: Option<usize> = None;
    for (k, op) in ops.iter().enumerate() {
        if !shown(k) {
            continue;
        }
        if last.is_some_and(|l| l + 1 != k) {
            out.push_str("  ...\n");
        }
        last = Some(k);
        let line = match *op {
            Op::Same(i, _) => format!("  {file}:{}: {}", expected[i].line, expected[i].text),
            Op::Missing(i) => format!("- {file}:{}: {}", expected[i].line, expected[i].text),
            Op::Extra(j) => format!("+ output:{}: {}", j + 1, actual[j]),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(values: &[Value]) -> Vec<ExpectLine> {
        values
            .iter()
            .enumerate()
            .map(|(k, v)| ExpectLine {
                line: k + 1,
                text: v.to_string(),
                value: v.clone(),
            })
            .collect()
    }

    #[test]
    fn a_subset_of_keys_matches_and_nested_values_compare_whole() {
        let actual = json!({"event": 2, "outcome": "dead_lettered", "error": "boom"});
        assert!(matches(
            &json!({"event": 2, "outcome": "dead_lettered"}),
            &actual
        ));
        assert!(matches(&json!({}), &actual));
        assert!(!matches(&json!({"event": 3}), &actual));
        assert!(!matches(&json!({"attempts": 1}), &actual));
        let publish = json!({"event": 1, "publish": {"topic": "a", "payload": {"n": 1, "m": 2}}});
        assert!(!matches(
            &json!({"publish": {"topic": "a", "payload": {"n": 1}}}),
            &publish
        ));
        assert!(matches(
            &json!({"publish": {"payload": {"m": 2.0, "n": 1}, "topic": "a"}}),
            &publish
        ));
        assert!(!matches(&json!("x"), &json!("y")));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(5), &json!(5.0)));
        assert!(json_eq(&json!([1, {"a": 2}]), &json!([1.0, {"a": 2}])));
        assert!(!json_eq(&json!(5), &json!(5.5)));
        assert!(!json_eq(&json!(5), &json!("5")));
    }

    #[test]
    fn equal_sequences_agree() {
        let a = [json!({"event": 1, "outcome": "acked"}), json!({"event": 2})];
        let ops = align(&a, &a);
        assert_eq!(ops, vec![Op::Same(0, 0), Op::Same(1, 1)]);
        assert!(agrees(&ops));
        assert_eq!(render(&ops, &lines(&a), &[], "e.jsonl", 2), "");
    }

    #[test]
    fn a_changed_line_is_missing_then_extra() {
        let e = [json!({"n": 1}), json!({"n": 2}), json!({"n": 3})];
        let a = [json!({"n": 1}), json!({"n": 9}), json!({"n": 3})];
        let ops = align(&e, &a);
        assert_eq!(
            ops,
            vec![Op::Same(0, 0), Op::Missing(1), Op::Extra(1), Op::Same(2, 2)]
        );
        assert!(!agrees(&ops));
        let actual: Vec<String> = a.iter().map(Value::to_string).collect();
        assert_eq!(
            render(&ops, &lines(&e), &actual, "e.jsonl", 1),
            "  e.jsonl:1: {\"n\":1}\n- e.jsonl:2: {\"n\":2}\n+ output:2: {\"n\":9}\n  e.jsonl:3: {\"n\":3}\n"
        );
    }

    #[test]
    fn extra_and_missing_lines_at_the_ends() {
        let e = [json!({"n": 1}), json!({"n": 2})];
        let a = [json!({"n": 0}), json!({"n": 1})];
        assert_eq!(
            align(&e, &a),
            vec![Op::Extra(0), Op::Same(0, 1), Op::Missing(1)]
        );
        assert_eq!(align(&[], &a), vec![Op::Extra(0), Op::Extra(1)]);
        assert_eq!(align(&e, &[]), vec![Op::Missing(0), Op::Missing(1)]);
        // Fewer output lines than expected never agree, even if all match.
        assert!(!agrees(&align(&e, &e[..1])));
    }

    #[test]
    fn the_alignment_keeps_the_longest_common_run() {
        // Matching the first expected line against the last output line
        // would lose the two in the middle.
        let e = [json!({"a": 1}), json!({"b": 1}), json!({"c": 1})];
        let a = [json!({"b": 1}), json!({"c": 1}), json!({"a": 1})];
        let ops = align(&e, &a);
        let same = ops.iter().filter(|o| matches!(o, Op::Same(..))).count();
        assert_eq!(same, 2, "{ops:?}");
    }

    #[test]
    fn far_apart_changes_are_separated_and_context_is_cut() {
        let e: Vec<Value> = (0..10).map(|n| json!({"n": n})).collect();
        let mut a = e.clone();
        a[1] = json!({"n": 100});
        a[8] = json!({"n": 800});
        let actual: Vec<String> = a.iter().map(Value::to_string).collect();
        let text = render(&align(&e, &a), &lines(&e), &actual, "e.jsonl", 1);
        assert_eq!(
            text,
            "  e.jsonl:1: {\"n\":0}\n- e.jsonl:2: {\"n\":1}\n+ output:2: {\"n\":100}\n  e.jsonl:3: {\"n\":2}\n  ...\n  e.jsonl:8: {\"n\":7}\n- e.jsonl:9: {\"n\":8}\n+ output:9: {\"n\":800}\n  e.jsonl:10: {\"n\":9}\n"
        );
    }
}
