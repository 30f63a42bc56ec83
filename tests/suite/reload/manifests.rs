//! Saving a plugin's `plugin.yaml`: a config-only change (with and without
//! `on_config`), changes that restart the plugin (subscriptions, limits,
//! entry, runtime), disabling and enabling, and a plugin that failed to
//! start starting once fixed.

use serde_json::json;

use crate::behaviours;
use crate::support::{Runtime, Src};

use super::session::{Session, save};
use super::{COUNTER, SYNTAX_ERROR, code, counter, is_on, manifest, out_n, outs};

// ---------------------------------------------------------------------------
// Plugins

/// Counts its `init`s in `state`; answers with `config.x`; with
/// `on_config`, says what it was given.
const CONFIGURABLE: Src = Src {
    lua: r#"
function init()
  state.inits = (state.inits or 0) + 1
end
function on_config(c)
  bus.publish("configured", { arg = c.x, global = config.x, inits = state.inits })
end
function on_event(e)
  bus.publish("out", { x = config.x, inits = state.inits })
end
"#,
    rhai: r#"
fn init() {
  state.inits = (state.inits ?? 0) + 1;
}
fn on_config(c) {
  bus::publish("configured", #{ arg: c.x, global: config.x, inits: state.inits });
}
fn on_event(e) {
  bus::publish("out", #{ x: config.x, inits: state.inits });
}
"#,
    native: None,
};

/// CONFIGURABLE without `on_config`.
const CONFIGURABLE_WITHOUT_HOOK: Src = Src {
    lua: r#"
function init()
  state.inits = (state.inits or 0) + 1
end
function on_event(e)
  bus.publish("out", { x = config.x, inits = state.inits })
end
"#,
    rhai: r#"
fn init() {
  state.inits = (state.inits ?? 0) + 1;
}
fn on_event(e) {
  bus::publish("out", #{ x: config.x, inits: state.inits });
}
"#,
    native: None,
};

// ---------------------------------------------------------------------------
// plugin.yaml changes

fn a_config_only_change_calls_on_config(rt: Runtime) {
    let mut s = Session::start(rt, |fx| {
        fx.plugin(
            rt,
            "p",
            "subscriptions: [in]\nconfig: {x: 1}\n",
            CONFIGURABLE.get(rt),
        );
    });
    s.send("in", json!({}));
    s.wait("the answer with x = 1", |e| is_on(e, "out"));
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nconfig: {x: 2}\n"),
    );
    let reloaded = s.wait_host("reloaded", "p", 1);
    assert_eq!(
        reloaded,
        json!({"plugin": "p", "version": "1.0.0", "config_only": true})
    );
    // `on_config` got the new config, which `config` already is; `init` did
    // not run again.
    assert_eq!(
        s.payloads("configured"),
        [json!({"arg": 2, "global": 2, "inits": 1})],
        "{}",
        s.dump()
    );
    s.send("in", json!({}));
    s.wait_nth("the answer with x = 2", 2, |e| is_on(e, "out"));
    assert_eq!(
        s.payloads("out"),
        [json!({"x": 1, "inits": 1}), json!({"x": 2, "inits": 1})],
        "{}",
        s.dump()
    );
}

fn a_config_only_change_without_on_config_reloads(rt: Runtime) {
    let mut s = Session::start(rt, |fx| {
        fx.plugin(
            rt,
            "p",
            "subscriptions: [in]\nconfig: {x: 1}\n",
            CONFIGURABLE_WITHOUT_HOOK.get(rt),
        );
    });
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nconfig: {x: 2}\n"),
    );
    let reloaded = s.wait_host("reloaded", "p", 1);
    // No `on_config` took it: the plugin was reloaded, and says so.
    assert_eq!(reloaded["config_only"], false, "{}", s.dump());
    s.send("in", json!({}));
    let answer = s.wait("the answer with x = 2", |e| is_on(e, "out"));
    // Reloaded: `init` ran again, with the state carried over.
    assert_eq!(
        answer["payload"],
        json!({"x": 2, "inits": 2}),
        "{}",
        s.dump()
    );
}

fn a_subscriptions_change_restarts_the_plugin(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [a]\n"));
    s.send("a", json!({"n": 1}));
    s.wait("the answer to a", out_n(1));
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [b]\n"),
    );
    let reloaded = s.wait_host("reloaded", "p", 1);
    assert_eq!(reloaded["config_only"], false);
    // `a` is no longer delivered; had it been, it would come before `b`.
    s.send("a", json!({"n": 2}));
    s.send("b", json!({"n": 3}));
    s.wait("the answer to b", out_n(3));
    assert_eq!(outs(&s, "p"), [(1, 1, 1), (3, 1, 2)], "{}", s.dump());
    // Restarted the safe way: `init` again, `shutdown` of the old one.
    assert_eq!(s.payloads("init").len(), 2, "{}", s.dump());
    assert_eq!(s.payloads("shutdown").len(), 1, "{}", s.dump());
}

fn a_limits_change_restarts_the_plugin(rt: Runtime) {
    let mut s = Session::start(
        rt,
        counter(
            rt,
            "p",
            "subscriptions: [in]\nlimits: {event_timeout_ms: 2000}\n",
        ),
    );
    // 80 ms of work: well within 2 s.
    s.send("in", json!({"n": 1, "busy": 0.08}));
    s.wait("the answer within 2 s", out_n(1));
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nlimits: {event_timeout_ms: 20}\n"),
    );
    let reloaded = s.wait_host("reloaded", "p", 1);
    assert_eq!(reloaded["config_only"], false);
    // The same work is now over budget.
    s.send("in", json!({"n": 2, "busy": 0.08}));
    let dead = s.wait("the over-budget event dead-lettered", |e| {
        is_on(e, "plughost.dead_letter") && e["payload"]["event"]["payload"]["n"] == 2
    });
    assert_eq!(dead["payload"]["plugin"], "p");
    assert_eq!(outs(&s, "p"), [(1, 1, 1)], "{}", s.dump());
    assert_eq!(s.payloads("init").len(), 2, "{}", s.dump());
}

fn an_entry_change_restarts_the_plugin(rt: Runtime) {
    let ext = rt.ext();
    let mut s = Session::start(rt, |fx| {
        fx.plugin(
            rt,
            "p",
            &format!("subscriptions: [in]\nentry: main.{ext}\n"),
            &code(&COUNTER, rt, "p", 1),
        );
        fx.file(&format!("p/other.{ext}"), &code(&COUNTER, rt, "p", 2));
    });
    s.send("in", json!({"n": 1}));
    s.wait("main's answer", out_n(1));
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", &format!("subscriptions: [in]\nentry: other.{ext}\n")),
    );
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 2}));
    s.wait("other's answer", out_n(2));
    assert_eq!(outs(&s, "p"), [(1, 1, 1), (2, 2, 2)], "{}", s.dump());
}

fn a_runtime_change_restarts_the_plugin(rt: Runtime) {
    let other = match rt {
        Runtime::Lua => Runtime::Rhai,
        Runtime::Rhai => Runtime::Lua,
        Runtime::Native => unreachable!("not run against native plugins"),
    };
    let runtime = |r: Runtime| {
        format!(
            "subscriptions: [in]\nruntime: {}\nentry: {}\n",
            r.ext(),
            r.entry()
        )
    };
    let mut s = Session::start(rt, |fx| {
        fx.plugin(rt, "p", &runtime(rt), &code(&COUNTER, rt, "p", 1));
        fx.file(
            &format!("p/{}", other.entry()),
            &code(&COUNTER, other, "p", 2),
        );
    });
    s.send("in", json!({"n": 1}));
    s.wait("the first runtime's answer", out_n(1));
    save(&s.path("p/plugin.yaml"), &manifest("p", &runtime(other)));
    s.wait_host("reloaded", "p", 1);
    s.send("in", json!({"n": 2}));
    s.wait("the other runtime's answer", out_n(2));
    // `state` crossed from one language to the other.
    assert_eq!(outs(&s, "p"), [(1, 1, 1), (2, 2, 2)], "{}", s.dump());
}

fn disabling_stops_after_the_queue_and_enabling_starts(rt: Runtime) {
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    // 40 ms each: most are still queued when the plugin is disabled.
    for n in 1..=6 {
        s.send("in", json!({"n": n, "busy": 0.04}));
    }
    s.wait("the last input published", |e| {
        is_on(e, "in") && e["payload"]["n"] == 6
    });
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nenabled: false\n"),
    );
    s.wait_host("stopped", "p", 1);
    let stopped = s.position("stopped", |e| is_on(e, "plughost.plugin.stopped"));
    let last = s.position("the last answer", out_n(6));
    assert!(
        last < stopped,
        "queued events are handled first\n{}",
        s.dump()
    );
    assert_eq!(s.payloads("shutdown").len(), 1, "{}", s.dump());

    // Disabled: published, never delivered.
    s.send("in", json!({"n": 7}));
    s.wait("n = 7 published", |e| {
        is_on(e, "in") && e["payload"]["n"] == 7
    });
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nenabled: true\n"),
    );
    // The second start: the first was the host's.
    s.wait_host("started", "p", 2);
    s.send("in", json!({"n": 8}));
    s.wait("the answer after enabling", out_n(8));
    let handled: Vec<u64> = outs(&s, "p").iter().map(|o| o.0).collect();
    assert_eq!(handled, [1, 2, 3, 4, 5, 6, 8], "{}", s.dump());
}

fn a_plugin_disabled_at_start_starts_when_enabled(rt: Runtime) {
    let mut s = Session::start(
        rt,
        counter(rt, "p", "subscriptions: [in]\nenabled: false\n"),
    );
    assert_eq!(s.host_events("started", "p"), 0, "{}", s.dump());
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\n"),
    );
    s.wait_host("started", "p", 1);
    s.send("in", json!({"n": 1}));
    s.wait("p's answer", out_n(1));
}

fn a_plugin_that_failed_to_start_starts_once_fixed(rt: Runtime) {
    let mut s = Session::start(rt, |fx| {
        fx.plugin(rt, "p", "subscriptions: [in]\n", SYNTAX_ERROR.get(rt));
    });
    let failed = s.wait_host("failed", "p", 1);
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains(&format!("p/{}:3", rt.entry())),
        "{failed}"
    );
    save(&s.entry("p"), &code(&COUNTER, rt, "p", 1));
    s.wait_host("started", "p", 1);
    s.send("in", json!({"n": 1}));
    s.wait("p's answer", out_n(1));
}

behaviours!(
    a_config_only_change_calls_on_config,
    a_config_only_change_without_on_config_reloads,
    a_subscriptions_change_restarts_the_plugin,
    a_limits_change_restarts_the_plugin,
    an_entry_change_restarts_the_plugin,
    a_runtime_change_restarts_the_plugin,
    disabling_stops_after_the_queue_and_enabling_starts,
    a_plugin_disabled_at_start_starts_when_enabled,
    a_plugin_that_failed_to_start_starts_once_fixed,
);
