//! SPEC §13 shadow rollouts end to end: the real `plughost run` with its
//! file watcher and admin endpoint, a plugin with `rollout: {strategy:
//! shadow}` edited on disk while events stream in on stdin. The edit
//! changes one case; exactly that case's event is reported as a
//! `shadow_diff` with both sides, the tap shows only the running version's
//! outputs, and `plughost promote` (Lua) or `plughost rollback` (Rhai)
//! decides which behaviour answers next. A new version that does not
//! compile is a failed reload: no rollout, the running version answers.
//!
//! Nothing sleeps for correctness: each step waits, bounded, for the tapped
//! event or the count that proves the state it needs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::admin::{Answer, request, wait_ready};
use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Run, Runtime, Src, ev, free_port, run_binary};

/// The plugin under rollout.
const NAME: &str = "parity";

/// The running version: says whether `n` is odd or even.
const V1: Src = Src {
    lua: r#"
function on_event(e)
  local n = e.payload.n
  local word = "even"
  if n % 2 == 1 then word = "odd" end
  bus.publish("out", { n = n, word = word })
end
"#,
    rhai: r#"
fn on_event(e) {
  let n = e.payload.n;
  let word = if n % 2 == 1 { "odd" } else { "even" };
  bus::publish("out", #{ n: n, word: word });
}
"#,
    native: None,
};

/// The new version: the same, except that 3 is called by its name.
const V2: Src = Src {
    lua: r#"
function on_event(e)
  local n = e.payload.n
  local word = "even"
  if n % 2 == 1 then word = "odd" end
  if n == 3 then word = "three" end
  bus.publish("out", { n = n, word = word })
end
"#,
    rhai: r#"
fn on_event(e) {
  let n = e.payload.n;
  let word = if n % 2 == 1 { "odd" } else { "even" };
  if n == 3 { word = "three"; }
  bus::publish("out", #{ n: n, word: word });
}
"#,
    native: None,
};

/// A new version that does not compile: the error is on line 3.
const BROKEN: Src = Src {
    lua: "\nfunction on_event(e)\n  if then end\nend\n",
    rhai: "\nfn on_event(e) {\n  let = 1;\n}\n",
    native: None,
};

/// The word the running version says for `n`.
fn v1_word(n: u64) -> &'static str {
    if n % 2 == 1 { "odd" } else { "even" }
}

/// `parity`'s manifest at `version`, rolled out in the shadow.
fn manifest(version: &str) -> String {
    format!(
        "name: {NAME}\nversion: {version}\nsubscriptions: [in]\nrollout: {{strategy: shadow}}\n"
    )
}

/// A running `plughost run` with the watcher on, an admin endpoint, and
/// every bus event tapped.
struct Host {
    fx: Fixture,
    rt: Runtime,
    live: Live,
    port: u16,
    /// Marker events sent so far (see [`Host::settle`]).
    marks: u32,
}

impl Host {
    /// Writes `parity` 1.0.0 running `V1` and starts the host; returns once
    /// it reads input (it does only once the watcher runs).
    fn start(rt: Runtime) -> Host {
        let fx = Fixture::new();
        fx.file(&format!("{NAME}/{}", rt.entry()), V1.get(rt));
        fx.file(&format!("{NAME}/plugin.yaml"), &manifest("1.0.0"));
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let dir = fx.path().to_str().unwrap().to_owned();
        let args = [
            "run",
            "--plugins",
            &dir,
            "--input",
            "-",
            "--tap",
            ">",
            "--admin",
            &addr,
        ];
        let mut live = Live::spawn(&args);
        let ready = wait_ready(port, &[]);
        assert_eq!(ready.status, 200, "{ready:?}");
        live.send(&ev("ping", json!({})));
        live.wait_for("the first input line tapped", |e| e["topic"] == "ping");
        Host {
            fx,
            rt,
            live,
            port,
            marks: 0,
        }
    }

    /// Saves a new version of `parity`: the script, then the manifest.
    fn save(&self, version: &str, src: &Src) {
        self.fx
            .file(&format!("{NAME}/{}", self.rt.entry()), src.get(self.rt));
        self.fx
            .file(&format!("{NAME}/plugin.yaml"), &manifest(version));
    }

    /// Sends `n` on `in` and waits for its `out`; returns the tapped input
    /// event (with its id) and the output's payload.
    fn ask(&mut self, n: u64) -> (Value, Value) {
        let before = self.live.events().len();
        self.live.send(&ev("in", json!({ "n": n })));
        let input = self.after(before, &format!("input {n}"), |e| {
            e["topic"] == "in" && e["payload"]["n"] == n
        });
        let out = self.after(before, &format!("the output for {n}"), |e| {
            e["topic"] == "out" && e["payload"]["n"] == n
        });
        (input, out["payload"].clone())
    }

    /// The first tapped event past the first `skip` matching `pred`.
    fn after(&mut self, skip: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let seen = std::cell::Cell::new(0);
        self.live.wait_for(what, |e| {
            seen.set(seen.get() + 1);
            seen.get() > skip && pred(e)
        })
    }

    /// Waits for `plughost.plugin.<what>` about `parity` whose payload's
    /// `key` is `value`; returns the payload.
    fn wait_host(&mut self, what: &str, key: &str, value: &str) -> Value {
        let topic = format!("plughost.plugin.{what}");
        self.live
            .wait_for(&format!("{topic} with {key} {value}"), |e| {
                let p = &e["payload"];
                e["topic"] == topic.as_str() && p["plugin"] == NAME && p[key] == value
            })["payload"]
            .clone()
    }

    /// `plughost.plugin.<what>` payloads about `parity` tapped so far.
    fn host_events(&self, what: &str) -> Vec<Value> {
        let topic = format!("plughost.plugin.{what}");
        self.live
            .events()
            .into_iter()
            .filter(|e| e["topic"] == topic.as_str() && e["payload"]["plugin"] == NAME)
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// `out` payloads tapped so far.
    fn outs(&self) -> Vec<Value> {
        self.live
            .events()
            .into_iter()
            .filter(|e| e["topic"] == "out")
            .map(|e| e["payload"].clone())
            .collect()
    }

    /// `GET /plugins/parity`.
    fn describe(&self) -> Value {
        let a: Answer = request(self.port, "GET", &format!("/plugins/{NAME}"), &[], b"");
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    }

    /// Waits until the rollout has compared `n` events, then until every
    /// `shadow_diff` announced by then is tapped: a marker published after
    /// them is tapped after them.
    fn settle(&mut self, n: u64) -> Value {
        let deadline = Instant::now() + LIMIT;
        let described = loop {
            let d = self.describe();
            if d["rollout"]["compared"].as_u64() == Some(n) {
                break d;
            }
            assert!(
                Instant::now() < deadline,
                "the candidate never compared {n} events: {d}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        self.marks += 1;
        let mark = self.marks;
        self.live.send(&ev("mark", json!({ "mark": mark })));
        self.live.wait_for(&format!("marker {mark}"), |e| {
            e["topic"] == "mark" && e["payload"]["mark"] == mark
        });
        described
    }

    /// Runs `plughost ARGS --admin ADDR` as a client of this host.
    fn client(&self, args: &[&str]) -> Run {
        let addr = format!("127.0.0.1:{}", self.port);
        let mut args = args.to_vec();
        args.extend(["--admin", addr.as_str()]);
        run_binary(&args, None)
    }

    /// Stops the host with SIGTERM; it exits 0.
    fn stop(self) {
        self.live.signal("TERM");
        let run = self.live.finish();
        assert_eq!(run.code, 0, "{run}");
    }
}

/// Saves `V2` as 1.1.0 under `strategy: shadow`, streams 1 to 6 through
/// the rollout and checks that exactly 3 differed, with both sides, while
/// every output came from the running version. Returns `n == 3`'s input.
fn roll_out_v2(h: &mut Host) -> Value {
    // Before the edit: the running version answers alone.
    let (_, out) = h.ask(3);
    assert_eq!(out, json!({"n": 3, "word": "odd"}));

    // The script and the manifest are two saves: the watcher may take them
    // as two new versions (the first then replaced), so wait for 1.1.0's.
    h.save("1.1.0", &V2);
    let started = h.wait_host("rollout_started", "to", "1.1.0");
    assert_eq!(
        started,
        json!({"plugin": NAME, "strategy": "shadow", "from": "1.0.0", "to": "1.1.0"})
    );
    let outs_before = h.outs().len();
    let mut three = Value::Null;
    for n in 1..=6 {
        let (input, out) = h.ask(n);
        assert_eq!(
            out,
            json!({"n": n, "word": v1_word(n)}),
            "the running version answers"
        );
        if n == 3 {
            three = input;
        }
    }
    let described = h.settle(6);

    // Exactly one difference: the event of the changed case, both sides told.
    let diffs = h.host_events("shadow_diff");
    assert_eq!(diffs.len(), 1, "one shadow_diff: {diffs:?}");
    let diff = &diffs[0];
    assert_eq!(diff["event"], three["id"], "for n = 3's event: {diff}");
    assert!(three["id"].is_string(), "{three}");
    assert_eq!(
        diff["live"],
        json!({
            "published": [{"topic": "out", "payload": {"n": 3, "word": "odd"}}],
            "outcome": {"kind": "ack"},
        }),
        "{diff}"
    );
    assert_eq!(
        diff["candidate"],
        json!({
            "published": [{"topic": "out", "payload": {"n": 3, "word": "three"}}],
            "outcome": {"kind": "ack"},
        }),
        "{diff}"
    );

    // The candidate's publish never reached the bus: each output is the
    // running version's, once.
    let outs = h.outs();
    let during = &outs[outs_before..];
    assert_eq!(during.len(), 6, "one output per event: {during:?}");
    assert!(
        during.iter().all(|o| o["word"] != "three"),
        "only the running version's outputs: {during:?}"
    );

    // The admin endpoint counts what the candidate did.
    assert_eq!(described["version"], "1.0.0", "{described}");
    assert_eq!(
        described["rollout"],
        json!({
            "strategy": "shadow",
            "from": "1.0.0",
            "to": "1.1.0",
            "percent": null,
            "compared": 6,
            "differed": 1,
            "skipped": 0,
            "candidate_errors": 0,
            "handled_by_candidate": 0,
        }),
        "{described}"
    );
    let status = h.client(&["status", NAME]);
    assert_eq!(status.code, 0, "{status}");
    assert!(
        status
            .stdout
            .contains("rollout shadow 1.0.0 → 1.1.0: 6 compared, 1 differed, 0 candidate errors"),
        "{status}"
    );
    three
}

#[test]
fn a_shadow_rollout_reports_the_one_changed_case_and_promote_makes_it_live() {
    let mut h = Host::start(Runtime::Lua);
    roll_out_v2(&mut h);

    let run = h.client(&["promote", NAME]);
    assert_eq!(run.code, 0, "{run}");
    let answer: Value = serde_json::from_str(run.stdout.trim()).expect("JSON on stdout");
    assert_eq!(answer["version"], "1.1.0", "{run}");
    assert_eq!(answer["rollout"], Value::Null, "{run}");
    let promoted = h.wait_host("promoted", "version", "1.1.0");
    assert_eq!(
        promoted,
        json!({"plugin": NAME, "version": "1.1.0", "by": "operator"})
    );

    // The new behaviour is live, and the others are unchanged.
    let (_, out) = h.ask(3);
    assert_eq!(out, json!({"n": 3, "word": "three"}));
    let (_, out) = h.ask(5);
    assert_eq!(out, json!({"n": 5, "word": "odd"}));
    let d = h.describe();
    assert_eq!(d["version"], "1.1.0", "{d}");
    assert_eq!(d["rollout"], Value::Null, "{d}");
    assert!(
        h.host_events("rolled_back")
            .iter()
            .all(|r| r["version"] != "1.1.0"),
        "1.1.0 was promoted, never rolled back"
    );
    h.stop();
}

#[test]
fn a_shadow_rollout_rolled_back_keeps_the_old_behaviour() {
    let mut h = Host::start(Runtime::Rhai);
    roll_out_v2(&mut h);

    let run = h.client(&["rollback", NAME]);
    assert_eq!(run.code, 0, "{run}");
    let answer: Value = serde_json::from_str(run.stdout.trim()).expect("JSON on stdout");
    assert_eq!(answer["version"], "1.0.0", "{run}");
    assert_eq!(answer["rollout"], Value::Null, "{run}");
    let rolled_back = h.wait_host("rolled_back", "version", "1.1.0");
    assert_eq!(
        rolled_back,
        json!({"plugin": NAME, "version": "1.1.0", "reason": "operator"})
    );

    // The old behaviour stays, and nothing shadows it any more.
    let (_, out) = h.ask(3);
    assert_eq!(out, json!({"n": 3, "word": "odd"}));
    h.marks += 1;
    let mark = h.marks;
    h.live.send(&ev("mark", json!({ "mark": mark })));
    h.live.wait_for("the marker", |e| {
        e["topic"] == "mark" && e["payload"]["mark"] == mark
    });
    assert_eq!(
        h.host_events("shadow_diff").len(),
        1,
        "no diff after the rollback"
    );
    let d = h.describe();
    assert_eq!(d["version"], "1.0.0", "{d}");
    assert_eq!(d["rollout"], Value::Null, "{d}");
    assert!(h.host_events("promoted").is_empty());
    // The verb ended the rollout: a second one has nothing to act on.
    let again = h.client(&["rollback", NAME]);
    assert_eq!(again.code, 1, "{again}");
    assert!(
        again.stderr.contains("no rollout in progress (HTTP 409)"),
        "{again}"
    );
    h.stop();
}

#[test]
fn a_new_version_that_does_not_compile_starts_no_rollout() {
    let mut h = Host::start(Runtime::Lua);
    h.save("1.1.0", &BROKEN);
    let failed = h.wait_host("reload_failed", "plugin", NAME);
    let at = format!("{NAME}/{}:3", Runtime::Lua.entry());
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(error.contains(&at), "the error names {at}: {failed}");

    // No rollout: the running version goes on alone.
    let (_, out) = h.ask(3);
    assert_eq!(out, json!({"n": 3, "word": "odd"}));
    let d = h.describe();
    assert_eq!(d["version"], "1.0.0", "{d}");
    assert_eq!(d["rollout"], Value::Null, "{d}");
    assert!(h.host_events("rollout_started").is_empty());
    assert!(h.host_events("shadow_diff").is_empty());
    let status = h.client(&["status", NAME]);
    assert_eq!(status.code, 0, "{status}");
    assert!(!status.stdout.contains("rollout"), "{status}");

    // The watcher goes on: a version that compiles starts the rollout.
    // The script and the manifest are two saves: the watcher may take them
    // as two new versions (the first then replaced), so wait for 1.1.0's.
    h.save("1.1.0", &V2);
    let started = h.wait_host("rollout_started", "to", "1.1.0");
    assert_eq!(started["to"], "1.1.0", "{started}");
    let (_, out) = h.ask(3);
    assert_eq!(out, json!({"n": 3, "word": "odd"}));
    h.stop();
}
