//! SPEC §6 and §10 end to end: a real Prometheus server scrapes the admin
//! endpoint's `GET /metrics` and answers a query for the plugin's
//! processing-time histogram.
//!
//! Prometheus is Debian's package; `scripts/test` installs it and puts its
//! path in `PLUGHOST_PROMETHEUS`. Without it the test fails and says how to
//! get it: it never passes by skipping.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::live::Live;
use crate::support::{Fixture, Runtime, free_port};

/// How long Prometheus may take to start, scrape and answer.
const LIMIT: Duration = Duration::from_secs(60);

const ECHO: &str = "function on_event(e) bus.publish('out.echoed', e.payload) end\n";

/// The prometheus executable: `$PLUGHOST_PROMETHEUS`, else on `PATH`.
fn prometheus_executable() -> PathBuf {
    if let Some(path) = std::env::var_os("PLUGHOST_PROMETHEUS").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "prometheus is not installed: run scripts/test, which installs it \
                 (`apt-get install prometheus`) and sets PLUGHOST_PROMETHEUS"
            )
        })
}

/// A Prometheus server on loopback scraping one target every 250 ms, its
/// data in a temp dir. Killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n\
                 scrape_configs:\n  - job_name: plughost\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write the Prometheus config");
        let port = free_port();
        let child = Command::new(prometheus_executable())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// Runs an instant query; the `data.result` array (empty until scraped).
    fn query(&self, client: &reqwest::blocking::Client, promql: &str) -> Option<Vec<Value>> {
        let answer = client
            .get(format!(
                "http://127.0.0.1:{}/api/v1/query?query={}",
                self.port,
                url_encode(promql)
            ))
            .send()
            .ok()?;
        let body: Value = serde_json::from_str(&answer.text().ok()?).ok()?;
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"].as_array().cloned()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query parameter's value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls `promql` until its first sample has `want` as value.
fn wait_for_value(p: &Prometheus, promql: &str, want: &str) -> Vec<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("an HTTP client");
    let deadline = Instant::now() + LIMIT;
    let mut last = None;
    loop {
        if let Some(result) = p.query(&client, promql) {
            if result.first().is_some_and(|s| s["value"][1] == want) {
                return result;
            }
            last = Some(result);
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never answered {want} for {promql}; last answer: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn prometheus_scrapes_the_processing_time_histogram_by_plugin() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "echo", "subscriptions: [in.*]\n", ECHO);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let plugins = fx.path().to_str().unwrap().to_owned();
    let client = reqwest::blocking::Client::new();
    let mut live = Live::spawn(&["run", "--plugins", &plugins, "--admin", &addr, "--tap", ">"]);
    let deadline = Instant::now() + LIMIT;
    for n in 0..3 {
        loop {
            let sent = client
                .post(format!("http://{addr}/events/in.n"))
                .body(format!("{{\"n\": {n}}}"))
                .send();
            match sent {
                Ok(a) if a.status().is_success() => break,
                _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => panic!("the admin endpoint never took the event: {other:?}"),
            }
        }
    }
    for _ in 0..3 {
        live.wait_for("an echo", |e| e["topic"] == "out.echoed");
    }

    let prometheus = Prometheus::start(&addr);
    let result = wait_for_value(
        &prometheus,
        r#"sum by (plugin_name) (plugin_message_processing_time_ms_count{plugin_name="echo"})"#,
        "3",
    );
    assert_eq!(result.len(), 1, "{result:?}");
    assert_eq!(result[0]["metric"]["plugin_name"], "echo");
    // The series carry the plugin's labels and the topic (SPEC §6).
    let series = wait_for_value(
        &prometheus,
        r#"plugin_message_processing_time_ms_count{plugin_name="echo",message_topic="in.n"}"#,
        "3",
    );
    let labels = &series[0]["metric"];
    assert_eq!(labels["plugin_runtime"], "lua", "{labels}");
    assert_eq!(labels["plugin_version"], "1.0.0", "{labels}");
    wait_for_value(
        &prometheus,
        r#"sum(plugin_messages_total{plugin_name="echo"})"#,
        "3",
    );
    drop(prometheus);
    live.signal("TERM");
    assert_eq!(live.finish().code, 0);
}
