use chrono::{TimeZone, Utc};
use serde_json::json;

use super::*;

fn context() -> Context {
    Context {
        referral: "ServiceRequest/sr-1".into(),
        patient: "Patient/p-1".into(),
        referral_date: NaiveDate::from_ymd_opt(2026, 11, 2),
        service_name: "Sheffield Work and Health Service".into(),
        service: "https://fhir.work-health-gateway.org/Id/service|sheffield-whs".into(),
        practice: "https://fhir.nhs.uk/Id/ods-organization-code|C88901".into(),
        practice_name: Some("Porter Brook Surgery".into()),
        patient_name: Some("Aisha Khan".into()),
        nhs_number: Some("9990000018".into()),
        birth_date: Some("1984-03-09".into()),
    }
}

fn body() -> LetterBody {
    serde_json::from_value(json!({
        "priority": "routine",
        "summary": "Aisha has had three sessions about returning to work after anxiety.",
        "supportGiven": ["advice-session", "return-to-work-plan", "employer-liaison"],
        "plan": { "type": "return-to-work-plan", "text": "Phased return over four weeks: 50%, 60%, 80%, 100%." },
        "recommendations": "Please consider a fit note with amended duties for four weeks.",
        "outcomes": { "employment": "returned-to-work", "health": ["managing-health-better"] },
        "author": { "name": "Sam Patel", "role": "Work and health adviser" }
    }))
    .unwrap()
}

#[test]
fn a_feedback_letter_has_every_section_and_both_organisations() {
    let now = Utc.with_ymd_and_hms(2026, 11, 20, 10, 0, 0).unwrap();
    let letter = context().feedback(&body(), now);
    let titles: Vec<&str> = letter.sections.iter().map(|s| s.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Summary",
            "Support given",
            "Return-to-work plan",
            "Recommendations for the GP",
            "Outcomes"
        ]
    );
    assert_eq!(
        letter.patient_line,
        "Re: Aisha Khan, NHS number 999 000 0018, born 1984-03-09"
    );
    assert_eq!(letter.to_identifier, "ODS C88901");
    assert_eq!(letter.author_line, "Sam Patel, Work and health adviser");
    let ids = LetterIds {
        composition: "c".into(),
        document: "d".into(),
        communication: "m".into(),
    };
    let pdf = pdf::render(&letter);
    assert!(pdf.starts_with(b"%PDF-"));
    assert!(pdf.windows(5).any(|w| w == b"%%EOF"));
    let [composition, document, communication] = resources(&letter, &context(), &ids, &pdf, now);
    assert_eq!(composition["section"].as_array().unwrap().len(), 5);
    assert_eq!(
        composition["custodian"]["identifier"]["value"],
        "sheffield-whs"
    );
    assert_eq!(document["content"][0]["attachment"]["size"], pdf.len());
    assert_eq!(
        document["context"]["related"][1]["reference"],
        "Composition/c"
    );
    assert_eq!(
        communication["payload"][0]["contentReference"]["reference"],
        "DocumentReference/d"
    );
    assert_eq!(
        communication["recipient"][0]["identifier"]["value"],
        "C88901"
    );
    assert_eq!(communication["status"], "preparation");
    // Narrative is escaped.
    let mut tricky = body();
    tricky.summary = "<script>alert(1)</script> & more".into();
    let letter = context().feedback(&tricky, now);
    let [composition, ..] = resources(&letter, &context(), &ids, b"%PDF", now);
    assert!(
        composition["section"][0]["text"]["div"]
            .as_str()
            .unwrap()
            .contains("&lt;script&gt;")
    );
}

#[test]
fn a_decline_letter_gives_the_reason_and_criterion() {
    let now = Utc::now();
    let notice = crate::workflow::DeclineNotice {
        reason: "not-eligible".into(),
        reason_display: "Not eligible".into(),
        criterion: Some("area".into()),
        note: Some("Lives outside Sheffield.".into()),
    };
    let letter = context().decline(&notice, "Triage team", now);
    assert_eq!(letter.kind, "decline");
    let text = letter.sections[0].paragraphs.join(" ");
    assert!(
        text.contains("Not eligible")
            && text.contains("Lives in the area")
            && text.contains("Lives outside Sheffield."),
        "{text}"
    );
}

#[test]
fn letter_problems_name_their_fields() {
    let mut b = body();
    b.summary = " ".into();
    b.support_given.push("magic".into());
    b.plan = Some(Plan {
        kind: "wish-list".into(),
        text: "x".into(),
    });
    b.outcomes = Some(Outcomes {
        employment: Some("rich".into()),
        health: vec!["taller".into()],
    });
    b.author.name = String::new();
    let issues = b.validate();
    let at: Vec<&str> = issues
        .iter()
        .filter_map(|i| i.expression.as_deref())
        .collect();
    assert_eq!(
        at,
        [
            "summary",
            "author.name",
            "plan.type",
            "supportGiven[3]",
            "outcomes.employment",
            "outcomes.health[0]"
        ]
    );
    assert!(body().validate().is_empty());
}

#[test]
fn long_letters_run_to_more_pages() {
    let mut b = body();
    b.summary = "A long account of the support given. ".repeat(400);
    let letter = context().feedback(&b, Utc::now());
    let pdf = pdf::render(&letter);
    let pages = pdf
        .windows(b"/Type /Page\n".len())
        .filter(|w| w.starts_with(b"/Type /Page") && !w.starts_with(b"/Type /Pages"))
        .count();
    assert!(pages >= 3, "{pages} pages");
}

#[test]
fn a_letter_to_a_referrer_of_another_kind_is_worded_for_it_not_for_a_gp() {
    let mut to_tt = context();
    to_tt.practice =
        "https://fhir.work-health-gateway.org/Id/referrer/talking-therapies|TAJ".into();
    to_tt.practice_name = None;
    let letter = to_tt.feedback(&body(), chrono::Utc::now());
    assert_eq!(letter.to_identifier, "Talking Therapies TAJ");
    assert_eq!(letter.to_name, "The referring organisation");
    let titles: Vec<&str> = letter.sections.iter().map(|s| s.title.as_str()).collect();
    assert!(titles.contains(&"Recommendations"), "{titles:?}");
    assert!(!titles.iter().any(|t| t.contains("GP")), "{titles:?}");
}

#[test]
fn narrative_reads_back_as_the_paragraphs_it_was_written_from() {
    let paragraphs = vec!["A & B <c>".to_string(), "two\nlines".to_string()];
    assert_eq!(paragraphs_of(&xhtml(&paragraphs)), paragraphs);
}
