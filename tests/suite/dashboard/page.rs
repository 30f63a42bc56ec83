//! The dashboard as a user meets it: the answers to `GET /` over plain
//! HTTP, then in the browser: every plugin, a live rate, Promote and
//! Rollback, Replay, the token flow, reconnection, and the screenshot.

use super::*;

// ---- plain HTTP ----------------------------------------------------------

#[test]
fn get_root_is_the_page_with_strict_headers_and_with_a_token_a_401_sign_in_page() {
    // No token: the dashboard itself.
    let open_host = Host::start(three_plugins(), &[]);
    let page = raw_get(open_host.port, "/", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-"),
        "{csp}"
    );
    assert!(
        csp.contains("connect-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(page.body.contains("id=\"plugins\""), "{}", page.body);
    assert_eq!(urls(&page.body), Vec::<String>::new(), "no remote URL");
    open_host.stop();

    // A token: the sign-in page, 401, unless the bearer token is right.
    let host = Host::start(three_plugins(), &[("PLUGHOST_ADMIN_TOKEN", TOKEN)]);
    for headers in [
        &[][..],
        &["Authorization: Bearer wrong"][..],
        &[&*format!("Authorization: Basic {TOKEN}")][..],
    ] {
        let login = raw_get(host.port, "/", headers);
        assert_eq!(login.status, 401, "{headers:?}: {}", login.body);
        assert_eq!(
            login.header("content-type"),
            Some("text/html; charset=utf-8")
        );
        assert_eq!(login.header("www-authenticate"), Some("Bearer"));
        assert_eq!(login.header("x-frame-options"), Some("DENY"));
        assert!(login.header("content-security-policy").is_some());
        assert!(login.body.contains("<form id=\"login\""), "{}", login.body);
        assert!(
            !login.body.contains("id=\"plugins\""),
            "no dashboard without the token"
        );
        assert_eq!(urls(&login.body), Vec::<String>::new());
    }
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let page = raw_get(host.port, "/", &[&bearer]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("id=\"plugins\""));
    // The rest of the API still refuses as JSON.
    let health = request(host.port, "GET", "/health", &[], b"");
    assert_eq!(health.status, 401, "{health:?}");
    host.stop();
}

// ---- in the browser ------------------------------------------------------

#[test]
fn the_page_loads_from_the_binary_alone_and_shows_every_plugin() {
    let host = Host::start(three_plugins(), &[]);
    let page = open(&host.url());
    let names = wait_until(
        &page,
        "every plugin in the table",
        &format!(
            "(() => {{ const n = {ROW_NAMES}; return n === '[\"echo\",\"idle\",\"shout\"]' && n; }})()"
        ),
    );
    assert_eq!(names, json!("[\"echo\",\"idle\",\"shout\"]"));
    assert_eq!(eval(&page, &cell("idle", "state")), json!("disabled"));
    assert_eq!(eval(&page, &cell("echo", "state")), json!("running"));
    assert_eq!(eval(&page, &cell("echo", "runtime")), json!("lua"));
    assert_eq!(eval(&page, &cell("shout", "runtime")), json!("rhai"));
    assert_eq!(
        eval(&page, "document.getElementById('status').textContent"),
        json!("ok")
    );

    // Nothing the page asked for left this host's origin.
    let origin = format!("http://127.0.0.1:{}/", host.port);
    let asked = eval(
        &page,
        "JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))",
    );
    let asked: Vec<String> = serde_json::from_str(asked.as_str().unwrap()).unwrap();
    // (The feed still open, `/overview/stream` is not among them yet: the badge says it is read.)
    assert_eq!(
        eval(&page, "document.getElementById('link').textContent"),
        json!("live")
    );
    for url in &asked {
        assert!(url.starts_with(&origin), "{url} is not on {origin}");
    }
    let html = eval(&page, "document.documentElement.outerHTML");
    assert_eq!(urls(html.as_str().unwrap()), Vec::<String>::new());
    drop(page);
    host.stop();
}

#[test]
fn the_rate_rises_when_events_flow_without_a_reload() {
    let host = Host::start(three_plugins(), &[]);
    let page = open(&host.url());
    wait_until(&page, "echo's row", &cell("echo", "events_per_s"));
    eval(&page, "window.__sameDocument = 'yes'");
    let rate = format!("parseFloat({}) > 0", cell("echo", "events_per_s"));
    let deadline = Instant::now() + PAGE_LIMIT;
    let mut n = 0;
    while eval(&page, &rate) != json!(true) {
        assert!(
            Instant::now() < deadline,
            "echo's events/s never rose above 0: {}",
            eval(&page, &cell("echo", "events_per_s"))
        );
        for _ in 0..5 {
            n += 1;
            host.publish("in.tick", &json!({"n": n}));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let handled = wait_until(
        &page,
        "echo's handled count",
        &format!(
            "(() => {{ const h = parseInt({}); return h > 0 && h; }})()",
            cell("echo", "handled")
        ),
    );
    assert!(handled.as_i64().unwrap() <= n, "{handled} > {n}");
    assert_eq!(
        eval(&page, "window.__sameDocument"),
        json!("yes"),
        "the page reloaded"
    );
    drop(page);
    host.stop();
}

#[test]
fn the_page_reconnects_by_itself_when_the_host_comes_back() {
    let first = Host::start(three_plugins(), &[]);
    let port = first.port;
    let page = open(&first.url());
    wait_until(&page, "the first host's plugins", &cell("echo", "state"));
    eval(&page, "window.__sameDocument = 'yes'");
    first.stop();
    wait_until(
        &page,
        "the feed lost",
        "document.getElementById('link').textContent === 'reconnecting'",
    );

    // Another host on the same address, with another plugin.
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "second", "subscriptions: [in.*]\n", ECHO);
    let second = Host::start_on(fx, &[], port);
    // The port is free again: check the host answering on it is this one.
    let ours = second.call("GET", "/plugins/second", b"");
    assert_eq!(ours.status, 200, "another host on {port}: {ours:?}");
    wait_until(
        &page,
        "the second host's plugins",
        &format!("{ROW_NAMES} === '[\"second\"]'"),
    );
    assert_eq!(
        eval(&page, "document.getElementById('link').textContent"),
        json!("live")
    );
    assert_eq!(
        eval(&page, "document.getElementById('notice').hidden"),
        json!(true)
    );
    assert_eq!(
        eval(&page, "window.__sameDocument"),
        json!("yes"),
        "the page reloaded"
    );
    drop(page);
    second.stop();
}

/// `parity`'s manifest at `version`, rolled out in the shadow.
fn parity_manifest(version: &str) -> String {
    format!(
        "name: parity\nversion: {version}\nsubscriptions: [in.*]\nrollout: {{strategy: shadow}}\n"
    )
}

/// `parity`'s source, publishing `word`.
fn parity_src(word: &str) -> String {
    format!("function on_event(e) bus.publish('out.parity', {{ word = '{word}' }}) end\n")
}

/// Writes `parity` at `version` saying `word` (a save: the watcher brings it in).
fn save_parity(fx: &Fixture, version: &str, word: &str) {
    fx.file("parity/main.lua", &parity_src(word));
    fx.file("parity/plugin.yaml", &parity_manifest(version));
}

/// Waits for `parity`'s rollout card from 1.0.0 (or `from`) to `to`.
pub(super) fn wait_card(page: &Page, from: &str, to: &str) {
    wait_until(
        page,
        &format!("the rollout card {from} → {to}"),
        &format!(
            "(() => {{ const c = [...document.querySelectorAll('#rollouts .card')].find(c => c.dataset.rollout === 'parity'); \
             return !!c && c.querySelector('.versions').textContent === 'shadow  {from} → {to}'; }})()"
        ),
    );
}

const NO_CARD: &str = "document.querySelectorAll('#rollouts .card').length === 0";

#[test]
fn promote_and_rollback_buttons_end_a_rollout() {
    let fx = Fixture::new();
    save_parity(&fx, "1.0.0", "one");
    let host = Host::start(fx, &[]);
    let page = open(&host.url());
    wait_until(&page, "parity's row", &cell("parity", "version"));
    assert_eq!(eval(&page, NO_CARD), json!(true));

    // A shadow rollout to 1.1.0: its card, with counts that move.
    save_parity(&host.fx, "1.1.0", "two");
    wait_card(&page, "1.0.0", "1.1.0");
    host.publish("in.x", &json!({}));
    wait_until(
        &page,
        "the compared count",
        "(() => { const b = document.querySelector('#rollouts b[data-count=compared]'); return b && b.textContent === '1'; })()",
    );

    // Promote asks first; No leaves the rollout running.
    click(&page, "#rollouts button[data-action=promote]");
    wait_until(
        &page,
        "the question",
        "!!document.querySelector('#rollouts .confirm')",
    );
    click(&page, "#rollouts button[data-confirm=no]");
    wait_until(
        &page,
        "the question gone",
        "!document.querySelector('#rollouts .confirm')",
    );
    let now = host.call("GET", "/plugins/parity", b"");
    assert_eq!(now.body["version"], "1.0.0", "{now:?}");
    assert!(now.body["rollout"].is_object(), "{now:?}");

    // Yes promotes: the host runs 1.1.0, and the page says so.
    click(&page, "#rollouts button[data-action=promote]");
    click(&page, "#rollouts button[data-confirm=yes]");
    let after = host.wait_get("the promotion", "/plugins/parity", |p| {
        p["version"] == "1.1.0" && p["rollout"].is_null()
    });
    assert_eq!(after["version"], "1.1.0");
    wait_until(&page, "the card gone", NO_CARD);
    wait_until(
        &page,
        "1.1.0 in the table",
        &format!("{} === '1.1.0'", cell("parity", "version")),
    );
    let said = wait_until(
        &page,
        "the answer",
        "document.querySelector('#log li')?.textContent",
    );
    assert!(
        said.as_str().unwrap().contains("promote parity: 200"),
        "{said}"
    );

    // Another rollout, rolled back: 1.1.0 stays.
    save_parity(&host.fx, "1.2.0", "three");
    wait_card(&page, "1.1.0", "1.2.0");
    click(&page, "#rollouts button[data-action=rollback]");
    click(&page, "#rollouts button[data-confirm=yes]");
    let after = host.wait_get("the rollback", "/plugins/parity", |p| {
        p["rollout"].is_null()
    });
    assert_eq!(after["version"], "1.1.0", "{after}");
    wait_until(&page, "the card gone", NO_CARD);
    let said = wait_until(
        &page,
        "the rollback's answer",
        "(() => { const t = document.querySelector('#log li')?.textContent; return !!t && t.includes('rollback parity') && t; })()",
    );
    assert!(
        said.as_str().unwrap().contains("rollback parity: 200"),
        "{said}"
    );
    assert_eq!(eval(&page, &cell("parity", "version")), json!("1.1.0"));
    drop(page);
    host.stop();
}

/// `flaky` raises on every event until it is fixed.
/// Its error carries markup, which the page must show as text.
pub(super) const FLAKY_BROKEN: &str =
    "function on_event(e) error('flaky is broken <img src=x id=injected>') end\n";
/// `flaky` fixed: says which event it handled.
const FLAKY_FIXED: &str = "function on_event(e) bus.publish('out.fixed', { id = e.id }) end\n";

/// The first dead letter row's id, once there is one.
pub(super) const FIRST_DEAD: &str = "(() => { const r = document.querySelector('#dead-letters tbody tr'); return r && r.dataset.deadLetter; })()";

#[test]
fn a_dead_letter_shows_and_its_replay_button_redelivers_it_once_fixed() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "flaky",
        "subscriptions: [in.*]\n",
        FLAKY_BROKEN,
    );
    let mut host = Host::start(fx, &[]);
    let page = open(&host.url());
    wait_until(&page, "flaky's row", &cell("flaky", "state"));
    host.publish("in.job", &json!({"n": 7}));
    let id = wait_until(&page, "the dead letter", FIRST_DEAD);
    let id = id.as_str().unwrap().to_owned();
    let row = eval(
        &page,
        "[...document.querySelector('#dead-letters tbody tr').cells].map(c => c.textContent).join('|')",
    );
    let row = row.as_str().unwrap();
    assert!(row.contains("|flaky|in.job|"), "{row}");
    assert!(
        row.contains("flaky is broken <img src=x id=injected>"),
        "{row}"
    );
    assert_eq!(
        eval(&page, "document.getElementById('injected')"),
        Value::Null
    );
    let kept = host.call("GET", "/dead_letters", b"");
    assert_eq!(kept.body[0]["id"], json!(id), "{kept:?}");
    let event_id = kept.body[0]["event"]["id"].clone();
    // The error counts in the plugin's row too.
    wait_until(
        &page,
        "flaky's error count",
        &format!("{} === '1'", cell("flaky", "errors")),
    );

    // Fixed on disk, then replayed from the page.
    host.fx.file("flaky/main.lua", FLAKY_FIXED);
    host.wait_get("the fix reloaded", "/plugins/flaky", |p| {
        p["reloads"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["result"] == "ok"))
    });
    click(&page, "#dead-letters button[data-action=replay]");
    click(&page, "#dead-letters button[data-confirm=yes]");
    let done = host
        .live
        .wait_for("the replayed event handled", |e| e["topic"] == "out.fixed");
    assert_eq!(done["payload"]["id"], event_id, "{done}");
    let said = wait_until(
        &page,
        "the answer",
        "document.querySelector('#log li')?.textContent",
    );
    assert!(said.as_str().unwrap().contains(": 200"), "{said}");
    wait_until(
        &page,
        "the dead letter gone",
        "document.querySelectorAll('#dead-letters tbody tr').length === 0",
    );
    drop(page);
    host.stop();
}

#[test]
fn with_a_token_the_page_asks_once_refuses_a_wrong_one_and_then_shows_the_host() {
    let host = Host::start(three_plugins(), &[("PLUGHOST_ADMIN_TOKEN", TOKEN)]);
    let page = open(&host.url());
    wait_until(
        &page,
        "the sign-in form",
        "!!document.getElementById('login')",
    );
    assert_eq!(
        eval(&page, "!!document.getElementById('plugins')"),
        json!(false)
    );

    // A wrong token: an error, and the form again.
    type_into(&page, "#token", "not-the-token");
    click(&page, "#sign-in");
    let error = wait_until(
        &page,
        "the refusal",
        "(() => { const e = document.getElementById('login-error'); return !e.hidden && e.textContent; })()",
    );
    assert!(error.as_str().unwrap().contains("refused"), "{error}");
    assert_eq!(eval(&page, "sessionStorage.length"), json!(0));

    // The right one: the dashboard, live, with the token kept in the tab.
    type_into(&page, "#token", TOKEN);
    click(&page, "#sign-in");
    wait_until(
        &page,
        "every plugin after signing in",
        &format!("{ROW_NAMES} === '[\"echo\",\"idle\",\"shout\"]'"),
    );
    assert_eq!(
        eval(&page, "sessionStorage.getItem('plughost.admin.token')"),
        json!(TOKEN)
    );
    // A reload asks nothing: the tab's token opens the dashboard again (in
    // a new document: the old one's mark is gone).
    eval(&page, "window.__old = 1");
    let _ = try_eval(&page, "location.reload()");
    wait_until(
        &page,
        "the dashboard after a reload",
        &format!("!window.__old && {ROW_NAMES} === '[\"echo\",\"idle\",\"shout\"]'"),
    );
    assert_eq!(
        eval(&page, "!!document.getElementById('login')"),
        json!(false)
    );
    drop(page);
    host.stop();
}

/// `billing` refuses every order.
const BILLING: &str = "function on_event(e) error('order ' .. e.payload.order .. ': the payment service refused it') end\n";

#[test]
fn the_dashboard_shows_a_busy_host_at_a_glance() {
    let fx = three_plugins();
    fx.plugin(
        Runtime::Lua,
        "billing",
        "subscriptions: [in.job]\n",
        BILLING,
    );
    save_parity(&fx, "1.0.0", "one");
    let host = Host::start(fx, &[]);
    let page = open(&host.url());
    wait_until(
        &page,
        "every plugin",
        &format!("{ROW_NAMES} === '[\"billing\",\"echo\",\"idle\",\"parity\",\"shout\"]'"),
    );
    save_parity(&host.fx, "1.1.0", "two");
    wait_card(&page, "1.0.0", "1.1.0");
    host.publish("in.job", &json!({"order": 42}));
    wait_until(&page, "the dead letter", FIRST_DEAD);
    let rates = format!(
        "parseFloat({}) > 0 && parseFloat({}) > 0",
        cell("echo", "events_per_s"),
        cell("parity", "events_per_s")
    );
    let deadline = Instant::now() + PAGE_LIMIT;
    let mut n = 0;
    while eval(&page, &rates) != json!(true) {
        assert!(Instant::now() < deadline, "the rates never rose");
        for _ in 0..4 {
            n += 1;
            host.publish("in.tick", &json!({"n": n}));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Ok(path) = std::env::var("PLUGHOST_DASHBOARD_SCREENSHOT") {
        // Let a few more updates settle the rates and counts.
        for _ in 0..15 {
            host.publish("in.tick", &json!({"n": n}));
            std::thread::sleep(Duration::from_millis(100));
        }
        let png = chrome().rt.block_on(async {
            page.screenshot(ScreenshotParams::builder().full_page(true).build())
                .await
                .expect("a screenshot")
        });
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    drop(page);
    host.stop();
}
