//! Validate + map one practice referral or fit note (the CPU work of the intake paths, without
//! I/O), and the fit-note history rules over a long history.
//!
//! cargo bench --bench intake

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use std::hint::black_box;
use whg::config::Config;
use whg::intake::{practice_fit_note, practice_referral};

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn bench(c: &mut Criterion) {
    let config = Config::defaults();
    let ctx = config.intake_now();
    let referral = fixture("referrals/valid/01-gp-work-stress-off-sick");
    let body = serde_json::to_vec(&referral).unwrap();
    assert!(practice_referral(&referral, &ctx).is_ok());

    c.bench_function("validate+map one referral", |b| {
        b.iter(|| practice_referral(black_box(&referral), &ctx).unwrap())
    });
    c.bench_function("parse+validate+map one referral from bytes", |b| {
        b.iter(|| {
            let v: Value = serde_json::from_slice(black_box(&body)).unwrap();
            practice_referral(&v, &ctx).unwrap()
        })
    });
    let invalid = fixture("referrals/valid/01-gp-work-stress-off-sick");
    let mut invalid = invalid;
    invalid["patient"]["nhsNumber"] = Value::from("9990000019");
    c.bench_function("validate one invalid referral", |b| {
        b.iter(|| practice_referral(black_box(&invalid), &ctx).unwrap_err())
    });

    let note = fixture("fit-notes/valid/07-all-four-adjustments");
    assert!(practice_fit_note(&note, &ctx).is_ok());
    c.bench_function("validate+map one fit note", |b| {
        b.iter(|| practice_fit_note(black_box(&note), &ctx).unwrap())
    });

    // Two years of fortnightly notes with a gap every tenth: the rules the admission runs.
    let start = chrono::NaiveDate::from_ymd_opt(2025, 1, 6).unwrap();
    let history: Vec<whg::fit_notes::FitNoteFacts> = (0..52u64)
        .map(|i| {
            let from = start + chrono::Days::new(i * 14 + (i / 10) * 10);
            whg::fit_notes::FitNoteFacts {
                reference: format!("Observation/{i}"),
                start: from,
                end: Some(from + chrono::Days::new(13)),
                issued: from,
                not_fit: true,
            }
        })
        .collect();
    let rules = &config.service("pas-county-durham").unwrap().prompts;
    let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 31).unwrap();
    c.bench_function("summary + prompt rules over 52 fit notes", |b| {
        b.iter(|| {
            let s = whg::fit_notes::summary(black_box(&history), today, 7, 6);
            let f = whg::fit_notes::prompts::fired(
                whg::fit_notes::prompts::Arrival::Live,
                "pas-county-durham",
                rules,
                &history,
                "Observation/51",
                &[],
                7,
                today,
            );
            (s, f)
        })
    });

    // A letter: laid out, rendered as PDF and built as its three FHIR resources.
    let body: whg::letters::LetterBody = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("fixtures/letters/02-letter-returned-to-work.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let context = whg::letters::Context {
        referral: "ServiceRequest/sr".into(),
        patient: "Patient/p".into(),
        referral_date: chrono::NaiveDate::from_ymd_opt(2026, 11, 2),
        service_name: "Sheffield Work and Health Service".into(),
        service: "https://fhir.work-health-gateway.org/Id/service|sheffield-whs".into(),
        practice: "https://fhir.nhs.uk/Id/ods-organization-code|C88901".into(),
        practice_name: Some("Porter Brook Surgery".into()),
        patient_name: Some("Aisha Khan".into()),
        nhs_number: Some("9990000018".into()),
        birth_date: Some("1984-03-09".into()),
    };
    let ids = whg::letters::LetterIds {
        composition: "c".into(),
        document: "d".into(),
        communication: "m".into(),
    };
    c.bench_function("letter: lay out + render PDF + build resources", |b| {
        b.iter(|| {
            let now = chrono::Utc::now();
            let letter = context.feedback(black_box(&body), now);
            let pdf = whg::letters::pdf::render(&letter);
            whg::letters::resources(&letter, &context, &ids, &pdf, now)
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
