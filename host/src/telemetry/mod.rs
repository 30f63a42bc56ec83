//! Telemetry: spans, metrics and their export (SPEC §6).
//!
//! - [`metrics`]: the host's OpenTelemetry instruments (`plugin.messages`,
//!   `plugin.message.processing_time_ms`, …), the scripts' metrics with their
//!   caps, and the in-process reader behind [`crate::Host::metrics_snapshot`].
//! - `topic_counts`: messages to and from NATS per topic (`cluster.messages`).
//! - [`trace`]: W3C `traceparent` in event headers, so the delivery spans of
//!   a chain of plugins form one trace.
//! - [`sampler`]: `OTEL_TRACES_SAMPLER`, decided before a delivery span is paid for.
//! - [`export`]: OTLP export (HTTP/protobuf, HTTP/JSON or gRPC, `http://` or `https://`)
//!   when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; with no configuration nothing
//!   leaves the process. [`https`]: the TLS client over HTTP, [`grpc`]: the gRPC exporters; `watch`: a refused
//!   endpoint said once, spans lost counted.
//!
//! Spans are `tracing` spans (a delivery span per handled event, spans for
//! init, reload and shutdown, and the scripts' `telemetry.span`); they become
//! OpenTelemetry spans through the `tracing-opentelemetry` layer, installed
//! only when exporting.

pub mod export;
pub mod grpc;
pub mod https;
pub mod metrics;
pub mod sampler;
pub(crate) mod topic_counts;
pub mod trace;
mod watch;

pub use metrics::{Caps, MetricPoint, Metrics};
