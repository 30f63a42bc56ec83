//! Many events across several reloads: a thousand events streamed through
//! a named pipe while the script is saved four times, each handled once,
//! in order.

use std::cell::Cell;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::behaviours;
use crate::live::Live;
use crate::support::{Fixture, Runtime, Src, ev};

use super::session::{save, save_atomic, save_vim};
use super::{code, is_on};

// ---------------------------------------------------------------------------
// Plugins

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
    native: None,
};

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

behaviours!(a_thousand_events_across_reloads_are_each_handled_once_in_order);
