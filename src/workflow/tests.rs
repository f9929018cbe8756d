use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::json;

use super::action::{IntoAction, TriageBody};
use super::*;

fn parties() -> Parties {
    Parties {
        referral: "ServiceRequest/sr-1".into(),
        patient: "Patient/p-1".into(),
        practice: Some("https://fhir.nhs.uk/Id/ods-organization-code|C88901".into()),
        service: "https://fhir.work-health-gateway.org/Id/service|sheffield-whs".into(),
        referred_on: NaiveDate::from_ymd_opt(2026, 11, 2),
    }
}

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap()
}

fn triage(body: serde_json::Value) -> Result<Action, crate::fhir::Issues> {
    serde_json::from_value::<TriageBody>(body)
        .unwrap()
        .into_action()
}

fn contact(date: &str, channel: &str) -> Action {
    Action::Contact(serde_json::from_value(json!({ "date": date, "channel": channel })).unwrap())
}

fn expressions(issues: &crate::fhir::Issues) -> Vec<String> {
    issues.iter().filter_map(|i| i.expression.clone()).collect()
}

#[test]
fn the_whole_pathway_from_triage_to_discharge() {
    let p = parties();
    let accept = triage(json!({ "decision": "accept" })).unwrap();
    let c = apply(&p, None, &accept, "e-0", now()).unwrap();
    assert_eq!(c.stage, Stage::Accepted);
    assert_eq!(c.task["status"], "accepted");
    assert_eq!(c.task["focus"]["reference"], "ServiceRequest/sr-1");
    assert_eq!(c.task["owner"]["identifier"]["value"], "sheffield-whs");
    assert_eq!(c.task["requester"]["identifier"]["value"], "C88901");
    assert_eq!(stage_of(Some(&c.task)), Stage::Accepted);

    let first = apply(
        &p,
        Some(&c.task),
        &contact("2026-11-10", "phone"),
        "e-1",
        now(),
    )
    .unwrap();
    assert_eq!(first.stage, Stage::Contacted);
    assert_eq!(first.task["status"], "in-progress");
    assert_eq!(
        first.task["input"][0]["type"]["coding"][0]["code"],
        "first-contact"
    );
    assert_eq!(
        first.task["input"][0]["valueReference"]["reference"],
        "Encounter/e-1"
    );
    let e = first.record.unwrap();
    assert_eq!(e["class"]["code"], "VR");
    assert_eq!(e["type"][0]["coding"][0]["code"], "phone");
    assert_eq!(e["status"], "finished");

    let again = apply(
        &p,
        Some(&first.task),
        &contact("2026-11-12", "in-person"),
        "e-2",
        now(),
    )
    .unwrap();
    assert_eq!(again.stage, Stage::InSupport);
    assert_eq!(
        again.task["input"][1]["type"]["coding"][0]["code"],
        "appointment"
    );
    assert_eq!(again.record.unwrap()["class"]["code"], "AMB");

    let support = Action::Support(
        serde_json::from_value(
            json!({ "date": "2026-11-12", "codes": ["action-plan", "employer-letter"] }),
        )
        .unwrap(),
    );
    let s = apply(&p, Some(&again.task), &support, "e-3", now()).unwrap();
    assert_eq!(s.task["output"].as_array().unwrap().len(), 2);

    let discharge = Action::Discharge(
        serde_json::from_value(json!({ "date": "2026-11-19", "employmentOutcome": "left-job-positive", "healthOutcomes": ["managing-health-better", "fewer-gp-visits"], "note": "Moved to a job that suits her health." })).unwrap(),
    );
    let d = apply(&p, Some(&s.task), &discharge, "e-4", now()).unwrap();
    assert_eq!(d.stage, Stage::Discharged);
    assert_eq!(d.stage.service_request_status(), "completed");
    assert_eq!(d.task["status"], "completed");
    let outputs: Vec<&str> = d.task["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        outputs,
        [
            "support-given",
            "support-given",
            "employment-outcome",
            "health-outcome",
            "health-outcome"
        ]
    );
    assert_eq!(
        d.task["note"][0]["text"],
        "Moved to a job that suits her health."
    );

    // Nothing follows a discharge.
    let err = apply(
        &p,
        Some(&d.task),
        &contact("2026-11-20", "phone"),
        "e-5",
        now(),
    )
    .unwrap_err();
    assert!(err.iter().any(|i| i.diagnostics.contains("discharged")));
}

#[test]
fn a_decline_carries_its_coded_reason_and_notice() {
    let p = parties();
    let decline = triage(json!({ "decision": "decline", "reason": "not-eligible", "criterion": "area", "note": "Lives in Rotherham." })).unwrap();
    let c = apply(&p, None, &decline, "e", now()).unwrap();
    assert_eq!(c.stage, Stage::Declined);
    assert_eq!(c.stage.service_request_status(), "revoked");
    assert_eq!(c.task["status"], "rejected");
    assert_eq!(c.task["statusReason"]["coding"][0]["code"], "not-eligible");
    assert_eq!(
        c.task["input"][1]["valueCodeableConcept"]["coding"][0]["code"],
        "area"
    );
    let n = c.decline.unwrap();
    assert_eq!(
        (n.reason.as_str(), n.criterion.as_deref()),
        ("not-eligible", Some("area"))
    );
    // Each reason of the published list is accepted.
    for (code, _) in &crate::fhir::terminology::code_system("referral-decline-reason").concepts {
        let mut body = json!({ "decision": "decline", "reason": code, "note": "n" });
        if code == "not-eligible" {
            body["criterion"] = json!("age");
        }
        assert!(triage(body).is_ok(), "{code}");
    }
    // The person may decline after the referral was accepted; not after support began.
    let accepted = apply(
        &p,
        None,
        &triage(json!({ "decision": "accept" })).unwrap(),
        "e",
        now(),
    )
    .unwrap();
    let person = triage(json!({ "decision": "decline", "reason": "person-declined" })).unwrap();
    assert!(apply(&p, Some(&accepted.task), &person, "e", now()).is_ok());
    assert!(
        apply(&p, Some(&c.task), &person, "e", now()).is_err(),
        "declined twice"
    );
}

#[test]
fn bad_triage_reports_every_problem() {
    let err = triage(json!({ "decision": "decline", "reason": "bored", "criterion": "age" }))
        .unwrap_err();
    assert_eq!(expressions(&err), ["reason", "criterion"]);
    let err = triage(json!({ "decision": "decline", "reason": "not-eligible" })).unwrap_err();
    assert_eq!(expressions(&err), ["criterion"]);
    let err = triage(json!({ "decision": "decline", "reason": "other" })).unwrap_err();
    assert_eq!(expressions(&err), ["note"]);
    let err = triage(json!({ "decision": "accept", "reason": "duplicate" })).unwrap_err();
    assert_eq!(expressions(&err), ["reason"]);
    let err = triage(json!({ "decision": "maybe" })).unwrap_err();
    assert_eq!(expressions(&err), ["decision"]);
    let err = triage(json!({ "decision": "decline" })).unwrap_err();
    assert_eq!(expressions(&err), ["reason"]);
}

#[test]
fn contacts_need_an_accepted_referral_a_channel_and_a_real_date() {
    let p = parties();
    let err = apply(&p, None, &contact("2026-11-10", "phone"), "e", now()).unwrap_err();
    assert!(err.iter().any(|i| i.diagnostics.contains("received")));
    let accepted = apply(
        &p,
        None,
        &triage(json!({ "decision": "accept" })).unwrap(),
        "e",
        now(),
    )
    .unwrap();
    let err = apply(
        &p,
        Some(&accepted.task),
        &contact("2026-12-25", "pigeon"),
        "e",
        now(),
    )
    .unwrap_err();
    assert_eq!(expressions(&err), ["date", "channel"]);
    let err = apply(
        &p,
        Some(&accepted.task),
        &contact("2026-10-01", "video"),
        "e",
        now(),
    )
    .unwrap_err();
    assert!(
        err.iter()
            .any(|i| i.diagnostics.contains("before the referral"))
    );
    let bad_support = Action::Support(
        serde_json::from_value(json!({ "date": "2026-11-12", "codes": [] })).unwrap(),
    );
    assert_eq!(
        expressions(&bad_support.validate(now().date_naive())),
        ["codes"]
    );
    let bad_discharge = Action::Discharge(
        serde_json::from_value(json!({ "date": "2026-11-12", "healthOutcomes": ["rich"] }))
            .unwrap(),
    );
    assert_eq!(
        expressions(&bad_discharge.validate(now().date_naive())),
        ["employmentOutcome", "healthOutcomes[0]"]
    );
}

#[test]
fn time_to_first_contact_against_the_target() {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let today = d("2026-11-20").unwrap();
    let met = timeliness(d("2026-11-02"), d("2026-11-16"), 14, today);
    assert_eq!(
        (met.days_to_first_contact, met.target_met),
        (Some(14), Some(true))
    );
    let missed = timeliness(d("2026-11-02"), d("2026-11-17"), 14, today);
    assert_eq!(missed.target_met, Some(false));
    assert_eq!(
        timeliness(d("2026-11-10"), None, 14, today).target_met,
        None,
        "still within the target"
    );
    assert_eq!(
        timeliness(d("2026-11-01"), None, 14, today).target_met,
        Some(false),
        "overdue without contact"
    );
}

#[test]
fn feedback_on_a_self_referral_waits_for_a_traced_nhs_number() {
    let ods = "https://fhir.nhs.uk/Id/ods-organization-code";
    let patient = |status: Option<&str>| {
        let mut p = json!({
            "resourceType": "Patient",
            "generalPractitioner": [{ "identifier": { "system": ods, "value": "C88901" } }],
        });
        if let Some(code) = status {
            p["identifier"] = json!([{
                "system": crate::fhir::systems::NHS_NUMBER,
                "value": "9990000018",
                "extension": [{
                    "url": crate::fhir::systems::NHS_NUMBER_VERIFICATION_EXT,
                    "valueCodeableConcept": { "coding": [{
                        "system": crate::fhir::systems::NHS_NUMBER_VERIFICATION_ENGLAND,
                        "code": code,
                    }] },
                }],
            }]);
        }
        p
    };
    // A referring practice is written to whatever the Patient says.
    let referring = format!("{ods}|C88902");
    assert_eq!(
        feedback_recipient(Some(&referring), &patient(None)),
        Some(referring.clone())
    );
    // A referrer of another kind is written to as itself; an employer never is.
    let talking_therapies =
        "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|TAJ".to_string();
    assert_eq!(
        feedback_recipient(Some(&talking_therapies), &patient(Some("01"))),
        Some(talking_therapies)
    );
    let employer = "https://fhir.work-health-gateway.org/Id/employer|E1234";
    assert_eq!(
        feedback_recipient(Some(employer), &patient(Some("01"))),
        None
    );
    assert_eq!(
        feedback_recipient(Some("https://example.org/made-up|X1"), &patient(Some("01"))),
        None
    );
    // A self-referral: no number, or one typed and untraced (02), writes to nobody.
    assert_eq!(feedback_recipient(None, &patient(None)), None);
    assert_eq!(feedback_recipient(None, &patient(Some("02"))), None);
    // Traced and verified (01): the practice the person named.
    assert_eq!(
        feedback_recipient(None, &patient(Some("01"))),
        Some(format!("{ods}|C88901"))
    );
    // 01 in some other code system is not UK Core's "number present and verified".
    let mut elsewhere = patient(Some("01"));
    elsewhere["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["system"] =
        json!("https://example.org/CodeSystem/made-up");
    assert_eq!(feedback_recipient(None, &elsewhere), None);
    // Verified, but no practice named by its ODS code.
    let mut unnamed = patient(Some("01"));
    unnamed["generalPractitioner"] = json!([{ "display": "Crookes Valley Surgery" }]);
    assert_eq!(feedback_recipient(None, &unnamed), None);
}
