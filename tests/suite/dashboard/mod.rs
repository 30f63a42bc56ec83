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

mod page;
mod strain;

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
