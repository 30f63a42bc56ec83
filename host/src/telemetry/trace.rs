//! W3C trace context in an event's headers.
//!
//! A published event carries `traceparent` (`00-{trace id}-{span id}-{flags}`)
//! of the span it was published from; the delivery span of each plugin that
//! receives it is a child of that span, so a chain of plugins forms one trace.
//! Parsing and formatting are pure; [`inject_current`] and [`set_parent`] tie
//! them to `tracing` spans (which carry OpenTelemetry contexts only when the
//! OpenTelemetry layer is installed, that is when exporting).
//!
//! A delivery the sampler drops has no span at all (it would cost a
//! `tracing` span through the OpenTelemetry layer for nothing): its trace
//! context, flags `00`, is kept for the delivery's thread by
//! [`enter_unsampled`], so what the plugin publishes carries it on and the
//! next plugin down the chain takes the same decision.

use std::cell::Cell;
use std::collections::BTreeMap;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header holding the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Formats `sc` as a `traceparent` value.
pub fn format(sc: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// Parses a `traceparent` value (version `00`, or a later one read as `00`).
pub fn parse(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    if version.len() != 2 || version == "ff" || !is_hex(version) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    if !is_hex(trace) || !is_hex(span) || !is_hex(flags) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A `traceparent` for a new trace: random trace and span ids, sampled
/// as the installed sampler decides for a root span (flags `01` or `00`;
/// sampled without an installed sampler).
/// The host adds one to the events it publishes only when exporting:
/// carrying it costs 15–20 % of one Lua plugin's throughput
/// (docs/performance/telemetry.md), for spans nobody would keep otherwise.
/// The span it names is never exported; it only makes the spans below it
/// (the delivery spans of one published event) share a trace.
pub fn new_root() -> String {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    let trace_id = ids.new_trace_id();
    let sampled = super::sampler::installed().is_none_or(|s| s.samples(None, trace_id));
    let flags = if sampled { "01" } else { "00" };
    format!("00-{trace_id}-{}-{flags}", ids.new_span_id())
}

thread_local! {
    /// The trace context of the unsampled delivery running on this thread.
    static UNSAMPLED: Cell<Option<(TraceId, SpanId)>> = const { Cell::new(None) };
}

/// Marks the delivery starting on this thread as unsampled, in the trace of
/// `parent` (or a new trace): what it publishes carries that trace with
/// flags `00` and a span id of its own.
pub fn enter_unsampled(parent: Option<&SpanContext>) {
    use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};
    let ids = RandomIdGenerator::default();
    let trace_id = parent.map_or_else(|| ids.new_trace_id(), SpanContext::trace_id);
    UNSAMPLED.with(|u| u.set(Some((trace_id, ids.new_span_id()))));
}

/// Ends what [`enter_unsampled`] started on this thread.
pub fn leave_unsampled() {
    UNSAMPLED.with(|u| u.set(None));
}

/// Whether the delivery running on this thread is unsampled (so a script's
/// span inside it is not recorded either).
pub fn in_unsampled() -> bool {
    UNSAMPLED.with(|u| u.get().is_some())
}

/// Writes `sc` into `headers` (when valid).
pub fn inject(headers: &mut BTreeMap<String, String>, sc: &SpanContext) {
    if sc.is_valid() {
        headers.insert(TRACEPARENT.to_owned(), format(sc));
    }
}

/// The span context in `headers`, if any valid one.
pub fn extract(headers: &BTreeMap<String, String>) -> Option<SpanContext> {
    headers.get(TRACEPARENT).and_then(|v| parse(v))
}

/// Writes the current `tracing` span's context into `headers`, when it has
/// one; else the unsampled delivery's (see [`enter_unsampled`]).
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    let span = tracing::Span::current();
    if span.is_disabled() {
        if let Some((trace_id, span_id)) = UNSAMPLED.with(Cell::get) {
            let flags = TraceFlags::default();
            let sc = SpanContext::new(trace_id, span_id, flags, false, TraceState::default());
            inject(headers, &sc);
        }
        return;
    }
    let cx = span.context();
    inject(headers, cx.span().span_context());
}

/// Makes the event's trace context (from `headers`) the parent of `span`.
pub fn set_parent(span: &tracing::Span, headers: &BTreeMap<String, String>) {
    if span.is_disabled() {
        return;
    }
    if let Some(sc) = extract(headers) {
        let _ = span.set_parent(Context::new().with_remote_span_context(sc));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn round_trips() {
        let sc = parse(GOOD).expect("valid");
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert!(sc.is_sampled());
        assert!(sc.is_remote());
        assert_eq!(format(&sc), GOOD);
        let mut headers = BTreeMap::new();
        inject(&mut headers, &sc);
        assert_eq!(headers[TRACEPARENT], GOOD);
        assert_eq!(extract(&headers), Some(sc));
    }

    #[test]
    fn refuses_malformed_values() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn later_versions_are_read_as_00() {
        let v = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let sc = parse(v).expect("future version");
        assert!(!sc.is_sampled());
    }

    #[test]
    fn a_child_span_carries_the_trace_on() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt;

        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let mut incoming = BTreeMap::new();
        incoming.insert(TRACEPARENT.to_owned(), GOOD.to_owned());
        let mut outgoing = BTreeMap::new();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("plugin.event");
            set_parent(&span, &incoming);
            let _entered = span.enter();
            inject_current(&mut outgoing);
        });
        let parent = parse(GOOD).unwrap();
        let child = extract(&outgoing).expect("a traceparent");
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(child.is_sampled());
    }

    #[test]
    fn new_roots_are_valid_and_distinct() {
        let a = parse(&new_root()).expect("valid");
        let b = parse(&new_root()).expect("valid");
        assert!(a.is_sampled());
        assert_ne!(a.trace_id(), b.trace_id());
        assert_eq!(format(&a), format(&parse(&format(&a)).unwrap()));
    }

    #[test]
    fn an_unsampled_delivery_carries_its_trace_on_unsampled() {
        let parent = parse(GOOD).unwrap();
        enter_unsampled(Some(&parent));
        assert!(in_unsampled());
        let mut headers = BTreeMap::new();
        inject_current(&mut headers);
        leave_unsampled();
        let child = extract(&headers).expect("a traceparent");
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert!(!child.is_sampled());
        assert!(headers[TRACEPARENT].ends_with("-00"));
        assert!(!in_unsampled());
        let mut after = BTreeMap::new();
        inject_current(&mut after);
        assert!(after.is_empty());
        // Without a parent, a new trace, unsampled too.
        enter_unsampled(None);
        let mut root = BTreeMap::new();
        inject_current(&mut root);
        leave_unsampled();
        assert!(!extract(&root).expect("a traceparent").is_sampled());
    }

    #[test]
    fn nothing_is_injected_without_a_span() {
        let mut headers = BTreeMap::new();
        inject_current(&mut headers);
        assert!(headers.is_empty());
        inject(&mut headers, &SpanContext::empty_context());
        assert!(headers.is_empty());
    }
}
