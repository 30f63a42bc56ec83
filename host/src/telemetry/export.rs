//! OTLP export of traces and metrics, turned on by the environment or the host config.
//!
//! With no `OTEL_EXPORTER_OTLP_ENDPOINT` (nor a signal-specific endpoint) and
//! no `telemetry.otlp_endpoint` in the host config, nothing leaves the
//! process. With one, spans (through the `tracing-opentelemetry` layer) and
//! metrics (a periodic reader on the host's meter provider) are sent over OTLP
//! HTTP (protobuf, or JSON with `OTEL_EXPORTER_OTLP_PROTOCOL=http/json`) by
//! background threads: a slow or absent collector never slows event
//! handling. `OTEL_SERVICE_NAME` (else the config's `telemetry.service_name`)
//! names the service, `plughost` by default. `OTEL_TRACES_SAMPLER` picks the
//! spans ([`super::sampler`]); a collector that refuses is said once per
//! signal, and spans the full export queue dropped are counted and said at
//! shutdown (`super::watch`).
//!
//! The standard variables win over the host config, key by key: an endpoint
//! variable replaces the config's endpoint for its signals, `OTEL_SERVICE_NAME`
//! its service name, `OTEL_EXPORTER_OTLP_PROTOCOL` its protocol.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{
    MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider};

use super::grpc;
use super::https::HttpsClient;
use super::sampler::{self, Sampling};
use super::watch::{CountedProcessor, CountedSpans, SpanCounts, WatchedClient};
use crate::config::TelemetryConfig;

/// The service name when neither `OTEL_SERVICE_NAME` nor the host config sets one.
pub const DEFAULT_SERVICE_NAME: &str = "plughost";

/// The service name chosen by [`Export::from_env_and`], for [`resource`].
static SERVICE_NAME: OnceLock<String> = OnceLock::new();

/// What the environment and the host config ask for.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The service name of the resource.
    pub service_name: String,
    /// A warning to log (an unsupported protocol or sampler was asked for).
    pub warning: Option<String>,
    /// The OTLP encoding over HTTP: protobuf (the default) or JSON.
    pub protocol: Protocol,
    /// Which spans are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampling: Sampling,
    /// The URL spans go to when it comes from the host config; `None` when a
    /// variable (or the exporter's default) decides.
    pub traces_endpoint: Option<String>,
    /// The URL metrics go to when it comes from the host config; `None` when a
    /// variable (or the exporter's default) decides.
    pub metrics_endpoint: Option<String>,
}

impl Config {
    /// Reads the configuration through `var` (`std::env::var` in the binary);
    /// `None` when no endpoint is configured.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<Config> {
        Config::from_lookup_and(var, &TelemetryConfig::default())
    }

    /// Like [`Config::from_lookup`], with the host config's `telemetry:` below
    /// the variables: each variable that is set wins over its key.
    pub fn from_lookup_and(
        var: impl Fn(&str) -> Option<String>,
        file: &TelemetryConfig,
    ) -> Option<Config> {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        let any = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let traces = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| any.clone());
        let metrics = set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").or_else(|| any.clone());
        let file_endpoint = file
            .otlp_endpoint
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| e.trim_end_matches('/'));
        if traces.is_none() && metrics.is_none() && file_endpoint.is_none() {
            return None;
        }
        // The exporter prefers an endpoint given in code over every variable,
        // so the config's is given only for a signal no variable covers.
        let from_file = |env: &Option<String>, path: &str| match (env, file_endpoint) {
            (None, Some(base)) => Some(format!("{base}{path}")),
            _ => None,
        };
        let asked = set("OTEL_EXPORTER_OTLP_PROTOCOL").or_else(|| file.protocol.clone());
        let (protocol, protocol_warning) = match asked.as_deref().map(str::trim) {
            None | Some("http/protobuf") => (Protocol::HttpBinary, None),
            Some("http/json") => (Protocol::HttpJson, None),
            Some("grpc") => (Protocol::Grpc, None),
            Some(other) => (
                Protocol::HttpBinary,
                Some(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported \
                     (grpc, http/protobuf, http/json); using http/protobuf"
                )),
            ),
        };
        let (sampling, sampler_warning) = Sampling::from_lookup(set);
        let warning = match (protocol_warning, sampler_warning) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        Some(Config {
            service_name: service_name(&set, file),
            warning,
            protocol,
            sampling,
            traces_endpoint: from_file(&traces, "/v1/traces"),
            metrics_endpoint: from_file(&metrics, "/v1/metrics"),
        })
    }
}

fn service_name(set: &impl Fn(&str) -> Option<String>, file: &TelemetryConfig) -> String {
    set("OTEL_SERVICE_NAME")
        .or_else(|| file.service_name.clone())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned())
}

/// The resource of every span and metric: the service name.
pub fn resource() -> Resource {
    let name = match SERVICE_NAME.get() {
        Some(name) => name.clone(),
        None => std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
    };
    Resource::builder().with_service_name(name).build()
}

/// How long one export request may take (the OTLP default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The export queue's size when `OTEL_BSP_MAX_QUEUE_SIZE` is unset: room
/// for the spans of a burst of events while a batch is on its way (the
/// SDK's 2048 drops spans of a busy plugin exporting every trace).
const QUEUE_SIZE: usize = 65_536;

/// A running OTLP export. Flushes and stops on [`Export::shutdown`] or drop.
#[derive(Debug)]
pub struct Export {
    tracer_provider: SdkTracerProvider,
    metric_exporter: Mutex<Option<MetricExporter>>,
    spans: Arc<SpanCounts>,
    /// The runtime the gRPC exporters' connections run on (gRPC only).
    grpc_runtime: Option<tokio::runtime::Runtime>,
}

impl Export {
    /// Starts the export the environment asks for, if any.
    pub fn from_env() -> Result<Option<Export>, ExportError> {
        Export::from_env_and(&TelemetryConfig::default())
    }

    /// Starts the export the environment and the host config's `telemetry:`
    /// ask for, if any; the variables win (see [`Config::from_lookup_and`]).
    /// Also fixes the service name of [`resource`] and the sampler of the
    /// delivery spans ([`sampler::install`]) for the process.
    pub fn from_env_and(file: &TelemetryConfig) -> Result<Option<Export>, ExportError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let _ = SERVICE_NAME.set(service_name(&env, file));
        let Some(config) = Config::from_lookup_and(env, file) else {
            return Ok(None);
        };
        if let Some(w) = &config.warning {
            eprintln!("plughost: {w}");
        }
        sampler::install(config.sampling);
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let mut grpc_runtime = None;
        let (spans, metrics, grpc_endpoint) = if config.protocol == Protocol::Grpc {
            let rt = grpc::runtime()?;
            let built = grpc::exporters(&config, &var, &rt)?;
            grpc_runtime = Some(rt);
            (built.spans, built.metrics, Some(built.traces_endpoint))
        } else {
            let (spans, metrics) = http_exporters(&config, &var)?;
            (spans, metrics, None)
        };
        let resource = Resource::builder()
            .with_service_name(config.service_name)
            .build();
        let counts = Arc::new(SpanCounts::default());
        let mut batch = opentelemetry_sdk::trace::BatchConfigBuilder::default();
        if env("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
            batch = batch.with_max_queue_size(QUEUE_SIZE);
        }
        let spans = CountedSpans::new(spans, counts.clone()).watching(grpc_endpoint);
        let processor = BatchSpanProcessor::builder(spans)
            .with_batch_config(batch.build())
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(config.sampling.sdk())
            .with_span_processor(CountedProcessor::new(processor, counts.clone()))
            .build();
        Ok(Some(Export {
            tracer_provider,
            metric_exporter: Mutex::new(Some(metrics)),
            spans: counts,
            grpc_runtime,
        }))
    }

    /// The tracer for the `tracing-opentelemetry` layer.
    pub fn tracer(&self) -> SdkTracer {
        self.tracer_provider.tracer("plughost")
    }

    /// The periodic metric reader for the host's meter provider (once).
    pub fn take_metric_reader(&self) -> Option<PeriodicReader<MetricExporter>> {
        let exporter = self
            .metric_exporter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        Some(PeriodicReader::builder(exporter).build())
    }

    /// Sends the spans still pending and stops the trace pipeline; says how
    /// many spans were lost (a full queue, a refusing collector), if any.
    pub fn shutdown(&self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            tracing::debug!("trace export shutdown: {e}");
        }
        let lost = self.spans.lost_in_queue();
        if lost > 0 {
            tracing::warn!(
                target: "plughost::telemetry",
                "{lost} spans were dropped: the export queue was full \
                 (raise OTEL_BSP_MAX_QUEUE_SIZE, or sample with OTEL_TRACES_SAMPLER)"
            );
        }
        let refused = self.spans.refused();
        if refused > 0 {
            tracing::warn!(
                target: "plughost::telemetry",
                "{refused} spans were not accepted by the collector"
            );
        }
    }
}

/// The HTTP client of one signal's exporter: TLS for an `https://` endpoint.
enum Client {
    /// Plain HTTP.
    Http(reqwest::blocking::Client),
    /// HTTPS.
    Https(HttpsClient),
}

/// Why OTLP export could not be set up (the host then runs without it).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The gRPC exporters could not be built.
    #[error(transparent)]
    Grpc(#[from] super::grpc::GrpcError),
    /// The HTTPS client could not be built (its CA file, its TLS setup).
    #[error("OTLP HTTPS client for {endpoint}: {error}")]
    Https {
        /// The endpoint it was for.
        endpoint: String,
        /// Why.
        error: super::https::TlsError,
    },
    /// The thread building the HTTP client could not start.
    #[error("OTLP HTTP client: {0}")]
    ClientThread(std::io::Error),
    /// The thread building the HTTP client panicked.
    #[error("OTLP HTTP client: its thread panicked")]
    ClientPanicked,
    /// The HTTP client could not be built.
    #[error("OTLP HTTP client: {0}")]
    HttpClient(reqwest::Error),
    /// An exporter refused its configuration.
    #[error("OTLP {signal} exporter: {error}")]
    Build {
        /// `trace` or `metric`.
        signal: &'static str,
        /// What the exporter said.
        error: opentelemetry_otlp::ExporterBuildError,
    },
}

impl Client {
    /// The client for `signal` (`TRACES`, `METRICS`): its endpoint is
    /// `file_url` (from the host config), else its own variable, else the
    /// base one; its CA file `OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE`, else
    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`.
    fn for_signal(
        var: &impl Fn(&str) -> Option<String>,
        signal: &str,
        file_url: Option<&str>,
    ) -> Result<Client, ExportError> {
        let endpoint = file_url
            .map(str::to_owned)
            .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_default();
        if !is_https(&endpoint) {
            return http_client().map(Client::Http);
        }
        let ca = var(&format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"))
            .or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"));
        HttpsClient::new(ca.as_deref().map(std::path::Path::new), EXPORT_TIMEOUT)
            .map(Client::Https)
            .map_err(|error| ExportError::Https { endpoint, error })
    }

    /// Gives `builder` this client, watched (see `super::watch`).
    fn install<B: WithHttpConfig>(self, builder: B) -> B {
        match self {
            Client::Http(c) => builder.with_http_client(WatchedClient::new(c)),
            Client::Https(c) => builder.with_http_client(WatchedClient::new(c)),
        }
    }
}

/// Whether `endpoint` is an `https://` URL.
pub(super) fn is_https(endpoint: &str) -> bool {
    endpoint
        .trim()
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The exporters' blocking HTTP client, built on a thread of its own (a
/// blocking client cannot be built inside an async runtime).
fn http_client() -> Result<reqwest::blocking::Client, ExportError> {
    std::thread::Builder::new()
        .name("otlp-client".into())
        .spawn(|| {
            reqwest::blocking::Client::builder()
                .timeout(EXPORT_TIMEOUT)
                .build()
        })
        .map_err(ExportError::ClientThread)?
        .join()
        .map_err(|_| ExportError::ClientPanicked)?
        .map_err(ExportError::HttpClient)
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.tracer_provider.shutdown();
        // Dropped where blocking may be forbidden (inside the host's runtime).
        if let Some(rt) = self.grpc_runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The OTLP/HTTP exporters `config` asks for.
fn http_exporters(
    config: &Config,
    var: &impl Fn(&str) -> Option<String>,
) -> Result<(SpanExporter, MetricExporter), ExportError> {
    let mut spans = Client::for_signal(var, "TRACES", config.traces_endpoint.as_deref())?
        .install(SpanExporter::builder().with_http())
        .with_protocol(config.protocol);
    if let Some(url) = &config.traces_endpoint {
        spans = spans.with_endpoint(url);
    }
    let spans = spans.build().map_err(|error| ExportError::Build {
        signal: "trace",
        error,
    })?;
    let mut metrics = Client::for_signal(var, "METRICS", config.metrics_endpoint.as_deref())?
        .install(MetricExporter::builder().with_http())
        .with_protocol(config.protocol);
    if let Some(url) = &config.metrics_endpoint {
        metrics = metrics.with_endpoint(url);
    }
    let metrics = metrics.build().map_err(|error| ExportError::Build {
        signal: "metric",
        error,
    })?;
    Ok((spans, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn https_is_told_by_the_scheme() {
        assert!(is_https("https://c:4318"));
        assert!(is_https(" HTTPS://c"));
        assert!(!is_https("http://c:4318"));
        assert!(!is_https("c:4318"));
        assert!(!is_https(""));
    }

    #[test]
    fn a_protocol_and_a_sampler_are_read() {
        let c = Config::from_lookup(lookup(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
        ]))
        .expect("on");
        assert_eq!(c.protocol, Protocol::HttpJson);
        let grpc = Config::from_lookup(lookup(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .expect("on");
        assert_eq!(grpc.protocol, Protocol::Grpc);
        assert_eq!(grpc.warning, None);
        assert_eq!(c.sampling, Sampling::Ratio(0.1));
        assert_eq!(c.warning, None);
    }

    #[test]
    fn nothing_without_an_endpoint() {
        assert_eq!(Config::from_lookup(lookup(&[])), None);
        assert_eq!(
            Config::from_lookup(lookup(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", " "),
                ("OTEL_SERVICE_NAME", "x")
            ])),
            None
        );
    }

    #[test]
    fn endpoint_turns_export_on() {
        let c = Config::from_lookup(lookup(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "http://localhost:4318",
        )]))
        .expect("on");
        assert_eq!(c.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(c.warning, None);
        let c = Config::from_lookup(lookup(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_SERVICE_NAME", "shop"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc/json"),
        ]))
        .expect("on");
        assert_eq!(c.service_name, "shop");
        assert!(c.warning.unwrap().contains("grpc/json"));
    }

    fn file(endpoint: Option<&str>, name: Option<&str>) -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: endpoint.map(str::to_owned),
            protocol: None,
            service_name: name.map(str::to_owned),
        }
    }

    #[test]
    fn the_host_config_turns_export_on() {
        let c = Config::from_lookup_and(lookup(&[]), &file(Some("http://c:4318/"), Some("shop")))
            .expect("on");
        assert_eq!(c.service_name, "shop");
        assert_eq!(
            c.traces_endpoint.as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert_eq!(
            c.metrics_endpoint.as_deref(),
            Some("http://c:4318/v1/metrics")
        );
        assert_eq!(
            Config::from_lookup_and(lookup(&[]), &file(None, Some("shop"))),
            None
        );
    }

    #[test]
    fn variables_win_over_the_host_config() {
        let c = Config::from_lookup_and(
            lookup(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_SERVICE_NAME", "env-name"),
            ]),
            &file(Some("http://file:4318"), Some("file-name")),
        )
        .expect("on");
        assert_eq!(c.service_name, "env-name");
        assert_eq!(c.traces_endpoint, None);
        assert_eq!(c.metrics_endpoint, None);
        // A signal-specific variable covers its signal only.
        let c = Config::from_lookup_and(
            lookup(&[(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://env:4318/v1/metrics",
            )]),
            &file(Some("http://file:4318"), None),
        )
        .expect("on");
        assert_eq!(c.service_name, DEFAULT_SERVICE_NAME);
        assert_eq!(
            c.traces_endpoint.as_deref(),
            Some("http://file:4318/v1/traces")
        );
        assert_eq!(c.metrics_endpoint, None);
    }
}
