//! SPEC §12 config schemas: `config_schema` checked at load, at `check` and on live changes.
//!
//! `plughost check` prints every violation at its `plugin.yaml:line:col`; the
//! plugins of every script runtime see their config with the schema's
//! `default`s filled in; and a config saved while the plugin runs that breaks
//! the schema is refused like a failed reload, the running version keeping
//! its config.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use plughost::Host;
use plughost::reload::ReloadOutcome;
use serde_json::{Value, json};

use crate::behaviours;
use crate::support::{Fixture, Runtime, Src, ev, tokio_rt};

/// The schema the tests share: a bounded `threshold` (required), a `mode`
/// with a default, and a `cache` object made of defaults.
const SCHEMA: &str = "\
config_schema:
  type: object
  additionalProperties: false
  required: [threshold]
  properties:
    threshold: {type: integer, minimum: 0, maximum: 100}
    mode: {enum: [fast, slow], default: fast}
    cache:
      type: object
      properties:
        size: {type: integer, default: 64}
        ttl_s: {type: integer, default: 30}
";

fn dir(fx: &Fixture) -> &str {
    fx.path().to_str().unwrap()
}

// ---------------------------------------------------------------------------
// plughost check

#[test]
fn check_prints_every_schema_violation_with_its_position() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        &format!("{SCHEMA}config:\n  threshold: 150\n  mode: fats\n  treshold: 3\n"),
        "function on_event(e) end\n",
    );
    let run = fx.check();
    run.expect_code(1);
    let file = format!("{}/p/plugin.yaml", dir(&fx));
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            format!("{file}:16:14: config.threshold: 150 is greater than the maximum 100"),
            format!(
                "{file}:17:9: config.mode: `fats` is not one of `fast`, `slow` (did you mean `fast`?)"
            ),
            format!("{file}:18:3: config: unknown key `treshold` (did you mean `threshold`?)"),
        ],
        "{run}"
    );
}

#[test]
fn check_prints_an_invalid_schema_at_the_config_schema_key() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        "config_schema:\n  properties:\n    name: {type: string, pattern: \"(unclosed\"}\n",
        "function on_event(e) end\n",
    );
    let run = fx.check();
    run.expect_code(1);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [format!(
            "{}/p/plugin.yaml:3:1: config_schema.properties.name.pattern (line 5, column 35): \
             `(unclosed` is not a valid regular expression (lookaround and \
             backreferences are not supported)",
            dir(&fx)
        )],
        "{run}"
    );
}

#[test]
fn check_accepts_a_config_that_follows_its_schema() {
    let fx = Fixture::new();
    fx.plugin(
        Runtime::Lua,
        "p",
        &format!("{SCHEMA}config:\n  threshold: 10\n"),
        "function on_event(e) end\n",
    );
    let run = fx.check();
    run.expect_code(0);
    assert_eq!(run.stdout, "", "{run}");
}

// ---------------------------------------------------------------------------
// Defaults, in every script runtime

/// Answers each event with its whole config.
const SHOW_CONFIG: Src = Src {
    lua: "function on_event(e) bus.publish('out', config) end\n",
    rhai: "fn on_event(e) { bus::publish(\"out\", config); }\n",
    native: None,
};

fn the_plugin_sees_the_defaults_filled_in(rt: Runtime) {
    let fx = Fixture::new();
    fx.plugin(
        rt,
        "p",
        &format!("subscriptions: [in]\n{SCHEMA}config:\n  threshold: 7\n  cache: {{size: 8}}\n"),
        SHOW_CONFIG.get(rt),
    );
    let run = fx.run(&[ev("in", json!({}))]);
    run.expect_code(0);
    assert_eq!(
        run.only("out"),
        json!({"threshold": 7, "mode": "fast", "cache": {"size": 8, "ttl_s": 30}}),
        "{run}"
    );
}

behaviours!(the_plugin_sees_the_defaults_filled_in);

// ---------------------------------------------------------------------------
// Live changes

/// The payload of the next event of `stream`, waiting at most five seconds.
async fn next(stream: &mut plughost::EventStream, what: &str) -> Value {
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within 5 s"))
        .unwrap_or_else(|| panic!("the stream ended before {what}"));
    event.payload.value().clone()
}

fn write_manifest(folder: &Path, config: &str) {
    let text = format!("name: p\nversion: 1.0.0\nsubscriptions: [in]\n{SCHEMA}config:\n{config}");
    std::fs::write(folder.join("plugin.yaml"), text).unwrap();
}

#[test]
fn a_live_change_to_an_invalid_config_is_refused_and_the_running_config_stays() {
    let fx = Fixture::new();
    fx.plugin(Runtime::Lua, "p", "", SHOW_CONFIG.lua);
    let folder = fx.path().join("p");
    write_manifest(&folder, "  threshold: 10\n");
    tokio_rt().block_on(async {
        let host = Host::builder().plugins_dir(fx.path()).build().unwrap();
        let mut out = host.subscribe("out").unwrap();
        let mut failed = host.subscribe("plughost.plugin.reload_failed").unwrap();
        assert_eq!(host.start().await.started, ["p"]);

        // Saved with a threshold above the maximum while the plugin runs.
        write_manifest(&folder, "  threshold: 500\n");
        let file = folder.join("plugin.yaml");
        let error = format!(
            "{}:17:14: config.threshold: 500 is greater than the maximum 100",
            file.display()
        );
        assert_eq!(
            host.reload_folder(&folder, false).await,
            ReloadOutcome::Failed(error.clone())
        );
        let announced = next(&mut failed, "plughost.plugin.reload_failed").await;
        assert_eq!(announced["plugin"], "p");
        assert_eq!(announced["error"], error.as_str());

        // The running version keeps the config it had, defaults included.
        host.publish("in", json!({})).await.unwrap();
        let answer = next(&mut out, "the answer").await;
        assert_eq!(
            answer,
            json!({"threshold": 10, "mode": "fast", "cache": {"size": 64, "ttl_s": 30}})
        );

        // A valid save is taken, with the defaults filled in again.
        write_manifest(&folder, "  threshold: 20\n  mode: slow\n");
        assert_eq!(
            host.reload_folder(&folder, false).await,
            ReloadOutcome::Reloaded
        );
        host.publish("in", json!({})).await.unwrap();
        let answer = next(&mut out, "the answer after the fix").await;
        assert_eq!(
            answer,
            json!({"threshold": 20, "mode": "slow", "cache": {"size": 64, "ttl_s": 30}})
        );
        host.shutdown(Duration::from_secs(2)).await;
    });
}
