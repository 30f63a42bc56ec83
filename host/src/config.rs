//! The host config, `plughost.yaml` (SPEC §11): the text in, a typed [`HostConfig`]
//! or positioned errors out.
//!
//! The file is optional and read only when `plughost run --config FILE` names
//! it. It is parsed with the manifest's machinery: every node keeps its line
//! and column, every problem of the file is reported at once, in file order,
//! as `file:line:col: message`, and a misspelt key gets one suggestion.
//! Unknown keys are errors, as in a manifest.
//!
//! Command-line flags override the file; for telemetry the standard `OTEL_*`
//! variables override it (see [`crate::telemetry::export::Config::from_lookup_and`]).
//!
//! # Example
//!
//! ```
//! use std::path::{Path, PathBuf};
//! use std::time::Duration;
//! use plughost::config;
//!
//! let text = "plugins: [plugins, /opt/shared]\ndrain_timeout: 30s\n";
//! let c = config::parse(Path::new("/etc/plughost/plughost.yaml"), text).unwrap();
//! assert_eq!(c.plugins, [PathBuf::from("/etc/plughost/plugins"), PathBuf::from("/opt/shared")]);
//! assert_eq!(c.drain_timeout, Some(Duration::from_secs(30)));
//!
//! let errors = config::parse(Path::new("plughost.yaml"), "plugin: [x]\n").unwrap_err();
//! assert_eq!(
//!     errors[0].to_string(),
//!     "plughost.yaml:1:1: unknown key `plugin` (did you mean `plugins`?)"
//! );
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::manifest::Position;
use crate::manifest::raw::{self, Kind, Node};
use crate::manifest::values::Check;

pub use crate::cluster::{ClusterConfig, JetStreamConfig, TlsConfig};

/// The usual name of the host config file.
pub const FILE_NAME: &str = "plughost.yaml";

/// The top-level keys, in the order the docs list them.
const KEYS: &[&str] = &["plugins", "drain_timeout", "admin", "telemetry", "cluster"];

/// The keys under `admin:`.
const ADMIN_KEYS: &[&str] = &[
    "listen",
    "token_env",
    "dead_letters",
    "dead_letters_max_bytes",
];

/// The most dead letters `admin.dead_letters` may keep.
pub const MAX_DEAD_LETTERS: u64 = 1_000_000;

/// The keys under `telemetry:`.
const TELEMETRY_KEYS: &[&str] = &["otlp_endpoint", "protocol", "service_name"];

/// The only OTLP protocol the host speaks.
pub const PROTOCOL: &str = "http/protobuf";

/// A validated `plughost.yaml`. Keys left out are empty or `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// Plugins directories; relative ones resolved against the config file's folder.
    pub plugins: Vec<PathBuf>,
    /// How long shutdown waits for queues to drain.
    pub drain_timeout: Option<Duration>,
    /// The admin endpoint's settings (`plughost run` serves it).
    pub admin: Option<AdminConfig>,
    /// OTLP export settings; the `OTEL_*` variables override each of them.
    pub telemetry: TelemetryConfig,
    /// The cluster's NATS connection (SPEC §14), when configured.
    pub cluster: Option<ClusterConfig>,
}

/// `admin:` of the host config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// The socket address to listen on, e.g. `127.0.0.1:9090` (checked to parse).
    pub listen: String,
    /// The name of the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// How many dead letters the host keeps (`None`: the default, 1000).
    pub dead_letters: Option<usize>,
    /// How many bytes of dead letters the host keeps (`None`: the default, 64 MiB).
    pub dead_letters_max_bytes: Option<usize>,
}

/// `telemetry:` of the host config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OTLP base endpoint (`http://collector:4318`); turns export on.
    pub otlp_endpoint: Option<String>,
    /// The OTLP protocol; only `http/protobuf` is supported.
    pub protocol: Option<String>,
    /// The service name of every span and metric.
    pub service_name: Option<String>,
}

/// How long shutdown waits for queues to drain when neither flag nor file says.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl HostConfig {
    /// The plugins directories to run: those of the command line when any were
    /// given (they replace the file's list), else the file's, else `./plugins`.
    pub fn plugins_dirs(&self, flags: Vec<PathBuf>) -> Vec<PathBuf> {
        if !flags.is_empty() {
            flags
        } else if !self.plugins.is_empty() {
            self.plugins.clone()
        } else {
            vec![PathBuf::from("plugins")]
        }
    }

    /// The dead-letter store's bounds: the file's `admin.dead_letters` and
    /// `admin.dead_letters_max_bytes`, each defaulted when left out.
    pub fn dead_letter_limits(&self) -> crate::dead_letters::Limits {
        let mut limits = crate::dead_letters::Limits::default();
        if let Some(admin) = &self.admin {
            limits.count = admin.dead_letters.unwrap_or(limits.count);
            limits.max_bytes = admin.dead_letters_max_bytes.unwrap_or(limits.max_bytes);
        }
        limits
    }

    /// The drain timeout: the flag's when given, else the file's, else 10 s.
    pub fn drain_timeout_or(&self, flag: Option<Duration>) -> Duration {
        flag.or(self.drain_timeout).unwrap_or(DEFAULT_DRAIN_TIMEOUT)
    }
}

/// A problem with a host config: file, position when known, and a one-line message.
///
/// Displays as `file:line:col: message`, or `file: message` without a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", location(.file, .position))]
pub struct ConfigError {
    /// The config file, as the caller named it.
    pub file: PathBuf,
    /// Where in the file, when the problem has a place.
    pub position: Option<Position>,
    /// What is wrong, on one line.
    pub message: String,
}

fn location(file: &Path, position: &Option<Position>) -> String {
    match position {
        Some(p) => format!("{}:{}", file.display(), p),
        None => file.display().to_string(),
    }
}

/// Parses and validates the text of a host config; `file` names it in errors
/// and its folder is where relative plugins directories start.
///
/// On failure, returns every problem found, in file order. A YAML syntax error
/// stops parsing and is the only error.
pub fn parse(file: &Path, text: &str) -> Result<HostConfig, Vec<ConfigError>> {
    let to_error = |position, message| ConfigError {
        file: file.to_path_buf(),
        position,
        message,
    };
    let root = raw::read(text).map_err(|e| vec![to_error(e.pos, e.message)])?;
    let base = file.parent().unwrap_or(Path::new(""));
    let mut check = Check::new(text);
    let config = validate(&mut check, &root, base);
    if check.is_clean() {
        Ok(config)
    } else {
        Err(check
            .into_problems()
            .into_iter()
            .map(|p| to_error(p.pos, p.message))
            .collect())
    }
}

/// Reads `path` and parses it; an unreadable file is one error without a position.
pub fn load(path: &Path) -> Result<HostConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            position: None,
            message: format!("cannot read the host config: {e}"),
        }]
    })?;
    parse(path, &text)
}

fn validate(check: &mut Check<'_>, root: &Node, base: &Path) -> HostConfig {
    let mut config = HostConfig::default();
    let entries = match &root.kind {
        Kind::Null => return config,
        Kind::Map(entries) => check.unique(entries),
        _ => {
            check.wrong_type("the host config", root, "a mapping of keys to values");
            return config;
        }
    };
    for (key, value) in entries {
        match key.as_str() {
            Some("plugins") => config.plugins = plugins(check, value, base),
            Some("drain_timeout") => config.drain_timeout = duration(check, "drain_timeout", value),
            Some("admin") => config.admin = admin(check, key, value),
            Some("telemetry") => config.telemetry = telemetry(check, value),
            Some("cluster") => {
                config.cluster = crate::cluster::config::section(check, key, value, base)
            }
            // Once reserved for a bus bridge, which the cluster replaced.
            Some("bridge") => check.report(
                Some(key.pos),
                "`bridge`: the bus bridge is not available yet; `cluster` shares the bus over NATS (docs/cluster.md)",
            ),
            _ => check.unknown_key(None, key, KEYS),
        }
    }
    config
}

fn plugins(check: &mut Check<'_>, node: &Node, base: &Path) -> Vec<PathBuf> {
    let Some(items) = check.list("plugins", node, "directories") else {
        return Vec::new();
    };
    let mut dirs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let label = format!("plugins[{i}]");
        match check.string(&label, item) {
            Some(s) if s.trim().is_empty() => {
                check.report(Some(item.pos), format!("{label}: must not be empty"))
            }
            Some(s) => dirs.push(base.join(s)),
            None => {}
        }
    }
    dirs
}

/// A duration written as text, `10s`, `500ms`, `1m 30s`.
fn duration(check: &mut Check<'_>, label: &str, node: &Node) -> Option<Duration> {
    match &node.kind {
        Kind::Str(s) => match humantime::parse_duration(s.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                let message = format!(
                    "{label}: `{}` is not a duration ({e}; write e.g. `10s` or `500ms`)",
                    check.text(node)
                );
                check.report(Some(node.pos), message);
                None
            }
        },
        Kind::UInt(_) | Kind::Int(_) | Kind::Float(_) => {
            let message = format!(
                "{label}: expected a duration with a unit, found the number `{}` (write e.g. `{}s`)",
                check.text(node),
                check.text(node)
            );
            check.report(Some(node.pos), message);
            None
        }
        _ => {
            check.wrong_type(label, node, "a duration such as `10s`");
            None
        }
    }
}

fn admin(check: &mut Check<'_>, key: &Node, node: &Node) -> Option<AdminConfig> {
    let entries = check.mapping("admin", node)?;
    let mut listen = None;
    let mut token_env = None;
    let mut dead_letters = None;
    let mut dead_letters_max_bytes = None;
    let mut ok = true;
    for (k, value) in entries {
        match k.as_str() {
            Some("listen") => match check.string("admin.listen", value) {
                Some(s) if s.parse::<SocketAddr>().is_ok() => listen = Some(s.to_owned()),
                Some(_) => {
                    let message = format!(
                        "admin.listen: `{}` is not a socket address (write e.g. `127.0.0.1:9090`)",
                        check.text(value)
                    );
                    check.report(Some(value.pos), message);
                    ok = false;
                }
                None => ok = false,
            },
            Some("token_env") => match check.string("admin.token_env", value) {
                Some(s) if is_env_name(s) => token_env = Some(s.to_owned()),
                Some(_) => {
                    let message = format!(
                        "admin.token_env: `{}` is not an environment variable name (letters, digits and `_`, not starting with a digit)",
                        check.text(value)
                    );
                    check.report(Some(value.pos), message);
                    ok = false;
                }
                None => ok = false,
            },
            Some("dead_letters") => {
                dead_letters = check
                    .integer("admin.dead_letters", value, 0, MAX_DEAD_LETTERS)
                    .map(|n| n as usize);
            }
            Some("dead_letters_max_bytes") => {
                dead_letters_max_bytes = byte_size(check, "admin.dead_letters_max_bytes", value);
            }
            _ => check.unknown_key(Some("admin"), k, ADMIN_KEYS),
        }
    }
    match listen {
        Some(listen) => Some(AdminConfig {
            listen,
            token_env,
            dead_letters,
            dead_letters_max_bytes,
        }),
        None => {
            if ok {
                check.report(
                    Some(key.pos),
                    "admin: `listen` is required (e.g. `listen: 127.0.0.1:9090`)",
                );
            }
            None
        }
    }
}

/// A size in bytes: an integer, or a string with a unit (`64MiB`, `512 KiB`,
/// `1GB`, `4096B`).
fn byte_size(check: &mut Check<'_>, label: &str, node: &Node) -> Option<usize> {
    let parsed = match &node.kind {
        Kind::UInt(n) => Some(*n),
        Kind::Str(s) => parse_size(s),
        _ => {
            check.wrong_type(label, node, "a size such as `64MiB` or a number of bytes");
            return None;
        }
    };
    match parsed.and_then(|n| usize::try_from(n).ok()) {
        Some(n) => Some(n),
        None => {
            let message = format!(
                "{label}: `{}` is not a size (write a number of bytes, or e.g. `64MiB`, `512KiB`, `1GB`)",
                check.text(node)
            );
            check.report(Some(node.pos), message);
            None
        }
    }
}

/// `64MiB`, `512 KiB`, `1GB`, `10B`, `300`: the bytes; `None` when it is
/// no size or overflows.
fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let factor: u64 = match text[digits..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" => 1 << 10,
        "mb" => 1000 * 1000,
        "mib" => 1 << 20,
        "gb" => 1000 * 1000 * 1000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn telemetry(check: &mut Check<'_>, node: &Node) -> TelemetryConfig {
    let mut telemetry = TelemetryConfig::default();
    let Some(entries) = check.mapping("telemetry", node) else {
        return telemetry;
    };
    for (k, value) in entries {
        match k.as_str() {
            Some("otlp_endpoint") => match check.string("telemetry.otlp_endpoint", value) {
                Some(s) if s.starts_with("http://") || s.starts_with("https://") => {
                    telemetry.otlp_endpoint = Some(s.to_owned());
                }
                Some(_) => {
                    let message = format!(
                        "telemetry.otlp_endpoint: `{}` is not an http:// or https:// URL (write e.g. `http://localhost:4318`)",
                        check.text(value)
                    );
                    check.report(Some(value.pos), message);
                }
                None => {}
            },
            Some("protocol") => match check.string("telemetry.protocol", value) {
                Some(PROTOCOL) => telemetry.protocol = Some(PROTOCOL.to_owned()),
                Some(_) => {
                    let message = format!(
                        "telemetry.protocol: `{}` is not supported (only `{PROTOCOL}`)",
                        check.text(value)
                    );
                    check.report(Some(value.pos), message);
                }
                None => {}
            },
            Some("service_name") => match check.string("telemetry.service_name", value) {
                Some(s) if s.trim().is_empty() => {
                    check.report(Some(value.pos), "telemetry.service_name: must not be empty")
                }
                Some(s) => telemetry.service_name = Some(s.to_owned()),
                None => {}
            },
            _ => check.unknown_key(Some("telemetry"), k, TELEMETRY_KEYS),
        }
    }
    telemetry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> HostConfig {
        parse(Path::new("conf/plughost.yaml"), text).unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        })
    }

    fn errors(text: &str) -> Vec<String> {
        parse(Path::new("plughost.yaml"), text)
            .expect_err("should fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_key_is_read() {
        let c = ok("plugins: [plugins, /abs/dir]\n\
             drain_timeout: 1m 30s\n\
             admin:\n  listen: 127.0.0.1:9090\n  token_env: PLUGHOST_TOKEN\n\
             telemetry:\n  otlp_endpoint: http://localhost:4318\n  protocol: http/protobuf\n  service_name: shop\n");
        assert_eq!(
            c.plugins,
            [PathBuf::from("conf/plugins"), PathBuf::from("/abs/dir")]
        );
        assert_eq!(c.drain_timeout, Some(Duration::from_secs(90)));
        assert_eq!(
            c.admin,
            Some(AdminConfig {
                listen: "127.0.0.1:9090".into(),
                token_env: Some("PLUGHOST_TOKEN".into()),
                dead_letters: None,
                dead_letters_max_bytes: None,
            })
        );
        assert_eq!(
            c.telemetry,
            TelemetryConfig {
                otlp_endpoint: Some("http://localhost:4318".into()),
                protocol: Some("http/protobuf".into()),
                service_name: Some("shop".into()),
            }
        );
    }

    #[test]
    fn flags_override_the_file() {
        let c = ok("plugins: [p]\ndrain_timeout: 3s\n");
        assert_eq!(c.plugins_dirs(vec![]), [PathBuf::from("conf/p")]);
        assert_eq!(c.plugins_dirs(vec!["x".into()]), [PathBuf::from("x")]);
        assert_eq!(c.drain_timeout_or(None), Duration::from_secs(3));
        assert_eq!(
            c.drain_timeout_or(Some(Duration::from_millis(5))),
            Duration::from_millis(5)
        );
        let none = HostConfig::default();
        assert_eq!(none.plugins_dirs(vec![]), [PathBuf::from("plugins")]);
        assert_eq!(none.drain_timeout_or(None), DEFAULT_DRAIN_TIMEOUT);
    }

    #[test]
    fn an_empty_file_is_the_defaults() {
        assert_eq!(ok(""), HostConfig::default());
        assert_eq!(ok("# nothing\n"), HostConfig::default());
    }

    #[test]
    fn relative_plugins_dirs_start_at_the_config_folder() {
        let c = parse(
            Path::new("/etc/ph/plughost.yaml"),
            "plugins: [a, ../b, /c]\n",
        )
        .unwrap();
        assert_eq!(
            c.plugins,
            [
                PathBuf::from("/etc/ph/a"),
                PathBuf::from("/etc/ph/../b"),
                PathBuf::from("/c")
            ]
        );
        // A bare file name: relative to the current folder, like the file itself.
        let c = parse(Path::new("plughost.yaml"), "plugins: [a]\n").unwrap();
        assert_eq!(c.plugins, [PathBuf::from("a")]);
    }

    #[test]
    fn unknown_keys_get_one_suggestion() {
        assert_eq!(
            errors("plugins: [a]\ndrain_timout: 5s\ncolour: red\n"),
            [
                "plughost.yaml:2:1: unknown key `drain_timout` (did you mean `drain_timeout`?)",
                "plughost.yaml:3:1: unknown key `colour`",
            ]
        );
        assert_eq!(
            errors("admin:\n  listen: 127.0.0.1:1\n  tokenenv: X\n"),
            ["plughost.yaml:3:3: unknown key `tokenenv` in `admin` (did you mean `token_env`?)"]
        );
        assert_eq!(
            errors("telemetry:\n  endpoint: http://x:4318\n"),
            [
                "plughost.yaml:2:3: unknown key `endpoint` in `telemetry` (did you mean `otlp_endpoint`?)"
            ]
        );
    }

    #[test]
    fn wrong_types_are_reported_where_they_stand() {
        assert_eq!(
            errors("plugins: plugins\n"),
            [
                "plughost.yaml:1:10: plugins: expected a list of directories, found the string `plugins` (write `[plugins]` for a list of one)"
            ]
        );
        assert_eq!(
            errors("plugins: [a, 3]\nadmin: yes\ntelemetry: [x]\n"),
            [
                "plughost.yaml:1:14: plugins[1]: expected a string, found the number `3`",
                "plughost.yaml:2:8: admin: expected a mapping of keys to values, found the string `yes`",
                "plughost.yaml:3:12: telemetry: expected a mapping of keys to values, found a list",
            ]
        );
        assert_eq!(
            errors("- a\n"),
            [
                "plughost.yaml:1:1: the host config: expected a mapping of keys to values, found a list"
            ]
        );
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        let e = errors("drain_timeout: 10\n");
        assert_eq!(
            e,
            [
                "plughost.yaml:1:16: drain_timeout: expected a duration with a unit, found the number `10` (write e.g. `10s`)"
            ]
        );
        let e = errors("drain_timeout: ten seconds\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("plughost.yaml:1:16: drain_timeout: `ten seconds` is not a duration"),
            "{e:?}"
        );
    }

    #[test]
    fn admin_is_checked() {
        assert_eq!(
            errors("admin:\n  listen: localhost\n"),
            [
                "plughost.yaml:2:11: admin.listen: `localhost` is not a socket address (write e.g. `127.0.0.1:9090`)"
            ]
        );
        assert_eq!(
            errors("admin:\n  token_env: T\n"),
            ["plughost.yaml:1:1: admin: `listen` is required (e.g. `listen: 127.0.0.1:9090`)"]
        );
        let e = errors("admin:\n  listen: '[::1]:80'\n  token_env: 1X\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("plughost.yaml:3:14: admin.token_env: `1X`"),
            "{e:?}"
        );
    }

    #[test]
    fn dead_letter_bounds_are_read_and_checked() {
        let c = ok(
            "admin:\n  listen: 127.0.0.1:1\n  dead_letters: 0\n  dead_letters_max_bytes: 64MiB\n",
        );
        let limits = c.dead_letter_limits();
        assert_eq!(limits.count, 0);
        assert_eq!(limits.max_bytes, 64 * 1024 * 1024);
        let c = ok("admin:\n  listen: 127.0.0.1:1\n  dead_letters_max_bytes: 4096\n");
        assert_eq!(
            c.dead_letter_limits().count,
            crate::dead_letters::DEFAULT_COUNT
        );
        assert_eq!(c.dead_letter_limits().max_bytes, 4096);
        assert_eq!(
            HostConfig::default().dead_letter_limits(),
            crate::dead_letters::Limits::default()
        );
        assert_eq!(
            errors(
                "admin:\n  listen: 127.0.0.1:1\n  dead_letters: -1\n  dead_letters_max_bytes: lots\n  dead_leters: 3\n"
            ),
            [
                "plughost.yaml:3:17: admin.dead_letters: must be at least 0, found `-1`",
                "plughost.yaml:4:27: admin.dead_letters_max_bytes: `lots` is not a size (write a number of bytes, or e.g. `64MiB`, `512KiB`, `1GB`)",
                "plughost.yaml:5:3: unknown key `dead_leters` in `admin` (did you mean `dead_letters`?)",
            ]
        );
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1GB"), Some(1_000_000_000));
        assert_eq!(parse_size("2gib"), Some(2 << 30));
        assert_eq!(parse_size("10B"), Some(10));
        assert_eq!(parse_size("300"), Some(300));
        assert_eq!(parse_size("MiB"), None);
        assert_eq!(parse_size("1.5MiB"), None);
        assert_eq!(parse_size("3 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }

    #[test]
    fn telemetry_values_are_checked() {
        assert_eq!(
            errors(
                "telemetry:\n  otlp_endpoint: localhost:4318\n  protocol: grpc\n  service_name: ''\n"
            ),
            [
                "plughost.yaml:2:18: telemetry.otlp_endpoint: `localhost:4318` is not an http:// or https:// URL (write e.g. `http://localhost:4318`)",
                "plughost.yaml:3:13: telemetry.protocol: `grpc` is not supported (only `http/protobuf`)",
                "plughost.yaml:4:17: telemetry.service_name: must not be empty",
            ]
        );
    }

    #[test]
    fn bridge_points_to_the_cluster() {
        assert_eq!(
            errors("bridge:\n  nats: nats://x\n"),
            [
                "plughost.yaml:1:1: `bridge`: the bus bridge is not available yet; `cluster` shares the bus over NATS (docs/cluster.md)"
            ]
        );
    }

    #[test]
    fn duplicates_and_syntax_errors() {
        assert_eq!(
            errors("plugins: [a]\nplugins: [b]\n"),
            ["plughost.yaml:2:1: duplicate key `plugins` (first written at line 1, column 1)"]
        );
        let e = errors("plugins: [a\nadmin: 1\n");
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("plughost.yaml:2:"), "{e:?}");
    }

    /// The example at the repo root: valid as shipped, and with every setting
    /// uncommented it sets every key.
    #[test]
    fn the_example_sets_every_key() {
        let text = include_str!("../../plughost.yaml.example");
        assert_eq!(ok(text), HostConfig::default());
        let uncommented: String = text
            .lines()
            .map(|l| {
                let setting =
                    l.starts_with("#  ") || l.as_bytes().get(1).is_some_and(u8::is_ascii_lowercase);
                if l.starts_with('#') && setting {
                    &l[1..]
                } else {
                    l
                }
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = ok(&uncommented);
        assert_eq!(c.plugins.len(), 2);
        assert!(c.drain_timeout.is_some());
        let admin = c.admin.expect("admin");
        assert!(admin.token_env.is_some());
        assert!(c.telemetry.otlp_endpoint.is_some());
        assert!(c.telemetry.protocol.is_some());
        assert!(c.telemetry.service_name.is_some());
        let cluster = c.cluster.expect("cluster");
        assert_eq!(cluster.servers.len(), 2);
        assert!(cluster.name.is_some());
        assert!(cluster.creds.is_some());
        let tls = cluster.tls.expect("tls");
        assert!(tls.ca.is_some() && tls.cert.is_some() && tls.key.is_some());
        assert!(cluster.jetstream.is_some());
    }

    #[test]
    fn an_unreadable_file_is_one_error() {
        let e = load(Path::new("/nonexistent/plughost.yaml")).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with("/nonexistent/plughost.yaml: cannot read the host config")
        );
    }
}
