//! SPEC §11 host config: `plughost run --config FILE` reads `plughost.yaml`,
//! command-line flags override it, and a bad file is a configuration error
//! (exit 2) naming `file:line:col`.

use serde_json::json;

use crate::support::{Fixture, ev, run_binary};

/// A Lua plugin `name` in `dir` that answers `ping` with `pong.NAME`.
fn pinger(fx: &Fixture, dir: &str, name: &str) {
    fx.file(
        &format!("{dir}/{name}/plugin.yaml"),
        &format!("name: {name}\nversion: 1.0.0\nsubscriptions: [ping]\n"),
    );
    fx.file(
        &format!("{dir}/{name}/main.lua"),
        &format!("function on_event(e) bus.publish('pong.{name}', {{}}) end\n"),
    );
}

/// Two plugins directories, `a` (plugin `alpha`) and `b` (plugin `beta`), and
/// a `plughost.yaml` holding `config`; returns the fixture and the config's path.
fn setup(config: &str) -> (Fixture, String) {
    let fx = Fixture::new();
    pinger(&fx, "a", "alpha");
    pinger(&fx, "b", "beta");
    let path = fx.file("plughost.yaml", config);
    (fx, path.to_str().unwrap().to_owned())
}

fn run(args: &[&str]) -> crate::support::Run {
    let mut all = vec!["run", "--input", "-", "--tap", "pong.>", "--exit-when-idle"];
    all.extend_from_slice(args);
    let input = format!("{}\n", ev("ping", json!({})));
    run_binary(&all, Some(&input))
}

fn pongs(run: &crate::support::Run) -> Vec<String> {
    let mut topics: Vec<String> = run
        .events()
        .iter()
        .map(|e| e["topic"].as_str().unwrap_or_default().to_owned())
        .collect();
    topics.sort();
    topics
}

#[test]
fn run_uses_the_plugins_dirs_of_the_config_relative_to_its_folder() {
    // Relative to the config's folder, not to the test's current directory.
    let (_fx, config) = setup("plugins: [a]\ndrain_timeout: 5s\n");
    let run = run(&["--config", &config]);
    run.expect_code(0);
    assert_eq!(pongs(&run), ["pong.alpha"], "{run}");

    let (_fx, config) = setup("plugins: [a, b]\n");
    let run = self::run(&["--config", &config]);
    run.expect_code(0);
    assert_eq!(pongs(&run), ["pong.alpha", "pong.beta"], "{run}");
}

#[test]
fn plugins_flags_replace_the_configs_list() {
    let (fx, config) = setup("plugins: [a]\n");
    let b = fx.path().join("b");
    let run = run(&["--config", &config, "--plugins", b.to_str().unwrap()]);
    run.expect_code(0);
    assert_eq!(pongs(&run), ["pong.beta"], "{run}");
}

#[test]
fn a_bad_config_exits_2_naming_file_line_and_column() {
    let (_fx, config) = setup("plugins: [a]\ndrain_timout: 5s\nadmin:\n  listen: nowhere\n");
    let run = run(&["--config", &config]);
    run.expect_code(2);
    assert!(
        run.stderr.contains(
            "plughost.yaml:2:1: unknown key `drain_timout` (did you mean `drain_timeout`?)"
        ),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("plughost.yaml:4:11: admin.listen: `nowhere` is not a socket address"),
        "{run}"
    );
    // Nothing ran.
    assert!(run.stdout.is_empty(), "{run}");
}

/// SPEC §11: `plughost check --config FILE` validates the host config, and
/// checks the plugins of its `plugins` directories.
#[test]
fn check_validates_the_config_and_its_plugins_dirs() {
    let (_fx, config) = setup("plugins: [a, b]\ndrain_timout: 5s\n");
    let run = run_binary(&["check", "--config", &config], None);
    run.expect_code(1);
    assert!(
        run.stdout.contains(
            "plughost.yaml:2:1: unknown key `drain_timout` (did you mean `drain_timeout`?)"
        ),
        "{run}"
    );
    // A good config: its directories' plugins are checked.
    let (fx, config) = setup("plugins: [a, b]\n");
    let run = run_binary(&["check", "--config", &config], None);
    run.expect_code(0);
    assert!(run.stdout.is_empty(), "{run}");
    assert!(run.stderr.contains("checked 2 plugin(s)"), "{run}");
    fx.file("b/broken/plugin.yaml", "name: broken\nversion: one\n");
    fx.file("b/broken/main.lua", "");
    let run = run_binary(&["check", "--config", &config], None);
    run.expect_code(1);
    assert!(run.stdout.contains("/b/broken/plugin.yaml:2:"), "{run}");
    assert!(run.stderr.contains("checked 3 plugin(s)"), "{run}");
}

#[test]
fn the_bridge_key_is_refused_and_a_missing_file_is_a_usage_error() {
    let (fx, config) = setup("plugins: [a]\nbridge: {}\n");
    let run = run(&["--config", &config]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("plughost.yaml:2:1: `bridge`: the bus bridge is not available yet"),
        "{run}"
    );

    let missing = fx.path().join("nope.yaml");
    let run = self::run(&["--config", missing.to_str().unwrap()]);
    run.expect_code(2);
    assert!(run.stderr.contains("cannot read the host config"), "{run}");
}

#[test]
fn admin_listen_is_served() {
    let (_fx, config) = setup("plugins: [a]\nadmin:\n  listen: 127.0.0.1:0\n");
    let run = run(&["--config", &config]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains("admin endpoint listening on http://127.0.0.1:"),
        "{run}"
    );
    assert_eq!(pongs(&run), ["pong.alpha"], "{run}");
}
