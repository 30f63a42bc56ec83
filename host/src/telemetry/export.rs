//! OTLP export of traces and metrics, turned on by the environment.
//!
//! With no `OTEL_EXPORTER_OTLP_ENDPOINT` (nor a signal-specific endpoint)
//! nothing leaves the process. With one, spans (through the
//! `tracing-opentelemetry` layer) and metrics (a periodic reader on the
//! host's meter provider) are sent over OTLP HTTP/protobuf by background
//! threads: a slow or absent collector never slows event handling.
//! `OTEL_SERVICE_NAME` names the service (`plughost` by default).

use std::sync::Mutex;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::PeriodicReader;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

/// The service name when `OTEL_SERVICE_NAME` is not set.
pub const DEFAULT_SERVICE_NAME: &str = "plughost";

/// What the environment asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The service name of the resource.
    pub service_name: String,
    /// A warning to log (an unsupported protocol was asked for).
    pub warning: Option<String>,
}

impl Config {
    /// Reads the configuration through `var` (`std::env::var` in the binary);
    /// `None` when no endpoint is configured.
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Option<Config> {
        let set = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        set("OTEL_EXPORTER_OTLP_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))?;
        let warning = match set("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
            None | Some("http/protobuf") => None,
            Some(other) => Some(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported; using http/protobuf"
            )),
        };
        Some(Config {
            service_name: set("OTEL_SERVICE_NAME")
                .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned()),
            warning,
        })
    }
}

/// The resource of every span and metric: the service name.
pub fn resource() -> Resource {
    let name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
    Resource::builder().with_service_name(name).build()
}

/// A running OTLP export. Flushes and stops on [`Export::shutdown`] or drop.
#[derive(Debug)]
pub struct Export {
    tracer_provider: SdkTracerProvider,
    metric_exporter: Mutex<Option<MetricExporter>>,
}

impl Export {
    /// Starts the export the environment asks for, if any.
    pub fn from_env() -> Result<Option<Export>, String> {
        let Some(config) = Config::from_lookup(|k| std::env::var(k).ok()) else {
            return Ok(None);
        };
        if let Some(w) = &config.warning {
            eprintln!("plughost: {w}");
        }
        let spans = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("OTLP trace exporter: {e}"))?;
        let metrics = MetricExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .build()
            .map_err(|e| format!("OTLP metric exporter: {e}"))?;
        let resource = Resource::builder()
            .with_service_name(config.service_name)
            .build();
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(spans)
            .build();
        Ok(Some(Export {
            tracer_provider,
            metric_exporter: Mutex::new(Some(metrics)),
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

    /// Sends the spans still pending and stops the trace pipeline.
    pub fn shutdown(&self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            tracing::debug!("trace export shutdown: {e}");
        }
    }
}

impl Drop for Export {
    fn drop(&mut self) {
        let _ = self.tracer_provider.shutdown();
    }
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
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ]))
        .expect("on");
        assert_eq!(c.service_name, "shop");
        assert!(c.warning.unwrap().contains("grpc"));
    }
}
