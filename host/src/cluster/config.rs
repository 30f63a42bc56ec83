//! The `cluster:` section of `plughost.yaml` (SPEC §14): its keys read into a
//! typed [`ClusterConfig`], every problem reported at its line and column.
//!
//! Pure: nothing here connects or reads a file. Server URLs are checked to
//! be `nats://` or `tls://` URLs with a host (credentials in them allowed);
//! patterns are checked as topic patterns, and an `export` pattern under
//! `plughost.` is refused (host events never cross). Paths (`creds`, `tls`)
//! start at the config file's folder, like the plugins directories.

use std::path::{Path, PathBuf};

use crate::manifest::raw::{Kind, Node};
use crate::manifest::values::Check;
use crate::topic::Pattern;

/// The keys under `cluster:`.
const KEYS: &[&str] = &[
    "nats",
    "name",
    "export",
    "import",
    "jetstream",
    "buffer",
    "creds",
    "tls",
];

/// The keys under `cluster.tls:`.
const TLS_KEYS: &[&str] = &["ca", "cert", "key"];

/// The keys under `cluster.jetstream:`.
const JETSTREAM_KEYS: &[&str] = &["stream", "topics"];

/// How many exports wait for the server when `buffer` is not given.
pub const DEFAULT_BUFFER: usize = 10_000;

/// The largest `buffer` accepted.
const MAX_BUFFER: u64 = 10_000_000;

/// The cluster's settings: how this host joins the bus shared over NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://` or `tls://`, with `user:pass@` or `token@` when needed).
    pub servers: Vec<String>,
    /// This host's name; `None` for the machine's hostname.
    pub name: Option<String>,
    /// Local topic patterns published to NATS (`plughost.*` never is).
    pub export: Vec<String>,
    /// NATS subject patterns delivered to the local bus.
    pub import: Vec<String>,
    /// How many exports wait for the server at most; past it the oldest is dropped.
    pub buffer: usize,
    /// A `.creds` file (JWT and nkey seed).
    pub creds: Option<PathBuf>,
    /// TLS files, for `tls://` servers or client certificates.
    pub tls: Option<TlsConfig>,
    /// Stored delivery: the topics kept in a JetStream stream.
    pub jetstream: Option<JetStreamConfig>,
}

impl ClusterConfig {
    /// The settings for `servers` with every other key at its default:
    /// the hostname as name, every topic exported and imported, a buffer of
    /// [`DEFAULT_BUFFER`] events.
    pub fn new(servers: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ClusterConfig {
            servers: servers.into_iter().map(Into::into).collect(),
            name: None,
            export: vec![">".to_owned()],
            import: vec![">".to_owned()],
            buffer: DEFAULT_BUFFER,
            creds: None,
            tls: None,
            jetstream: None,
        }
    }
}

/// `cluster.tls:`: files for TLS; relative paths start at the config file's folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// Root certificates to trust (PEM).
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM); needs `key`.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM); needs `cert`.
    pub key: Option<PathBuf>,
}

/// `cluster.jetstream:`: the topics stored in a JetStream stream, delivered
/// from durable consumers (see `cluster::groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
    /// The stream's name.
    pub stream: String,
    /// Topic patterns stored in it.
    pub topics: Vec<String>,
}

/// Reads `cluster:` (`key` is its key, `node` its value); `None` when it has errors.
pub(crate) fn section(
    check: &mut Check<'_>,
    key: &Node,
    node: &Node,
    base: &Path,
) -> Option<ClusterConfig> {
    let entries = check.mapping("cluster", node)?;
    let before = check.problem_count();
    let mut config = ClusterConfig::new(Vec::<String>::new());
    let mut has_servers = false;
    for (k, value) in entries {
        match k.as_str() {
            Some("nats") => {
                has_servers = true;
                config.servers = servers(check, value);
            }
            Some("name") => match check.string("cluster.name", value) {
                Some(s) if valid_name(s) => config.name = Some(s.to_owned()),
                Some(_) => {
                    let message = format!(
                        "cluster.name: `{}` is not a host name (letters, digits, `-`, `_` and `.`, not empty)",
                        check.text(value)
                    );
                    check.report(Some(value.pos), message);
                }
                None => {}
            },
            Some("export") => config.export = patterns(check, "cluster.export", value, true),
            Some("import") => config.import = patterns(check, "cluster.import", value, false),
            Some("buffer") => {
                if let Some(n) = check.integer("cluster.buffer", value, 1, MAX_BUFFER) {
                    config.buffer = n as usize;
                }
            }
            Some("creds") => config.creds = path(check, "cluster.creds", value, base),
            Some("tls") => config.tls = tls(check, value, base),
            Some("jetstream") => config.jetstream = jetstream(check, k, value),
            _ => check.unknown_key(Some("cluster"), k, KEYS),
        }
    }
    if !has_servers {
        check.report(
            Some(key.pos),
            "cluster: `nats` is required (e.g. `nats: nats://127.0.0.1:4222`)",
        );
    }
    (check.problem_count() == before).then_some(config)
}

/// `nats`: one URL or a list of them.
fn servers(check: &mut Check<'_>, node: &Node) -> Vec<String> {
    let items: Vec<(String, &Node)> = match &node.kind {
        Kind::Seq(items) if items.is_empty() => {
            check.report(Some(node.pos), "cluster.nats: the list of servers is empty");
            return Vec::new();
        }
        Kind::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("cluster.nats[{i}]"), n))
            .collect(),
        _ => vec![("cluster.nats".to_owned(), node)],
    };
    let mut urls = Vec::with_capacity(items.len());
    for (label, item) in items {
        let Some(s) = check.string(&label, item) else {
            continue;
        };
        match server_url(s) {
            Ok(()) => urls.push(s.to_owned()),
            Err(why) => {
                let message = format!(
                    "{label}: `{}` is not a NATS server URL: {why} (write e.g. `nats://127.0.0.1:4222`)",
                    check.text(item)
                );
                check.report(Some(item.pos), message);
            }
        }
    }
    urls
}

/// Checks one server URL: `nats://` or `tls://`, a host, and what
/// async-nats itself accepts.
fn server_url(s: &str) -> Result<(), String> {
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err("it has no scheme (`nats://` or `tls://`)".to_owned());
    };
    if scheme != "nats" && scheme != "tls" {
        return Err(format!("the scheme `{scheme}` is not `nats` or `tls`"));
    }
    let addr: async_nats::ServerAddr = s.parse().map_err(|e: std::io::Error| e.to_string())?;
    if addr.host().is_empty() || rest.starts_with(':') || rest.starts_with('/') {
        return Err("it has no host".to_owned());
    }
    Ok(())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A list of topic patterns; with `export`, none may be under `plughost.`.
fn patterns(check: &mut Check<'_>, label: &str, node: &Node, export: bool) -> Vec<String> {
    let Some(items) = check.list(label, node, "topic patterns") else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_label = format!("{label}[{i}]");
        let Some(s) = check.string(&item_label, item) else {
            continue;
        };
        match Pattern::parse(s) {
            Err(e) => check.report(Some(item.pos), format!("{item_label}: {e}")),
            Ok(_) if export && s.split('.').next() == Some("plughost") => {
                let message = format!(
                    "{item_label}: `{s}` is under `plughost.`: host events are never exported"
                );
                check.report(Some(item.pos), message);
            }
            Ok(_) => out.push(s.to_owned()),
        }
    }
    out
}

fn path(check: &mut Check<'_>, label: &str, node: &Node, base: &Path) -> Option<PathBuf> {
    match check.string(label, node) {
        Some(s) if s.trim().is_empty() => {
            check.report(Some(node.pos), format!("{label}: must not be empty"));
            None
        }
        Some(s) => Some(base.join(s)),
        None => None,
    }
}

fn tls(check: &mut Check<'_>, node: &Node, base: &Path) -> Option<TlsConfig> {
    let entries = check.mapping("cluster.tls", node)?;
    let mut tls = TlsConfig::default();
    for (k, value) in entries {
        match k.as_str() {
            Some("ca") => tls.ca = path(check, "cluster.tls.ca", value, base),
            Some("cert") => tls.cert = path(check, "cluster.tls.cert", value, base),
            Some("key") => tls.key = path(check, "cluster.tls.key", value, base),
            _ => check.unknown_key(Some("cluster.tls"), k, TLS_KEYS),
        }
    }
    if tls.cert.is_some() != tls.key.is_some() {
        check.report(
            Some(node.pos),
            "cluster.tls: `cert` and `key` go together (a client certificate needs its key)",
        );
    }
    Some(tls)
}

fn jetstream(check: &mut Check<'_>, key: &Node, node: &Node) -> Option<JetStreamConfig> {
    let entries = check.mapping("cluster.jetstream", node)?;
    let mut stream = None;
    let mut topics = None;
    let mut stream_written = false;
    for (k, value) in entries {
        match k.as_str() {
            Some("stream") => {
                stream_written = true;
                match check.string("cluster.jetstream.stream", value) {
                    Some(s) if valid_stream(s) => stream = Some(s.to_owned()),
                    Some(_) => {
                        let message = format!(
                            "cluster.jetstream.stream: `{}` is not a stream name (no spaces, `.`, `*`, `>`, `/` or `\\`)",
                            check.text(value)
                        );
                        check.report(Some(value.pos), message);
                    }
                    None => {}
                }
            }
            Some("topics") => {
                topics = Some(patterns(check, "cluster.jetstream.topics", value, true))
            }
            _ => check.unknown_key(Some("cluster.jetstream"), k, JETSTREAM_KEYS),
        }
    }
    match (stream, topics) {
        (Some(stream), Some(topics)) => Some(JetStreamConfig { stream, topics }),
        (None, _) if stream_written => None,
        (None, _) => {
            check.report(
                Some(key.pos),
                "cluster.jetstream: `stream` is required (e.g. `stream: PLUGHOST`)",
            );
            None
        }
        (_, None) => {
            check.report(
                Some(key.pos),
                "cluster.jetstream: `topics` is required (e.g. `topics: [\"orders.>\"]`)",
            );
            None
        }
    }
}

fn valid_stream(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
}

#[cfg(test)]
mod tests {
    use crate::config::{HostConfig, parse};
    use std::path::{Path, PathBuf};

    use super::*;

    fn ok(text: &str) -> ClusterConfig {
        let c: HostConfig =
            parse(Path::new("/etc/ph/plughost.yaml"), text).unwrap_or_else(|e| panic!("{e:?}"));
        c.cluster.expect("a cluster section")
    }

    fn errors(text: &str) -> Vec<String> {
        parse(Path::new("plughost.yaml"), text)
            .expect_err("should fail")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_and_one_url() {
        let c = ok("cluster:\n  nats: nats://127.0.0.1:4222\n");
        assert_eq!(c, ClusterConfig::new(["nats://127.0.0.1:4222"]));
        assert_eq!(c.export, [">"]);
        assert_eq!(c.import, [">"]);
        assert_eq!(c.buffer, DEFAULT_BUFFER);
        assert_eq!(c.name, None);
    }

    #[test]
    fn every_key_is_read() {
        let c = ok(
            "cluster:\n  nats: [nats://u:p@a:4222, tls://tok@b]\n  name: edge-1\n  \
             export: [orders.>, 'metrics.*']\n  import: [orders.>]\n  buffer: 5\n  \
             creds: nats.creds\n  tls: {ca: ca.pem, cert: /c.pem, key: k.pem}\n  \
             jetstream: {stream: PLUGHOST, topics: [orders.>]}\n",
        );
        assert_eq!(c.servers, ["nats://u:p@a:4222", "tls://tok@b"]);
        assert_eq!(c.name.as_deref(), Some("edge-1"));
        assert_eq!(c.export, ["orders.>", "metrics.*"]);
        assert_eq!(c.import, ["orders.>"]);
        assert_eq!(c.buffer, 5);
        assert_eq!(c.creds, Some(PathBuf::from("/etc/ph/nats.creds")));
        assert_eq!(
            c.tls,
            Some(TlsConfig {
                ca: Some("/etc/ph/ca.pem".into()),
                cert: Some("/c.pem".into()),
                key: Some("/etc/ph/k.pem".into()),
            })
        );
        assert_eq!(
            c.jetstream,
            Some(JetStreamConfig {
                stream: "PLUGHOST".into(),
                topics: vec!["orders.>".into()],
            })
        );
    }

    #[test]
    fn malformed_urls_are_errors_at_their_position() {
        assert_eq!(
            errors(
                "cluster:\n  nats: [nats://a:4222, 'http://b:4222', localhost:4222, 'nats://:4222']\n"
            ),
            [
                "plughost.yaml:2:25: cluster.nats[1]: `http://b:4222` is not a NATS server URL: the scheme `http` is not `nats` or `tls` (write e.g. `nats://127.0.0.1:4222`)",
                "plughost.yaml:2:42: cluster.nats[2]: `localhost:4222` is not a NATS server URL: it has no scheme (`nats://` or `tls://`) (write e.g. `nats://127.0.0.1:4222`)",
                "plughost.yaml:2:58: cluster.nats[3]: `nats://:4222` is not a NATS server URL: NATS server URL is invalid: empty host (write e.g. `nats://127.0.0.1:4222`)",
            ]
        );
        let e = errors("cluster:\n  nats: 'nats://a:99999'\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(
                "plughost.yaml:2:9: cluster.nats: `nats://a:99999` is not a NATS server URL"
            ),
            "{e:?}"
        );
        assert_eq!(
            errors("cluster:\n  nats: []\n"),
            ["plughost.yaml:2:9: cluster.nats: the list of servers is empty"]
        );
        assert_eq!(
            errors("cluster:\n  name: a\n"),
            ["plughost.yaml:1:1: cluster: `nats` is required (e.g. `nats: nats://127.0.0.1:4222`)"]
        );
    }

    #[test]
    fn host_topics_are_never_exported() {
        assert_eq!(
            errors(
                "cluster:\n  nats: nats://a\n  export: [a.b, plughost.>, 'plughost.plugin.*']\n"
            ),
            [
                "plughost.yaml:3:17: cluster.export[1]: `plughost.>` is under `plughost.`: host events are never exported",
                "plughost.yaml:3:29: cluster.export[2]: `plughost.plugin.*` is under `plughost.`: host events are never exported",
            ]
        );
        // Importing them is not refused by the config (they are dropped on arrival).
        assert_eq!(
            ok("cluster:\n  nats: nats://a\n  import: [a.>]\n").import,
            ["a.>"]
        );
        let e = errors("cluster:\n  nats: nats://a\n  import: ['a..b']\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("plughost.yaml:3:12: cluster.import[0]: "),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        assert_eq!(
            errors(
                "cluster:\n  nats: nats://a\n  exports: [a]\n  tls: {cafile: x}\n  jetstream: {stream: S, topic: [a]}\n"
            ),
            [
                "plughost.yaml:3:3: unknown key `exports` in `cluster` (did you mean `export`?)",
                "plughost.yaml:4:9: unknown key `cafile` in `cluster.tls` (did you mean `ca`?)",
                "plughost.yaml:5:3: cluster.jetstream: `topics` is required (e.g. `topics: [\"orders.>\"]`)",
                "plughost.yaml:5:26: unknown key `topic` in `cluster.jetstream` (did you mean `topics`?)",
            ]
        );
    }

    #[test]
    fn values_are_checked() {
        assert_eq!(
            errors(
                "cluster:\n  nats: nats://a\n  buffer: 0\n  name: 'a b'\n  tls: {cert: c.pem}\n  jetstream: {stream: a.b, topics: [x]}\n"
            ),
            [
                "plughost.yaml:3:11: cluster.buffer: must be at least 1, found `0`",
                "plughost.yaml:4:9: cluster.name: `a b` is not a host name (letters, digits, `-`, `_` and `.`, not empty)",
                "plughost.yaml:5:8: cluster.tls: `cert` and `key` go together (a client certificate needs its key)",
                "plughost.yaml:6:23: cluster.jetstream.stream: `a.b` is not a stream name (no spaces, `.`, `*`, `>`, `/` or `\\`)",
            ]
        );
    }
}
