//! Delivery of letters to referring practices: the outbox policy (pure: backoff, what each
//! answer means, the Communication's status), the channels to GP systems ([`fhir`]) and the
//! worker that drives them ([`worker`]).
//!
//! A letter's outbox row is written in the transaction that stores the letter. The worker sends
//! it, records each attempt, and keeps trying retryable failures for the retry window; every
//! attempt reuses the letter's message id, so a receiver that saw an attempt whose answer was lost
//! de-duplicates the next. A crash between sending and recording repeats one attempt, never loses
//! one.

pub mod email;
pub mod fhir;
pub mod mesh;
/// The delivery state machine lives with the letters (pure core), so the store can name its
/// states without depending on the worker that moves them.
pub use crate::letters::delivery_state as state;
pub mod worker;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use self::state::{AttemptOutcome, DeliveryState, Event, InvalidTransition, next};
use crate::config::DeliveryConfig;
use crate::fhir::terminology::coding;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The practice's system took the letter (a FHIR 2xx).
    Accepted,
    /// Handed to MESH (its message id); the practice's acknowledgements come later.
    Sent { transport_id: String },
    /// Try again later: a timeout, a 5xx, a 429 (after `retry_after` if it said), a redirect
    /// (never followed), no route yet.
    Retry {
        error: Failure,
        retry_after: Option<Duration>,
    },
    /// The receiver refused the letter for good (a 4xx other than 408/429).
    Rejected { error: Failure },
}

/// The most characters of a receiving system's own text kept with a delivery.
pub const MAX_REMOTE_TEXT_CHARS: usize = 300;

/// The most bytes of a receiving system's answer read (its error text, a token response).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why an attempt failed, in two parts kept apart. `reason` is the gateway's own words (an HTTP
/// status, "timed out", "cannot connect"): it is logged. `remote` is what the receiving system
/// said (an OperationOutcome's diagnostics, MESH's text), which can name the person (a
/// receiver's "NHS number 943 476 5919 (Jane Smith) not registered here"): it is never logged,
/// only kept, cleaned of control characters and bounded, with the letter's delivery record,
/// which only the sending service and the practice whose system said it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub remote: Option<String>,
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            remote: None,
        }
    }

    /// With the receiving system's own text (none if it said nothing printable).
    pub fn with_remote(mut self, text: &str) -> Self {
        let cleaned = crate::outbound::cleaned_remote_text(text, MAX_REMOTE_TEXT_CHARS);
        self.remote = (!cleaned.is_empty()).then_some(cleaned);
        self
    }

    /// What the delivery record keeps: the reason, then what the receiver said.
    pub fn detail(&self) -> String {
        match &self.remote {
            Some(text) => format!("{}: {text}", self.reason),
            None => self.reason.clone(),
        }
    }
}

/// How long to wait before attempt `attempt + 1`, after `attempt` failed: exponential from the
/// initial backoff, capped, with "equal jitter" (a random wait between half and all of it), so
/// that many letters failing together do not all come back at once. `jitter` is uniform in
/// [0, 1).
pub fn backoff(attempt: u32, config: &DeliveryConfig, jitter: f64) -> Duration {
    let exp = config
        .initial_backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30));
    let capped = exp.min(config.max_backoff_ms);
    let half = capped / 2;
    Duration::from_millis(half + (half as f64 * jitter.clamp(0.0, 1.0)) as u64)
}

/// A uniform number in [0, 1) from the system's secure random source.
pub fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The letter's Communication with its delivery state written in: `status`, `statusReason` (the
/// `letter-delivery-state` code, with the last error as text), and `sent` once delivered.
pub fn communication_with_state(
    mut communication: Value,
    state: DeliveryState,
    detail: Option<&str>,
    at: DateTime<Utc>,
) -> Value {
    communication["status"] = json!(state.communication_status());
    let mut reason = json!({ "coding": [coding("letter-delivery-state", state.code())] });
    if let Some(d) = detail {
        reason["text"] = json!(d);
    }
    communication["statusReason"] = reason;
    if state == DeliveryState::Accepted {
        communication["received"] = json!(crate::fhir::search::format_instant(at));
    }
    if matches!(state, DeliveryState::Sent | DeliveryState::Accepted)
        && communication.get("sent").is_none()
    {
        communication["sent"] = json!(crate::fhir::search::format_instant(at));
    }
    communication
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> DeliveryConfig {
        DeliveryConfig {
            enabled: true,
            retry_window_secs: 72 * 3600,
            initial_backoff_ms: 30_000,
            max_backoff_ms: 3_600_000,
            urgent_ack_secs: 3600,
            attempt_timeout_ms: 30_000,
            poll_interval_ms: 1000,
            concurrency: 4,
            lease_seconds: None,
            smtp: None,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let c = config();
        assert_eq!(backoff(1, &c, 0.0), Duration::from_secs(15));
        assert_eq!(backoff(1, &c, 0.999_999), Duration::from_millis(29_999));
        assert_eq!(backoff(2, &c, 0.0), Duration::from_secs(30));
        assert_eq!(backoff(3, &c, 0.0), Duration::from_secs(60));
        // 30 s × 2^7 = 64 min: capped at the hour.
        assert_eq!(backoff(8, &c, 0.0), Duration::from_secs(1800));
        assert_eq!(backoff(60, &c, 0.0), Duration::from_secs(1800));
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j));
        }
    }

    #[test]
    fn a_receivers_text_is_kept_apart_cleaned_and_bounded() {
        let f = Failure::new("HTTP 422")
            .with_remote(&format!("bad\nINFO forged\u{1b}[0m {}", "x".repeat(1000)));
        assert_eq!(f.reason, "HTTP 422");
        let remote = f.remote.as_deref().unwrap();
        assert!(remote.starts_with("bad INFO forged [0m xxx"), "{remote}");
        assert!(!remote.chars().any(char::is_control));
        assert_eq!(
            remote.chars().count(),
            MAX_REMOTE_TEXT_CHARS + 1,
            "with the ellipsis"
        );
        assert!(f.detail().starts_with("HTTP 422: bad INFO"));
        assert_eq!(
            Failure::new("timed out").with_remote(" \r\n").detail(),
            "timed out"
        );
    }

    #[test]
    fn states_map_to_communication_status() {
        let c = json!({ "resourceType": "Communication", "id": "x", "status": "preparation", "meta": { "versionId": "1" } });
        let at = Utc::now();
        let sent = communication_with_state(c.clone(), DeliveryState::Accepted, None, at);
        assert_eq!(sent["status"], "completed");
        assert_eq!(sent["statusReason"]["coding"][0]["code"], "accepted");
        assert!(sent["sent"].is_string() && sent["received"].is_string());
        let dead = communication_with_state(c.clone(), DeliveryState::Dead, Some("HTTP 503"), at);
        assert_eq!(dead["status"], "not-done");
        assert_eq!(dead["statusReason"]["text"], "HTTP 503");
        assert_eq!(
            communication_with_state(c, DeliveryState::Cancelled, None, at)["status"],
            "stopped"
        );
    }
}
