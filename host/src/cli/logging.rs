//! Where log lines go: stderr, human-readable or JSON; and, when exporting,
//! spans to OpenTelemetry.
//!
//! The level filter comes from `PLUGHOST_LOG` (or `RUST_LOG`), `info` by
//! default, in `tracing_subscriber`'s `EnvFilter` syntax. The host's span
//! targets (`plughost::delivery`, `plughost::lifecycle`) are kept off stderr;
//! they go to the OpenTelemetry layer, installed only with a tracer.

use std::io::IsTerminal;

use opentelemetry_sdk::trace::SdkTracer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The shape of log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// Installs the global subscriber writing to stderr. Safe to call twice.
pub fn init(format: LogFormat) {
    init_with(format, None)
}

/// Installs the global subscriber writing to stderr and, with `tracer`,
/// sending the host's spans (and the log events inside them) to
/// OpenTelemetry. Safe to call twice.
pub fn init_with(format: LogFormat, tracer: Option<SdkTracer>) {
    let mut filter = EnvFilter::try_from_env("PLUGHOST_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // async-nats logs every failed reconnect at `info`: the host says it once.
    for quiet in [
        "plughost::delivery=off",
        "plughost::lifecycle=off",
        "async_nats=warn",
    ] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let fmt: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => fmt.with_filter(filter).boxed(),
        LogFormat::Json => fmt.json().with_filter(filter).boxed(),
    };
    // Without a tracer, no OpenTelemetry layer at all, not a `None` one: an
    // absent `Option` layer counts as interested in every span, which made
    // the registry build a delivery span per event that nothing read.
    let _ = match tracer {
        Some(t) => {
            let otel = tracing_opentelemetry::layer()
                .with_tracer(t)
                .with_filter(Targets::new().with_target("plughost", LevelFilter::INFO));
            tracing_subscriber::registry()
                .with(fmt)
                .with(otel)
                .try_init()
        }
        None => tracing_subscriber::registry().with(fmt).try_init(),
    };
}
