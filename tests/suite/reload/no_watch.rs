//! `--no-watch`: nothing saved, changed or added reloads while the host
//! runs.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::Runtime;

use super::session::{Session, save};
use super::{COUNTER, code, counter, is_on, manifest, out_n, outs};

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
