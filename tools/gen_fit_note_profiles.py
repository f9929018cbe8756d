#!/usr/bin/env python3
"""Writes the fit-note profiles into profiles/: the fit-note Observation, the referral-prompt Task,
the eligibility-assessment extension and the fit-note advice ValueSet. Re-run after editing:
python3 tools/gen_fit_note_profiles.py. tests/fit_notes.rs checks every emitted resource against
the differentials written here."""
import json
import pathlib

BASE = "https://fhir.work-health-gateway.org"
OUT = pathlib.Path(__file__).resolve().parent.parent / "profiles"
SCT = "http://snomed.info/sct"
UKCORE = "https://fhir.hl7.org.uk/StructureDefinition/"

ADJUSTMENTS = [
    ("phasedReturn", "775281000000100", "MED3 (2010) certificate issued - recommend phased return to work"),
    ("alteredHours", "775301000000104", "MED3 (2010) certificate issued - recommend altered hours"),
    ("amendedDuties", "775321000000108", "MED3 (2010) certificate issued - recommend amended duties"),
    ("workplaceAdaptations", "775351000000103", "MED3 (2010) certificate issued - recommend workplace adaptation"),
]
VERIFIED = (
    "SNOMED CT UK Edition concepts chosen from the MED3 code list (Momentum-Data-Codelists, MED3Certificate_SNOMED.csv) and "
    "cross-checked against the NHS UK Core fitness-for-work example and the NHS draft Sickness-Certificate questionnaire "
    "(standards 3.2). Verified by: two independent sources naming the same id and meaning, and the SNOMED CT Verhoeff check "
    "digit and partition (a unit test). NOT verified on a terminology server (none is reachable from this project's build): "
    "pin the UK Edition release when one is."
)


def sd(id_, title, type_, base, description, elements, kind="resource", context=None):
    doc = {
        "resourceType": "StructureDefinition",
        "id": id_,
        "url": f"{BASE}/StructureDefinition/{id_}",
        "version": "0.1.0",
        "name": "".join(w.capitalize() for w in id_.split("-")),
        "title": title,
        "status": "draft",
        "experimental": False,
        "publisher": "Work and Health Gateway project",
        "description": description,
        "fhirVersion": "4.0.1",
        "kind": kind,
        "abstract": False,
    }
    if context:
        doc["context"] = context
    doc.update({"type": type_, "baseDefinition": base, "derivation": "constraint", "differential": {"element": elements}})
    return doc


def el(id_, **kw):
    path = ".".join(p.split(":")[0] for p in id_.split("."))
    e = {"id": id_, "path": path}
    e.update(kw)
    return e


def component(slice_, system, code, display, value_type, min_, short):
    sid = f"Observation.component:{slice_}"
    return [
        el(sid, sliceName=slice_, min=min_, max="1", short=short),
        el(f"{sid}.code", patternCodeableConcept={"coding": [{"system": system, "code": code}]}, short=display),
        el(f"{sid}.value[x]", min=1, type=[{"code": value_type}]),
    ]


fit_note_elements = [
    el("Observation", short="A Statement of Fitness for Work (MED3 fit note)",
       definition="One fit note as issued. The advice is the code (not fit / may be fit); the period covered is "
                  "effectivePeriod (no end: indefinite, allowed only after six months of sickness absence); issued is the "
                  "statement date (00:00 UTC that day); the issuer is a contained PractitionerRole (profession from "
                  "fit-note-issuer-profession) with a contained Practitioner (name, GMC/NMC/HCPC/GPhC registration); "
                  "the condition(s) are contained Conditions linked by the workflow-reasonReference extension; each of the "
                  "form's four adjustments is a component with a boolean (always all four; false when not ticked; true "
                  "only with 'may be fit'); the assessment date and the 'will assess again' answer are components with "
                  "local codes. Rules enforced at intake: docs/fit-notes.md."),
    el("Observation.meta.profile", min=1, short="Claims this profile"),
    el("Observation.contained", min=2, short="The issuer (Practitioner #issuer, PractitionerRole #issuer-role) and the conditions (Condition #condition-N)"),
    el("Observation.extension", slicing={"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}),
    el("Observation.extension:condition", sliceName="condition", min=1, max="*",
       type=[{"code": "Extension", "profile": ["http://hl7.org/fhir/StructureDefinition/workflow-reasonReference"]}],
       short="\"because of the following condition(s)\": a reference to a contained Condition (#condition-N)"),
    el("Observation.identifier", min=1, short="The sender's own fit-note id (write-once: a resend with the same id is idempotent)"),
    el("Observation.status", short="final; entered-in-error once the practice that sent it withdraws it (PUT)",
       binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/fit-note-status"}),
    # A slice rather than a pattern on the repeating element: a sender may add categories of its
    # own, and validators read a slice's pattern for one repetition, not the whole array.
    el("Observation.category", min=1, slicing={"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"}),
    el("Observation.category:socialHistory", sliceName="socialHistory", min=1, max="1",
       patternCodeableConcept={"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "social-history"}]}),
    el("Observation.code", short="The advice: not fit for work, or may be fit for work", comment=VERIFIED,
       binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/fit-note-advice"}),
    el("Observation.subject", min=1, type=[{"code": "Reference", "targetProfile": [UKCORE + "UKCore-Patient"]}],
       short="The person: Patient/{id} as stored (a FHIR client posts a logical reference by NHS number)"),
    el("Observation.effective[x]", min=1, type=[{"code": "Period"}], short="The period the advice covers"),
    el("Observation.effective[x].start", min=1, short="First day covered"),
    el("Observation.effective[x].end", short="Last day covered (inclusive); absent for an indefinite statement"),
    el("Observation.issued", min=1, short="Date of the statement"),
    el("Observation.performer", min=1, max="1", short="The issuer: #issuer-role, a contained PractitionerRole"),
    el("Observation.value[x]", max="0", short="Not used: the advice is the code"),
    # UKCore-Observation 2.5.0 sets bodySite's binding strength with no ValueSet; the snapshot
    # generated from that binding alone breaks sdf-10 (a binding needs a ValueSet or a
    # description), so the base R4 ValueSet is restated with UK Core's strength.
    el("Observation.bodySite", binding={"strength": "preferred", "valueSet": "http://hl7.org/fhir/ValueSet/body-site"}),
    el("Observation.method", min=1, short="How the person was assessed",
       binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/fit-note-assessment-method"}),
    el("Observation.note", max="1", short="Comments, including functional effects of the condition(s)"),
    el("Observation.component", min=6, slicing={"discriminator": [{"type": "pattern", "path": "code"}], "rules": "closed"}),
]
for slice_, code, display in ADJUSTMENTS:
    fit_note_elements += component(slice_, SCT, code, display, "boolean", 1, f"Adjustment box: {display.split(' - ')[-1]}")
local = f"{BASE}/CodeSystem/fit-note-component"
fit_note_elements += component("assessedOn", local, "assessed-on", "Date assessed", "dateTime", 1, "\"I assessed your case on\"")
fit_note_elements += component("assessAgain", local, "assess-again", "Issuer will assess again", "boolean", 1, "\"I will / will not need to assess your fitness for work again\"")
fit_note_elements += component("absenceStart", local, "absence-start", "Sickness absence started", "dateTime", 0, "First day of the spell of sickness absence, when the sender gave it")

prompt_elements = [
    el("Task", short="A prompt to the practice to consider referring a person to a work-and-health service",
       definition="Created by the gateway when a fit note makes one of a service's configured rules fire (e.g. three "
                  "consecutive fit notes). A proposal only: it never refers anyone and nothing is sent to the service. "
                  "The practice answers it with status accepted or rejected (PUT), which are the only changes allowed."),
    el("Task.meta.profile", min=1),
    el("Task.status", short="requested, until the practice answers accepted or rejected"),
    el("Task.intent", fixedCode="proposal"),
    el("Task.code", min=1, patternCodeableConcept={"coding": [{"system": f"{BASE}/CodeSystem/task-code", "code": "referral-prompt"}]}),
    el("Task.description", min=1, short="What to consider and why, naming the service and the rule"),
    el("Task.focus", min=1, short="The fit note whose arrival fired the rule"),
    el("Task.for", min=1, short="The person"),
    el("Task.authoredOn", min=1),
    el("Task.owner", min=1, short="The practice that sent the fit note, by reference and ODS identifier"),
    el("Task.reasonCode", min=1, short="Why the rule fired, in words"),
    el("Task.input", min=3, slicing={"discriminator": [{"type": "pattern", "path": "type"}], "rules": "closed"}),
    el("Task.input:service", sliceName="service", min=1, max="1"),
    el("Task.input:service.type", patternCodeableConcept={"coding": [{"system": f"{BASE}/CodeSystem/referral-prompt-input", "code": "service"}]}),
    el("Task.input:service.value[x]", type=[{"code": "Reference"}], short="The service, by the gateway's service identifier"),
    el("Task.input:rule", sliceName="rule", min=1, max="1"),
    el("Task.input:rule.type", patternCodeableConcept={"coding": [{"system": f"{BASE}/CodeSystem/referral-prompt-input", "code": "rule"}]}),
    el("Task.input:rule.value[x]", type=[{"code": "string"}], short="The rule's id and version, as id|version"),
    el("Task.input:fitNote", sliceName="fitNote", min=1, max="*"),
    el("Task.input:fitNote.type", patternCodeableConcept={"coding": [{"system": f"{BASE}/CodeSystem/referral-prompt-input", "code": "fit-note"}]}),
    el("Task.input:fitNote.value[x]", type=[{"code": "Reference"}], short="A fit note that fired the rule"),
]

eligibility_elements = [
    el("Extension", short="A service's eligibility criteria checked at referral intake",
       definition="Written on the ServiceRequest by the gateway: which service's criteria (and which version) were "
                  "checked, the overall result, and met / not-met / unknown for each criterion with the reason. A criterion "
                  "the referral gives no information for is unknown, never not-met."),
    el("Extension.extension", min=4),
    el("Extension.extension:service", sliceName="service", min=1, max="1"),
    el("Extension.extension:service.url", fixedUri="service"),
    el("Extension.extension:service.value[x]", type=[{"code": "Identifier"}]),
    el("Extension.extension:version", sliceName="version", min=1, max="1"),
    el("Extension.extension:version.url", fixedUri="version"),
    el("Extension.extension:version.value[x]", type=[{"code": "string"}]),
    el("Extension.extension:outcome", sliceName="outcome", min=1, max="1"),
    el("Extension.extension:outcome.url", fixedUri="outcome"),
    el("Extension.extension:outcome.value[x]", type=[{"code": "Coding"}], binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/eligibility-result"}),
    el("Extension.extension:assessed", sliceName="assessed", min=1, max="1"),
    el("Extension.extension:assessed.url", fixedUri="assessed"),
    el("Extension.extension:assessed.value[x]", type=[{"code": "dateTime"}]),
    el("Extension.extension:criterion", sliceName="criterion", min=0, max="*"),
    el("Extension.extension:criterion.url", fixedUri="criterion"),
    # Each criterion as intake writes it (src/intake/admission.rs eligibility_extension): its code,
    # its result and the reason.
    el("Extension.extension:criterion.extension", min=3),
    el("Extension.extension:criterion.extension:code", sliceName="code", min=1, max="1"),
    el("Extension.extension:criterion.extension:code.url", fixedUri="code"),
    el("Extension.extension:criterion.extension:code.value[x]", type=[{"code": "Coding"}],
       binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/eligibility-criterion"}),
    el("Extension.extension:criterion.extension:result", sliceName="result", min=1, max="1"),
    el("Extension.extension:criterion.extension:result.url", fixedUri="result"),
    el("Extension.extension:criterion.extension:result.value[x]", type=[{"code": "Coding"}],
       binding={"strength": "required", "valueSet": f"{BASE}/ValueSet/eligibility-result"}),
    el("Extension.extension:criterion.extension:detail", sliceName="detail", min=1, max="1"),
    el("Extension.extension:criterion.extension:detail.url", fixedUri="detail"),
    el("Extension.extension:criterion.extension:detail.value[x]", type=[{"code": "string"}]),
    el("Extension.extension:criterion.value[x]", max="0"),
    el("Extension.url", fixedUri=f"{BASE}/StructureDefinition/whg-eligibility-assessment"),
    el("Extension.value[x]", max="0"),
]

advice_vs = {
    "resourceType": "ValueSet", "id": "fit-note-advice", "url": f"{BASE}/ValueSet/fit-note-advice", "version": "0.1.0",
    "name": "FitNoteAdvice", "title": "Fit-note advice", "status": "draft", "experimental": False,
    "publisher": "Work and Health Gateway project",
    "description": "The advice of a fit note, as the eMED3 statement concepts. " + VERIFIED,
    "compose": {"include": [{"system": SCT, "concept": [
        {"code": "751481000000104", "display": "eMED3 (2010) new statement issued, not fit for work"},
        {"code": "751601000000107", "display": "eMED3 (2010) new statement issued, may be fit for work"},
    ]}]},
}

status_vs = {
    "resourceType": "ValueSet", "id": "fit-note-status", "url": f"{BASE}/ValueSet/fit-note-status", "version": "0.1.0",
    "name": "FitNoteStatus", "title": "Fit-note status", "status": "draft", "experimental": False,
    "publisher": "Work and Health Gateway project",
    "description": "The statuses a fit note takes: final as issued; amended once the practice that sent it changes its content; entered-in-error once that practice withdraws it.",
    "compose": {"include": [{"system": "http://hl7.org/fhir/observation-status", "concept": [
        {"code": "final", "display": "Final"},
        {"code": "amended", "display": "Amended"},
        {"code": "entered-in-error", "display": "Entered in Error"},
    ]}]},
}

docs = {
    "StructureDefinition-whg-fit-note.json": sd("whg-fit-note", "Work and Health Gateway fit note", "Observation", UKCORE + "UKCore-Observation|2.5.0",
        "A Statement of Fitness for Work (MED3) as an Observation, derived from UKCore-Observation (standards 3.3; no national profile exists). See the root element's definition and docs/fit-notes.md.", fit_note_elements),
    "StructureDefinition-whg-referral-prompt.json": sd("whg-referral-prompt", "Work and Health Gateway referral prompt", "Task", UKCORE + "UKCore-Task|1.2.0",
        "A prompt to a practice to consider a referral, created when a service's fit-note rule fires (brief 3).", prompt_elements),
    "StructureDefinition-whg-eligibility-assessment.json": sd("whg-eligibility-assessment", "Eligibility assessment", "Extension", "http://hl7.org/fhir/StructureDefinition/Extension",
        "The result of checking a referral against its service's versioned eligibility criteria (brief 2.3).", eligibility_elements,
        kind="complex-type", context=[{"type": "element", "expression": "ServiceRequest"}]),
    "ValueSet-fit-note-advice.json": advice_vs,
    "ValueSet-fit-note-status.json": status_vs,
}
for name, doc in docs.items():
    (OUT / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
print(f"wrote {len(docs)} files to {OUT}")
