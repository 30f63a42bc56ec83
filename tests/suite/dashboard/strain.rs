//! The dashboard's live feed under strain: a stalled host, updates that
//! must keep a selection and the focus, a feed split, burst or broken at
//! will, and a confirmation that has gone stale.

use super::page::{FIRST_DEAD, FLAKY_BROKEN, wait_card};
use super::*;

// ---- the live feed, under strain ------------------------------------------

#[test]
fn a_stalled_host_turns_the_badge_from_live_and_back_when_it_resumes() {
    let host = Host::start(three_plugins(), &[]);
    let page = open(&host.url());
    wait_until(
        &page,
        "the feed live",
        "document.getElementById('link').textContent === 'live'",
    );
    eval(&page, "window.__sameDocument = 'yes'");
    // Stopped, the host keeps the connection open and says nothing.
    host.live.signal("STOP");
    let lost = try_eval_until(
        &page,
        "document.getElementById('link').textContent === 'reconnecting'",
    );
    host.live.signal("CONT");
    assert!(lost, "the badge still says live with the host stopped");
    wait_until(
        &page,
        "the feed live again",
        "document.getElementById('link').textContent === 'live' && document.getElementById('notice').hidden",
    );
    assert_eq!(eval(&page, "window.__sameDocument"), json!("yes"));
    drop(page);
    host.stop();
}

/// Whether `js` turns true within [`PAGE_LIMIT`] (no panic: the caller
/// has a process to resume first).
fn try_eval_until(page: &Page, js: &str) -> bool {
    let deadline = Instant::now() + PAGE_LIMIT;
    while Instant::now() < deadline {
        if try_eval(page, js) == Ok(json!(true)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Counts the page's snapshots: `window.__ticks` grows by one each time the
/// uptime is rewritten.
const COUNT_TICKS: &str = "(() => { window.__ticks = 0; \
    new MutationObserver((records) => { window.__ticks += records.length; }) \
    .observe(document.getElementById('uptime'), { childList: true, subtree: true, characterData: true }); \
    return true; })()";

#[test]
fn a_selection_and_the_focus_survive_the_updates() {
    let fx = three_plugins();
    fx.plugin(
        Runtime::Lua,
        "flaky",
        "subscriptions: [in.job]\n",
        FLAKY_BROKEN,
    );
    let host = Host::start(fx, &[]);
    let page = open(&host.url());
    wait_until(&page, "flaky's row", &cell("flaky", "state"));
    host.publish("in.job", &json!({"n": 1}));
    wait_until(&page, "the dead letter", FIRST_DEAD);
    // Select echo's name and focus the Replay button, as a person would.
    eval(
        &page,
        "(() => { const td = document.querySelector('#plugins tr[data-plugin=echo] td[data-field=name]'); \
         const range = document.createRange(); range.selectNodeContents(td); \
         const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range); \
         document.querySelector('#dead-letters button[data-action=replay]').focus(); return true; })()",
    );
    assert_eq!(eval(&page, "getSelection().toString()"), json!("echo"));
    eval(&page, COUNT_TICKS);
    wait_until(&page, "two snapshots", "window.__ticks >= 2");
    assert_eq!(
        eval(&page, "getSelection().toString()"),
        json!("echo"),
        "the selection collapsed"
    );
    assert_eq!(
        eval(
            &page,
            "document.activeElement.dataset.action || document.activeElement.tagName"
        ),
        json!("replay"),
        "the focus left the Replay button"
    );
    drop(page);
    host.stop();
}

/// Replaces the page's `fetch`: `/overview/stream` becomes a feed the test
/// writes (`window.__push(text)`, one read per call), with a comment every
/// second unless `window.__feed.quiet`; a POST is recorded in
/// `window.__feed.posts` and answered 200 when `window.__feed.answer()` is
/// called. Then stops `host`, so the page's next connection is the fake one.
fn fake_feed(page: &Page, host: Host) {
    eval(
        page,
        "(() => { const f = window.__feed = { opened: 0, cancelled: 0, posts: [], waiting: [], quiet: false, controller: null }; \
         f.answer = () => { for (const w of f.waiting.splice(0)) w(new Response('{}', { status: 200 })); }; \
         window.__push = (text) => f.controller.enqueue(new TextEncoder().encode(text)); \
         setInterval(() => { if (!f.quiet && f.controller) { try { window.__push(': keep-alive\\n\\n'); } catch (_) {} } }, 1000); \
         window.fetch = (url, init) => { \
           if (String(url).endsWith('/overview/stream')) { f.opened++; \
             return Promise.resolve(new Response(new ReadableStream({ start(c) { f.controller = c; }, cancel() { f.cancelled++; } }), \
               { status: 200, headers: { 'content-type': 'text/event-stream' } })); } \
           f.posts.push(String(url)); return new Promise((resolve) => f.waiting.push(resolve)); }; \
         return true; })()",
    );
    host.stop();
    wait_until(
        page,
        "the fake feed open",
        "window.__feed.opened === 1 && !!window.__feed.controller",
    );
}

/// A `/overview` snapshot of `plugins`, `uptime_ms` into the run.
fn snapshot(uptime_ms: u64, plugins: Value) -> String {
    json!({"status": "ok", "uptime_ms": uptime_ms, "version": "0.0.0", "plugins": plugins,
        "dead_letters": {"kept": 0, "total": 0, "recent": []}, "cluster": null})
    .to_string()
}

/// Plugin `name` in a snapshot: running, `enabled`, with `rollout`.
fn plugin(name: &str, enabled: bool, rollout: Value) -> Value {
    json!({"name": name, "version": "1.0.0", "runtime": "lua", "state": "running",
        "enabled": enabled, "queue_depth": 0, "events_per_s": 0.0, "errors": 0,
        "errors_per_s": 0.0, "handled": 0, "p50_ms": null, "p99_ms": null, "restarts": 0,
        "last_error": null, "last_reload": null, "rollout": rollout})
}

/// Writes `text` to the page's fake feed, as one read.
fn push(page: &Page, text: &str) {
    eval(page, &format!("window.__push({})", json!(text)));
}

/// The text of the element `id`.
fn text_of(id: &str) -> String {
    format!("document.getElementById('{id}').textContent")
}

#[test]
fn the_feed_reader_copes_with_split_lines_bursts_bad_snapshots_and_silence() {
    let host = Host::start(three_plugins(), &[]);
    let page = open(&host.url());
    wait_until(
        &page,
        "the feed live",
        &format!("{} === 'live'", text_of("link")),
    );
    fake_feed(&page, host);

    // A CRLF split across two reads is one line end, not a blank line.
    push(&page, "event: overview\r");
    let first = snapshot(61_000, json!([plugin("a", false, Value::Null)]));
    push(&page, &format!("\ndata: {first}\r\n\r\n"));
    wait_until(
        &page,
        "the split snapshot",
        &format!("{} === '1m 1s'", text_of("uptime")),
    );
    assert_eq!(eval(&page, &text_of("link")), json!("live"));
    // Enabled false while running: the badge says so, and stops once enabled.
    assert_eq!(
        eval(
            &page,
            "document.querySelector('#plugins tr[data-plugin=a] .badge').title"
        ),
        json!("disabled")
    );

    // Two snapshots in one read: only the newest is drawn.
    eval(&page, COUNT_TICKS);
    let (second, third) = (
        snapshot(62_000, json!([plugin("a", false, Value::Null)])),
        snapshot(63_000, json!([plugin("a", true, Value::Null)])),
    );
    push(
        &page,
        &format!("event: overview\ndata: {second}\n\nevent: overview\ndata: {third}\n\n"),
    );
    wait_until(
        &page,
        "the newest snapshot",
        &format!("{} === '1m 3s'", text_of("uptime")),
    );
    assert_eq!(
        eval(&page, "window.__ticks"),
        json!(1),
        "both snapshots drawn"
    );
    assert_eq!(
        eval(
            &page,
            "document.querySelector('#plugins tr[data-plugin=a] .badge').title"
        ),
        json!(""),
        "the disabled tooltip stayed after enable"
    );

    // A snapshot the page cannot read is told, and the feed goes on.
    push(&page, "event: overview\ndata: {not json\n\n");
    let told = wait_until(
        &page,
        "the bad snapshot told",
        "(() => { const n = document.getElementById('notice'); return !n.hidden && n.textContent; })()",
    );
    assert!(told.as_str().unwrap().contains("latest snapshot"), "{told}");
    assert_eq!(eval(&page, &text_of("link")), json!("live"));
    assert_eq!(
        eval(&page, "window.__feed.opened"),
        json!(1),
        "it reconnected"
    );
    push(
        &page,
        &format!("event: overview\ndata: {}\n\n", snapshot(64_000, json!([]))),
    );
    wait_until(
        &page,
        "the notice cleared",
        "document.getElementById('notice').hidden",
    );

    // Silence: the connection is closed, the badge says so, a new one opens.
    eval(&page, "window.__feed.quiet = true");
    wait_until(
        &page,
        "the silent feed given up",
        &format!(
            "{} === 'reconnecting' && window.__feed.cancelled === 1",
            text_of("link")
        ),
    );
    wait_until(&page, "a new connection", "window.__feed.opened === 2");
    push(
        &page,
        &format!("event: overview\ndata: {}\n\n", snapshot(70_000, json!([]))),
    );
    wait_until(
        &page,
        "live again",
        &format!("{} === 'live'", text_of("link")),
    );
    drop(page);
}

#[test]
fn a_confirmation_refuses_once_the_candidate_changed_and_a_card_acts_once_at_a_time() {
    let host = Host::start(three_plugins(), &[]);
    let page = open(&host.url());
    wait_until(
        &page,
        "the feed live",
        &format!("{} === 'live'", text_of("link")),
    );
    fake_feed(&page, host);
    let rollout = |to: &str| {
        json!({"strategy": "shadow", "from": "1.0.0", "to": to, "percent": null, "compared": 0,
            "differed": 0, "skipped": 0, "candidate_errors": 0, "handled_by_candidate": 0})
    };
    let feed = |uptime: u64, to: &str| {
        format!(
            "event: overview\ndata: {}\n\n",
            snapshot(uptime, json!([plugin("parity", true, rollout(to))]))
        )
    };
    push(&page, &feed(1_000, "1.1.0"));
    wait_card(&page, "1.0.0", "1.1.0");

    // Asked about 1.1.0; a save makes the candidate 1.2.0 before Yes.
    click(&page, "#rollouts button[data-action=promote]");
    let asked = wait_until(
        &page,
        "the question",
        "document.querySelector('#rollouts .confirm')?.textContent",
    );
    assert!(asked.as_str().unwrap().contains("1.1.0"), "{asked}");
    push(&page, &feed(2_000, "1.2.0"));
    wait_card(&page, "1.0.0", "1.2.0");
    click(&page, "#rollouts button[data-confirm=yes]");
    let said = wait_until(
        &page,
        "the refusal",
        "document.querySelector('#log li')?.textContent",
    );
    assert!(said.as_str().unwrap().contains("ask again"), "{said}");
    assert_eq!(
        eval(&page, "window.__feed.posts.length"),
        json!(0),
        "it promoted"
    );
    assert_eq!(
        eval(&page, "!!document.querySelector('#rollouts .confirm')"),
        json!(false)
    );

    // Asked again: the request goes; until it is answered no other button acts.
    click(&page, "#rollouts button[data-action=promote]");
    click(&page, "#rollouts button[data-confirm=yes]");
    wait_until(
        &page,
        "the promotion sent",
        "window.__feed.posts.length === 1",
    );
    assert_eq!(
        eval(&page, "JSON.stringify(window.__feed.posts)"),
        json!("[\"/plugins/parity/promote\"]")
    );
    assert_eq!(
        eval(
            &page,
            "[...document.querySelectorAll('#rollouts button')].every(b => b.disabled)"
        ),
        json!(true),
        "a button of the card is usable during the request"
    );
    eval(&page, "window.__feed.answer()");
    wait_until(
        &page,
        "the buttons back",
        "!document.querySelector('#rollouts button[data-action=rollback]').disabled",
    );
    drop(page);
}
