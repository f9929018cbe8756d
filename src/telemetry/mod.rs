//! Logs, traces and metrics. Logs go to stderr; with `[telemetry] otlp_endpoint` set, spans and
//! metrics go to the platform's OpenTelemetry collector over OTLP/HTTP (protobuf) as well.
//!
//! What may be in them is the same for all three: request ids, methods, route templates and
//! masked paths, resource and letter ids (UUIDs the gateway made), ODS codes and outcomes; never
//! an NHS number, a name, a birth date, a token or a remote system's own text. Handlers log no
//! bodies, request spans record the path without the query, and the span fields are the log
//! fields (tracing-opentelemetry turns one into the other), so one review covers both.

pub mod instruments;
pub mod interaction;
pub mod propagation;
pub mod sampler;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogConfig, LogFormat, TelemetryConfig};

/// How long one export may take before it is abandoned (the next one carries on).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The exporters, kept until the process ends: dropping this flushes what is buffered.
#[derive(Default)]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Whether spans and metrics leave the process.
    pub fn exporting(&self) -> bool {
        self.tracer.is_some()
    }

    /// Sends what is buffered and stops the exporters (at shutdown, after the last request).
    pub fn shutdown(&mut self) {
        if let Some(tracer) = self.tracer.take()
            && let Err(e) = tracer.shutdown()
        {
            eprintln!("whg: traces not all exported at shutdown: {e}");
        }
        if let Some(meter) = self.meter.take()
            && let Err(e) = meter.shutdown()
        {
            eprintln!("whg: metrics not all exported at shutdown: {e}");
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("telemetry.otlp_endpoint '{0}' is not an http or https URL")]
    Endpoint(String),
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(String),
}

/// Installs the global subscriber (logs to stderr; `RUST_LOG` overrides the configured filter)
/// and, when an OTLP endpoint is configured, the trace and metric exporters, the W3C trace
/// context propagator, and the global meter the [`instruments`] come from.
pub fn init(log: &LogConfig, telemetry: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let exporting = match &telemetry.otlp_endpoint {
        Some(endpoint) => Some(exporters(endpoint, telemetry)?),
        None => None,
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.filter));
    // Colour only for a person at a terminal, never into log files or collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let spans = exporting.as_ref().map(|(tracer, _)| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer.tracer("whg"))
            // Source locations and thread names say nothing an operator needs and are noise.
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(spans)
        .try_init();
    Ok(match exporting {
        None => Telemetry::default(),
        Some((tracer, meter)) => {
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            opentelemetry::global::set_meter_provider(meter.clone());
            Telemetry {
                tracer: Some(tracer),
                meter: Some(meter),
            }
        }
    })
}

/// The OTLP/HTTP exporters for `{endpoint}/v1/traces` and `{endpoint}/v1/metrics`.
fn exporters(
    endpoint: &str,
    config: &TelemetryConfig,
) -> Result<(SdkTracerProvider, SdkMeterProvider), TelemetryError> {
    let base = url::Url::parse(endpoint)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or_else(|| TelemetryError::Endpoint(endpoint.to_string()))?;
    let signal = |path: &str| format!("{}/{path}", base.as_str().trim_end_matches('/'));
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        // Tells two instances' series apart (the collector would otherwise add their points
        // together); a fresh id per process, as the semantic conventions recommend.
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            uuid::Uuid::now_v7().to_string(),
        ))
        .build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(signal("v1/traces"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let sampler = sampler::OwnDecision::new(config.sample_ratio);
    let tracer = SdkTracerProvider::builder()
        .with_batch_exporter(spans)
        .with_sampler(sampler)
        .with_resource(resource.clone())
        .build();
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint(signal("v1/metrics"))
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let reader = PeriodicReader::builder(metrics)
        .with_interval(Duration::from_millis(config.metrics_interval_ms.max(100)))
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    Ok((tracer, meter))
}
