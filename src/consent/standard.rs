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
    /// The practices that may be named as the referring practice: each ODS code, with the
    /// references by which a message names it.
    pub referring: &'a [(String, Vec<String>)],
}

/// What one identifier or reference of an actor names, to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named<'a> {
    Service(&'a Service),
    Practice(String),
    /// An organisation identified the gateway cannot place (`system|value`).
    Unplaced(String),
}

impl Named<'_> {
    fn class_and_identifier(&self) -> (RecipientClass, Value) {
        match self {
            Named::Service(s) => (
                RecipientClass::WorkHealthService,
                json!({ "system": systems::service_identifier_system(), "value": s.id }),
            ),
            Named::Practice(ods) => (
                RecipientClass::ReferringPractice,
                json!({ "system": systems::ODS_ORGANIZATION, "value": ods }),
            ),
            Named::Unplaced(id) => {
                let (system, value) = id.split_once('|').unwrap_or(("", id));
                (
                    RecipientClass::OtherService,
                    json!({ "system": system, "value": value }),
                )
            }
        }
    }
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
    translate_collecting(consent, path, parties, resolve, issues);
}

/// [`translate`], returning the paths of the actors it placed or tried to.
fn translate_collecting(
    consent: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
    issues: &mut Issues,
) -> Vec<String> {
    let mut in_standard_terms = Vec::new();
    if let Some(provision) = consent.get_mut("provision") {
        translate_provision(
            provision,
            &format!("{path}.provision"),
            parties,
            resolve,
            issues,
            &mut in_standard_terms,
        );
    }
    in_standard_terms
}

/// [`translate`]s `consent` and reads it into the model, with every problem once, each at its
/// path from `path`. When it cannot be read, the problems are those of the Consent as sent
/// (whose paths the sender knows; placing may add actors), less the class the actors in
/// standard terms lack.
pub fn translate_and_read(
    consent: &mut Value,
    path: &str,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
) -> Result<ConsentRecord, Issues> {
    let sent = consent.clone();
    let mut issues = Issues::new();
    let in_standard_terms = translate_collecting(consent, path, parties, resolve, &mut issues);
    if issues.is_empty()
        && let Ok(record) = read_consent(consent)
    {
        return Ok(record);
    }
    let found = match read_consent(&sent) {
        Ok(_) => Issues::new(),
        Err(found) => found.rebased("Consent", path),
    };
    for issue in found.into_vec() {
        let about_placed = issue.expression.as_deref().is_some_and(|e| {
            in_standard_terms.iter().any(|actor| {
                e.strip_prefix(actor.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            })
        });
        if !about_placed {
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
    in_standard_terms: &mut Vec<String>,
) {
    let deny = provision["type"] == "deny";
    if let Some(actors) = provision.get_mut("actor").and_then(Value::as_array_mut) {
        let mut out = Vec::with_capacity(actors.len());
        for (i, actor) in actors.iter().enumerate() {
            if !needs_placing(actor) {
                out.push(actor.clone());
                continue;
            }
            let at = format!("{path}.actor[{i}]");
            match placed(actor, deny, parties, resolve) {
                Ok(placed) => out.extend(placed),
                Err(why) => {
                    issues.error(IssueType::CodeInvalid, format!("{at}.reference"), why);
                    out.push(actor.clone());
                }
            }
            in_standard_terms.push(at);
        }
        *actors = out;
    }
    if let Some(children) = provision.get_mut("provision").and_then(Value::as_array_mut) {
        for (i, child) in children.iter_mut().enumerate() {
            translate_provision(
                child,
                &format!("{path}.provision[{i}]"),
                parties,
                resolve,
                issues,
                in_standard_terms,
            );
        }
    }
}

/// Everything an actor in standard terms names: the parties its literal reference is known as
/// (the message's receiver, its sender) and those its identifiers name (its own, and those of
/// the entry it references). Identifiers of other systems (a local id) name nothing.
fn named_by<'p>(
    actor: &Value,
    parties: &Parties<'p>,
    resolve: &dyn Fn(&str) -> Option<Value>,
) -> (Vec<Named<'p>>, bool) {
    let reference = &actor["reference"];
    let literal = reference["reference"].as_str();
    let mut named = Vec::new();
    if let Some(r) = literal {
        if let Some((service, refs)) = parties.receiving
            && refs.iter().any(|x| x == r)
        {
            named.push(Named::Service(service));
        }
        for (ods, refs) in parties.referring {
            if refs.iter().any(|x| x == r) {
                named.push(Named::Practice(ods.clone()));
            }
        }
    }
    let resolved = literal.and_then(resolve);
    let listed = resolved
        .as_ref()
        .and_then(|r| r["identifier"].as_array().cloned())
        .unwrap_or_default();
    for id in std::iter::once(&reference["identifier"]).chain(listed.iter()) {
        let (Some(system), Some(value)) = (id["system"].as_str(), id["value"].as_str()) else {
            continue;
        };
        let is_ods = matches!(
            system,
            systems::ODS_ORGANIZATION | systems::ODS_ORGANIZATION_LOWERCASE
        );
        let is_service_id = system == systems::service_identifier_system();
        if !is_ods && !is_service_id {
            continue;
        }
        let service = parties.services.iter().find(|s| {
            (is_service_id && s.id == value) || (is_ods && s.ods_code.as_deref() == Some(value))
        });
        named.push(match service {
            Some(s) => Named::Service(s),
            None if is_ods && parties.referring.iter().any(|(ods, _)| ods == value) => {
                Named::Practice(value.to_string())
            }
            None => Named::Unplaced(format!("{system}|{value}")),
        });
    }
    named.dedup_by(|a, b| a == b);
    let mut distinct: Vec<Named<'p>> = Vec::new();
    for n in named {
        if !distinct.contains(&n) {
            distinct.push(n);
        }
    }
    let unresolved_literal = literal.is_some() && resolved.is_none();
    (distinct, unresolved_literal)
}

/// Why an actor cannot be placed, for its issue.
fn unplaced_reason(named: &[Named<'_>], unresolved_literal: bool) -> String {
    let what = match named.iter().find(|n| matches!(n, Named::Unplaced(_))) {
        Some(Named::Unplaced(id)) => format!("the organisation {id}"),
        _ if unresolved_literal => {
            "an organisation by a reference the gateway cannot follow".to_string()
        }
        _ => "an organisation with no ODS code or service id".to_string(),
    };
    format!(
        "this actor is an information recipient, {what}, which is neither a service this \
         gateway receives for nor the referring practice: it could be an employer, another \
         service or a union, and what the person allows each differs. Name it by ODS code or \
         service id if it is one of those, or add its class from {} ({}) to actor.role",
        RecipientClass::system(),
        super::model::codes_of::<RecipientClass>()
    )
}

/// An actor in standard terms, placed: the actors to store in its stead, or why it cannot be.
/// Under a deny, an organisation the gateway cannot place is denied as every class (it is
/// one of them, whichever it is, and a wider refusal only withholds more), so a person's
/// refusal never blocks their referral.
fn placed(
    actor: &Value,
    deny: bool,
    parties: &Parties<'_>,
    resolve: &dyn Fn(&str) -> Option<Value>,
) -> Result<Vec<Value>, String> {
    let (named, unresolved_literal) = named_by(actor, parties, resolve);
    let with = |class: RecipientClass, identifier: Value| {
        let mut out = actor.clone();
        if let Some(codings) = out["role"]["coding"].as_array_mut() {
            codings.push(class.coding());
        }
        out["reference"]["identifier"] = identifier;
        out
    };
    let unplaced = named.iter().any(|n| matches!(n, Named::Unplaced(_)));
    match named.as_slice() {
        [one] if !unplaced => {
            let (class, identifier) = one.class_and_identifier();
            Ok(vec![with(class, identifier)])
        }
        _ if deny && !named.is_empty() => Ok(named
            .iter()
            .flat_map(|n| {
                let (_, identifier) = n.class_and_identifier();
                RecipientClass::ALL
                    .iter()
                    .map(move |c| (*c, identifier.clone()))
            })
            .map(|(class, identifier)| with(class, identifier))
            .collect()),
        [] => Err(unplaced_reason(&named, unresolved_literal)),
        _ if unplaced => Err(unplaced_reason(&named, unresolved_literal)),
        _ => Err(format!(
            "this actor names more than one organisation ({}): name the one recipient by its reference or identifier, not both differently",
            named
                .iter()
                .map(|n| {
                    let (_, id) = n.class_and_identifier();
                    crate::fhir::identifiers::system_value(&id)
                })
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// Whether an actor is in standard terms only: an information recipient without a class.
fn needs_placing(actor: &Value) -> bool {
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
    is_recipient && !has_class
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
            commissioners: Vec::new(),
            duty_contact: None,
            public_contact: None,
            referral_routes: vec!["gp".into()],
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
            referring: &[],
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
        let referring = [("C88901".to_string(), vec!["urn:uuid:gp".to_string()])];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: &referring,
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
            referring: &[],
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
        let referring = [("C88901".to_string(), vec!["urn:uuid:gp".to_string()])];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: &referring,
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
            referring: &[],
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

    /// From review: a reference that is the message's receiver, or the sender, counts only when
    /// every ODS code or service id the actor and its entry carry names the same party; and an
    /// actor's own identifier never gives way to its reference.
    #[test]
    fn a_reference_and_identifiers_naming_different_parties_are_refused() {
        let services = [service("whs", Some("RHQ01"))];
        let receiver = vec!["urn:uuid:r".to_string()];
        let referring = [("C88901".to_string(), vec!["urn:uuid:gp".to_string()])];
        let parties = Parties {
            services: &services,
            receiving: Some((&services[0], &receiver)),
            referring: &referring,
        };
        let ods = |v: &str| json!({ "system": systems::ODS_ORGANIZATION, "value": v });
        for (reference, entries) in [
            // The receiver, but the actor says it is an employer's ODS code.
            (
                json!({ "reference": "urn:uuid:r", "identifier": ods("Y01234") }),
                vec![],
            ),
            // The receiver entry itself carries another organisation's code.
            (
                json!({ "reference": "urn:uuid:r" }),
                vec![(
                    "urn:uuid:r",
                    json!({ "resourceType": "Organization", "identifier": [ods("Y01234")] }),
                )],
            ),
            // The sender, named as the service.
            (
                json!({ "reference": "urn:uuid:gp", "identifier": ods("RHQ01") }),
                vec![],
            ),
            // An entry whose codes name an employer first and the service second.
            (
                json!({ "reference": "urn:uuid:o" }),
                vec![(
                    "urn:uuid:o",
                    json!({ "resourceType": "Organization", "identifier": [ods("Y01234"), ods("RHQ01")] }),
                )],
            ),
        ] {
            let mut c = standard_opt_in(reference.clone());
            let issues = run(&mut c, &parties, &entries);
            assert_eq!(issues.len(), 1, "{reference}: {issues:?}");
        }
        // Agreeing ones are placed.
        let mut c =
            standard_opt_in(json!({ "reference": "urn:uuid:r", "identifier": ods("RHQ01") }));
        assert!(run(&mut c, &parties, &[]).is_empty());
        assert_eq!(actor_class(&c).unwrap().0, "work-health-service");
    }

    /// From review: a refusal in standard terms of an organisation the gateway cannot place is
    /// kept as a refusal to that organisation as every class, so it never blocks the referral.
    #[test]
    fn a_refusal_of_an_organisation_it_cannot_place_is_kept_for_every_class() {
        let services = [service("whs", None)];
        let parties = Parties {
            services: &services,
            receiving: None,
            referring: &[],
        };
        let mut c = standard_opt_in(
            json!({ "identifier": { "system": systems::ODS_ORGANIZATION, "value": "Y01234" } }),
        );
        c["provision"]["type"] = json!("deny");
        assert!(run(&mut c, &parties, &[]).is_empty());
        let actors = c["provision"]["actor"].as_array().unwrap();
        assert_eq!(actors.len(), RecipientClass::ALL.len());
        let record = crate::consent::read_consent(&c).unwrap();
        assert!(
            record
                .provision
                .actors
                .iter()
                .all(|a| a.organisation.as_deref()
                    == Some(&*format!("{}|Y01234", systems::ODS_ORGANIZATION)))
        );
        // Without any identifier there is nothing to refuse by: still refused as unclear.
        let mut c = standard_opt_in(json!({ "display": "my employer" }));
        c["provision"]["type"] = json!("deny");
        assert_eq!(run(&mut c, &parties, &[]).len(), 1);
    }
}
