//! Which requests are traced. The gateway decides, at `[telemetry] sample_ratio`, for every
//! trace that reaches it — one it begins and one a caller's `traceparent` brings alike: the
//! caller's trace is joined (its trace id and parent span kept), its sampled flag is not
//! obeyed. Obeying it would let any caller, before its token is even read, have every one of
//! its requests traced and exported at full cost. The spans a request makes below its own
//! follow its decision, so a trace is kept or dropped whole.

use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

#[derive(Debug, Clone)]
pub struct OwnDecision {
    ratio: f64,
}

impl OwnDecision {
    pub fn new(ratio: f64) -> Self {
        Self {
            ratio: ratio.clamp(0.0, 1.0),
        }
    }

    /// Whether a span whose parent is `parent` is kept; `draw` is a uniform number in [0, 1)
    /// drawn for the decision (never taken from the trace id, which a caller chooses).
    pub fn decide(&self, parent: Option<ParentSpan>, draw: f64) -> SamplingDecision {
        match parent {
            Some(ParentSpan::Local { sampled: true }) => SamplingDecision::RecordAndSample,
            Some(ParentSpan::Local { sampled: false }) => SamplingDecision::Drop,
            Some(ParentSpan::Remote) | None if draw < self.ratio => {
                SamplingDecision::RecordAndSample
            }
            Some(ParentSpan::Remote) | None => SamplingDecision::Drop,
        }
    }
}

/// The parent of a span about to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentSpan {
    /// A span of this process, sampled or not.
    Local { sampled: bool },
    /// A span of a caller's, from its `traceparent`.
    Remote,
}

impl ShouldSample for OwnDecision {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        _attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context
            .filter(|cx| cx.has_active_span())
            .map(|cx| cx.span().span_context().clone())
            .filter(|sc| sc.is_valid());
        let kind = parent.as_ref().map(|sc| {
            if sc.is_remote() {
                ParentSpan::Remote
            } else {
                ParentSpan::Local {
                    sampled: sc.is_sampled(),
                }
            }
        });
        SamplingResult {
            decision: self.decide(kind, rand::random::<f64>()),
            attributes: Vec::new(),
            trace_state: parent.map_or_else(TraceState::default, |sc| sc.trace_state().clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_callers_sampled_flag_does_not_decide() {
        let none = OwnDecision::new(0.0);
        assert_eq!(
            none.decide(Some(ParentSpan::Remote), 0.0),
            SamplingDecision::Drop,
            "a caller asking for its trace to be sampled gets the ratio, here none"
        );
        let all = OwnDecision::new(1.0);
        assert_eq!(
            all.decide(Some(ParentSpan::Remote), 0.999),
            SamplingDecision::RecordAndSample,
            "a caller's unsampled trace is still joined and traced at the ratio"
        );
    }

    #[test]
    fn traces_are_kept_at_the_ratio_and_whole() {
        let half = OwnDecision::new(0.5);
        assert_eq!(half.decide(None, 0.49), SamplingDecision::RecordAndSample);
        assert_eq!(half.decide(None, 0.5), SamplingDecision::Drop);
        assert_eq!(
            half.decide(Some(ParentSpan::Local { sampled: true }), 0.99),
            SamplingDecision::RecordAndSample
        );
        assert_eq!(
            half.decide(Some(ParentSpan::Local { sampled: false }), 0.0),
            SamplingDecision::Drop
        );
        assert_eq!(OwnDecision::new(7.0).ratio, 1.0);
        assert_eq!(OwnDecision::new(-1.0).ratio, 0.0);
    }
}
