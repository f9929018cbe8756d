#!/usr/bin/env python3
"""Writes fixtures/employer-letters/: letters to a person's employer (POST
/api/v1/referrals/{id}/employer-letters), valid and invalid, each with its expected result
(<name>.expected.json). The valid ones are also approved and sent by tests/employer_letters.rs,
whose golden files (fixtures/outbound/employer-NN-….approval.json, ….email.json) hold the Consent
that records the approval and the e-mail the employer receives.

Re-run after editing:  python3 tools/gen_employer_letter_fixtures.py
Every person, employer and adviser is invented; the situations follow the evaluations (brief 4):
phased returns, adjustments the employer can make, a person who does not want their employer to
know their diagnosis.
"""
import copy
import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "employer-letters"

BASE = {
    "kind": "return-to-work-plan",
    "employer": {"name": "Sheffield care home (synthetic), HR", "email": "hr@care-home.example"},
    "summary": "Joanne has been off work with stress since October and would like to return in January.",
    "plan": "Phased return over four weeks: 50%, 60%, 80%, then 100% of her hours, reviewed weekly with her manager.",
    "adjustments": ["A quiet space for breaks", "No night shifts for the first month"],
    "includeHealthConditions": False,
    "author": {"name": "Jordan Reilly", "role": "Work and health adviser"},
}

# What an employer must never be told, whatever the letter: the person's identifiers beyond
# their name, and (with no consent to it) their condition.
NEVER = ["NHS number", "1979-06-14", "Work-related stress"]


def changed(**fields):
    body = copy.deepcopy(BASE)
    for k, v in fields.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    return body


VALID = [
    ("01-return-to-work-phased", changed(), "not-asked",
     ["Return-to-work plan from Sheffield Work and Health Service", "Re: Joanne Whitworth",
      "Phased return over four weeks", "No night shifts for the first month", "Jordan Reilly"]),
    ("02-workplace-adjustments", changed(kind="workplace-adjustments", plan=None,
                                         summary="Joanne is back at work and managing; these changes would help her stay.",
                                         adjustments=["Regular one-to-one meetings with her manager", "Flexible start times on therapy days"]),
     "not-asked",
     ["Workplace adjustments recommended by Sheffield Work and Health Service", "Flexible start times on therapy days"]),
    # The adviser asks to name her condition; her consent does not cover telling her employer.
    ("03-conditions-asked-not-covered", changed(includeHealthConditions=True), "left-out",
     ["Return-to-work plan from Sheffield Work and Health Service"]),
]

INVALID = [
    ("04-return-to-work-without-plan", changed(plan=None), ["plan"]),
    ("05-no-contact-address-and-empty-summary", changed(employer={"name": "HR", "email": "the HR office"}, summary=" "),
     ["employer.email", "summary"]),
    ("06-adjustments-letter-listing-none", changed(kind="workplace-adjustments", adjustments=[]), ["adjustments"]),
    ("07-unknown-kind", changed(kind="dismissal-letter"), ["kind"]),
]


def write(name, body, expected):
    (OUT / f"{name}.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    (OUT / f"{name}.expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, body, conditions, contains in VALID:
        write(name, body, {"status": 201, "healthConditions": conditions, "pdfContains": contains, "pdfLacks": NEVER})
    for name, body, expressions in INVALID:
        write(name, body, {"status": 422, "expressions": expressions})


if __name__ == "__main__":
    main()
