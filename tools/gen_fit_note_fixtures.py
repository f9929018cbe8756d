#!/usr/bin/env python3
"""Writes fixtures/fit-notes/: valid and invalid practice fit notes (each a small, commented change
to a realistic base) and sequences that do and do not fire referral prompts. Expected results of
invalid notes are written here; the FHIR of valid ones by UPDATE_EXPECTED=1 cargo test --test fit_notes.
Synthetic people only: NHS numbers from the 999 test range that pass Modulus 11."""
import copy
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "fit-notes"


def nhs(n):
    """The n-th valid NHS number in the 999 test range."""
    found = 0
    for base in range(999000000, 999999999):
        digits = [int(d) for d in str(base)]
        total = sum(d * w for d, w in zip(digits, range(10, 1, -1)))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check == 10:
            continue
        found += 1
        if found == n:
            return f"{base}{check}"


BASE = {
    "fitNoteId": "FN-0001",
    "practice": {"odsCode": "C88901", "name": "Broomhall Medical Practice"},
    "patient": {"nhsNumber": nhs(501), "name": {"given": ["Dana"], "family": "Whitfield"}, "birthDate": "1979-04-12", "sex": "female", "postcode": "S10 2HE"},
    "issuer": {"name": {"prefix": "Dr", "given": ["Asha"], "family": "Patel"}, "profession": "doctor", "registration": {"register": "gmc", "number": "7654321"}},
    "assessment": {"date": "2026-03-02", "method": "face-to-face"},
    "conditions": [{"snomedCode": "279039007", "text": "Low back pain"}],
    "fitness": "not-fit",
    "comments": "Cannot lift or sit for long periods while pain settles.",
    "period": {"from": "2026-03-02", "to": "2026-03-29"},
    "assessAgain": True,
    "issuedOn": "2026-03-02",
}

ISSUERS = {
    "doctor": ({"prefix": "Dr", "given": ["Asha"], "family": "Patel"}, "gmc", "7654321"),
    "nurse": ({"given": ["Grace"], "family": "Okafor"}, "nmc", "12A3456E"),
    "occupational-therapist": ({"given": ["Liam"], "family": "Doyle"}, "hcpc", "OT12345"),
    "pharmacist": ({"given": ["Priya"], "family": "Shah"}, "gphc", "2087654"),
    "physiotherapist": ({"given": ["Tom"], "family": "Briggs"}, "hcpc", "PH123456"),
}


def note(i, **changes):
    n = copy.deepcopy(BASE)
    n["fitNoteId"] = f"FN-{i:04d}"
    n["patient"]["nhsNumber"] = nhs(500 + i)
    for k, v in changes.items():
        n[k] = v
    return n


def issuer(p):
    name, reg, num = ISSUERS[p]
    return {"name": name, "profession": p, "registration": {"register": reg, "number": num}}


may = {"fitness": "may-be-fit"}
VALID = [
    ("01-doctor-not-fit-back-pain", note(1)),
    ("02-doctor-may-be-fit-phased-return", note(2, **may, adjustments={"phasedReturn": True}, comments="A phased return over four weeks would help.")),
    ("03-nurse-may-be-fit-altered-hours", note(3, **may, issuer=issuer("nurse"), adjustments={"alteredHours": True}, conditions=[{"text": "Post-operative recovery, hernia repair"}])),
    ("04-ot-may-be-fit-amended-duties", note(4, **may, issuer=issuer("occupational-therapist"), adjustments={"amendedDuties": True}, conditions=[{"snomedCode": "35489007", "text": "Depressive disorder"}])),
    ("05-pharmacist-not-fit-stress", note(5, issuer=issuer("pharmacist"), conditions=[{"text": "Stress at work"}], period={"from": "2026-03-02", "to": "2026-03-15"})),
    ("06-physio-may-be-fit-workplace-adaptations", note(6, **may, issuer=issuer("physiotherapist"), adjustments={"workplaceAdaptations": True}, conditions=[{"snomedCode": "202708005", "text": "Shoulder impingement"}])),
    ("07-all-four-adjustments", note(7, **may, adjustments={"phasedReturn": True, "alteredHours": True, "amendedDuties": True, "workplaceAdaptations": True})),
    ("08-e-consultation-not-fit", note(8, assessment={"date": "2026-03-02", "method": "e-consultation"}, conditions=[{"text": "Anxiety"}], comments=None)),
    ("09-telephone-assessment", note(9, assessment={"date": "2026-03-01", "method": "telephone"})),
    ("10-video-assessment", note(10, assessment={"date": "2026-03-02", "method": "video"})),
    ("11-written-report", note(11, assessment={"date": "2026-02-27", "method": "written-report"}, comments="From the hospital discharge summary.")),
    ("12-length-in-weeks", note(12, period={"length": {"value": 4, "unit": "weeks"}})),
    ("13-length-in-months", note(13, period={"from": "2026-03-02", "length": {"value": 2, "unit": "months"}})),
    ("14-exactly-three-months-early-in-absence", note(14, absenceStart="2026-02-16", period={"from": "2026-03-02", "to": "2026-06-01"})),
    ("15-indefinite-after-six-months", note(15, absenceStart="2025-07-01", period={"from": "2026-03-02", "indefinite": True}, assessAgain=False, conditions=[{"snomedCode": "69896004", "text": "Rheumatoid arthritis"}])),
    ("16-long-period-after-six-months", note(16, absenceStart="2025-06-01", period={"from": "2026-03-02", "to": "2026-08-31"})),
    ("17-two-conditions", note(17, conditions=[{"snomedCode": "35489007", "text": "Depressive disorder"}, {"text": "Chronic fatigue"}])),
    ("18-backdated-period", note(18, period={"from": "2026-02-23", "to": "2026-03-22"}, assessment={"date": "2026-02-23", "method": "face-to-face"})),
    ("19-minimal-patient", note(19, patient={"nhsNumber": nhs(519)}, comments=None)),
    ("20-will-not-assess-again", note(20, **may, adjustments={"amendedDuties": True, "alteredHours": False}, assessAgain=False)),
    ("21-single-day", note(21, period={"from": "2026-03-02", "to": "2026-03-02"})),
    ("22-may-be-fit-no-adjustments", note(22, **may, adjustments={}, comments="Could work from home.")),
]


def bad(i, expected, status=422, **changes):
    return note(100 + i, **changes), {"status": status, "issues": [{"expression": e, "code": c} for e, c in expected]}


INVALID = [
    ("01-adjustments-with-not-fit", *bad(1, [("adjustments.phasedReturn", "business-rule"), ("adjustments.amendedDuties", "business-rule")], adjustments={"phasedReturn": True, "amendedDuties": True})),
    ("02-profession-not-allowed", *bad(2, [("issuer.profession", "code-invalid")], issuer={"name": {"given": ["Sam"], "family": "Hill"}, "profession": "paramedic", "registration": {"register": "hcpc", "number": "PA12345"}})),
    ("03-register-does-not-fit-profession", *bad(3, [("issuer.registration.register", "business-rule")], issuer={"name": {"given": ["Grace"], "family": "Okafor"}, "profession": "nurse", "registration": {"register": "gmc", "number": "7654321"}})),
    ("04-period-ends-before-it-starts", *bad(4, [("period.to", "business-rule")], period={"from": "2026-03-02", "to": "2026-02-27"})),
    ("05-over-three-months-early-in-absence", *bad(5, [("period", "business-rule")], absenceStart="2026-02-01", period={"from": "2026-03-02", "to": "2026-07-01"})),
    ("06-indefinite-early-in-absence", *bad(6, [("period", "business-rule")], absenceStart="2026-01-05", period={"from": "2026-03-02", "indefinite": True})),
    ("07-impossible-date", *bad(7, [("period.to", "value")], period={"from": "2026-02-20", "to": "2026-02-30"})),
    ("08-statement-in-the-future", *bad(8, [("issuedOn", "business-rule")], issuedOn="2099-01-05", period={"from": "2099-01-05", "to": "2099-01-31"}, assessment={"date": "2099-01-05", "method": "video"})),
    ("09-assessed-after-statement", *bad(9, [("assessment.date", "business-rule")], assessment={"date": "2026-03-05", "method": "face-to-face"})),
    ("10-short-absence-given-as-length", *bad(10, [("period.length", "business-rule")], period={"length": {"value": 10, "unit": "days"}})),
    ("11-no-period-end-or-length", *bad(11, [("period", "required")], period={"from": "2026-03-02"})),
    ("12-nhs-number-check-digit", *bad(12, [("patient.nhsNumber", "invariant")], patient={"nhsNumber": "9990000019"})),
    ("13-no-conditions", *bad(13, [("conditions", "value")], conditions=[])),
    ("14-unknown-field-and-missing-fitness", *bad(14, [("fitness", "required"), ("signature", "structure")], fitness=None, signature="A. Patel")),
    ("15-absence-after-period", *bad(15, [("absenceStart", "business-rule")], absenceStart="2026-03-10")),
]

# Sequences: notes sent in order to a gateway configured with the rules below; after each note,
# the rule ids it must fire (and nothing else).
RULES = [
    {"service": "pas-county-durham", "id": "three-consecutive", "when": "consecutive", "count": 3},
    {"service": "pas-county-durham", "id": "first-fit-note", "when": "first-in-run"},
]


def seq_note(person, i, start, end, **changes):
    n = note(0, period={"from": start, "to": end}, assessment={"date": start, "method": "face-to-face"}, issuedOn=start, **changes)
    n["fitNoteId"] = f"SEQ-{person}-{i}"
    n["patient"] = {"nhsNumber": nhs(700 + person)}
    return n


SEQUENCES = {
    "01-three-consecutive-then-a-fourth": [
        (seq_note(1, 1, "2026-01-05", "2026-01-18"), ["first-fit-note"]),
        (seq_note(1, 2, "2026-01-19", "2026-02-01"), []),
        (seq_note(1, 3, "2026-02-02", "2026-02-15"), ["three-consecutive"]),
        (seq_note(1, 4, "2026-02-16", "2026-03-01"), []),
    ],
    "02-a-gap-breaks-the-run": [
        (seq_note(2, 1, "2026-01-05", "2026-01-18"), ["first-fit-note"]),
        (seq_note(2, 2, "2026-01-19", "2026-02-01"), []),
        (seq_note(2, 3, "2026-02-20", "2026-03-05"), ["first-fit-note"]),
        (seq_note(2, 4, "2026-03-06", "2026-03-19"), []),
        (seq_note(2, 5, "2026-03-20", "2026-04-02"), ["three-consecutive"]),
    ],
    "03-overlapping-notes-are-consecutive": [
        (seq_note(3, 1, "2026-01-05", "2026-02-01"), ["first-fit-note"]),
        (seq_note(3, 2, "2026-01-26", "2026-02-22"), []),
        (seq_note(3, 3, "2026-02-20", "2026-03-19"), ["three-consecutive"]),
    ],
    "04-within-the-gap-tolerance": [
        (seq_note(4, 1, "2026-01-05", "2026-01-18"), ["first-fit-note"]),
        (seq_note(4, 2, "2026-01-24", "2026-02-06"), []),
        (seq_note(4, 3, "2026-02-13", "2026-02-26"), ["three-consecutive"]),
    ],
    "05-run-longer-than-six-months-allows-indefinite": [
        (seq_note(5, 1, "2025-06-02", "2025-08-31"), ["first-fit-note"]),
        (seq_note(5, 2, "2025-09-01", "2025-11-30"), []),
        (seq_note(5, 3, "2025-12-01", "2026-02-28"), ["three-consecutive"]),
        (dict(seq_note(5, 4, "2026-03-01", "2026-03-02"), period={"from": "2026-03-01", "indefinite": True}), []),
    ],
}
# Refused by the duration rule only because the stored run shows the absence is under six months.
SEQUENCE_REFUSALS = {
    "06-indefinite-early-in-a-run-is-refused": [
        (seq_note(6, 1, "2026-01-05", "2026-01-18"), ["first-fit-note"]),
        (dict(seq_note(6, 2, "2026-01-19", "2026-01-20"), period={"from": "2026-01-19", "indefinite": True}), {"status": 422, "issues": [{"expression": "period", "code": "business-rule"}]}),
    ],
}


def clean(n):
    return {k: v for k, v in n.items() if v is not None}


def write(path, doc):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def main():
    for name, n in VALID:
        write(ROOT / "valid" / f"{name}.json", clean(n))
    for name, n, expected in INVALID:
        write(ROOT / "invalid" / f"{name}.json", clean(n))
        write(ROOT / "invalid" / f"{name}.expected.json", expected)
    for name, steps in {**SEQUENCES, **SEQUENCE_REFUSALS}.items():
        write(ROOT / "sequences" / f"{name}.json", {
            "rules": RULES,
            "steps": [{"fitNote": clean(n), "expect": (e if isinstance(e, dict) else {"status": 201, "prompts": e})} for n, e in steps],
        })
    print(f"wrote {len(VALID)} valid, {len(INVALID)} invalid, {len(SEQUENCES) + len(SEQUENCE_REFUSALS)} sequences")


if __name__ == "__main__":
    main()
