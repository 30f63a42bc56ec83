//! SPEC §15, the dashboard at `GET /`, in a real browser: Debian's headless
//! Chromium driven over the DevTools protocol (chromiumoxide) against the real
//! `plughost run --admin`. The page comes from the binary and asks nothing of
//! any other origin; it shows every plugin and, without a reload, a rate that
//! rises once events flow; its Promote and Rollback buttons end a rollout;
//! its Replay button delivers a dead letter again once the plugin is fixed;
//! with a token set, `GET /` is a 401 sign-in page that takes the token once
//! and refuses a wrong one; it reconnects by itself when the host comes
//! back. Plain HTTP checks the answers' headers.
//!
//! One browser serves the whole test binary (started on first use, killed
//! with its process group at exit); each test opens its own page. Every wait
//! polls the DOM with a deadline. Without Chromium the tests fail, saying how
//! to install it. `PLUGHOST_DASHBOARD_SCREENSHOT=PATH` makes
//! [`the_dashboard_shows_a_busy_host_at_a_glance`] save a screenshot there
//! (`docs/dashboard.png` is made so).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use chromiumoxide::Page;
use chromiumoxide::browser::Browser;
use chromiumoxide::page::ScreenshotParams;
use futures::StreamExt;
use serde_json::{Value, json};

use crate::admin::{Answer, request, wait_ready};
use crate::live::{LIMIT, Live};
use crate::support::{Fixture, Runtime, free_port};

/// How long a page may take to show what a step waits for.
const PAGE_LIMIT: Duration = Duration::from_secs(20);

/// The token of the token tests.
const TOKEN: &str = "dash-s3cret";

// ---- the browser ---------------------------------------------------------

/// The test binary's browser and the runtime its connection lives on.
struct Chrome {
    rt: tokio::runtime::Runtime,
    browser: Browser,
    /// The browser's process: it runs until the binary exits ([`kill_chrome`]).
    _process: std::process::Child,
}

/// The browser's process group, killed when the test binary exits.
static CHROME_GROUP: AtomicI32 = AtomicI32::new(0);
/// Its profile folder, removed at exit.
static CHROME_PROFILE: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn kill_chrome() {
    let group = CHROME_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill(2) on a process group this binary started.
        unsafe { libc::kill(-group, libc::SIGKILL) };
    }
    if let Some(dir) = CHROME_PROFILE.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The shared browser, started on first use.
fn chrome() -> &'static Chrome {
    static CHROME: OnceLock<Chrome> = OnceLock::new();
    CHROME.get_or_init(start_chrome)
}

/// Starts Chromium headless (its own process group, a fresh profile, no
/// background traffic) and connects to its DevTools endpoint.
fn start_chrome() -> Chrome {
    let exe = std::env::var("PLUGHOST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&exe).is_file(),
        "the dashboard tests need Chromium at {exe} (set PLUGHOST_CHROMIUM to use another); \
         install it with `apt-get install chromium` (scripts/test does)"
    );
    let profile = tempfile::Builder::new()
        .prefix("plughost-chromium-")
        .tempdir()
        .expect("a temp dir")
        .keep();
    let _ = CHROME_PROFILE.set(profile.clone());
    let mut child = Command::new(&exe)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            // Every page keeps its timers and its feed at full speed, seen or not.
            "--disable-background-timer-throttling",
            "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            "--window-size=1440,900",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {exe}: {e}"));
    let group = i32::try_from(child.id()).expect("a pid");
    if CHROME_GROUP.swap(group, Ordering::SeqCst) == 0 {
        // SAFETY: registers a plain `extern "C" fn` once.
        unsafe { libc::atexit(kill_chrome) };
    }
    // Chromium names its DevTools address on stderr; the rest is drained.
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                let _ = tx.send(url.trim().to_owned());
            }
        }
    });
    let url = rx
        .recv_timeout(LIMIT)
        .unwrap_or_else(|_| panic!("{exe} named no DevTools address within {LIMIT:?}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let browser = rt.block_on(async {
        let (browser, mut handler) = tokio::time::timeout(LIMIT, Browser::connect(url))
            .await
            .expect("DevTools connects in time")
            .expect("DevTools connects");
        tokio::spawn(async move { while handler.next().await.is_some() {} });
        browser
    });
    Chrome {
        rt,
        browser,
        _process: child,
    }
}

/// A page of the shared browser, closed when dropped: a failed test's page
/// must not go on polling a port [`free_port`] may hand to another test.
struct Tab(Option<Page>);

impl std::ops::Deref for Tab {
    type Target = Page;

    fn deref(&self) -> &Page {
        self.0.as_ref().expect("an open page")
    }
}

impl Drop for Tab {
    fn drop(&mut self) {
        if let Some(page) = self.0.take() {
            let _ = chrome()
                .rt
                .block_on(async { tokio::time::timeout(LIMIT, page.close()).await });
        }
    }
}

/// A page of the shared browser, at `url`.
fn open(url: &str) -> Tab {
    let c = chrome();
    Tab(Some(c.rt.block_on(async {
        tokio::time::timeout(PAGE_LIMIT, c.browser.new_page(url))
            .await
            .unwrap_or_else(|_| panic!("{url} did not load within {PAGE_LIMIT:?}"))
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    })))
}

/// The value of the JavaScript expression `js` on `page`, or why there is
/// none (e.g. the page is between two documents).
fn try_eval(page: &Page, js: &str) -> Result<Value, String> {
    chrome().rt.block_on(async {
        match tokio::time::timeout(LIMIT, page.evaluate(js)).await {
            Err(_) => Err(format!("`{js}` did not answer within {LIMIT:?}")),
            Ok(Err(e)) => Err(format!("`{js}`: {e}")),
            Ok(Ok(result)) => Ok(result.value().cloned().unwrap_or(Value::Null)),
        }
    })
}

/// The value of the JavaScript expression `js` on `page`.
fn eval(page: &Page, js: &str) -> Value {
    try_eval(page, js).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `js` until it is neither `null`, `false` nor `undefined`, and
/// returns it; fails, with the page's text, after [`PAGE_LIMIT`].
fn wait_until(page: &Page, what: &str, js: &str) -> Value {
    let deadline = Instant::now() + PAGE_LIMIT;
    loop {
        // An error (a document being replaced) is only "not yet".
        let v = try_eval(page, js);
        if let Ok(v) = &v
            && !matches!(v, Value::Null | Value::Bool(false))
        {
            return v.clone();
        }
        if Instant::now() >= deadline {
            let text = try_eval(page, "document.body ? document.body.innerText : ''");
            panic!("{what}: not within {PAGE_LIMIT:?} (last: {v:?}); the page shows:\n{text:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Clicks the element `selector` with the mouse, as a person would.
fn click(page: &Page, selector: &str) {
    chrome().rt.block_on(async {
        let element = page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("no `{selector}` to click: {e}"));
        element
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{selector}`: {e}"));
    });
}

/// Types `text` into the element `selector`.
fn type_into(page: &Page, selector: &str, text: &str) {
    chrome().rt.block_on(async {
        let element = page
            .find_element(selector)
            .await
            .unwrap_or_else(|e| panic!("no `{selector}` to type into: {e}"));
        element.click().await.expect("focus");
        element.type_str(text).await.expect("typing");
    });
}

/// The plugin names the page's table shows, in order.
const ROW_NAMES: &str = "JSON.stringify([...document.querySelectorAll('#plugins tbody tr')].map(r => r.dataset.plugin))";

/// The text of `field` in plugin `name`'s row (`null` while there is no row).
fn cell(name: &str, field: &str) -> String {
    format!(
        "(() => {{ const r = [...document.querySelectorAll('#plugins tbody tr')].find(r => r.dataset.plugin === {name:?}); \
         return r ? r.querySelector('td[data-field={field}]').textContent : null; }})()"
    )
}

// ---- the host ------------------------------------------------------------

/// A running host with its admin endpoint.
struct Host {
    fx: Fixture,
    live: Live,
    port: u16,
    /// Extra request headers (the bearer token, when set).
    auth: Vec<String>,
}

impl Host {
    /// Runs `plughost run` on `fx` with the admin endpoint, every event
    /// tapped, and `env`; returns once the endpoint answers.
    fn start(fx: Fixture, env: &[(&str, &str)]) -> Host {
        Host::start_on(fx, env, free_port())
    }

    /// [`Host::start`] on `port`.
    fn start_on(fx: Fixture, env: &[(&str, &str)], port: u16) -> Host {
        let addr = format!("127.0.0.1:{port}");
        let dir = fx.path().to_str().unwrap().to_owned();
        let live = Live::spawn_with_env(
            &["run", "--plugins", &dir, "--tap", "out.>", "--admin", &addr],
            env,
        );
        let auth: Vec<String> = env
            .iter()
            .find(|(k, _)| *k == "PLUGHOST_ADMIN_TOKEN")
            .map(|(_, t)| vec![format!("Authorization: Bearer {t}")])
            .unwrap_or_default();
        let headers: Vec<&str> = auth.iter().map(String::as_str).collect();
        let ready = wait_ready(port, &headers);
        assert_eq!(ready.status, 200, "{ready:?}");
        Host {
            fx,
            live,
            port,
            auth,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let headers: Vec<&str> = self.auth.iter().map(String::as_str).collect();
        request(self.port, method, path, &headers, body)
    }

    /// Publishes `payload` on `topic` through `POST /events/{topic}`.
    fn publish(&self, topic: &str, payload: &Value) -> Answer {
        let a = self.call(
            "POST",
            &format!("/events/{topic}"),
            payload.to_string().as_bytes(),
        );
        assert!(a.status < 300, "publish {topic}: {a:?}");
        a
    }

    /// Waits, bounded, until `GET path` satisfies `pred`; returns it.
    fn wait_get(&self, what: &str, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PAGE_LIMIT;
        loop {
            let a = self.call("GET", path, b"");
            if a.status == 200 && pred(&a.body) {
                return a.body;
            }
            assert!(Instant::now() < deadline, "{what}: last GET {path}: {a:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(self) {
        self.live.signal("TERM");
        let run = self.live.finish();
        assert_eq!(run.code, 0, "{run}");
        drop(self.fx);
    }
}

/// An HTTP answer with its head kept: status, lower-cased headers, body.
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `headers`, the answer's head kept.
fn raw_get(port: u16, path: &str, headers: &[&str]) -> Raw {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut head =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("an answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// Every `http://` or `https://` URL in `text`.
fn urls(text: &str) -> Vec<String> {
    let lower = text.to_ascii_lowercase();
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut from = 0;
        while let Some(at) = lower[from..].find(scheme) {
            let start = from + at;
            let end = lower[start..]
                .find(|c: char| c.is_whitespace() || "\"'<>)".contains(c))
                .map_or(lower.len(), |e| start + e);
            found.push(text[start..end].to_owned());
            from = end;
        }
    }
    found
}

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";
const ECHO_RHAI: &str = "fn on_event(e) { bus::publish(\"out.echoed\", e.payload); }\n";

/// `echo` (Lua) and `shout` (Rhai) running, `idle` disabled.
fn three_plugins() -> Fixture {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    fx.plugin(Runtime::Rhai, "shout", "subscriptions: [in.*]\n", ECHO_RHAI);
    fx.plugin(
        Runtime::Lua,
        "idle",
        "subscriptions: [in.*]\nenabled: false\n",
        ECHO,
    );
    fx
}

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
fn wait_card(page: &Page, from: &str, to: &str) {
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
const FLAKY_BROKEN: &str =
    "function on_event(e) error('flaky is broken <img src=x id=injected>') end\n";
/// `flaky` fixed: says which event it handled.
const FLAKY_FIXED: &str = "function on_event(e) bus.publish('out.fixed', { id = e.id }) end\n";

/// The first dead letter row's id, once there is one.
const FIRST_DEAD: &str = "(() => { const r = document.querySelector('#dead-letters tbody tr'); return r && r.dataset.deadLetter; })()";

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
