//! SPEC §8, §11 `plughost schema plugin|host`: the JSON Schemas editors use
//! for `plugin.yaml` and `plughost.yaml`.
//!
//! The printed schemas are the committed files of `schemas/`, valid draft-07;
//! every manifest the repository ships (the examples, `plugin.yaml.example`,
//! the scaffolds of `plughost new`) follows the plugin schema and names it on
//! its first line. Tables of manifests and host configs hold the schemas to
//! the parsers, both ways: what the parser accepts the schema accepts, and
//! what the schema refuses (an unknown key, a wrong type, a bad enum, a bound)
//! the parser refuses too, checked through `plughost check`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{Run, run_binary};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The first line of a manifest that points an editor at the plugin schema
/// (the path after it depends on where the manifest is).
const MODELINE: &str = "# yaml-language-server: $schema=";

/// `plughost schema WHICH`, checked to succeed.
fn printed(which: &str) -> String {
    let run = run_binary(&["schema", which], None);
    run.expect_code(0);
    assert_eq!(run.stderr, "", "{run}");
    run.stdout
}

/// The committed schema file `schemas/NAME`.
fn committed(name: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join("schemas").join(name)).unwrap()
}

/// A draft-07 validator of the committed schema `schemas/NAME`.
fn validator(name: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&committed(name)).unwrap();
    jsonschema::draft7::new(&schema)
        .unwrap_or_else(|e| panic!("schemas/{name} does not compile: {e}"))
}

/// YAML text as JSON, read as the parsers read it (YAML 1.2 booleans).
fn yaml_to_json(text: &str) -> Value {
    let options = serde_saphyr::options! { strict_booleans: true };
    if text
        .lines()
        .all(|l| l.trim().is_empty() || l.starts_with('#'))
    {
        return Value::Null;
    }
    serde_saphyr::from_str_with_options::<Value>(text, options)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// The schema's complaints about `text`, one line each; empty when it follows it.
fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    validator
        .iter_errors(&yaml_to_json(text))
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_printed_schemas_are_the_committed_files() {
    assert_eq!(printed("plugin"), committed("plugin.schema.json"));
    assert_eq!(printed("host"), committed("plughost.schema.json"));
    let run = run_binary(&["schema", "plugins"], None);
    run.expect_code(2);
    assert!(run.stderr.contains("plugin"), "{run}");
}

#[test]
fn the_schemas_are_valid_draft_07() {
    for name in ["plugin.schema.json", "plughost.schema.json"] {
        let schema: Value = serde_json::from_str(&committed(name)).unwrap();
        if let Err(e) = jsonschema::draft7::meta::validate(&schema) {
            panic!("schemas/{name}: {e}");
        }
        validator(name);
    }
}

// ---------------------------------------------------------------------------
// The manifests the repository ships

/// Every `plugins/*/plugin.yaml` of the repository.
fn example_manifests() -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("plugins"))
        .unwrap()
        .map(|e| e.unwrap().path().join("plugin.yaml"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    assert!(found.len() >= 4, "{found:?}");
    found
}

/// The path a manifest's first line gives, resolved from its folder.
fn modeline_target(manifest: &Path) -> PathBuf {
    let text = std::fs::read_to_string(manifest).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let target = first
        .strip_prefix(MODELINE)
        .unwrap_or_else(|| panic!("{}: first line is `{first}`", manifest.display()));
    manifest.parent().unwrap().join(target)
}

#[test]
fn the_bundled_manifests_follow_the_schema_and_name_it() {
    let plugin = validator("plugin.schema.json");
    let mut manifests = example_manifests();
    manifests.push(Path::new(ROOT).join("plugin.yaml.example"));
    for manifest in manifests {
        let text = std::fs::read_to_string(&manifest).unwrap();
        let errors = schema_errors(&plugin, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", manifest.display());
        let target = modeline_target(&manifest);
        assert_eq!(
            std::fs::read_to_string(&target).ok().as_deref(),
            Some(committed("plugin.schema.json").as_str()),
            "{} points at {}",
            manifest.display(),
            target.display()
        );
    }
}

/// `plughost new NAME --runtime RUNTIME --dir DIR`, checked to succeed.
fn scaffold(dir: &Path, name: &str, runtime: &str) -> PathBuf {
    let run = crate::new::new_plugin(dir, name, runtime);
    run.expect_code(0);
    dir.join(name)
}

/// Outside a plughost checkout, a scaffold has the plugin schema beside its
/// manifest (`plugin.schema.json`, the same text `plughost schema plugin`
/// prints) and points at it; its manifest follows it.
#[test]
fn scaffolds_follow_the_schema_and_name_it() {
    let plugin = validator("plugin.schema.json");
    let tmp = tempfile::tempdir().unwrap();
    for runtime in ["lua", "rhai", "native"] {
        let folder = scaffold(tmp.path(), &format!("hello-{runtime}"), runtime);
        let manifest = folder.join("plugin.yaml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let errors = schema_errors(&plugin, &text);
        assert!(errors.is_empty(), "{runtime}: {errors:#?}\n{text}");
        assert_eq!(
            modeline_target(&manifest),
            folder.join("plugin.schema.json")
        );
        assert_eq!(
            std::fs::read_to_string(folder.join("plugin.schema.json")).unwrap(),
            printed("plugin"),
            "{runtime}"
        );
    }
}

// ---------------------------------------------------------------------------
// The plugin schema agrees with the manifest parser

const HEAD: &str = "name: t\nversion: 1.0.0\n";

/// Manifests (after [`HEAD`] unless they start with `name:`, `- ` or `#`) the parser accepts.
const GOOD_MANIFESTS: &[&str] = &[
    "",
    "description: ~\nenabled:\nconfig:\nlimits:\nrollout:\n",
    "description: one line\nenabled: false\n",
    "runtime: lua\nentry: main.lua\n",
    "entry: src/Main.LUA\n",
    "runtime: rhai\nentry: main.rhai\n",
    "runtime: native\nentry: greeter\n",
    "runtime: native\nentry: lib/libgreeter.so\n",
    "runtime: ~\n",
    "subscriptions: [text.*, 'a.>', '>', '*', 'plughost.plugin.>', été]\n",
    "publications: []\n",
    "dependencies: [tokenizer, {stemmer: '>=1.2, <2'}, {other: ~}]\n",
    "config: {a: 1, b: [x, 2.5], c: {d: true}}\n",
    "config_schema: {type: object, properties: {a: {type: integer}}}\n",
    "limits: {memory_mb: 1, event_timeout_ms: 3600000, queue: 10000000, overflow: drop_oldest}\n",
    "limits: {memory_mb: 65536, event_timeout_ms: 1, queue: 1, overflow: drop_newest}\n",
    "retry: {max_attempts: 1, backoff_ms: 0}\n",
    "supervision: {max_consecutive_errors: 0, resume_after_ms: 300000, max_restarts: 0, window_s: 86400}\n",
    "supervision: {resume_after_ms: 1, window_s: 1}\n",
    "cluster: {shared: true}\n",
    "rollout: {strategy: gradual, percent: 100, key: user.id, promote_after: 1000000000, max_candidate_errors: 1}\n",
    "rollout: {strategy: shadow, percent: 1, key: a-b.c_d.0}\n",
    "rollout: {strategy: ~, percent: ~, key: ~, promote_after: ~, max_candidate_errors: ~}\n",
    "name: a_b-9\nversion: 2.0.0-rc.1+build.5\n",
];

/// Manifests (after [`HEAD`] unless they start with `name:`, `- ` or `#`) the parser
/// refuses, each for one reason a schema can tell.
const BAD_MANIFESTS: &[&str] = &[
    // Unknown keys.
    "colour: red\n",
    "queue: 5\n",
    "limits: {queues: 1}\n",
    "retry: {attempts: 1}\n",
    "supervision: {window: 1}\n",
    "cluster: {share: true}\n",
    "rollout: {strategi: shadow}\n",
    // Wrong types.
    "enabled: yes\n",
    "description: [a]\n",
    "subscriptions: text.raw\n",
    "subscriptions: [3]\n",
    "config: [1]\n",
    "config_schema: 3\n",
    "limits: [1]\n",
    "limits: {queue: '5'}\n",
    "limits: {queue: ~}\n",
    "retry: {backoff_ms: 1.5}\n",
    "cluster: {shared: 1}\n",
    "cluster: {shared: ~}\n",
    "rollout: shadow\n",
    "rollout: {percent: ten}\n",
    "dependencies: [3]\n",
    "dependencies: [{a: 1}]\n",
    "dependencies: [{a: x, b: y}]\n",
    "dependencies: tokenizer\n",
    // Bad enums.
    "runtime: python\n",
    "runtime: Lua\n",
    "limits: {overflow: drop}\n",
    "rollout: {strategy: canary}\n",
    // Bounds and shapes.
    "limits: {memory_mb: 0}\n",
    "limits: {memory_mb: 65537}\n",
    "limits: {event_timeout_ms: 3600001}\n",
    "limits: {queue: 10000001}\n",
    "retry: {max_attempts: 0}\n",
    "retry: {backoff_ms: -1}\n",
    "supervision: {max_restarts: -1}\n",
    "supervision: {resume_after_ms: 0}\n",
    "supervision: {resume_after_ms: 300001}\n",
    "supervision: {window_s: 86401}\n",
    "rollout: {percent: 0}\n",
    "rollout: {percent: 101}\n",
    "rollout: {promote_after: 0}\n",
    "rollout: {max_candidate_errors: 1000000001}\n",
    "rollout: {key: '$.user'}\n",
    "rollout: {key: 'user..id'}\n",
    "rollout: {key: ''}\n",
    "subscriptions: ['a..b']\n",
    "subscriptions: ['a.>.b']\n",
    "subscriptions: ['a*']\n",
    "subscriptions: ['a b']\n",
    "subscriptions: ['']\n",
    "publications: ['.a']\n",
    "dependencies: [Bad]\n",
    "dependencies: [{_x: '1'}]\n",
    "entry: ../x.lua\n",
    "entry: a/../../x.lua\n",
    "entry: /abs/x.lua\n",
    "entry: 'C:\\x.lua'\n",
    "entry: ''\n",
    "entry: ' '\n",
    "entry: main.py\n",
    "entry: .lua\n",
    "runtime: native\n",
    "runtime: native\nentry: ~\n",
    "runtime: native\nentry: x.lua\n",
    "runtime: lua\nentry: main.rhai\n",
    "runtime: rhai\nentry: main.lua\n",
    // The required keys.
    "name: Bad\nversion: 1.0.0\n",
    "name: -a\nversion: 1.0.0\n",
    "name: t\n",
    "name: t\nversion: 1.0\n",
    "name: t\nversion: '1.0'\n",
    "name: t\nversion: 1.0.0.0\n",
    "name: t\nversion: ~\n",
    "name: ~\nversion: 1.0.0\n",
    "name:\n  - t\nversion: 1.0.0\n",
    "- a\n",
    "# an empty file\n",
];

fn manifest_text(case: &str) -> String {
    if ["name:", "- ", "#"].iter().any(|p| case.starts_with(p)) {
        case.to_owned()
    } else {
        format!("{HEAD}{case}")
    }
}

/// The manifest parser's verdict, as errors.
fn parser_errors(text: &str) -> Vec<String> {
    match plughost::manifest::parse(Path::new("plugin.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn what_the_manifest_parser_accepts_the_schema_accepts() {
    let plugin = validator("plugin.schema.json");
    for case in GOOD_MANIFESTS {
        let text = manifest_text(case);
        let parsed = parser_errors(&text);
        assert!(parsed.is_empty(), "the parser refuses\n{text}\n{parsed:#?}");
        let errors = schema_errors(&plugin, &text);
        assert!(errors.is_empty(), "the schema refuses\n{text}\n{errors:#?}");
    }
}

#[test]
fn what_the_plugin_schema_refuses_the_parser_refuses() {
    let plugin = validator("plugin.schema.json");
    for case in BAD_MANIFESTS {
        let text = manifest_text(case);
        assert!(
            !schema_errors(&plugin, &text).is_empty(),
            "the schema accepts\n{text}"
        );
        assert!(
            !parser_errors(&text).is_empty(),
            "the parser accepts\n{text}"
        );
    }
}

/// The refused manifests, each in its own plugin folder with a `main.lua`:
/// `plughost check` names every one of them.
#[test]
fn plughost_check_refuses_what_the_plugin_schema_refuses() {
    let tmp = tempfile::tempdir().unwrap();
    let plugins = tmp.path().join("plugins");
    let mut folders = Vec::new();
    for (i, case) in BAD_MANIFESTS.iter().enumerate() {
        // A name of its own for each folder that writes HEAD, so that no two collide.
        let text = manifest_text(case).replacen("name: t\n", &format!("name: t{i}\n"), 1);
        let folder = plugins.join(format!("case-{i}"));
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("plugin.yaml"), &text).unwrap();
        std::fs::write(folder.join("main.lua"), "function on_event(event) end\n").unwrap();
        folders.push((folder, text));
    }
    let run = run_binary(&["check", plugins.to_str().unwrap()], None);
    run.expect_code(1);
    for (folder, text) in folders {
        let named = format!("{}:", folder.join("plugin.yaml").display());
        assert!(
            run.stdout.lines().any(|l| l.starts_with(&named)),
            "check does not name {named}\n{text}\n{run}"
        );
    }
}

// ---------------------------------------------------------------------------
// The host schema agrees with the host config parser

/// A `plughost.yaml` that sets every key the parser reads.
const FULL_HOST: &str = "\
plugins: [plugins, /opt/plughost/shared-plugins]
drain_timeout: 1m 30s
admin:
  listen: 127.0.0.1:9090
  token_env: PLUGHOST_ADMIN_TOKEN
  dead_letters: 1000
  dead_letters_max_bytes: 64MiB
telemetry:
  otlp_endpoint: http://localhost:4318
  protocol: http/protobuf
  service_name: plughost
cluster:
  nats: [nats://127.0.0.1:4222, 'tls://user:pass@10.0.0.2:4222']
  name: edge-1
  export: ['>']
  import: [orders.>, 'metrics.*']
  buffer: 10000
  creds: nats.creds
  tls: {ca: ca.pem, cert: cert.pem, key: key.pem}
  jetstream: {stream: PLUGHOST, topics: [orders.>]}
";

/// Host configs the parser accepts.
const GOOD_HOSTS: &[&str] = &[
    FULL_HOST,
    "",
    "# nothing\n",
    "plugins: []\n",
    "drain_timeout: 500ms\n",
    "drain_timeout: 1.5s\n",
    "drain_timeout: 2h 5min 3sec\n",
    "admin: {listen: '[::1]:80'}\n",
    "admin: {listen: 0.0.0.0:9090, token_env: _X1}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters: 0, dead_letters_max_bytes: 0}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters: 1000000, dead_letters_max_bytes: 67108864}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters_max_bytes: 512 kib}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters_max_bytes: '300'}\n",
    "telemetry: {otlp_endpoint: 'https://collector:4318'}\n",
    "telemetry: {}\n",
    "cluster: {nats: nats://a}\n",
    "cluster: {nats: 'tls://token@b:4222', export: [], import: ['>'], buffer: 1}\n",
    "cluster: {nats: nats://a, tls: {ca: ca.pem}, export: [plughostx.a]}\n",
];

/// Host configs the parser refuses, each for one reason a schema can tell.
const BAD_HOSTS: &[&str] = &[
    // Unknown keys.
    "plugin: [x]\n",
    "bridge: {nats: nats://x}\n",
    "admin: {listen: 127.0.0.1:1, tokenenv: X}\n",
    "admin: {listen: 127.0.0.1:1, dead_letter: 10}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters: -1}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters: many}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters: 1000001}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters_max_bytes: lots}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters_max_bytes: 64 MiBs}\n",
    "admin: {listen: 127.0.0.1:1, dead_letters_max_bytes: -5}\n",
    "telemetry: {endpoint: 'http://x:4318'}\n",
    "cluster: {nats: nats://a, exports: [a]}\n",
    "cluster: {nats: nats://a, tls: {cafile: x}}\n",
    "cluster: {nats: nats://a, jetstream: {stream: S, topics: [a], topic: [b]}}\n",
    // Wrong types.
    "- a\n",
    "plugins: plugins\n",
    "plugins: [a, 3]\n",
    "plugins: ~\n",
    "drain_timeout: 10\n",
    "drain_timeout: ~\n",
    "admin: yes\n",
    "admin: {listen: 9090}\n",
    "telemetry: [x]\n",
    "cluster: {nats: 4222}\n",
    "cluster: {nats: nats://a, buffer: '5'}\n",
    // Bad enums and values.
    "telemetry: {protocol: grpc}\n",
    "telemetry: {otlp_endpoint: 'localhost:4318'}\n",
    "telemetry: {service_name: ''}\n",
    "plugins: ['']\n",
    "drain_timeout: ten seconds\n",
    "drain_timeout: 10 parsecs\n",
    "admin: {listen: localhost}\n",
    "admin: {listen: 127.0.0.1}\n",
    "admin: {listen: 127.0.0.1:1, token_env: 1X}\n",
    "admin: {token_env: T}\n",
    "cluster: {name: a}\n",
    "cluster: {nats: []}\n",
    "cluster: {nats: 'http://b:4222'}\n",
    "cluster: {nats: 'localhost:4222'}\n",
    "cluster: {nats: 'nats://:4222'}\n",
    "cluster: {nats: nats://a, name: 'a b'}\n",
    "cluster: {nats: nats://a, export: [plughost.>]}\n",
    "cluster: {nats: nats://a, export: ['a..b']}\n",
    "cluster: {nats: nats://a, import: ['a b']}\n",
    "cluster: {nats: nats://a, buffer: 0}\n",
    "cluster: {nats: nats://a, buffer: 10000001}\n",
    "cluster: {nats: nats://a, creds: ''}\n",
    "cluster: {nats: nats://a, tls: {cert: c.pem}}\n",
    "cluster: {nats: nats://a, tls: {key: k.pem}}\n",
    "cluster: {nats: nats://a, jetstream: {stream: a.b, topics: [x]}}\n",
    "cluster: {nats: nats://a, jetstream: {stream: S}}\n",
    "cluster: {nats: nats://a, jetstream: {topics: [x]}}\n",
    "cluster: {nats: nats://a, jetstream: {stream: S, topics: [plughost.>]}}\n",
];

/// The host config parser's verdict, as errors.
fn host_parser_errors(text: &str) -> Vec<String> {
    match plughost::config::parse(Path::new("plughost.yaml"), text) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// `plughost check --config FILE EMPTY_DIR` on `text`.
fn check_config(text: &str) -> Run {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plughost.yaml");
    std::fs::write(&file, text).unwrap();
    let plugins = tmp.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    run_binary(
        &[
            "check",
            "--config",
            file.to_str().unwrap(),
            plugins.to_str().unwrap(),
        ],
        None,
    )
}

#[test]
fn what_the_host_config_parser_accepts_the_schema_accepts() {
    let host = validator("plughost.schema.json");
    for text in GOOD_HOSTS {
        let parsed = host_parser_errors(text);
        assert!(parsed.is_empty(), "the parser refuses\n{text}\n{parsed:#?}");
        let errors = schema_errors(&host, text);
        assert!(errors.is_empty(), "the schema refuses\n{text}\n{errors:#?}");
    }
    // The full config, through the command line too.
    let run = check_config(FULL_HOST);
    run.expect_code(0);
    assert_eq!(run.stdout, "", "{run}");
}

#[test]
fn what_the_host_schema_refuses_the_parser_and_check_refuse() {
    let host = validator("plughost.schema.json");
    for text in BAD_HOSTS {
        assert!(
            !schema_errors(&host, text).is_empty(),
            "the schema accepts\n{text}"
        );
        assert!(
            !host_parser_errors(text).is_empty(),
            "the parser accepts\n{text}"
        );
        let run = check_config(text);
        run.expect_code(1);
        assert!(
            run.stdout.contains("plughost.yaml:"),
            "check does not name the file\n{text}\n{run}"
        );
    }
}

/// `admin.dead_letters` and `admin.dead_letters_max_bytes` (SPEC §15):
/// the schema's defaults are the host's (the cases above check the values).
#[test]
fn the_host_schema_knows_the_dead_letter_store() {
    let schema: Value = serde_json::from_str(&committed("plughost.schema.json")).unwrap();
    let admin = &schema["properties"]["admin"]["properties"];
    assert_eq!(admin["dead_letters"]["default"], 1000);
    assert_eq!(admin["dead_letters_max_bytes"]["default"], 64 * 1024 * 1024);
}

// ---------------------------------------------------------------------------
// A native scaffold outside any checkout (SPEC §8)

/// Runs `command`, killed once `limit` has passed; its status and stderr.
fn bounded(
    mut command: std::process::Command,
    limit: std::time::Duration,
) -> (Option<std::process::ExitStatus>, String) {
    use std::io::Read;
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    (status, reader.join().unwrap_or_default())
}

/// `plughost new --runtime native` in a temp dir outside this repository:
/// the crate depends on the SDK `plughost` was built from, by absolute path
/// (no such crate is published), builds with `cargo build`, and the plugin
/// passes `check` and its own `plughost test`.
#[test]
fn a_native_scaffold_builds_outside_the_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    assert!(!root.starts_with(Path::new(ROOT).canonicalize().unwrap()));
    let dir = root.join("plugins");
    let folder = scaffold(&dir, "greeter", "native");

    let cargo_toml = std::fs::read_to_string(folder.join("Cargo.toml")).unwrap();
    let sdk = cargo_toml
        .lines()
        .find_map(|l| l.strip_prefix("plughost-sdk = { path = \""))
        .and_then(|rest| rest.strip_suffix("\" }"))
        .unwrap_or_else(|| panic!("no path dependency on plughost-sdk:\n{cargo_toml}"));
    assert!(Path::new(sdk).is_absolute(), "{sdk}");
    assert_eq!(
        Path::new(sdk).canonicalize().unwrap(),
        Path::new(ROOT).join("bindings/sdk").canonicalize().unwrap()
    );

    // The workspace's lock file pins what the crate shares with it, so the
    // build needs no registry; the target dir is the one tests/suite/new.rs
    // builds its scaffold into, so the SDK is compiled once for both.
    std::fs::copy(
        Path::new(ROOT).join("Cargo.lock"),
        folder.join("Cargo.lock"),
    )
    .unwrap();
    let target = Path::new(ROOT).join("target/new-scaffolds-build");
    let mut cargo =
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .args(["build", "--offline", "--quiet"])
        .current_dir(&folder)
        .env("CARGO_TARGET_DIR", &target);
    let (status, stderr) = bounded(cargo, std::time::Duration::from_secs(600));
    assert!(
        status.is_some_and(|s| s.success()),
        "cargo build of the native scaffold outside the repository failed ({status:?}):\n{stderr}"
    );

    let env = [("CARGO_TARGET_DIR", target.to_str().unwrap())];
    let check = crate::support::run_binary_with_env(&["check", dir.to_str().unwrap()], None, &env);
    check.expect_code(0);
    assert_eq!(check.stdout, "", "{check}");
    let folder_arg = folder.to_str().unwrap();
    let events = folder.join("tests/events.jsonl");
    let expect = folder.join("tests/expect.jsonl");
    let test = crate::support::run_binary_with_env(
        &[
            "test",
            folder_arg,
            "--events",
            events.to_str().unwrap(),
            "--expect",
            expect.to_str().unwrap(),
        ],
        None,
        &env,
    );
    test.expect_code(0);
}
