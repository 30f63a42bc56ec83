//! The trace sampler: `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`,
//! read the way every OpenTelemetry SDK reads them, and the decision the host
//! takes *before* it pays for a delivery span.
//!
//! [`Sampling::from_lookup`] is pure; [`install`] makes one sampling the
//! process's (the OTLP export does, with the same value it gives its tracer
//! provider), and [`installed`] is what the delivery path consults. Without
//! an installed sampling (an application embedding the host with its own
//! OpenTelemetry layer) the host decides nothing itself.

use std::sync::OnceLock;

use opentelemetry::trace::{SpanContext, TraceId};
use opentelemetry_sdk::trace::Sampler;

/// A sampler named by `OTEL_TRACES_SAMPLER`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// `always_on`: every span.
    AlwaysOn,
    /// `always_off`: no span.
    AlwaysOff,
    /// `traceidratio`: this share of traces, by trace id (so every span of a
    /// trace gets the same answer).
    Ratio(f64),
    /// `parentbased_*`: a span with a parent follows its parent's `sampled`
    /// flag; a root span asks the inner sampler.
    ParentBased(Root),
}

/// The sampler of a root span under `parentbased_*`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Root {
    /// `parentbased_always_on` (the default sampler).
    AlwaysOn,
    /// `parentbased_always_off`.
    AlwaysOff,
    /// `parentbased_traceidratio`.
    Ratio(f64),
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::ParentBased(Root::AlwaysOn)
    }
}

impl Sampling {
    /// The sampling `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` ask for
    /// (read through `var`), with a warning when they name something unknown
    /// or give a bad ratio (the default then, as the SDKs do: ratio 1.0, and
    /// `parentbased_always_on` for an unknown sampler).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> (Sampling, Option<String>) {
        let Some(name) = var("OTEL_TRACES_SAMPLER").map(|v| v.trim().to_owned()) else {
            return (Sampling::default(), None);
        };
        let arg = var("OTEL_TRACES_SAMPLER_ARG");
        let ratio = || -> (f64, Option<String>) {
            match arg.as_deref().map(str::trim).map(str::parse::<f64>) {
                Some(Ok(r)) if (0.0..=1.0).contains(&r) => (r, None),
                _ => (
                    1.0,
                    Some(format!(
                        "OTEL_TRACES_SAMPLER={name} needs OTEL_TRACES_SAMPLER_ARG, a ratio \
                         from 0 to 1 (got {arg:?}); sampling every trace"
                    )),
                ),
            }
        };
        match name.as_str() {
            "" => (Sampling::default(), None),
            "always_on" => (Sampling::AlwaysOn, None),
            "always_off" => (Sampling::AlwaysOff, None),
            "traceidratio" => {
                let (r, w) = ratio();
                (Sampling::Ratio(r), w)
            }
            "parentbased_always_on" => (Sampling::ParentBased(Root::AlwaysOn), None),
            "parentbased_always_off" => (Sampling::ParentBased(Root::AlwaysOff), None),
            "parentbased_traceidratio" => {
                let (r, w) = ratio();
                (Sampling::ParentBased(Root::Ratio(r)), w)
            }
            other => (
                Sampling::default(),
                Some(format!(
                    "OTEL_TRACES_SAMPLER={other} is not supported (always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio); using parentbased_always_on"
                )),
            ),
        }
    }

    /// The SDK sampler taking the same decisions, for the tracer provider.
    pub fn sdk(self) -> Sampler {
        match self {
            Sampling::AlwaysOn => Sampler::AlwaysOn,
            Sampling::AlwaysOff => Sampler::AlwaysOff,
            Sampling::Ratio(r) => Sampler::TraceIdRatioBased(r),
            Sampling::ParentBased(root) => Sampler::ParentBased(Box::new(match root {
                Root::AlwaysOn => Sampler::AlwaysOn,
                Root::AlwaysOff => Sampler::AlwaysOff,
                Root::Ratio(r) => Sampler::TraceIdRatioBased(r),
            })),
        }
    }

    /// Whether a span of trace `trace_id` with (remote) parent `parent` is
    /// sampled: the decision the SDK's tracer takes for the same span.
    pub fn samples(self, parent: Option<&SpanContext>, trace_id: TraceId) -> bool {
        match (self, parent) {
            (Sampling::AlwaysOn, _) => true,
            (Sampling::AlwaysOff, _) => false,
            (Sampling::Ratio(r), _) => ratio_samples(r, trace_id),
            (Sampling::ParentBased(_), Some(p)) => p.is_sampled(),
            (Sampling::ParentBased(Root::AlwaysOn), None) => true,
            (Sampling::ParentBased(Root::AlwaysOff), None) => false,
            (Sampling::ParentBased(Root::Ratio(r)), None) => ratio_samples(r, trace_id),
        }
    }
}

/// The SDK's own trace-id ratio decision (`TraceIdRatioBased`: the trace
/// id's low 63 bits against the ratio's share of 2^63), so the host and the
/// tracer agree; computed here rather than through `should_sample`, which
/// builds a whole sampling result for each event the host publishes.
fn ratio_samples(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    // The SDK's own conversion of the ratio to a bound, kept bit for bit.
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let low = u128::from_be_bytes(trace_id.to_bytes()) as u64;
    (low >> 1) < bound
}

static INSTALLED: OnceLock<Sampling> = OnceLock::new();

/// Makes `sampling` the process's (once; later calls change nothing).
pub fn install(sampling: Sampling) {
    let _ = INSTALLED.set(sampling);
}

/// The process's sampling, when the host's own export installed one.
pub fn installed() -> Option<Sampling> {
    INSTALLED.get().copied()
}

#[cfg(test)]
mod tests {
    use opentelemetry::Context;
    use opentelemetry::trace::{SpanId, SpanKind, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    fn parse(name: &str, arg: Option<&str>) -> (Sampling, Option<String>) {
        let mut vars = vec![("OTEL_TRACES_SAMPLER", name)];
        if let Some(a) = arg {
            vars.push(("OTEL_TRACES_SAMPLER_ARG", a));
        }
        Sampling::from_lookup(lookup(&vars))
    }

    #[test]
    fn reads_every_standard_sampler() {
        assert_eq!(
            Sampling::from_lookup(lookup(&[])),
            (Sampling::ParentBased(Root::AlwaysOn), None)
        );
        assert_eq!(parse("always_on", None), (Sampling::AlwaysOn, None));
        assert_eq!(parse("always_off", None), (Sampling::AlwaysOff, None));
        assert_eq!(
            parse("traceidratio", Some("0.25")),
            (Sampling::Ratio(0.25), None)
        );
        assert_eq!(
            parse("parentbased_always_off", None),
            (Sampling::ParentBased(Root::AlwaysOff), None)
        );
        assert_eq!(
            parse("parentbased_traceidratio", Some("0.01")),
            (Sampling::ParentBased(Root::Ratio(0.01)), None)
        );
    }

    #[test]
    fn a_bad_sampler_or_ratio_is_said() {
        let (s, w) = parse("traceidratio", Some("half"));
        assert_eq!(s, Sampling::Ratio(1.0));
        assert!(w.unwrap().contains("OTEL_TRACES_SAMPLER_ARG"));
        let (s, w) = parse("parentbased_traceidratio", Some("2"));
        assert_eq!(s, Sampling::ParentBased(Root::Ratio(1.0)));
        assert!(w.is_some());
        let (s, w) = parse("xray", None);
        assert_eq!(s, Sampling::default());
        assert!(w.unwrap().contains("xray"));
    }

    fn parent(sampled: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(7u128),
            SpanId::from(9u64),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        )
    }

    /// The host's decision is the SDK tracer's for every sampler, with and
    /// without a parent, over many trace ids.
    #[test]
    fn decides_as_the_sdk_does() {
        let all = [
            Sampling::AlwaysOn,
            Sampling::AlwaysOff,
            Sampling::Ratio(0.3),
            Sampling::Ratio(0.0),
            Sampling::Ratio(1.0),
            Sampling::Ratio(0.999),
            Sampling::ParentBased(Root::AlwaysOn),
            Sampling::ParentBased(Root::AlwaysOff),
            Sampling::ParentBased(Root::Ratio(0.3)),
        ];
        for s in all {
            let sdk = s.sdk();
            for i in 0..500u128 {
                let id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                for p in [None, Some(parent(true)), Some(parent(false))] {
                    let cx = p
                        .clone()
                        .map(|p| Context::new().with_remote_span_context(p));
                    let want = sdk
                        .should_sample(cx.as_ref(), id, "x", &SpanKind::Internal, &[], &[])
                        .decision
                        == SamplingDecision::RecordAndSample;
                    assert_eq!(s.samples(p.as_ref(), id), want, "{s:?} {id} {p:?}");
                }
            }
        }
    }

    #[test]
    fn a_ratio_samples_about_its_share() {
        let n = 10_000u128;
        let kept = (0..n)
            .filter(|i| {
                let id = TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835));
                Sampling::Ratio(0.5).samples(None, id)
            })
            .count();
        assert!((4_000..6_000).contains(&kept), "{kept} of {n}");
    }
}
