//! Consents written in standard FHIR terms, read into the gateway's.
//!
//! The gateway's consent model names recipients by class (`consent-recipient`): the referring
//! practice, the work-and-health service, an employer, and so on. Other systems record the same
//! agreement in R4's own terms: an actor whose `role` is v3 `ParticipationType` `IRCP`
//! (information recipient) or `PRCP` (primary information recipient) and whose `reference` names
//! the organisation. Such an actor is translated by adding the gateway's class beside the
//! sender's coding (both are kept, as a CodeableConcept allows), once it is clear which class the
//! organisation is:
//!
//! | the actor's organisation                                       | recipient class        |
//! |----------------------------------------------------------------|------------------------|
//! | the Organization the message is addressed to (its `destination.receiver`, or the referral's `performer`) | `work-health-service`, that service |
//! | a configured service, by the gateway's service id or its ODS code | `work-health-service`, that service |
//! | the message's sender, or the recording practice, by reference or ODS code | `referring-practice` |
//!
//! Anything else is refused as ambiguous, saying why: an ODS code the gateway does not know could
//! be an employer, another service or a union, and what a person allows each differs. Actors with
//! any other role are left to the model, which refuses them unless they carry a class.
//!
//! Actions (`consentaction`) and purposes (v3 `ActReason` `TREAT`, `HRESCH`) are already
//! standard terms.

use serde_json::{Value, json};

use crate::fhir::outcome::{IssueType, Issues};
use crate::fhir::systems;
use crate::services::Service;

use super::model::{Code, ConsentRecord, RecipientClass, read_consent};

/// v3 ParticipationType, whose `IRCP` and `PRCP` name who information goes to.
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// The recipient roles of [`PARTICIPATION_TYPE`]: information recipient, primary information
/// recipient.
const RECIPIENT_ROLES: [&str; 2] = ["IRCP", "PRCP"];

/// Who the organisations a Consent may name are, where it was recorded.
#[derive(Debug, Clone, Copy)]
pub struct Parties<'a> {
    /// Every configured service.
    pub services: &'a [Service],
    /// The service a message is addressed to, and the references (`fullUrl`s) by which the
    /// message names its Organization.
    pub receiving: Option<(&'a Service, &'a [String])>,
    /// The ODS code of the practice that sent or records the Consent, and the references by
    /// which a message names it.
    pub referring: Option<(&'a str, &'a [String])>,
}

/// Adds the gateway's recipient class to every actor of `consent` (at FHIRPath `path`, e.g.
/// `Consent` or `Bundle.entry[3].resource`) named in standard terms, with the organisation's
/// identifier. `resolve` finds the resource a literal reference names (a message's entries);
/// it may find nothing. Every actor that cannot be translated is reported.
pub fn translate(
    consent: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
    issues: &mut Issues,
) {
    if let Some(provision) = consent.get_mut("provision") {
        translate_provision(
            provision,
            &format!("{path}.provision"),
            parties,
            resolve,
            issues,
        );
    }
}

/// [`translate`]s `consent` and reads it into the model, with every problem once, each at its
/// path from `path` (an actor that could not be placed is reported for that, not again for
/// lacking a class).
pub fn translate_and_read(
    consent: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
) -> Result<ConsentRecord, Issues> {
    let mut issues = Issues::new();
    translate(consent, path, parties, resolve, &mut issues);
    let found = match read_consent(consent) {
        Ok(record) => return issues.into_result(record),
        Err(found) => found.rebased("Consent", path),
    };
    let unplaced: Vec<String> = issues
        .iter()
        .filter_map(|i| i.expression.as_deref()?.strip_suffix(".reference"))
        .map(str::to_string)
        .collect();
    for issue in found.into_vec() {
        let about_unplaced = issue.expression.as_deref().is_some_and(|e| {
            unplaced.iter().any(|actor| {
                e.strip_prefix(actor.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        });
        if !about_unplaced {
            issues.push(issue);
        }
    }
    Err(issues)
}

fn translate_provision(
    provision: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
    issues: &mut Issues,
) {
    if let Some(actors) = provision.get_mut("actor").and_then(Value::as_array_mut) {
        for (i, actor) in actors.iter_mut().enumerate() {
            translate_actor(
                actor,
                &format!("{path}.actor[{i}]"),
                parties,
                resolve,
                issues,
            );
        }
    }
    if let Some(children) = provision.get_mut("provision").and_then(Value::as_array_mut) {
        for (i, child) in children.iter_mut().enumerate() {
            translate_provision(
                child,
                &format!("{path}.provision[{i}]"),
                parties,
                resolve,
                issues,
            );
        }
    }
}

/// What an actor in standard terms is to the gateway: its class and the identifier it is known
/// by, or why that cannot be told.
fn classify(
    actor: &Value,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
) -> Result<(RecipientClass, Value), String> {
    let reference = &actor["reference"];
    let literal = reference["reference"].as_str();
    let service_id =
        |s: &Service| json!({ "system": systems::service_identifier_system(), "value": s.id });
    let practice_id = |ods: &str| json!({ "system": systems::ODS_ORGANIZATION, "value": ods });
    if let Some(r) = literal {
        if let Some((service, refs)) = parties.receiving
            && refs.iter().any(|x| x == r)
        {
            return Ok((RecipientClass::WorkHealthService, service_id(service)));
        }
        if let Some((ods, refs)) = parties.referring
            && refs.iter().any(|x| x == r)
        {
            return Ok((RecipientClass::ReferringPractice, practice_id(ods)));
        }
    }
    let mut identifiers: Vec<(String, String)> = Vec::new();
    let mut add = |id: &Value| {
        if let (Some(system), Some(value)) = (id["system"].as_str(), id["value"].as_str()) {
            identifiers.push((system.to_string(), value.to_string()));
        }
    };
    add(&reference["identifier"]);
    let resolved = literal.and_then(resolve);
    if let Some(ids) = resolved.as_ref().and_then(|r| r["identifier"].as_array()) {
        ids.iter().for_each(&mut add);
    }
    for (system, value) in &identifiers {
        let is_ods = matches!(
            system.as_str(),
            systems::ODS_ORGANIZATION | systems::ODS_ORGANIZATION_LOWERCASE
        );
        let service = parties.services.iter().find(|s| {
            (*system == systems::service_identifier_system() && s.id == *value)
                || (is_ods && s.ods_code.as_deref() == Some(value.as_str()))
        });
        if let Some(service) = service {
            return Ok((RecipientClass::WorkHealthService, service_id(service)));
        }
        if is_ods && parties.referring.is_some_and(|(ods, _)| ods == value) {
            return Ok((RecipientClass::ReferringPractice, practice_id(value)));
        }
    }
    let named = match identifiers.first() {
        Some((system, value)) => format!("the organisation {system}|{value}"),
        None if literal.is_some() && resolved.is_none() && parties.receiving.is_none() => {
            "an organisation by a local reference".to_string()
        }
        None => "an organisation with no identifier".to_string(),
    };
    Err(format!(
        "this actor is an information recipient, {named}, which is neither a service this \
         gateway receives for nor the referring practice: it could be an employer, another \
         service or a union, and what the person allows each differs. Name it by ODS code or \
         service id if it is one of those, or add its class from {} ({}) to actor.role",
        RecipientClass::system(),
        super::model::codes_of::<RecipientClass>()
    ))
}

fn translate_actor(
    actor: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
    issues: &mut Issues,
) {
    let codings = actor["role"]["coding"].as_array();
    let has_class = codings.is_some_and(|cs| {
        cs.iter()
            .any(|c| c["system"].as_str() == Some(RecipientClass::system().as_str()))
    });
    let is_recipient = codings.is_some_and(|cs| {
        cs.iter().any(|c| {
            c["system"] == PARTICIPATION_TYPE
                && c["code"]
                    .as_str()
                    .is_some_and(|code| RECIPIENT_ROLES.contains(&code))
        })
    });
    if has_class || !is_recipient {
        return;
    }
    match classify(actor, parties, resolve) {
        Ok((class, identifier)) => {
            if let Some(codings) = actor["role"]["coding"].as_array_mut() {
                codings.push(class.coding());
            }
            actor["reference"]["identifier"] = identifier;
        }
        Err(why) => issues.error(IssueType::CodeInvalid, format!("{path}.reference"), why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(id: &str, ods: Option<&str>) -> Service {
        Service {
            id: id.into(),
            name: id.into(),
            ods_code: ods.map(str::to_string),
            bars_endpoint: None,
            prompts: vec![],
            eligibility: None,
        }
    }

    /// The opt-in an independent review sent: permit, IRCP referencing the receiving
    /// Organization, disclose, TREAT (R4 Consent, http://hl7.org/fhir/R4/consent.html; IRCP from
    /// http://terminology.hl7.org/CodeSystem/v3-ParticipationType, "information recipient").
    fn standard_opt_in(reference: Value) -> Value {
        json!({
            "resourceType": "Consent",
            "status": "active",
            "provision": {
                "type": "permit",
                "actor": [{
                    "role": { "coding": [{ "system": PARTICIPATION_TYPE, "code": "IRCP" }] },
                    "reference": reference
                }],
                "action": [{ "coding": [{ "system": systems::CONSENT_ACTION, "code": "disclose" }] }],
                "purpose": [{ "system": systems::V3_ACT_REASON, "code": "TREAT" }]
            }
        })
    }

    fn run(consent: &mut Value, parties: &Parties<'_>, entries: &[(&str, Value)]) -> Issues {
        let mut issues = Issues::new();
        let resolve = |r: &str| {
            entries
                .iter()
                .find(|(url, _)| *url == r)
                .map(|(_, v)| v.clone())
        };
        translate(consent, "Consent", parties, &resolve, &mut issues);
        issues
    }

    fn actor_class(consent: &Value) -> Option<(String, String)> {
        let actor = &consent["provision"]["actor"][0];
        let class = actor["role"]["coding"]
            .as_array()?
            .iter()
            .find(|c| c["system"] == RecipientClass::system().as_str())?["code"]
            .as_str()?
            .to_string();
        let id = &actor["reference"]["identifier"];
        Some((
            class,
            format!("{}|{}", id["system"].as_str()?, id["value"].as_str()?),
        ))
    }

    #[test]
    fn the_receiving_organization_by_reference_is_the_addressed_service() {
        let services = [service("whs", None), service("workwell", None)];
        let receiver = vec!["urn:uuid:r".to_string()];
        let parties = Parties {
            services: &services,
            receiving: Some((&services[1], &receiver)),
            referring: None,
        };
        let mut c = standard_opt_in(json!({ "reference": "urn:uuid:r" }));
        assert!(run(&mut c, &parties, &[]).is_empty());
        assert_eq!(
            actor_class(&c),
            Some((
                "work-health-service".into(),
                format!("{}|workwell", systems::service_identifier_system())
            ))
        );
        // The sender's coding stays beside the gateway's.
        assert_eq!(
            c["provision"]["actor"][0]["role"]["coding"][0]["code"],
            "IRCP"
        );
        // And the model now reads it.
        let record = crate::consent::read_consent(&c).unwrap();
        assert_eq!(
            record.provision.actors[0].class,
            RecipientClass::WorkHealthService
        );
    }

    #[test]
    fn a_service_by_its_ods_code_or_id_and_the_practice_by_its_ods_code() {
        let services = [service("whs", Some("RHQ01"))];
        let sender = vec!["urn:uuid:gp".to_string()];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: Some(("C88901", &sender)),
        };
        let ods =
            |v: &str| json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": v } });
        for (reference, class, id) in [
            (
                ods("RHQ01"),
                "work-health-service",
                format!("{}|whs", systems::service_identifier_system()),
            ),
            (
                json!({ "identifier": { "system": systems::service_identifier_system(), "value": "whs" } }),
                "work-health-service",
                format!("{}|whs", systems::service_identifier_system()),
            ),
            (
                ods("C88901"),
                "referring-practice",
                format!("{}|C88901", systems::ODS_ORGANIZATION),
            ),
            (
                json!({ "reference": "urn:uuid:gp" }),
                "referring-practice",
                format!("{}|C88901", systems::ODS_ORGANIZATION),
            ),
        ] {
            let mut c = standard_opt_in(reference.clone());
            assert!(run(&mut c, &parties, &[]).is_empty(), "{reference}");
            assert_eq!(
                actor_class(&c),
                Some((class.to_string(), id)),
                "{reference}"
            );
        }
    }

    #[test]
    fn an_entry_is_known_by_the_identifiers_it_carries() {
        let services = [service("whs", Some("RHQ01"))];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: None,
        };
        let org = json!({ "resourceType": "Organization", "identifier": [
            { "system": "https://example.org/local", "value": "x" },
            { "system": systems::ODS_ORGANIZATION_LOWERCASE, "value": "RHQ01" }
        ]});
        let mut c = standard_opt_in(json!({ "reference": "urn:uuid:o" }));
        assert!(run(&mut c, &parties, &[("urn:uuid:o", org)]).is_empty());
        assert_eq!(actor_class(&c).unwrap().0, "work-health-service");
    }

    #[test]
    fn an_organisation_it_cannot_place_is_refused_saying_why() {
        let services = [service("whs", None)];
        let sender = vec!["urn:uuid:gp".to_string()];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: Some(("C88901", &sender)),
        };
        // An ODS code of an organisation that is neither the service nor the practice (an
        // employer's occupational health team, say), an entry without identifiers, a reference
        // to nothing the gateway can see, and a bare display.
        let employer = json!({ "resourceType": "Organization", "name": "Acme Ltd" });
        for reference in [
            json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "Y01234" } }),
            json!({ "reference": "urn:uuid:acme" }),
            json!({ "reference": "Organization/123" }),
            json!({ "display": "my employer" }),
        ] {
            let mut c = standard_opt_in(reference.clone());
            let before = c.clone();
            let issues = run(&mut c, &parties, &[("urn:uuid:acme", employer.clone())]);
            let issue = issues.iter().next().expect("refused");
            assert_eq!(
                issue.expression.as_deref(),
                Some("Consent.provision.actor[0].reference"),
                "{reference}"
            );
            assert!(
                issue.diagnostics.contains("could be an employer"),
                "{}",
                issue.diagnostics
            );
            assert_eq!(c, before, "nothing is changed when it cannot be read");
        }
    }

    #[test]
    fn actors_with_a_class_or_another_role_and_nested_provisions() {
        let services = [service("whs", Some("RHQ01"))];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: None,
        };
        let mut c = standard_opt_in(
            json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "RHQ01" } }),
        );
        // A custodian is not a recipient: left for the model to refuse.
        c["provision"]["actor"][0]["role"]["coding"][0]["code"] = json!("CST");
        let before = c.clone();
        assert!(run(&mut c, &parties, &[]).is_empty());
        assert_eq!(c, before);
        // An actor that already carries a class is the sender's own statement: untouched.
        let mut c = standard_opt_in(
            json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "Y01234" } }),
        );
        c["provision"]["actor"][0]["role"]["coding"]
            .as_array_mut()
            .unwrap()
            .push(RecipientClass::Employer.coding());
        let before = c.clone();
        assert!(run(&mut c, &parties, &[]).is_empty());
        assert_eq!(c, before);
        // A nested provision is translated, and reported at its own path.
        let mut c = json!({ "provision": { "type": "permit", "provision": [
            standard_opt_in(json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "RHQ01" } }))["provision"].clone(),
            standard_opt_in(json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "Y01234" } }))["provision"].clone(),
        ]}});
        let issues = run(&mut c, &parties, &[]);
        assert_eq!(
            issues
                .iter()
                .map(|i| i.expression.clone().unwrap())
                .collect::<Vec<_>>(),
            vec!["Consent.provision.provision[1].actor[0].reference"]
        );
        assert_eq!(
            c["provision"]["provision"][0]["actor"][0]["role"]["coding"][1]["code"],
            "work-health-service"
        );
    }
}
