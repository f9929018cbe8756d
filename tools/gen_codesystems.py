#!/usr/bin/env python3
"""Writes the gateway's own CodeSystems and their ValueSets into profiles/.

The code lists are authored here, once, as data; the JSON files in profiles/ are what integrators
and the gateway read. Re-run after editing a list:  python3 tools/gen_codesystems.py
A Rust test checks that the practice JSON Schemas' enums match these CodeSystems exactly.
Sources for each list are cited from ../shared/domain/brief.md.
"""
import json
import pathlib

BASE = "https://fhir.work-health-gateway.org"
OUT = pathlib.Path(__file__).resolve().parent.parent / "profiles"

ABSENT = [
    ("prefer-not-to-say", "Prefer not to say", "The person was asked and chose not to answer."),
    ("not-recorded", "Not recorded", "The sender holds no answer: the question was not asked or not recorded."),
]

SYSTEMS = {
    "fit-note-issuer-profession": (
        "Fit-note issuer profession",
        "Professions that may certify a Statement of Fitness for Work (MED3) since 1 July 2022 (standards 3.1, brief 3). "
        "Registers: GMC for doctors, NMC for nurses, HCPC for occupational therapists and physiotherapists, GPhC for pharmacists.",
        [
            ("doctor", "Doctor", "A registered medical practitioner (GMC)."),
            ("nurse", "Registered nurse", "A registered nurse (NMC)."),
            ("occupational-therapist", "Occupational therapist", "A registered occupational therapist (HCPC)."),
            ("pharmacist", "Pharmacist", "A registered pharmacist (GPhC)."),
            ("physiotherapist", "Physiotherapist", "A registered physiotherapist (HCPC)."),
        ],
    ),
    "fit-note-assessment-method": (
        "Fit-note assessment method",
        "How the issuer assessed the person for a fit note: the form's \"I assessed your case on … by\" (standards 3.1). "
        "E-consultations issue fit notes without a conversation (brief 3).",
        [
            ("face-to-face", "Face to face", ""),
            ("telephone", "Telephone", ""),
            ("video", "Video consultation", ""),
            ("written-report", "Written report", "From a report by another doctor or health professional, without seeing the person."),
            ("e-consultation", "E-consultation", "An online consultation form, with no conversation."),
        ],
    ),
    "fit-note-component": (
        "Fit-note component",
        "Parts of a fit note that have no SNOMED CT concept, carried as Observation.component (standards 3.3).",
        [
            ("assessed-on", "Date assessed", "The date the issuer assessed the person (valueDateTime)."),
            ("assess-again", "Issuer will assess again", "Whether the issuer will need to assess fitness for work again at the end of the period (valueBoolean)."),
            ("absence-start", "Sickness absence started", "First day of the spell of sickness absence the note belongs to, when the sender knows it (valueDateTime)."),
        ],
    ),
    "eligibility-criterion": (
        "Eligibility criterion",
        "Criteria a work-and-health service may set for referrals (brief 2.3): each service declares which it uses, in versioned configuration.",
        [
            ("age", "Age range", "The person's age on the day of referral is within the service's range (working age)."),
            ("area", "Lives in the area", "The person's postcode district is one the service covers."),
            ("registered-practice", "Registered with a listed practice", "The referring or registered GP practice is in the service's list."),
            ("employment", "Employment status", "The person's employment status is one the service supports (e.g. in work, off sick, short-term not in work)."),
            ("long-term-condition", "Long-term condition", "The person has at least one health condition recorded."),
            ("recent-fit-note", "Recent fit note", "The person has had a fit note within the service's window (e.g. six months)."),
            ("right-to-work", "Right to work in the UK", "The referrer states the person has the right to work in the UK."),
        ],
    ),
    "eligibility-result": (
        "Eligibility result",
        "The result of checking one eligibility criterion, or all of them.",
        [
            ("met", "Met", "The information given shows the criterion is met."),
            ("not-met", "Not met", "The information given shows the criterion is not met."),
            ("unknown", "Unknown", "The information needed was not given."),
        ],
    ),
    "referral-prompt-input": (
        "Referral prompt input",
        "What a referral-prompt Task carries in Task.input.",
        [
            ("service", "Service", "The work-and-health service the practice is asked to consider (valueReference by identifier)."),
            ("rule", "Rule and version", "The service's prompt rule that fired, as id|version (valueString)."),
            ("fit-note", "Fit note", "A fit note that fired the rule (valueReference)."),
        ],
    ),
    "referral-decline-reason": (
        "Referral decline reason",
        "Why a work-and-health service declined a referral. Returned to the referrer as inappropriate-referral feedback (brief 5: "
        "\"Provide information on inappropriate referrals to referral agencies to increase the quality of referrals\").",
        [
            ("not-eligible", "Not eligible", "The person does not meet the service's eligibility criteria; the failed criterion is named (eligibility-criterion)."),
            ("needs-clinical-care", "Needs clinical care first", "The person needs clinical treatment before work-and-health support can help."),
            ("supported-elsewhere", "Already supported by another service", "The person already has this kind of support from another service."),
            ("occupational-health-better", "Employer's occupational health fits better", "The person's employer offers occupational health support that fits their need better."),
            ("duplicate", "Duplicate referral", "The person was already referred to the service for the same need."),
            ("person-declined", "Person declined", "The person chose not to take up the service."),
            ("not-contactable", "Could not be contacted", "The service tried and could not reach the person."),
            ("other", "Other", "Another reason, given in the note."),
        ],
    ),
    "referral-workflow-status": (
        "Referral workflow status",
        "Where a referral stands in a work-and-health service, as Task.businessStatus on the referral's workflow Task, so the "
        "referrer can see received / triaged / contacted / seen / declined / discharged (brief 5, 6).",
        [
            ("received", "Received", "The referral is stored and waiting for triage."),
            ("accepted", "Accepted", "Triage accepted the referral; the service will contact the person."),
            ("declined", "Declined", "Triage declined the referral, with a coded reason returned to the referrer."),
            ("contacted", "Contacted", "The service has made first contact with the person (the two-week target is measured to this)."),
            ("in-support", "In support", "The person has had an appointment or support from the service."),
            ("discharged", "Discharged", "The person's support has ended, with outcomes recorded."),
            ("withdrawn", "Withdrawn by the referrer", "The referrer cancelled the referral (a BaRS cancellation: ServiceRequest revoked, or entered-in-error if it was sent by mistake) before the service's work with the person ended."),
        ],
    ),
    "contact-channel": (
        "Contact channel",
        "How an adviser and the person met or spoke (brief 6: face-to-face, telephone and video; the mode should be recorded).",
        [
            ("in-person", "In person", ""),
            ("phone", "Telephone", ""),
            ("video", "Video", ""),
            ("email", "E-mail", "Written contact by e-mail or secure message."),
        ],
    ),
    "support-given": (
        "Support given",
        "Support a work-and-health adviser gave the person (brief 5, 6: letters to employers, action and return-to-work plans, "
        "workplace adjustments, signposting, case management).",
        [
            ("advice-session", "Advice session", "One-to-one advice about work and health."),
            ("action-plan", "Action plan", "An action or support plan agreed with the person."),
            ("return-to-work-plan", "Return-to-work plan", "A plan for a phased or adjusted return to work."),
            ("workplace-adjustments", "Workplace adjustments", "Recommended or negotiated adjustments at work."),
            ("employer-liaison", "Employer liaison", "Contact with the employer or manager, with the person's agreement."),
            ("employer-letter", "Letter to employer", "A letter to the employer, e.g. on adjustments or legal obligations."),
            ("employment-rights", "Employment rights advice", "Advice on employment rights and the employer's duties."),
            ("financial-advice", "Benefits or financial advice", "Advice on benefits, sick pay or money."),
            ("signposting", "Signposting", "Referral or signposting to another service (e.g. talking therapies, social prescribing)."),
            ("self-management", "Self-management support", "Support to manage a health condition at work."),
            ("job-search", "Job search support", "Help to find new work."),
            ("case-management", "Case management", "Coordination of support by a named adviser."),
        ],
    ),
    "employment-outcome": (
        "Employment outcome at discharge",
        "The person's work situation when support ended. Leaving a job can be a positive outcome (brief 6: 000:886), so it has its own code.",
        [
            ("kept-job", "Stayed in work", "Remained in their job."),
            ("returned-to-work", "Returned to work", "Returned to work after sickness absence."),
            ("new-job", "Started a new job", ""),
            ("left-job-positive", "Left job (positive outcome)", "Left a job that was harming their health, by their own choice."),
            ("still-off-sick", "Still off sick", "Still absent from work through sickness."),
            ("not-working", "Not working", "Not in work at discharge."),
        ],
    ),
    "health-outcome": (
        "Health and wellbeing outcome at discharge",
        "Changes the person reports when support ends (brief 6: WHS survey items).",
        [
            ("managing-health-better", "Managing health better", "Better able to manage their health condition."),
            ("fewer-gp-visits", "Fewer GP visits", "Visits their GP less often."),
            ("finances-improved", "Finances improved", "Their financial position improved."),
            ("mental-wellbeing-improved", "Mental wellbeing improved", ""),
            ("physical-health-improved", "Physical health improved", ""),
        ],
    ),
    "workflow-task-input": (
        "Referral workflow Task input and output",
        "What a referral's workflow Task carries in Task.input and Task.output.",
        [
            ("decline-reason", "Decline reason", "Why the referral was declined (valueCodeableConcept from referral-decline-reason)."),
            ("failed-criterion", "Failed eligibility criterion", "The criterion a not-eligible decline names (valueCodeableConcept from eligibility-criterion)."),
            ("first-contact", "First contact", "The encounter that was the service's first contact with the person (valueReference)."),
            ("appointment", "Appointment", "A later encounter with the person (valueReference)."),
            ("support-given", "Support given", "Support the adviser gave (valueCodeableConcept from support-given)."),
            ("employment-outcome", "Employment outcome", "The work outcome at discharge (valueCodeableConcept)."),
            ("health-outcome", "Health outcome", "A health or wellbeing outcome at discharge (valueCodeableConcept)."),
            ("letter", "Letter", "A letter the service sent about the referral (valueReference to the DocumentReference)."),
            ("ended-early-reason", "Support ended early", "Why support ended before the planned end (valueCodeableConcept from support-ended-reason)."),
            ("follow-up", "Follow-up outcome", "An outcome recorded weeks after discharge (valueReference to the follow-up Observation)."),
            ("follow-up-interval", "Follow-up interval", "Which follow-up a follow-up output is (valueCodeableConcept from follow-up-interval)."),
            ("nhs-number-to-trace", "NHS number to trace", "The person referred themselves and either gave no NHS number or gave one nobody has traced (valueString says which): trace it on the Personal Demographics Service before the person's records are joined to any others."),
        ],
    ),
    "support-ended-reason": (
        "Reason support ended early",
        "Why a person's support ended before the adviser and the person had planned: the drop-out reasons the evaluations could not report (brief 6: 001 on drop-out, 000 on disengagement).",
        [
            ("disengaged", "Disengaged", "The person stopped taking part and could not be contacted."),
            ("moved-away", "Moved away", "The person moved out of the service's area."),
            ("needs-changed", "Needs changed", "The person's needs changed so the service no longer fits (e.g. became too unwell to take part)."),
            ("referred-elsewhere", "Referred elsewhere", "Passed to another service better suited to the person's needs."),
            ("declined-further-support", "Declined further support", "The person chose to end support."),
            ("left-work", "Left work", "The person left work and the service supports people in work only."),
            ("other", "Other", "Another reason, stated in the note."),
        ],
    ),
    "follow-up-interval": (
        "Follow-up interval",
        "When after discharge a service asks what became of a person (brief 6: 004 on surveys at four months; 000 on outcomes after support). The number of weeks is the code.",
        [
            ("4", "4 weeks after discharge", ""),
            ("12", "12 weeks after discharge", ""),
            ("26", "26 weeks after discharge", ""),
        ],
    ),
    "follow-up-work-status": (
        "Work situation at follow-up",
        "The person's work situation when followed up after discharge.",
        [
            ("in-work-same-employer", "In work, same employer", "Working for the employer they had when referred."),
            ("in-work-new-employer", "In work, new employer", "Working, for a different employer."),
            ("off-sick", "Off sick", "Employed but absent from work through sickness."),
            ("left-work", "Left work", "No longer in work."),
            ("not-contactable", "Not contactable", "The service tried and could not reach the person."),
        ],
    ),
    "ethnic-group": (
        "Ethnic group (ONS Census 2021)",
        "The 19 ethnic groups of the ONS Census 2021 for England and Wales, which the WHS evaluators recommend (brief 6: 000:948, 953), with explicit answers for a question not answered. "
        "Carried on the Patient in the UK Core EthnicCategory extension beside the NHS Data Dictionary code it maps to (UKCore-EthnicCategoryEngland), so UK Core readers see the code they know.",
        [
            ("asian-bangladeshi", "Asian, Asian British or Asian Welsh: Bangladeshi", ""),
            ("asian-chinese", "Asian, Asian British or Asian Welsh: Chinese", ""),
            ("asian-indian", "Asian, Asian British or Asian Welsh: Indian", ""),
            ("asian-pakistani", "Asian, Asian British or Asian Welsh: Pakistani", ""),
            ("asian-other", "Asian, Asian British or Asian Welsh: Other Asian", ""),
            ("black-african", "Black, Black British, Black Welsh, Caribbean or African: African", ""),
            ("black-caribbean", "Black, Black British, Black Welsh, Caribbean or African: Caribbean", ""),
            ("black-other", "Black, Black British, Black Welsh, Caribbean or African: Other Black", ""),
            ("mixed-white-asian", "Mixed or Multiple ethnic groups: White and Asian", ""),
            ("mixed-white-black-african", "Mixed or Multiple ethnic groups: White and Black African", ""),
            ("mixed-white-black-caribbean", "Mixed or Multiple ethnic groups: White and Black Caribbean", ""),
            ("mixed-other", "Mixed or Multiple ethnic groups: Other Mixed or Multiple ethnic groups", ""),
            ("white-british", "White: English, Welsh, Scottish, Northern Irish or British", ""),
            ("white-irish", "White: Irish", ""),
            ("white-gypsy-irish-traveller", "White: Gypsy or Irish Traveller", ""),
            ("white-roma", "White: Roma", ""),
            ("white-other", "White: Other White", ""),
            ("other-arab", "Other ethnic group: Arab", ""),
            ("other-any", "Other ethnic group: Any other ethnic group", ""),
        ] + ABSENT,
    ),
    "disability-status": (
        "Disability (Equality Act 2010)",
        "Whether the person has a disability as the Equality Act 2010 defines it (a physical or mental impairment with a substantial and long-term adverse effect on day-to-day activities), asked as the GSS harmonised standard asks it (brief 6: 000:949), with explicit answers for a question not answered.",
        [
            ("limited-a-lot", "Disabled: day-to-day activities limited a lot", "A condition lasting or expected to last 12 months or more that reduces the person's ability to carry out day-to-day activities a lot."),
            ("limited-a-little", "Disabled: day-to-day activities limited a little", "As above, reducing day-to-day activities a little."),
            ("not-disabled", "Not disabled", "No such condition, or one that does not reduce day-to-day activities."),
        ] + ABSENT,
    ),
    "letter-delivery-state": (
        "Letter delivery state",
        "Where a letter to the referring practice stands in the gateway's outbox; carried as Communication.statusReason.",
        [
            ("queued", "Queued", "Waiting for its first or next attempt."),
            ("sent", "Sent", "Handed to the practice's channel; no acknowledgement yet."),
            ("received", "Received", "The practice's system acknowledged receipt (ITK3 20013)."),
            ("accepted", "Accepted", "The practice's system accepted the letter (ITK3 30001, or a FHIR 2xx)."),
            ("rejected", "Rejected", "The practice's system refused the letter permanently (a 4xx or a negative acknowledgement)."),
            ("dead", "Dead", "Attempts failed for the whole retry window; the service must send it another way."),
            ("escalated", "Escalated", "An urgent letter not acknowledged in time; someone must phone the practice."),
            ("cancelled", "Cancelled", "Not sent: the person's consent no longer allows it."),
        ],
    ),
    "record-origin": (
        "Record origin",
        "Who wrote a record the gateway holds, as a meta.tag the gateway sets itself (and removes from everything it receives), so that a resource type written both by referrers and by services (Encounter) is classed for consent by who wrote it.",
        [
            ("work-health-service", "Written by the work-and-health service", "A record of the service's own work with the person (a contact, support, an outcome): it reaches the referring practice only under the person's consent to feedback."),
        ],
    ),
    "letter-priority": (
        "Letter priority",
        "How fast a letter must reach the referring practice.",
        [
            ("routine", "Routine", ""),
            ("urgent", "Urgent (safeguarding)", "A safeguarding concern: sent ahead of routine letters and escalated if not acknowledged in time."),
        ],
    ),
    "task-code": (
        "Gateway task code",
        "What a FHIR Task created by the gateway asks for.",
        [
            ("referral-workflow", "Referral workflow", "The service's handling of a referral: triage, contact, support and discharge. businessStatus follows referral-workflow-status."),
            ("referral-prompt", "Consider a referral", "A fit-note rule of a work-and-health service fired: the practice is asked to consider referring the person. A prompt never refers anyone by itself (brief 3)."),
        ],
    ),
    "audit-event-subtype": (
        "Audit event subtype",
        "Gateway events recorded as AuditEvent.subtype where FHIR's restful-interaction codes do not fit (brief 4; standards 6.3).",
        [
            ("disclosure", "Disclosure decision", "Something about a person was to be sent out (letter, employer document); the consent decision made at the moment of sending."),
            ("consent-override", "Consent override", "A user acted against a person's consent decision for a stated reason."),
            ("evaluation-export", "Evaluation export", "A pseudonymised extract for evaluation was written."),
            ("aggregate-report", "Aggregate report", "A commissioner's or service manager's report was read: counts only, small numbers suppressed, no person in it."),
            ("sign-in", "Sign-in", "A person signed in to the dashboard at the configured OpenID Connect provider, or was refused (outcome 4)."),
            ("sign-out", "Sign-out", "A person signed out of the dashboard."),
            ("alert-raised", "Alert raised", "An operational alert was raised for the on-call staff (a dead or escalated letter, a failing practice endpoint, the MESH mailbox): no personal data in it."),
            ("alert-acknowledged", "Alert acknowledged", "A person acknowledged an operational alert on the operations page."),
        ],
    ),
    "consent-recipient": (
        "Consent recipient",
        "Who may receive a person's information under a consent provision (brief 4: per recipient class). "
        "Carried in Consent.provision.actor.role alongside v3-ParticipationType IRCP; the actor reference "
        "names a specific organisation, or carries only a display for any organisation of the class.",
        [
            ("referring-practice", "Referring GP practice", "The person's GP practice, for feedback letters and outcomes: the practice that referred them, or, when they referred themselves, the practice they said they are registered with."),
            ("referrer", "Referring organisation", "The organisation that referred the person when it is neither their GP practice nor their employer (NHS Talking Therapies, physiotherapy, secondary care, a voluntary-sector organisation), for feedback letters and outcomes."),
            ("work-health-service", "Work-and-health service", "The service the person is referred to, and its advisers."),
            ("employer", "Employer", "The person's employer, manager or HR, including an employer that referred them. Disclosure also needs the person's approval of the specific document (brief 4)."),
            ("other-service", "Other named service", "Another service the person is signposted to, e.g. NHS Talking Therapies or Waiting Well."),
            ("union-representative", "Union representative", "The person's trade union representative (SOM case 2, brief 4)."),
            ("evaluation", "Evaluation and research", "Evaluators of the service, who receive only pseudonymised extracts (brief 4, research consent)."),
            ("dwp", "Department for Work and Pensions", "The DWP or Jobcentre Plus. Never a default recipient: needs its own consent (brief 4)."),
        ],
    ),
    "consent-data-class": (
        "Consent data class",
        "Classes of a person's information that a consent provision covers, carried in Consent.provision.class "
        "(brief 4: per data category; PAS limits advisers to fit notes).",
        [
            ("referral", "Referral details", "The referral: demographics, contact details, employment, support wanted, and who referred."),
            ("fit-note", "Fit notes", "Statements of fitness for work (MED3) and their history."),
            ("diagnosis", "Diagnoses", "Health conditions and diagnoses (Condition resources, and condition details within documents)."),
            ("adviser-letter", "Adviser letters", "Letters and reports written by the service's advisers."),
            ("outcome", "Outcomes", "Triage decisions, support given, discharge and work and health outcomes."),
        ],
    ),
    "consent-override-reason": (
        "Consent override reason",
        "Why a user acted against a person's consent decision (\"break glass\"). Each override also carries "
        "a free-text justification, expires, and is listed for review (brief 4, SOM cases 1 and 2).",
        [
            ("risk-to-person", "Risk to the person", "Serious risk of harm to the person themselves, e.g. suicidal ideation."),
            ("risk-to-others", "Risk to others", "Serious risk of harm to other people, e.g. a safety-critical worker who may be unfit for duty."),
            ("legal-duty", "Legal duty", "Disclosure is required by law or by a court order."),
        ],
    ),
    "referral-route": (
        "Referral route",
        "Who or what sent the person to the service. Separate from the channel the referral arrived by. "
        "From the Sheffield WHS route table (brief 1.1) and WorkWell's planned routes (brief 1.3).",
        [
            ("gp", "GP", "Referred by a general practitioner."),
            ("other-primary-care", "Other primary-care clinician", "Practice nurse, physiotherapist, occupational therapist, pharmacist or other clinician working in general practice."),
            ("talking-therapies", "Talking Therapies", "NHS Talking Therapies (formerly IAPT) worker."),
            ("secondary-care", "Secondary care", "Specialist or hospital service (e.g. stroke pathway, cancer nurse specialist, long COVID clinic)."),
            ("voluntary-sector", "Voluntary sector", "Voluntary, community or social enterprise organisation, social prescriber or link worker."),
            ("employer", "Employer", "The person's employer, manager or HR."),
            ("self-referral", "Self-referral", "The person referred themselves."),
            ("other", "Other", "Any other source; describe it in routeDetail."),
        ],
    ),
    "referrer-profession": (
        "Referrer profession",
        "Profession of the person making a referral (brief 1.1, 9). Professional registers: GMC for GPs, NMC for nurses, HCPC for physiotherapists and occupational therapists, GPhC for pharmacists.",
        [
            ("gp", "General practitioner", ""),
            ("practice-nurse", "Practice nurse", ""),
            ("physiotherapist", "Physiotherapist", ""),
            ("occupational-therapist", "Occupational therapist", ""),
            ("pharmacist", "Pharmacist", ""),
            ("talking-therapies-worker", "Talking Therapies worker", ""),
            ("mental-health-worker", "Mental health worker", ""),
            ("social-prescriber", "Social prescriber or link worker", ""),
            ("other", "Other", ""),
        ],
    ),
    "employment-status": (
        "Employment status",
        "Employment status at referral, after the Sheffield WHS CRM vocabulary (brief 2.1). Separates employed and at work "
        "from employed but off sick, and work-related ill health from other ill health.",
        [
            ("employed-at-work", "Employed, at work", "In work (not off sick)."),
            ("self-employed", "Self-employed", "In work (not off sick)."),
            ("off-sick", "Off sick", "Employed but off sick; ill health not caused by work."),
            ("off-sick-work-related", "Off sick with work-related ill health", "Employed but off sick with ill health caused or made worse by work."),
            ("furloughed", "Furloughed", "In work (not off sick)."),
            ("employed-carer", "Employed and a carer", "In work (not off sick)."),
            ("employed-parent", "Employed and a parent", "In work (not off sick)."),
            ("unemployed", "Unemployed", ""),
            ("unemployed-health", "Unemployed because of ill health", ""),
            ("retired-age", "Retired (age or early)", ""),
            ("retired-health", "Retired (ill health)", ""),
            ("student", "Student", ""),
            ("carer", "Carer", ""),
            ("parenting", "Parenting", ""),
            ("other", "Other", ""),
        ] + ABSENT,
    ),
    "employer-size-band": (
        "Employer size band",
        "Number of employees of the person's employer, in the bands the WHS evaluators recommend (brief 2.2).",
        [
            ("1-9", "1 to 9 employees", "Micro business."),
            ("10-49", "10 to 49 employees", "Small business."),
            ("50-249", "50 to 249 employees", "Medium business."),
            ("250+", "250 or more employees", "Large employer."),
            ("not-known", "Not known", "The person does not know."),
        ] + ABSENT,
    ),
    "employment-sector": (
        "Employment sector",
        "Sector of the person's most recent job, after the WHS CRM (brief 2.1, Table 5).",
        [
            ("health", "Health", ""),
            ("education", "Education", ""),
            ("retail-wholesale", "Retailing and wholesaling", ""),
            ("other-services", "Other services", ""),
            ("public-administration-defence", "Public administration and defence", ""),
            ("transport-communications", "Transport and communications", ""),
            ("business-services", "Business services", ""),
            ("manufacturing-metals", "Manufacturing of metals", ""),
            ("manufacturing-other", "Other manufacturing", ""),
            ("construction", "Construction", ""),
            ("hotels-catering", "Hotels and catering", ""),
            ("banking-insurance", "Banking and insurance", ""),
            ("defence-security", "Defence and security", ""),
            ("energy-water", "Energy and water", ""),
            ("agriculture-fishing-forestry", "Agriculture, fishing and forestry", ""),
            ("utilities", "Utilities", ""),
            ("arts-entertainment", "Arts and entertainment", ""),
            ("information-communication", "Information and communication", ""),
            ("mining-quarrying", "Mining and quarrying", ""),
            ("other", "Other", ""),
        ] + ABSENT,
    ),
    "contract-type": (
        "Contract type",
        "Nature of the person's employment contract; precarious and temporary work is a target group (brief 2.2).",
        [
            ("permanent", "Permanent", ""),
            ("fixed-term", "Fixed-term", ""),
            ("temporary-agency", "Temporary or agency", ""),
            ("zero-hours", "Zero-hours", ""),
            ("casual", "Casual or bank", ""),
            ("apprenticeship", "Apprenticeship", ""),
            ("self-employed", "Self-employed or contractor", ""),
            ("other", "Other", ""),
        ] + ABSENT,
    ),
    "occupational-health-access": (
        "Occupational health access",
        "Whether the person's employer provides occupational health (brief 2.4).",
        [
            ("yes", "Employer provides occupational health", ""),
            ("no", "Employer does not provide occupational health", ""),
            ("not-known", "Not known", "The person does not know."),
        ] + ABSENT,
    ),
    "health-condition-category": (
        "Health condition category",
        "Broad category of a health condition, from the WHS CRM (brief 2.1, Table 6) and the WorkWell survey (brief 2.4). "
        "Used when no SNOMED CT code is available, and alongside one for reporting.",
        [
            ("psychological", "Psychological / mental health", ""),
            ("musculoskeletal", "Muscles, joints or repetitive strain", ""),
            ("back", "Back", ""),
            ("nervous-system", "Brain, nerves or nervous system", ""),
            ("heart-circulation", "Heart or circulation", ""),
            ("injury", "Injury", ""),
            ("asthma", "Asthma", ""),
            ("chest", "Chest or breathing", ""),
            ("reproductive", "Reproductive or women's health (including menopause)", ""),
            ("skin", "Skin", ""),
            ("digestive", "Gut, stomach or digestive", ""),
            ("chronic-pain", "Chronic pain", ""),
            ("vibration-syndrome", "Vibration syndrome", ""),
            ("bladder-kidney", "Bladder or kidneys", ""),
            ("eyes", "Eyes", ""),
            ("nose-throat", "Nose or throat", ""),
            ("cognitive", "Cognitive", ""),
            ("autoimmune", "Auto-immune or immune system", ""),
            ("hormone-gland", "Hormone or gland (including diabetes)", ""),
            ("neurodiversity", "Neurodiversity", ""),
            ("physical-disability", "Physical disability", ""),
            ("sensory-impairment", "Sensory impairment", ""),
            ("learning-disability", "Learning disability", ""),
            ("cancer", "Cancer", ""),
            ("long-covid", "Long COVID", ""),
            ("other", "Other", ""),
        ],
    ),
    "workplace-exposure": (
        "Workplace exposure issue",
        "Issues experienced at work ('exposure issues') from the WHS CRM (brief 2.1, Table 7).",
        [
            ("stress", "Stress", ""),
            ("job-design", "Job design", ""),
            ("lifting", "Lifting", ""),
            ("noise", "Noise", ""),
            ("hours", "Hours", ""),
            ("accidents", "Accidents", ""),
            ("dust", "Dust", ""),
            ("chemicals", "Chemicals", ""),
            ("conflict-bullying", "Conflict or bullying", ""),
            ("fumes", "Fumes", ""),
            ("display-screens", "Display screen equipment (VDUs)", ""),
            ("vibration", "Vibration", ""),
            ("environment", "Working environment", ""),
            ("infections", "Infections", ""),
            ("solvents-oil", "Solvents or oil", ""),
            ("asbestos", "Asbestos", ""),
            ("radiation", "Radiation", ""),
            ("other", "Other", ""),
        ],
    ),
    "recorded-list-status": (
        "Recorded list status",
        "Whether a list of facts (health conditions, workplace exposures) was recorded, so that an empty list is never ambiguous (brief 2.2).",
        [
            ("recorded", "Recorded", "One or more items follow."),
            ("none", "None", "The person has none."),
        ] + ABSENT,
    ),
    "support-need": (
        "Support need",
        "What the person wants help with (brief 2, 5).",
        [
            ("stay-in-work", "Staying in work", ""),
            ("return-to-work", "Returning to work after sickness absence", ""),
            ("workplace-adjustments", "Workplace adjustments", ""),
            ("talking-to-employer", "Talking to my employer", ""),
            ("employment-rights", "Employment rights", ""),
            ("managing-health-at-work", "Managing my health at work", ""),
            ("return-to-work-plan", "A return-to-work plan", ""),
            ("job-change", "Changing job or career", ""),
            ("finances-benefits", "Finances and benefits advice", ""),
            ("confidence-wellbeing", "Confidence and wellbeing", ""),
            ("other", "Other", ""),
        ],
    ),
    "sex": (
        "Sex or gender as recorded",
        "Sex or gender as the practice records it, with explicit absent answers (brief 2.2, 8).",
        [
            ("female", "Female", ""),
            ("male", "Male", ""),
            ("other", "Other", "Including non-binary."),
        ] + ABSENT,
    ),
    "preferred-contact-method": (
        "Preferred contact method",
        "How the person prefers to be contacted; mapped to UK Core PreferredContactMethod (1 Letter, 3 Telephone, 4 E-mail, 9 SMS) on output.",
        [
            ("phone", "Telephone", ""),
            ("sms", "SMS", ""),
            ("email", "E-mail", ""),
            ("letter", "Letter", ""),
            ("no-preference", "No preference", ""),
        ] + ABSENT[1:],
    ),
    "observation-type": (
        "Work-and-health observation type",
        "Codes for the employment facts the gateway records as Observations. Local codes: no SNOMED CT or LOINC concept was verified for these; LOINC 11341-5 (History of Occupation) is used for the occupation Observation itself.",
        [
            ("employment-status", "Employment status", ""),
            ("employer-name", "Employer name", ""),
            ("employer-size", "Employer size band", ""),
            ("employment-sector", "Employment sector", ""),
            ("hours-per-week", "Hours worked per week", ""),
            ("contract-type", "Contract type", ""),
            ("occupational-health-access", "Employer provides occupational health", ""),
            ("sickness-absence-start", "Date current sickness absence started", ""),
            ("workplace-exposure", "Workplace exposure issue", ""),
            ("health-conditions", "Health conditions (when none or not given)", ""),
            ("right-to-work", "Right to work in the UK (as stated by the referrer)", ""),
            ("disability-status", "Disability (Equality Act 2010)", "The person's answer to the disability question (valueCodeableConcept from disability-status)."),
            ("follow-up-outcome", "Outcome at follow-up after discharge", "What became of the person weeks after support ended: components for the interval, the work situation and the wellbeing score."),
            ("follow-up-interval", "Follow-up interval", ""),
            ("follow-up-work-status", "Work situation at follow-up", ""),
            ("wellbeing-swemwbs", "Wellbeing score (SWEMWBS)", "The Short Warwick-Edinburgh Mental Wellbeing Scale total, 7 to 35 (valueInteger)."),
        ],
    ),
    "service-type": (
        "Work-and-health service type",
        "The kind of service a referral asks for.",
        [
            ("work-and-health-support", "Work and health support", "Advice and support to stay in or return to work with a health condition."),
        ],
    ),
}


def codesystem(name, title, description, concepts):
    return {
        "resourceType": "CodeSystem",
        "id": name,
        "url": f"{BASE}/CodeSystem/{name}",
        "version": "0.1.0",
        "name": "".join(w.capitalize() for w in name.split("-")),
        "title": title,
        "status": "draft",
        "experimental": False,
        "publisher": "Work and Health Gateway project",
        "description": description,
        "caseSensitive": True,
        "valueSet": f"{BASE}/ValueSet/{name}",
        "content": "complete",
        "count": len(concepts),
        "concept": [
            {k: v for k, v in (("code", c), ("display", d), ("definition", defn)) if v}
            for c, d, defn in concepts
        ],
    }


def valueset(name, title):
    return {
        "resourceType": "ValueSet",
        "id": name,
        "url": f"{BASE}/ValueSet/{name}",
        "version": "0.1.0",
        "name": "".join(w.capitalize() for w in name.split("-")),
        "title": title,
        "status": "draft",
        "experimental": False,
        "publisher": "Work and Health Gateway project",
        "description": f"All codes of the {title} code system.",
        "compose": {"include": [{"system": f"{BASE}/CodeSystem/{name}"}]},
    }


def main():
    OUT.mkdir(exist_ok=True)
    for name, (title, description, concepts) in SYSTEMS.items():
        for kind, doc in (("CodeSystem", codesystem(name, title, description, concepts)), ("ValueSet", valueset(name, title))):
            (OUT / f"{kind}-{name}.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {2 * len(SYSTEMS)} files to {OUT}")
    # The schemas' code enums are generated from the same lists, so the two cannot drift.
    for schema_path in sorted(OUT.glob("*.schema.json")):
        schema = json.loads(schema_path.read_text())
        defs = schema.setdefault("$defs", {})
        for name in sorted(used_code_refs(schema)):
            title, _, concepts = SYSTEMS[name]
            defs[name] = {
                "description": f"{title}: a code from {BASE}/CodeSystem/{name}",
                "enum": [c for c, _, _ in concepts],
            }
        schema_path.write_text(json.dumps(schema, indent=2, ensure_ascii=False) + "\n")
        print(f"updated code enums in {schema_path.name}")


def used_code_refs(node):
    """Names of code systems a schema refers to as #/$defs/<name>."""
    found = set()
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/") and ref[8:] in SYSTEMS:
            found.add(ref[8:])
        for v in node.values():
            found |= used_code_refs(v)
    elif isinstance(node, list):
        for v in node:
            found |= used_code_refs(v)
    return found


if __name__ == "__main__":
    main()
