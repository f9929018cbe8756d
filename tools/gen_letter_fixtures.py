#!/usr/bin/env python3
"""Writes fixtures/letters/: adviser letters for each discharge outcome, triage declines for each
decline reason, and invalid ones, each with its expected result (<name>.expected.json).

Re-run after editing:  python3 tools/gen_letter_fixtures.py
The people and advisers are invented; the situations follow the evaluations (brief 5, 6).
"""
import json
import pathlib

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "letters"

OUTCOMES = {
    "kept-job": ("Stayed in work", "Worked with her manager on adjustments so she could stay in her post.", ["workplace-adjustments", "employer-liaison"], "action-plan"),
    "returned-to-work": ("Returned to work", "Returned after eight weeks off with a phased plan agreed with his employer.", ["return-to-work-plan", "employer-letter"], "return-to-work-plan"),
    "new-job": ("Started a new job", "Found a role with regular hours that suits his condition.", ["job-search", "advice-session"], "action-plan"),
    "left-job-positive": ("Left job (positive outcome)", "Chose to leave a job that was harming her health; now planning a career change.", ["employment-rights", "signposting"], "action-plan"),
    "still-off-sick": ("Still off sick", "Remains unfit for work; we continue to support contact with the employer.", ["case-management", "financial-advice"], "action-plan"),
    "not-working": ("Not working", "Not in work at discharge; referred on to employment support.", ["signposting", "financial-advice"], "action-plan"),
}

DECLINES = {
    "not-eligible": {"criterion": "area", "note": "Lives outside the service's area; the neighbouring service can help."},
    "needs-clinical-care": {"note": "Describes symptoms that need a clinical review before work support."},
    "supported-elsewhere": {"note": "Already working with the Individual Placement and Support team."},
    "occupational-health-better": {"note": "Employer has an occupational health service that covers this."},
    "duplicate": {"note": "Referred last week by the same practice."},
    "person-declined": {},
    "not-contactable": {"note": "Three calls and a letter over two weeks without an answer."},
    "other": {"note": "The person has moved abroad."},
}


def letter(outcome, summary, support, plan, priority="routine"):
    return {
        "priority": priority,
        "summary": summary,
        "supportGiven": support,
        "plan": {"type": plan, "text": "Week 1-2: agree adjustments. Week 3-4: review with the manager. Then monthly check-ins."},
        "recommendations": "No action needed from the practice unless symptoms change.",
        "outcomes": {"employment": outcome, "health": ["managing-health-better"]},
        "author": {"name": "Jordan Reilly", "role": "Work and health adviser"},
    }


def write(name, body, expected):
    (OUT / f"{name}.json").write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    (OUT / f"{name}.expected.json").write_text(json.dumps(expected, indent=2, ensure_ascii=False) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    n = 0
    for code, (display, summary, support, plan) in OUTCOMES.items():
        n += 1
        write(f"{n:02d}-letter-{code}", letter(code, summary, support, plan),
              {"route": "letters", "status": 201, "pdfContains": [display, "Jordan Reilly", summary]})
    n += 1
    write(f"{n:02d}-letter-urgent-safeguarding",
          letter("still-off-sick", "Disclosed a safeguarding concern at today's appointment; please review today.", ["case-management"], "action-plan", "urgent"),
          {"route": "letters", "status": 201, "pdfContains": ["URGENT", "safeguarding concern"]})
    for code, extra in DECLINES.items():
        n += 1
        body = {"decision": "decline", "reason": code, **extra}
        contains = ["Referral not accepted"] + ([extra["note"]] if "note" in extra else [])
        write(f"{n:02d}-decline-{code}", body, {"route": "triage", "status": 200, "pdfContains": contains})
    invalid = [
        ("letter-bad-codes", "letters", {**letter("rich", "x", ["magic"], "wish-list"), "author": {"name": ""}},
         ["author.name", "plan.type", "supportGiven[0]", "outcomes.employment"]),
        ("letter-empty-summary", "letters", {**letter("kept-job", "  ", [], "action-plan")}, ["summary"]),
        ("decline-not-eligible-without-criterion", "triage", {"decision": "decline", "reason": "not-eligible"}, ["criterion"]),
        ("decline-other-without-note", "triage", {"decision": "decline", "reason": "other"}, ["note"]),
        ("decline-unknown-reason", "triage", {"decision": "decline", "reason": "too-busy"}, ["reason"]),
    ]
    for name, route, body, expressions in invalid:
        n += 1
        write(f"{n:02d}-invalid-{name}", body, {"route": route, "status": 422, "expressions": expressions})
    print(f"wrote {n} fixtures to {OUT}")


if __name__ == "__main__":
    main()
