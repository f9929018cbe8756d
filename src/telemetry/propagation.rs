//! W3C Trace Context (`traceparent`, `tracestate`): taken from a caller's request, so the
//! gateway's spans join the caller's trace, and given to the peers the gateway calls (the
//! practices' systems), so theirs join the gateway's. Without telemetry the propagator is the
//! global no-op one: nothing is read or written.

use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Makes `span` a child of the trace context the request's headers carry, if they carry one.
pub fn continue_trace(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    if !headers.contains_key("traceparent") {
        return;
    }
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    // Refused only when spans are not exported, when there is nothing to join.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as headers for an outgoing request.
pub fn trace_headers() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut HeaderInjector(&mut headers))
    });
    headers
}
