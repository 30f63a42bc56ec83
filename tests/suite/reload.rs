//! SPEC §5 live reload, black-box: `plughost run` watches the plugins
//! directory while the test edits real files under a temp dir and events
//! stream in.
//!
//! Nothing here sleeps for correctness: every step waits (bounded) for the
//! tapped event that proves the state it needs. To show that a save caused
//! *exactly one* reload, the test then changes a second plugin (the
//! barrier) and waits for its reload: the watcher never handles a change
//! before an earlier one (folders settled together go in path order, and
//! the barrier's sorts last), so a second reload of the first plugin would
//! have been tapped before the barrier's.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::behaviours;
use crate::live::Live;
use crate::support::{Fixture, Run, Runtime, Src, ev};

// ---------------------------------------------------------------------------
// Support

/// The plugin whose manifest is touched to prove the watcher has handled
/// every earlier change. Its folder sorts after every other plugin's.
const BARRIER: &str = "zz-barrier";

/// A running `plughost run` with live reload on, the plugins directory it
/// watches, and the runtime the plugins are written in.
struct Session {
    fx: Fixture,
    live: Live,
    rt: Runtime,
    barriers: u32,
}

impl Session {
    /// Writes the plugins with `setup`, adds the barrier plugin, runs
    /// `plughost run --input - --tap '>'` (plus `extra`) and waits until the
    /// host reads input, which it does only once the watcher runs.
    fn start(rt: Runtime, setup: impl FnOnce(&Fixture)) -> Session {
        Self::start_with(rt, &[], setup)
    }

    fn start_with(rt: Runtime, extra: &[&str], setup: impl FnOnce(&Fixture)) -> Session {
        let fx = Fixture::new();
        setup(&fx);
        fx.plugin(rt, BARRIER, "", "");
        let dir = fx.path().to_str().unwrap().to_owned();
        let mut args = vec!["run", "--plugins", &dir, "--input", "-", "--tap", ">"];
        args.extend_from_slice(extra);
        let mut live = Live::spawn(&args);
        live.send(&ev("ping", json!({})));
        live.wait_for("the first input line tapped", |e| e["topic"] == "ping");
        Session {
            fx,
            live,
            rt,
            barriers: 0,
        }
    }

    /// A path under the plugins directory.
    fn path(&self, rel: &str) -> PathBuf {
        self.fx.path().join(rel)
    }

    /// The entry script of plugin `name`.
    fn entry(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}/{}", self.rt.entry()))
    }

    fn send(&mut self, topic: &str, payload: Value) {
        self.live.send(&ev(topic, payload));
    }

    /// Waits for a tapped event matching `pred` (already read or to come).
    fn wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.live.wait_for(what, pred)
    }

    /// Waits until `n` tapped events in all match `pred`; returns the `n`th.
    fn wait_nth(&mut self, what: &str, n: usize, pred: impl Fn(&Value) -> bool) -> Value {
        // `wait_for` offers each event to the predicate once: the ones read
        // so far, then each new one, and stops at the first `true`.
        let seen = Cell::new(0);
        self.live.wait_for(&format!("{what} (#{n})"), |e| {
            if pred(e) {
                seen.set(seen.get() + 1);
            }
            seen.get() >= n
        })
    }

    /// Waits for the `n`th `plughost.plugin.<what>` about `plugin`; returns its payload.
    fn wait_host(&mut self, what: &str, plugin: &str, n: usize) -> Value {
        let topic = format!("plughost.plugin.{what}");
        self.wait_nth(&format!("{topic} for {plugin}"), n, |e| {
            e["topic"] == topic.as_str() && e["payload"]["plugin"] == plugin
        })["payload"]
            .clone()
    }

    /// Tapped events read so far matching `pred`.
    fn seen(&self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        self.live.events().into_iter().filter(|e| pred(e)).collect()
    }

    /// Payloads read so far on `topic`.
    fn payloads(&self, topic: &str) -> Vec<Value> {
        self.seen(|e| e["topic"] == topic)
            .into_iter()
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// `plughost.plugin.<what>` events about `plugin` read so far.
    fn host_events(&self, what: &str, plugin: &str) -> usize {
        let topic = format!("plughost.plugin.{what}");
        self.seen(|e| e["topic"] == topic.as_str() && e["payload"]["plugin"] == plugin)
            .len()
    }

    /// Position in the tap of the first event matching `pred`.
    fn position(&self, what: &str, pred: impl Fn(&Value) -> bool) -> usize {
        self.live
            .events()
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("{what} not tapped; so far:\n{}", self.dump()))
    }

    /// Saves the barrier plugin's manifest with a new version and waits for
    /// its reload: every change made before has been handled by then.
    fn barrier(&mut self) {
        self.barriers += 1;
        let version = format!("1.0.{}", self.barriers);
        save(
            &self.path(&format!("{BARRIER}/plugin.yaml")),
            &format!("name: {BARRIER}\nversion: {version}\n"),
        );
        self.wait(&format!("the barrier's reload to {version}"), |e| {
            e["topic"] == "plughost.plugin.reloaded"
                && e["payload"]["plugin"] == BARRIER
                && e["payload"]["version"] == version.as_str()
        });
    }

    fn dump(&self) -> String {
        self.live
            .events()
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the host with SIGTERM and returns everything it printed.
    fn finish(self) -> Run {
        self.live.signal("TERM");
        self.live.finish()
    }
}

/// `src` for `rt` with `VERSION` replaced by `v` and `NAME` by `name`.
fn code(src: &Src, rt: Runtime, name: &str, v: u32) -> String {
    src.get(rt)
        .replace("VERSION", &v.to_string())
        .replace("NAME", name)
}

fn manifest(name: &str, extra: &str) -> String {
    format!("name: {name}\nversion: 1.0.0\n{extra}")
}

/// A plain save: the file is truncated and written in place.
fn save(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// An atomic save (gedit, IntelliJ, VS Code's safe write): a temp file in
/// the same folder, then renamed over the original.
fn save_atomic(path: &Path, text: &str) {
    let name = path.file_name().unwrap().to_str().unwrap();
    let tmp = path.with_file_name(format!(".{name}.goutputstream-4KZQ1"));
    let mut f = std::fs::File::create(&tmp).unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    drop(f);
    std::fs::rename(&tmp, path).unwrap();
}

/// vim's save with `backupcopy=no`: probe with `4913`, move the original to
/// `NAME~`, write a new file, delete the backup.
fn save_vim(path: &Path, text: &str) {
    let probe = path.with_file_name("4913");
    std::fs::write(&probe, "").unwrap();
    std::fs::remove_file(&probe).unwrap();
    let name = path.file_name().unwrap().to_str().unwrap();
    let backup = path.with_file_name(format!("{name}~"));
    std::fs::rename(path, &backup).unwrap();
    save(path, text);
    std::fs::remove_file(&backup).unwrap();
}

fn is_on(e: &Value, topic: &str) -> bool {
    e["topic"] == topic
}

// ---------------------------------------------------------------------------
// Plugins

/// Counts events in `state`, tags every output with its version; `init` and
/// `shutdown` say which version ran them. An event's `busy` (seconds of
/// CPU) slows its handling down.
const COUNTER: Src = Src {
    lua: r#"
function init()
  state.count = state.count or 0
  bus.publish("init", { p = "NAME", v = VERSION, count = state.count })
end
function on_event(e)
  local t = os.clock()
  while os.clock() - t < (e.payload.busy or 0) do end
  state.count = state.count + 1
  bus.publish("out", { p = "NAME", v = VERSION, n = e.payload.n, count = state.count })
end
function shutdown()
  bus.publish("shutdown", { p = "NAME", v = VERSION, count = state.count })
end
"#,
    rhai: r#"
fn init() {
  state.count = state.count ?? 0;
  bus::publish("init", #{ p: "NAME", v: VERSION, count: state.count });
}
fn on_event(e) {
  let busy = e.payload.busy ?? 0.0;
  let t = timestamp();
  while t.elapsed < busy {}
  state.count += 1;
  bus::publish("out", #{ p: "NAME", v: VERSION, n: e.payload.n, count: state.count });
}
fn shutdown() {
  bus::publish("shutdown", #{ p: "NAME", v: VERSION, count: state.count });
}
"#,
};

/// Does not compile; the error is on line 3.
const SYNTAX_ERROR: Src = Src {
    lua: r#"
function init()
  if then end
end
"#,
    rhai: r#"
fn init() {
  let = 1;
}
"#,
};

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
};

const MODULE: Src = Src {
    lua: r#"
return { version = function() return VERSION end }
"#,
    rhai: r#"
fn version() { VERSION }
"#,
};

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
};

/// Tags each event it handles with its version. Its `init` takes 20 ms,
/// so events published meanwhile wait in the queue across the swap.
const TAGGER: Src = Src {
    lua: r#"
function init()
  local t = os.clock()
  while os.clock() - t < 0.02 do end
end
function on_event(e)
  bus.publish("out", { n = e.payload.n, v = VERSION })
end
"#,
    rhai: r#"
fn init() {
  let t = timestamp();
  while t.elapsed < 0.02 {}
}
fn on_event(e) {
  bus::publish("out", #{ n: e.payload.n, v: VERSION });
}
"#,
};

/// The `out` payloads of plugin `p` read so far, as (n, v, count).
fn outs(s: &Session, p: &str) -> Vec<(u64, u64, u64)> {
    s.payloads("out")
        .iter()
        .filter(|o| o["p"] == p)
        .map(|o| {
            (
                o["n"].as_u64().unwrap_or(0),
                o["v"].as_u64().unwrap(),
                o["count"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn out_n(n: u64) -> impl Fn(&Value) -> bool {
    move |e| is_on(e, "out") && e["payload"]["n"] == n
}

fn counter(rt: Runtime, name: &str, extra: &str) -> impl FnOnce(&Fixture) {
    let name = name.to_owned();
    let extra = extra.to_owned();
    move |fx| {
        fx.plugin(rt, &name, &extra, &code(&COUNTER, rt, &name, 1));
    }
}

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
fn one_reload_per_save(rt: Runtime, how: fn(&Path, &str)) {
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
    s.wait_host("reloaded", "p", 1);
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

// ---------------------------------------------------------------------------
// Folders coming and going

fn a_new_folder_loads_and_a_removed_folder_unloads(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    let fx = &s.fx;
    fx.file(&format!("q/{}", rt.entry()), &code(&COUNTER, rt, "q", 1));
    fx.file("q/plugin.yaml", &manifest("q", "subscriptions: [in]\n"));
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));

    // The new folder is watched too.
    save(&s.entry("q"), &code(&COUNTER, rt, "q", 2));
    s.wait_host("reloaded", "q", 1);

    // Removed with events still queued: they are handled first.
    for n in 2..=5 {
        s.send("in", json!({"n": n, "busy": 0.04}));
    }
    s.wait("the last input published", |e| {
        is_on(e, "in") && e["payload"]["n"] == 5
    });
    std::fs::remove_dir_all(s.path("q")).unwrap();
    s.wait_host("stopped", "q", 1);
    let stopped = s.position("stopped", |e| is_on(e, "plughost.plugin.stopped"));
    let last = s.position("the last answer", out_n(5));
    assert!(
        last < stopped,
        "queued events are handled first\n{}",
        s.dump()
    );
    assert_eq!(
        outs(&s, "q"),
        [(1, 1, 1), (2, 2, 2), (3, 2, 3), (4, 2, 4), (5, 2, 5)],
        "{}",
        s.dump()
    );
    assert_eq!(s.host_events("failed", "q"), 0, "{}", s.dump());
}

fn a_folder_moved_in_loads_and_one_moved_out_unloads(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    // Prepared elsewhere on the same file system, then moved in whole.
    let staging = tempfile::tempdir_in(s.fx.path().parent().unwrap()).unwrap();
    let prepared = staging.path().join("q");
    std::fs::create_dir_all(&prepared).unwrap();
    std::fs::write(prepared.join(rt.entry()), code(&COUNTER, rt, "q", 1)).unwrap();
    std::fs::write(
        prepared.join("plugin.yaml"),
        manifest("q", "subscriptions: [in]\n"),
    )
    .unwrap();
    std::fs::rename(&prepared, s.path("q")).unwrap();
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));

    // Its files are watched from now on.
    save_atomic(&s.entry("q"), &code(&COUNTER, rt, "q", 2));
    s.wait_host("reloaded", "q", 1);
    s.send("in", json!({"n": 2}));
    s.wait("q v2's answer", out_n(2));

    std::fs::rename(s.path("q"), staging.path().join("q-out")).unwrap();
    s.wait_host("stopped", "q", 1);
    assert_eq!(outs(&s, "q"), [(1, 1, 1), (2, 2, 2)], "{}", s.dump());
}

fn a_folder_renamed_in_place_restarts_from_its_new_path(rt: Runtime) {
    // The new name sorts before the old one, and after it: either way the
    // plugin leaves the old folder before it starts from the new one.
    let mut s = Session::start(rt, counter(rt, "p", "subscriptions: [in]\n"));
    for (n, (from, to)) in [("p", "a-p"), ("a-p", "z-p")].into_iter().enumerate() {
        let n = n as u64 + 1;
        std::fs::rename(s.path(from), s.path(to)).unwrap();
        s.wait_host("stopped", "p", n as usize);
        s.wait_host("started", "p", n as usize + 1);
        s.send("in", json!({"n": n}));
        s.wait("p's answer from its new folder", out_n(n));
    }
    assert_eq!(s.host_events("failed", "p"), 0, "{}", s.dump());
    // Its new folder is watched.
    save(&s.entry("z-p"), &code(&COUNTER, rt, "p", 2));
    s.wait_host("reloaded", "p", 1);
}

fn a_group_folder_moved_in_loads_its_plugins_and_moved_out_unloads_them(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    // Plugin folders may sit in plain folders (SPEC §2): `group/q`, `group/r`.
    let staging = tempfile::tempdir_in(s.fx.path().parent().unwrap()).unwrap();
    for name in ["q", "r"] {
        let prepared = staging.path().join("group").join(name);
        std::fs::create_dir_all(&prepared).unwrap();
        std::fs::write(prepared.join(rt.entry()), code(&COUNTER, rt, name, 1)).unwrap();
        std::fs::write(
            prepared.join("plugin.yaml"),
            manifest(name, "subscriptions: [in]\n"),
        )
        .unwrap();
    }
    std::fs::rename(staging.path().join("group"), s.path("group")).unwrap();
    s.wait_host("started", "q", 1);
    s.wait_host("started", "r", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", |e| {
        is_on(e, "out") && e["payload"]["p"] == "q"
    });
    s.wait("r's answer", |e| {
        is_on(e, "out") && e["payload"]["p"] == "r"
    });

    // A nested plugin folder created in one go (`mkdir -p`, then its files).
    s.fx.file(
        &format!("more/deeply/t/{}", rt.entry()),
        &code(&COUNTER, rt, "t", 1),
    );
    s.fx.file(
        "more/deeply/t/plugin.yaml",
        &manifest("t", "subscriptions: [in]\n"),
    );
    s.wait_host("started", "t", 1);

    std::fs::rename(s.path("group"), staging.path().join("group-out")).unwrap();
    s.wait_host("stopped", "q", 1);
    s.wait_host("stopped", "r", 1);
    std::fs::remove_dir_all(s.path("more")).unwrap();
    s.wait_host("stopped", "t", 1);
}

fn a_new_folder_with_a_bad_manifest_fails_until_fixed(rt: Runtime) {
    let mut s = Session::start(rt, |_| {});
    s.fx.file(&format!("q/{}", rt.entry()), &code(&COUNTER, rt, "q", 1));
    s.fx.file("q/plugin.yaml", &manifest("q", "subscritions: [in]\n"));
    let failed = s.wait_host("failed", "q", 1);
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("q/plugin.yaml:3:1: unknown key `subscritions`"),
        "{error}"
    );
    assert_eq!(s.host_events("started", "q"), 0, "{}", s.dump());

    save(
        &s.path("q/plugin.yaml"),
        &manifest("q", "subscriptions: [in]\n"),
    );
    s.wait_host("started", "q", 1);
    s.send("in", json!({"n": 1}));
    s.wait("q's answer", out_n(1));
}

// ---------------------------------------------------------------------------
// --no-watch

#[test]
fn no_watch_turns_live_reload_off() {
    let rt = Runtime::Lua;
    let mut s = Session::start_with(
        rt,
        &["--no-watch"],
        counter(rt, "p", "subscriptions: [in]\n"),
    );
    save(&s.entry("p"), &code(&COUNTER, rt, "p", 2));
    save(
        &s.path("p/plugin.yaml"),
        &manifest("p", "subscriptions: [in]\nconfig: {x: 1}\n"),
    );
    s.fx.plugin(
        rt,
        "q",
        "subscriptions: [in]\n",
        &code(&COUNTER, rt, "q", 1),
    );
    // A negative: what would have reloaded by now (reloads take ~50 ms)
    // must not have. Ten times the settle delay, events flowing meanwhile.
    let until = Instant::now() + Duration::from_millis(500);
    let mut n = 0;
    while Instant::now() < until {
        n += 1;
        s.send("in", json!({"n": n}));
        s.wait("p's answer", out_n(n));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(outs(&s, "p").iter().all(|o| o.1 == 1), "{}", s.dump());
    assert!(outs(&s, "q").is_empty(), "{}", s.dump());
    let host_events = s.seen(|e| {
        ["reloaded", "reload_failed", "stopped", "failed"]
            .iter()
            .any(|t| is_on(e, &format!("plughost.plugin.{t}")))
            || is_on(e, "plughost.plugin.started") && e["payload"]["plugin"] == "q"
    });
    assert!(host_events.is_empty(), "{}", s.dump());
}

// ---------------------------------------------------------------------------
// Many events across several reloads

/// A named pipe the test writes input to while the host reads it as a
/// stream (`--input FIFO`), so a feeder thread can write steadily while the
/// test thread edits files and reads the tap.
fn fifo(dir: &Path) -> PathBuf {
    let path = dir.join("input.fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&path)
        .status()
        .expect("run mkfifo");
    assert!(status.success(), "mkfifo failed");
    path
}

fn a_thousand_events_across_reloads_are_each_handled_once_in_order(rt: Runtime) {
    const EVENTS: u64 = 1000;
    const VERSIONS: u64 = 5;
    // The feeder holds back the last events until every edit is done, so
    // the last version sees some too.
    const HOLD_AT: u64 = 900;
    let fx = Fixture::new();
    fx.plugin(rt, "p", "subscriptions: [in]\n", &code(&TAGGER, rt, "p", 1));
    let pipes = tempfile::tempdir().unwrap();
    let input = fifo(pipes.path());
    let dir = fx.path().to_str().unwrap();
    let mut live = Live::spawn(&[
        "run",
        "--plugins",
        dir,
        "--input",
        input.to_str().unwrap(),
        "--tap",
        ">",
        "--exit-when-idle",
    ]);
    let (edits_done, go_on) = std::sync::mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        // Opening blocks until the host opens the pipe to read it.
        let mut pipe = std::fs::OpenOptions::new()
            .write(true)
            .open(&input)
            .unwrap();
        for n in 1..=EVENTS {
            if n == HOLD_AT {
                let _ = go_on.recv_timeout(Duration::from_secs(30));
            }
            writeln!(pipe, "{}", ev("in", json!({"n": n}))).unwrap();
            pipe.flush().unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        // Dropping the pipe ends the input.
    });

    let entry = fx.path().join(format!("p/{}", rt.entry()));
    let saves: [fn(&Path, &str); 4] = [save, save_atomic, save_vim, save];
    // The host reads input only once the watcher runs.
    live.wait_for("v1's first answer", |e| {
        is_on(e, "out") && e["payload"]["v"] == 1
    });
    for v in 2..=VERSIONS {
        saves[(v - 2) as usize](&entry, &code(&TAGGER, rt, "p", v as u32));
        let reloaded = Cell::new(0);
        live.wait_for(&format!("reload #{}", v - 1), |e| {
            if is_on(e, "plughost.plugin.reloaded") {
                reloaded.set(reloaded.get() + 1);
            }
            reloaded.get() as u64 >= v - 1
        });
        live.wait_for(&format!("v{v}'s first answer"), |e| {
            is_on(e, "out") && e["payload"]["v"] == v
        });
    }
    edits_done.send(()).unwrap();
    feeder.join().expect("feeder");
    live.close_stdin();
    let run = live.finish();
    run.expect_code(0);

    let handled: Vec<(u64, u64)> = run
        .payloads("out")
        .iter()
        .map(|p| (p["n"].as_u64().unwrap(), p["v"].as_u64().unwrap()))
        .collect();
    let ids: Vec<u64> = handled.iter().map(|h| h.0).collect();
    assert_eq!(
        ids,
        (1..=EVENTS).collect::<Vec<_>>(),
        "every event handled exactly once, in order\n{run}"
    );
    let versions: Vec<u64> = handled.iter().map(|h| h.1).collect();
    assert!(
        versions.windows(2).all(|w| w[0] <= w[1]),
        "versions never go back: {versions:?}"
    );
    for v in 1..=VERSIONS {
        assert!(versions.contains(&v), "v{v} handled nothing: {versions:?}");
    }
    assert_eq!(
        run.on("plughost.plugin.reloaded").len() as u64,
        VERSIONS - 1,
        "{run}"
    );
    // Events published before a reload was announced and handled by the
    // version it brought: they waited in the queue across the swap.
    let mut reloads = 0;
    let mut published_after = std::collections::BTreeMap::new();
    let mut carried = 0;
    for e in run.events() {
        if is_on(&e, "plughost.plugin.reloaded") {
            reloads += 1;
        } else if is_on(&e, "in") {
            published_after.insert(e["payload"]["n"].as_u64().unwrap(), reloads);
        } else if is_on(&e, "out") {
            let n = e["payload"]["n"].as_u64().unwrap();
            let v = e["payload"]["v"].as_u64().unwrap();
            if published_after[&n] < v - 1 {
                carried += 1;
            }
        }
    }
    assert!(carried > 0, "no event waited across a swap\n{run}");
    assert!(run.on("plughost.plugin.reload_failed").is_empty(), "{run}");
    assert!(run.dead_letters().is_empty(), "{run}");
}

behaviours!(
    saving_the_script_swaps_between_events_and_keeps_state,
    the_old_versions_timers_stop,
    a_failed_reload_keeps_the_old_version_and_the_next_save_retries,
    an_atomic_rename_save_reloads_once,
    a_vim_save_reloads_once,
    a_burst_of_writes_reloads_once,
    editing_a_required_module_reloads,
    a_config_only_change_calls_on_config,
    a_config_only_change_without_on_config_reloads,
    a_subscriptions_change_restarts_the_plugin,
    a_limits_change_restarts_the_plugin,
    an_entry_change_restarts_the_plugin,
    a_runtime_change_restarts_the_plugin,
    disabling_stops_after_the_queue_and_enabling_starts,
    a_plugin_disabled_at_start_starts_when_enabled,
    a_plugin_that_failed_to_start_starts_once_fixed,
    a_new_folder_loads_and_a_removed_folder_unloads,
    a_folder_moved_in_loads_and_one_moved_out_unloads,
    a_folder_renamed_in_place_restarts_from_its_new_path,
    a_group_folder_moved_in_loads_its_plugins_and_moved_out_unloads_them,
    a_new_folder_with_a_bad_manifest_fails_until_fixed,
    a_thousand_events_across_reloads_are_each_handled_once_in_order,
);
