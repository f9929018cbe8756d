#!/usr/bin/env python3
"""Writes the consent fixtures:

  fixtures/consent/valid/      Consents in the gateway's profile (also its published examples),
                               each accepted by POST /fhir/Consent
  fixtures/consent/invalid/    Consents the gateway refuses, with the expected OperationOutcome
  fixtures/consent/decisions/  Cases for the decision function: a person's Consents (and any
                               overrides), questions, and the expected answer to each

Consents refer to the person as Patient/example; the HTTP tests put in the real id.
Re-run after editing:  python3 tools/gen_consent_fixtures.py
"""
import copy
import json
import pathlib

from fixture_io import write, write_fixtures

BASE = "https://fhir.work-health-gateway.org"
ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "consent"
SERVICE = f"{BASE}/Id/service"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
WHS = {"system": SERVICE, "value": "sheffield-whs"}
WORKWELL = {"system": SERVICE, "value": "workwell-south-tyneside"}
PRACTICE = {"system": ODS, "value": "C88901"}
EMPLOYER = {"system": f"{BASE}/Id/employer", "value": "gatewise-security"}
OTHER_EMPLOYER = {"system": f"{BASE}/Id/employer", "value": "another-employer"}
IG = {"client": "information-governance:IG1", "organisation": f"{BASE}/Id/organisation|IG1"}
CLINICIAN = {"client": "service:sheffield-whs", "organisation": f"{SERVICE}|sheffield-whs"}


def override(id_, classes_, state, granted_at, expires_at, **extra):
    """An override as the overrides API shows it: requested by the service, granted by information
    governance (and, when `state` is ended, ended by a review)."""
    out = {"id": id_, "patient": "Patient/example", "recipient": "employer",
           "recipientOrganisation": f"{EMPLOYER['system']}|{EMPLOYER['value']}",
           "dataClasses": classes_, "reason": "risk-to-others",
           "justification": "Security guard with untreated sleep apnoea; falls asleep on night shifts operating gates.",
           "hours": 24, "requestedAt": "2026-06-15T08:30:00+01:00", "requestedBy": CLINICIAN,
           "state": state, "grantedAt": granted_at, "grantedBy": IG,
           "grantNote": "Risk to others outweighs the refusal; employer told of fitness for night shifts only.",
           "expiresAt": expires_at}
    out.update(extra)
    return out


def coding(cs, code):
    return {"system": f"{BASE}/CodeSystem/{cs}", "code": code}


def actor(recipient, identifier=None, display=None):
    ref = {}
    if identifier:
        ref["identifier"] = identifier
    if display:
        ref["display"] = display
    return {
        "role": {"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"},
            coding("consent-recipient", recipient),
        ]},
        "reference": ref,
    }


def actions(*codes):
    return [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": c}]} for c in codes]


def purpose(code):
    return [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code}]


def classes(*codes):
    return [coding("consent-data-class", c) for c in codes]


def consent(provision, status="active", scope="patient-privacy", recorded="2026-05-04T10:00:00+01:00"):
    return {
        "resourceType": "Consent",
        "meta": {"profile": [f"{BASE}/StructureDefinition/whg-consent"]},
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": {"reference": "Patient/example"},
        "dateTime": recorded,
        "performer": [{"reference": "Patient/example"}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    }


# The person agrees to the Sheffield service seeing their referral and fit notes, but not their
# diagnoses (a nested deny), for direct care, for a year.
SERVICE_WITHOUT_DIAGNOSES = consent({
    "type": "permit",
    "period": {"start": "2026-05-04", "end": "2027-05-03"},
    "actor": [actor("work-health-service", WHS)],
    "action": actions("access", "disclose"),
    "purpose": purpose("TREAT"),
    "class": classes("referral", "fit-note", "diagnosis"),
    "provision": [{"type": "deny", "class": classes("diagnosis")}],
})

# Letters and outcomes may go back to the referring practice.
FEEDBACK_TO_PRACTICE = consent({
    "type": "permit",
    "actor": [actor("referring-practice", PRACTICE)],
    "action": actions("disclose"),
    "purpose": purpose("TREAT"),
    "class": classes("adviser-letter", "outcome"),
})

# Pseudonymised evaluation.
EVALUATION = consent({
    "type": "permit",
    "actor": [actor("evaluation", display="Evaluators of the service")],
    "action": actions("use", "disclose"),
    "purpose": purpose("HRESCH"),
    "class": classes("referral", "outcome"),
}, scope="research")

# The person has read one return-to-work letter and approves it, and only it, for their employer.
EMPLOYER_LETTER_APPROVED = consent({
    "type": "permit",
    "period": {"start": "2026-06-10", "end": "2026-07-10"},
    "actor": [actor("employer", display="The person's employer")],
    "action": actions("disclose"),
    "purpose": purpose("TREAT"),
    "class": classes("adviser-letter"),
    "data": [{"meaning": "instance", "reference": {"reference": "DocumentReference/rtw-letter-1"}}],
})

# Nothing to the DWP, ever (an explicit refusal: it beats any permit).
NOTHING_TO_DWP = consent({
    "type": "deny",
    "actor": [actor("dwp", display="Department for Work and Pensions")],
})

VALID = {
    "01-service-without-diagnoses": SERVICE_WITHOUT_DIAGNOSES,
    "02-feedback-to-practice": FEEDBACK_TO_PRACTICE,
    "03-evaluation": EVALUATION,
    "04-employer-letter-approved": EMPLOYER_LETTER_APPROVED,
    "05-nothing-to-dwp": NOTHING_TO_DWP,
}


def changed(doc, fn):
    doc = copy.deepcopy(doc)
    fn(doc)
    return doc


INVALID = {
    "01-no-provision": (changed(FEEDBACK_TO_PRACTICE, lambda c: c.pop("provision")), 422,
                        [("Consent.provision", "required")]),
    "02-unknown-status": (changed(FEEDBACK_TO_PRACTICE, lambda c: c.update(status="withdrawn")), 422,
                          [("Consent.status", "code-invalid")]),
    # In R4's own terms (IRCP) an organisation the gateway cannot place: neither a service it
    # receives for nor the practice recording the Consent, so its class (employer? other
    # service?) and what the person allowed it are unclear. (IRCP naming the practice itself is
    # read as the referring practice: tests/consent.rs.)
    "03-recipient-not-coded": (changed(FEEDBACK_TO_PRACTICE, lambda c: (
        c["provision"]["actor"][0]["role"]["coding"].pop(1),
        c["provision"]["actor"][0].update(reference={"identifier": {"system": ODS, "value": "Y01234"}}))), 422,
                               [("Consent.provision.actor[0].reference", "code-invalid")]),
    "04-resource-type-as-class": (changed(FEEDBACK_TO_PRACTICE, lambda c: c["provision"].update(
        **{"class": [{"system": "http://hl7.org/fhir/resource-types", "code": "DocumentReference"}]})), 422,
                                  [("Consent.provision.class[0]", "code-invalid")]),
    "05-period-ends-before-start": (changed(SERVICE_WITHOUT_DIAGNOSES, lambda c: c["provision"].update(period={"start": "2026-05-04", "end": "2026-01-01"})), 422,
                                    [("Consent.provision.period.end", "value")]),
    "06-nested-provision-without-type": (changed(SERVICE_WITHOUT_DIAGNOSES, lambda c: c["provision"]["provision"][0].pop("type")), 422,
                                         [("Consent.provision.provision[0].type", "required")]),
    "07-recipient-by-local-reference": (changed(FEEDBACK_TO_PRACTICE, lambda c: c["provision"]["actor"][0].update(reference={"reference": "Organization/123"})), 422,
                                        [("Consent.provision.actor[0].reference.identifier", "required")]),
    "08-approval-not-an-instance": (changed(EMPLOYER_LETTER_APPROVED, lambda c: c["provision"]["data"][0].update(meaning="related")), 422,
                                    [("Consent.provision.data[0]", "value")]),
    "09-unknown-purpose": (changed(FEEDBACK_TO_PRACTICE, lambda c: c["provision"].update(purpose=[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "MARKT"}])), 422,
                           [("Consent.provision.purpose[0]", "code-invalid")]),
    "10-several-problems": (changed(SERVICE_WITHOUT_DIAGNOSES, lambda c: (c["provision"].pop("type"),
                                                                          c["provision"].update(purpose=[{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "MARKT"}]),
                                                                          c["provision"]["action"][0]["coding"][0].update(code="sell"))), 422,
                            [("Consent.provision.action[0]", "code-invalid"), ("Consent.provision.purpose[0]", "code-invalid"), ("Consent.provision.type", "required")]),
    # FHIR R4 requires scope: not a Consent at all (400, before the gateway's own rules).
    "12-no-scope": (changed(FEEDBACK_TO_PRACTICE, lambda c: c.pop("scope")), 400, [("", "structure")]),
    # No "client-assigned id" case: R4 create ignores an id the client sends
    # (tests/consent.rs, a_consent_created_with_an_id_gets_its_own).
}


def q(recipient, data, expect, basis, org=None, action="access", purpose_code="TREAT", at="2026-06-15T12:00:00+01:00", document=None, why=""):
    out = {"recipient": recipient, "dataClass": data, "action": action, "purpose": purpose_code, "at": at,
           "expect": expect, "basis": basis, "why": why}
    if org:
        out["organisation"] = f"{org['system']}|{org['value']}"
    if document:
        out["document"] = document
    return out


def named(doc, id_):
    doc = copy.deepcopy(doc)
    doc["id"] = id_
    return doc


DECISIONS = {
    "01-default-deny": {
        "description": "Nothing recorded: nothing is shared.",
        "consents": [],
        "questions": [q("work-health-service", "referral", "deny", "no-consent", WHS)],
    },
    "02-service-sees-referral-and-fit-notes-not-diagnoses": {
        "description": "The nested deny hides diagnoses from the service that may see the rest.",
        "consents": [named(SERVICE_WITHOUT_DIAGNOSES, "c1")],
        "questions": [
            q("work-health-service", "referral", "permit", "Consent/c1", WHS),
            q("work-health-service", "fit-note", "permit", "Consent/c1", WHS),
            q("work-health-service", "diagnosis", "deny", "Consent/c1", WHS, why="nested deny"),
            q("work-health-service", "referral", "deny", "no-consent", WORKWELL, why="another service"),
            q("work-health-service", "adviser-letter", "deny", "no-consent", WHS, why="class not covered"),
            q("work-health-service", "referral", "deny", "no-consent", WHS, at="2027-05-04T12:00:00+01:00", why="expired: the end date is the last day"),
            q("work-health-service", "referral", "permit", "Consent/c1", WHS, at="2027-05-03T12:00:00+01:00", why="last day"),
        ],
    },
    "03-withdrawn-consent-permits-nothing": {
        "description": "The same consent, withdrawn (status inactive): the withdrawal is the person's decision, and refuses what the consent permitted.",
        "consents": [named(changed(SERVICE_WITHOUT_DIAGNOSES, lambda c: c.update(status="inactive")), "c1")],
        "questions": [q("work-health-service", "referral", "deny", "Consent/c1", WHS, why="a withdrawal refuses what it would have permitted")],
    },
    "04-a-later-deny-beats-the-permit": {
        "description": "A new refusal for all services beats the standing permit.",
        "consents": [named(SERVICE_WITHOUT_DIAGNOSES, "c1"),
                     named(consent({"type": "deny", "actor": [actor("work-health-service", display="Any work-and-health service")]}), "c2")],
        "questions": [q("work-health-service", "referral", "deny", "Consent/c2", WHS)],
    },
    "05-employer-gets-only-the-approved-letter": {
        "description": "Employer disclosure needs the person's approval of the specific document; diagnoses never go.",
        "consents": [named(EMPLOYER_LETTER_APPROVED, "c1")],
        "questions": [
            q("employer", "adviser-letter", "permit", "Consent/c1", action="disclose", document="DocumentReference/rtw-letter-1"),
            q("employer", "adviser-letter", "deny", "no-consent", action="disclose", document="DocumentReference/another-letter", why="not the approved document"),
            q("employer", "adviser-letter", "deny", "no-consent", action="disclose", why="no document named"),
            q("employer", "diagnosis", "deny", "no-consent", action="disclose", document="DocumentReference/rtw-letter-1", why="diagnoses not covered"),
        ],
    },
    "06-general-employer-permit-is-not-approval": {
        "description": "Agreeing that the service may talk to the employer is not approval of a document.",
        "consents": [named(consent({"type": "permit", "actor": [actor("employer", display="The person's employer")],
                                    "action": actions("disclose"), "class": classes("adviser-letter")}), "c1")],
        "questions": [q("employer", "adviser-letter", "deny", "document-not-approved", action="disclose", document="DocumentReference/rtw-letter-1")],
    },
    "07-dwp-refused-even-with-a-broad-permit": {
        "description": "An explicit refusal for the DWP beats a permit that would otherwise cover it.",
        "consents": [named(NOTHING_TO_DWP, "c1"),
                     named(consent({"type": "permit", "actor": [actor("dwp", display="DWP")], "action": actions("disclose")}), "c2")],
        "questions": [q("dwp", "referral", "deny", "Consent/c1", action="disclose")],
    },
    "08-override-for-risk-to-others": {
        "description": "Mr N (SOM case 2): the person refuses employer disclosure; a clinician asks to override for a risk to others, for 24 hours, and information governance grants it. A second override, for diagnoses, was ended by a review that found it inappropriate.",
        "consents": [named(consent({"type": "deny", "actor": [actor("employer", display="The person's employer")]}), "c1")],
        "overrides": [
            override("o1", ["adviser-letter"], "granted", "2026-06-15T09:00:00+01:00", "2026-06-16T09:00:00+01:00"),
            override("o2", ["diagnosis"], "ended", "2026-06-15T09:00:00+01:00", "2026-06-16T09:00:00+01:00",
                     endedAt="2026-06-15T10:00:00+01:00",
                     review={"outcome": "inappropriate", "note": "The employer needs fitness for duty, never the diagnosis.",
                             "reviewedAt": "2026-06-15T10:00:00+01:00",
                             "reviewedBy": {"client": "information-governance:IG2", "organisation": f"{BASE}/Id/organisation|IG2"}}),
        ],
        "questions": [
            q("employer", "adviser-letter", "permit", "override o1", EMPLOYER, action="disclose", document="DocumentReference/fitness-letter"),
            q("employer", "adviser-letter", "deny", "Consent/c1", OTHER_EMPLOYER, action="disclose", document="DocumentReference/fitness-letter", why="the override names one employer"),
            q("employer", "diagnosis", "deny", "Consent/c1", EMPLOYER, action="disclose", why="o1 covers letters only; o2 was ended by its review"),
            q("employer", "adviser-letter", "deny", "Consent/c1", EMPLOYER, action="disclose", at="2026-06-16T09:00:00+01:00", why="override expired"),
        ],
    },
    "09-evaluation-needs-research-purpose": {
        "description": "Evaluation consent covers research use only.",
        "consents": [named(EVALUATION, "c1")],
        "questions": [
            q("evaluation", "referral", "permit", "Consent/c1", action="disclose", purpose_code="HRESCH"),
            q("evaluation", "referral", "deny", "no-consent", action="disclose", purpose_code="TREAT"),
            q("evaluation", "diagnosis", "deny", "no-consent", action="disclose", purpose_code="HRESCH"),
        ],
    },
}

# Decisions over time: each Consent recorded on a day of May by a party (Consent.organization),
# as stored (meta.lastUpdated).
BY_PRACTICE = PRACTICE
BY_WHS = WHS


def dated(kind, day, recorder, id_):
    provision = {"type": kind, "actor": [actor("work-health-service", WHS)]}
    doc = named(consent(provision, recorded=f"2026-05-{day:02d}T10:00:00+01:00"), id_)
    doc["meta"]["lastUpdated"] = f"2026-05-{day:02d}T09:00:00.000000Z"
    doc["organization"] = [{"identifier": recorder}]
    return doc


DECISIONS["10-the-newest-decision-governs"] = {
    "description": "The person's most recent decision governs: an agreement (4 May), a refusal recorded by the practice (10 May), an agreement the service recorded for itself (12 May, which counts for nothing), and a new agreement recorded by the practice (20 May).",
    "consents": [dated("permit", 4, BY_PRACTICE, "agreed"), dated("deny", 10, BY_PRACTICE, "refused"),
                 dated("permit", 12, BY_WHS, "self"), dated("permit", 20, BY_PRACTICE, "again")],
    "questions": [q("work-health-service", "referral", "permit", "Consent/again", WHS,
                    why="a new agreement recorded by the practice, after the refusal, governs")],
}
DECISIONS["11-a-recipient-cannot-undo-a-refusal"] = {
    "description": "A recipient cannot undo the person's refusal: a refusal recorded by the practice (10 May), then an agreement the service recorded for itself (12 May).",
    "consents": [dated("permit", 4, BY_PRACTICE, "agreed"), dated("deny", 10, BY_PRACTICE, "refused"),
                 dated("permit", 12, BY_WHS, "self")],
    "questions": [q("work-health-service", "referral", "deny", "Consent/refused", WHS,
                    why="the service agreed for itself after the refusal: that never undoes it")],
}
# Who may record what (consent::authorship), posted by the referring practice.
INVALID["13-permit-for-anyone"] = (changed(FEEDBACK_TO_PRACTICE, lambda c: c["provision"].pop("actor")), 422,
                                   [("Consent.provision.actor", "business-rule")])
INVALID["14-practice-grants-dwp"] = (changed(FEEDBACK_TO_PRACTICE, lambda c: c["provision"].update(actor=[actor("dwp", display="the Department for Work and Pensions")])), 422,
                                     [("Consent.provision.actor[0].role", "forbidden")])


def main():
    write_fixtures(ROOT, VALID, INVALID)
    (ROOT / "decisions").mkdir(exist_ok=True)
    for old in (ROOT / "decisions").glob("*.json"):
        old.unlink()
    for name, doc in DECISIONS.items():
        write(ROOT / "decisions" / f"{name}.json", doc)
    print(f"{len(VALID)} valid and {len(INVALID)} invalid Consents, {len(DECISIONS)} decision cases in {ROOT}")


if __name__ == "__main__":
    main()
