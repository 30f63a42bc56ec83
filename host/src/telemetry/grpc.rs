//! OTLP over gRPC (`OTEL_EXPORTER_OTLP_PROTOCOL=grpc`): the tonic exporters,
//! with their connections on a small runtime of their own (the exporters
//! are called from the SDK's threads, outside the host's runtime), and TLS
//! for an `https://` endpoint, trusting the system's roots and the CA file
//! of `OTEL_EXPORTER_OTLP_CERTIFICATE`.

use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig, WithTonicConfig};

use super::export::{Config, is_https};

/// Why the gRPC export could not start.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The exporters' runtime could not start.
    #[error("OTLP gRPC runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// The CA file could not be read.
    #[error("OTEL_EXPORTER_OTLP_CERTIFICATE {path}: {error}")]
    CaFile {
        /// The file.
        path: String,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The exporter refused its configuration.
    #[error("OTLP/gRPC {signal} exporter for {endpoint}: {error}")]
    Build {
        /// `trace` or `metric`.
        signal: &'static str,
        /// Where it would send.
        endpoint: String,
        /// What the exporter said.
        error: opentelemetry_otlp::ExporterBuildError,
    },
}

/// Where an OTLP/gRPC collector listens when no variable says.
const DEFAULT_ENDPOINT: &str = "http://localhost:4317";

/// The gRPC exporters of both signals.
pub(super) struct Exporters {
    /// The span exporter.
    pub(super) spans: SpanExporter,
    /// The metric exporter.
    pub(super) metrics: MetricExporter,
    /// Where spans go, to name in a warning.
    pub(super) traces_endpoint: String,
}

/// The runtime the exporters' connections run on: one worker thread.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime, GrpcError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-grpc")
        .enable_all()
        .build()?)
}

/// The endpoint of `signal` (`TRACES`, `METRICS`): the host config's base
/// URL, else the signal's variable, else the base variable, else the default.
fn endpoint(
    config_url: Option<&str>,
    var: &impl Fn(&str) -> Option<String>,
    signal: &str,
) -> String {
    config_url
        .map(|u| base(u).to_owned())
        .or_else(|| var(&format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")))
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// A config URL without the OTLP/HTTP path the config reading added.
fn base(url: &str) -> &str {
    url.trim_end_matches("/v1/traces")
        .trim_end_matches("/v1/metrics")
}

/// TLS for `endpoint` when it is `https://`: the system's roots and the CA
/// file of `OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE`, else
/// `OTEL_EXPORTER_OTLP_CERTIFICATE`.
fn tls(
    endpoint: &str,
    var: &impl Fn(&str) -> Option<String>,
    signal: &str,
) -> Result<Option<ClientTlsConfig>, GrpcError> {
    if !is_https(endpoint) {
        return Ok(None);
    }
    let mut tls = ClientTlsConfig::new().with_native_roots();
    let ca = var(&format!("OTEL_EXPORTER_OTLP_{signal}_CERTIFICATE"))
        .or_else(|| var("OTEL_EXPORTER_OTLP_CERTIFICATE"));
    if let Some(path) = ca {
        let pem = std::fs::read(&path).map_err(|error| GrpcError::CaFile { path, error })?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(Some(tls))
}

/// Builds both exporters inside `rt`, whose tasks carry their connections.
pub(super) fn exporters(
    config: &Config,
    var: &impl Fn(&str) -> Option<String>,
    rt: &tokio::runtime::Runtime,
) -> Result<Exporters, GrpcError> {
    let _inside = rt.enter();
    let traces_endpoint = endpoint(config.traces_endpoint.as_deref(), var, "TRACES");
    let mut spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(&traces_endpoint);
    if let Some(tls) = tls(&traces_endpoint, var, "TRACES")? {
        spans = spans.with_tls_config(tls);
    }
    let spans = spans.build().map_err(|error| GrpcError::Build {
        signal: "trace",
        endpoint: traces_endpoint.clone(),
        error,
    })?;
    let metrics_endpoint = endpoint(config.metrics_endpoint.as_deref(), var, "METRICS");
    let mut metrics = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(&metrics_endpoint);
    if let Some(tls) = tls(&metrics_endpoint, var, "METRICS")? {
        metrics = metrics.with_tls_config(tls);
    }
    let metrics = metrics.build().map_err(|error| GrpcError::Build {
        signal: "metric",
        endpoint: metrics_endpoint.clone(),
        error,
    })?;
    Ok(Exporters {
        spans,
        metrics,
        traces_endpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_of_each_signal() {
        let vars = |k: &str| match k {
            "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://c:4317".to_owned()),
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" => Some("http://m:4317".to_owned()),
            _ => None,
        };
        assert_eq!(endpoint(None, &vars, "TRACES"), "http://c:4317");
        assert_eq!(endpoint(None, &vars, "METRICS"), "http://m:4317");
        assert_eq!(
            endpoint(Some("http://f:4317/v1/traces"), &vars, "TRACES"),
            "http://f:4317"
        );
        assert_eq!(endpoint(None, &|_: &str| None, "TRACES"), DEFAULT_ENDPOINT);
    }

    #[test]
    fn tls_only_for_https() {
        let none = |_: &str| None;
        assert!(tls("http://c:4317", &none, "TRACES").unwrap().is_none());
        assert!(tls("https://c:4317", &none, "TRACES").unwrap().is_some());
        let missing = |k: &str| {
            (k == "OTEL_EXPORTER_OTLP_CERTIFICATE").then(|| "/nonexistent/ca.pem".to_owned())
        };
        let e = tls("https://c:4317", &missing, "TRACES").unwrap_err();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
