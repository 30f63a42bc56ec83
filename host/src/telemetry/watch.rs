//! What becomes of exported telemetry: a collector that refuses it is a
//! warning naming the endpoint, once (and a later success says so), and
//! spans the export queue had no room for are counted and said at shutdown.
//!
//! [`Health`] is the pure "say it once" state; [`WatchedClient`] wraps the
//! exporters' HTTP client to feed it (a connection error or a status other
//! than 2xx is a refusal), one per signal. [`CountedProcessor`] and
//! [`CountedSpans`] count the spans given to the batch processor and the
//! spans it gave the exporter, so [`SpanCounts::lost_in_queue`] is what the
//! full queue dropped.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::Context;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};

/// What to say after an export attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Notice {
    /// The first failure since the start or the last recovery.
    Refused,
    /// The first success after a failure.
    Recovered,
}

/// Whether one endpoint is failing, so each change is said once.
#[derive(Debug, Default)]
pub(crate) struct Health {
    failing: AtomicBool,
}

impl Health {
    /// Notes one export's outcome; what to say, if anything.
    pub(crate) fn note(&self, ok: bool) -> Option<Notice> {
        let was_failing = self.failing.swap(!ok, Ordering::AcqRel);
        match (was_failing, ok) {
            (false, false) => Some(Notice::Refused),
            (true, true) => Some(Notice::Recovered),
            _ => None,
        }
    }
}

/// Logs `notice` about the export to `endpoint`.
fn say(notice: Option<Notice>, endpoint: &str, error: &dyn fmt::Display) {
    match notice {
        Some(Notice::Refused) => {
            tracing::warn!(
                target: "plughost::telemetry",
                "OTLP export to {endpoint} failed: {error}; said once until it recovers"
            )
        }
        Some(Notice::Recovered) => tracing::info!(
            target: "plughost::telemetry",
            "OTLP export to {endpoint} recovered"
        ),
        None => {}
    }
}

/// The exporters' HTTP client, saying when its endpoint refuses.
#[derive(Debug)]
pub(crate) struct WatchedClient<C> {
    inner: C,
    health: Health,
}

impl<C> WatchedClient<C> {
    /// Watches `inner` (one client per signal, so each says its own).
    pub(crate) fn new(inner: C) -> Self {
        WatchedClient {
            inner,
            health: Health::default(),
        }
    }

    fn note(&self, endpoint: &str, result: &Result<Response<Bytes>, HttpError>) {
        match result {
            Ok(r) if r.status().is_success() => say(self.health.note(true), endpoint, &""),
            Ok(r) => {
                let status = format!("HTTP {}", r.status());
                say(self.health.note(false), endpoint, &status);
            }
            Err(e) => say(self.health.note(false), endpoint, &error_chain(e.as_ref())),
        }
    }
}

/// An error and its sources, `: `-separated (reqwest's own text hides the cause).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl<C: HttpClient> HttpClient for WatchedClient<C> {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let endpoint = request.uri().to_string();
            let result = self.inner.send_bytes(request).await;
            self.note(&endpoint, &result);
            result
        })
    }
}

/// Spans counted on their way out.
#[derive(Debug, Default)]
pub(crate) struct SpanCounts {
    /// Ended sampled spans handed to the batch processor.
    queued: AtomicU64,
    /// Spans the processor handed to the exporter.
    exported: AtomicU64,
    /// Of those, spans in a batch the collector refused.
    refused: AtomicU64,
}

impl SpanCounts {
    /// Spans that never reached the exporter (the queue was full), once
    /// the processor has shut down.
    pub(crate) fn lost_in_queue(&self) -> u64 {
        let queued = self.queued.load(Ordering::Acquire);
        queued.saturating_sub(self.exported.load(Ordering::Acquire))
    }

    /// Spans in batches the collector refused.
    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }
}

/// A span exporter counting the spans it is given and those refused; and,
/// when no [`WatchedClient`] can (gRPC), saying when its endpoint refuses.
#[derive(Debug)]
pub(crate) struct CountedSpans<E> {
    inner: E,
    counts: Arc<SpanCounts>,
    watch: Option<(Health, String)>,
}

impl<E> CountedSpans<E> {
    /// Counts what reaches `inner` in `counts`.
    pub(crate) fn new(inner: E, counts: Arc<SpanCounts>) -> Self {
        CountedSpans {
            inner,
            counts,
            watch: None,
        }
    }

    /// Also says when `endpoint`, where `inner` sends, refuses.
    pub(crate) fn watching(mut self, endpoint: Option<String>) -> Self {
        self.watch = endpoint.map(|e| (Health::default(), e));
        self
    }
}

impl<E: SpanExporter> SpanExporter for CountedSpans<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len() as u64;
        self.counts.exported.fetch_add(n, Ordering::AcqRel);
        let result = self.inner.export(batch).await;
        if result.is_err() {
            self.counts.refused.fetch_add(n, Ordering::AcqRel);
        }
        if let Some((health, endpoint)) = &self.watch {
            match &result {
                Ok(()) => say(health.note(true), endpoint, &""),
                Err(e) => say(health.note(false), endpoint, e),
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A span processor counting the spans it passes on.
#[derive(Debug)]
pub(crate) struct CountedProcessor<P> {
    inner: P,
    counts: Arc<SpanCounts>,
}

impl<P> CountedProcessor<P> {
    /// Counts what reaches `inner` in `counts`.
    pub(crate) fn new(inner: P, counts: Arc<SpanCounts>) -> Self {
        CountedProcessor { inner, counts }
    }
}

impl<P: SpanProcessor> SpanProcessor for CountedProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counts.queued.fetch_add(1, Ordering::AcqRel);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_is_said_once_and_a_recovery_once() {
        let h = Health::default();
        assert_eq!(h.note(true), None);
        assert_eq!(h.note(false), Some(Notice::Refused));
        assert_eq!(h.note(false), None);
        assert_eq!(h.note(false), None);
        assert_eq!(h.note(true), Some(Notice::Recovered));
        assert_eq!(h.note(true), None);
        assert_eq!(h.note(false), Some(Notice::Refused));
    }

    #[test]
    fn spans_lost_in_the_queue_are_the_ones_never_exported() {
        let c = SpanCounts::default();
        c.queued.fetch_add(10, Ordering::AcqRel);
        c.exported.fetch_add(7, Ordering::AcqRel);
        assert_eq!(c.lost_in_queue(), 3);
        assert_eq!(c.refused(), 0);
    }
}
