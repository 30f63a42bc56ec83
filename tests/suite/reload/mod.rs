//! SPEC §5 live reload, black-box: `plughost run` watches the plugins
//! directory while the test edits real files under a temp dir and events
//! stream in.
//!
//! Nothing here sleeps for correctness: every step waits (bounded) for the
//! tapped event that proves the state it needs. To show that a save caused
//! *exactly one* reload, the test then changes a second plugin (the
//! barrier) and waits for its reload: the barrier's save waits the longest
//! a change can wait (the quiet period: it is not closed until then), and
//! folders due together go in path order with the barrier's last, so a
//! second reload of the first plugin would have been tapped before the
//! barrier's.
//!
//! One module per kind of change ([`scripts`], [`manifests`], [`folders`]),
//! [`editors`] (how editors and tools save, each as one reload), plus
//! [`no_watch`] and [`stream`] (many events across several reloads);
//! [`session`] runs the host and edits its plugins. The plugins and helpers
//! here are shared by several of them.

use serde_json::Value;

use crate::support::{Fixture, Runtime, Src};

use session::Session;

mod editors;
mod folders;
mod manifests;
mod no_watch;
mod scripts;
mod session;
mod stream;

// ---------------------------------------------------------------------------
// Writing plugins and reading the tap

/// `src` for `rt` with `VERSION` replaced by `v` and `NAME` by `name`.
fn code(src: &Src, rt: Runtime, name: &str, v: u32) -> String {
    src.get(rt)
        .replace("VERSION", &v.to_string())
        .replace("NAME", name)
}

fn manifest(name: &str, extra: &str) -> String {
    format!("name: {name}\nversion: 1.0.0\n{extra}")
}

fn is_on(e: &Value, topic: &str) -> bool {
    e["topic"] == topic
}

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
    native: None,
};

/// Does not compile; the error is on line 3.
pub(crate) use crate::lifecycle::SYNTAX_ERROR;
