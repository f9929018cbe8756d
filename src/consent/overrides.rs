//! Overrides ("break glass"): acting against a person's refusal for a stated reason, for a limited
//! time. Pure: who may ask for one, who may grant, refuse or review it, what each step turns it
//! into, and what a granted one permits.
//!
//! The rules:
//! 1. A practice or a service *requests* an override; it permits nothing until an
//!    information-governance client grants it. The registry knows client systems, not people: a
//!    second client of the requesting organisation may be the same person at another screen, so a
//!    "second person" is always information governance, never the requester's own organisation.
//! 2. The requester never decides its own request, whatever scopes it holds.
//! 3. An override names exactly one recipient organisation. Where the recipient is of the kind the
//!    requester is (a service, a practice), it is the requester itself: an override lets a
//!    service see what the person refused *it*, never what they refused another service. Where
//!    it is a third party the requester discloses to (an employer, the DWP, a service outside
//!    the gateway, a union representative), it is that one organisation, never "any".
//! 4. A granted override permits from its grant for the hours asked, for its recipient
//!    organisation and data classes only. A requested, refused or ended one permits nothing.
//! 5. A review that finds a granted override inappropriate ends it at once.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::decide::Question;
use super::model::{Code, DataClass, OrgId, OverrideReason, RecipientClass};
use crate::caller::{Principal, Role};
use crate::fhir::search::format_instant;
use crate::fhir::{IssueType, Issues};

/// A client that acted on an override, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The client id.
    pub client: String,
    /// `system|value` of the organisation it acts for.
    pub organisation: OrgId,
}

impl Agent {
    pub fn of(principal: &Principal) -> Agent {
        Agent {
            client: principal.client_id.clone(),
            organisation: principal.organisation.clone(),
        }
    }
}

/// An information-governance grant: from `at` until `until` (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub by: Agent,
    pub at: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub note: String,
}

/// Where an override stands. Only [`OverrideState::Granted`] permits anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverrideState {
    /// Asked for (at the override's `requested_at`); waiting for information governance.
    Requested,
    Granted(Grant),
    /// Turned down by information governance.
    Refused {
        by: Agent,
        at: DateTime<Utc>,
        note: String,
    },
    /// Granted, then ended at `at` before its time (a review found it inappropriate).
    Ended {
        grant: Grant,
        at: DateTime<Utc>,
    },
}

/// The state's name, for filters and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverrideStatus {
    Requested,
    Granted,
    Refused,
    Ended,
}

impl OverrideStatus {
    pub const ALL: [OverrideStatus; 4] = [
        OverrideStatus::Requested,
        OverrideStatus::Granted,
        OverrideStatus::Refused,
        OverrideStatus::Ended,
    ];

    pub fn code(self) -> &'static str {
        match self {
            OverrideStatus::Requested => "requested",
            OverrideStatus::Granted => "granted",
            OverrideStatus::Refused => "refused",
            OverrideStatus::Ended => "ended",
        }
    }

    pub fn from_code(code: &str) -> Option<OverrideStatus> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

impl OverrideState {
    pub fn status(&self) -> OverrideStatus {
        match self {
            OverrideState::Requested => OverrideStatus::Requested,
            OverrideState::Granted(_) => OverrideStatus::Granted,
            OverrideState::Refused { .. } => OverrideStatus::Refused,
            OverrideState::Ended { .. } => OverrideStatus::Ended,
        }
    }

    /// The grant, for an override that was granted (whether or not it has ended since).
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            OverrideState::Granted(g) | OverrideState::Ended { grant: g, .. } => Some(g),
            OverrideState::Requested | OverrideState::Refused { .. } => None,
        }
    }
}

/// What a review found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewOutcome {
    Appropriate,
    Inappropriate,
}

impl ReviewOutcome {
    pub fn code(self) -> &'static str {
        match self {
            ReviewOutcome::Appropriate => "appropriate",
            ReviewOutcome::Inappropriate => "inappropriate",
        }
    }

    pub fn from_code(code: &str) -> Option<ReviewOutcome> {
        [ReviewOutcome::Appropriate, ReviewOutcome::Inappropriate]
            .into_iter()
            .find(|o| o.code() == code)
    }
}

/// Information governance's review of a granted override.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub by: Agent,
    pub at: DateTime<Utc>,
    pub outcome: ReviewOutcome,
    pub note: String,
}

/// One override: the request as made, where it stands, and its review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub id: String,
    /// The person (the Patient's id).
    pub patient_id: crate::ids::PatientId,
    pub recipient: RecipientClass,
    /// The one organisation that may receive under it.
    pub organisation: OrgId,
    pub classes: Vec<DataClass>,
    pub reason: OverrideReason,
    pub justification: String,
    /// How long a grant lasts.
    pub hours: u32,
    pub requested_by: Agent,
    pub requested_at: DateTime<Utc>,
    pub state: OverrideState,
    pub review: Option<Review>,
}

/// The grant under which `o` permits `q`, if it does: granted (not ended), in force at the
/// question's time, for the question's recipient organisation and data class.
pub fn covering_grant<'a>(o: &'a Override, q: &Question) -> Option<&'a Grant> {
    let OverrideState::Granted(grant) = &o.state else {
        return None;
    };
    let covers = o.recipient == q.recipient.class
        && q.recipient.organisation.as_deref() == Some(o.organisation.as_str())
        && o.classes.contains(&q.class)
        && grant.at <= q.at
        && q.at < grant.until;
    covers.then_some(grant)
}

/// Whether `o` permits `q` against a deny (see [`covering_grant`]).
pub fn override_covers(o: &Override, q: &Question) -> bool {
    covering_grant(o, q).is_some()
}

/// The recipient classes a gateway client acts as: an override for one of them is for the
/// requester itself.
/// Who may ask for an override: a GP practice or a work-and-health service, the parties with a
/// duty of care that can outweigh a refusal. A referrer of another kind or an employer asks the
/// service to (rule 1): an override is never theirs to ask for.
fn client_class(role: Role) -> Option<RecipientClass> {
    match role {
        Role::Practice | Role::Service => super::decide::Recipient::class_of(role),
        _ => None,
    }
}

/// Checks who an override is for against who asks for it (rules 1 and 3). Every problem is an
/// issue at `recipient` or `recipientOrganisation`.
///
/// `recipient` is `None` when the request named no known class (reported by the caller): the
/// organisation is still checked for presence.
pub fn check_request(
    requester: &Principal,
    recipient: Option<RecipientClass>,
    organisation: Option<&str>,
) -> Result<(), Issues> {
    let mut issues = Issues::new();
    let Some(own_class) = client_class(requester.role) else {
        issues.error(
            IssueType::Forbidden,
            "recipient",
            "a GP practice or a work-and-health service asks for an override, and information governance grants it: this client may do neither",
        );
        return Err(issues);
    };
    let gateway_client = [
        RecipientClass::ReferringPractice,
        RecipientClass::WorkHealthService,
    ];
    if recipient == Some(RecipientClass::Evaluation) {
        issues.error(
            IssueType::BusinessRule,
            "recipient",
            "evaluation is never a reason to act against a person's refusal: an override is for a risk to the person or others, or a legal duty",
        );
    } else if let Some(other) = recipient.filter(|r| gateway_client.contains(r) && *r != own_class)
    {
        issues.error(
            IssueType::BusinessRule,
            "recipient",
            format!(
                "a {} asks for an override for itself ({}), or for a third party it discloses to; never for a {}",
                requester.role.as_str(),
                own_class.code(),
                other.code()
            ),
        );
    }
    let for_itself = recipient == Some(own_class);
    match organisation.map(str::trim) {
        None | Some("") => issues.error(
            IssueType::Required,
            "recipientOrganisation",
            if for_itself {
                format!(
                    "name the one organisation the override is for: your own, {}",
                    requester.organisation
                )
            } else {
                "name the one organisation that may receive under the override, as system|value (an override never covers a whole class of recipients)".to_string()
            },
        ),
        Some(org) if for_itself && org != requester.organisation => issues.error(
            IssueType::BusinessRule,
            "recipientOrganisation",
            format!(
                "an override lets its requester act against a refusal: a {} breaks glass only for itself ({}), never for another organisation",
                requester.role.as_str(),
                requester.organisation
            ),
        ),
        Some(org) if !is_org_id(org) => issues.error(
            IssueType::Value,
            "recipientOrganisation",
            "the organisation must be system|value, e.g. https://fhir.nhs.uk/Id/ods-organization-code|C88901",
        ),
        Some(_) => {}
    }
    issues.into_result(())
}

fn is_org_id(org: &str) -> bool {
    org.split_once('|').is_some_and(|(system, value)| {
        !system.is_empty()
            && !value.is_empty()
            && !org.chars().any(char::is_whitespace)
            && org.len() <= 256
    })
}

/// Why a step on an override was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Only an information-governance client decides and reviews overrides.
    #[error("only information governance grants, refuses and reviews overrides")]
    NotInformationGovernance,
    /// The requester acting on its own request.
    #[error("an override is never decided or reviewed by the client that asked for it")]
    OwnRequest,
    /// The step does not apply to the override as it stands.
    #[error("{0}")]
    WrongState(String),
}

/// The caller may decide or review `o` (rules 1 and 2).
fn require_reviewer(o: &Override, by: &Principal) -> Result<(), StepError> {
    if by.client_id == o.requested_by.client {
        return Err(StepError::OwnRequest);
    }
    if by.role != Role::InformationGovernance {
        return Err(StepError::NotInformationGovernance);
    }
    Ok(())
}

/// What information governance decides about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Grant,
    Refuse,
}

/// The state a request takes when `by` grants or refuses it at `now`.
pub fn decide_request(
    o: &Override,
    by: &Principal,
    verdict: Verdict,
    note: &str,
    now: DateTime<Utc>,
) -> Result<OverrideState, StepError> {
    require_reviewer(o, by)?;
    if o.state != OverrideState::Requested {
        return Err(StepError::WrongState(format!(
            "override {} is {}, not requested: a request is granted or refused once",
            o.id,
            o.state.status().code()
        )));
    }
    let by = Agent::of(by);
    let note = note.to_string();
    Ok(match verdict {
        Verdict::Grant => OverrideState::Granted(Grant {
            by,
            at: now,
            until: now + Duration::hours(i64::from(o.hours)),
            note,
        }),
        Verdict::Refuse => OverrideState::Refused { by, at: now, note },
    })
}

/// The state and review a granted override takes when `by` reviews it at `now`. An
/// inappropriate finding ends an override still in force at once (rule 5).
pub fn review(
    o: &Override,
    by: &Principal,
    outcome: ReviewOutcome,
    note: &str,
    now: DateTime<Utc>,
) -> Result<(OverrideState, Review), StepError> {
    require_reviewer(o, by)?;
    if o.review.is_some() {
        return Err(StepError::WrongState(format!(
            "override {} has been reviewed already",
            o.id
        )));
    }
    let state = match (&o.state, outcome) {
        (OverrideState::Granted(grant), ReviewOutcome::Inappropriate) => OverrideState::Ended {
            grant: grant.clone(),
            at: now,
        },
        (OverrideState::Granted(_) | OverrideState::Ended { .. }, _) => o.state.clone(),
        (OverrideState::Requested | OverrideState::Refused { .. }, _) => {
            return Err(StepError::WrongState(format!(
                "override {} is {}: only an override that was granted is reviewed (grant or refuse a request)",
                o.id,
                o.state.status().code()
            )));
        }
    };
    let review = Review {
        by: Agent::of(by),
        at: now,
        outcome,
        note: note.to_string(),
    };
    Ok((state, review))
}

fn party_json(p: &Agent) -> Value {
    json!({ "client": p.client, "organisation": p.organisation })
}

impl Override {
    /// The override as the API shows it (and as the decision fixtures write it).
    pub fn to_json(&self) -> Value {
        let mut out = json!({
            "id": self.id,
            "patient": self.patient_id.reference(),
            "recipient": self.recipient.code(),
            "recipientOrganisation": self.organisation,
            "dataClasses": self.classes.iter().map(|c| c.code()).collect::<Vec<_>>(),
            "reason": self.reason.code(),
            "justification": self.justification,
            "hours": self.hours,
            "requestedAt": format_instant(self.requested_at),
            "requestedBy": party_json(&self.requested_by),
            "state": self.state.status().code(),
        });
        if let Some(g) = self.state.grant() {
            out["grantedAt"] = json!(format_instant(g.at));
            out["grantedBy"] = party_json(&g.by);
            out["grantNote"] = json!(g.note);
            out["expiresAt"] = json!(format_instant(g.until));
        }
        match &self.state {
            OverrideState::Refused { by, at, note } => {
                out["refusedAt"] = json!(format_instant(*at));
                out["refusedBy"] = party_json(by);
                out["refusalNote"] = json!(note);
            }
            OverrideState::Ended { at, .. } => out["endedAt"] = json!(format_instant(*at)),
            OverrideState::Requested | OverrideState::Granted(_) => {}
        }
        if let Some(r) = &self.review {
            out["review"] = json!({
                "outcome": r.outcome.code(),
                "note": r.note,
                "reviewedAt": format_instant(r.at),
                "reviewedBy": party_json(&r.by),
            });
        }
        out
    }

    /// Reads what [`Override::to_json`] writes; `None` if anything is missing or unknown.
    pub fn from_json(v: &Value) -> Option<Override> {
        let time = |v: &Value| {
            DateTime::parse_from_rfc3339(v.as_str()?)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        };
        let party = |v: &Value| {
            Some(Agent {
                client: v["client"].as_str()?.to_string(),
                organisation: v["organisation"].as_str()?.to_string(),
            })
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        let grant = || {
            Some(Grant {
                by: party(&v["grantedBy"])?,
                at: time(&v["grantedAt"])?,
                until: time(&v["expiresAt"])?,
                note: text(&v["grantNote"])?,
            })
        };
        let state = match OverrideStatus::from_code(v["state"].as_str()?)? {
            OverrideStatus::Requested => OverrideState::Requested,
            OverrideStatus::Granted => OverrideState::Granted(grant()?),
            OverrideStatus::Refused => OverrideState::Refused {
                by: party(&v["refusedBy"])?,
                at: time(&v["refusedAt"])?,
                note: text(&v["refusalNote"])?,
            },
            OverrideStatus::Ended => OverrideState::Ended {
                grant: grant()?,
                at: time(&v["endedAt"])?,
            },
        };
        let review = match v.get("review") {
            None | Some(Value::Null) => None,
            Some(r) => Some(Review {
                by: party(&r["reviewedBy"])?,
                at: time(&r["reviewedAt"])?,
                outcome: ReviewOutcome::from_code(r["outcome"].as_str()?)?,
                note: text(&r["note"])?,
            }),
        };
        Some(Override {
            id: text(&v["id"])?,
            patient_id: v["patient"].as_str()?.strip_prefix("Patient/")?.into(),
            recipient: RecipientClass::from_code(v["recipient"].as_str()?)?,
            organisation: text(&v["recipientOrganisation"])?,
            classes: v["dataClasses"]
                .as_array()?
                .iter()
                .map(|c| DataClass::from_code(c.as_str()?))
                .collect::<Option<_>>()?,
            reason: OverrideReason::from_code(v["reason"].as_str()?)?,
            justification: text(&v["justification"])?,
            hours: u32::try_from(v["hours"].as_u64()?).ok()?,
            requested_by: party(&v["requestedBy"])?,
            requested_at: time(&v["requestedAt"])?,
            state,
            review,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::Purpose;
    use crate::consent::decide::Recipient;
    use crate::consent::model::Action;
    use chrono::TimeZone;

    const WHS: &str = "sheffield-whs";

    fn t(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 10, hour, 0, 0).unwrap()
    }

    fn service() -> Principal {
        Principal::service(WHS)
    }

    fn ig(code: &str) -> Principal {
        Principal::new(Role::InformationGovernance, code)
    }

    fn requested(recipient: RecipientClass, organisation: &str) -> Override {
        Override {
            id: "o1".into(),
            patient_id: "p1".into(),
            recipient,
            organisation: organisation.into(),
            classes: vec![DataClass::Referral],
            reason: OverrideReason::RiskToPerson,
            justification: "Disclosed suicidal intent at the practice; service must assess today."
                .into(),
            hours: 4,
            requested_by: Agent::of(&service()),
            requested_at: t(8),
            state: OverrideState::Requested,
            review: None,
        }
    }

    fn own() -> Override {
        requested(RecipientClass::WorkHealthService, &service().organisation)
    }

    fn question(org: &str, class: DataClass, at: DateTime<Utc>) -> Question {
        Question {
            recipient: Recipient {
                class: RecipientClass::WorkHealthService,
                organisation: Some(org.into()),
            },
            action: Action::Access,
            purpose: Purpose::Treatment,
            class,
            at,
            document: None,
        }
    }

    fn granted() -> Override {
        let mut o = own();
        o.state = decide_request(&o, &ig("IG1"), Verdict::Grant, "ok", t(9)).unwrap();
        o
    }

    #[test]
    fn only_a_granted_override_in_force_covers_its_own_recipient_and_classes() {
        let org = service().organisation;
        let o = granted();
        assert!(
            override_covers(&o, &question(&org, DataClass::Referral, t(9))),
            "from the grant"
        );
        let last_minute = t(12) + Duration::minutes(59);
        assert!(override_covers(
            &o,
            &question(&org, DataClass::Referral, last_minute)
        ));
        assert!(
            !override_covers(&o, &question(&org, DataClass::Referral, t(13))),
            "expired"
        );
        assert!(
            !override_covers(&o, &question(&org, DataClass::Referral, t(8))),
            "before the grant"
        );
        assert!(
            !override_covers(&o, &question(&org, DataClass::Diagnosis, t(10))),
            "other class"
        );
        let other = Principal::service("working-win").organisation;
        assert!(
            !override_covers(&o, &question(&other, DataClass::Referral, t(10))),
            "other service"
        );
        let mut unnamed = question(&org, DataClass::Referral, t(10));
        unnamed.recipient.organisation = None;
        assert!(!override_covers(&o, &unnamed), "an unknown recipient");
        let mut employer = question(&org, DataClass::Referral, t(10));
        employer.recipient.class = RecipientClass::Employer;
        assert!(!override_covers(&o, &employer), "other recipient class");
    }

    #[test]
    fn requested_refused_and_ended_overrides_permit_nothing() {
        let org = service().organisation;
        let q = question(&org, DataClass::Referral, t(10));
        let grant = granted().state.grant().unwrap().clone();
        for state in [
            OverrideState::Requested,
            OverrideState::Refused {
                by: Agent::of(&ig("IG1")),
                at: t(9),
                note: "no".into(),
            },
            OverrideState::Ended { grant, at: t(9) },
        ] {
            let mut o = own();
            o.state = state.clone();
            assert!(!override_covers(&o, &q), "{state:?}");
        }
    }

    #[test]
    fn a_request_is_granted_or_refused_once_by_information_governance_only() {
        let o = own();
        assert_eq!(
            decide_request(&o, &service(), Verdict::Grant, "", t(9)),
            Err(StepError::OwnRequest)
        );
        // The requester holding the review scope, or another client of its organisation, is
        // still not information governance.
        let mut scoped = service();
        scoped
            .scopes
            .push(crate::caller::scope::OVERRIDE_REVIEW.into());
        assert_eq!(
            decide_request(&o, &scoped, Verdict::Grant, "", t(9)),
            Err(StepError::OwnRequest)
        );
        let mut colleague = Principal::service(WHS);
        colleague.client_id = "whs-second-desk".into();
        assert_eq!(
            decide_request(&o, &colleague, Verdict::Grant, "", t(9)),
            Err(StepError::NotInformationGovernance)
        );
        assert_eq!(
            decide_request(
                &o,
                &Principal::practice("C88901"),
                Verdict::Refuse,
                "",
                t(9)
            ),
            Err(StepError::NotInformationGovernance)
        );
        // An information-governance client that somehow is the requester (same client id).
        let mut same = ig("IG1");
        same.client_id = o.requested_by.client.clone();
        assert_eq!(
            decide_request(&o, &same, Verdict::Grant, "", t(9)),
            Err(StepError::OwnRequest)
        );

        let g = decide_request(&o, &ig("IG1"), Verdict::Grant, "proportionate", t(9)).unwrap();
        let OverrideState::Granted(grant) = &g else {
            panic!("{g:?}")
        };
        assert_eq!(
            (grant.at, grant.until),
            (t(9), t(13)),
            "hours run from the grant"
        );
        assert_eq!(grant.by, Agent::of(&ig("IG1")));
        let r = decide_request(&o, &ig("IG1"), Verdict::Refuse, "not urgent", t(9)).unwrap();
        assert!(matches!(r, OverrideState::Refused { at, .. } if at == t(9)));

        for state in [g, r] {
            let mut decided = own();
            decided.state = state;
            for verdict in [Verdict::Grant, Verdict::Refuse] {
                assert!(matches!(
                    decide_request(&decided, &ig("IG2"), verdict, "", t(10)),
                    Err(StepError::WrongState(_))
                ));
            }
        }
    }

    #[test]
    fn an_inappropriate_review_ends_a_granted_override_at_once() {
        let o = granted();
        assert_eq!(
            review(&o, &service(), ReviewOutcome::Inappropriate, "", t(10)),
            Err(StepError::OwnRequest)
        );
        let (state, r) = review(
            &o,
            &ig("IG2"),
            ReviewOutcome::Inappropriate,
            "no risk",
            t(10),
        )
        .unwrap();
        assert_eq!(
            state,
            OverrideState::Ended {
                grant: o.state.grant().unwrap().clone(),
                at: t(10)
            }
        );
        assert_eq!(r.outcome, ReviewOutcome::Inappropriate);
        let mut ended = o.clone();
        ended.state = state;
        ended.review = Some(r);
        let org = service().organisation;
        assert!(!override_covers(
            &ended,
            &question(&org, DataClass::Referral, t(11))
        ));
        assert!(
            matches!(
                review(&ended, &ig("IG1"), ReviewOutcome::Appropriate, "", t(11)),
                Err(StepError::WrongState(_))
            ),
            "reviewed once"
        );

        let (state, _) = review(&o, &ig("IG2"), ReviewOutcome::Appropriate, "fine", t(10)).unwrap();
        assert_eq!(state, o.state, "an appropriate review leaves it in force");
        // A request not yet decided, or refused, is not reviewed: it is granted or refused.
        for s in [
            OverrideState::Requested,
            OverrideState::Refused {
                by: Agent::of(&ig("IG1")),
                at: t(9),
                note: "no".into(),
            },
        ] {
            let mut x = own();
            x.state = s;
            assert!(matches!(
                review(&x, &ig("IG2"), ReviewOutcome::Appropriate, "", t(10)),
                Err(StepError::WrongState(_))
            ));
        }
    }

    /// Every step from every state, by every kind of caller: what it turns the override into.
    #[test]
    fn every_step_from_every_state() {
        #[derive(Debug, Clone, Copy)]
        enum Step {
            Grant,
            Refuse,
            Review(ReviewOutcome),
        }
        use OverrideStatus as S;
        use ReviewOutcome::{Appropriate as Fine, Inappropriate as Wrong};
        let grant = granted().state.grant().unwrap().clone();
        let reviewed = Review {
            by: Agent::of(&ig("IG2")),
            at: t(10),
            outcome: ReviewOutcome::Appropriate,
            note: "fine".into(),
        };
        let refused = OverrideState::Refused {
            by: Agent::of(&ig("IG1")),
            at: t(9),
            note: "no".into(),
        };
        let ended = OverrideState::Ended {
            grant: grant.clone(),
            at: t(10),
        };
        // (state, reviewed already, step) → the status it leads to, or None if refused.
        let table: Vec<(OverrideState, bool, Step, Option<S>)> = vec![
            (
                OverrideState::Requested,
                false,
                Step::Grant,
                Some(S::Granted),
            ),
            (
                OverrideState::Requested,
                false,
                Step::Refuse,
                Some(S::Refused),
            ),
            (OverrideState::Requested, false, Step::Review(Fine), None),
            (OverrideState::Requested, false, Step::Review(Wrong), None),
            (
                OverrideState::Granted(grant.clone()),
                false,
                Step::Grant,
                None,
            ),
            (
                OverrideState::Granted(grant.clone()),
                false,
                Step::Refuse,
                None,
            ),
            (
                OverrideState::Granted(grant.clone()),
                false,
                Step::Review(Fine),
                Some(S::Granted),
            ),
            (
                OverrideState::Granted(grant.clone()),
                false,
                Step::Review(Wrong),
                Some(S::Ended),
            ),
            (
                OverrideState::Granted(grant.clone()),
                true,
                Step::Grant,
                None,
            ),
            (
                OverrideState::Granted(grant.clone()),
                true,
                Step::Refuse,
                None,
            ),
            (
                OverrideState::Granted(grant.clone()),
                true,
                Step::Review(Fine),
                None,
            ),
            (
                OverrideState::Granted(grant.clone()),
                true,
                Step::Review(Wrong),
                None,
            ),
            (refused.clone(), false, Step::Grant, None),
            (refused.clone(), false, Step::Refuse, None),
            (refused.clone(), false, Step::Review(Fine), None),
            (refused.clone(), false, Step::Review(Wrong), None),
            // Ended without a review: only an override recorded before grants existed.
            (ended.clone(), false, Step::Grant, None),
            (ended.clone(), false, Step::Refuse, None),
            (ended.clone(), false, Step::Review(Fine), Some(S::Ended)),
            (ended.clone(), false, Step::Review(Wrong), Some(S::Ended)),
            (ended.clone(), true, Step::Grant, None),
            (ended.clone(), true, Step::Refuse, None),
            (ended.clone(), true, Step::Review(Fine), None),
            (ended, true, Step::Review(Wrong), None),
        ];
        let mut same_client_ig = ig("IG9");
        same_client_ig.client_id = own().requested_by.client;
        let mut colleague = Principal::service(WHS);
        colleague.client_id = "whs-second-desk".into();
        colleague
            .scopes
            .push(crate::caller::scope::OVERRIDE_REVIEW.into());
        let outsiders = [
            service(),
            colleague,
            Principal::service("working-win"),
            Principal::practice("C88901"),
            same_client_ig,
        ];
        let run = |o: &Override, by: &Principal, step: Step| -> Result<OverrideStatus, StepError> {
            match step {
                Step::Grant => {
                    decide_request(o, by, Verdict::Grant, "n", t(11)).map(|s| s.status())
                }
                Step::Refuse => {
                    decide_request(o, by, Verdict::Refuse, "n", t(11)).map(|s| s.status())
                }
                Step::Review(outcome) => {
                    review(o, by, outcome, "n", t(11)).map(|(s, _)| s.status())
                }
            }
        };
        for (state, already_reviewed, step, expected) in table {
            let mut o = own();
            o.state = state;
            o.review = already_reviewed.then(|| reviewed.clone());
            let got = run(&o, &ig("IG3"), step);
            assert_eq!(
                got.as_ref().ok().copied(),
                expected,
                "{:?} reviewed={already_reviewed} {step:?}: {got:?}",
                o.state
            );
            if expected.is_none() {
                assert!(matches!(got, Err(StepError::WrongState(_))), "{got:?}");
            }
            for outsider in &outsiders {
                assert!(
                    matches!(
                        run(&o, outsider, step),
                        Err(StepError::OwnRequest | StepError::NotInformationGovernance)
                    ),
                    "{} {step:?}",
                    outsider.client_id
                );
            }
        }
    }

    fn expressions(r: Result<(), Issues>) -> Vec<String> {
        match r {
            Ok(()) => Vec::new(),
            Err(issues) => issues
                .iter()
                .map(|i| i.expression.clone().unwrap_or_default())
                .collect(),
        }
    }

    #[test]
    fn an_override_names_one_organisation_the_requester_may_ask_for() {
        let s = service();
        let p = Principal::practice("C88901");
        let own_service = s.organisation.clone();
        let own_practice = p.organisation.clone();
        let employer = "https://fhir.nhs.uk/Id/ods-organization-code|X12345";
        let ok = |who: &Principal, class, org: &str| {
            assert_eq!(
                expressions(check_request(who, Some(class), Some(org))),
                Vec::<String>::new(),
                "{class:?} {org}"
            );
        };
        ok(&s, RecipientClass::WorkHealthService, &own_service);
        ok(&p, RecipientClass::ReferringPractice, &own_practice);
        for third_party in [
            RecipientClass::Employer,
            RecipientClass::Dwp,
            RecipientClass::OtherService,
            RecipientClass::UnionRepresentative,
        ] {
            ok(&s, third_party, employer);
        }
        // No organisation, or a blank one: refused at recipientOrganisation.
        for class in [
            Some(RecipientClass::WorkHealthService),
            Some(RecipientClass::Employer),
            None,
        ] {
            for org in [None, Some(""), Some("  ")] {
                assert_eq!(
                    expressions(check_request(&s, class, org)),
                    ["recipientOrganisation"]
                );
            }
        }
        // Another service, or another practice: never.
        let other = Principal::service("working-win").organisation;
        assert_eq!(
            expressions(check_request(
                &s,
                Some(RecipientClass::WorkHealthService),
                Some(&other)
            )),
            ["recipientOrganisation"]
        );
        let other_practice = Principal::practice("C88902").organisation;
        assert_eq!(
            expressions(check_request(
                &p,
                Some(RecipientClass::ReferringPractice),
                Some(&other_practice)
            )),
            ["recipientOrganisation"]
        );
        // A service for a practice, a practice for a service, anyone for evaluation.
        assert_eq!(
            expressions(check_request(
                &s,
                Some(RecipientClass::ReferringPractice),
                Some(&own_practice)
            )),
            ["recipient"]
        );
        assert_eq!(
            expressions(check_request(
                &p,
                Some(RecipientClass::WorkHealthService),
                Some(&own_service)
            )),
            ["recipient"]
        );
        assert_eq!(
            expressions(check_request(
                &s,
                Some(RecipientClass::Evaluation),
                Some(employer)
            )),
            ["recipient"]
        );
        assert_eq!(
            expressions(check_request(
                &s,
                Some(RecipientClass::Employer),
                Some("X12345")
            )),
            ["recipientOrganisation"],
            "system|value"
        );
        // Information governance grants; it does not ask. Nor does a referrer of another kind
        // or an employer, even for itself.
        assert_eq!(
            expressions(check_request(
                &ig("IG1"),
                Some(RecipientClass::Employer),
                Some(employer)
            )),
            ["recipient"]
        );
        for (role, class, org) in [
            (
                Role::TalkingTherapies,
                RecipientClass::Referrer,
                "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|TAJ",
            ),
            (Role::Employer, RecipientClass::Employer, employer),
        ] {
            let asker = Principal::new(role, crate::fhir::identifiers::value_part(org));
            assert_eq!(
                expressions(check_request(&asker, Some(class), Some(org))),
                ["recipient"],
                "{role:?}"
            );
        }
    }

    #[test]
    fn the_json_form_reads_back_as_written_in_every_state() {
        let mut o = granted();
        assert_eq!(Override::from_json(&o.to_json()), Some(o.clone()));
        let (state, r) = review(&o, &ig("IG2"), ReviewOutcome::Inappropriate, "no", t(10)).unwrap();
        o.state = state;
        o.review = Some(r);
        assert_eq!(o.to_json()["state"], "ended");
        assert_eq!(Override::from_json(&o.to_json()), Some(o.clone()));
        let mut refused = own();
        refused.state = decide_request(&refused, &ig("IG1"), Verdict::Refuse, "no", t(9)).unwrap();
        assert_eq!(
            Override::from_json(&refused.to_json()),
            Some(refused.clone())
        );
        assert_eq!(Override::from_json(&own().to_json()), Some(own()));
        let mut unknown = own().to_json();
        unknown["state"] = json!("approved");
        assert_eq!(Override::from_json(&unknown), None);
    }
}
