#!/usr/bin/env python3
"""Authors the practice-referral fixtures in fixtures/referrals/.

Each case is a small change to a realistic base referral. The mix follows the Sheffield WHS
evaluation (../shared/domain/brief.md section 8): GP about 55-65% of referrals, self-referral 19%
in 2024, Talking Therapies about 12%; psychological conditions about 61-75%, musculoskeletal 16%,
back 7%; stress the commonest exposure; 60-65% women; ages across the 18-65+ bands; many
"prefer not to say" answers; plus the edge cases the brief lists (a person re-referred years later,
a business owner referring themselves, an interpreter needed, an urgent safeguarding concern).

All people, practices and clinicians are synthetic. NHS numbers are from the 999 test range and
pass Modulus 11. Practice ODS codes have the GP-practice shape but are not real practices' codes.

Run:  python3 tools/gen_referral_fixtures.py
then: UPDATE_EXPECTED=1 cargo test --test fixtures   (rewrites *.expected.json for valid cases;
      review the diff before committing)
"""
import copy
import pathlib

from fixture_io import write_fixtures

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "referrals"

BASE = {
    "referralId": "WHS-2026-0001",
    "authoredOn": "2026-03-02T09:40:00Z",
    "practice": {"odsCode": "C88901", "name": "Norfolk Park Medical Practice (synthetic)", "phone": "0114 496 0101"},
    "referrer": {
        "name": {"prefix": "Dr", "given": ["Amira"], "family": "Haddad"},
        "profession": "gp",
        "registration": {"register": "gmc", "number": "7012345"},
    },
    "route": "gp",
    "targetService": "sheffield-whs",
    "priority": "routine",
    "patient": {
        "nhsNumber": "9990000018",
        "nhsNumberVerification": "01",
        "name": {"given": ["Joanne"], "family": "Whitworth"},
        "birthDate": "1979-06-14",
        "sex": "female",
        "postcode": "S2 2RL",
        "addressLines": ["14 Granville Road", "Sheffield"],
        "phone": "07700 900123",
        "email": "joanne.whitworth@example.org",
        "preferredContact": "phone",
        "language": "en",
        "interpreterNeeded": False,
    },
    "employment": {
        "status": "off-sick-work-related",
        "jobTitle": "Healthcare assistant",
        "employerName": "Sheffield care home (synthetic)",
        "employerSize": "50-249",
        "sector": "health",
        "hoursPerWeek": 37.5,
        "contractType": "permanent",
        "sicknessAbsenceStart": "2026-02-09",
        "employerOccupationalHealth": "no",
    },
    "healthConditions": {
        "status": "recorded",
        "items": [{"category": "psychological", "snomedCode": "73595000", "text": "Work-related stress"}],
    },
    "workplaceExposures": {"status": "recorded", "items": [{"code": "stress", "text": "Staff shortages and double shifts"}]},
    "supportWanted": {"needs": ["return-to-work", "talking-to-employer"], "text": "Wants a phased return and help to raise workload with her manager."},
    "consent": {
        "patientAgreed": True,
        "recordedBy": {"name": {"prefix": "Dr", "given": ["Amira"], "family": "Haddad"}, "profession": "gp"},
        "recordedAt": "2026-03-02T09:35:00Z",
        "feedbackToPractice": True,
        "evaluation": True,
    },
}

GP_NURSE = {"name": {"given": ["Claire"], "family": "Bramall"}, "profession": "practice-nurse", "registration": {"register": "nmc", "number": "05I1234E"}}
PHYSIO = {"name": {"given": ["Tom"], "family": "Ecclesall"}, "profession": "physiotherapist", "registration": {"register": "hcpc", "number": "PH123456"}}
IAPT = {"name": {"given": ["Priya"], "family": "Shah"}, "profession": "talking-therapies-worker"}
LINK = {"name": {"given": ["Marcus"], "family": "Lowe"}, "profession": "social-prescriber"}
MH = {"name": {"given": ["Grace"], "family": "Okafor"}, "profession": "mental-health-worker"}
OT = {"name": {"given": ["Sian"], "family": "Parry"}, "profession": "occupational-therapist", "registration": {"register": "hcpc", "number": "OT54321"}}
PHARM = {"name": {"given": ["Imran"], "family": "Akhtar"}, "profession": "pharmacist", "registration": {"register": "gphc", "number": "2071234"}}
GP2 = {"name": {"prefix": "Dr", "given": ["Helen"], "family": "Carr"}, "profession": "gp", "registration": {"register": "gmc", "number": "6123456"}}


def cond(category, text, code=None):
    c = {"category": category, "text": text}
    if code:
        c["snomedCode"] = code
    return c


def case(patch):
    """Base referral with `patch` applied: dicts merge, everything else replaces, None deletes."""
    out = copy.deepcopy(BASE)

    def merge(dst, src):
        for k, v in src.items():
            if v is None:
                dst.pop(k, None)
            elif isinstance(v, dict) and isinstance(dst.get(k), dict) and not v.get("_replace"):
                merge(dst[k], v)
            else:
                dst[k] = {kk: vv for kk, vv in v.items() if kk != "_replace"} if isinstance(v, dict) else v

    merge(out, patch)
    if "referrer" in out and "consent" in out and patch.get("referrer") and "recordedBy" not in patch.get("consent", {}):
        r = out["referrer"]
        out["consent"]["recordedBy"] = {"name": r["name"], "profession": r["profession"]}
    return out


def person(nhs, given, family, born, sex, postcode, **extra):
    p = {"nhsNumber": nhs, "name": {"given": given, "family": family}, "birthDate": born, "sex": sex, "postcode": postcode}
    p.update(extra)
    return p


VALID = {
    "01-gp-work-stress-off-sick": {},
    "02-gp-depression-teacher-at-work": {
        "referralId": "WHS-2026-0002", "authoredOn": "2026-01-12T14:05:00Z",
        "consent": {"recordedAt": "2026-01-12T14:00:00Z"},
        "patient": person("9990378142", ["Daniel"], "Hague", "1988-02-03", "male", "S10 3BA", phone="0114 496 0222", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Secondary school teacher", "employerName": "Sheffield academy trust (synthetic)", "employerSize": "250+", "sector": "education", "hoursPerWeek": 40, "contractType": "permanent", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("psychological", "Depression", "35489007")]},
        "workplaceExposures": {"items": [{"code": "stress"}, {"code": "hours", "text": "Marking and planning most evenings"}]},
        "supportWanted": {"needs": ["stay-in-work", "managing-health-at-work"], "text": None},
    },
    "03-gp-low-back-pain-driver": {
        "referralId": "WHS-2025-0917", "authoredOn": "2025-09-17T11:20:00+01:00",
        "consent": {"recordedAt": "2025-09-17T11:15:00+01:00"},
        "patient": person("9990756279", ["Gary"], "Staniforth", "1969-11-30", "male", "S9 1XH", phone="07700 900456", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "HGV driver", "employerName": "Don Valley Haulage (synthetic)", "employerSize": "10-49", "sector": "transport-communications", "hoursPerWeek": 48, "contractType": "permanent", "sicknessAbsenceStart": "2025-08-25", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("back", "Low back pain", "279039007")]},
        "workplaceExposures": {"items": [{"code": "vibration"}, {"code": "lifting"}]},
        "supportWanted": {"needs": ["return-to-work", "workplace-adjustments"], "text": None},
    },
    "04-self-referral-business-owner": {
        "referralId": "SR-2026-0031", "authoredOn": "2026-04-20T19:12:00+01:00", "route": "self-referral",
        "referrer": None,
        "consent": {"recordedBy": {"name": {"given": ["Lena"], "family": "Morris"}, "profession": "other"}, "recordedAt": "2026-04-20T19:10:00+01:00"},
        "patient": person("9991134409", ["Lena"], "Morris", "1975-08-22", "female", "S11 8YL", phone="07700 900789", email="lena@example.org", preferredContact="email", addressLines=None),
        "employment": {"_replace": True, "status": "self-employed", "jobTitle": "Owner, independent cafe", "employerName": "Morris & Daughter Cafe (synthetic)", "employerSize": "1-9", "sector": "hotels-catering", "hoursPerWeek": 55, "contractType": "self-employed", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("psychological", "Anxiety", "197480006"), cond("reproductive", "Menopause symptoms affecting sleep and concentration")]},
        "workplaceExposures": {"items": [{"code": "stress"}, {"code": "hours"}]},
        "supportWanted": {"needs": ["managing-health-at-work", "finances-benefits"], "text": "Runs her own cafe; wants help pacing the business while managing symptoms."},
    },
    "05-talking-therapies-ptsd-paramedic": {
        "referralId": "TT-2026-0112", "authoredOn": "2026-02-03T10:00:00Z", "route": "talking-therapies", "referrer": IAPT,
        "consent": {"recordedAt": "2026-02-03T09:45:00Z"},
        "patient": person("9991512535", ["Kieran"], "Doyle", "1991-04-09", "male", "S6 3AE", phone="07700 900321", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick-work-related", "jobTitle": "Paramedic", "employerName": "Regional ambulance trust (synthetic)", "employerSize": "250+", "sector": "health", "hoursPerWeek": 37.5, "contractType": "permanent", "sicknessAbsenceStart": "2026-01-05", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("psychological", "Post-traumatic stress disorder", "47505003")]},
        "workplaceExposures": {"items": [{"code": "stress", "text": "Traumatic call-outs"}]},
        "supportWanted": {"needs": ["return-to-work", "return-to-work-plan"], "text": None},
    },
    "06-practice-nurse-diabetes-shift-worker": {
        "referralId": "WHS-2026-0140", "authoredOn": "2026-05-11T15:30:00+01:00", "route": "other-primary-care", "referrer": GP_NURSE,
        "consent": {"recordedAt": "2026-05-11T15:20:00+01:00"},
        "patient": person("9991890661", ["Mohammed"], "Rahman", "1972-12-01", "male", "S4 7AA", phone="07700 900654", email=None, addressLines=None, language="bn", interpreterNeeded=True, preferredContact="phone"),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Warehouse operative", "employerName": "Meadowhall distribution (synthetic)", "employerSize": "250+", "sector": "retail-wholesale", "hoursPerWeek": 40, "contractType": "zero-hours", "employerOccupationalHealth": "not-known"},
        "healthConditions": {"items": [cond("hormone-gland", "Type 2 diabetes", "44054006")]},
        "workplaceExposures": {"items": [{"code": "hours", "text": "Rotating night shifts"}]},
        "supportWanted": {"needs": ["workplace-adjustments", "talking-to-employer"], "text": "Needs Bengali interpreter."},
    },
    "07-physio-knee-osteoarthritis-construction": {
        "referralId": "WHS-2025-0588", "authoredOn": "2025-06-23T09:10:00+01:00", "route": "other-primary-care", "referrer": PHYSIO,
        "consent": {"recordedAt": "2025-06-23T09:00:00+01:00"},
        "patient": person("9992268794", ["Steven"], "Pearson", "1966-03-15", "male", "S13 8PL", phone="0114 496 0333", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Bricklayer", "employerName": "Handsworth Builders (synthetic)", "employerSize": "10-49", "sector": "construction", "hoursPerWeek": 45, "contractType": "casual", "sicknessAbsenceStart": "2025-05-30", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("musculoskeletal", "Osteoarthritis of knee", "239873007")]},
        "workplaceExposures": {"items": [{"code": "lifting"}, {"code": "environment", "text": "Kneeling on site"}]},
        "supportWanted": {"needs": ["job-change", "employment-rights"], "text": None},
    },
    "08-gp-prefer-not-to-say-answers": {
        "referralId": "WHS-2026-0201", "authoredOn": "2026-06-01T10:30:00+01:00",
        "consent": {"recordedAt": "2026-06-01T10:25:00+01:00"},
        "patient": person("9992646926", ["Sam"], "Riley", "1996-10-10", "prefer-not-to-say", "S1 4GT", email="sam.riley@example.org", preferredContact="email", addressLines=None, phone=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Call centre adviser", "employerSize": "prefer-not-to-say", "sector": "prefer-not-to-say", "contractType": "not-recorded", "employerOccupationalHealth": "not-recorded"},
        "healthConditions": {"_replace": True, "status": "prefer-not-to-say"},
        "workplaceExposures": {"_replace": True, "status": "prefer-not-to-say"},
        "supportWanted": {"needs": ["confidence-wellbeing"], "text": None},
    },
    "09-gp-urgent-suicidal-ideation": {
        "referralId": "WHS-2026-0233", "authoredOn": "2026-06-15T16:45:00+01:00", "priority": "urgent", "referrer": GP2,
        "consent": {"recordedAt": "2026-06-15T16:40:00+01:00"},
        "patient": person("9993025054", ["Rachel"], "Pryce", "1985-01-27", "female", "S8 0TY", phone="07700 900987", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick-work-related", "jobTitle": "Care coordinator", "employerName": "Community support charity (synthetic)", "employerSize": "50-249", "sector": "health", "hoursPerWeek": 30, "contractType": "fixed-term", "sicknessAbsenceStart": "2026-04-20", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("psychological", "Depression with suicidal thoughts; safety plan in place", "35489007")]},
        "workplaceExposures": {"items": [{"code": "conflict-bullying"}, {"code": "stress"}]},
        "supportWanted": {"needs": ["return-to-work", "employment-rights"], "text": "Week eight of sickness absence. GP reviewing weekly; please contact within 48 hours."},
    },
    "10-rereferral-2022": {
        "referralId": "WHS-2022-0415", "authoredOn": "2022-04-15T10:00:00+01:00",
        "consent": {"recordedAt": "2022-04-15T09:50:00+01:00"},
        "patient": person("9993403180", ["Andrew"], "Fenwick", "1970-07-07", "male", "S12 2DH", phone="0114 496 0444", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Steel plant operator", "employerName": "Tinsley steelworks (synthetic)", "employerSize": "250+", "sector": "manufacturing-metals", "hoursPerWeek": 42, "contractType": "permanent", "sicknessAbsenceStart": "2022-02-28", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("heart-circulation", "Hypertension", "38341003")]},
        "workplaceExposures": {"items": [{"code": "noise"}, {"code": "fumes"}]},
        "supportWanted": {"needs": ["return-to-work"], "text": None},
    },
    "11-rereferral-2026-same-person": {
        "referralId": "WHS-2026-0310", "authoredOn": "2026-07-06T11:00:00+01:00", "referrer": GP2,
        "consent": {"recordedAt": "2026-07-06T10:55:00+01:00"},
        "patient": person("9993403180", ["Andrew"], "Fenwick", "1970-07-07", "male", "S13 9AS", phone="07700 900111", email=None, addressLines=None, preferredContact="sms"),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Stores supervisor", "employerName": "Tinsley steelworks (synthetic)", "employerSize": "250+", "sector": "manufacturing-metals", "hoursPerWeek": 37, "contractType": "permanent", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("heart-circulation", "Hypertension", "38341003"), cond("psychological", "Stress at work", "73595000")]},
        "workplaceExposures": {"items": [{"code": "job-design"}]},
        "supportWanted": {"needs": ["stay-in-work"], "text": "Returning client: last supported in 2022 after a period off sick."},
    },
    "12-voluntary-sector-long-covid": {
        "referralId": "VCS-2026-0044", "authoredOn": "2026-03-23T13:00:00Z", "route": "voluntary-sector", "referrer": LINK,
        "routeDetail": "Social prescribing link worker, Primary Care Network",
        "consent": {"recordedAt": "2026-03-23T12:40:00Z"},
        "patient": person("9993781312", ["Beverley"], "Nuttall", "1964-05-19", "female", "S5 6HT", phone="0114 496 0555", email=None, addressLines=None, preferredContact="letter"),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "School administrator", "employerName": "Primary school (synthetic)", "employerSize": "10-49", "sector": "education", "hoursPerWeek": 25, "contractType": "permanent", "sicknessAbsenceStart": "2025-12-01", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("long-covid", "Long COVID with fatigue and brain fog"), cond("chronic-pain", "Fibromyalgia", "203082005")]},
        "workplaceExposures": {"_replace": True, "status": "none"},
        "supportWanted": {"needs": ["return-to-work", "return-to-work-plan", "workplace-adjustments"], "text": None},
    },
    "13-employer-referral-security-guard": {
        "referralId": "EMP-2026-0007", "authoredOn": "2026-08-04T09:00:00+01:00", "route": "employer", "referrer": None,
        "consent": {"recordedBy": {"name": {"given": ["Nadia"], "family": "Price"}, "profession": "other"}, "recordedAt": "2026-08-04T08:30:00+01:00"},
        "patient": person("9994159445", ["Neil"], "Oxley", "1981-09-03", "male", "S3 7QP", phone="07700 900222", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Security officer (night shifts)", "employerName": "City Centre Security Ltd (synthetic)", "employerSize": "50-249", "sector": "defence-security", "hoursPerWeek": 48, "contractType": "temporary-agency", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("chest", "Suspected obstructive sleep apnoea", "73430006")]},
        "workplaceExposures": {"items": [{"code": "hours"}]},
        "supportWanted": {"needs": ["workplace-adjustments", "managing-health-at-work"], "text": "Safety-critical role: employer HR asked for advice on adjustments."},
    },
    "14-gp-no-health-conditions-in-work": {
        "referralId": "WHS-2026-0350", "authoredOn": "2026-08-18T12:10:00+01:00",
        "consent": {"recordedAt": "2026-08-18T12:00:00+01:00"},
        "patient": person("9994537571", ["Olivia"], "Marsh", "2001-12-24", "female", "S10 2TN", phone="07700 900333", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Retail assistant", "employerName": "High street retailer (synthetic)", "employerSize": "250+", "sector": "retail-wholesale", "hoursPerWeek": 16, "contractType": "zero-hours", "employerOccupationalHealth": "not-known"},
        "healthConditions": {"_replace": True, "status": "none"},
        "workplaceExposures": {"items": [{"code": "conflict-bullying", "text": "Abuse from customers"}]},
        "supportWanted": {"needs": ["employment-rights", "confidence-wellbeing"], "text": None},
    },
    "15-gp-interpreter-polish": {
        "referralId": "WHS-2026-0361", "authoredOn": "2026-09-01T09:30:00+01:00",
        "consent": {"recordedAt": "2026-09-01T09:25:00+01:00"},
        "patient": person("9994915703", ["Katarzyna"], "Nowak", "1983-03-08", "female", "S2 4SU", phone="07700 900444", email=None, addressLines=None, language="pl", interpreterNeeded=True),
        "employment": {"_replace": True, "status": "off-sick-work-related", "jobTitle": "Food processing operative", "employerName": "Food factory (synthetic)", "employerSize": "250+", "sector": "manufacturing-other", "hoursPerWeek": 40, "contractType": "temporary-agency", "sicknessAbsenceStart": "2026-08-10", "employerOccupationalHealth": "not-known"},
        "healthConditions": {"items": [cond("musculoskeletal", "Repetitive strain injury of wrist")]},
        "workplaceExposures": {"items": [{"code": "job-design", "text": "Fast repetitive packing line"}]},
        "supportWanted": {"needs": ["return-to-work", "workplace-adjustments", "employment-rights"], "text": "Polish interpreter needed for all contact."},
    },
    "16-self-referral-student-unemployed-health": {
        "referralId": "SR-2025-0210", "authoredOn": "2025-11-03T20:45:00Z", "route": "self-referral", "referrer": None,
        "consent": {"recordedBy": {"name": {"given": ["Ayaan"], "family": "Iqbal"}, "profession": "other"}, "recordedAt": "2025-11-03T20:44:00Z"},
        "patient": person("9995293838", ["Ayaan"], "Iqbal", "2004-05-30", "male", "S7 1FL", phone="07700 900555", email="ayaan@example.org", preferredContact="sms", addressLines=None),
        "employment": {"_replace": True, "status": "unemployed-health"},
        "healthConditions": {"items": [cond("neurodiversity", "Autism and ADHD", "406506008"), cond("psychological", "Anxiety", "197480006")]},
        "workplaceExposures": {"_replace": True, "status": "not-recorded"},
        "supportWanted": {"needs": ["job-change", "confidence-wellbeing"], "text": "Lost last job after six weeks; wants help finding work that suits him."},
    },
    "17-secondary-care-stroke-return": {
        "referralId": "SEC-2026-0019", "authoredOn": "2026-02-25T14:00:00Z", "route": "secondary-care", "referrer": OT,
        "routeDetail": "Stroke pathway, teaching hospital",
        "consent": {"recordedAt": "2026-02-25T13:30:00Z"},
        "patient": person("9995671964", ["Patricia"], "Holmes", "1961-10-02", "female", "S35 1RD", phone="0114 496 0666", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Finance officer", "employerName": "City council (synthetic)", "employerSize": "250+", "sector": "public-administration-defence", "hoursPerWeek": 37, "contractType": "permanent", "sicknessAbsenceStart": "2025-11-17", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("nervous-system", "Stroke", "230690007")]},
        "workplaceExposures": {"_replace": True, "status": "none"},
        "supportWanted": {"needs": ["return-to-work-plan", "workplace-adjustments"], "text": None},
    },
    "18-talking-therapies-anxiety-nhs-worker": {
        "referralId": "TT-2026-0188", "authoredOn": "2026-04-07T11:30:00+01:00", "route": "talking-therapies", "referrer": IAPT,
        "consent": {"recordedAt": "2026-04-07T11:00:00+01:00"},
        "patient": person("9996050092", ["Hannah"], "Green", "1994-01-16", "female", "S10 5NA", phone="07700 900666", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Ward nurse", "employerName": "Teaching hospitals trust (synthetic)", "employerSize": "250+", "sector": "health", "hoursPerWeek": 37.5, "contractType": "permanent", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("psychological", "Generalised anxiety", "197480006")]},
        "workplaceExposures": {"items": [{"code": "stress"}, {"code": "hours"}]},
        "supportWanted": {"needs": ["stay-in-work", "talking-to-employer"], "text": "Prefers independent advice rather than trust occupational health."},
    },
    "19-gp-rheumatoid-arthritis-part-time": {
        "referralId": "WHS-2026-0402", "authoredOn": "2026-09-14T10:15:00+01:00", "referrer": GP2,
        "consent": {"recordedAt": "2026-09-14T10:10:00+01:00"},
        "patient": person("9996428222", ["Susan"], "Barker", "1958-06-21", "female", "S17 3LB", phone="0114 496 0777", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-carer", "jobTitle": "Pharmacy dispenser", "employerName": "Community pharmacy (synthetic)", "employerSize": "1-9", "sector": "health", "hoursPerWeek": 20, "contractType": "permanent", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("autoimmune", "Rheumatoid arthritis", "69896004")]},
        "workplaceExposures": {"items": [{"code": "job-design"}]},
        "supportWanted": {"needs": ["workplace-adjustments", "managing-health-at-work"], "text": "Also cares for her husband."},
    },
    "20-gp-breast-cancer-return": {
        "referralId": "WHS-2026-0415", "authoredOn": "2026-09-28T09:05:00+01:00",
        "consent": {"recordedAt": "2026-09-28T09:00:00+01:00"},
        "patient": person("9996806359", ["Michelle"], "Shaw", "1976-04-12", "female", "S6 5JJ", phone="07700 900777", email="michelle.shaw@example.org", addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Bank branch manager", "employerName": "High street bank (synthetic)", "employerSize": "250+", "sector": "banking-insurance", "hoursPerWeek": 37.5, "contractType": "permanent", "sicknessAbsenceStart": "2026-01-19", "employerOccupationalHealth": "yes"},
        "healthConditions": {"items": [cond("cancer", "Breast cancer, completed treatment", "254837009")]},
        "workplaceExposures": {"_replace": True, "status": "none"},
        "supportWanted": {"needs": ["return-to-work-plan", "talking-to-employer"], "text": None},
    },
    "21-gp-multiple-sclerosis-self-employed": {
        "referralId": "WHS-2026-0433", "authoredOn": "2026-10-05T14:20:00+01:00",
        "consent": {"recordedAt": "2026-10-05T14:15:00+01:00"},
        "patient": person("9997184483", ["Owen"], "Gillespie", "1987-08-08", "male", "S11 9PX", phone="07700 900888", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "self-employed", "jobTitle": "Electrician", "employerSize": "1-9", "sector": "construction", "hoursPerWeek": 45, "contractType": "self-employed", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("nervous-system", "Multiple sclerosis", "24700007")]},
        "workplaceExposures": {"items": [{"code": "lifting"}, {"code": "dust"}]},
        "supportWanted": {"needs": ["managing-health-at-work", "finances-benefits"], "text": None},
    },
    "22-pharmacist-asthma-cleaner": {
        "referralId": "WHS-2026-0447", "authoredOn": "2026-10-12T12:00:00+01:00", "route": "other-primary-care", "referrer": PHARM,
        "consent": {"recordedAt": "2026-10-12T11:50:00+01:00"},
        "patient": person("9997562615", ["Tendai"], "Moyo", "1990-02-14", "other", "S3 8EN", phone="07700 900999", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "employed-at-work", "jobTitle": "Office cleaner", "employerName": "Facilities contractor (synthetic)", "employerSize": "250+", "sector": "business-services", "hoursPerWeek": 25, "contractType": "zero-hours", "employerOccupationalHealth": "not-known"},
        "healthConditions": {"items": [cond("asthma", "Asthma worse at work", "195967001")]},
        "workplaceExposures": {"items": [{"code": "chemicals", "text": "Cleaning sprays"}]},
        "supportWanted": {"needs": ["workplace-adjustments", "employment-rights"], "text": None},
    },
    "23-workwell-south-tyneside-mental-health-worker": {
        "referralId": "WW-ST-2026-0091", "authoredOn": "2026-05-19T10:40:00+01:00", "route": "gp", "targetService": "workwell-south-tyneside", "referrer": MH,
        "practice": {"odsCode": "A88901", "name": "Harton Lane Surgery (synthetic)", "phone": "0191 496 0101"},
        "consent": {"recordedAt": "2026-05-19T10:30:00+01:00"},
        "patient": person("9997940741", ["Liam"], "Robson", "1999-09-19", "male", "NE33 4PL", phone="07700 900135", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Shipyard fabricator", "employerName": "Tyneside engineering (synthetic)", "employerSize": "50-249", "sector": "manufacturing-metals", "hoursPerWeek": 39, "contractType": "fixed-term", "sicknessAbsenceStart": "2026-04-27", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("psychological", "Low mood and anxiety")]},
        "workplaceExposures": {"items": [{"code": "noise"}, {"code": "stress"}]},
        "supportWanted": {"needs": ["return-to-work"], "text": "Also on the Waiting Well programme for an orthopaedic assessment."},
    },
    "24-pas-county-durham-three-fit-notes": {
        "referralId": "PAS-2026-0577", "authoredOn": "2026-06-29T09:50:00+01:00", "targetService": "pas-county-durham", "referrer": GP2,
        "practice": {"odsCode": "A84901", "name": "Durham market town practice (synthetic)", "phone": "0191 496 0202"},
        "consent": {"recordedAt": "2026-06-29T09:45:00+01:00"},
        "patient": person("9998318874", ["Carol"], "Dunn", "1967-12-05", "female", "DH1 3LE", phone="0191 496 0303", email=None, addressLines=None),
        "employment": {"_replace": True, "status": "off-sick", "jobTitle": "Care worker", "employerName": "Home care agency (synthetic)", "employerSize": "50-249", "sector": "health", "hoursPerWeek": 30, "contractType": "zero-hours", "sicknessAbsenceStart": "2026-03-16", "employerOccupationalHealth": "no"},
        "healthConditions": {"items": [cond("back", "Chronic low back pain", "279039007"), cond("psychological", "Depression", "35489007")]},
        "workplaceExposures": {"items": [{"code": "lifting", "text": "Moving and handling without hoists"}]},
        "supportWanted": {"needs": ["return-to-work", "job-change"], "text": "Third consecutive fit note issued today."},
    },
    "25-workwell-north-cumbria-not-recorded-status": {
        "referralId": "WW-NC-2026-0033", "authoredOn": "2026-10-20T15:00:00+01:00", "targetService": "workwell-north-cumbria", "referrer": GP2,
        "practice": {"odsCode": "A82901", "name": "Carlisle city practice (synthetic)", "phone": "01228 496 010"},
        "consent": {"recordedAt": "2026-10-20T14:55:00+01:00"},
        "patient": person("9999075134", ["Jonathan"], "Armstrong", "1953-04-30", "male", "CA1 1RR", phone="01228 496 011", email=None, addressLines=None, preferredContact="not-recorded"),
        "employment": {"_replace": True, "status": "not-recorded"},
        "healthConditions": {"_replace": True, "status": "not-recorded"},
        "workplaceExposures": {"_replace": True, "status": "not-recorded"},
        "supportWanted": {"needs": ["other"], "text": "Age 73, still working part-time on a farm; details to be taken at first contact."},
    },
    "26-working-win-self-referral-carer": {
        "referralId": "WWIN-2026-0012", "authoredOn": "2026-07-21T18:30:00+01:00", "route": "self-referral", "targetService": "working-win", "referrer": None,
        "consent": {"recordedBy": {"name": {"given": ["Zainab"], "family": "Hussain"}, "profession": "other"}, "recordedAt": "2026-07-21T18:29:00+01:00"},
        "practice": {"odsCode": "C87901", "name": "Rotherham practice (synthetic)"},
        "patient": person("9999453260", ["Zainab"], "Hussain", "1980-11-11", "female", "S65 1DA", phone="07700 900246", email=None, addressLines=None, language="ur", interpreterNeeded=False, preferredContact="phone"),
        "employment": {"_replace": True, "status": "carer"},
        "healthConditions": {"items": [cond("psychological", "Stress and low mood", "73595000")]},
        "workplaceExposures": {"_replace": True, "status": "none"},
        "supportWanted": {"needs": ["job-change", "confidence-wellbeing"], "text": "Caring for her mother; wants part-time work."},
    },
    "27-gp-equality-monitoring-answered": {
        "referralId": "WHS-2026-0027", "authoredOn": "2026-09-08T10:15:00+01:00",
        "consent": {"recordedAt": "2026-09-08T10:10:00+01:00"},
        "patient": person("9990000204", ["Ilinca"], "Dumitru", "1991-05-19", "female", "S4 7QQ", phone="07700 900321", email=None, addressLines=None,
                          ethnicity="white-roma", disability="limited-a-little"),
        "employment": {"employerSize": "prefer-not-to-say"},
    },
    "28-gp-equality-monitoring-declined": {
        "referralId": "WHS-2026-0028", "authoredOn": "2026-09-09T11:30:00+01:00",
        "consent": {"recordedAt": "2026-09-09T11:25:00+01:00"},
        "patient": person("9990000212", ["Kwame"], "Asante", "1984-12-02", "male", "S3 8AB", phone="07700 900322", email=None, addressLines=None,
                          ethnicity="prefer-not-to-say", disability="prefer-not-to-say"),
    },
}

# Invalid cases: the referral, and every issue the gateway must report as (expression, code).
INVALID = {
    "01-nhs-number-check-digit": (
        {"patient": {"nhsNumber": "9990000019"}},
        [("patient.nhsNumber", "invariant")],
    ),
    "02-nhs-number-too-short": (
        {"patient": {"nhsNumber": "99900000"}},
        [("patient.nhsNumber", "value")],
    ),
    "03-ods-code-not-a-practice": (
        {"practice": {"odsCode": "RHQ"}},
        [("practice.odsCode", "value")],
    ),
    "04-birth-date-in-future": (
        {"patient": {"birthDate": "2099-01-01"}},
        [("patient.birthDate", "value")],
    ),
    "05-authored-in-future": (
        {"authoredOn": "2099-03-02T09:40:00Z"},
        [("authoredOn", "value")],
    ),
    "06-implausible-age": (
        {"patient": {"birthDate": "2017-05-01"}},
        [("patient.birthDate", "value")],
    ),
    "07-impossible-date": (
        {"patient": {"birthDate": "1979-02-30"}},
        [("patient.birthDate", "value")],
    ),
    "08-unknown-route-code": (
        {"route": "jobcentre"},
        [("route", "code-invalid")],
    ),
    "09-missing-required-fields": (
        {"patient": {"name": None}, "consent": None},
        [("patient.name", "required"), ("consent", "required")],
    ),
    "10-misspelt-field": (
        {"patient": {"nhsNumber": None, "nhsnumber": "9990000018"}},
        [("patient.nhsNumber", "required"), ("patient.nhsnumber", "structure")],
    ),
    "11-gp-without-registration": (
        {"referrer": {"registration": None}},
        [("referrer.registration", "required")],
    ),
    "12-nurse-with-gmc-number": (
        {"referrer": {"name": {"given": ["Claire"], "family": "Bramall"}, "profession": "practice-nurse", "registration": {"register": "gmc", "number": "7012345"}}},
        [("referrer.registration.register", "business-rule")],
    ),
    "13-off-sick-without-absence-start": (
        {"employment": {"sicknessAbsenceStart": None}},
        [("employment.sicknessAbsenceStart", "required")],
    ),
    "14-conditions-recorded-but-empty": (
        {"healthConditions": {"_replace": True, "status": "recorded", "items": []}},
        [("healthConditions.items", "required")],
    ),
    "15-patient-did-not-agree": (
        {"consent": {"patientAgreed": False}},
        [("consent.patientAgreed", "business-rule")],
    ),
    "16-unknown-service": (
        {"targetService": "leeds-whs"},
        [("targetService", "not-found")],
    ),
    "17-snomed-check-digit": (
        {"healthConditions": {"items": [cond("psychological", "Depression", "35489008")]}},
        [("healthConditions.items[0].snomedCode", "code-invalid")],
    ),
    "18-several-problems-at-once": (
        {"patient": {"nhsNumber": "1234567890", "postcode": "SHEFFIELD"}, "route": "other", "employment": {"hoursPerWeek": 168}},
        [("patient.nhsNumber", "invariant"), ("patient.postcode", "value"), ("routeDetail", "required"), ("employment.hoursPerWeek", "value")],
    ),
    "19-consent-recorded-after-referral": (
        {"consent": {"recordedAt": "2026-03-02T11:00:00Z"}},
        [("consent.recordedAt", "business-rule")],
    ),
    "20-none-status-with-items": (
        {"workplaceExposures": {"status": "none"}},
        [("workplaceExposures.items", "invariant")],
    ),
    "21-wrong-types": (
        {"patient": {"interpreterNeeded": "no"}, "employment": {"hoursPerWeek": "full time"}},
        [("patient.interpreterNeeded", "structure"), ("employment.hoursPerWeek", "structure")],
    ),
    "22-registration-number-format": (
        {"referrer": {"registration": {"register": "gmc", "number": "GMC701"}}},
        [("referrer.registration.number", "value")],
    ),
    "23-verification-says-no-nhs-number": (
        {"patient": {"nhsNumberVerification": "07"}},
        [("patient.nhsNumberVerification", "business-rule")],
    ),
    "24-monitoring-codes-unknown": (
        {"patient": {"ethnicity": "white", "disability": "yes"}},
        [("patient.ethnicity", "code-invalid"), ("patient.disability", "code-invalid")],
    ),
}


def with_own_id(name, patch):
    """An invalid fixture with a referralId of its own (unless it is about the id): sent one after
    another, each gets its documented error, never a 409 for an id an earlier one used."""
    if "referralId" in patch:
        return patch
    return {**patch, "referralId": f"WHS-2026-INV-{name[:2]}"}


def main():
    write_fixtures(
        ROOT,
        {n: case(p) for n, p in VALID.items()},
        {n: (case(with_own_id(n, p)), 422, issues) for n, (p, issues) in INVALID.items()},
    )
    print(f"{len(VALID)} valid and {len(INVALID)} invalid referrals in {ROOT}")


if __name__ == "__main__":
    main()
