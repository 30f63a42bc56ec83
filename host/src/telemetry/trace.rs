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
//! `tracing` span through the OpenTelemetry layer for nothing): its
//! parent's `traceparent`, flags `00`, is kept for the delivery's thread by
//! [`enter_unsampled`], so what the plugin publishes carries it on as it is
//! and the next plugin down the chain takes the same decision. Parsing and
//! formatting are byte-level, not `core::fmt`: with export on, they run for
//! every event published, sampled or not.

use std::cell::RefCell;
use std::collections::BTreeMap;

use opentelemetry::Context;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The header holding the trace context.
pub const TRACEPARENT: &str = "traceparent";

/// The length of a version `00` `traceparent`.
const LEN: usize = 55;

/// Formats `sc` as a `traceparent` value.
pub fn format(sc: &SpanContext) -> String {
    write(sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// `00-{trace id}-{span id}-{flags}`, in lowercase hex, without going
/// through `core::fmt` (this runs for every event the host publishes when
/// exporting).
fn write(trace_id: TraceId, span_id: SpanId, flags: u8) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
    let fields = [
        (3, &trace_id.to_bytes()[..]),
        (36, &span_id.to_bytes()[..]),
        (53, &[flags][..]),
    ];
    for (start, bytes) in fields {
        for (i, b) in bytes.iter().enumerate() {
            out[start + 2 * i] = DIGITS[usize::from(b >> 4)];
            out[start + 2 * i + 1] = DIGITS[usize::from(b & 0xf)];
        }
    }
    String::from_utf8(out.to_vec()).expect("hex digits and dashes are ASCII")
}

/// Parses a `traceparent` value (version `00`, or a later one read as `00`).
pub fn parse(value: &str) -> Option<SpanContext> {
    let v = value.trim().as_bytes();
    if v.len() < LEN || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let version = hex(&v[..2])?;
    // Version 00 has exactly four fields; a later one may have more,
    // each after a `-`.
    if version == 0xff || (v.len() > LEN && (version == 0 || v[LEN] != b'-')) {
        return None;
    }
    let trace_id = TraceId::from(hex(&v[3..35])?);
    let span_id = SpanId::from(u64::try_from(hex(&v[36..52])?).ok()?);
    let flags = u8::try_from(hex(&v[53..LEN])?).ok()?;
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & 1),
        true,
        TraceState::default(),
    );
    sc.is_valid().then_some(sc)
}

/// The value of lowercase hex `digits` (at most 32 of them); `None` for
/// anything else.
fn hex(digits: &[u8]) -> Option<u128> {
    let mut acc = 0u128;
    for &b in digits {
        let d = HEX_VALUE[usize::from(b)];
        if d > 0xf {
            return None;
        }
        acc = acc << 4 | u128::from(d);
    }
    Some(acc)
}

/// Each byte's value as a lowercase hex digit, `0xff` when it is none.
static HEX_VALUE: [u8; 256] = {
    let mut t = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

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
    write(trace_id, ids.new_span_id(), u8::from(sampled))
}

thread_local! {
    /// The `traceparent` the unsampled delivery running on this thread
    /// passes on; empty when none runs (its buffer is kept, so a delivery
    /// allocates nothing for it).
    static UNSAMPLED: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Marks the delivery starting on this thread as unsampled, in the trace of
/// `parent` (parsed from `header`, its `traceparent`): what it publishes
/// carries that trace on with flags `00`. An unsampled span is never
/// recorded, so it gets no span id of its own: what it publishes carries
/// `header` as it is when that already says `00-…-00` (the usual case,
/// under a parent-based sampler), else the parent's ids with flags `00`.
pub fn enter_unsampled(header: &str, parent: &SpanContext) {
    UNSAMPLED.with_borrow_mut(|u| {
        u.clear();
        if header.len() == LEN && header.starts_with("00-") && header.ends_with("-00") {
            u.push_str(header);
        } else {
            u.push_str(&write(parent.trace_id(), parent.span_id(), 0));
        }
    });
}

/// Ends what [`enter_unsampled`] started on this thread.
pub fn leave_unsampled() {
    UNSAMPLED.with_borrow_mut(String::clear);
}

/// Whether the delivery running on this thread is unsampled (so a script's
/// span inside it is not recorded either).
pub fn in_unsampled() -> bool {
    UNSAMPLED.with_borrow(|u| !u.is_empty())
}

/// Writes `sc` into `headers` (when valid).
pub fn inject(headers: &mut BTreeMap<String, String>, sc: &SpanContext) {
    if sc.is_valid() {
        headers.insert(TRACEPARENT.to_owned(), format(sc));
    }
}

/// The span context in `headers`, if any valid one.
pub fn extract(headers: &BTreeMap<String, String>) -> Option<SpanContext> {
    extract_with_text(headers).map(|(_, sc)| sc)
}

/// The span context in `headers`, if any valid one, with the
/// `traceparent` text it was read from.
pub fn extract_with_text(headers: &BTreeMap<String, String>) -> Option<(&str, SpanContext)> {
    let text = headers.get(TRACEPARENT)?;
    parse(text).map(|sc| (text.as_str(), sc))
}

/// Writes the trace context of the unsampled delivery running on this
/// thread (see [`enter_unsampled`]) into `headers`; else the current
/// `tracing` span's, when it has one.
pub fn inject_current(headers: &mut BTreeMap<String, String>) {
    if let Some(passed) = UNSAMPLED.with_borrow(|u| (!u.is_empty()).then(|| u.clone())) {
        headers.insert(TRACEPARENT.to_owned(), passed);
        return;
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    inject(headers, cx.span().span_context());
}

/// Makes `parent` (an event's trace context) the parent of `span`.
pub fn set_parent(span: &tracing::Span, parent: SpanContext) {
    if span.is_disabled() {
        return;
    }
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
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
            set_parent(&span, extract(&incoming).expect("a parent"));
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
    fn an_unsampled_delivery_passes_its_parents_header_on() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let parent = parse(header).unwrap();
        enter_unsampled(header, &parent);
        assert!(in_unsampled());
        let mut headers = BTreeMap::new();
        inject_current(&mut headers);
        leave_unsampled();
        // No span id of its own: the unsampled span is never recorded.
        assert_eq!(headers[TRACEPARENT], header);
        assert!(!in_unsampled());
        let mut after = BTreeMap::new();
        inject_current(&mut after);
        assert!(after.is_empty());
    }

    /// A parent the sampler drops though it says `sampled` (`traceidratio`,
    /// `always_off`), or one written otherwise than `00-…-00`, goes on with
    /// its ids and flags `00`, so the next plugin drops it too.
    #[test]
    fn an_unsampled_delivery_passes_its_trace_on_unsampled() {
        for header in [
            GOOD,
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more",
        ] {
            let parent = parse(header).unwrap();
            enter_unsampled(header, &parent);
            let mut headers = BTreeMap::new();
            inject_current(&mut headers);
            leave_unsampled();
            assert_eq!(
                headers[TRACEPARENT], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                "{header}"
            );
        }
    }

    /// The `traceparent` reading of the split-and-`from_hex` parser this
    /// one replaced, as the reference for what is accepted.
    fn reference(value: &str) -> Option<SpanContext> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if version.len() != 2 || version == "ff" || !hex(version) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        if !hex(trace) || !hex(span) || !hex(flags) {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let sc = SpanContext::new(
            TraceId::from_hex(trace).ok()?,
            SpanId::from_hex(span).ok()?,
            TraceFlags::new(flags & 1),
            true,
            TraceState::default(),
        );
        sc.is_valid().then_some(sc)
    }

    /// Every one-byte change of a few good values (any byte at any place,
    /// a byte more, a byte less) is read as the reference reads it.
    #[test]
    fn parses_as_the_reference_does() {
        let seeds = [
            GOOD,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more",
            "fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-",
        ];
        let bytes = b"0123456789abcdefABCDEFxz- +";
        for seed in seeds {
            let seed = seed.as_bytes();
            let mut tried = 0;
            for at in 0..=seed.len() {
                let mut variants = vec![[&seed[..at], &seed[(at + 1).min(seed.len())..]].concat()];
                for b in bytes {
                    let mut replaced = seed.to_vec();
                    if at < seed.len() {
                        replaced[at] = *b;
                        variants.push(replaced);
                    }
                    variants.push([&seed[..at], &[*b], &seed[at..]].concat());
                }
                for v in variants {
                    let v = String::from_utf8(v).unwrap();
                    assert_eq!(parse(&v), reference(&v), "{v:?}");
                    tried += 1;
                }
            }
            assert!(tried > 2_000, "{tried}");
        }
    }

    #[test]
    fn formats_as_core_fmt_does() {
        for i in 1..200u128 {
            let trace_id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
            let span_id = SpanId::from(
                u64::try_from(i)
                    .unwrap()
                    .wrapping_mul(0x9e37_79b9_7f4a_7c15),
            );
            for flags in [0u8, 1, 0x0f, 0xa0] {
                let sc = SpanContext::new(
                    trace_id,
                    span_id,
                    TraceFlags::new(flags),
                    false,
                    TraceState::default(),
                );
                assert_eq!(
                    format(&sc),
                    std::format!("00-{trace_id}-{span_id}-{flags:02x}")
                );
            }
        }
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
