//! Pure planning of a submission's writes: assigns ids (reusing matched shared resources),
//! rewrites `urn:uuid` references to `Type/id`, stamps `meta`, and lists index entries.

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

use crate::fhir::resource::{rewrite_references, stamp};
use crate::fhir::search::{IndexEntry, index_entries};
use crate::fhir::systems;
use crate::intake::submission::is_service_organization;
use crate::intake::{Submission, SubmissionEntry};

/// A resource already stored that a submission entry matched by identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub id: String,
    pub version_id: i64,
    pub last_updated: String,
    /// The stored JSON text, to tell whether a submission really changes the resource.
    pub content: String,
    /// When the information stored was authored (see `Submission::source_time`).
    pub source_time: String,
    /// Who stated it: `system|value` of the practice whose submission wrote this version.
    pub source_practice: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWrite {
    pub resource_type: String,
    pub id: String,
    pub version_id: i64,
    /// True when this replaces the stored version `version_id - 1`.
    pub replaces: bool,
    pub content: Value,
    pub index: Vec<IndexEntry>,
    /// Business identifier to register for a newly created shared resource.
    pub identity: Option<(String, String)>,
    /// When the written information was authored.
    pub source_time: String,
    /// Who stated it (the submitting practice; empty for what the gateway writes itself).
    pub source_practice: String,
}

/// What storing a submission takes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub writes: Vec<PlannedWrite>,
    /// Every resource the referral consists of, as `(type, id)`, written or reused unchanged.
    pub members: Vec<(String, String)>,
    /// The id of the person the referral is about: its subject's (never another entry's).
    pub patient_id: Option<String>,
    /// `Type/id` of each entry, by its `full_url`.
    pub ids: HashMap<String, String>,
    /// The version of the person's Patient this submission comes with: the one its subject
    /// entry wrote, or the stored one that entry's statement matched.
    pub patient_version: Option<i64>,
}

/// Plans the writes for `submission` (see [`plan`]).
pub fn plan_writes(
    submission: Submission,
    existing: &HashMap<String, Existing>,
    focus_id: &str,
    last_updated: &str,
) -> Vec<PlannedWrite> {
    plan(submission, existing, focus_id, last_updated).writes
}

/// Plans the writes for `submission`. `existing` maps an entry's `full_url` to the stored resource
/// it matched; `focus_id` is the id already reserved for the focal ServiceRequest.
pub fn plan(
    submission: Submission,
    existing: &HashMap<String, Existing>,
    focus_id: &str,
    last_updated: &str,
) -> Plan {
    let source_time = submission.source_time();
    let source_practice = submission.sender.stated_by();
    // Each entry's id, in entry order: reserved for the focus, the stored one for a match, shared
    // by entries of this submission with the same identifier, otherwise new.
    let mut by_identity: HashMap<(&str, &(String, String)), String> = HashMap::new();
    let mut assigned: Vec<(String, Option<&Existing>)> =
        Vec::with_capacity(submission.entries.len());
    for e in &submission.entries {
        let this = if e.full_url == submission.focus {
            (focus_id.to_string(), None)
        } else if let Some(found) = existing.get(&e.full_url) {
            (found.id.clone(), Some(found))
        } else if let Some(id) = e
            .match_identifier
            .as_ref()
            .and_then(|m| by_identity.get(&(e.resource_type.as_str(), m)))
        {
            (id.clone(), None)
        } else {
            (Uuid::now_v7().to_string(), None)
        };
        if let Some(m) = &e.match_identifier {
            by_identity
                .entry((e.resource_type.as_str(), m))
                .or_insert_with(|| this.0.clone());
        }
        assigned.push(this);
    }
    let targets: HashMap<String, String> = submission
        .entries
        .iter()
        .zip(&assigned)
        .map(|(e, (id, _))| (e.full_url.clone(), format!("{}/{id}", e.resource_type)))
        .collect();
    // A shared resource appearing twice in one submission is written once: the last one wins.
    let mut seen = std::collections::HashSet::new();
    let mut keep: Vec<bool> = submission
        .entries
        .iter()
        .zip(&assigned)
        .rev()
        .map(|(e, (id, _))| seen.insert((e.resource_type.as_str(), id.as_str())))
        .collect();
    keep.reverse();
    let mut members: Vec<(String, String)> = submission
        .entries
        .iter()
        .zip(&assigned)
        .map(|(e, (id, _))| (e.resource_type.clone(), id.clone()))
        .collect();
    members.sort();
    members.dedup();
    // The person is the subject the submission names, whatever the order of its entries or of
    // their ids.
    let patient_id = submission
        .entries
        .iter()
        .zip(&assigned)
        .find(|(e, _)| e.full_url == submission.subject && e.resource_type == "Patient")
        .map(|(_, (id, _))| id.clone());

    let mut patient_version = None;
    let writes: Vec<PlannedWrite> = submission
        .entries
        .into_iter()
        .zip(assigned)
        .zip(keep)
        .filter_map(|((e, (id, prior)), keep)| {
            if !keep {
                return None;
            }
            let is_patient = e.resource_type == "Patient";
            let is_subject = is_patient && patient_id.as_ref() == Some(&id);
            // What the gateway states from its configuration is its own, not the sender's.
            let stated_by = if is_service_organization(&e.resource) {
                String::new()
            } else {
                source_practice.clone()
            };
            if let Some(prior) = prior {
                // A shared record other than the person is the statement of whoever may speak
                // for it; anyone else's submission points at it as stored.
                if !is_patient && !restates(&e, prior, &source_practice) {
                    return None;
                }
                // What a fit note says of the person does not replace what its own practice
                // stated in a referral; another practice's statement is a version of its own.
                if e.keep_existing && (!is_patient || prior.source_practice == source_practice) {
                    if is_subject {
                        patient_version = Some(prior.version_id);
                    }
                    return None;
                }
                // Details authored before the stored ones (a referral arriving late) do not
                // overwrite them; the new referral still points at the shared resource. A
                // person's details another sender stated are never taken for this sender's:
                // its statement becomes a version of its own, which its parties are shown.
                if source_time < prior.source_time
                    && (!is_patient || prior.source_practice == source_practice)
                {
                    if is_subject {
                        patient_version = Some(prior.version_id);
                    }
                    return None;
                }
            }
            let mut content = e.resource;
            rewrite_references(&mut content, &targets);
            if let Some(prior) = prior {
                // Unchanged (the same practice, clinician or person details again): no new version.
                stamp(&mut content, &id, prior.version_id, &prior.last_updated);
                if serde_json::to_string(&content).is_ok_and(|text| text == prior.content) {
                    if is_subject {
                        patient_version = Some(prior.version_id);
                    }
                    return None;
                }
            }
            let version_id = prior.map_or(1, |p| p.version_id + 1);
            if is_subject {
                patient_version = Some(version_id);
            }
            stamp(&mut content, &id, version_id, last_updated);
            let index = index_entries(&content);
            Some(PlannedWrite {
                source_time: source_time.clone(),
                source_practice: stated_by,
                resource_type: e.resource_type,
                id,
                version_id,
                replaces: prior.is_some(),
                content,
                index,
                identity: if prior.is_none() {
                    e.match_identifier
                } else {
                    None
                },
            })
        })
        .collect();
    Plan {
        writes,
        members,
        patient_id,
        ids: targets,
        patient_version,
    }
}

/// Whether a submission from `sender` (`system|value` of its practice) replaces the stored
/// version of a shared record that is not a person (a person's statements are versions of their
/// own): the gateway restates its configured services' Organizations, from its configuration;
/// a sender restates its own Organization and the records it stated itself. Nothing another
/// sender or the gateway stated is replaced, so no sender can rename another practice, a
/// clinician another practice registered, or a service, on the referrals others sent.
fn restates(entry: &SubmissionEntry, prior: &Existing, sender: &str) -> bool {
    if is_service_organization(&entry.resource) {
        return true;
    }
    let prior_is_service = serde_json::from_str::<Value>(&prior.content)
        .is_ok_and(|stored| is_service_organization(&stored));
    if prior_is_service {
        return false;
    }
    is_own_organization(entry, sender) || prior.source_practice == sender
}

/// Whether `entry` is the sender's own Organization: matched by the ODS code the sender is.
fn is_own_organization(entry: &SubmissionEntry, sender: &str) -> bool {
    entry.resource_type == "Organization"
        && entry
            .match_identifier
            .as_ref()
            .is_some_and(|(system, value)| {
                system == systems::ODS_ORGANIZATION
                    && sender.split_once('|') == Some((system.as_str(), value.as_str()))
            })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intake::{SubmissionEntry, SubmissionKey};
    use serde_json::json;

    fn entry(url: &str, rt: &str, resource: Value, m: Option<(&str, &str)>) -> SubmissionEntry {
        SubmissionEntry {
            full_url: url.into(),
            resource_type: rt.into(),
            resource,
            match_identifier: m.map(|(a, b)| (a.into(), b.into())),
            keep_existing: false,
        }
    }

    fn submission() -> Submission {
        Submission {
            key: SubmissionKey {
                namespace: "n".into(),
                value: "k".into(),
            },
            sender: crate::intake::Sender::Organisation {
                role: crate::caller::Role::Practice,
                organisation: "ods|A1".into(),
            },
            kind: crate::intake::SubmissionKind::Referral {
                service: "svc|s".into(),
            },
            content_hash: "h".into(),
            entries: vec![
                entry(
                    "urn:uuid:p",
                    "Patient",
                    json!({"resourceType": "Patient"}),
                    Some(("nhs", "1")),
                ),
                entry(
                    "urn:uuid:o",
                    "Organization",
                    json!({"resourceType": "Organization"}),
                    Some(("ods", "A")),
                ),
                entry(
                    "urn:uuid:s",
                    "ServiceRequest",
                    json!({"resourceType": "ServiceRequest", "authoredOn": "2026-03-02T09:40:00+01:00", "subject": {"reference": "urn:uuid:p"}, "performer": [{"reference": "urn:uuid:o"}]}),
                    None,
                ),
            ],
            focus: "urn:uuid:s".into(),
            subject: "urn:uuid:p".into(),
        }
    }

    fn stored(id: &str, version_id: i64, content: &str, source_practice: &str) -> Existing {
        Existing {
            id: id.into(),
            version_id,
            last_updated: "t".into(),
            content: content.into(),
            source_time: "2022-01-01T00:00:00.000000Z".into(),
            source_practice: source_practice.into(),
        }
    }

    #[test]
    fn new_resources_get_fresh_ids_and_references_point_at_them() {
        let writes = plan_writes(
            submission(),
            &HashMap::new(),
            "focus-1",
            "2026-01-01T00:00:00.000000Z",
        );
        assert_eq!(writes.len(), 3);
        let sr = writes
            .iter()
            .find(|w| w.resource_type == "ServiceRequest")
            .unwrap();
        let patient = writes
            .iter()
            .find(|w| w.resource_type == "Patient")
            .unwrap();
        assert_eq!(sr.id, "focus-1");
        assert_eq!(
            sr.content["subject"]["reference"],
            format!("Patient/{}", patient.id)
        );
        assert_eq!(sr.content["meta"]["versionId"], "1");
        assert_eq!(patient.identity, Some(("nhs".into(), "1".into())));
        assert!(!patient.replaces);
    }

    #[test]
    fn matched_resources_are_updated_in_place() {
        let existing = HashMap::from([(
            "urn:uuid:p".to_string(),
            Existing {
                id: "old".into(),
                version_id: 3,
                last_updated: "t0".into(),
                content: "{}".into(),
                source_time: String::new(),
                source_practice: String::new(),
            },
        )]);
        let writes = plan_writes(submission(), &existing, "f", "t");
        let patient = writes
            .iter()
            .find(|w| w.resource_type == "Patient")
            .unwrap();
        assert_eq!(
            (patient.id.as_str(), patient.version_id, patient.replaces),
            ("old", 4, true)
        );
        assert_eq!(
            patient.identity, None,
            "an existing identity is not registered again"
        );
        let sr = writes
            .iter()
            .find(|w| w.resource_type == "ServiceRequest")
            .unwrap();
        assert_eq!(sr.content["subject"]["reference"], "Patient/old");
    }

    #[test]
    fn unchanged_matched_resources_are_not_rewritten() {
        let s = submission();
        let first = plan_writes(s.clone(), &HashMap::new(), "f1", "t1");
        let patient = first.iter().find(|w| w.resource_type == "Patient").unwrap();
        let stored = Existing {
            id: patient.id.clone(),
            version_id: 1,
            last_updated: "t1".into(),
            content: serde_json::to_string(&patient.content).unwrap(),
            source_time: String::new(),
            source_practice: "ods|A1".into(),
        };
        let again = plan_writes(
            s.clone(),
            &HashMap::from([("urn:uuid:p".to_string(), stored.clone())]),
            "f2",
            "t2",
        );
        assert!(
            again.iter().all(|w| w.resource_type != "Patient"),
            "same details: no new version"
        );
        let sr = again
            .iter()
            .find(|w| w.resource_type == "ServiceRequest")
            .unwrap();
        assert_eq!(
            sr.content["subject"]["reference"],
            format!("Patient/{}", stored.id)
        );

        let mut changed = s.clone();
        changed.entries[0].resource["gender"] = json!("male");
        let writes = plan_writes(
            changed,
            &HashMap::from([("urn:uuid:p".to_string(), stored)]),
            "f3",
            "t3",
        );
        let p = writes
            .iter()
            .find(|w| w.resource_type == "Patient")
            .unwrap();
        assert_eq!((p.version_id, p.replaces), (2, true));
    }

    #[test]
    fn a_late_referral_does_not_overwrite_newer_details() {
        let s = submission();
        assert_eq!(s.source_time(), "2026-03-02T08:40:00.000000Z");
        let stored = |source_time: &str| Existing {
            id: "p1".into(),
            version_id: 4,
            last_updated: "t".into(),
            content: "{}".into(),
            source_time: source_time.into(),
            source_practice: "ods|A1".into(),
        };
        let newer = HashMap::from([(
            "urn:uuid:p".to_string(),
            stored("2026-06-01T00:00:00.000000Z"),
        )]);
        let writes = plan_writes(s.clone(), &newer, "f", "t2");
        assert!(
            writes.iter().all(|w| w.resource_type != "Patient"),
            "stored details are newer: kept"
        );
        let sr = writes
            .iter()
            .find(|w| w.resource_type == "ServiceRequest")
            .unwrap();
        assert_eq!(sr.content["subject"]["reference"], "Patient/p1");

        let older = HashMap::from([(
            "urn:uuid:p".to_string(),
            stored("2022-01-01T00:00:00.000000Z"),
        )]);
        let writes = plan_writes(s, &older, "f", "t2");
        let p = writes
            .iter()
            .find(|w| w.resource_type == "Patient")
            .unwrap();
        assert_eq!(
            (p.version_id, p.source_time.as_str()),
            (5, "2026-03-02T08:40:00.000000Z")
        );
    }

    #[test]
    fn another_senders_details_never_stand_for_this_senders() {
        let s = submission();
        let theirs = Existing {
            id: "p1".into(),
            version_id: 4,
            last_updated: "t".into(),
            content: "{}".into(),
            source_time: "2026-06-01T00:00:00.000000Z".into(),
            source_practice: "ods|B2".into(),
        };
        // Newer details from another practice: this practice's statement is a version of its
        // own, and the submission is pinned to it.
        let planned = plan(
            s.clone(),
            &HashMap::from([("urn:uuid:p".to_string(), theirs.clone())]),
            "f",
            "t2",
        );
        let p = planned
            .writes
            .iter()
            .find(|w| w.resource_type == "Patient")
            .unwrap();
        assert_eq!((p.version_id, p.source_practice.as_str()), (5, "ods|A1"));
        assert_eq!(planned.patient_version, Some(5));
        // The same details again from the same practice: pinned to the stored version.
        let mine = Existing {
            source_practice: "ods|A1".into(),
            ..theirs
        };
        let planned = plan(
            s,
            &HashMap::from([("urn:uuid:p".to_string(), mine)]),
            "f",
            "t2",
        );
        assert!(planned.writes.iter().all(|w| w.resource_type != "Patient"));
        assert_eq!(planned.patient_version, Some(4));
    }

    #[test]
    fn duplicates_within_a_submission_become_one_resource() {
        let mut s = submission();
        s.entries.insert(
            1,
            entry(
                "urn:uuid:p2",
                "Patient",
                json!({"resourceType": "Patient", "gender": "female"}),
                Some(("nhs", "1")),
            ),
        );
        let writes = plan_writes(s.clone(), &HashMap::new(), "f", "t");
        let patients: Vec<_> = writes
            .iter()
            .filter(|w| w.resource_type == "Patient")
            .collect();
        assert_eq!(patients.len(), 1);
        assert_eq!(
            patients[0].content["gender"], "female",
            "the last duplicate wins"
        );
    }

    #[test]
    fn the_person_is_the_subject_whatever_the_entry_order() {
        // The subject matched a stored person another practice stated; a second, new person is
        // written last. The submission is about the subject, pinned to its own statement of them.
        let mut s = submission();
        s.entries.push(entry(
            "urn:uuid:q",
            "Patient",
            json!({"resourceType": "Patient", "gender": "male"}),
            Some(("nhs", "2")),
        ));
        let theirs = stored("p1", 4, "{}", "ods|B2");
        let planned = plan(
            s,
            &HashMap::from([("urn:uuid:p".to_string(), theirs)]),
            "f",
            "t2",
        );
        assert_eq!(planned.patient_id.as_deref(), Some("p1"));
        assert_eq!(planned.patient_version, Some(5));
    }

    #[test]
    fn a_submission_whose_subject_is_no_patient_entry_has_no_person() {
        let mut s = submission();
        s.subject = "urn:uuid:o".into();
        assert_eq!(plan(s, &HashMap::new(), "f", "t").patient_id, None);
    }

    /// Plans `s` with its Organization entry matched to `org`, and tells whether it restated it.
    fn restated(s: Submission, org: Existing) -> bool {
        let writes = plan_writes(
            s,
            &HashMap::from([("urn:uuid:o".to_string(), org)]),
            "f",
            "t",
        );
        writes.iter().any(|w| w.resource_type == "Organization")
    }

    #[test]
    fn a_sender_restates_only_its_own_organization_and_what_it_stated() {
        let own = |s: &mut Submission| {
            s.entries[1].match_identifier = Some((systems::ODS_ORGANIZATION.into(), "A1".into()));
            s.sender = crate::intake::Sender::practice("A1");
        };
        // Another practice's Organization, stated by that practice: reused as stored.
        assert!(!restated(submission(), stored("o1", 1, "{}", "ods|B2")));
        // One this sender stated itself: its own to restate.
        assert!(restated(submission(), stored("o1", 1, "{}", "ods|A1")));
        // Its own Organization, whoever stated it before.
        let mut s = submission();
        own(&mut s);
        assert!(restated(s, stored("o1", 1, "{}", "ods|B2")));
        // A configured service's Organization, never by a sender, not even one named like it.
        let service = json!({"resourceType": "Organization", "identifier": [{"system": systems::service_identifier_system(), "value": "svc"}]}).to_string();
        let mut s = submission();
        own(&mut s);
        assert!(!restated(s, stored("o1", 1, &service, "ods|A1")));
    }

    #[test]
    fn the_gateway_states_its_services_organizations() {
        let mut s = submission();
        s.entries[1].resource = json!({"resourceType": "Organization", "name": "From configuration", "identifier": [{"system": systems::service_identifier_system(), "value": "svc"}]});
        let writes = plan_writes(
            s,
            &HashMap::from([("urn:uuid:o".to_string(), stored("o1", 1, "{}", "ods|B2"))]),
            "f",
            "t",
        );
        let org = writes
            .iter()
            .find(|w| w.resource_type == "Organization")
            .expect("restated from configuration");
        assert_eq!((org.version_id, org.source_practice.as_str()), (2, ""));
    }
}
