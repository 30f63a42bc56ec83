//! Hostile admin requests (SPEC §10, §15) against `run --admin
//! 127.0.0.1:PORT`: malformed and traversal plugin names, huge bodies, and
//! missing, wrong, blank and wrong-scheme tokens. After each attack the host
//! still serves, and the well-behaved plugin still handles what is posted.

use std::io::Write;
use std::net::TcpStream;

use crate::admin::{Answer, request, wait_ready};
use crate::live::Live;
use crate::support::{Fixture, Runtime, free_port, run_binary_with_env};

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// A host with the echo plugin and an admin endpoint, optionally with a token.
struct Admin {
    _fx: Fixture,
    live: Live,
    port: u16,
    auth: Vec<String>,
    posted: u64,
}

impl Admin {
    fn start(token: Option<&str>) -> Admin {
        let fx = Fixture::new();
        fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let plugins = fx.path().to_str().unwrap().to_owned();
        let args = [
            "run",
            "--plugins",
            &plugins,
            "--admin",
            &addr,
            "--tap",
            "out.>",
            "--no-watch",
        ];
        let live = match token {
            Some(t) => Live::spawn_with_env(&args, &[("PLUGHOST_ADMIN_TOKEN", t)]),
            None => Live::spawn_with_env(&args, &[]),
        };
        let auth: Vec<String> = token
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .map(|t| format!("Authorization: Bearer {t}"))
            .into_iter()
            .collect();
        let admin = Admin {
            _fx: fx,
            live,
            port,
            auth,
            posted: 0,
        };
        let health = wait_ready(port, &admin.headers());
        assert_eq!(health.status, 200, "{health:?}");
        admin
    }

    fn headers(&self) -> Vec<&str> {
        self.auth.iter().map(String::as_str).collect()
    }

    fn send(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        request(self.port, method, path, &self.headers(), body)
    }

    /// The host still answers, and the plugin still handles a posted event.
    fn still_serving(&mut self) {
        let health = self.send("GET", "/health", b"");
        assert_eq!(health.status, 200, "{health:?}");
        self.posted += 1;
        let n = self.posted;
        let posted = self.send(
            "POST",
            "/events/in.check",
            format!("{{\"n\": {n}}}").as_bytes(),
        );
        assert_eq!(posted.status, 200, "{posted:?}");
        self.live.wait_for("the echoed event", |e| {
            e["topic"] == "out.echoed" && e["payload"]["n"] == n
        });
    }

    fn stop(self) {
        self.live.signal("TERM");
        let run = self.live.finish();
        assert_eq!(run.code, 0, "{run}");
    }
}

#[test]
fn malformed_and_traversal_plugin_names_are_400_and_the_host_serves_on() {
    let mut admin = Admin::start(None);
    let long = "a".repeat(10_000);
    let names = [
        "..",
        "%2e%2e",
        "%2E%2E",
        ".",
        "..%2f..%2fetc%2fpasswd",
        "%2e%2e%2f%2e%2e%2fetc",
        "Bad%20Name",
        "h%C3%A9llo",
        "%F0%9F%92%A5",
        "%00",
        "a%0d%0aX-Injected:%20yes",
        "%ff%fe",
        "-lead",
        long.as_str(),
    ];
    for name in names {
        for (method, path) in [
            ("GET", format!("/plugins/{name}")),
            ("POST", format!("/plugins/{name}/reload")),
            ("POST", format!("/plugins/{name}/disable")),
            ("POST", format!("/plugins/{name}/enable")),
        ] {
            let answer = admin.send(method, &path, b"");
            assert_eq!(answer.status, 400, "{method} {path}: {answer:?}");
            // Every refusal is JSON, a name that is not UTF-8 included.
            {
                assert!(
                    answer.body["error"].is_string(),
                    "{method} {path}: {answer:?}"
                );
            }
        }
    }
    // A valid name nobody has is 404, not 400.
    assert_eq!(admin.send("GET", "/plugins/nobody", b"").status, 404);
    admin.still_serving();
    // The plugin was never touched: still running.
    let echo = admin.send("GET", "/plugins/echo", b"");
    assert_eq!(echo.body["state"], "running", "{echo:?}");
    admin.stop();
}

#[test]
fn traversal_in_the_path_itself_reaches_no_file() {
    let mut admin = Admin::start(None);
    for path in [
        "/plugins/../../etc/passwd",
        "/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/plugins/echo/../../../etc/passwd",
        "/dead_letters/..%2f..%2fetc/replay",
    ] {
        let answer = admin.send("GET", path, b"");
        assert!(
            matches!(answer.status, 400 | 404 | 405),
            "{path}: {answer:?}"
        );
        assert!(
            !answer.body.to_string().contains("root:"),
            "{path} served a file: {answer:?}"
        );
    }
    admin.still_serving();
    admin.stop();
}

#[test]
fn huge_bodies_are_413_and_the_host_serves_on() {
    let mut admin = Admin::start(None);
    let big = vec![b'1'; 8 * 1024 * 1024];
    let answer = admin.send("POST", "/events/in.big", &big);
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body["error"].is_string(), "{answer:?}");
    // A length that promises far more than is ever sent, the body never
    // coming: the connection waits, the host serves everyone else.
    let mut lying = TcpStream::connect(("127.0.0.1", admin.port)).unwrap();
    let head = format!(
        "POST /events/in.big HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 100000000000\r\n\
         Content-Type: application/json\r\n\r\n{{}}",
        admin.port
    );
    lying.write_all(head.as_bytes()).unwrap();
    admin.still_serving();
    drop(lying);
    // A huge body on a route that takes none is no trouble either.
    let answer = admin.send("POST", "/plugins/echo/reload", &big);
    assert!(matches!(answer.status, 200 | 400 | 413), "{answer:?}");
    admin.still_serving();
    admin.stop();
}

#[test]
fn deeply_nested_event_bodies_are_400() {
    let mut admin = Admin::start(None);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let answer = admin.send("POST", "/events/in.deep", deep.as_bytes());
    assert_eq!(answer.status, 400, "{answer:?}");
    admin.still_serving();
    admin.stop();
}

#[test]
fn tokens_missing_wrong_blank_or_with_another_scheme_are_401() {
    let mut admin = Admin::start(Some("s3cret-token"));
    for auth in [
        None,
        Some("Authorization: Bearer wrong"),
        Some("Authorization: Bearer s3cret-tokenX"),
        Some("Authorization: Bearer "),
        Some("Authorization: Bearer    "),
        Some("Authorization: Basic s3cret-token"),
        Some("Authorization: Token s3cret-token"),
        Some("Authorization: s3cret-token"),
        Some("Authorization: Bearers3cret-token"),
        Some("X-Admin-Token: s3cret-token"),
    ] {
        let headers: Vec<&str> = auth.into_iter().collect();
        for (method, path) in [("GET", "/plugins"), ("POST", "/plugins/echo/disable")] {
            let answer = request(admin.port, method, path, &headers, b"");
            assert_eq!(answer.status, 401, "{auth:?} {method} {path}: {answer:?}");
        }
    }
    // A token in the query string does not count either.
    let answer = request(admin.port, "GET", "/plugins?token=s3cret-token", &[], b"");
    assert_eq!(answer.status, 401, "{answer:?}");
    // None of it disabled the plugin.
    let echo = admin.send("GET", "/plugins/echo", b"");
    assert_eq!(echo.body["state"], "running", "{echo:?}");
    admin.still_serving();
    admin.stop();
}

/// A blank token is no token: on loopback the endpoint is open (it was
/// locked, no header could match a token of spaces).
#[test]
fn a_blank_token_is_no_token_on_loopback() {
    let mut admin = Admin::start(Some("   "));
    let open = request(admin.port, "GET", "/plugins", &[], b"");
    assert_eq!(open.status, 200, "{open:?}");
    admin.still_serving();
    admin.stop();
}

/// Off loopback, a blank token does not count as one: `run` exits 2.
#[test]
fn a_blank_token_off_loopback_exits_2() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let plugins = fx.path().to_str().unwrap().to_owned();
    for blank in ["   ", "\t", " \n "] {
        let run = run_binary_with_env(
            &[
                "run",
                "--plugins",
                &plugins,
                "--admin",
                "0.0.0.0:0",
                "--no-watch",
            ],
            None,
            &[("PLUGHOST_ADMIN_TOKEN", blank)],
        );
        assert_eq!(run.code, 2, "{blank:?}\n{run}");
        assert!(run.stderr.contains("non-loopback"), "{run}");
    }
}

/// A token given with spaces around it is the token without them.
#[test]
fn a_token_with_surrounding_spaces_is_trimmed() {
    let mut admin = Admin::start(Some("  s3cret-token \n"));
    let ok = request(
        admin.port,
        "GET",
        "/plugins",
        &["Authorization: Bearer s3cret-token"],
        b"",
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    admin.still_serving();
    admin.stop();
}

/// SPEC §10: "errors are JSON", a name that is not UTF-8 once decoded
/// included (axum's `Path` extractor answers plain text; the endpoint's own
/// extractor answers JSON).
#[test]
fn a_name_that_is_not_utf8_is_a_json_400() {
    let admin = Admin::start(None);
    let answer = admin.send("GET", "/plugins/%ff%fe", b"");
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body["error"].is_string(), "{answer:?}");
    admin.stop();
}

/// A `Content-Length` over the 1 MiB limit is answered 413 at once, without
/// waiting for a body that may never come (`DefaultBodyLimit` alone counts
/// bytes as they arrive).
#[test]
fn a_content_length_over_the_limit_is_413_at_once() {
    let admin = Admin::start(None);
    let lying = request(
        admin.port,
        "POST",
        "/events/in.big",
        &["Content-Length: 100000000000"],
        b"{}",
    );
    assert_eq!(lying.status, 413, "{lying:?}");
    admin.stop();
}
