//! The outbox worker: finds letters due for an attempt (urgent first), decides consent at the
//! moment of sending, sends through the practice's channel, and records what happened. Urgent
//! letters not acknowledged in time are escalated; letters still undelivered at the end of the
//! retry window are dead. Both raise an alert: an `error` log line, a counter, and the state in
//! the API.
//!
//! Every letter it works on is first claimed in the database under a lease held by this instance
//! ([`Outbox::instance`]) for `lease_seconds`: several instances on one database never work on the
//! same letter at once, and a killed instance's letters are taken over when its leases end.
//! The lease also keeps this instance's own tasks apart (an attempt, an escalation, an answer
//! from MESH), so there is no claim in memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};

use super::email::{Audience, EmailChannel, LetterMail};
use super::fhir::{FhirChannel, Message};
use super::mesh::{AckKind, Inbound, MeshClient, Quarantine, Reading, plain};
use super::state::{AttemptOutcome, DeliveryState, Event, next};
use super::{Failure, Outcome, backoff, communication_with_state, jitter};
use crate::config::{Config, DeliveryConfig, MeshRoute, PracticeRoute};
use crate::consent::{Action, DataClass, Purpose, Question, Recipient};
use crate::fhir::identifiers::value_part;
use crate::fhir::search::{Filter, SearchRequest, format_instant};
use crate::store::{
    Delivery, DeliveryAttempt, DeliveryFilter, DeliveryId, DeliveryUpdate, Lease,
    QuarantinedMessage, Singleton, Store, StoreError,
};

/// What a delivery step came to, as counted: on `/metrics` and as OpenTelemetry's
/// `whg.letters.outcomes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Attempt,
    Accepted,
    Retry,
    Rejected,
    Dead,
    Escalated,
    Cancelled,
}

impl Counted {
    const ALL: [Counted; 7] = [
        Counted::Attempt,
        Counted::Accepted,
        Counted::Retry,
        Counted::Rejected,
        Counted::Dead,
        Counted::Escalated,
        Counted::Cancelled,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Counted::Attempt => "attempt",
            Counted::Accepted => "accepted",
            Counted::Retry => "retry",
            Counted::Rejected => "rejected",
            Counted::Dead => "dead",
            Counted::Escalated => "escalated",
            Counted::Cancelled => "cancelled",
        }
    }

    /// The Prometheus counter's name and help text.
    fn exposition(self) -> (&'static str, &'static str) {
        match self {
            Counted::Attempt => ("whg_letter_attempts_total", "Delivery attempts made"),
            Counted::Accepted => (
                "whg_letters_accepted_total",
                "Letters accepted by the practice's system",
            ),
            Counted::Retry => (
                "whg_letter_retries_total",
                "Attempts that failed and will be retried",
            ),
            Counted::Rejected => (
                "whg_letters_rejected_total",
                "Letters refused permanently by the receiver",
            ),
            Counted::Dead => (
                "whg_letters_dead_total",
                "Letters undelivered at the end of the retry window (alert)",
            ),
            Counted::Escalated => (
                "whg_letters_escalated_total",
                "Urgent letters not acknowledged in time (alert)",
            ),
            Counted::Cancelled => (
                "whg_letters_cancelled_total",
                "Letters stopped because consent no longer allows them",
            ),
        }
    }
}

/// Counters for the metrics endpoint, one per [`Counted`].
#[derive(Debug, Default)]
pub struct Metrics {
    counts: [AtomicU64; Counted::ALL.len()],
}

impl Metrics {
    /// Counts one `what`, here and in OpenTelemetry (by the letter's channel, if it has one).
    pub fn count(&self, what: Counted, channel: Option<&str>) {
        self.counts[what as usize].fetch_add(1, Ordering::Relaxed);
        crate::telemetry::instruments::letter_outcome(what.code(), channel);
    }

    pub fn counted(&self, what: Counted) -> u64 {
        self.counts[what as usize].load(Ordering::Relaxed)
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for what in Counted::ALL {
            let (name, help) = what.exposition();
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                self.counted(what)
            ));
        }
        out
    }
}

/// The outbox's depth as Prometheus gauges: letters still in its hands, and the age of the
/// oldest, by state (every such state, 0 when it has none).
pub fn render_depth(depth: &[crate::store::OutboxDepth], now: DateTime<Utc>) -> String {
    let mut letters = String::from(
        "# HELP whg_outbox_letters Letters waiting in the outbox, by state\n# TYPE whg_outbox_letters gauge\n",
    );
    let mut ages = String::from(
        "# HELP whg_outbox_oldest_age_seconds Age of the oldest letter waiting, by state\n# TYPE whg_outbox_oldest_age_seconds gauge\n",
    );
    for state in DeliveryState::ALL.into_iter().filter(|s| !s.is_final()) {
        let here = depth.iter().find(|d| d.state == state);
        let age = here
            .and_then(|d| d.oldest)
            .map_or(0, |t| (now - t).num_seconds().max(0));
        letters.push_str(&format!(
            "whg_outbox_letters{{state=\"{}\"}} {}\n",
            state.code(),
            here.map_or(0, |d| d.letters)
        ));
        ages.push_str(&format!(
            "whg_outbox_oldest_age_seconds{{state=\"{}\"}} {age}\n",
            state.code()
        ));
    }
    letters + &ages
}

/// Reads the outbox's depth into the OpenTelemetry gauges every `every`, while the process runs.
pub async fn sample_depth(store: Arc<dyn Store>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    loop {
        ticks.tick().await;
        match store.outbox_depth().await {
            Ok(depth) => crate::telemetry::instruments::outbox_depth(&depth, Utc::now()),
            Err(e) => tracing::warn!(error = %e, "cannot read the outbox's depth for the metrics"),
        }
    }
}

/// What the worker and the API share: the wake-up call for newly queued letters, the counters,
/// and the instance's id that the leases it takes on letters are held under.
#[derive(Clone)]
pub struct Outbox {
    pub wake: Arc<Notify>,
    pub metrics: Arc<Metrics>,
    /// This gateway instance, chosen at random at start-up (a UUID v7): the owner of every
    /// lease it takes, its worker's and its routes' alike.
    pub instance: Arc<str>,
}

impl Default for Outbox {
    fn default() -> Self {
        Outbox {
            wake: Arc::default(),
            metrics: Arc::default(),
            instance: uuid::Uuid::now_v7().to_string().into(),
        }
    }
}

impl Outbox {
    /// A lease for this instance from `now`, as long as `config` says.
    pub fn lease(&self, config: &DeliveryConfig, now: DateTime<Utc>) -> Lease {
        Lease::new(
            self.instance.to_string(),
            now + chrono::Duration::from_std(config.lease()).unwrap_or_default(),
        )
    }
}

struct Worker {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    channel: FhirChannel,
    /// The gateway's MESH mailbox, if configured and usable.
    mesh: Option<MeshClient>,
    /// The mail server for letters by secure e-mail, if configured and usable.
    email: Option<EmailChannel>,
    outbox: Outbox,
}

/// Raises `alert` on its own (not with a letter's change), with its AuditEvent; none if one
/// like it is open.
async fn raise(
    store: &dyn Store,
    alert: crate::alerts::NewAlert,
) -> Result<Option<String>, StoreError> {
    let audit = crate::alerts::raised_event(&alert, None);
    let kind = alert.kind;
    let raised = store.raise_alert(alert, audit).await?;
    if let Some(id) = &raised {
        tracing::error!(alert = kind.code(), alert_id = %id, "alert raised for the on-call staff");
    }
    Ok(raised)
}

/// Failed reads of the MESH inbox in a row that raise an alert (one failure is often a blip).
const MESH_FAILURES_FOR_ALERT: u32 = 3;

/// Urgent letters escalated in one poll at most (the rest are in the next one).
const ESCALATIONS_PER_POLL: u32 = 64;

/// What acting on a letter held under a lease came to.
enum Acted {
    /// A change was recorded, which let the lease go.
    Recorded,
    /// Nothing changed: the lease is still to be let go.
    Unchanged,
}

/// What to record about a delivery: what happened to it (which gives its new state) and what
/// goes with it.
struct Change {
    event: Event,
    attempt: Option<DeliveryAttempt>,
    next_attempt_at: DateTime<Utc>,
    last_error: Option<String>,
    escalated_at: Option<DateTime<Utc>>,
    channel: Option<String>,
    transport_id: Option<String>,
    /// AuditEvents of what led to the change (the disclosure decision), stored with it.
    audit: Vec<Value>,
    /// The alert the change raises, and its AuditEvent.
    alert: Option<(crate::alerts::NewAlert, Value)>,
}

impl Change {
    /// `event` happened to the delivery, which is otherwise as it was.
    fn on(d: &Delivery, event: Event) -> Change {
        Change {
            event,
            attempt: None,
            next_attempt_at: d.next_attempt_at,
            last_error: None,
            escalated_at: None,
            channel: None,
            transport_id: None,
            audit: Vec::new(),
            alert: None,
        }
    }

    /// The letter waits for another attempt in `wait`, with `error` as the reason and `log` as
    /// the entry that says so. An escalated letter stays escalated until it is delivered.
    fn retry(
        &mut self,
        d: &Delivery,
        log: DeliveryAttempt,
        error: String,
        wait: Duration,
        now: DateTime<Utc>,
    ) {
        self.event = Event::RetryableFailure {
            escalated: d.escalated_at.is_some(),
        };
        self.attempt = Some(log);
        self.next_attempt_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
        self.last_error = Some(error);
    }
}

/// Runs the worker until the process ends.
pub async fn run(
    store: Arc<dyn Store>,
    config: Arc<Config>,
    http: reqwest::Client,
    outbox: Outbox,
) {
    let timeout = Duration::from_millis(config.delivery.attempt_timeout_ms);
    let mut unusable = None;
    let mesh = config
        .mesh
        .as_ref()
        .and_then(|m| match MeshClient::new(m, timeout) {
            Ok(client) => Some(client),
            Err(e) => {
                tracing::error!(error = %e, alert = "mesh-unusable", "the MESH mailbox cannot be used; letters to MESH practices will wait");
                unusable = Some(m.mailbox.clone());
                None
            }
        });
    if let Some(mailbox) = unusable {
        let alert = crate::alerts::mesh_mailbox(
            &mailbox,
            "its settings or credentials cannot be used (the gateway's log at start-up says which)",
            Utc::now(),
        );
        if let Err(e) = raise(&*store, alert).await {
            tracing::warn!(error = %e, "cannot raise the MESH mailbox's alert");
        }
    }
    // Checked at start (`api::serve`): a failure here is its password file changing since.
    let email = config
        .delivery
        .smtp
        .as_ref()
        .and_then(|smtp| match EmailChannel::new(smtp, timeout) {
            Ok(channel) => Some(channel),
            Err(e) => {
                tracing::error!(error = %e, "the mail server for letters cannot be used; letters by e-mail will wait");
                None
            }
        });
    let worker = Arc::new(Worker {
        store,
        channel: FhirChannel::new(http),
        mesh,
        email,
        outbox,
        config,
    });
    let slots = Arc::new(Semaphore::new(worker.config.delivery.concurrency));
    let poll = Duration::from_millis(worker.config.delivery.poll_interval_ms);
    let mesh_poll = worker
        .config
        .mesh
        .as_ref()
        .map(|m| Duration::from_millis(m.poll_interval_ms));
    let mut next_mesh_poll = tokio::time::Instant::now();
    // Inbox reads failed in a row: at MESH_FAILURES_FOR_ALERT someone is told.
    let mut inbox_failures = 0u32;
    loop {
        let now = Utc::now();
        if let (Some(every), true) = (mesh_poll, tokio::time::Instant::now() >= next_mesh_poll) {
            next_mesh_poll = tokio::time::Instant::now() + every;
            // One instance reads the inbox (its acknowledgements are examined once); the others
            // ask again each poll, and one takes over when the reader's session ends.
            match worker.store.leads(Singleton::MeshInbox).await {
                Ok(true) => match worker.read_inbox().await {
                    Ok(()) => inbox_failures = 0,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the MESH inbox");
                        inbox_failures += 1;
                        if inbox_failures == MESH_FAILURES_FOR_ALERT
                            && let Some(m) = &worker.config.mesh
                        {
                            let alert = crate::alerts::mesh_mailbox(
                                &m.mailbox,
                                &format!(
                                    "its inbox could not be read {MESH_FAILURES_FOR_ALERT} times in a row (the gateway's log says why)"
                                ),
                                Utc::now(),
                            );
                            if let Err(e) = raise(&*worker.store, alert).await {
                                tracing::warn!(error = %e, "cannot raise the MESH mailbox's alert");
                            }
                        }
                    }
                },
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot tell which instance reads the MESH inbox")
                }
            }
        }
        if let Err(e) = worker.escalate_overdue(now).await {
            tracing::warn!(error = %e, "cannot check urgent letters for escalation");
        }
        // Only as many letters are claimed as there are free slots, so that no letter waits for
        // a slot while its lease runs. Due letters come urgent first, so an urgent letter waits
        // for one attempt in flight at most, never for the backlog. Only this loop takes slots.
        let free = slots.available_permits();
        if free > 0 {
            let lease = worker.outbox.lease(&worker.config.delivery, now);
            let limit = u32::try_from(free).unwrap_or(u32::MAX);
            match worker.store.claim_due(&lease, now, limit).await {
                Ok(due) => {
                    for delivery in due {
                        let Ok(permit) = slots.clone().acquire_owned().await else {
                            return;
                        };
                        let w = worker.clone();
                        let lease = lease.clone();
                        let span = attempt_span(&delivery);
                        tokio::spawn(tracing::Instrument::instrument(
                            async move {
                                let id = delivery.id.clone();
                                let attempted = w
                                    .holding(delivery, &lease, async |d| w.attempt(d, &lease).await)
                                    .await;
                                if let Err(e) = attempted {
                                    tracing::warn!(delivery = %id, error = %e, "delivery attempt not recorded; it will be repeated");
                                }
                                drop(permit);
                                // A slot is free: look again at once rather than at the next poll.
                                w.outbox.wake.notify_one();
                            },
                            span,
                        ));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot claim letters from the outbox"),
            }
        }
        tokio::select! {
            _ = worker.outbox.wake.notified() => {}
            _ = tokio::time::sleep(poll) => {}
        }
    }
}

/// A letter's recipient as logs, spans, metrics and alerts name it: a practice or referrer by its
/// code; an employer's contact never by its address (a person's work e-mail), only as what it is.
fn loggable_recipient(recipient: &str) -> &str {
    if crate::letters::employer::contact_address(recipient).is_some() {
        "employer-contact"
    } else {
        value_part(recipient)
    }
}

/// A letter's recipient (`system|value`) in words for the delivery record: a practice by its ODS
/// code, a referrer of another kind by its kind and code.
fn recipient_words(recipient: &str) -> String {
    let (system, code) = recipient.split_once('|').unwrap_or(("", recipient));
    match crate::fhir::systems::referrer_kind_of_system(system) {
        Some(kind) => format!("the {kind} referrer {code}"),
        None => code.to_string(),
    }
}

/// The span of one delivery attempt: a trace of its own (the letter was written by an earlier
/// request), named by the letter and its message id, which every retry of it shares, so a
/// letter's attempts are found together. Its state afterwards is recorded on it.
fn attempt_span(d: &Delivery) -> tracing::Span {
    letter_span("delivery.attempt", d)
}

/// A span about one letter: `name` is what is done (an attempt, an escalation).
fn letter_span(name: &'static str, d: &Delivery) -> tracing::Span {
    tracing::info_span!(
        "letter",
        otel.name = name,
        otel.kind = "internal",
        whg.letter.id = %d.id,
        whg.letter.message_id = %d.message_id,
        whg.letter.attempt = d.attempts + 1,
        whg.letter.urgent = d.urgent,
        whg.practice.ods = loggable_recipient(&d.practice),
        whg.letter.state = tracing::field::Empty,
    )
}

impl Worker {
    /// What an alert about letter `d` says of it.
    fn letter_facts<'a>(&'a self, d: &'a Delivery) -> crate::alerts::LetterFacts<'a> {
        let ods = loggable_recipient(&d.practice);
        crate::alerts::LetterFacts {
            letter_id: d.id.as_str(),
            service_id: value_part(&d.service),
            service_name: self.config.service_name(&d.service),
            practice_ods: ods,
            practice_name: self
                .config
                .route_to(&d.practice)
                .and_then(PracticeRoute::name),
            attempts: d.attempts,
        }
    }

    /// `change` raises `alert` about letter `d`, with its AuditEvent, in its transaction.
    fn raising(change: &mut Change, d: &Delivery, alert: crate::alerts::NewAlert) {
        let audit = crate::alerts::raised_event(&alert, Some(d.id.as_str()));
        change.alert = Some((alert, audit));
    }

    /// Acts on a letter claimed under `lease` (as stored when it was claimed: nothing else
    /// changes it while the lease holds), then lets the lease go if nothing was recorded
    /// (recording a change lets it go itself), so that the letter is free again at once.
    async fn holding(
        &self,
        d: Delivery,
        lease: &Lease,
        act: impl AsyncFnOnce(Delivery) -> Result<Acted, StoreError>,
    ) -> Result<(), StoreError> {
        let id = d.id.clone();
        match act(d).await {
            Ok(Acted::Recorded) => Ok(()),
            Ok(Acted::Unchanged) => self.store.release_delivery(lease, &id).await,
            Err(e) => {
                // If the store cannot take this either, the lease runs out.
                if let Err(release) = self.store.release_delivery(lease, &id).await {
                    tracing::warn!(delivery = %id, error = %release, "cannot let a letter go; it is free once its lease runs out");
                }
                Err(e)
            }
        }
    }

    async fn escalate_overdue(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // A letter with an attempt in flight (here or on another instance) is held by it, and
        // escalated, if still due, once the attempt is recorded: two writers of one letter's
        // state would overwrite each other.
        let lease = self.outbox.lease(&self.config.delivery, now);
        let overdue = self
            .store
            .claim_overdue_urgent(&lease, now, ESCALATIONS_PER_POLL)
            .await?;
        for d in overdue {
            let id = d.id.clone();
            let span = letter_span("delivery.escalation", &d);
            if let Err(e) = tracing::Instrument::instrument(
                self.holding(d, &lease, async |d| self.escalate(d, &lease, now).await),
                span,
            )
            .await
            {
                tracing::warn!(delivery = %id, error = %e, "escalation not recorded; it will be repeated");
            }
        }
        Ok(())
    }

    async fn escalate(
        &self,
        d: Delivery,
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Acted, StoreError> {
        if d.escalated_at.is_some() || next(d.state, Event::UrgentAckOverdue).is_err() {
            return Ok(Acted::Unchanged);
        }
        let detail = format!(
            "urgent letter not acknowledged within {} s of being queued: phone the practice",
            self.config.delivery.urgent_ack_secs
        );
        tracing::error!(delivery = %d.id, practice = loggable_recipient(&d.practice), attempts = d.attempts, alert = "letter-escalated", "{detail}");
        self.outbox
            .metrics
            .count(Counted::Escalated, d.channel.as_deref());
        // A letter waiting for MESH acknowledgements keeps waiting; escalated_at marks it.
        let mut change = Change::on(&d, Event::UrgentAckOverdue);
        change.last_error = Some(detail);
        change.escalated_at = Some(now);
        let duty = self
            .config
            .service(value_part(&d.service))
            .and_then(|s| s.duty_contact.as_deref());
        let alert = crate::alerts::letter_escalated(
            &self.letter_facts(&d),
            self.config.delivery.urgent_ack_secs,
            duty,
            now,
        );
        Self::raising(&mut change, &d, alert);
        self.record(&d, lease, change, now).await
    }

    /// Records a change of a delivery in the state its event takes it to; nothing if the event
    /// no longer applies to the letter as it stands.
    async fn record(
        &self,
        d: &Delivery,
        lease: &Lease,
        c: Change,
        now: DateTime<Utc>,
    ) -> Result<Acted, StoreError> {
        let state = match next(d.state, c.event) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "delivery change not recorded");
                return Ok(Acted::Unchanged);
            }
        };
        tracing::Span::current().record("whg.letter.state", state.code());
        let communication = self
            .store
            .read("Communication", d.id.as_str())
            .await?
            .ok_or_else(|| StoreError::Corrupt(format!("letter {} has no Communication", d.id)))?;
        let communication =
            communication_with_state(communication, state, c.last_error.as_deref(), now);
        self.store
            .update_delivery(DeliveryUpdate {
                id: d.id.clone(),
                lease: lease.clone(),
                state,
                attempt: c.attempt,
                next_attempt_at: c.next_attempt_at,
                last_error: c.last_error,
                channel: c.channel,
                escalated_at: c.escalated_at,
                transport_id: c.transport_id,
                deadline_at: None,
                communication,
                audit: c.audit,
                alert: c.alert,
            })
            .await?;
        Ok(Acted::Recorded)
    }

    /// Attempts a letter claimed as due under `lease`.
    async fn attempt(&self, d: Delivery, lease: &Lease) -> Result<Acted, StoreError> {
        let now = Utc::now();
        let number = d.attempts + 1;
        let log = |outcome: AttemptOutcome, detail: Option<String>| DeliveryAttempt {
            attempt: number,
            at: now,
            outcome,
            detail,
        };
        let deadline = d.deadline_at;
        if now >= deadline {
            let detail = format!(
                "not delivered within the retry window after {} attempts; last error: {}",
                d.attempts,
                d.last_error.as_deref().unwrap_or("none")
            );
            // The last error can hold the receiver's own text: it stays in the record.
            tracing::error!(delivery = %d.id, practice = loggable_recipient(&d.practice), attempts = d.attempts, alert = "letter-dead", "letter not delivered within the retry window");
            self.outbox
                .metrics
                .count(Counted::Dead, d.channel.as_deref());
            let mut change = Change::on(&d, Event::DeadlinePassed);
            change.attempt = Some(log(AttemptOutcome::Dead, Some(detail.clone())));
            change.last_error = Some(detail);
            let alert = crate::alerts::letter_dead(
                &self.letter_facts(&d),
                self.config.delivery.retry_window_secs,
                now,
            );
            Self::raising(&mut change, &d, alert);
            return self.record(&d, lease, change, now).await;
        }

        // Consent is decided now, at the moment of sending: a withdrawal since the letter was
        // written stops it. The decision is audited in the transaction that records what it led
        // to (the attempt, or the cancellation), so neither is stored without the other.
        // The recipient is whoever the letter is addressed to: the referring practice, a
        // referrer of another kind (Talking Therapies, a clinic), or an employer's contact (a
        // letter the person approved), each its own class; every class the letter holds is asked.
        let mut decided_all = Vec::new();
        let (questions, asked_of) = self.disclosures(&d, now).await?;
        for question in questions {
            let (decision, decided) = crate::access::disclosure_decision(
                &*self.store,
                None,
                &d.patient_id,
                &question,
                None,
            )
            .await?;
            decided_all.push(decided);
            if !decision.permitted() {
                let detail = format!(
                    "consent does not allow this letter to go to its recipient: {}",
                    decision.reason
                );
                tracing::info!(delivery = %d.id, "letter cancelled by consent");
                self.outbox
                    .metrics
                    .count(Counted::Cancelled, d.channel.as_deref());
                let mut change = Change::on(&d, Event::ConsentWithdrawn);
                change.attempt = Some(log(AttemptOutcome::Cancelled, Some(detail.clone())));
                change.last_error = Some(detail);
                change.audit.extend(decided_all);
                return self.record(&d, lease, change, now).await;
            }
        }

        // An employer's contact takes the letter by e-mail at the address it is named by; anyone
        // else by the route the directory gives it.
        let employer = crate::letters::employer::contact_address(&d.practice);
        let ods = loggable_recipient(&d.practice);
        let route = match employer {
            Some(_) => None,
            None => self.config.route_to(&d.practice),
        };
        // Further decisions the message needed (the outcome class), audited with the attempt.
        let mut decided_too = Vec::new();
        let outcome = match route {
            // The very version consent was asked about, as read then: nothing in between.
            None if let Some(address) = employer => {
                self.send_email(&d, address, Audience::Employer, asked_of)
                    .await?
            }
            None => Outcome::Retry {
                error: Failure::new(format!(
                    "the directory has no delivery route for {}",
                    recipient_words(&d.practice)
                )),
                retry_after: None,
            },
            Some(PracticeRoute::Fhir(route)) => {
                let (bundle, outcome_decided) = self.message(&d).await?;
                decided_too.push(outcome_decided);
                self.outbox
                    .metrics
                    .count(Counted::Attempt, Some(PracticeRoute::FHIR));
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
            Some(PracticeRoute::Mesh(route)) => self.send_mesh(&d, route).await?,
            Some(PracticeRoute::Email(route)) => {
                self.send_email(&d, &route.address, Audience::Referrer, None)
                    .await?
            }
        };
        // The event is set below, from what the attempt came to.
        let mut change = Change::on(&d, Event::Delivered);
        change.channel = match employer {
            Some(_) => Some(PracticeRoute::EMAIL.to_string()),
            None => route.map(|r| r.channel().to_string()),
        };
        change.audit.extend(decided_all);
        change.audit.extend(decided_too);
        match outcome {
            Outcome::Accepted => {
                tracing::info!(delivery = %d.id, attempt = number, "letter accepted by the practice's system");
                self.outbox
                    .metrics
                    .count(Counted::Accepted, change.channel.as_deref());
                change.event = Event::Delivered;
                change.attempt = Some(log(AttemptOutcome::Delivered, None));
            }
            Outcome::Sent { transport_id } => {
                tracing::info!(delivery = %d.id, attempt = number, "letter sent over MESH; waiting for acknowledgements");
                let wait = self
                    .config
                    .mesh
                    .as_ref()
                    .map_or(0, |m| m.infrastructure_ack_secs);
                change.event = Event::SentOverMesh;
                let again = if matches!(d.state, DeliveryState::Sent | DeliveryState::Received) {
                    " (again: the acknowledgements did not come in time)"
                } else {
                    ""
                };
                change.attempt = Some(log(
                    AttemptOutcome::Sent,
                    Some(format!("MESH message {transport_id}{again}")),
                ));
                change.next_attempt_at = now + chrono::Duration::seconds(wait as i64);
                change.transport_id = Some(transport_id);
            }
            // Logged: the gateway's reason (a status, a timeout). The receiver's own text is kept
            // with the delivery only.
            Outcome::Rejected { error } => {
                tracing::warn!(delivery = %d.id, attempt = number, reason = %error.reason, alert = "letter-rejected", "letter refused by the practice's system");
                self.outbox
                    .metrics
                    .count(Counted::Rejected, change.channel.as_deref());
                change.event = Event::Refused;
                change.attempt = Some(log(AttemptOutcome::Permanent, Some(error.detail())));
                change.last_error = Some(error.detail());
            }
            Outcome::Retry { error, retry_after } => {
                self.outbox
                    .metrics
                    .count(Counted::Retry, change.channel.as_deref());
                // The receiver's own Retry-After wins over the backoff (a letter still
                // undelivered at the end of the window is dead either way).
                let wait = retry_after
                    .unwrap_or_else(|| backoff(number as u32, &self.config.delivery, jitter()));
                tracing::info!(delivery = %d.id, attempt = number, reason = %error.reason, retry_in_ms = wait.as_millis() as u64, "letter not delivered; will retry");
                // Every attempt at the practice's endpoint failing (whichever letters they
                // carried) for longer than the threshold: its system is down, and someone
                // should tell the practice. This failure is the first if none is recorded.
                let failing_since = self
                    .store
                    .endpoint_failing_since(&d.practice)
                    .await?
                    .unwrap_or(now);
                if crate::alerts::failing_for_long(
                    failing_since,
                    now,
                    self.config.alerts.endpoint_failing_after_secs,
                ) {
                    let alert = crate::alerts::endpoint_failing(
                        ods,
                        route.and_then(PracticeRoute::name),
                        failing_since,
                        &error.reason,
                        now,
                    );
                    Self::raising(&mut change, &d, alert);
                }
                change.retry(
                    &d,
                    log(AttemptOutcome::Retry, Some(error.detail())),
                    error.detail(),
                    wait,
                    now,
                );
            }
        }
        self.record(&d, lease, change, now).await
    }

    /// What must be permitted for letter `d` to go, as of `now`: the adviser's letter to its
    /// recipient; for an employer's contact, each class the document holds, for the document at
    /// its current version (which only the person's approval of that version permits).
    async fn disclosures(
        &self,
        d: &Delivery,
        now: DateTime<Utc>,
    ) -> Result<(Vec<Question>, Option<Value>), StoreError> {
        let Some(recipient) = Recipient::addressed(&d.practice) else {
            return Err(StoreError::Corrupt(format!(
                "letter {} is addressed to {}, which is no recipient the gateway knows",
                d.id, d.practice
            )));
        };
        if recipient.class != crate::consent::RecipientClass::Employer {
            return Ok((
                vec![Question {
                    recipient,
                    action: Action::Disclose,
                    purpose: Purpose::Treatment,
                    class: DataClass::AdviserLetter,
                    at: now,
                    document: Some(format!("DocumentReference/{}", d.document_id)),
                }],
                None,
            ));
        }
        let document = self
            .required(d, "DocumentReference", &d.document_id)
            .await?;
        let version = document["meta"]["versionId"]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let questions = crate::letters::employer::document_classes(&document)
            .into_iter()
            .map(|class| {
                crate::letters::employer::employer_question(
                    &d.practice,
                    class,
                    &d.document_id,
                    version,
                    now,
                )
            })
            .collect();
        Ok((questions, Some(document)))
    }

    /// Sends a letter's PDF by secure e-mail to `to`: the PDF of `document` when given (the
    /// version consent was just asked about), else of the letter's document as stored.
    async fn send_email(
        &self,
        d: &Delivery,
        to: &str,
        audience: Audience,
        document: Option<Value>,
    ) -> Result<Outcome, StoreError> {
        let Some(email) = &self.email else {
            return Ok(Outcome::Retry {
                error: Failure::new(
                    "the gateway's mail server for letters is not configured or cannot be used",
                ),
                retry_after: None,
            });
        };
        let document = match document {
            Some(document) => document,
            None => {
                self.required(d, "DocumentReference", &d.document_id)
                    .await?
            }
        };
        let pdf = super::mesh::pdf_of(&document)
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            })
            .ok_or_else(|| {
                StoreError::Corrupt(format!("letter {}: the document has no PDF", d.id))
            })?;
        let referral = self.required(d, "ServiceRequest", &d.referral_id).await?;
        // The referrer's own id of the referral, in the system its kind's ids live in.
        let (system, code) = d.practice.split_once('|').unwrap_or_default();
        let their_reference = crate::fhir::systems::referrer_kind_of_system(system)
            .map(|kind| crate::fhir::systems::referrer_referral_id_system(kind, code))
            .and_then(|ids| {
                referral["identifier"]
                    .as_array()?
                    .iter()
                    .find_map(|i| (i["system"] == ids.as_str()).then(|| i["value"].as_str())?)
            });
        let service = self.config.service(value_part(&d.service));
        let service_name = self.config.service_name(&d.service);
        self.outbox
            .metrics
            .count(Counted::Attempt, Some(PracticeRoute::EMAIL));
        Ok(email
            .send(&LetterMail {
                message_id: &d.message_id,
                to,
                audience,
                service_name,
                title: document["description"].as_str().unwrap_or("Letter"),
                their_reference,
                reply_to: service.and_then(|s| s.public_contact.as_deref()),
                pdf,
            })
            .await)
    }

    /// Sends a letter as GP Connect Send Document over MESH.
    async fn send_mesh(&self, d: &Delivery, route: &MeshRoute) -> Result<Outcome, StoreError> {
        let Some(mesh) = &self.mesh else {
            return Ok(Outcome::Retry {
                error: Failure::new(
                    "the gateway's MESH mailbox is not configured or cannot be used",
                ),
                retry_after: None,
            });
        };
        let patient = self.patient(d).await?;
        let document = self
            .required(d, "DocumentReference", &d.document_id)
            .await?;
        let pdf = super::mesh::pdf_of(&document).ok_or_else(|| {
            StoreError::Corrupt(format!("letter {}: the document has no PDF", d.id))
        })?;
        let who = crate::fhir::patient::demographics(&patient);
        let person = super::mesh::Person {
            nhs_number: who.nhs_number.as_deref().unwrap_or_default(),
            family: &who.family,
            given: &who.given,
            birth_date: who.birth_date.as_deref().unwrap_or_default(),
        };
        let to = match super::mesh::recipient(route, &person) {
            Ok(to) => to,
            Err(error) => {
                return Ok(Outcome::Rejected {
                    error: Failure::new(error),
                });
            }
        };
        let service_name = self.config.service_name(&d.service);
        let title = document["description"].as_str().unwrap_or("Letter");
        let author = document["author"][0]["display"]
            .as_str()
            .unwrap_or(service_name);
        let message = super::mesh::itk_message(&super::mesh::Letter {
            message_id: &d.message_id,
            letter_id: d.id.as_str(),
            timestamp: &format_instant(d.created_at),
            title,
            author,
            service: &d.service,
            service_name,
            service_ods: self
                .config
                .service(crate::fhir::identifiers::value_part(&d.service))
                .and_then(|s| s.ods_code.as_deref()),
            sender_mailbox: mesh.mailbox(),
            person,
            pdf_base64: pdf,
        });
        // The subject GP Connect Send Document prescribes: "[title] for [name], NHS Number: [n],
        // seen at [service], Version: 1". MESH metadata, never logged by the gateway.
        let subject = format!(
            "{title} for {}, NHS Number: {}, seen at {service_name}, Version: 1",
            who.full_name().unwrap_or_default(),
            who.nhs_number.as_deref().unwrap_or_default()
        );
        self.outbox
            .metrics
            .count(Counted::Attempt, Some(PracticeRoute::MESH));
        Ok(mesh.send(&to, &subject, &d.message_id, &message).await)
    }

    /// Reads the MESH inbox: ITK3 acknowledgements of letters, and MESH's own non-delivery
    /// reports. Every message is acknowledged to MESH once it is dealt with: an answer to a letter
    /// after its result is recorded, anything else after it is quarantined. Nothing stays in the
    /// inbox for good, so junk can never fill the page MESH lists (500) and hide the answers
    /// behind it; the pages are read until one brings nothing new.
    async fn read_inbox(self: &Arc<Self>) -> Result<(), String> {
        let Some(mesh) = &self.mesh else {
            return Ok(());
        };
        for _ in 0..INBOX_PAGES_PER_POLL {
            let ids = mesh.inbox().await?;
            if ids.is_empty() {
                break;
            }
            let mut acknowledged = 0;
            // Downloading and setting aside run side by side; answers are then applied one by
            // one in the order MESH lists them, so a letter's 20013 is recorded before its 30001.
            for (id, examined) in self.examine_all(ids).await {
                let settled = match examined {
                    Ok(Examined::Settled(acknowledged)) => Ok(acknowledged),
                    Ok(Examined::Answer(letter, answer)) => {
                        self.apply_answer(mesh, &id, &letter, answer).await
                    }
                    Err(e) => Err(e),
                };
                match settled {
                    Ok(true) => acknowledged += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(mesh_message = %plain(&id), error = %e, "cannot take an inbox message; it stays for the next poll")
                    }
                }
            }
            if acknowledged == 0 {
                break;
            }
        }
        Ok(())
    }

    /// [`Worker::examine`] for every message of a page, [`INBOX_CONCURRENCY`] at a time; the
    /// results in the page's order.
    async fn examine_all(
        self: &Arc<Self>,
        ids: Vec<String>,
    ) -> Vec<(String, Result<Examined, String>)> {
        let mut done = Vec::with_capacity(ids.len());
        let mut running = tokio::task::JoinSet::new();
        for (position, id) in ids.into_iter().enumerate() {
            if running.len() >= INBOX_CONCURRENCY
                && let Some(finished) = running.join_next().await
            {
                done.push(finished);
            }
            let worker = self.clone();
            running.spawn(async move {
                let examined = worker.examine(&id).await;
                (position, id, examined)
            });
        }
        while let Some(finished) = running.join_next().await {
            done.push(finished);
        }
        let mut examined: Vec<(usize, String, Result<Examined, String>)> = done
            .into_iter()
            .filter_map(|joined| {
                joined
                    .inspect_err(|e| tracing::warn!(error = %e, "an inbox task failed"))
                    .ok()
            })
            .collect();
        examined.sort_by_key(|(position, _, _)| *position);
        examined
            .into_iter()
            .map(|(_, id, result)| (id, result))
            .collect()
    }

    /// Downloads one inbox message (bounded) and decides what it is. Anything that answers no
    /// letter, or answers one from the wrong mailbox, is quarantined and acknowledged here.
    async fn examine(&self, id: &str) -> Result<Examined, String> {
        let Some(mesh) = &self.mesh else {
            return Ok(Examined::Settled(false));
        };
        let max_bytes = self.config.mesh.as_ref().map_or(0, |m| m.max_message_bytes);
        let inbound = mesh.download(id, max_bytes).await?;
        let (message_id, answer) = match super::mesh::reading(&inbound) {
            Reading::Quarantine(reason) => {
                return self.set_aside(mesh, &inbound, reason, None).await;
            }
            Reading::Report { answers, detail } => (answers, Answer::Report(detail)),
            Reading::Ack(ack) => (ack.answers.clone(), Answer::Ack(ack)),
        };
        let found = self
            .store
            .deliveries(&DeliveryFilter {
                message_id: Some(message_id),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let Some(d) = found.into_iter().next() else {
            return self
                .set_aside(mesh, &inbound, Quarantine::AnswersNoLetter, None)
                .await;
        };
        // Only the practice's system the letter went to speaks for it: anyone else's
        // "received", "filed" or "refused" changes nothing.
        if matches!(answer, Answer::Ack(_)) && !self.sent_to(&d, &inbound.sender).await? {
            return self
                .set_aside(mesh, &inbound, Quarantine::WrongSender, Some(d.id.as_str()))
                .await;
        }
        if d.state.is_final() {
            return self.acknowledge(mesh, id).await;
        }
        Ok(Examined::Answer(d.id, answer))
    }

    /// Records what an answer means for its letter, then acknowledges the message; false if the
    /// letter is being sent again right now (the answer is taken at the next poll).
    async fn apply_answer(
        &self,
        mesh: &MeshClient,
        id: &str,
        letter: &DeliveryId,
        answer: Answer,
    ) -> Result<bool, String> {
        let now = Utc::now();
        // As stored now, and held, so that no attempt here or on another instance changes it
        // meanwhile (one may have finished since the message was examined). A letter held by an
        // attempt in flight takes the answer at the next poll.
        let lease = self.outbox.lease(&self.config.delivery, now);
        let Some(d) = self
            .store
            .claim_delivery(&lease, letter, now)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(false);
        };
        self.holding(d, &lease, async |d| {
            // A late or repeated acknowledgement of an accepted letter changes nothing.
            if d.state.is_final() {
                return Ok(Acted::Unchanged);
            }
            self.record(&d, &lease, self.answered(&d, &answer, now), now)
                .await
        })
        .await
        .map_err(|e| e.to_string())?;
        mesh.acknowledge(id).await.map(|()| true)
    }

    /// Quarantines a message and acknowledges it to MESH.
    async fn set_aside(
        &self,
        mesh: &MeshClient,
        inbound: &Inbound,
        reason: Quarantine,
        letter: Option<&str>,
    ) -> Result<Examined, String> {
        self.quarantine(inbound, reason, letter).await?;
        self.acknowledge(mesh, &inbound.id).await
    }

    async fn acknowledge(&self, mesh: &MeshClient, id: &str) -> Result<Examined, String> {
        mesh.acknowledge(id).await.map(|()| Examined::Settled(true))
    }

    /// Whether `sender` is the mailbox the letter was sent to: the practice's mailbox in the
    /// directory or, for a letter MESH routed by the person's demographics, the mailbox MESH says
    /// it delivered the letter's last send to.
    async fn sent_to(&self, d: &Delivery, sender: &str) -> Result<bool, String> {
        if d.channel.as_deref() != Some("mesh") {
            return Ok(false);
        }
        match self.config.route_to(&d.practice) {
            Some(PracticeRoute::Mesh(MeshRoute {
                mailbox: Some(mailbox),
                ..
            })) => Ok(super::mesh::is_recipient(sender, mailbox)),
            Some(PracticeRoute::Mesh(_)) => match (&self.mesh, &d.transport_id) {
                (Some(mesh), Some(sent)) => Ok(mesh
                    .recipient_of(sent)
                    .await?
                    .is_some_and(|recipient| super::mesh::is_recipient(sender, &recipient))),
                _ => Ok(false),
            },
            _ => Ok(false),
        }
    }

    /// Keeps a message that answers no letter, with its AuditEvent, before it leaves the inbox.
    async fn quarantine(
        &self,
        inbound: &Inbound,
        reason: Quarantine,
        letter: Option<&str>,
    ) -> Result<(), String> {
        let now = Utc::now();
        let record = QuarantinedMessage {
            id: inbound.id.clone(),
            sender: bounded(&inbound.sender),
            workflow_id: bounded(&inbound.workflow),
            message_type: bounded(&inbound.message_type),
            local_id: bounded(&inbound.local_id),
            received_at: now,
            size: inbound.size,
            reason: reason.code().to_string(),
            letter_id: letter.map(str::to_string),
            has_content: inbound.body.is_some(),
        };
        let event = crate::audit::audit_event(&crate::audit::Event {
            kind: crate::audit::Kind::MeshQuarantine,
            principal: None,
            patient: None,
            entities: letter
                .map(|l| format!("Communication/{l}"))
                .into_iter()
                .collect(),
            decision: None,
            permitted: false,
            description: format!(
                "MESH message quarantined ({}): {}; from mailbox {}, workflow {}, {} bytes",
                reason.code(),
                reason.description(),
                plain(&inbound.sender),
                plain(&inbound.workflow),
                inbound.size
            ),
            at: now,
            request_id: None,
        });
        let event = crate::audit::with_mesh_message(event, &inbound.id, "the message quarantined");
        let new = self
            .store
            .quarantine_mesh_message(record, inbound.body.clone(), event)
            .await
            .map_err(|e| e.to_string())?;
        if new {
            tracing::warn!(
                mesh_message = %plain(&inbound.id),
                reason = reason.code(),
                letter = letter.unwrap_or_default(),
                alert = "mesh-quarantine",
                "an inbox message answers none of the gateway's letters; quarantined and acknowledged"
            );
        }
        Ok(())
    }

    /// A resource a letter needs; its absence means the store is damaged.
    async fn required(
        &self,
        d: &Delivery,
        resource_type: &str,
        id: &str,
    ) -> Result<Value, StoreError> {
        self.store.read(resource_type, id).await?.ok_or_else(|| {
            StoreError::Corrupt(format!("letter {}: {resource_type}/{id} is missing", d.id))
        })
    }

    /// A stored resource by its `Type/id` reference, if there is one.
    async fn resolve(&self, reference: &str) -> Result<Option<Value>, StoreError> {
        match reference.split_once('/') {
            Some((resource_type, id)) => self.store.read(resource_type, id).await,
            None => Ok(None),
        }
    }

    /// The Organization `reference` names when it is the one identified as `identifier`
    /// (`system|value`); otherwise the organisation as the gateway knows it, by that identifier.
    async fn organisation(
        &self,
        reference: Option<&str>,
        identifier: &str,
    ) -> Result<Value, StoreError> {
        let (system, value) = identifier.split_once('|').unwrap_or(("", identifier));
        if let Some(r) = reference
            && let Some(org) = self.resolve(r).await?
            && crate::fhir::identifiers::has_identifier(&org, identifier)
        {
            return Ok(org);
        }
        Ok(json!({
            "resourceType": "Organization",
            "identifier": [{ "system": system, "value": value }],
        }))
    }

    /// The person as the referral's practice stated them (see
    /// [`crate::access::patient_of_referral`]).
    async fn patient(&self, d: &Delivery) -> Result<Value, StoreError> {
        crate::access::patient_of_referral(&*self.store, &d.referral_id)
            .await?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "letter {}: the referral's Patient is missing",
                    d.id
                ))
            })
    }

    /// The message for a letter, from what is stored now, and the AuditEvent of the outcome
    /// decision it took (to be stored with the attempt).
    async fn message(&self, d: &Delivery) -> Result<(Value, Value), StoreError> {
        let referral = self.required(d, "ServiceRequest", &d.referral_id).await?;
        let patient = self.patient(d).await?;
        let document = self
            .required(d, "DocumentReference", &d.document_id)
            .await?;
        // The workflow Task carries the outcome: it goes with the letter only if the person's
        // consent lets the service disclose outcomes to the practice too (decided and audited
        // like the letter itself).
        let outcome = Question::outcomes_to(&d.practice, Utc::now());
        let (decision, decided) =
            crate::access::disclosure_decision(&*self.store, None, &d.patient_id, &outcome, None)
                .await?;
        let task = if decision.permitted() {
            workflow_task(&*self.store, &d.referral_id).await?
        } else {
            None
        };
        let service_organization = self
            .organisation(referral["performer"][0]["reference"].as_str(), &d.service)
            .await?;
        let requester = match referral["requester"]["reference"].as_str() {
            Some(r) => self.resolve(r).await?,
            None => None,
        };
        let practice_organization = self
            .organisation(
                requester
                    .as_ref()
                    .and_then(|r| r["organization"]["reference"].as_str()),
                &d.practice,
            )
            .await?;
        let base_url = self.config.base_url();
        let message = super::fhir::message(&Message {
            id: &d.message_id,
            timestamp: &format_instant(d.created_at),
            base_url: &base_url,
            service: &d.service,
            practice: &d.practice,
            service_organization: &service_organization,
            practice_organization: &practice_organization,
            target_identifier: match self.config.route_to(&d.practice) {
                Some(PracticeRoute::Fhir(route)) => route.target_identifier.as_deref(),
                _ => None,
            },
            referral: &referral,
            patient: &patient,
            workflow_task: task.as_ref(),
            document: &document,
        });
        Ok((message, decided))
    }
}

/// What was made of one inbox message before any letter changes.
enum Examined {
    /// Dealt with: set aside and acknowledged to MESH (true), or left for the next poll (false).
    Settled(bool),
    /// An answer to the letter with this id, applied in inbox order.
    Answer(DeliveryId, Answer),
}

/// What came back about a letter sent over MESH.
enum Answer {
    /// MESH could not deliver it (its non-delivery report, with the reason).
    Report(String),
    Ack(super::mesh::Ack),
}

impl Worker {
    /// The change an answer makes to a letter that is still being delivered.
    fn answered(&self, d: &Delivery, answer: &Answer, now: DateTime<Utc>) -> Change {
        let at = |secs: u64| now + chrono::Duration::seconds(secs as i64);
        match answer {
            Answer::Report(detail) => {
                let mut c = Change::on(d, Event::RetryableFailure { escalated: false });
                let wait = backoff(1, &self.config.delivery, jitter());
                c.retry(
                    d,
                    ack_log(d, AttemptOutcome::Retry, detail, now),
                    detail.clone(),
                    wait,
                    now,
                );
                c
            }
            Answer::Ack(ack) => {
                // The practice system's diagnostics are its own text: cleaned and bounded.
                let detail = format!(
                    "ITK {} {}",
                    crate::outbound::cleaned_remote_text(&ack.code, 20),
                    crate::outbound::cleaned_remote_text(&ack.detail, super::MAX_REMOTE_TEXT_CHARS)
                );
                let mut c = match ack.kind {
                    AckKind::Received => {
                        let mut c = Change::on(d, Event::AckReceived);
                        c.next_attempt_at =
                            at(self.config.mesh.as_ref().map_or(0, |m| m.business_ack_secs));
                        c
                    }
                    AckKind::Accepted => {
                        self.outbox
                            .metrics
                            .count(Counted::Accepted, Some(PracticeRoute::MESH));
                        Change::on(d, Event::AckAccepted)
                    }
                    AckKind::Negative => {
                        self.outbox
                            .metrics
                            .count(Counted::Rejected, Some(PracticeRoute::MESH));
                        tracing::warn!(delivery = %d.id, alert = "letter-rejected", "the practice's system refused the letter");
                        let mut c = Change::on(d, Event::AckRejected);
                        c.last_error = Some(detail.clone());
                        c
                    }
                };
                c.attempt = Some(ack_log(d, AttemptOutcome::Acknowledged, &detail, now));
                c
            }
        }
    }
}

/// Inbox messages taken at once: each is a download, a store write and an acknowledgement, mostly
/// waiting on MESH, so a few in flight take a page of 500 in seconds.
const INBOX_CONCURRENCY: usize = 8;

/// Pages of the inbox read in one poll at most, so that a flood cannot hold the worker.
const INBOX_PAGES_PER_POLL: usize = 20;

/// A header value as kept with a quarantined message: at most 256 characters.
fn bounded(text: &str) -> String {
    text.chars().take(256).collect()
}

/// The log entry for an acknowledgement or report: it answers the delivery's latest attempt.
fn ack_log(
    d: &Delivery,
    outcome: AttemptOutcome,
    detail: &str,
    at: DateTime<Utc>,
) -> DeliveryAttempt {
    DeliveryAttempt {
        attempt: d.attempts,
        at,
        outcome,
        detail: Some(detail.to_string()),
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
