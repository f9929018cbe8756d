//! Operational alerts that reach a person: a letter gone dead, an urgent (safeguarding) letter
//! escalated, a practice's endpoint failing for longer than a threshold, the MESH mailbox
//! unusable. Each is stored once (while one of the same kind about the same thing is open,
//! another is not raised), sent to the configured on-call routes, listed on the operations page
//! until a person acknowledges it, and audited.
//!
//! Pure: what an alert says, who may see and acknowledge it, where it is routed and what the
//! webhook is sent. An alert names letters, practices and services by their ids and ODS codes
//! and says what happened in the gateway's own words: never a person's name, NHS number, birth
//! date or a remote system's text, so it may go to any on-call channel.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::caller::{Principal, Role};

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertKind {
    /// A letter not delivered within the retry window.
    LetterDead,
    /// An urgent letter not acknowledged in time: phone the practice.
    LetterEscalated,
    /// Every attempt at a practice's endpoint has failed for longer than the threshold.
    EndpointFailing,
    /// The gateway's MESH mailbox cannot be used or read.
    MeshMailbox,
}

impl AlertKind {
    pub const ALL: [AlertKind; 4] = [
        AlertKind::LetterDead,
        AlertKind::LetterEscalated,
        AlertKind::EndpointFailing,
        AlertKind::MeshMailbox,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AlertKind::LetterDead => "letter-dead",
            AlertKind::LetterEscalated => "letter-escalated",
            AlertKind::EndpointFailing => "endpoint-failing",
            AlertKind::MeshMailbox => "mesh-mailbox",
        }
    }

    pub fn from_code(code: &str) -> Option<AlertKind> {
        Self::ALL.into_iter().find(|k| k.code() == code)
    }

    /// The alert's heading, for the page and the webhook.
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::LetterDead => "A letter to a GP practice was not delivered",
            AlertKind::LetterEscalated => "An urgent letter has not been acknowledged",
            AlertKind::EndpointFailing => "A GP practice's system has been failing",
            AlertKind::MeshMailbox => "The MESH mailbox cannot be used",
        }
    }

    /// How long after a person acknowledges an alert of this kind the same trouble with the
    /// same thing may raise it again. A failing endpoint or mailbox usually goes on failing
    /// after someone has taken it on: raising it again at the next retry would page the
    /// on-call person every few minutes for what they are already dealing with. A letter's
    /// alerts are about that one letter and never come back.
    pub fn quiet_after_acknowledged(self) -> chrono::Duration {
        match self {
            AlertKind::LetterDead | AlertKind::LetterEscalated => chrono::Duration::zero(),
            AlertKind::EndpointFailing | AlertKind::MeshMailbox => chrono::Duration::hours(4),
        }
    }
}

/// An alert as raised, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub kind: AlertKind,
    /// What it is about (a letter id, a practice's ODS code, the mailbox id): one open alert of
    /// a kind per subject.
    pub subject: String,
    /// The service it concerns, when one does (its letters): that service's managers see it.
    pub service: Option<String>,
    /// What happened and what to do, in the gateway's words.
    pub summary: String,
    /// Who to call: the service's duty contact, for an escalated urgent letter.
    pub duty_contact: Option<String>,
    pub raised_at: DateTime<Utc>,
    /// When the condition it reports began, for one that goes on by itself (a practice's
    /// endpoint failing since its first failure): an acknowledgement from before then was of an
    /// earlier outage and does not keep this one quiet. Not stored (none when read back).
    pub ongoing_since: Option<DateTime<Utc>>,
}

impl NewAlert {
    /// An acknowledgement of its kind about its subject after this instant keeps it from being
    /// raised again: within the kind's quiet time, and of this same outage.
    pub fn quiet_since(&self) -> DateTime<Utc> {
        let quiet = self.raised_at - self.kind.quiet_after_acknowledged();
        self.ongoing_since.map_or(quiet, |since| quiet.max(since))
    }
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub id: String,
    pub raised: NewAlert,
    /// When every on-call route had taken it; none yet.
    pub notified_at: Option<DateTime<Utc>>,
    pub notify_attempts: i64,
    /// The on-call routes (by name) that have taken it: not sent it again.
    pub taken_by: Vec<String>,
    pub acknowledged: Option<Acknowledgement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledgement {
    /// The person (their sign-in subject) who acknowledged it.
    pub by: String,
    pub at: DateTime<Utc>,
}

/// What a letter's alert needs to know of it.
pub struct LetterFacts<'a> {
    pub letter_id: &'a str,
    pub service_id: &'a str,
    pub service_name: &'a str,
    pub practice_ods: &'a str,
    pub practice_name: Option<&'a str>,
    pub attempts: i64,
}

impl LetterFacts<'_> {
    fn practice(&self) -> String {
        match self.practice_name {
            Some(name) => format!("{name} ({})", self.practice_ods),
            None => self.practice_ods.to_string(),
        }
    }
}

/// A length of time as a person reads it: "72 hours", "1 hour 30 minutes", "45 seconds"
/// (seconds only under an hour).
pub fn duration_text(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let (hours, minutes, seconds) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut parts = Vec::new();
    if hours > 0 {
        parts.push(plural(hours, "hour"));
    }
    if minutes > 0 {
        parts.push(plural(minutes, "minute"));
    }
    if hours == 0 && (seconds > 0 || minutes == 0) {
        parts.push(plural(seconds, "second"));
    }
    parts.join(" ")
}

/// A letter undelivered at the end of its retry window (`window_secs` long).
pub fn letter_dead(letter: &LetterFacts<'_>, window_secs: u64, at: DateTime<Utc>) -> NewAlert {
    NewAlert {
        kind: AlertKind::LetterDead,
        subject: letter.letter_id.to_string(),
        service: Some(letter.service_id.to_string()),
        summary: format!(
            "Letter {} from {} to {} was not delivered within its retry window of {} ({} attempts). \
             Check the practice's delivery route, then resend the letter from the letters API, or send it another way.",
            letter.letter_id,
            letter.service_name,
            letter.practice(),
            duration_text(window_secs),
            letter.attempts
        ),
        duty_contact: None,
        raised_at: at,
        ongoing_since: None,
    }
}

/// An urgent letter not acknowledged within `within_secs`: someone must phone the practice.
pub fn letter_escalated(
    letter: &LetterFacts<'_>,
    within_secs: u64,
    duty_contact: Option<&str>,
    at: DateTime<Utc>,
) -> NewAlert {
    let call = match duty_contact {
        Some(contact) => format!("{}'s duty contact: {contact}.", letter.service_name),
        None => format!(
            "{} has no duty contact configured: find the adviser on duty.",
            letter.service_name
        ),
    };
    NewAlert {
        kind: AlertKind::LetterEscalated,
        subject: letter.letter_id.to_string(),
        service: Some(letter.service_id.to_string()),
        summary: format!(
            "Urgent letter {} from {} to {} has not been acknowledged within {}. \
             Phone the practice now and tell them a safeguarding letter is waiting; the gateway keeps trying. {call}",
            letter.letter_id,
            letter.service_name,
            letter.practice(),
            duration_text(within_secs),
        ),
        duty_contact: duty_contact.map(str::to_string),
        raised_at: at,
        ongoing_since: None,
    }
}

/// Every attempt at a practice's endpoint has failed since `failing_since`, longer than the
/// threshold. `reason` is the gateway's own account of the last failure (a status, a timeout).
pub fn endpoint_failing(
    practice_ods: &str,
    practice_name: Option<&str>,
    failing_since: DateTime<Utc>,
    reason: &str,
    at: DateTime<Utc>,
) -> NewAlert {
    let practice = match practice_name {
        Some(name) => format!("{name} ({practice_ods})"),
        None => practice_ods.to_string(),
    };
    let failing_for = u64::try_from((at - failing_since).num_seconds()).unwrap_or(0);
    NewAlert {
        kind: AlertKind::EndpointFailing,
        subject: practice_ods.to_string(),
        service: None,
        summary: format!(
            "A letter to {practice} has failed every attempt for {} (since {}); the last failure: {reason}. \
             Letters wait in the outbox and are retried; tell the practice or its system supplier.",
            duration_text(failing_for),
            failing_since.format("%Y-%m-%d %H:%M UTC"),
        ),
        duty_contact: None,
        raised_at: at,
        ongoing_since: Some(failing_since),
    }
}

/// The gateway's MESH mailbox cannot be used or read: `problem` in the gateway's words.
pub fn mesh_mailbox(mailbox: &str, problem: &str, at: DateTime<Utc>) -> NewAlert {
    NewAlert {
        kind: AlertKind::MeshMailbox,
        subject: mailbox.to_string(),
        service: None,
        summary: format!(
            "The gateway's MESH mailbox {mailbox} cannot be used: {problem}. Letters to practices on MESH wait, \
             and acknowledgements are not read, until it can."
        ),
        duty_contact: None,
        raised_at: at,
        ongoing_since: None,
    }
}

/// The AuditEvent recording `alert` raised (by the gateway itself); `letter` is the letter's
/// Communication when the alert is about one.
pub fn raised_event(alert: &NewAlert, letter: Option<&str>) -> Value {
    crate::audit::audit_event(&crate::audit::Event {
        kind: crate::audit::Kind::AlertRaised,
        principal: None,
        patient: None,
        entities: letter
            .map(|id| vec![format!("Communication/{id}")])
            .unwrap_or_default(),
        decision: None,
        permitted: true,
        description: format!(
            "alert raised: {} about {}",
            alert.kind.code(),
            alert.subject
        ),
        at: alert.raised_at,
        request_id: None,
    })
}

/// Whether a practice's endpoint, every attempt at which has failed since `failing_since` (the
/// first failure after its last answer, whichever letter it was), has failed for long enough
/// (`threshold_secs`) to say its system is down.
pub fn failing_for_long(
    failing_since: DateTime<Utc>,
    now: DateTime<Utc>,
    threshold_secs: u64,
) -> bool {
    (now - failing_since).num_seconds() >= i64::try_from(threshold_secs).unwrap_or(i64::MAX)
}

/// Which alerts a person sees: the one rule for the page, the list and the acknowledgement,
/// asked of the store as a query and of one alert by [`AlertScope::covers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertScope {
    /// Operations staff: every alert.
    Every,
    /// A service's managers: the alerts about that service's letters.
    Service(String),
}

impl AlertScope {
    /// The alerts `principal` may see and acknowledge; none for anyone who is neither the
    /// operations staff nor a service.
    pub fn of(principal: &Principal) -> Option<AlertScope> {
        match principal.role {
            Role::Operations => Some(AlertScope::Every),
            Role::Service => principal
                .service_id()
                .map(|id| AlertScope::Service(id.to_string())),
            Role::Practice
            | Role::TalkingTherapies
            | Role::Physiotherapy
            | Role::SecondaryCare
            | Role::VoluntarySector
            | Role::Employer
            | Role::InformationGovernance
            | Role::Commissioner => None,
        }
    }

    pub fn covers(&self, alert: &NewAlert) -> bool {
        match self {
            AlertScope::Every => true,
            AlertScope::Service(id) => alert.service.as_deref() == Some(id.as_str()),
        }
    }
}

/// Whether `principal` may see and acknowledge `alert` ([`AlertScope`]).
pub fn visible_to(principal: &Principal, alert: &NewAlert) -> bool {
    AlertScope::of(principal).is_some_and(|scope| scope.covers(alert))
}

/// Whether an on-call route taking `kinds` (none: every kind) takes `kind`.
pub fn routed(kinds: &[String], kind: AlertKind) -> bool {
    kinds.is_empty() || kinds.iter().any(|k| k == kind.code())
}

/// The JSON an on-call webhook is sent: what the alert says, and where to acknowledge it.
pub fn webhook_payload(alert: &Alert, ops_page: &str) -> Value {
    json!({
        "id": alert.id,
        "kind": alert.raised.kind.code(),
        "title": alert.raised.kind.title(),
        "summary": alert.raised.summary,
        "subject": alert.raised.subject,
        "service": alert.raised.service,
        "dutyContact": alert.raised.duty_contact,
        "raisedAt": crate::fhir::search::format_instant(alert.raised.raised_at),
        "acknowledge": ops_page,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter() -> LetterFacts<'static> {
        LetterFacts {
            letter_id: "0190d2c4-0000-7000-8000-000000000001",
            service_id: "sheffield-whs",
            service_name: "Sheffield Work and Health Service",
            practice_ods: "C88901",
            practice_name: Some("Porter Brook Surgery"),
            attempts: 14,
        }
    }

    fn at() -> DateTime<Utc> {
        "2026-12-02T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_escalation_names_the_duty_contact_or_says_there_is_none() {
        let with = letter_escalated(&letter(), 3600, Some("Duty adviser, 0114 000 0000"), at());
        assert!(
            with.summary
                .contains("not been acknowledged within 1 hour.")
        );
        assert!(with.summary.contains("Phone the practice now"));
        assert!(with.summary.contains(
            "Sheffield Work and Health Service's duty contact: Duty adviser, 0114 000 0000."
        ));
        assert_eq!(
            with.duty_contact.as_deref(),
            Some("Duty adviser, 0114 000 0000")
        );
        let without = letter_escalated(&letter(), 3600, None, at());
        assert!(without.summary.contains("no duty contact configured"));
        assert_eq!(without.subject, letter().letter_id);
        assert_eq!(without.service.as_deref(), Some("sheffield-whs"));
    }

    #[test]
    fn a_dead_letter_says_what_to_do() {
        let dead = letter_dead(&letter(), 72 * 3600, at());
        assert_eq!(dead.kind, AlertKind::LetterDead);
        assert!(dead.summary.contains("Porter Brook Surgery (C88901)"));
        assert!(
            dead.summary
                .contains("retry window of 72 hours (14 attempts)")
        );
        assert!(dead.summary.contains("resend"));
    }

    #[test]
    fn a_failing_endpoint_says_for_how_long() {
        let since = "2026-12-02T07:55:00Z".parse().unwrap();
        let failing = endpoint_failing("C88901", None, since, "HTTP 503", at());
        assert!(
            failing
                .summary
                .contains("every attempt for 2 hours 5 minutes"),
            "{}",
            failing.summary
        );
        assert!(failing.summary.contains("since 2026-12-02 07:55 UTC"));
        assert_eq!(failing.subject, "C88901");
        assert_eq!(failing.service, None);
    }

    #[test]
    fn operations_see_every_alert_a_service_its_own_and_nobody_else_any() {
        let own = letter_dead(&letter(), 72 * 3600, at());
        let platform = mesh_mailbox("X26ABC1", "the password file cannot be read", at());
        let operations = Principal::new(Role::Operations, "X26");
        assert!(visible_to(&operations, &own) && visible_to(&operations, &platform));
        let whs = Principal::service("sheffield-whs");
        assert!(visible_to(&whs, &own));
        assert!(!visible_to(&whs, &platform));
        assert!(!visible_to(
            &Principal::service("workwell-south-tyneside"),
            &own
        ));
        for other in [
            Principal::practice("C88901"),
            Principal::new(Role::Commissioner, "QF7"),
            Principal::new(Role::InformationGovernance, "IG1"),
        ] {
            assert!(!visible_to(&other, &own) && !visible_to(&other, &platform));
            assert_eq!(
                AlertScope::of(&other),
                None,
                "the store is never asked for them"
            );
        }
        assert_eq!(
            AlertScope::of(&whs),
            Some(AlertScope::Service("sheffield-whs".into()))
        );
        assert_eq!(AlertScope::of(&operations), Some(AlertScope::Every));
    }

    #[test]
    fn only_trouble_that_goes_on_is_kept_quiet_after_an_acknowledgement() {
        for kind in AlertKind::ALL {
            let quiet = kind.quiet_after_acknowledged();
            match kind {
                AlertKind::EndpointFailing | AlertKind::MeshMailbox => {
                    assert!(quiet >= chrono::Duration::hours(1), "{kind:?}")
                }
                AlertKind::LetterDead | AlertKind::LetterEscalated => {
                    assert_eq!(quiet, chrono::Duration::zero(), "{kind:?}")
                }
            }
        }
    }

    #[test]
    fn an_acknowledgement_quiets_only_the_outage_it_was_about() {
        let now = at();
        let failing = |since| endpoint_failing("C88901", None, since, "HTTP 503", now);
        // Failing for a day: acknowledged within the last four hours keeps it quiet.
        let long = failing(now - chrono::Duration::days(1));
        assert_eq!(long.quiet_since(), now - chrono::Duration::hours(4));
        // Failing again since an hour ago (it recovered in between): an acknowledgement of the
        // earlier outage, two hours ago, does not count.
        let again = failing(now - chrono::Duration::hours(1));
        assert_eq!(again.quiet_since(), now - chrono::Duration::hours(1));
        let mesh = mesh_mailbox("X26ABC1", "its password was refused", now);
        assert_eq!(mesh.quiet_since(), now - chrono::Duration::hours(4));
    }

    #[test]
    fn an_endpoint_is_failing_for_long_from_its_first_failure() {
        let since: DateTime<Utc> = "2026-12-02T09:00:00Z".parse().unwrap();
        assert!(!failing_for_long(since, at(), 3601));
        assert!(failing_for_long(since, at(), 3600));
        assert!(failing_for_long(since, at(), 0));
    }

    #[test]
    fn lengths_of_time_read_as_a_person_says_them() {
        assert_eq!(duration_text(72 * 3600), "72 hours");
        assert_eq!(duration_text(3600), "1 hour");
        assert_eq!(duration_text(5400), "1 hour 30 minutes");
        assert_eq!(duration_text(3661), "1 hour 1 minute");
        assert_eq!(duration_text(125), "2 minutes 5 seconds");
        assert_eq!(duration_text(60), "1 minute");
        assert_eq!(duration_text(1), "1 second");
        assert_eq!(duration_text(0), "0 seconds");
    }

    #[test]
    fn routes_take_the_kinds_they_name_or_every_kind() {
        assert!(routed(&[], AlertKind::MeshMailbox));
        let urgent = vec!["letter-escalated".to_string()];
        assert!(routed(&urgent, AlertKind::LetterEscalated));
        assert!(!routed(&urgent, AlertKind::LetterDead));
        for kind in AlertKind::ALL {
            assert_eq!(AlertKind::from_code(kind.code()), Some(kind));
        }
    }
}
