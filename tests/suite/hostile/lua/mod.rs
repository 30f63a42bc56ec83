//! Hostile Lua plugins: scripts that try to hang the host, exhaust its
//! memory or leave the sandbox. Each attacker (`bad`) runs beside a
//! well-behaved plugin (`good`) that must handle every event; each attack
//! event is dead-lettered with an error naming the attacker's file and line,
//! and the attacker handles the events between the attacks.

mod cpu;
mod escapes;
mod memory;

use serde_json::{Value, json};

use crate::bindings::{at, line_of};
use crate::support::{Fixture, Run, Runtime, ev};

/// The neighbour: handles every event it sees.
pub(super) const GOOD: &str = r#"
function on_event(e)
  bus.publish("good.handled", { kind = e.payload.kind })
end
"#;

/// The attacker's `on_event`, after its `attacks` table: runs the attack
/// named by the event's `kind`, then reports the event handled.
pub(super) const DISPATCH: &str = r#"
function on_event(e) -- @on-event
  local attack = attacks[e.payload.kind]
  if attack then attack() end
  bus.publish("bad.handled", { kind = e.payload.kind })
end
"#;

/// One attack and how its event must end: dead-lettered with an error that
/// names one of the lines marked `at` and then says `says`.
pub(super) struct Attack {
    kind: &'static str,
    at: &'static [&'static str],
    says: &'static str,
}

/// The attacker's source: `attacks` (a Lua table constructor body) and
/// [`DISPATCH`].
pub(super) fn attacker(attacks: &str) -> String {
    format!("attacks = {{\n{attacks}}}\n{DISPATCH}")
}

/// The kinds of the tapped payloads on `topic`.
pub(super) fn kinds(run: &Run, topic: &str) -> Vec<Value> {
    run.payloads(topic)
        .iter()
        .map(|p| p["kind"].clone())
        .collect()
}

/// Runs each attack, followed by a harmless event, against `src` (plugin
/// `bad`, with `limits`) beside [`GOOD`], and checks that every event is
/// accounted for.
pub(super) fn run_attacks(src: &str, limits: &str, attacks: &[Attack]) -> Run {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "bad",
        &format!("subscriptions: [in]\nlimits: {{{limits}}}\n"),
        src,
    );
    fx.plugin(Runtime::Lua, "good", "subscriptions: [in]\n", GOOD);
    let (mut input, mut all, mut harmless) = (Vec::new(), Vec::new(), Vec::new());
    for (i, a) in attacks.iter().enumerate() {
        let ok = format!("ok-{i}");
        input.push(ev("in", json!({"kind": a.kind})));
        input.push(ev("in", json!({"kind": ok})));
        all.extend([json!(a.kind), json!(ok)]);
        harmless.push(json!(ok));
    }
    let run = fx.run(&input);
    run.expect_code(0);
    assert_eq!(
        kinds(&run, "good.handled"),
        all,
        "the neighbour missed events\n{run}"
    );
    assert_eq!(kinds(&run, "bad.handled"), harmless, "{run}");
    let dl = run.dead_letters();
    let dead: Vec<&Value> = dl.iter().map(|d| &d["event"]["payload"]["kind"]).collect();
    let want: Vec<&str> = attacks.iter().map(|a| a.kind).collect();
    assert_eq!(dead, want, "{run}");
    for (d, a) in dl.iter().zip(attacks) {
        assert_eq!(d["plugin"], "bad", "{d}");
        let error = d["error"].as_str().unwrap();
        let placed = a.at.iter().any(|m| {
            let pos = at("bad", "main.lua", line_of(src, m));
            error.contains(&format!("{pos}: {}", a.says))
        });
        assert!(
            placed,
            "{}: should name one of the lines {:?} then say {:?}: {error}",
            a.kind, a.at, a.says
        );
    }
    run
}

pub(super) const TIME: &str = "event_timeout_ms: 200";
pub(super) const TIME_LIMIT: &str = "time limit exceeded";
