//! The outbox worker: finds letters due for an attempt (urgent first), decides consent at the
//! moment of sending, sends through the practice's channel, and records what happened. Urgent
//! letters not acknowledged in time are escalated; letters still undelivered at the end of the
//! retry window are dead. Both raise an alert: an `error` log line, a counter, and the state in
//! the API.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};

use super::fhir::{FhirChannel, Message};
use super::{Outcome, backoff, communication_with_state, jitter};
use crate::config::Config;
use crate::consent::{Action, DataClass, Purpose, Question, Recipient, RecipientClass};
use crate::fhir::search::{Filter, SearchRequest, format_instant};
use crate::store::{Delivery, DeliveryAttempt, DeliveryUpdate, Store, StoreError};

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    pub attempts: AtomicU64,
    pub accepted: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    pub dead: AtomicU64,
    pub escalated: AtomicU64,
    pub cancelled: AtomicU64,
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "whg_letter_attempts_total",
                "Delivery attempts made",
                &self.attempts,
            ),
            (
                "whg_letters_accepted_total",
                "Letters accepted by the practice's system",
                &self.accepted,
            ),
            (
                "whg_letter_retries_total",
                "Attempts that failed and will be retried",
                &self.retries,
            ),
            (
                "whg_letters_rejected_total",
                "Letters refused permanently by the receiver",
                &self.rejected,
            ),
            (
                "whg_letters_dead_total",
                "Letters undelivered at the end of the retry window (alert)",
                &self.dead,
            ),
            (
                "whg_letters_escalated_total",
                "Urgent letters not acknowledged in time (alert)",
                &self.escalated,
            ),
            (
                "whg_letters_cancelled_total",
                "Letters stopped because consent no longer allows them",
                &self.cancelled,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// What the worker and the API share: the wake-up call for newly queued letters, and the counters.
#[derive(Clone, Default)]
pub struct Outbox {
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
}

struct Worker {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    channel: FhirChannel,
    outbox: Outbox,
    in_flight: Mutex<HashSet<String>>,
}

/// Runs the worker until the process ends.
pub async fn run(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    http: reqwest::Client,
    outbox: Outbox,
) {
    let worker = Arc::new(Worker {
        store,
        channel: FhirChannel::new(http),
        outbox,
        in_flight: Mutex::new(HashSet::new()),
        config,
    });
    let slots = Arc::new(Semaphore::new(worker.config.delivery.concurrency));
    let poll = Duration::from_millis(worker.config.delivery.poll_interval_ms);
    loop {
        let now = Utc::now();
        if let Err(e) = worker.escalate_overdue(now).await {
            tracing::warn!(error = %e, "cannot check urgent letters for escalation");
        }
        let limit = (worker.config.delivery.concurrency * 4) as u32;
        match worker
            .store
            .due_deliveries(&format_instant(now), limit)
            .await
        {
            Ok(due) => {
                for delivery in due {
                    if !worker.claim(&delivery.id) {
                        continue;
                    }
                    // Due letters come urgent first: each takes the next free slot, so an urgent
                    // letter waits for one attempt in flight at most, never for the backlog.
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        return;
                    };
                    let w = worker.clone();
                    tokio::spawn(async move {
                        let id = delivery.id.clone();
                        if let Err(e) = w.attempt(delivery).await {
                            tracing::warn!(delivery = %id, error = %e, "delivery attempt not recorded; it will be repeated");
                        }
                        w.release(&id);
                        drop(permit);
                    });
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox"),
        }
        tokio::select! {
            _ = worker.outbox.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

impl Worker {
    fn claim(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string())
    }

    fn release(&self, id: &str) {
        self.in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        // A slot is free: look again at once rather than at the next poll.
        self.outbox.wake.notify_one();
    }

    async fn escalate_overdue(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        for d in self.store.overdue_urgent(&format_instant(now)).await? {
            let detail = format!(
                "urgent letter not acknowledged within {} s of being queued: phone the practice",
                self.config.delivery.urgent_ack_secs
            );
            tracing::error!(delivery = %d.id, practice = %d.practice, attempts = d.attempts, alert = "letter-escalated", "{detail}");
            self.outbox
                .metrics
                .escalated
                .fetch_add(1, Ordering::Relaxed);
            let state = if d.state == "queued" {
                "escalated"
            } else {
                d.state.as_str()
            };
            self.record(
                &d,
                state,
                None,
                d.next_attempt_at.clone(),
                Some(detail),
                Some(format_instant(now)),
                now,
            )
            .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn record(
        &self,
        d: &Delivery,
        state: &str,
        attempt: Option<DeliveryAttempt>,
        next_attempt_at: String,
        last_error: Option<String>,
        escalated_at: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let communication = self
            .store
            .read("Communication", &d.id)
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("letter {} has no Communication", d.id)))?;
        let communication =
            communication_with_state(communication, state, last_error.as_deref(), now);
        self.store
            .update_delivery(DeliveryUpdate {
                id: d.id.clone(),
                state: state.to_string(),
                attempt,
                next_attempt_at,
                last_error,
                channel: None,
                escalated_at,
                communication,
            })
            .await
    }

    async fn attempt(&self, d: Delivery) -> Result<(), StoreError> {
        let now = Utc::now();
        let number = d.attempts + 1;
        let log = |outcome: &str, detail: Option<String>| DeliveryAttempt {
            attempt: number,
            at: format_instant(now),
            outcome: outcome.to_string(),
            detail,
        };
        let deadline = DateTime::parse_from_rfc3339(&d.deadline_at)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now);
        if now >= deadline {
            let detail = format!(
                "not delivered within the retry window after {} attempts; last error: {}",
                d.attempts,
                d.last_error.as_deref().unwrap_or("none")
            );
            tracing::error!(delivery = %d.id, practice = %d.practice, attempts = d.attempts, alert = "letter-dead", "{detail}");
            self.outbox.metrics.dead.fetch_add(1, Ordering::Relaxed);
            return self
                .record(
                    &d,
                    "dead",
                    Some(log("dead", Some(detail.clone()))),
                    d.next_attempt_at.clone(),
                    Some(detail),
                    None,
                    now,
                )
                .await;
        }

        // Consent is decided now, at the moment of sending: a withdrawal since the letter was
        // written stops it.
        let question = Question {
            recipient: Recipient {
                class: RecipientClass::ReferringPractice,
                organisation: Some(d.practice.clone()),
            },
            action: Action::Disclose,
            purpose: Purpose::Treatment,
            class: DataClass::AdviserLetter,
            at: now,
            document: Some(format!("DocumentReference/{}", d.document_id)),
        };
        let decision =
            crate::access::decide_disclosure(&*self.store, None, &d.patient_id, &question, None)
                .await?;
        if !decision.permitted() {
            let detail = format!(
                "consent does not allow this letter to go to the practice: {}",
                decision.reason
            );
            tracing::info!(delivery = %d.id, "letter cancelled by consent");
            self.outbox
                .metrics
                .cancelled
                .fetch_add(1, Ordering::Relaxed);
            return self
                .record(
                    &d,
                    "cancelled",
                    Some(log("cancelled", Some(detail.clone()))),
                    d.next_attempt_at.clone(),
                    Some(detail),
                    None,
                    now,
                )
                .await;
        }

        let ods = d
            .practice
            .rsplit_once('|')
            .map_or(d.practice.as_str(), |(_, v)| v);
        let outcome = match self.config.directory.get(ods) {
            None => Outcome::Retry {
                error: format!("the practice directory has no delivery route for {ods}"),
                retry_after: None,
            },
            Some(route) => {
                let bundle = self.message(&d).await?;
                self.outbox.metrics.attempts.fetch_add(1, Ordering::Relaxed);
                self.channel
                    .send(
                        ods,
                        route,
                        &bundle,
                        &d.message_id,
                        &d.correlation_id,
                        Duration::from_millis(self.config.delivery.attempt_timeout_ms),
                    )
                    .await
            }
        };
        match outcome {
            Outcome::Accepted => {
                tracing::info!(delivery = %d.id, attempt = number, "letter accepted by the practice's system");
                self.outbox.metrics.accepted.fetch_add(1, Ordering::Relaxed);
                self.record(
                    &d,
                    "accepted",
                    Some(log("delivered", None)),
                    d.next_attempt_at.clone(),
                    None,
                    None,
                    now,
                )
                .await
            }
            Outcome::Rejected { error } => {
                tracing::warn!(delivery = %d.id, attempt = number, error = %error, alert = "letter-rejected", "letter refused by the practice's system");
                self.outbox.metrics.rejected.fetch_add(1, Ordering::Relaxed);
                self.record(
                    &d,
                    "rejected",
                    Some(log("permanent", Some(error.clone()))),
                    d.next_attempt_at.clone(),
                    Some(error),
                    None,
                    now,
                )
                .await
            }
            Outcome::Retry { error, retry_after } => {
                self.outbox.metrics.retries.fetch_add(1, Ordering::Relaxed);
                // The receiver's own Retry-After wins over the backoff (a letter still
                // undelivered at the end of the window is dead either way).
                let wait = retry_after
                    .unwrap_or_else(|| backoff(number as u32, &self.config.delivery, jitter()));
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::info!(delivery = %d.id, attempt = number, error = %error, retry_in_ms = wait.as_millis() as u64, "letter not delivered; will retry");
                // An escalated letter keeps its state until it is delivered.
                let state = if d.state == "escalated" {
                    "escalated"
                } else {
                    "queued"
                };
                self.record(
                    &d,
                    state,
                    Some(log("retry", Some(error.clone()))),
                    format_instant(next),
                    Some(error),
                    None,
                    now,
                )
                .await
            }
        }
    }

    /// The message for a letter, from what is stored now.
    async fn message(&self, d: &Delivery) -> Result<Value, StoreError> {
        let missing =
            |what: &str| StoreError::Corrupt(format!("letter {}: {what} is missing", d.id));
        let referral = self
            .store
            .read("ServiceRequest", &d.referral_id)
            .await?
            .ok_or_else(|| missing("the referral"))?;
        let patient_id = d.patient_id.as_str();
        let patient = self
            .store
            .read("Patient", patient_id)
            .await?
            .ok_or_else(|| missing("the patient"))?;
        let document = self
            .store
            .read("DocumentReference", &d.document_id)
            .await?
            .ok_or_else(|| missing("the document"))?;
        let task = workflow_task(&*self.store, &d.referral_id).await?;
        let base_url = self.config.base_url();
        Ok(super::fhir::message(&Message {
            id: &d.message_id,
            timestamp: &d.created_at,
            base_url: &base_url,
            service: &d.service,
            practice: &d.practice,
            referral: &referral,
            patient: &patient,
            workflow_task: task.as_ref(),
            document: &document,
        }))
    }
}

/// The workflow Task of a referral, if triage has begun.
pub async fn workflow_task(
    store: &dyn Store,
    referral_id: &str,
) -> Result<Option<Value>, StoreError> {
    let request = SearchRequest {
        resource_type: "Task".into(),
        filters: vec![Filter::Reference {
            param: "focus",
            any_of: vec![format!("ServiceRequest/{referral_id}")],
        }],
        count: 1,
        offset: 0,
        sort: Default::default(),
        tenancy: None,
    };
    Ok(store.search(&request).await?.resources.into_iter().next())
}
