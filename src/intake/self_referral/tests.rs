use chrono::{NaiveDate, TimeZone, Utc};
use serde_json::Value;

use super::*;
use crate::config::Config;

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, 4).unwrap()
}

/// A complete form, as a person referring themselves to Sheffield would send it.
fn answers() -> Answers {
    Answers(
        [
            ("service", "sheffield-whs"),
            ("given-name", "Joanne"),
            ("family-name", "Whitworth"),
            ("dob-day", "14"),
            ("dob-month", "6"),
            ("dob-year", "1979"),
            ("sex", "female"),
            ("nhs-number", "999 000 0018"),
            ("postcode", "s2 2rl"),
            ("address-line-1", "14 Granville Road"),
            ("town", "Sheffield"),
            ("phone", "07700 900982"),
            ("email", ""),
            ("contact", "phone"),
            ("interpreter", "no"),
            ("gp", "C88901"),
            ("employment", "off-sick"),
            ("job-title", "Care assistant"),
            ("employer", "Sheffield Care Homes (synthetic)"),
            ("off-sick-day", "2"),
            ("off-sick-month", "11"),
            ("off-sick-year", "2026"),
            ("condition", "musculoskeletal"),
            ("condition-text", "Back pain lifting residents"),
            ("support", "return-to-work"),
            ("support", "talking-to-employer"),
            ("ethnicity", "white-british"),
            ("disability", "prefer-not-to-say"),
            ("consent-service", "yes"),
            ("consent-feedback", "yes"),
            ("consent-evaluation", "no"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

fn with(mut a: Answers, name: &str, value: &str) -> Answers {
    a.0.retain(|(k, _)| k != name);
    a.0.push((name.to_string(), value.to_string()));
    a
}

fn without(mut a: Answers, name: &str) -> Answers {
    a.0.retain(|(k, _)| k != name);
    a
}

fn check(a: &Answers) -> Result<SelfReferral, Issues> {
    let config = Config::defaults();
    let services = self_referral_services(&config.services);
    let practices = vec![(
        "C88901".to_string(),
        "Norfolk Park Medical Practice (synthetic)".to_string(),
    )];
    read(
        a,
        &FormContext {
            today: today(),
            services: &services,
            practices: &practices,
        },
    )
}

/// The questions with problems, in the order found.
fn problems(a: &Answers) -> Vec<String> {
    check(a)
        .expect_err("expected problems")
        .iter()
        .map(|i| i.expression.clone().unwrap_or_default())
        .collect()
}

#[test]
fn a_complete_form_reads_as_the_person_said() {
    let r = check(&answers()).unwrap();
    assert_eq!(r.service, "sheffield-whs");
    assert_eq!(r.name.given, ["Joanne"]);
    assert_eq!(r.birth_date, NaiveDate::from_ymd_opt(1979, 6, 14).unwrap());
    assert_eq!(r.nhs_number.as_deref(), Some("9990000018"));
    assert_eq!(r.postcode, "S2 2RL");
    assert_eq!(r.address_lines, ["14 Granville Road", "Sheffield"]);
    assert_eq!(r.email, None);
    assert!(matches!(&r.gp, Gp::Listed { ods, .. } if ods == "C88901"));
    assert_eq!(r.off_sick_since, NaiveDate::from_ymd_opt(2026, 11, 2));
    assert_eq!(r.needs, ["return-to-work", "talking-to-employer"]);
    assert_eq!(r.disability, "prefer-not-to-say");
    assert!(r.feedback_to_gp && !r.evaluation);
}

#[test]
fn an_empty_form_names_every_required_question() {
    let empty = Answers(Vec::new());
    assert_eq!(
        problems(&empty),
        [
            field::SERVICE,
            field::GIVEN_NAME,
            field::FAMILY_NAME,
            field::DOB_DAY,
            field::SEX,
            field::POSTCODE,
            field::CONTACT,
            field::INTERPRETER,
            field::EMPLOYMENT,
            field::SUPPORT,
            field::CONSENT_SERVICE,
            field::CONSENT_FEEDBACK,
            field::CONSENT_EVALUATION,
        ]
    );
}

#[test]
fn the_nhs_number_is_optional_but_checked_when_given() {
    let r = check(&without(answers(), field::NHS_NUMBER)).unwrap();
    assert_eq!(r.nhs_number, None);
    // Modulus 11: 999 000 0018 is valid, a changed last digit is not.
    assert_eq!(
        problems(&with(answers(), field::NHS_NUMBER, "999 000 0019")),
        [field::NHS_NUMBER]
    );
    assert_eq!(
        problems(&with(answers(), field::NHS_NUMBER, "12345")),
        [field::NHS_NUMBER]
    );
}

#[test]
fn dates_are_checked_part_by_part() {
    let dob = |d: &str, m: &str, y: &str| {
        let a = with(answers(), field::DOB_DAY, d);
        let a = with(a, field::DOB_MONTH, m);
        with(a, field::DOB_YEAR, y)
    };
    let message = |a: &Answers| {
        check(a)
            .unwrap_err()
            .iter()
            .next()
            .unwrap()
            .diagnostics
            .clone()
    };
    assert_eq!(problems(&dob("31", "2", "1980")), [field::DOB_DAY]);
    assert_eq!(
        message(&dob("31", "2", "1980")),
        "Your date of birth must be a real date"
    );
    assert_eq!(problems(&dob("1", "", "1980")), [field::DOB_MONTH]);
    assert_eq!(problems(&dob("1", "1", "80")), [field::DOB_DAY]);
    assert_eq!(problems(&dob("1", "1", "2030")), [field::DOB_DAY]);
    // Sixteen today is old enough; a day short is not.
    assert!(check(&dob("4", "12", "2010")).is_ok());
    assert_eq!(problems(&dob("5", "12", "2010")), [field::DOB_DAY]);
    assert_eq!(problems(&dob("1", "1", "1890")), [field::DOB_YEAR]);
    // Off sick needs the date it began, not in the future.
    let a = without(answers(), field::OFF_SICK_DAY);
    assert_eq!(problems(&a), [field::OFF_SICK_DAY]);
    let a = with(answers(), field::OFF_SICK_YEAR, "2027");
    assert_eq!(problems(&a), [field::OFF_SICK_DAY]);
    // In work, the absence date is not asked for.
    let a = without(
        with(answers(), field::EMPLOYMENT, "employed-at-work"),
        field::OFF_SICK_DAY,
    );
    assert_eq!(check(&a).unwrap().off_sick_since, None);
}

#[test]
fn the_way_to_contact_must_be_given() {
    let a = with(answers(), field::CONTACT, "email");
    assert_eq!(problems(&a), [field::EMAIL]);
    let a = with(
        with(answers(), field::CONTACT, "letter"),
        field::ADDRESS_LINE_1,
        "",
    );
    assert_eq!(problems(&a), [field::ADDRESS_LINE_1]);
    let a = with(answers(), field::PHONE, "call me");
    assert_eq!(problems(&a), [field::PHONE]);
    let a = with(answers(), field::EMAIL, "not-an-address");
    assert_eq!(problems(&a), [field::EMAIL]);
    let a = with(answers(), field::INTERPRETER, "yes");
    assert_eq!(problems(&a), [field::LANGUAGE]);
    let interpreter = |language: &str| {
        with(
            with(answers(), field::INTERPRETER, "yes"),
            field::LANGUAGE,
            language,
        )
    };
    assert_eq!(
        check(&interpreter("ur")).unwrap().interpreter,
        Some(Interpreter::Listed("ur"))
    );
    assert_eq!(
        problems(&interpreter("Urdu")),
        [field::LANGUAGE],
        "a tag from the list"
    );
    assert_eq!(problems(&interpreter("other")), [field::LANGUAGE_OTHER]);
    let named = with(interpreter("other"), field::LANGUAGE_OTHER, "Amharic");
    assert_eq!(
        check(&named).unwrap().interpreter,
        Some(Interpreter::Named("Amharic".into()))
    );
}

#[test]
fn feedback_goes_only_to_a_practice_the_gateway_knows() {
    let a = with(answers(), field::GP, "not-listed");
    assert_eq!(problems(&a), [field::CONSENT_FEEDBACK]);
    let a = with(
        with(answers(), field::GP, "not-listed"),
        field::CONSENT_FEEDBACK,
        "no",
    );
    let a = with(a, field::GP_NAME, "Crookes Valley Surgery");
    let r = check(&a).unwrap();
    assert_eq!(r.gp, Gp::Named("Crookes Valley Surgery".into()));
    assert!(!r.feedback_to_gp);
    // A practice code the list does not hold is not taken on trust.
    let a = with(answers(), field::GP, "B99999");
    assert_eq!(problems(&a), [field::GP, field::CONSENT_FEEDBACK]);
}

#[test]
fn prefer_not_to_say_is_an_answer_where_the_practice_format_has_one() {
    let a = with(answers(), field::SEX, "prefer-not-to-say");
    let a = with(a, field::EMPLOYMENT, "prefer-not-to-say");
    let a = with(a, field::ETHNICITY, "prefer-not-to-say");
    let a = with(a, field::CONDITION, "prefer-not-to-say");
    let a = with(a, field::EMPLOYER_SIZE, "prefer-not-to-say");
    let a = with(a, field::CONTRACT, "prefer-not-to-say");
    let r = check(&without(a, field::OFF_SICK_DAY)).unwrap();
    assert_eq!(r.employer_size, "prefer-not-to-say");
    assert_eq!(r.contract, "prefer-not-to-say");
    assert_eq!(r.sector, "not-recorded", "not answered");
    assert_eq!(r.sex, "prefer-not-to-say");
    assert_eq!(r.employment_status, "prefer-not-to-say");
    assert_eq!(r.ethnicity, "prefer-not-to-say");
    assert_eq!(r.conditions, Conditions::Status("prefer-not-to-say"));
    // Left blank is "not recorded", never a guess.
    let r = check(&without(
        without(answers(), field::ETHNICITY),
        field::DISABILITY,
    ))
    .unwrap();
    assert_eq!(
        (r.ethnicity.as_str(), r.disability.as_str()),
        ("not-recorded", "not-recorded")
    );
    // "Not recorded" is the gateway's word for no answer, not a person's choice.
    assert_eq!(
        problems(&with(answers(), field::SEX, "not-recorded")),
        [field::SEX]
    );
}

#[test]
fn consent_to_the_service_is_required_and_nothing_else_is_assumed() {
    assert_eq!(
        problems(&without(answers(), field::CONSENT_SERVICE)),
        [field::CONSENT_SERVICE]
    );
    assert_eq!(
        problems(&with(answers(), field::CONSENT_SERVICE, "on")),
        [field::CONSENT_SERVICE]
    );
    assert_eq!(
        problems(&without(answers(), field::CONSENT_EVALUATION)),
        [field::CONSENT_EVALUATION]
    );
}

#[test]
fn only_services_taking_self_referrals_are_offered() {
    // WorkWell North Cumbria takes GP referrals only.
    assert_eq!(
        problems(&with(answers(), field::SERVICE, "workwell-north-cumbria")),
        [field::SERVICE]
    );
}

#[test]
fn oversized_or_hidden_characters_are_refused() {
    let long = "a".repeat(MAX_LINE + 1);
    assert_eq!(
        problems(&with(answers(), field::GIVEN_NAME, &long)),
        [field::GIVEN_NAME]
    );
    let text = "a".repeat(MAX_TEXT + 1);
    assert_eq!(
        problems(&with(answers(), field::SUPPORT_TEXT, &text)),
        [field::SUPPORT_TEXT]
    );
    assert_eq!(
        problems(&with(answers(), field::FAMILY_NAME, "Whit\u{0}worth")),
        [field::FAMILY_NAME]
    );
    let mut many = answers();
    many.0
        .extend((0..MAX_ANSWERS).map(|i| ("support".to_string(), format!("x{i}"))));
    assert_eq!(problems(&many), [field::SERVICE]);
}

#[test]
fn the_same_answers_in_any_order_hash_alike_and_the_token_is_not_an_answer() {
    let a = answers();
    let mut b = answers();
    b.0.reverse();
    b.0.push(("form-token".into(), "v1.anything".into()));
    assert_eq!(a.content_hash(), b.content_hash());
    assert_ne!(
        a.content_hash(),
        with(answers(), field::GIVEN_NAME, "Jo").content_hash()
    );
}

#[test]
fn postcodes_are_written_as_royal_mail_does() {
    assert_eq!(normalise_postcode(" s1  2he "), "S1 2HE");
    assert_eq!(normalise_postcode("NE333AB"), "NE33 3AB");
    assert_eq!(normalise_postcode("x"), "X");
}

fn mapped() -> (Submission, Value) {
    let config = Config::defaults();
    let r = check(&answers()).unwrap();
    let service = config.service("sheffield-whs").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let s = submission(&r, service, "ABCD-EFGH-JKMN", "h".into(), now);
    let bundle = s.transaction_bundle();
    (s, bundle)
}

fn of_type<'a>(bundle: &'a Value, t: &str) -> Vec<&'a Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == t)
        .collect()
}

#[test]
fn a_self_referral_is_the_persons_own_and_never_joins_a_stored_record() {
    let (s, bundle) = mapped();
    assert_eq!(s.sender, Sender::Person);
    assert_eq!(s.key.namespace, NAMESPACE);
    // The Patient is new: not matched by the NHS number typed, and the number is marked untraced.
    let patient = s
        .entries
        .iter()
        .find(|e| e.resource_type == "Patient")
        .unwrap();
    assert_eq!(patient.match_identifier, None);
    assert_eq!(
        patient.resource["identifier"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "02"
    );
    // No practice is among the resources: the GP is named on the Patient by its ODS code only.
    assert!(
        of_type(&bundle, "Organization")
            .iter()
            .all(|o| o["identifier"][0]["system"] != crate::fhir::systems::ODS_ORGANIZATION)
    );
    assert_eq!(
        patient.resource["generalPractitioner"][0]["identifier"]["value"],
        "C88901"
    );
    assert!(of_type(&bundle, "Practitioner").is_empty());
    // The person asked: they are the requester, and they recorded their own agreements.
    let sr = of_type(&bundle, "ServiceRequest")[0];
    assert_eq!(sr["requester"]["reference"], patient.full_url);
    assert_eq!(sr["identifier"][0]["value"], "ABCD-EFGH-JKMN");
    assert_eq!(
        sr["extension"][0]["valueCodeableConcept"]["coding"][1]["code"],
        "310434002"
    );
    let consents = of_type(&bundle, "Consent");
    assert_eq!(consents.len(), 2, "service and feedback, no evaluation");
    for c in &consents {
        assert_eq!(c["performer"][0]["reference"], patient.full_url);
        assert!(crate::consent::read_consent(c).is_ok(), "{c}");
    }
    let feedback = consents[1];
    assert_eq!(
        feedback["provision"]["actor"][0]["reference"]["identifier"]["value"],
        "C88901"
    );
}

#[test]
fn the_mapping_is_repeatable() {
    assert_eq!(mapped().1, mapped().1);
}

#[test]
fn the_persons_answers_decide_as_consents_do() {
    use crate::consent::{Question, decide, read_consent};
    let (_, bundle) = mapped();
    let consents: Vec<_> = of_type(&bundle, "Consent")
        .into_iter()
        .map(|c| {
            let mut record = read_consent(c).unwrap();
            record.decided_at = Some(Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap());
            record
        })
        .collect();
    let later = Utc.with_ymd_and_hms(2026, 12, 10, 9, 0, 0).unwrap();
    let named = format!("{}|C88901", crate::fhir::systems::ODS_ORGANIZATION);
    let another = format!("{}|C88902", crate::fhir::systems::ODS_ORGANIZATION);
    // Feedback to the practice the person chose, and to no other; no evaluation (they said no).
    assert!(decide(&consents, &[], &Question::outcomes_to(&named, later)).permitted());
    assert!(!decide(&consents, &[], &Question::outcomes_to(&another, later)).permitted());
    assert!(!decide(&consents, &[], &Question::evaluation(later)).permitted());
}

#[test]
fn invisible_characters_that_change_how_a_name_reads_are_refused() {
    for sneaky in ["Jo\u{200B}anne", "\u{202E}ennaoJ", "Jo\u{FEFF}"] {
        assert_eq!(
            problems(&with(answers(), field::GIVEN_NAME, sneaky)),
            [field::GIVEN_NAME],
            "{sneaky:?}"
        );
    }
    // Letters from any script are a name.
    assert!(check(&with(answers(), field::GIVEN_NAME, "Siân")).is_ok());
    assert!(check(&with(answers(), field::GIVEN_NAME, "محمد")).is_ok());
}

#[test]
fn an_interpreter_language_is_coded_as_uk_core_binds_it_or_said_on_the_referral() {
    let config = Config::defaults();
    let service = config.service("sheffield-whs").unwrap();
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 9, 30, 0).unwrap();
    let map = |a: Answers| {
        let r = check(&a).unwrap();
        submission(&r, service, "ABCD-EFGH-JKMN", "h".into(), now).transaction_bundle()
    };
    let yes = with(answers(), field::INTERPRETER, "yes");
    let listed = map(with(yes.clone(), field::LANGUAGE, "pl"));
    let language = &of_type(&listed, "Patient")[0]["communication"][0]["language"];
    assert_eq!(language["coding"][0]["system"], "urn:ietf:bcp:47");
    assert_eq!(language["coding"][0]["code"], "pl");
    let named = map(with(
        with(yes, field::LANGUAGE, "other"),
        field::LANGUAGE_OTHER,
        "Amharic",
    ));
    assert!(of_type(&named, "Patient")[0].get("communication").is_none());
    let notes = of_type(&named, "ServiceRequest")[0]["note"].to_string();
    assert!(notes.contains("Needs an interpreter: Amharic"), "{notes}");
}

#[test]
fn the_work_questions_take_their_code_systems_codes_only() {
    assert_eq!(
        problems(&with(answers(), field::EMPLOYER_SIZE, "huge")),
        [field::EMPLOYER_SIZE]
    );
    assert_eq!(
        problems(&with(answers(), field::SECTOR, "not-recorded")),
        [field::SECTOR],
        "no answer is the form's to record, not a choice"
    );
    let r = check(&with(answers(), field::OCCUPATIONAL_HEALTH, "no")).unwrap();
    assert_eq!(r.occupational_health, "no");
}
