//! The gateway's OpenTelemetry metrics. Each instrument is made once from the global meter,
//! after [`super::init`] has installed the exporting one (before that, and when telemetry is
//! off, the global meter is a no-op and recording costs next to nothing). Every attribute is a
//! code from a closed set (a route template, a state, an outcome): nothing about a person, and
//! no value that could make the series unbounded.

use std::sync::OnceLock;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram};

use crate::consent::{Basis, Code as _, Decision};
use crate::letters::delivery_state::DeliveryState;

pub struct Instruments {
    /// `http.server.request.duration` (OpenTelemetry's HTTP semantic conventions), seconds, by
    /// method, route template and status: the intake routes' rates and latencies among them.
    pub request_duration: Histogram<f64>,
    /// Letters in each state still in the outbox's hands (queued, sent, received, escalated).
    pub outbox_letters: Gauge<u64>,
    /// Seconds since the oldest of them was written, by state.
    pub outbox_oldest_age: Gauge<f64>,
    /// What each delivery attempt, acknowledgement or escalation came to, by channel.
    pub letter_outcomes: Counter<u64>,
    /// Consent decisions, by effect, what decided it and the purpose asked about.
    pub consent_decisions: Counter<u64>,
    /// What became of each self-referral form sent (stored, refused and why): a flood shows
    /// here before anywhere else.
    pub self_referrals: Counter<u64>,
}

/// The instruments, made on first use.
pub fn instruments() -> &'static Instruments {
    static MADE: OnceLock<Instruments> = OnceLock::new();
    MADE.get_or_init(|| {
        let meter = opentelemetry::global::meter("whg");
        Instruments {
            request_duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests")
                // The semantic conventions' advised boundaries.
                .with_boundaries(vec![
                    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
                ])
                .build(),
            outbox_letters: meter
                .u64_gauge("whg.outbox.letters")
                .with_unit("{letter}")
                .with_description("Letters waiting in the outbox, by state")
                .build(),
            outbox_oldest_age: meter
                .f64_gauge("whg.outbox.oldest_age")
                .with_unit("s")
                .with_description("Age of the oldest letter waiting in the outbox, by state")
                .build(),
            letter_outcomes: meter
                .u64_counter("whg.letters.outcomes")
                .with_unit("{outcome}")
                .with_description(
                    "What delivery attempts, acknowledgements and escalations came to",
                )
                .build(),
            consent_decisions: meter
                .u64_counter("whg.consent.decisions")
                .with_unit("{decision}")
                .with_description("Consent decisions, by effect and basis")
                .build(),
            self_referrals: meter
                .u64_counter("whg.self_referrals")
                .with_unit("{form}")
                .with_description("Self-referral forms sent, by what became of them")
                .build(),
        }
    })
}

/// Counts one self-referral form sent, by what became of it (`stored`, `resent`, `invalid`,
/// `redrawn`, `throttled`, `forged`, `trap`, `too-large`).
pub fn self_referral(outcome: &'static str) {
    instruments()
        .self_referrals
        .add(1, &[KeyValue::new("whg.self_referral.outcome", outcome)]);
}

/// Counts one consent decision.
pub fn consent_decided(decision: &Decision) {
    let basis = match decision.basis {
        Basis::Permitted { .. } => "permitted",
        Basis::Refused { .. } => "refused",
        Basis::Withdrawn { .. } => "withdrawn",
        Basis::NoConsent => "no-consent",
        Basis::DocumentNotApproved { .. } => "document-not-approved",
        Basis::Overridden { .. } => "overridden",
    };
    instruments().consent_decisions.add(
        1,
        &[
            KeyValue::new(
                "whg.consent.effect",
                if decision.permitted() {
                    "permit"
                } else {
                    "deny"
                },
            ),
            KeyValue::new("whg.consent.basis", basis),
            KeyValue::new("whg.consent.purpose", decision.purpose.code()),
        ],
    );
}

/// Counts what one delivery step came to (`outcome` as the worker's counters name it).
pub fn letter_outcome(outcome: &'static str, channel: Option<&str>) {
    instruments().letter_outcomes.add(
        1,
        &[
            KeyValue::new("whg.letter.outcome", outcome),
            KeyValue::new(
                "whg.delivery.channel",
                channel.unwrap_or("none").to_string(),
            ),
        ],
    );
}

/// Records the outbox as read: for each state still in its hands, how many letters and the
/// age of the oldest (0 when there are none, so a state that empties is seen to).
pub fn outbox_depth(depth: &[crate::store::OutboxDepth], now: chrono::DateTime<chrono::Utc>) {
    let made = instruments();
    for state in DeliveryState::ALL.into_iter().filter(|s| !s.is_final()) {
        let here = depth.iter().find(|d| d.state == state);
        let attributes = [KeyValue::new("whg.letter.state", state.code())];
        made.outbox_letters
            .record(here.map_or(0, |d| d.letters), &attributes);
        let age = here
            .and_then(|d| d.oldest)
            .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
        made.outbox_oldest_age.record(age, &attributes);
    }
}
