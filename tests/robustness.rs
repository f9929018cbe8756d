//! No input crashes the intake: every field of every valid fixture is deleted, nulled and given
//! each wrong JSON type in turn, and validation must answer (accept, or reject with issues) without
//! panicking. A panic here would be a 500 at the API.

mod common;

use common::*;
use serde_json::{Value, json};
use whg::config::Config;
use whg::intake::{bars, practice_referral};

/// Every JSON pointer in a document.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(child, p, out);
            }
        }
        _ => {}
    }
}

fn mutations() -> Vec<Option<Value>> {
    vec![
        None,
        Some(Value::Null),
        Some(json!(0)),
        Some(json!(-1.5)),
        Some(json!("")),
        Some(json!("x")),
        Some(json!([])),
        Some(json!({})),
        Some(json!(true)),
        Some(json!("9".repeat(300))),
    ]
}

fn mutate(doc: &Value, pointer: &str, replacement: &Option<Value>) -> Value {
    let mut doc = doc.clone();
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    let last = last.replace("~1", "/").replace("~0", "~");
    let target = if parent.is_empty() {
        Some(&mut doc)
    } else {
        doc.pointer_mut(parent)
    };
    match (target, replacement) {
        (Some(Value::Object(map)), None) => {
            map.remove(&last);
        }
        (Some(Value::Object(map)), Some(v)) => {
            map.insert(last, v.clone());
        }
        (Some(Value::Array(items)), None) => {
            items.remove(last.parse().unwrap());
        }
        (Some(Value::Array(items)), Some(v)) => {
            items[last.parse::<usize>().unwrap()] = v.clone();
        }
        _ => {}
    }
    doc
}

#[test]
fn practice_referrals_never_crash_validation() {
    let config = Config::defaults();
    let ctx = config.intake_now();
    let mut checked = 0;
    for f in fixtures("referrals/valid").iter().take(6) {
        let doc = read_json(f);
        let mut paths = Vec::new();
        pointers(&doc, String::new(), &mut paths);
        for p in &paths {
            for m in mutations() {
                let mutated = mutate(&doc, p, &m);
                if let Err(issues) = practice_referral(&mutated, &ctx) {
                    assert!(!issues.is_empty());
                    assert!(issues.iter().all(|i| !i.diagnostics.is_empty()), "{p}");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "{checked}");
}

#[test]
fn bars_messages_never_crash_validation() {
    let config = Config::defaults();
    let ctx = config.intake_now();
    let doc =
        read_json(&root().join("fixtures/messages/valid/01-bars-referral-current-forms.json"));
    let mut paths = Vec::new();
    pointers(&doc, String::new(), &mut paths);
    for p in &paths {
        for m in mutations() {
            let mutated = mutate(&doc, p, &m);
            let bytes = serde_json::to_vec(&mutated).unwrap();
            match bars::validate(&bytes, &mutated, &ctx) {
                Ok(bars::BarsMessage::Referral(s)) => assert!(!s.entries.is_empty()),
                Ok(bars::BarsMessage::Cancellation(c)) => {
                    assert!(!c.referral.key.value.is_empty())
                }
                Ok(bars::BarsMessage::Amendment(a)) => {
                    assert!(!a.referral.key.value.is_empty() && !a.submission.entries.is_empty())
                }
                Err(bars::Rejection::Malformed(i) | bars::Rejection::Invalid(i)) => {
                    assert!(!i.is_empty(), "{p}")
                }
            }
        }
    }
}

#[test]
fn consents_never_crash_the_consent_model_or_the_decision() {
    use whg::consent::{Action, DataClass, Purpose, Question, Recipient, RecipientClass};
    let question = Question {
        recipient: Recipient {
            class: RecipientClass::WorkHealthService,
            organisation: Some(
                "https://fhir.work-health-gateway.org/Id/service|sheffield-whs".into(),
            ),
        },
        action: Action::Access,
        purpose: Purpose::Treatment,
        class: DataClass::Referral,
        at: chrono::Utc::now(),
        document: None,
    };
    let mut checked = 0;
    for f in fixtures("consent/valid") {
        let doc = read_json(&f);
        let mut paths = Vec::new();
        pointers(&doc, String::new(), &mut paths);
        for p in &paths {
            for m in mutations() {
                let mutated = mutate(&doc, p, &m);
                match whg::consent::read_consent(&mutated) {
                    Ok(record) => {
                        whg::consent::decide(&[record], &[], &question);
                    }
                    Err(issues) => assert!(
                        !issues.is_empty() && issues.iter().all(|i| i.expression.is_some()),
                        "{p}"
                    ),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}
