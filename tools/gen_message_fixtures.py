#!/usr/bin/env python3
"""Authors the BaRS referral message fixtures in fixtures/messages/.

The messages follow the BaRS servicerequest-request shape (MessageHeader first, focus the
ServiceRequest, Patient and the rest in the Bundle; ../shared/domain/standards.md section 2.2).
Two of them use the older forms seen in the official BaRS examples (the retired STU1 NHS number
verification code system and the lower-case '/id/' ODS system), which the gateway must accept and
normalise. Synthetic people; NHS numbers from the 999 test range.

Run:  python3 tools/gen_message_fixtures.py
then: UPDATE_EXPECTED=1 cargo test --test fixtures   (rewrites *.expected.json for valid messages)
"""
import json
import copy
import pathlib

from fixture_io import write, write_fixtures

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "messages"
ODS = "https://fhir.nhs.uk/Id/ods-organization-code"
ODS_LOWER = "https://fhir.nhs.uk/id/ods-organization-code"
NHS = "https://fhir.nhs.uk/Id/nhs-number"
VER_EXT = "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus"
VER_ENGLAND = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatusEngland"
VER_RETIRED = "https://fhir.hl7.org.uk/CodeSystem/UKCore-NHSNumberVerificationStatus"
SHEFFIELD_WHS = "https://fhir.nhs.uk/Id/dos-service-id|2000100001"
WORKWELL_ST = "https://fhir.nhs.uk/Id/dos-service-id|2000100002"


def uuid(n):
    return f"urn:uuid:00000000-0000-4000-8000-{n:012d}"


def message(bundle_id, sr_identifier, nhs, destination=SHEFFIELD_WHS, ods_system=ODS, verification=(VER_ENGLAND, "01", "Number present and verified")):
    entries = [
        {"fullUrl": uuid(1), "resource": {
            "resourceType": "MessageHeader",
            "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "eventCoding": {"system": "https://fhir.nhs.uk/CodeSystem/message-events-bars", "code": "servicerequest-request", "display": "Referral Request"},
            "destination": [{"endpoint": destination, "receiver": {"reference": uuid(3)}}],
            "sender": {"reference": uuid(2)},
            "source": {"name": "GP clinical system (synthetic)", "software": "SyntheticGP", "version": "4.2", "endpoint": "https://fhir.nhs.uk/Id/dos-service-id|1000000042"},
            "reason": {"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/message-reason-bars", "code": "new"}]},
            "focus": [{"reference": uuid(5)}],
            "definition": "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral",
        }},
        {"fullUrl": uuid(2), "resource": {
            "resourceType": "Organization", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "identifier": [{"system": ods_system, "value": "C88902"}], "name": "Valley Road Surgery (synthetic)",
        }},
        {"fullUrl": uuid(3), "resource": {
            "resourceType": "Organization", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "name": "Work and health service (as named by the sender)",
        }},
        {"fullUrl": uuid(4), "resource": {
            "resourceType": "Patient", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "identifier": [{
                "extension": [{"url": VER_EXT, "valueCodeableConcept": {"coding": [{"system": verification[0], "code": verification[1], "display": verification[2]}]}}],
                "system": NHS, "value": nhs,
            }],
            "name": [{"use": "official", "family": "Kowalczyk", "given": ["Anna"]}],
            "gender": "female", "birthDate": "1984-07-19",
            "address": [{"use": "home", "postalCode": "S7 2LE"}],
            "telecom": [{"system": "phone", "value": "07700 900765", "use": "mobile"}],
            "generalPractitioner": [{"identifier": {"system": ods_system, "value": "C88902"}}],
        }},
        {"fullUrl": uuid(5), "resource": {
            "resourceType": "ServiceRequest", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "identifier": [{"system": "https://fhir.nhs.uk/Id/C88902/referral", "value": sr_identifier}],
            "basedOn": [{"reference": uuid(7)}],
            "status": "active", "intent": "plan",
            "category": [{"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest", "code": "referral", "display": "Referral"}]}],
            "priority": "routine",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}]},
            "subject": {"reference": uuid(4)},
            "encounter": {"reference": uuid(6)},
            "authoredOn": "2026-05-05T09:55:00+00:00",
            "requester": {"reference": uuid(9)},
            "performer": [{"reference": uuid(3)}],
            "reasonReference": [{"reference": uuid(10)}],
            "supportingInfo": [{"reference": uuid(11)}],
            "note": [{"text": "Off sick six weeks with anxiety; would like help talking to her employer."}],
        }},
        {"fullUrl": uuid(6), "resource": {
            "resourceType": "Encounter", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
            "subject": {"reference": uuid(4)},
            "period": {"start": "2026-05-05T09:40:00+00:00", "end": "2026-05-05T09:55:00+00:00"},
        }},
        {"fullUrl": uuid(7), "resource": {
            "resourceType": "CarePlan", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "status": "active", "intent": "plan", "subject": {"reference": uuid(4)},
            "description": "Refer to work and health service; review fit note in four weeks.",
        }},
        {"fullUrl": uuid(8), "resource": {
            "resourceType": "Practitioner", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "identifier": [{"system": "https://fhir.hl7.org.uk/Id/gmc-number", "value": "6234567"}],
            "name": [{"family": "Singh", "given": ["Ravi"], "prefix": ["Dr"]}],
        }},
        {"fullUrl": uuid(9), "resource": {
            "resourceType": "PractitionerRole", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "practitioner": {"reference": uuid(8)}, "organization": {"reference": uuid(2)},
        }},
        {"fullUrl": uuid(10), "resource": {
            "resourceType": "Condition", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "197480006", "display": "Anxiety disorder"}]},
            "subject": {"reference": uuid(4)},
        }},
        {"fullUrl": uuid(11), "resource": {
            "resourceType": "Consent", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "https://fhir.nhs.uk/CodeSystem/consent-categories-bars", "code": "DRC", "display": "Direct Care"}]}],
            "patient": {"reference": uuid(4)},
            "dateTime": "2026-05-05T09:50:00+00:00",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMPLIED"}]},
        }},
        # The service the referral is for, as the sender's directory (DoS) describes it.
        {"fullUrl": uuid(12), "resource": {
            "resourceType": "HealthcareService", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
            "identifier": [{"system": destination.split("|")[0], "value": destination.split("|")[1]}],
            "providedBy": {"reference": uuid(3)},
            "name": "Work and health support (as listed in the directory)",
        }},
    ]
    return {
        "resourceType": "Bundle", "id": bundle_id,
        "meta": {"profile": ["https://fhir.nhs.uk/StructureDefinition/BARSBundleMessage"], "lastUpdated": "2026-05-05T10:00:00+00:00"},
        "type": "message", "timestamp": "2026-05-05T10:00:00+00:00",
        "entry": entries,
    }


def without(bundle, resource_type):
    b = copy.deepcopy(bundle)
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] != resource_type]
    return b


def edit(bundle, resource_type, fn):
    b = copy.deepcopy(bundle)
    for e in b["entry"]:
        if e["resource"]["resourceType"] == resource_type:
            fn(e["resource"])
    return b


BASE = message("9f0d7a1e-2b3c-4d5e-8f90-a1b2c3d4e5f6", "REF-BARS-0001", "9999831397")

VALID = {
    "01-bars-referral-current-forms": BASE,
    "02-bars-referral-retired-verification-and-lowercase-ods": message(
        "1a2b3c4d-5e6f-4a1b-9c2d-3e4f5a6b7c8d", "REF-BARS-0002", "9990378142",
        ods_system=ODS_LOWER, verification=(VER_RETIRED, "number-present-and-verified", "Number present and verified"),
    ),
    # Only what the referral MessageDefinition requires (bars-message-servicerequest-request-referral:
    # ServiceRequest, Patient, Encounter, CarePlan, two Organizations, Practitioner, PractitionerRole,
    # Consent, HealthcareService).
    "03-bars-referral-to-workwell-minimal": without(without(
        edit(message("2b3c4d5e-6f7a-4b2c-8d3e-4f5a6b7c8d9e", "REF-BARS-0003", "9991134409", destination=WORKWELL_ST),
             "ServiceRequest", lambda r: (r.pop("reasonReference"), r.pop("supportingInfo"))),
        "Condition"), "Observation"),
}


def r4_opt_in(recipient_reference):
    """The person's explicit agreement in standard R4 terms, as other systems record it
    (http://hl7.org/fhir/R4/consent.html): permit, the recipient as v3 ParticipationType IRCP
    (information recipient), disclose, for treatment. No gateway codes: the gateway places the
    recipient itself (src/consent/standard.rs)."""
    def change(consent):
        consent.pop("policyRule")
        consent["category"] = [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}]
        consent["policyRule"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]}
        consent["provision"] = {
            "type": "permit",
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP", "display": "information recipient"}]},
                "reference": recipient_reference,
            }],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "disclose"}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}],
        }
    return change


# The receiving Organization (the MessageHeader's destination.receiver) is the addressed service.
VALID["04-bars-referral-standard-r4-consent"] = edit(
    message("4d5e6f7a-8b9c-4d4e-8f5a-6b7c8d9e0f1a", "REF-BARS-0004", "9995000008"),
    "Consent", r4_opt_in({"reference": uuid(3)}))

def planted_extensions(sr):
    """A sender's copies of extensions only the gateway writes: intake removes them."""
    sr["extension"] = [
        {"url": "https://fhir.work-health-gateway.org/StructureDefinition/whg-bars-request", "extension": [
            {"url": "sourceEndpoint", "valueString": "https://fhir.nhs.uk/Id/dos-service-id|6666666666"}]},
        {"url": "https://fhir.work-health-gateway.org/StructureDefinition/whg-eligibility-assessment", "extension": [
            {"url": "outcome", "valueCoding": {"system": "https://fhir.work-health-gateway.org/CodeSystem/eligibility-result", "code": "eligible"}}]},
    ]


VALID["05-bars-referral-planted-gateway-extensions"] = edit(
    message("5e6f7a8b-9c0d-4e5f-8a6b-7c8d9e0f1a2b", "REF-BARS-0005", "9995000377"),
    "ServiceRequest", planted_extensions)

INVALID = {
    "01-not-a-message": (edit(BASE, "Bundle", lambda r: None) | {"type": "collection"}, 422, [("Bundle.type", "value")]),
    "02-booking-request-event": (edit(BASE, "MessageHeader", lambda r: r["eventCoding"].update(code="booking-request")), 422,
                                 [("Bundle.entry[0].resource.eventCoding.code", "not-supported")]),
    # An update carries the ServiceRequest active (an amendment) or revoked/entered-in-error.
    "03-reason-update": (edit(edit(BASE, "MessageHeader", lambda r: r["reason"]["coding"][0].update(code="update")),
                              "ServiceRequest", lambda r: r.update(status="on-hold")), 422,
                         [(f"Bundle.entry[{next(i for i, e in enumerate(BASE['entry']) if e['resource']['resourceType'] == 'ServiceRequest')}].resource.status", "business-rule")]),
    "04-invalid-nhs-number": (message("3c4d5e6f-7a8b-4c3d-9e4f-5a6b7c8d9e0f", "REF-BARS-0004", "3478526985"), 422,
                              [("Bundle.entry[3].resource.identifier[0].value", "invariant")]),
    "05-reference-outside-message": (edit(BASE, "ServiceRequest", lambda r: r.update(requester={"reference": "PractitionerRole/abc"})), 422,
                                     [("Bundle.entry[4].resource", "not-found")]),
    "06-unknown-destination": (edit(BASE, "MessageHeader", lambda r: r["destination"][0].update(endpoint="https://fhir.nhs.uk/Id/dos-service-id|999")), 422,
                               [("Bundle.entry[0].resource.destination", "not-found")]),
    "07-not-fhir-unknown-element": (edit(BASE, "Patient", lambda r: r.update(nhsNumber="9999831397")), 400, [("", "structure")]),
    "08-focus-not-a-service-request": (edit(BASE, "MessageHeader", lambda r: r.update(focus=[{"reference": uuid(4)}])), 422,
                                       [("Bundle.entry[0].resource.focus", "invalid")]),
    "09-several-problems": (edit(edit(BASE, "ServiceRequest", lambda r: r.update(status="draft", authoredOn="2099-01-01T00:00:00+00:00")),
                                 "Patient", lambda r: r.update(birthDate="2099-01-01")), 422,
                            [("Bundle.entry[3].resource.birthDate", "value"), ("Bundle.entry[4].resource.authoredOn", "value"), ("Bundle.entry[4].resource.status", "business-rule")]),
    "10-empty-array-and-null": (edit(BASE, "Patient", lambda r: r.update(name=[], telecom=None)), 400,
                                [("Bundle.entry[3].resource.name", "structure"), ("Bundle.entry[3].resource.telecom", "structure")]),
    # No Consent in the message: nothing says the person agreed to be referred (default deny).
    "11-no-consent": (without(edit(BASE, "ServiceRequest", lambda r: r.update(supportingInfo=[x for x in r["supportingInfo"] if x["reference"] != uuid(11)]) if [x for x in r["supportingInfo"] if x["reference"] != uuid(11)] else r.pop("supportingInfo")), "Consent"), 422, [("Bundle.entry", "required")]),
    # A Consent that was withdrawn before the message was sent permits nothing.
    "12-consent-inactive": (edit(BASE, "Consent", lambda r: r.update(status="inactive")), 422,
                            [("Bundle.entry.resource.ofType(Consent)", "business-rule")]),
}


def planted(bundle):
    """The message with records only the gateway writes, and a type no referral carries."""
    b = copy.deepcopy(bundle)
    patient = next(e["fullUrl"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    b["entry"] += [
        {"fullUrl": "urn:uuid:5b1d7f2e-6c4a-4e8b-9a3f-0c2d4e6f8a10", "resource": {
            "resourceType": "AuditEvent", "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
            "recorded": "2026-03-02T09:40:00+00:00", "outcome": "0",
            "outcomeDesc": "information governance reviewed this and found it appropriate",
            "agent": [{"requestor": True, "who": {"display": "IG lead"}}],
            "source": {"observer": {"display": "work-health-gateway"}}}},
        {"fullUrl": "urn:uuid:5b1d7f2e-6c4a-4e8b-9a3f-0c2d4e6f8a11", "resource": {
            "resourceType": "Task", "status": "completed", "intent": "order",
            "businessStatus": {"coding": [{"code": "discharged"}]}, "for": {"reference": patient}}},
        {"fullUrl": "urn:uuid:5b1d7f2e-6c4a-4e8b-9a3f-0c2d4e6f8a12", "resource": {"resourceType": "Basic", "code": {"text": "anything"}}},
    ]
    return b


# Only the referral MessageDefinition's resource types, less those the gateway writes itself.
_n = len(BASE["entry"])
INVALID["13-planted-gateway-records"] = (planted(BASE), 422, [
    (f"Bundle.entry[{_n}].resource.resourceType", "not-supported"),
    (f"Bundle.entry[{_n + 1}].resource.resourceType", "not-supported"),
    (f"Bundle.entry[{_n + 2}].resource.resourceType", "not-supported"),
])



def second_person(bundle):
    """The message with a second Patient entry (another person, by NHS number) after the rest."""
    b = copy.deepcopy(bundle)
    patient = copy.deepcopy(next(e for e in b["entry"] if e["resource"]["resourceType"] == "Patient"))
    patient["fullUrl"] = "urn:uuid:5b1d7f2e-6c4a-4e8b-9a3f-0c2d4e6f8a20"
    patient["resource"]["identifier"][0]["value"] = "9990378142"
    patient["resource"]["name"] = [{"use": "official", "family": "Okafor", "given": ["Chidi"]}]
    b["entry"].append(patient)
    return b


# A referral message is about one person, the ServiceRequest's subject: a second Patient would
# make the sender party to another person's record.
INVALID["14-second-patient"] = (second_person(BASE), 422, [(f"Bundle.entry[{_n}].resource", "business-rule")])


def service_identifier(bundle):
    """The message naming its performer Organization by the gateway's own service identifier."""
    def claim(r):
        if r.get("name", "").endswith("(as named by the sender)"):
            r["identifier"] = [{"system": "https://fhir.work-health-gateway.org/Id/service", "value": "workwell-south-tyneside"}]
    return edit(bundle, "Organization", claim)


# The gateway states its configured services itself; a sender cannot name an Organization as one.
INVALID["15-gateway-service-identifier"] = (service_identifier(BASE), 422,
                                            [("Bundle.entry[2].resource.identifier[0].system", "business-rule")])

# An information recipient the gateway cannot place: an ODS code that is neither the service nor
# the sending practice (an employer? another service?), so what the person allowed is unclear.
INVALID["16-consent-recipient-unplaced"] = (
    edit(BASE, "Consent", r4_opt_in({"identifier": {"system": ODS, "value": "Y01234"}})), 422,
    [(f"Bundle.entry[{next(i for i, e in enumerate(BASE['entry']) if e['resource']['resourceType'] == 'Consent')}].resource.provision.actor[0].reference", "code-invalid")])


# Cancellations (fixtures/messages/cancellations/): each cancels the valid message of the same number,
# sent before it, as BaRS Core's Cancellation page describes (bars-message-servicerequest-request-cancelled:
# the MessageHeader, the ServiceRequest with status revoked or entered-in-error, the Patient and the two
# Organizations; reason 'update', or 'delete' as the same page's table and its second example have it).
CANCELLED_DEFINITION = "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled"


def cancellation(original, bundle_id, status, reason):
    b = copy.deepcopy(original)
    b["id"] = bundle_id
    keep = {"MessageHeader", "ServiceRequest", "Patient", "Organization"}
    b["entry"] = [e for e in b["entry"] if e["resource"]["resourceType"] in keep]
    header = b["entry"][0]
    header["fullUrl"] = "urn:uuid:" + bundle_id[:-4] + "c0c0"
    header["resource"]["reason"]["coding"][0]["code"] = reason
    header["resource"]["definition"] = CANCELLED_DEFINITION
    for e in b["entry"]:
        r = e["resource"]
        r["meta"]["lastUpdated"] = "2026-05-06T09:00:00+00:00"
        if r["resourceType"] == "ServiceRequest":
            r["status"] = status
            for k in ("basedOn", "encounter", "requester", "reasonReference", "supportingInfo"):
                r.pop(k, None)
    return b


CANCELLATIONS = {
    "01-revoked": cancellation(VALID["01-bars-referral-current-forms"], "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d", "revoked", "update"),
    "02-entered-in-error": cancellation(VALID["02-bars-referral-retired-verification-and-lowercase-ods"], "8b9c0d1e-2f3a-4b4c-9d5e-6f7a8b9c0d1e", "entered-in-error", "delete"),
}

# Amendments (fixtures/messages/amendments/): each restates the valid message of the same number
# with reason 'update' and the ServiceRequest active (BaRS: "'update' for an update"), later
# lastUpdated values on what changed ("must be a later timestamp, on updates").
def amendment(original, bundle_id, change):
    b = copy.deepcopy(original)
    b["id"] = bundle_id
    header = b["entry"][0]
    header["fullUrl"] = "urn:uuid:" + bundle_id[:-4] + "a0a0"
    header["resource"]["reason"]["coding"][0]["code"] = "update"
    header["resource"]["meta"]["lastUpdated"] = "2026-05-06T09:00:00+00:00"
    for e in b["entry"]:
        change(e["resource"])
    return b


def more_urgent(r):
    if r["resourceType"] == "ServiceRequest":
        r["priority"] = "urgent"
        r["note"] = [{"text": "Now at risk of losing her job: her employer has started a formal absence review."}]
        r["meta"]["lastUpdated"] = "2026-05-06T09:00:00+00:00"


def another_condition(r):
    if r["resourceType"] == "Condition":
        r["code"] = {"coding": [{"system": "http://snomed.info/sct", "code": "35489007", "display": "Depressive disorder"}]}
        r["meta"]["lastUpdated"] = "2026-05-06T09:00:00+00:00"


AMENDMENTS = {
    "01-more-urgent": amendment(VALID["01-bars-referral-current-forms"], "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f", more_urgent),
    # Refused when processed: the Conditions the referral names are the referral itself.
    "01-another-condition": amendment(VALID["01-bars-referral-current-forms"], "0d1e2f3a-4b5c-4d6e-9f7a-8b9c0d1e2f3a", another_condition),
}

_sr = next(i for i, e in enumerate(BASE["entry"]) if e["resource"]["resourceType"] == "ServiceRequest")
INVALID["17-cancellation-delete-of-active-referral"] = (
    edit(edit(CANCELLATIONS["01-revoked"], "MessageHeader", lambda r: r["reason"]["coding"][0].update(code="delete")),
         "ServiceRequest", lambda r: r.update(status="active")),
    422, [("Bundle.entry[0].resource.reason", "business-rule")])
INVALID["18-cancellation-without-identifier"] = (
    edit(CANCELLATIONS["01-revoked"], "ServiceRequest", lambda r: r.pop("identifier")), 422,
    [(f"Bundle.entry[{next(i for i, e in enumerate(CANCELLATIONS['01-revoked']['entry']) if e['resource']['resourceType'] == 'ServiceRequest')}].resource.identifier", "required")])
INVALID["19-no-definition"] = (edit(BASE, "MessageHeader", lambda r: r.pop("definition")), 422,
                               [("Bundle.entry[0].resource.definition", "required")])
INVALID["20-cancellation-claiming-the-referral-definition"] = (
    edit(CANCELLATIONS["01-revoked"], "MessageHeader", lambda r: r.update(definition=BASE["entry"][0]["resource"]["definition"])), 422,
    [("Bundle.entry[0].resource.definition", "business-rule")])
# BaRS Core: the receiver checks the message against MessageHeader.definition, and a message that
# fails "must be rejected"; the referral definition requires a CarePlan and a HealthcareService.
INVALID["21-referral-without-required-entries"] = (
    without(without(edit(BASE, "ServiceRequest", lambda r: r.pop("basedOn")), "CarePlan"), "HealthcareService"), 422,
    [("Bundle.entry", "required"), ("Bundle.entry", "required")])



def second_performer(bundle):
    """From review: a second performer (an employer's occupational health team) is not the service
    the message is addressed to, so a Consent naming it as information recipient is not consent
    to the service."""
    b = copy.deepcopy(bundle)
    b["entry"].append({"fullUrl": uuid(13), "resource": {
        "resourceType": "Organization", "meta": {"lastUpdated": "2026-05-05T10:00:00+00:00"},
        "identifier": [{"system": ODS, "value": "Y01234"}], "name": "Employer occupational health (synthetic)"}})
    for e in b["entry"]:
        r = e["resource"]
        if r["resourceType"] == "ServiceRequest":
            r["performer"].append({"reference": uuid(13)})
    return edit(b, "Consent", r4_opt_in({"reference": uuid(13)}))


INVALID["22-consent-recipient-a-second-performer"] = (
    second_performer(BASE), 422,
    [(f"Bundle.entry[{next(i for i, e in enumerate(BASE['entry']) if e['resource']['resourceType'] == 'Consent')}].resource.provision.actor[0].reference", "code-invalid")])


def with_own_id(name, doc):
    """An invalid message with a referral identifier of its own: sent one after another (and after
    the valid ones), each gets its documented error, never a 409 for an identifier another used."""
    return json.loads(json.dumps(doc).replace('"REF-BARS-0001"', f'"REF-BARS-INV-{name[:2]}"'))


def main():
    write_fixtures(ROOT, VALID, {n: (with_own_id(n, d), status, issues) for n, (d, status, issues) in INVALID.items()})
    out = ROOT / "cancellations"
    out.mkdir(exist_ok=True)
    for name, doc in CANCELLATIONS.items():
        write(out / f"{name}.json", doc)
    out = ROOT / "amendments"
    out.mkdir(exist_ok=True)
    for name, doc in AMENDMENTS.items():
        write(out / f"{name}.json", doc)
    print(f"{len(VALID)} valid and {len(INVALID)} invalid messages, {len(CANCELLATIONS)} cancellations in {ROOT}")


if __name__ == "__main__":
    main()
