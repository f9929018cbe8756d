#!/usr/bin/env python3
"""Gives a gateway the fixtures' data to count: the valid practice referrals and BaRS referral
messages, each sent as the practice that sends it, and then, for the practice referrals, what
their services did next (triage, first contact, discharge, a follow-up four weeks on) in a fixed
pattern, so the reports and the dashboard have every kind of figure to show.

    python3 tools/load_fixtures.py [--base http://127.0.0.1:8080] [--whg target/release/whg]

Run it from the directory the gateway was started in: tokens come from `whg token`, signed with
that gateway's key (data/token-signing-key.pem). Standard library only.
"""

import argparse
import datetime
import json
import pathlib
import subprocess
import sys
import urllib.error
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="http://127.0.0.1:8080")
    parser.add_argument("--whg", default=str(ROOT / "target" / "release" / "whg"))
    parser.add_argument("--config", help="the gateway's configuration file, for whg token")
    args = parser.parse_args()
    tokens: dict[tuple[str, str], str] = {}

    def token(role: str, org: str) -> str:
        if (role, org) not in tokens:
            tokens[(role, org)] = subprocess.run(
                [args.whg, "token", "--role", role, "--org", org]
                + (["--config", args.config] if args.config else []),
                check=True, capture_output=True, text=True,
            ).stdout.strip()
        return tokens[(role, org)]

    def post(path: str, body: dict, who: tuple[str, str], media: str = "application/json"):
        request = urllib.request.Request(
            args.base + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {token(*who)}", "Content-Type": media},
        )
        try:
            with urllib.request.urlopen(request) as answer:
                return answer.status, answer.headers.get("Location", "")
        except urllib.error.HTTPError as e:
            return e.code, ""

    today = datetime.date.today()
    sent = steps = 0
    problems = []
    fixtures = sorted((ROOT / "fixtures" / "referrals" / "valid").glob("*.json"))
    for n, path in enumerate(f for f in fixtures if not f.name.endswith(".expected.json")):
        body = json.loads(path.read_text())
        # Each as its sender: its practice, or a referrer of another kind (its kind is its role).
        if "practice" in body:
            sender = ("practice", body["practice"]["odsCode"])
        else:
            sender = (body["referringOrganisation"]["kind"], body["referringOrganisation"]["code"])
        status, location = post("/api/v1/referrals", body, sender)
        if status not in (200, 201):
            problems.append(f"{path.name}: HTTP {status}")
            continue
        sent += 1
        referral = location.rsplit("/", 1)[-1]
        service = ("service", body["targetService"])
        referred = datetime.date.fromisoformat(body["authoredOn"][:10])
        # What the service did: a fixed pattern over the fixtures, in order.
        fate = n % 6
        plan = []
        if fate == 1:
            plan.append(("triage", {"decision": "decline", "reason": "not-eligible", "criterion": "area"}, 0))
        elif fate != 0:
            days = {2: 3, 3: 10, 4: 6, 5: 20}[fate]
            plan += [("triage", {"decision": "accept"}, 0),
                     ("contacts", {"channel": "phone"}, days)]
            if fate != 3:
                outcome = "kept-job" if fate == 4 else "returned-to-work"
                plan += [("discharge", {"employmentOutcome": outcome}, days + 30),
                         ("follow-ups", {"interval": "4", "workStatus": "in-work-same-employer",
                                         "wellbeingScore": 24}, days + 58)]
        for step, step_body, after in plan:
            on = referred + datetime.timedelta(days=after)
            if on > today:
                break  # nothing is recorded in the future
            if step != "triage":
                step_body = {**step_body, "date": on.isoformat()}
            status, _ = post(f"/api/v1/referrals/{referral}/{step}", step_body, service)
            if status == 409 and step == "triage":
                break  # loaded before: the service has already acted on it
            if status != 200:
                problems.append(f"{path.name}: {step}: HTTP {status}")
                break
            steps += 1
    for path in sorted((ROOT / "fixtures" / "messages" / "valid").glob("*.json")):
        if path.name.endswith(".expected.json"):
            continue
        body = json.loads(path.read_text())
        entries = {e.get("fullUrl"): e["resource"] for e in body["entry"]}
        header = next(r for r in entries.values() if r["resourceType"] == "MessageHeader")
        sender = entries[header["sender"]["reference"]]["identifier"][0]["value"]
        status, _ = post("/fhir/$process-message", body, ("practice", sender), "application/fhir+json")
        if status in (200, 201):
            sent += 1
        else:
            problems.append(f"{path.name}: HTTP {status}")
    for p in problems:
        print(f"load_fixtures: {p}", file=sys.stderr)
    print(f"load_fixtures: {sent} referrals sent to {args.base}, {steps} workflow steps recorded")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
