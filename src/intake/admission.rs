//! The checks a submission passes inside the transaction that stores it, over the person's stored
//! history: consent (referrals), the service's eligibility criteria (referrals), the DWP duration
//! rule when the absence start comes from earlier fit notes, and the services' referral prompts
//! (fit notes). Each returns an [`Admission`] for the store to run. All of it is pure: the store
//! reads the person's [`History`] in its transaction and runs the admission over it.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::audit::{self, Event, Kind};
use crate::caller::Principal;
use crate::consent::authorship::{CareRelation, Person};
use crate::consent::{
    self, Action, ConsentRecord, DataClass, Decision, Party, Purpose, Question, Recipient,
    RecipientClass,
};
use crate::eligibility::EligibilityConfig;
use crate::eligibility::{self, Assessment, Outcome, Subject};
use crate::fhir::systems::{self, profile};
use crate::fhir::terminology::coding;
use crate::fhir::{Issue, IssueType, Issues};
use crate::fit_notes::prompts::{self, PastPrompt};
use crate::fit_notes::{FitNoteFacts, runs};
use crate::intake::{Submission, SubmissionEntry, SubmissionKind};
use crate::services::Service;

/// What is stored about the person a submission is about, read inside the transaction that would
/// store it (empty for a new person), so a withdrawal or a fit note committed a moment earlier is
/// always seen.
#[derive(Debug, Default)]
pub struct History {
    pub consents: Vec<Value>,
    /// The person's referrals (practice and service), committed before this submission.
    pub referrals: Vec<CareRelation>,
    pub fit_notes: Vec<FitNoteFacts>,
    pub prompts: Vec<PastPrompt>,
}

/// A referral prompt an admission creates: the Task entry's `fullUrl` and what it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPrompt {
    pub full_url: String,
    pub record: PastPrompt,
}

/// Why an admission turned a submission away.
#[derive(Debug, Clone)]
pub enum Refusal {
    /// The person's consent does not let it in.
    Consent(Decision),
    /// A rule that needs the person's history (e.g. the fit-note duration limit, a service's
    /// eligibility criteria) is broken.
    Rules(Issues),
}

/// The checks a submission must pass inside the transaction that would store it. Given the
/// person's [`History`], it may add entries to store with the submission (its audit record,
/// prompts) or amend them (an eligibility result), and returns the prompts it created; or it
/// refuses, and nothing is stored.
pub type Admission =
    Box<dyn FnOnce(&History, &mut Vec<SubmissionEntry>) -> Result<Vec<NewPrompt>, Refusal> + Send>;

/// An AuditEvent to store with a submission, in its transaction.
fn audit_entry(event: Value) -> SubmissionEntry {
    SubmissionEntry {
        full_url: format!("urn:uuid:{}", uuid::Uuid::now_v7()),
        resource_type: "AuditEvent".into(),
        resource: event,
        match_identifier: None,
        keep_existing: false,
    }
}

/// Where a referral format says what each eligibility criterion reads.
pub type CriterionExpression = fn(&str) -> &'static str;

/// Practice-format fields behind each criterion.
pub fn practice_criterion_expression(criterion: &str) -> &'static str {
    match criterion {
        "age" => "patient.birthDate",
        "area" => "patient.postcode",
        "registered-practice" => "practice.odsCode",
        "employment" => "employment.status",
        "long-term-condition" => "healthConditions",
        "right-to-work" => "employment.rightToWork",
        _ => "targetService",
    }
}

/// BaRS message elements behind each criterion.
pub fn bars_criterion_expression(criterion: &str) -> &'static str {
    match criterion {
        "age" => "Bundle.entry.resource.ofType(Patient).birthDate",
        "area" => "Bundle.entry.resource.ofType(Patient).address.postalCode",
        "long-term-condition" => "Bundle.entry.resource.ofType(Condition)",
        _ => "Bundle.entry.resource.ofType(ServiceRequest)",
    }
}

/// What the eligibility rules can know from a submission's own entries, about the person whose
/// Patient entry is `person` (the submission's subject).
fn subject_of<'a>(
    entries: &'a [SubmissionEntry],
    person: &str,
    practice: Option<&'a str>,
    history: &[FitNoteFacts],
) -> Subject<'a> {
    let patient = entries
        .iter()
        .find(|e| e.full_url == person && e.resource_type == "Patient")
        .map(|e| &e.resource);
    // The practice the person is registered with: the referring one, or the one a person
    // referring themselves named (by its ODS code, as the self-referral states it).
    let registered = practice
        .and_then(|p| p.split_once('|').map(|(_, v)| v))
        .or_else(|| {
            patient
                .and_then(|p| p["generalPractitioner"][0]["identifier"].as_object())
                .filter(|i| {
                    i.get("system").and_then(Value::as_str) == Some(systems::ODS_ORGANIZATION)
                })
                .and_then(|i| i.get("value")?.as_str())
        });
    let observation_coded = |code: &str| {
        entries.iter().map(|e| &e.resource).find(|r| {
            r["resourceType"] == "Observation"
                && r["code"]["coding"].as_array().is_some_and(|c| {
                    c.iter().any(|c| {
                        c["system"] == systems::local_code_system("observation-type")
                            && c["code"] == code
                    })
                })
        })
    };
    let conditions = entries
        .iter()
        .filter(|e| e.resource_type == "Condition")
        .count();
    let conditions = if conditions > 0 {
        Some(conditions)
    } else {
        observation_coded("health-conditions")
            .and_then(|o| o["valueCodeableConcept"]["coding"][0]["code"].as_str())
            .filter(|c| *c == "none")
            .map(|_| 0)
    };
    Subject {
        birth_date: patient
            .and_then(|p| p["birthDate"].as_str())
            .and_then(|d| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()),
        postcode: patient.and_then(|p| p["address"][0]["postalCode"].as_str()),
        practice_ods: registered,
        employment_status: observation_coded("employment-status")
            .and_then(|o| o["valueCodeableConcept"]["coding"][0]["code"].as_str()),
        conditions,
        fit_notes_issued: history.iter().map(|n| n.issued).collect(),
        right_to_work: observation_coded("right-to-work").and_then(|o| o["valueBoolean"].as_bool()),
    }
}

/// Each criterion `assessment` found not met, at the field it reads: an error where the service
/// refuses such referrals (`refusing`), a warning where it takes them marked for review.
fn unmet(assessment: &Assessment, refusing: bool, expression: CriterionExpression) -> Issues {
    assessment
        .failed()
        .map(|c| {
            let text = format!(
                "the person does not meet {}'s eligibility criterion '{}' (criteria version {}): {}{}",
                assessment.service,
                c.criterion,
                assessment.version,
                c.detail,
                if refusing {
                    ""
                } else {
                    "; the service takes the referral marked for review"
                }
            );
            if refusing {
                Issue::error(IssueType::BusinessRule, expression(c.criterion), text)
            } else {
                Issue::warning(IssueType::BusinessRule, expression(c.criterion), text)
            }
        })
        .collect()
}

/// A referral checked against `service`'s eligibility criteria before it is sent (`$validate`,
/// `whg validate`), from what the referral itself says: the criteria it does not meet, as a
/// real submission would weigh them ([`unmet`]). The fit notes the gateway holds are weighed
/// only when it is sent, so a recent-fit-note criterion is never found unmet here.
pub fn eligibility_before_sending(
    submission: &Submission,
    service: &Service,
    today: chrono::NaiveDate,
    expression: CriterionExpression,
) -> Issues {
    let Some(rules) = &service.eligibility else {
        return Issues::new();
    };
    let subject = subject_of(
        &submission.entries,
        &submission.subject,
        submission.sender.gp_practice(),
        &[],
    );
    let assessment = eligibility::assess(&service.id, rules, &subject, today);
    unmet(&assessment, rules.refuse_when_not_met, expression)
}

/// The eligibility result as an extension on the ServiceRequest.
fn eligibility_extension(a: &Assessment, at: DateTime<Utc>) -> Value {
    let mut parts = vec![
        json!({ "url": "service", "valueIdentifier": { "system": systems::service_identifier_system(), "value": a.service } }),
        json!({ "url": "version", "valueString": a.version }),
        json!({ "url": "outcome", "valueCoding": coding("eligibility-result", a.outcome.code()) }),
        json!({ "url": "assessed", "valueDateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) }),
    ];
    for c in &a.criteria {
        parts.push(json!({ "url": "criterion", "extension": [
            { "url": "code", "valueCoding": coding("eligibility-criterion", c.criterion) },
            { "url": "result", "valueCoding": coding("eligibility-result", c.result.code()) },
            { "url": "detail", "valueString": c.detail },
        ] }));
    }
    json!({ "url": profile::whg_eligibility_extension(), "extension": parts })
}

/// The admission of a referral: consent, then the service's eligibility criteria (attached to
/// the ServiceRequest, or refusing it when the service asks for that).
pub fn referral(
    submission: &Submission,
    service: Option<&Service>,
    principal: Option<&Principal>,
    request_id: Option<String>,
    now: DateTime<Utc>,
    expression: CriterionExpression,
    consent_expression: &'static str,
) -> Admission {
    let consent = intake_question(submission, now).map(|q| {
        intake_consent(
            submission,
            q,
            principal,
            request_id,
            now,
            consent_expression,
        )
    });
    let eligibility: Option<(String, EligibilityConfig)> =
        service.and_then(|s| Some((s.id.clone(), s.eligibility.clone()?)));
    let practice = submission.sender.gp_practice().map(str::to_string);
    let self_referral = submission.sender.organisation().is_none();
    let focus = submission.focus.clone();
    let person = submission.subject.clone();
    let service_identifier =
        service.map(|s| format!("{}|{}", systems::service_identifier_system(), s.id));
    Box::new(
        move |history: &History, entries: &mut Vec<SubmissionEntry>| {
            let audit = match consent {
                Some(check) => Some(check(history)?),
                None => None,
            };
            if let Some((service, rules)) = eligibility {
                let assessment = {
                    // Only a GP practice is weighed against the fit notes the gateway holds: they
                    // came from practices, and a finding on them (a date) written into another
                    // sender's referral would tell that sender of notes it never saw.
                    let fit_notes: &[FitNoteFacts] = if practice.is_some() {
                        &history.fit_notes
                    } else {
                        &[]
                    };
                    let subject = subject_of(entries, &person, practice.as_deref(), fit_notes);
                    eligibility::assess(&service, &rules, &subject, now.date_naive())
                };
                if rules.refuse_when_not_met && assessment.outcome == Outcome::NotMet {
                    return Err(Refusal::Rules(unmet(&assessment, true, expression)));
                }
                if let Some(sr) = entries.iter_mut().find(|e| e.full_url == focus) {
                    let ext = eligibility_extension(&assessment, now);
                    match sr.resource["extension"].as_array_mut() {
                        Some(list) => list.push(ext),
                        None => sr.resource["extension"] = json!([ext]),
                    }
                }
            }
            entries.extend(audit);
            if let Some(service) = service_identifier {
                let parties = crate::workflow::Parties {
                    referral: focus.clone(),
                    patient: person,
                    practice: practice.clone(),
                    service,
                    referred_on: None,
                };
                let mut task = crate::workflow::received(&parties, now);
                if self_referral {
                    // The person referred themselves: what they gave of their NHS number is
                    // theirs to have typed, not a traced identity.
                    let given = entries
                        .iter()
                        .find(|e| e.full_url == parties.patient)
                        .and_then(|e| {
                            crate::fhir::resource::identifier_value(
                                &e.resource,
                                systems::NHS_NUMBER,
                            )
                        })
                        .is_some();
                    crate::workflow::to_trace(
                        &mut task,
                        if given {
                            "The person gave an NHS number that has not been traced"
                        } else {
                            "The person did not give their NHS number"
                        },
                    );
                }
                entries.push(SubmissionEntry {
                    full_url: format!("urn:uuid:{}", uuid::Uuid::now_v7()),
                    resource_type: "Task".into(),
                    resource: task,
                    match_identifier: None,
                    keep_existing: false,
                });
            }
            Ok(Vec::new())
        },
    )
}

/// What a fit note's admission reads of the configuration: the services (with their prompt
/// rules and eligibility criteria) and the gap that still counts as consecutive.
#[derive(Debug, Clone, Copy)]
pub struct FitNoteRules<'a> {
    pub services: &'a [Service],
    pub consecutive_gap_days: u32,
    /// The fit note is history a service or region is importing (`whg import`): its prompts
    /// are those of [`prompts::Arrival::Imported`] — only for an absence still current.
    pub history_import: bool,
}

/// The admission of a fit note: the DWP duration rule with the absence start taken from the
/// person's run of fit notes when the sender did not give one, then each service's prompt rules
/// (for people the service's criteria do not rule out), creating a Task per rule that fires.
pub fn fit_note(
    submission: &Submission,
    absence_start_given: bool,
    rules: FitNoteRules<'_>,
    principal: &Principal,
    request_id: Option<String>,
    now: DateTime<Utc>,
    period_expression: &'static str,
) -> Admission {
    let SubmissionKind::FitNote(new_note) = submission.kind.clone() else {
        unreachable!("a fit-note admission is made for fit notes only")
    };
    let services: Vec<Service> = rules
        .services
        .iter()
        .filter(|s| !s.prompts.is_empty())
        .cloned()
        .collect();
    let gap = rules.consecutive_gap_days;
    let history_import = rules.history_import;
    let practice = submission.sender.gp_practice().map(str::to_string);
    let focus = submission.focus.clone();
    let person = submission.subject.clone();
    let principal = principal.clone();
    Box::new(
        move |history: &History, entries: &mut Vec<SubmissionEntry>| {
            let mut all = history.fit_notes.clone();
            all.push(new_note.clone());
            if !absence_start_given {
                let all_runs = runs(&all, gap);
                let run_start = all_runs
                    .iter()
                    .find(|r| r.contains(&focus))
                    .map_or(new_note.start, |r| r.start);
                if let Some(issue) = crate::intake::fit_note::duration_rule(
                    new_note.start,
                    new_note.end,
                    run_start,
                    period_expression,
                ) {
                    return Err(Refusal::Rules(issue.into()));
                }
            }
            let practice_url = entries
                .iter()
                .find(|e| e.resource_type == "Organization")
                .map(|e| e.full_url.clone());
            let today = now.date_naive();
            // What the fit note says about the person; a fit note's diagnoses are not the
            // long-term conditions a service's criteria ask about.
            let subject = Subject {
                conditions: None,
                ..subject_of(entries, &person, practice.as_deref(), &all)
            };
            let mut created = Vec::new();
            let mut tasks = Vec::new();
            let arrival = if history_import {
                prompts::Arrival::Imported
            } else {
                prompts::Arrival::Live
            };
            for service in &services {
                if let Some(rules) = &service.eligibility
                    && eligibility::assess(&service.id, rules, &subject, today).outcome
                        == Outcome::NotMet
                {
                    continue;
                }
                let fired = prompts::fired(
                    arrival,
                    &service.id,
                    &service.prompts,
                    &all,
                    &focus,
                    &history.prompts,
                    gap,
                    today,
                );
                for firing in fired {
                    let full_url = format!("urn:uuid:{}", uuid::Uuid::now_v7());
                    let task = prompt_task(
                        service,
                        &firing,
                        &focus,
                        &person,
                        practice.as_deref().unwrap_or_default(),
                        practice_url.as_deref(),
                        now,
                    );
                    created.push(NewPrompt {
                        full_url: full_url.clone(),
                        record: PastPrompt {
                            service: service.id.clone(),
                            rule: firing.rule.id.clone(),
                            from: firing.from,
                            to: firing.to,
                        },
                    });
                    tasks.push(SubmissionEntry {
                        full_url,
                        resource_type: "Task".into(),
                        resource: task,
                        match_identifier: None,
                        keep_existing: false,
                    });
                }
            }
            let event = audit::audit_event(&Event {
                kind: Kind::Intake,
                principal: Some(&principal),
                patient: Some(person),
                entities: std::iter::once(focus.clone())
                    .chain(tasks.iter().map(|t| t.full_url.clone()))
                    .collect(),
                decision: None,
                permitted: true,
                description: format!(
                    "fit note accepted from its issuing practice and held for it; {} referral prompt(s) created for the practice. Services see fit notes only with the person's consent",
                    tasks.len()
                ),
                at: now,
                request_id,
            });
            entries.extend(tasks);
            entries.push(audit_entry(event));
            Ok(created)
        },
    )
}

/// The referral-prompt Task (profile `whg-referral-prompt`) for one rule that fired: a proposal
/// to the practice (`practice`, `system|value`), about the person, naming the service, the rule
/// and its version, and the fit notes that fired it.
fn prompt_task(
    service: &Service,
    firing: &prompts::Firing,
    focus: &str,
    patient_url: &str,
    practice: &str,
    practice_url: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let at = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut inputs = vec![
        json!({ "type": { "coding": [coding("referral-prompt-input", "service")] }, "valueReference": { "identifier": { "system": systems::service_identifier_system(), "value": service.id }, "display": service.name } }),
        json!({ "type": { "coding": [coding("referral-prompt-input", "rule")] }, "valueString": format!("{}|{}", firing.rule.id, firing.rule.version) }),
    ];
    inputs.extend(firing.fit_notes.iter().map(|note| {
        json!({ "type": { "coding": [coding("referral-prompt-input", "fit-note")] }, "valueReference": { "reference": note } })
    }));
    let mut owner = crate::fhir::identifiers::identifier_reference(practice);
    if let Some(u) = practice_url {
        owner["reference"] = json!(u);
    }
    json!({
        "resourceType": "Task",
        "meta": { "profile": [profile::whg_referral_prompt()] },
        "status": "requested",
        "intent": "proposal",
        "priority": "routine",
        "code": { "coding": [coding("task-code", "referral-prompt")] },
        "description": format!("Consider referring to {}: {}. A prompt only: nothing has been sent to the service.", service.name, firing.reason),
        "focus": { "reference": focus },
        "authoredOn": at,
        "lastModified": at,
        "owner": owner,
        "reasonCode": { "text": firing.reason },
        "input": inputs,
        "for": { "reference": patient_url },
    })
}

/// The Consents that came with a referral, as the decision function reads them.
pub fn submitted_consents(submission: &Submission) -> Vec<ConsentRecord> {
    submission
        .entries
        .iter()
        .filter(|e| e.resource_type == "Consent")
        .enumerate()
        .filter_map(|(i, e)| {
            // Not stored yet, so no id: named by their place in the referral.
            let mut record = consent::read_consent(&e.resource).ok()?;
            record.reference = format!("Consent/in-this-referral-{}", i + 1);
            Some(record)
        })
        .collect()
}

/// The question intake asks: may the referral be disclosed to its service, for direct care?
/// `None` for a submission that goes to no service (a fit note).
pub fn intake_question(submission: &Submission, now: DateTime<Utc>) -> Option<Question> {
    let SubmissionKind::Referral { service } = &submission.kind else {
        return None;
    };
    Some(Question {
        recipient: Recipient {
            class: RecipientClass::WorkHealthService,
            organisation: Some(service.clone()),
        },
        action: Action::Disclose,
        purpose: Purpose::Treatment,
        class: DataClass::Referral,
        at: now,
        document: None,
    })
}

/// The intake consent check for a referral, to run in the store's transaction over the person's
/// stored Consents. The Consents the referral brings must be ones its practice may record
/// ([`consent::authorship`]); with them, the person's consents must permit disclosing the
/// referral to its service. On a permit it returns the referral's audit record, which refers to
/// the referral's own entries by fullUrl (the store rewrites them to ids).
pub fn intake_consent(
    submission: &Submission,
    question: Question,
    principal: Option<&Principal>,
    request_id: Option<String>,
    now: DateTime<Utc>,
    consent_expression: &'static str,
) -> impl FnOnce(&History) -> Result<SubmissionEntry, Refusal> + Send + use<> {
    let submitted: Vec<ConsentRecord> = submitted_consents(submission)
        .into_iter()
        .map(|mut c| {
            // Not stored yet: decided no later than now.
            c.decided_at = Some(c.decided_at.map_or(now, |t| t.min(now)));
            c
        })
        .collect();
    // Who records the Consents the submission brings: its practice, under the authorship rule;
    // a person referring themselves records their own, which the form states (it asks only who
    // may see what of them, and nothing they record reaches anyone else's record: see
    // `intake::self_referral`).
    let recorder = submission
        .sender
        .organisation()
        .and_then(|p| p.split_once('|'))
        .and_then(|(system, value)| Party::from_identifier(system, value));
    let this_referral = match &submission.kind {
        SubmissionKind::Referral { service } => Some(CareRelation {
            referrer: submission.sender.organisation().map(str::to_string),
            service: service.clone(),
        }),
        SubmissionKind::FitNote(_) => None,
    };
    let patient = submission
        .entries
        .iter()
        .find(|e| e.resource_type == "Patient")
        .map(|e| e.full_url.clone());
    let focus = submission.focus.clone();
    let principal = principal.cloned();
    move |history: &History| {
        let mut consents: Vec<ConsentRecord> = history
            .consents
            .iter()
            .filter_map(|c| consent::read_consent(c).ok())
            .collect();
        let referrals: Vec<CareRelation> = history
            .referrals
            .iter()
            .cloned()
            .chain(this_referral)
            .collect();
        let mut issues = crate::fhir::Issues::new();
        if let Some(recorder) = &recorder {
            for c in &submitted {
                consent::authorship::may_record(
                    recorder,
                    c,
                    Person {
                        consents: &consents,
                        referrals: &referrals,
                    },
                    now,
                    &mut issues,
                    consent_base(consent_expression),
                );
            }
        }
        if !issues.is_empty() {
            return Err(Refusal::Rules(issues));
        }
        consents.extend(submitted);
        let decision = consent::decide(&consents, &[], &question);
        if !decision.permitted() {
            return Err(Refusal::Consent(decision));
        }
        let event = audit::audit_event(&Event {
            kind: Kind::Intake,
            // None: the person, through the self-referral form.
            principal: principal.as_ref(),
            patient,
            entities: vec![focus],
            decision: Some(&decision),
            permitted: true,
            description: match principal {
                Some(_) => format!("referral accepted: {}", decision.reason),
                None => format!(
                    "self-referral from the public form accepted: {}",
                    decision.reason
                ),
            },
            at: now,
            request_id,
        });
        Ok(audit_entry(event))
    }
}

/// Where a referral format's Consents are, for issues about one of them.
fn consent_base(consent_expression: &'static str) -> &'static str {
    if consent_expression == PRACTICE_CONSENT_EXPRESSION {
        "consent"
    } else {
        consent_expression
    }
}

/// The issue a referral refused by consent gets, pointing at where its consent is recorded.
///
/// Only a GP practice is told which Consent refused, and when: the person's record is its
/// patient's. Anyone else (a referrer of another kind, an employer, a person at the public form)
/// learns only that the person's recorded wishes stop the referral, never what another party
/// recorded about them.
pub fn intake_refusal(
    expression: &str,
    decision: &Decision,
    sender_is_practice: bool,
) -> crate::fhir::Issues {
    let text = if sender_is_practice {
        format!(
            "the person's consent does not allow this referral to go to the service ({}). Record their agreement to be referred there and send it again",
            decision.reason
        )
    } else {
        "the person's consent does not allow this referral to go to the service. If the person has agreed to this referral, record that in it and send it again; if they have not, the service cannot take it".to_string()
    };
    crate::fhir::Issue::error(crate::fhir::IssueType::BusinessRule, expression, text).into()
}

/// Where a practice referral records consent.
pub const PRACTICE_CONSENT_EXPRESSION: &str = "consent.patientAgreed";
/// Where a BaRS message carries consent.
pub const BARS_CONSENT_EXPRESSION: &str = "Bundle.entry.resource.ofType(Consent)";
