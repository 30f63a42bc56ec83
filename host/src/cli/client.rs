//! `plughost publish|enable|disable|reload|promote|rollback|rollout|status`:
//! the admin endpoint's client.
//!
//! These commands talk to a running host over HTTP (SPEC §10). The address
//! comes from `--admin ADDR`, else `$PLUGHOST_ADMIN`, else the host
//! config's `admin.listen` (`--config FILE`); the bearer token, when the
//! host wants one, from the same environment variable the host reads
//! (`$PLUGHOST_ADMIN_TOKEN`, or the config's `admin.token_env`), never
//! from a flag, which would show in `ps`. Exit codes follow SPEC §8: 0 when
//! the change is in effect, 1 when the host refused it or could not be
//! reached, 2 for usage errors found before anything is sent.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::Value;

use crate::admin::DEFAULT_TOKEN_ENV;
use crate::config::AdminConfig;
use crate::manifest::is_valid_name;

/// The environment variable naming the admin address when `--admin` is not given.
pub const ADDRESS_ENV: &str = "PLUGHOST_ADMIN";

/// How long one request may take (a reload waits for `init`).
const TIMEOUT: Duration = Duration::from_secs(60);

/// What is percent-encoded in one URL path segment: everything but RFC
/// 3986's unreserved characters, so `/`, `?`, `#`, `%` and the rest reach
/// the host as part of the segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why a command failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientError {
    /// Nothing was sent: the command line is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The host refused the request or could not be reached (exit 1).
    #[error("{0}")]
    Failed(String),
}

/// A change to one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `POST /plugins/{name}/enable`.
    Enable,
    /// `POST /plugins/{name}/disable`.
    Disable,
    /// `POST /plugins/{name}/reload`.
    Reload,
    /// `POST /plugins/{name}/promote`: the rollout's candidate becomes the running version.
    Promote,
    /// `POST /plugins/{name}/rollback`: the rollout's candidate is discarded.
    Rollback,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::Enable => "enable",
            Change::Disable => "disable",
            Change::Reload => "reload",
            Change::Promote => "promote",
            Change::Rollback => "rollback",
        }
    }
}

/// A client of one host's admin endpoint.
#[derive(Debug)]
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client for the address given by `flag`, `$PLUGHOST_ADMIN` or
    /// `config` (in that order), with the token from the environment.
    pub fn resolve(
        flag: Option<&str>,
        config: Option<&AdminConfig>,
    ) -> Result<Client, ClientError> {
        let from_env = std::env::var(ADDRESS_ENV).ok().filter(|a| !a.is_empty());
        let addr = flag
            .map(str::to_owned)
            .or(from_env)
            .or_else(|| config.map(|c| c.listen.clone()))
            .ok_or_else(|| {
                ClientError::Usage(format!(
                    "no admin address: pass --admin ADDR (the address given to `plughost run \
                     --admin`), set ${ADDRESS_ENV}, or point --config at the host config"
                ))
            })?;
        let var = config
            .and_then(|c| c.token_env.as_deref())
            .unwrap_or(DEFAULT_TOKEN_ENV);
        let token = crate::admin::auth::token_from(std::env::var(var).ok());
        Client::new(&addr, token)
    }

    /// A client for `addr` (`127.0.0.1:9090` or `http://127.0.0.1:9090`).
    pub fn new(addr: &str, token: Option<String>) -> Result<Client, ClientError> {
        let base = base_url(addr)?;
        let http = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| ClientError::Failed(format!("cannot make an HTTP client: {e}")))?;
        Ok(Client { base, token, http })
    }

    /// Publishes `payload` (JSON text) on `topic`; returns the event id.
    pub fn publish(&self, topic: &str, payload: &str) -> Result<String, ClientError> {
        serde_json::from_str::<Value>(payload).map_err(|e| {
            ClientError::Usage(format!(
                "the payload is not JSON: {e} (e.g. '{{\"n\": 1}}')"
            ))
        })?;
        let answer = self.post(
            &format!("/events/{}", segment(topic)),
            payload.as_bytes().to_vec(),
        )?;
        answer["id"].as_str().map(str::to_owned).ok_or_else(|| {
            ClientError::Failed(format!("the host answered without an id: {answer}"))
        })
    }

    /// Enables, disables, reloads, promotes or rolls back plugin `name`;
    /// returns the host's answer.
    pub fn change(&self, change: Change, name: &str, persist: bool) -> Result<Value, ClientError> {
        check_name(name)?;
        let query = if persist { "?persist=true" } else { "" };
        self.post(
            &format!("/plugins/{name}/{}{query}", change.verb()),
            Vec::new(),
        )
    }

    /// Sets the share of events plugin `name`'s gradual rollout gives its
    /// new version (`POST /plugins/{name}/rollout`); 100 promotes it.
    /// Returns the host's answer: the plugin's description.
    pub fn set_rollout_percent(&self, name: &str, percent: u8) -> Result<Value, ClientError> {
        check_name(name)?;
        let body = serde_json::json!({ "percent": percent }).to_string();
        self.post(&format!("/plugins/{name}/rollout"), body.into_bytes())
    }

    /// What the host says of plugin `name` (`GET /plugins/{name}`), or of
    /// every plugin (`GET /plugins`, an array) when `name` is `None`.
    pub fn status(&self, name: Option<&str>) -> Result<Value, ClientError> {
        let path = match name {
            Some(name) => {
                check_name(name)?;
                format!("/plugins/{name}")
            }
            None => "/plugins".to_owned(),
        };
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request)
    }

    /// What `GET /health` answers: the host's state, every plugin's, and
    /// the cluster's when one is configured.
    pub fn health(&self) -> Result<Value, ClientError> {
        let request = self.http.get(format!("{}/health", self.base));
        self.send(request)
    }

    /// `GET path` (with its query, if any): the host's JSON answer.
    pub(crate) fn get(&self, path: &str) -> Result<Value, ClientError> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(request)
    }

    /// `POST path` with a JSON `body`: the host's JSON answer.
    pub(crate) fn post(&self, path: &str, body: Vec<u8>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let request = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        self.send(request)
    }

    fn send(&self, request: reqwest::blocking::RequestBuilder) -> Result<Value, ClientError> {
        let text = self.dispatch(request)?.text().unwrap_or_default();
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Sends `request` with the bearer token; a success status is the
    /// response, to read, and an error status the host's JSON error.
    fn dispatch(
        &self,
        mut request: reqwest::blocking::RequestBuilder,
    ) -> Result<reqwest::blocking::Response, ClientError> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().map_err(|e| {
            ClientError::Failed(format!(
                "cannot reach the admin endpoint at {}: {}",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let message = body["error"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned);
        Err(ClientError::Failed(format!(
            "{message} (HTTP {})",
            status.as_u16()
        )))
    }

    /// What `GET /overview` answers: every plugin's state, rates, errors,
    /// queue depth and processing times (SPEC §15).
    pub fn overview(&self) -> Result<Value, ClientError> {
        let request = self.http.get(format!("{}/overview", self.base));
        self.send(request)
    }

    /// `GET /stream?topics=…` for `patterns`, opened: the response's body
    /// is the Server-Sent Events stream, read as it comes (no time limit).
    pub fn event_stream(
        &self,
        patterns: &[String],
    ) -> Result<reqwest::blocking::Response, ClientError> {
        let topics: Vec<String> = patterns.iter().map(|p| segment(p)).collect();
        self.open_stream(&format!("/stream?topics={}", topics.join(",")))
    }

    /// GETs `path`, whose answer is a stream, on a client of its own with
    /// no overall time limit (only connecting is bounded); an error status
    /// is read as the host's JSON error.
    fn open_stream(&self, path: &str) -> Result<reqwest::blocking::Response, ClientError> {
        let http = reqwest::blocking::Client::builder()
            .timeout(None)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| ClientError::Failed(format!("cannot make an HTTP client: {e}")))?;
        self.dispatch(http.get(format!("{}{path}", self.base)))
    }
}

/// `plughost status`'s table: one line per plugin with its supervision
/// state (SPEC §12) and counts.
pub fn status_table(plugins: &[Value]) -> String {
    let mut rows = vec![
        [
            "NAME", "STATE", "VERSION", "RUNTIME", "QUEUE", "ERRORS", "RESTARTS", "DEAD",
        ]
        .map(str::to_owned),
    ];
    for p in plugins {
        let text = |v: &Value| match v {
            Value::String(s) => s.clone(),
            Value::Null => "-".to_owned(),
            other => other.to_string(),
        };
        rows.push([
            text(&p["name"]),
            text(&p["state"]),
            text(&p["version"]),
            text(&p["runtime"]),
            text(&p["queue_depth"]),
            text(&p["errors"]),
            text(&p["restarts"]),
            text(&p["counts"]["dead_lettered"]),
        ]);
    }
    super::table::aligned(&rows, usize::MAX)
}

/// The cluster's line under `plughost status`'s table, from `GET /health`'s
/// `cluster` object; `None` without a cluster.
pub fn cluster_line(health: &Value) -> Option<String> {
    let c = health.get("cluster")?;
    let n = |key: &str| c[key].as_u64().unwrap_or(0);
    Some(format!(
        "cluster {}: {} (exported {}, imported {}, dropped {})\n",
        c["name"].as_str().unwrap_or("?"),
        c["state"].as_str().unwrap_or("?"),
        n("exported"),
        n("imported"),
        n("dropped"),
    ))
}

/// The lines under `plughost status`'s table for the plugins with a
/// rollout in progress, one each: `NAME: rollout …` (see [`rollout_line`]).
pub fn rollout_lines(plugins: &[Value]) -> String {
    plugins
        .iter()
        .filter_map(|p| {
            let line = rollout_line(&p["rollout"])?;
            Some(format!("{}: {line}\n", p["name"].as_str().unwrap_or("?")))
        })
        .collect()
}

/// A rollout in progress in words, from the `rollout` of `GET
/// /plugins/{name}`; `None` when there is none (`null`). A shadow rollout:
/// `rollout shadow 1.0.0 → 1.1.0: 120 compared, 3 differed, 0 candidate
/// errors` (and `, N skipped` when the candidate could not keep up); a
/// gradual one: `rollout gradual 1.0.0 → 1.1.0 10%: 40 handled by the new
/// version, 0 candidate errors`.
pub fn rollout_line(r: &Value) -> Option<String> {
    if !r.is_object() {
        return None;
    }
    let n = |key: &str| r[key].as_u64().unwrap_or(0);
    let text = |key: &str| r[key].as_str().unwrap_or("?").to_owned();
    let head = format!(
        "rollout {} {} → {}",
        text("strategy"),
        text("from"),
        text("to")
    );
    Some(match r["percent"].as_u64() {
        Some(percent) => format!(
            "{head} {percent}%: {} handled by the new version, {} candidate errors",
            n("handled_by_candidate"),
            n("candidate_errors"),
        ),
        None => {
            let skipped = match n("skipped") {
                0 => String::new(),
                k => format!(", {k} skipped"),
            };
            format!(
                "{head}: {} compared, {} differed, {} candidate errors{skipped}",
                n("compared"),
                n("differed"),
                n("candidate_errors"),
            )
        }
    })
}

/// `plughost status NAME`: the plugin's state and what led to it.
pub fn status_of(p: &Value) -> String {
    let mut out = status_table(std::slice::from_ref(p));
    if let Some(rollout) = rollout_line(&p["rollout"]) {
        out.push_str(&rollout);
        out.push('\n');
    }
    let mut line = |label: &str, v: &Value| {
        if !v.is_null() {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            out.push_str(&format!("{label}: {text}\n"));
        }
    };
    line("consecutive errors", &p["consecutive_errors"]);
    line("last error", &p["last_error"]);
    line("last crash", &p["last_crash"]);
    line("last dead letter", &p["last_dead_letter"]["error"]);
    out
}

/// Refuses, before anything is sent, a name no plugin can have.
fn check_name(name: &str) -> Result<(), ClientError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(ClientError::Usage(format!(
            "`{name}` is not a plugin name: use 1 to 64 lowercase letters, digits, `_` and `-`"
        )))
    }
}

/// `text` as one URL path segment, percent-encoded (the admin routes decode it).
fn segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// `http://HOST:PORT` from an address with or without the scheme.
fn base_url(addr: &str) -> Result<String, ClientError> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.starts_with("https://") {
        return Err(ClientError::Usage(format!(
            "`{addr}`: the admin endpoint speaks plain HTTP (put TLS in front of it and point \
             this command at the host directly)"
        )));
    }
    let bare = addr.strip_prefix("http://").unwrap_or(addr);
    if bare.is_empty() || bare.contains('/') || !bare.contains(':') {
        return Err(ClientError::Usage(format!(
            "`{addr}` is not an admin address: write HOST:PORT, e.g. 127.0.0.1:9090"
        )));
    }
    Ok(format!("http://{bare}"))
}

/// The innermost error's message (reqwest's own says only "error sending request").
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_host_and_port_with_or_without_the_scheme() {
        assert_eq!(base_url("127.0.0.1:9090").unwrap(), "http://127.0.0.1:9090");
        assert_eq!(
            base_url("http://localhost:9090/").unwrap(),
            "http://localhost:9090"
        );
        assert!(matches!(base_url("9090"), Err(ClientError::Usage(_))));
        assert!(matches!(
            base_url("http://h:1/plugins"),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            base_url("https://h:1"),
            Err(ClientError::Usage(_))
        ));
    }

    #[test]
    fn a_topic_is_one_percent_encoded_path_segment() {
        assert_eq!(segment("text.raw"), "text.raw");
        assert_eq!(segment("a-b_c~d"), "a-b_c~d");
        assert_eq!(segment("in.a/b?c#d%e"), "in.a%2Fb%3Fc%23d%25e");
        assert_eq!(segment("in.é"), "in.%C3%A9");
    }

    #[test]
    fn the_status_table_lines_up_its_columns() {
        let table = status_table(&[
            serde_json::json!({"name": "echo", "state": "running", "version": "1.0.0",
                "runtime": "lua", "queue_depth": 0, "errors": 0, "restarts": 0,
                "counts": {"dead_lettered": 0}}),
            serde_json::json!({"name": "flaky-one", "state": "suspended", "version": "0.2.0",
                "runtime": "rhai", "queue_depth": 12, "errors": 10, "restarts": 1,
                "counts": {"dead_lettered": 10}}),
        ]);
        assert_eq!(
            table,
            "NAME       STATE      VERSION  RUNTIME  QUEUE  ERRORS  RESTARTS  DEAD\n\
             echo       running    1.0.0    lua      0      0       0         0\n\
             flaky-one  suspended  0.2.0    rhai     12     10      1         10\n"
        );
    }

    #[test]
    fn a_rollout_in_progress_is_one_line() {
        let shadow = serde_json::json!({"strategy": "shadow", "from": "1.0.0", "to": "1.1.0",
            "percent": null, "compared": 120, "differed": 3, "skipped": 0,
            "candidate_errors": 0, "handled_by_candidate": 0});
        assert_eq!(
            rollout_line(&shadow).unwrap(),
            "rollout shadow 1.0.0 → 1.1.0: 120 compared, 3 differed, 0 candidate errors"
        );
        let mut behind = shadow.clone();
        behind["skipped"] = serde_json::json!(7);
        assert!(rollout_line(&behind).unwrap().ends_with(", 7 skipped"));
        let gradual = serde_json::json!({"strategy": "gradual", "from": "1.0.0", "to": "1.1.0",
            "percent": 10, "compared": 0, "differed": 0, "skipped": 0,
            "candidate_errors": 2, "handled_by_candidate": 40});
        assert_eq!(
            rollout_line(&gradual).unwrap(),
            "rollout gradual 1.0.0 → 1.1.0 10%: 40 handled by the new version, \
             2 candidate errors"
        );
        assert_eq!(rollout_line(&Value::Null), None);
        assert_eq!(rollout_line(&serde_json::json!({})["rollout"]), None);

        let plugins = [
            serde_json::json!({"name": "echo", "rollout": null}),
            serde_json::json!({"name": "scorer", "rollout": gradual}),
        ];
        assert_eq!(
            rollout_lines(&plugins),
            "scorer: rollout gradual 1.0.0 → 1.1.0 10%: 40 handled by the new version, \
             2 candidate errors\n"
        );
        let one = serde_json::json!({"name": "echo", "state": "running", "version": "1.0.0",
            "runtime": "lua", "queue_depth": 0, "errors": 0, "restarts": 0,
            "counts": {"dead_lettered": 0}, "rollout": shadow});
        assert!(
            status_of(&one).contains("\nrollout shadow 1.0.0 → 1.1.0: 120 compared"),
            "{}",
            status_of(&one)
        );
    }

    #[test]
    fn the_cluster_line_says_its_state_and_counts() {
        let health = serde_json::json!({"status": "ok", "plugins": {}, "cluster": {
            "state": "disconnected", "name": "edge-1", "exported": 5, "imported": 2, "dropped": 1
        }});
        assert_eq!(
            cluster_line(&health).unwrap(),
            "cluster edge-1: disconnected (exported 5, imported 2, dropped 1)\n"
        );
        assert_eq!(cluster_line(&serde_json::json!({"status": "ok"})), None);
    }

    #[test]
    fn bad_names_and_payloads_are_refused_before_sending() {
        // Nothing listens on port 9: a request would fail with `Failed`.
        let c = Client::new("127.0.0.1:9", None).unwrap();
        assert!(matches!(
            c.change(Change::Enable, "../x", false),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            c.set_rollout_percent("Bad Name", 10),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            c.change(Change::Promote, "", false),
            Err(ClientError::Usage(_))
        ));
        assert!(matches!(
            c.publish("in.x", "{n: 1}"),
            Err(ClientError::Usage(_))
        ));
        let Err(ClientError::Failed(why)) = c.change(Change::Reload, "x", false) else {
            panic!("a request to a closed port fails");
        };
        assert!(
            why.contains("cannot reach the admin endpoint at http://127.0.0.1:9"),
            "{why}"
        );
    }
}
