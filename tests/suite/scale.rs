//! Many plugins at once: independent plugins start concurrently, and the
//! dependency order, the blocking of a failed dependency's dependents and
//! the start order of the report are kept (SPEC §4).
//!
//! Each plugin's `init` records when it begins and ends through a host
//! function (`host.record`), and one of them waits in its `init` (through
//! `host.pause`), so the order of the records shows what ran when.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use plughost::Host;
use serde_json::Value;

use crate::support::{Fixture, Runtime, Src, tokio_rt};

/// Records `begin:NAME`, waits `config.pause_ms` (when given), records
/// `end:NAME`, and fails when `config.fail` is set.
const RECORDER: Src = Src {
    lua: r#"
function init()
  host.record("begin:" .. config.name)
  if config.pause_ms then host.pause(config.pause_ms) end
  if config.fail then error("init refused") end
  host.record("end:" .. config.name)
end
"#,
    rhai: r#"
fn init() {
  host::record("begin:" + config.name);
  if "pause_ms" in config { host::pause(config.pause_ms); }
  if "fail" in config { throw "init refused"; }
  host::record("end:" + config.name);
}
"#,
    native: None,
};

/// How long the slow plugin's `init` waits: long enough for the others to
/// start meanwhile when starts are concurrent.
const PAUSE_MS: u64 = 400;

/// A plugin `name` of `rt` depending on `deps`, with `extra` config lines.
fn recorder(fx: &Fixture, rt: Runtime, name: &str, deps: &[&str], extra: &str) {
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!("dependencies: [{}]\n", deps.join(", "))
    };
    fx.plugin(
        rt,
        name,
        &format!("config:\n  name: {name}\n{extra}{deps}"),
        RECORDER.get(rt),
    );
}

/// What a start did: the report, the running set, and every record in order.
struct Started {
    report: plughost::StartReport,
    running: Vec<String>,
    records: Vec<String>,
    order: Vec<String>,
}

impl Started {
    fn at(&self, record: &str) -> usize {
        self.records
            .iter()
            .position(|r| r == record)
            .unwrap_or_else(|| panic!("no `{record}` in {:?}", self.records))
    }

    /// Asserts that `dep` ended its `init` before `plugin` began its own.
    fn after(&self, plugin: &str, dep: &str) {
        assert!(
            self.at(&format!("end:{dep}")) < self.at(&format!("begin:{plugin}")),
            "{plugin} began before {dep} ended: {:?}",
            self.records
        );
    }
}

/// Starts the plugins of `fx` (bounded) and shuts them down.
fn start(fx: &Fixture) -> Started {
    let records = Arc::new(Mutex::new(Vec::new()));
    let rec = records.clone();
    tokio_rt().block_on(async {
        let host = Host::builder()
            .plugins_dir(fx.path())
            .function("record", move |args| {
                let what = args.first().and_then(Value::as_str).unwrap_or("?");
                rec.lock().unwrap().push(what.to_owned());
                Ok(Value::Null)
            })
            .function("pause", |args| {
                let ms = args.first().and_then(Value::as_u64).unwrap_or(0);
                std::thread::sleep(Duration::from_millis(ms));
                Ok(Value::Null)
            })
            .build()
            .unwrap();
        let order = host
            .catalog()
            .start_order
            .iter()
            .map(|&i| host.catalog().entries[i].name().unwrap().to_owned())
            .collect();
        let report = tokio::time::timeout(Duration::from_secs(30), host.start())
            .await
            .expect("every plugin starts within 30 s");
        let running = host.running();
        host.shutdown(Duration::from_secs(5)).await;
        let records = records.lock().unwrap().clone();
        Started {
            report,
            running,
            records,
            order,
        }
    })
}

/// A diamond (`base` under `left` and `right`, `top` over both) with a slow
/// `left`, a chain (`one` → `two` → `three`), and `solo` alone.
fn diamond_and_chain(rt: Runtime) {
    let fx = Fixture::new();
    recorder(&fx, rt, "base", &[], "");
    recorder(
        &fx,
        rt,
        "left",
        &["base"],
        &format!("  pause_ms: {PAUSE_MS}\n"),
    );
    recorder(&fx, rt, "right", &["base"], "");
    recorder(&fx, rt, "top", &["left", "right"], "");
    recorder(&fx, rt, "one", &[], "");
    recorder(&fx, rt, "two", &["one"], "");
    recorder(&fx, rt, "three", &["two"], "");
    recorder(&fx, rt, "solo", &[], "");
    let s = start(&fx);
    assert!(s.report.failed.is_empty(), "{:?}", s.report);
    // The report and the running set keep the start order, whatever order
    // the inits ended in.
    assert_eq!(s.report.started, s.order);
    assert_eq!(s.running, s.order);
    for (plugin, dep) in [
        ("left", "base"),
        ("right", "base"),
        ("top", "left"),
        ("top", "right"),
        ("two", "one"),
        ("three", "two"),
    ] {
        s.after(plugin, dep);
    }
    // Starts are concurrent: while `left` waits in its `init`, the plugins
    // that do not depend on it start.
    for other in ["right", "solo", "three"] {
        assert!(
            s.at(&format!("end:{other}")) < s.at("end:left"),
            "{other} waited for the slow `left`: {:?}",
            s.records
        );
    }
}

/// A failed `init` blocks its dependents, direct and indirect, with the
/// same error as one at a time; the others start.
fn a_failed_dependency_blocks_its_dependents(rt: Runtime) {
    let fx = Fixture::new();
    recorder(&fx, rt, "base", &[], "");
    recorder(&fx, rt, "left", &["base"], "  fail: true\n");
    recorder(
        &fx,
        rt,
        "right",
        &["base"],
        &format!("  pause_ms: {PAUSE_MS}\n"),
    );
    recorder(&fx, rt, "top", &["right", "left"], "");
    recorder(&fx, rt, "above", &["top"], "");
    recorder(&fx, rt, "solo", &[], "");
    let s = start(&fx);
    let failed: Vec<(&str, &str)> = s
        .report
        .failed
        .iter()
        .map(|(n, e)| (n.as_str(), e.as_str()))
        .collect();
    let in_order: Vec<&str> = s
        .order
        .iter()
        .map(String::as_str)
        .filter(|n| ["left", "top", "above"].contains(n))
        .collect();
    assert_eq!(
        failed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        in_order,
        "failures are reported in start order"
    );
    assert!(
        failed[0].1.contains("init refused"),
        "{:?}",
        s.report.failed
    );
    let error_of = |name: &str| failed.iter().find(|(n, _)| *n == name).unwrap().1;
    // `top` waited for `right` (slow, fine) and names the one that failed.
    assert_eq!(error_of("top"), "dependency `left` failed to start");
    assert_eq!(error_of("above"), "dependency `top` failed to start");
    let started: Vec<&str> = s.report.started.iter().map(String::as_str).collect();
    let expected: Vec<&str> = s
        .order
        .iter()
        .map(String::as_str)
        .filter(|n| ["base", "right", "solo"].contains(n))
        .collect();
    assert_eq!(started, expected);
    assert_eq!(s.running, expected);
    assert!(
        !s.records
            .iter()
            .any(|r| r.ends_with(":top") || r.ends_with(":above")),
        "a blocked plugin's init never runs: {:?}",
        s.records
    );
    assert!(
        s.records.contains(&"end:right".to_owned()),
        "{:?}",
        s.records
    );
}

mod lua {
    use super::*;

    #[test]
    fn concurrent_start_keeps_dependency_and_report_order() {
        diamond_and_chain(Runtime::Lua);
    }

    #[test]
    fn a_failed_dependency_still_blocks_its_dependents() {
        a_failed_dependency_blocks_its_dependents(Runtime::Lua);
    }
}

mod rhai {
    use super::*;

    #[test]
    fn concurrent_start_keeps_dependency_and_report_order() {
        diamond_and_chain(Runtime::Rhai);
    }

    #[test]
    fn a_failed_dependency_still_blocks_its_dependents() {
        a_failed_dependency_blocks_its_dependents(Runtime::Rhai);
    }
}
