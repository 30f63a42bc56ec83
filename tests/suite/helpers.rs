//! SPEC §4 script helpers `json`, `time` and `regex`: the same results in
//! Lua and Rhai, their errors caught by the script with what went wrong and
//! where, and their calls held to the plugin's memory and time limits.

use serde_json::json;

use crate::behaviours;
use crate::support::Fixture;
use crate::support::{Runtime, Src, ev};

behaviours!(
    every_helper_answers_the_same_in_both_runtimes,
    helper_errors_are_caught_by_the_script_saying_what_and_where,
    nested_quantifiers_answer_in_linear_time,
    a_loop_of_regex_replace_is_stopped_by_the_time_limit,
    decoding_a_huge_document_hits_the_memory_limit,
    a_shadow_candidate_reads_the_running_versions_clock,
);

/// A plugin `p` subscribed to `in` with `limits`, running `src`.
fn plugin(rt: Runtime, limits: &str, src: Src) -> Fixture {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        &format!("subscriptions: [in]\nlimits: {{{limits}}}\n"),
        src.get(rt),
    );
    fx
}

const RESULTS: Src = Src {
    lua: r#"
local function show(list)
  if list == nil then return "<none>" end
  local parts = {}
  for i = 1, 4 do
    if list[i] == nil then parts[i] = "<nil>" else parts[i] = list[i] end
  end
  return table.concat(parts, "|")
end

function on_event(e)
  local value = { b = 1, a = { 1, 2.5, "x" }, c = { d = true }, e = {} }
  local text = json.encode(value)
  local ms = 1714564800123
  bus.publish("report", {
    encoded = text,
    back = json.decode(text),
    null_is_nil = json.decode('{"a": null}').a == nil,
    top_null_is_nil = json.decode("null") == nil,
    int_is_int = math.type(json.decode("3")) == "integer",
    float_is_float = math.type(json.decode("3.0")) == "float",
    formatted = time.format(ms),
    formatted_fmt = time.format(ms, "%Y/%m/%d %H:%M"),
    parsed = time.parse("2024-05-01T14:00:00.123+02:00"),
    parsed_fmt = time.parse("01.05.2024 12:00", "%d.%m.%Y %H:%M"),
    parsed_epoch = time.parse("1714564800", "%s"),
    round_trip = time.parse(time.format(ms)) == ms,
    now_is_int = math.type(time.now_ms()) == "integer",
    now_is_recent = time.now_ms() > 1700000000000,
    is_match = regex.is_match("^\\d+$", "12345"),
    is_not_match = regex.is_match("^\\d+$", "12a45"),
    found = regex.find("\\d+", "id 42 and 7"),
    not_found = regex.find("\\d+", "none") == nil,
    captures = show(regex.captures("(\\d+)(x)?-(?P<tail>\\w+)", "id 42-abc")),
    no_captures = show(regex.captures("(\\d+)", "none")),
    replaced = regex.replace("(?P<k>\\w+)=(\\d+)", "a=1, b=22", "$2:$k"),
    replaced_plain = regex.replace("o", "foo", "0"),
  })
end
"#,
    rhai: r#"
fn show(list) {
  if list == () { return "<none>"; }
  let out = "";
  for (g, i) in list {
    if i > 0 { out += "|"; }
    out += if g == () { "<nil>" } else { g };
  }
  out
}

fn on_event(e) {
  let value = #{ b: 1, a: [1, 2.5, "x"], c: #{ d: true }, e: #{} };
  let text = json::encode(value);
  let ms = 1714564800123;
  bus::publish("report", #{
    encoded: text,
    back: json::decode(text),
    null_is_nil: json::decode("{\"a\": null}").a == (),
    top_null_is_nil: json::decode("null") == (),
    int_is_int: type_of(json::decode("3")) == "i64",
    float_is_float: type_of(json::decode("3.0")) == "f64",
    formatted: time::format(ms),
    formatted_fmt: time::format(ms, "%Y/%m/%d %H:%M"),
    parsed: time::parse("2024-05-01T14:00:00.123+02:00"),
    parsed_fmt: time::parse("01.05.2024 12:00", "%d.%m.%Y %H:%M"),
    parsed_epoch: time::parse("1714564800", "%s"),
    round_trip: time::parse(time::format(ms)) == ms,
    now_is_int: type_of(time::now_ms()) == "i64",
    now_is_recent: time::now_ms() > 1700000000000,
    is_match: regex::is_match("^\\d+$", "12345"),
    is_not_match: regex::is_match("^\\d+$", "12a45"),
    found: regex::find("\\d+", "id 42 and 7"),
    not_found: regex::find("\\d+", "none") == (),
    captures: show(regex::captures("(\\d+)(x)?-(?P<tail>\\w+)", "id 42-abc")),
    no_captures: show(regex::captures("(\\d+)", "none")),
    replaced: regex::replace("(?P<k>\\w+)=(\\d+)", "a=1, b=22", "$2:$k"),
    replaced_plain: regex::replace("o", "foo", "0"),
  });
}
"#,
    native: None,
};

fn every_helper_answers_the_same_in_both_runtimes(rt: Runtime) {
    let fx = plugin(rt, "", RESULTS);
    let run = fx.run(&[ev("in", json!({}))]);
    let report = run.only("report");
    let value = json!({"a": [1, 2.5, "x"], "b": 1, "c": {"d": true}, "e": {}});
    assert_eq!(
        report,
        json!({
            "encoded": r#"{"a":[1,2.5,"x"],"b":1,"c":{"d":true},"e":{}}"#,
            "back": value,
            "null_is_nil": true,
            "top_null_is_nil": true,
            "int_is_int": true,
            "float_is_float": true,
            "formatted": "2024-05-01T12:00:00.123Z",
            "formatted_fmt": "2024/05/01 12:00",
            "parsed": 1_714_564_800_123_i64,
            "parsed_fmt": 1_714_564_800_000_i64,
            "parsed_epoch": 1_714_564_800_000_i64,
            "round_trip": true,
            "now_is_int": true,
            "now_is_recent": true,
            "is_match": true,
            "is_not_match": false,
            "found": "42",
            "not_found": true,
            "captures": "42-abc|42|<nil>|abc",
            "no_captures": "<none>",
            "replaced": "1:a, 22:b",
            "replaced_plain": "f00",
        }),
        "{run}"
    );
}

const CAUGHT: Src = Src {
    lua: r#"
local function caught(f, ...)
  local ok, err = pcall(f, ...)
  if ok then return "no error" end
  return tostring(err)
end

function on_event(e)
  bus.publish("caught", {
    decode = caught(json.decode, '{\n  "a": 1,\n  "b": ?\n}'),
    encode = caught(json.encode, { f = print }),
    format = caught(time.format, 0, "%J"),
    parse = caught(time.parse, "yesterday"),
    parse_fmt = caught(time.parse, "2024/05/xx", "%Y/%m/%d"),
    pattern = caught(regex.is_match, "ab(c", "x"),
    too_big = caught(regex.find, "\\w{1000}", "x"),
  })
end
"#,
    rhai: r#"
fn on_event(e) {
  let r = #{};
  try { json::decode("{\n  \"a\": 1,\n  \"b\": ?\n}"); r.decode = "no error"; } catch (err) { r.decode = err; }
  try { json::encode(#{ f: || 1 }); r.encode = "no error"; } catch (err) { r.encode = err; }
  try { time::format(0, "%J"); r.format = "no error"; } catch (err) { r.format = err; }
  try { time::parse("yesterday"); r.parse = "no error"; } catch (err) { r.parse = err; }
  try { time::parse("2024/05/xx", "%Y/%m/%d"); r.parse_fmt = "no error"; } catch (err) { r.parse_fmt = err; }
  try { regex::is_match("ab(c", "x"); r.pattern = "no error"; } catch (err) { r.pattern = err; }
  try { regex::find("\\w{1000}", "x"); r.too_big = "no error"; } catch (err) { r.too_big = err; }
  bus::publish("caught", r);
}
"#,
    native: None,
};

fn helper_errors_are_caught_by_the_script_saying_what_and_where(rt: Runtime) {
    let fx = plugin(rt, "", CAUGHT);
    let run = fx.run(&[ev("in", json!({}))]);
    let caught = run.only("caught");
    let text = |key: &str| caught[key].as_str().unwrap_or_default().to_owned();
    let wants = [
        (
            "decode",
            format!(
                "{}: line 3, column 8: expected value",
                rt.binding("json", "decode")
            ),
        ),
        (
            "encode",
            "cannot be converted to JSON (at value.f)".to_owned(),
        ),
        (
            "format",
            format!("{}: bad format \"%J\"", rt.binding("time", "format")),
        ),
        (
            "parse",
            format!(
                "{}: \"yesterday\" is not an RFC 3339 time",
                rt.binding("time", "parse")
            ),
        ),
        (
            "parse_fmt",
            "\"2024/05/xx\" does not match \"%Y/%m/%d\"".to_owned(),
        ),
        (
            "pattern",
            "regex: ab(c: column 3: unclosed group".to_owned(),
        ),
        (
            "too_big",
            r"regex: \w{1000}: the compiled pattern is larger than its limit".to_owned(),
        ),
    ];
    for (key, want) in wants {
        assert!(
            text(key).contains(&want),
            "{key}: {:?} lacks {want:?}\n{run}",
            text(key)
        );
    }
    // Lua's errors name the calling line, as every binding's do.
    if rt == Runtime::Lua {
        assert!(
            text("decode").contains("/p/main.lua:"),
            "{}",
            text("decode")
        );
    }
    assert!(run.dead_letters().is_empty(), "{run}");
}

const BACKTRACKING: Src = Src {
    lua: r#"
function on_event(e)
  local s = string.rep("a", 100000) .. "!"
  bus.publish("answer", { matched = regex.is_match("(a+)+$", s) })
end
"#,
    rhai: r#"
fn on_event(e) {
  let s = "";
  s.pad(100000, 'a');
  s += "!";
  bus::publish("answer", #{ matched: regex::is_match("(a+)+$", s) });
}
"#,
    native: None,
};

/// A backtracking engine takes exponential time on this; the regex crate's
/// is linear, so the hook ends well within its limit.
fn nested_quantifiers_answer_in_linear_time(rt: Runtime) {
    let fx = plugin(rt, "event_timeout_ms: 5000", BACKTRACKING);
    let run = fx.run(&[ev("in", json!({}))]);
    assert_eq!(run.only("answer"), json!({"matched": false}), "{run}");
}

const REPLACE_LOOP: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.kind == "loop" then
    local s = string.rep("a", 100000)
    while true do
      s = regex.replace("a", s, "a")
    end
  end
  bus.publish("handled", { kind = e.payload.kind })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.kind == "loop" {
    let s = "";
    s.pad(100000, 'a');
    loop {
      s = regex::replace("a", s, "a");
    }
  }
  bus::publish("handled", #{ kind: e.payload.kind });
}
"#,
    native: None,
};

fn a_loop_of_regex_replace_is_stopped_by_the_time_limit(rt: Runtime) {
    let fx = plugin(rt, "event_timeout_ms: 200", REPLACE_LOOP);
    let run = fx.run(&[
        ev("in", json!({"kind": "loop"})),
        ev("in", json!({"kind": "ok"})),
    ]);
    let dl = run.dead_letters();
    assert_eq!(dl.len(), 1, "{run}");
    let error = dl[0]["error"].as_str().unwrap();
    assert!(error.contains("time limit exceeded"), "{error}");
    assert!(error.contains("limits.event_timeout_ms"), "{error}");
    assert_eq!(
        run.payloads("handled"),
        vec![json!({"kind": "ok"})],
        "{run}"
    );
}

const HUGE_DOCUMENT: Src = Src {
    lua: r#"
function on_event(e)
  if e.payload.kind == "huge" then
    local doc = "[" .. string.rep("1,", 10000000) .. "1]"
    local value = json.decode(doc)
    bus.publish("survived", { n = #value })
  end
  bus.publish("handled", { kind = e.payload.kind })
end
"#,
    rhai: r#"
fn on_event(e) {
  if e.payload.kind == "huge" {
    let doc = "";
    doc.pad(14000000, "1,");
    doc = "[" + doc + "1]";
    let value = json::decode(doc);
    bus::publish("survived", #{ n: value.len() });
  }
  bus::publish("handled", #{ kind: e.payload.kind });
}
"#,
    native: None,
};

/// The most the host may reach while a plugin with `memory_mb: 64` decodes
/// a document of 20 MB (Lua) or 14 MB (Rhai): the interpreter's 64 MiB, the
/// text, and the host's own (about 80 MiB in a debug build). Building the
/// document's JSON tree on the host's heap took it to 560-900 MiB.
const HUGE_DOCUMENT_PEAK_KIB: u64 = 224 << 10;

/// A document whose values would not fit the plugin's memory fails that
/// event as a memory limit error, without the host's memory growing past
/// what the limit allows; the next event is handled.
fn decoding_a_huge_document_hits_the_memory_limit(rt: Runtime) {
    // Time enough to build the text on a loaded machine: memory is the point.
    let fx = plugin(rt, "memory_mb: 64, event_timeout_ms: 30000", HUGE_DOCUMENT);
    let (events, peak_kib) = run_measuring_peak(
        &fx,
        &[
            ev("in", json!({"kind": "huge"})),
            ev("in", json!({"kind": "ok"})),
        ],
        |e| e["topic"] == "handled" && e["payload"]["kind"] == "ok",
    );
    assert!(
        peak_kib < HUGE_DOCUMENT_PEAK_KIB,
        "the host peaked at {peak_kib} KiB, more than {HUGE_DOCUMENT_PEAK_KIB}"
    );
    let shown = || format!("{events:#?}");
    let dl: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["topic"] == "plughost.dead_letter")
        .collect();
    assert_eq!(dl.len(), 1, "{}", shown());
    let error = dl[0]["payload"]["error"].as_str().unwrap();
    assert!(
        error.contains("memory limit exceeded (limits.memory_mb = 64)"),
        "{error}"
    );
    // Rhai counts no bytes: the decoded array is refused by the engine's
    // array size limit before it is built.
    if rt == Runtime::Rhai {
        assert!(error.contains("json::decode arrays too large"), "{error}");
    }
    assert!(
        !events.iter().any(|e| e["topic"] == "survived"),
        "{}",
        shown()
    );
}

/// Runs the plugins of `fx` on `input` with stdin kept open until a tapped
/// event satisfies `done` (at most 60 s), then reads the host's peak
/// resident memory (`VmHWM`, in KiB) before letting it exit. Returns the
/// tapped events and the peak.
fn run_measuring_peak(
    fx: &Fixture,
    input: &[serde_json::Value],
    done: impl Fn(&serde_json::Value) -> bool,
) -> (Vec<serde_json::Value>, u64) {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    let mut child = Command::new(crate::support::binary())
        .args(["run", "--plugins"])
        .arg(fx.path())
        .args(["--input", "-", "--tap", ">", "--exit-when-idle"])
        .env("PLUGHOST_LOG", "warn")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn plughost");
    let mut stdin = child.stdin.take().unwrap();
    for event in input {
        writeln!(stdin, "{event}").unwrap();
    }
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                let _ = tx.send(event);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut events = Vec::new();
    let mut peak = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(event) = rx.recv_timeout(left) else {
            break;
        };
        let last = done(&event);
        events.push(event);
        if last {
            peak = Some(peak_kib(child.id()));
            break;
        }
    }
    drop(stdin);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    events.extend(rx.try_iter());
    let peak = peak.unwrap_or_else(|| panic!("no final event within 60 s: {events:#?}"));
    (events, peak)
}

/// `VmHWM` of process `pid`, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

const CLOCK: Src = Src {
    lua: r#"
function on_event(e)
  -- Reads until the clock moves: a candidate reading its own clock,
  -- later, could never publish the same `at`.
  local at = time.now_ms()
  while time.now_ms() == at do end
  bus.publish("out", { n = e.payload.n, at = at })
end
"#,
    rhai: r#"
fn on_event(e) {
  // Reads until the clock moves: a candidate reading its own clock,
  // later, could never publish the same `at`.
  let at = time::now_ms();
  while time::now_ms() == at {}
  bus::publish("out", #{ n: e.payload.n, at: at });
}
"#,
    native: None,
};

/// A shadow candidate's `time.now_ms()` reads what the running version's
/// read for the same event, so a plugin publishing the time is promoted
/// rather than found to differ.
fn a_shadow_candidate_reads_the_running_versions_clock(rt: Runtime) {
    use std::time::Duration;

    use futures::StreamExt;
    use plughost::Host;

    let limit = Duration::from_secs(20);
    let fx = Fixture::new();
    let manifest = |version: &str, rollout: &str| {
        format!("name: clock\nversion: {version}\nsubscriptions: [in]\n{rollout}")
    };
    fx.file(&format!("clock/{}", rt.entry()), CLOCK.get(rt));
    fx.file("clock/plugin.yaml", &manifest("1.0.0", ""));
    crate::support::tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut events = host.subscribe_all(&["plughost.plugin.*"]).unwrap();
        host.start().await;
        let rollout = "rollout:\n  strategy: shadow\n  promote_after: 5\n";
        fx.file("clock/plugin.yaml", &manifest("2.0.0", rollout));
        host.reload_plugin("clock").await.expect("running");
        for n in 0..5 {
            host.publish("in", json!({ "n": n })).await.unwrap();
            tokio::time::timeout(limit, out.next())
                .await
                .expect("an output");
        }
        let verdict = loop {
            let e = tokio::time::timeout(limit, events.next())
                .await
                .expect("a verdict")
                .expect("stream open");
            if e.topic == "plughost.plugin.promoted" || e.topic == "plughost.plugin.shadow_diff" {
                break e;
            }
        };
        assert_eq!(
            verdict.topic,
            "plughost.plugin.promoted",
            "{:?}",
            verdict.payload.value()
        );
        host.shutdown(Duration::from_secs(10)).await;
    });
}
