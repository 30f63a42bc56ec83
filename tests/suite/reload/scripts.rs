//! Saving a plugin's script: the swap between events keeping `state`, the
//! old version's timers stopping, a failed reload keeping the old version,
//! how editors save (one reload each), and editing a required module.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Runtime, Src};

use super::session::{Session, save, save_atomic, save_vim};
use super::{COUNTER, SYNTAX_ERROR, code, counter, is_on, out_n, outs};

// ---------------------------------------------------------------------------
// Plugins

/// Compiles, but `init` raises on line 4.
const INIT_ERROR: Src = Src {
    lua: r#"
function init()
  local t = nil
  t.field = 1
end
function on_event(e) bus.publish("out", { v = 99 }) end
"#,
    rhai: r#"
fn init() {
  let t = ();
  t.field = 1;
}
fn on_event(e) { bus::publish("out", #{ v: 99 }); }
"#,
    native: None,
};

/// Ticks every 10 ms, tagged with its version.
const TICKER: Src = Src {
    lua: r#"
function init()
  timer.every(10, function() bus.publish("tick", { v = VERSION }) end)
end
"#,
    rhai: r#"
fn init() {
  timer::every(10, || { bus::publish("tick", #{ v: VERSION }); });
}
"#,
    native: None,
};

/// Answers with what its module `util/words` says.
const MODULE_USER: Src = Src {
    lua: r#"
local words = require "util.words"
function on_event(e)
  bus.publish("out", { n = e.payload.n, v = words.version() })
end
"#,
    rhai: r#"
import "util.words" as words;
fn on_event(e) {
  bus::publish("out", #{ n: e.payload.n, v: words::version() });
}
"#,
    native: None,
};

const MODULE: Src = Src {
    lua: r#"
return { version = function() return VERSION end }
"#,
    rhai: r#"
fn version() { VERSION }
"#,
    native: None,
};

// ---------------------------------------------------------------------------
// Saving the script

fn saving_the_script_swaps_between_events_and_keeps_state(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    s.send("in", json!({"n": 1}));
    s.wait("v1's answer", out_n(1));

    save(&s.entry("p"), &code(&COUNTER, rt, "p", 2));
    let reloaded = s.wait_host("reloaded", "p", 1);
    assert_eq!(
        reloaded,
        json!({"plugin": "p", "version": "1.0.0", "config_only": false})
    );
    // Before the swap was announced: the new version's `init` ran with the
    // old state, and the old version's `shutdown` ran.
    let at = s.position("reloaded", |e| is_on(e, "plughost.plugin.reloaded"));
    let init2 = s.position("v2's init", |e| is_on(e, "init") && e["payload"]["v"] == 2);
    let down1 = s.position("v1's shutdown", |e| {
        is_on(e, "shutdown") && e["payload"]["v"] == 1
    });
    assert!(init2 < at && down1 < at, "{}", s.dump());
    assert_eq!(s.payloads("init")[1], json!({"p": "p", "v": 2, "count": 1}));
    assert_eq!(
        s.payloads("shutdown"),
        [json!({"p": "p", "v": 1, "count": 1})]
    );

    s.send("in", json!({"n": 2}));
    s.wait("v2's answer", out_n(2));
    assert_eq!(outs(&s, "p"), [(1, 1, 1), (2, 2, 2)], "{}", s.dump());
    assert_eq!(s.host_events("reload_failed", "p"), 0, "{}", s.dump());
}

fn the_old_versions_timers_stop(rt: Runtime) {
    let mut s = Session::start(rt, |fx| {
        fx.plugin(rt, "p", "", &code(&TICKER, rt, "p", 1));
    });
    s.wait_nth("v1 ticking", 2, |e| {
        is_on(e, "tick") && e["payload"]["v"] == 1
    });
    save(&s.entry("p"), &code(&TICKER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    // Five of the new version's ticks (50 ms or more) after the swap.
    s.wait_nth("v2 ticking", 5, |e| {
        is_on(e, "tick") && e["payload"]["v"] == 2
    });
    let at = s.position("reloaded", |e| is_on(e, "plughost.plugin.reloaded"));
    let late: Vec<Value> = s.live.events()[at..]
        .iter()
        .filter(|e| is_on(e, "tick") && e["payload"]["v"] == 1)
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "the old version ticked after the swap\n{}",
        s.dump()
    );
}

fn a_failed_reload_keeps_the_old_version_and_the_next_save_retries(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    let entry = s.entry("p");

    // 1. A syntax error.
    save(&entry, SYNTAX_ERROR.get(rt));
    let failed = s.wait_host("reload_failed", "p", 1);
    let error = failed["error"].as_str().expect("error text").to_owned();
    let at = format!("{}:3", entry.display());
    assert!(
        error.starts_with(&at),
        "error should start with {at}: {error}"
    );
    if rt == Runtime::Rhai {
        // Rhai gives a column: `main.rhai:3:COL: message`.
        let col = &error[at.len()..];
        assert!(
            col.starts_with(':') && col[1..].starts_with(|c: char| c.is_ascii_digit()),
            "{error}"
        );
    }
    assert!(!error.contains('\n'), "`error` is one line: {error}");
    let detail = failed["detail"].as_str().expect("detail text");
    assert!(detail.starts_with(&error), "{detail}");
    // The old version goes on, state and all.
    s.send("in", json!({"n": 1}));
    s.wait("v1's answer", out_n(1));

    // 2. The next save is tried again: it compiles, but its `init` fails.
    save(&entry, INIT_ERROR.get(rt));
    let failed = s.wait_host("reload_failed", "p", 2);
    let init_error = failed["error"].as_str().unwrap().to_owned();
    let at = format!("{}:4", entry.display());
    assert!(
        init_error.starts_with(&at),
        "error should name {at}: {init_error}"
    );
    s.send("in", json!({"n": 2}));
    s.wait("v1's answer", out_n(2));
    assert_eq!(s.payloads("shutdown"), Vec::<Value>::new(), "{}", s.dump());

    // 3. Fixed: the new version takes over with the old state.
    save(&entry, &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 3}));
    s.wait("v2's answer", out_n(3));
    assert_eq!(
        outs(&s, "p"),
        [(1, 1, 1), (2, 1, 2), (3, 2, 3)],
        "{}",
        s.dump()
    );
    assert_eq!(s.host_events("reload_failed", "p"), 2);

    let run = s.finish();
    // Both errors are logged, positioned.
    assert!(run.stderr.contains(&error), "{run}");
    assert!(run.stderr.contains(&init_error), "{run}");
}

// ---------------------------------------------------------------------------
// How editors save

/// Saves v2 of the script with `how`; asserts exactly one reload, and that
/// v2 runs.
pub(super) fn one_reload_per_save(rt: Runtime, how: fn(&Path, &str)) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    how(&s.entry("p"), &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    s.barrier();
    assert_eq!(s.host_events("reloaded", "p"), 1, "{}", s.dump());
    assert_eq!(s.host_events("reload_failed", "p"), 0, "{}", s.dump());
    s.send("in", json!({"n": 1}));
    s.wait("v2's answer", out_n(1));
    assert_eq!(outs(&s, "p"), [(1, 2, 1)], "{}", s.dump());
}

fn an_atomic_rename_save_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_atomic);
}

fn a_vim_save_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, save_vim);
}

fn a_burst_of_writes_reloads_once(rt: Runtime) {
    one_reload_per_save(rt, |path, last| {
        // Four partial writes in quick succession (most do not compile),
        // then the whole text: only the last one may be loaded.
        for i in 1..5 {
            save(path, &last[..last.len() * i / 5]);
            std::thread::sleep(Duration::from_millis(1));
        }
        save(path, last);
    });
}

fn editing_a_required_module_reloads(rt: Runtime) {
    let module = format!("p/util/words.{}", rt.ext());
    let mut s = Session::start(rt, |fx| {
        fx.plugin(rt, "p", "subscriptions: [in]\n", MODULE_USER.get(rt));
        fx.file(&module, &code(&MODULE, rt, "p", 1));
    });
    s.send("in", json!({"n": 1}));
    s.wait("the answer with module v1", out_n(1));
    save(&s.path(&module), &code(&MODULE, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 2}));
    let answer = s.wait("the answer with module v2", out_n(2));
    assert_eq!(answer["payload"], json!({"n": 2, "v": 2}), "{}", s.dump());
    assert_eq!(s.payloads("out")[0], json!({"n": 1, "v": 1}));
}

/// Saved again as it was (a `touch`, or a late event of a save already
/// applied): nothing to reload. The next real change still reloads.
fn a_save_that_changes_nothing_reloads_nothing(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    let entry = s.entry("p");
    let text = std::fs::read_to_string(&entry).unwrap();
    save(&entry, &text);
    s.barrier();
    assert_eq!(s.host_events("reloaded", "p"), 0, "{}", s.dump());
    save(&entry, &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 1}));
    s.wait("v2's answer", out_n(1));
    assert_eq!(outs(&s, "p"), [(1, 2, 1)], "{}", s.dump());
}

behaviours!(
    saving_the_script_swaps_between_events_and_keeps_state,
    a_save_that_changes_nothing_reloads_nothing,
    the_old_versions_timers_stop,
    a_failed_reload_keeps_the_old_version_and_the_next_save_retries,
    an_atomic_rename_save_reloads_once,
    a_vim_save_reloads_once,
    a_burst_of_writes_reloads_once,
    editing_a_required_module_reloads,
);
