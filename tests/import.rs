//! `whg import`: history taken in line by line through the API's own use cases. Refused lines
//! are reported with the OperationOutcome the API would give and the rest stored; a second run
//! stores nothing twice; a run killed with SIGKILL resumes from its checkpoint without
//! duplicates; imported history raises referral prompts only for an absence still current.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use whg::auth::Principal;

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap()
}

fn report_of(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// How many fit notes of `nhs` the practice sees.
async fn notes_of(server: &Server, nhs: &str) -> u64 {
    let (status, bundle) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get(&format!(
            "/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}&_summary=count"
        ))
        .await;
    assert_eq!(status, 200, "{bundle}");
    bundle["total"].as_u64().unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn refused_lines_are_reported_as_the_api_would_answer_and_the_rest_stored_once() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fit-notes.ndjson");
    let mut lines = Vec::new();
    let mut expected_rejects = Vec::new();
    let valid = fixtures("fit-notes/valid");
    for f in &valid {
        lines.push(compact(&read_json(f)));
    }
    lines.push(String::new());
    for f in fixtures("fit-notes/invalid") {
        lines.push(compact(&read_json(&f)));
        expected_rejects.push((
            lines.len() as u64,
            expected_issue_keys(&read_json(&expected_path(&f))),
        ));
    }
    lines.push("{\"fitNoteId\": ".to_string());
    let not_json = lines.len() as u64;
    // A test organisation's line is sent under the test tenant's rules: synthetic people only
    // (this is the NHS's published example number, outside the 999 range).
    let mut real = read_json(&valid[0]);
    real["fitNoteId"] = json!("REAL-PERSON-1");
    real["patient"]["nhsNumber"] = json!("9434765919");
    lines.push(compact(&real));
    let real_person = lines.len() as u64;
    write_lines(&file, &lines);

    let out = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    let said = stderr(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "some lines were refused: {said}"
    );
    assert!(
        said.contains(&format!("{} imported", valid.len())),
        "{said}"
    );
    let report_path = dir.path().join("fit-notes.ndjson.rejected.ndjson");
    let report = report_of(&report_path);
    assert_eq!(report.len(), expected_rejects.len() + 2, "{report:?}");
    for (line, keys) in &expected_rejects {
        let row = report
            .iter()
            .find(|r| r["line"] == *line)
            .unwrap_or_else(|| panic!("line {line} not reported"));
        assert_eq!(row["outcome"]["resourceType"], "OperationOutcome");
        assert_eq!(&issue_keys(&row["outcome"]), keys, "line {line}: {row}");
    }
    let last = report.iter().find(|r| r["line"] == not_json).unwrap();
    assert_eq!(last["outcome"]["issue"][0]["code"], "structure");
    let refused = report.iter().find(|r| r["line"] == real_person).unwrap();
    assert_eq!(
        refused["outcome"]["issue"][0]["code"], "forbidden",
        "{refused}"
    );
    assert_eq!(notes_of(&server, "9434765919").await, 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&report_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the report is owner-only");
    }
    assert!(
        !dir.path().join("fit-notes.ndjson.checkpoint").exists(),
        "a finished run leaves no checkpoint"
    );
    // What the practice sees over the API is what it would have sent.
    let first = read_json(&valid[0]);
    let nhs = first["patient"]["nhsNumber"].as_str().unwrap();
    let before = notes_of(&server, nhs).await;
    assert!(before >= 1);

    // Again: every valid line is found stored, none stored twice.
    let again = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    let said = stderr(&again);
    assert_eq!(again.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("0 imported, {} already stored", valid.len())),
        "{said}"
    );
    assert_eq!(notes_of(&server, nhs).await, before);
    assert_eq!(
        report_of(&report_path).len(),
        expected_rejects.len() + 2,
        "the report is the run's, not both runs'"
    );

    // The audit trail names the import as the sender.
    let (_, audit) = server
        .as_(Principal::new(
            whg::auth::Role::InformationGovernance,
            "X26",
        ))
        .get("/fhir/AuditEvent?_count=100")
        .await;
    assert!(
        audit.to_string().contains("whg-import"),
        "imports are audited as the import client"
    );
}

/// A fit note for person `n`, the `k`th of the file.
fn generated_note(n: usize, from: chrono::NaiveDate) -> Value {
    let mut note =
        read_json(&root().join("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json"));
    note["fitNoteId"] = json!(format!("IMPORT-{n}"));
    note["patient"]["nhsNumber"] = json!(nhs_number(n));
    let to = from + chrono::Duration::days(13);
    note["period"] = json!({ "from": from.to_string(), "to": to.to_string() });
    note["assessment"]["date"] = json!(from.to_string());
    note["issuedOn"] = json!(from.to_string());
    note
}

#[tokio::test]
async fn a_run_killed_mid_file_resumes_from_its_checkpoint_without_duplicates() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("history.ndjson");
    let checkpoint: PathBuf = dir.path().join("history.ndjson.checkpoint");
    let total = 1_500;
    let from = chrono::NaiveDate::from_ymd_opt(2025, 6, 2).unwrap();
    // Every hundredth line is refused, so the report is resumed too.
    let lines: Vec<String> = (0..total)
        .map(|n| {
            if n % 100 == 99 {
                format!("not a fit note {n}")
            } else {
                compact(&generated_note(n, from))
            }
        })
        .collect();
    let refused = (total / 100) as u64;
    write_lines(&file, &lines);

    // A checkpoint every 100 records, so the run is killed early whatever the build's speed.
    let mut child = whg_command(None)
        .args(["import", "fit-notes", "--checkpoint-every", "100"])
        .arg(&file)
        .arg("--config")
        .arg(server.config_path())
        .arg("--database-url")
        .arg(server.database_url())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed once it has saved progress part of the way through.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let saved_at = loop {
        if let Ok(bytes) = std::fs::read(&checkpoint)
            && let Ok(c) = serde_json::from_slice::<Value>(&bytes)
            && c["line"].as_u64().unwrap_or(0) > 0
        {
            break c["line"].as_u64().unwrap();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the import finished before it could be killed: make the file longer"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint written"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // A little past the checkpoint, so lines stored after it are sent again on resume (and
    // whatever the timing, exactly those are found stored: see below).
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(saved_at < total as u64);
    let at_kill: Value = serde_json::from_slice(&std::fs::read(&checkpoint).unwrap()).unwrap();
    let (_, stored) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/Observation?_summary=count")
        .await;
    let stored_at_kill = stored["total"].as_u64().unwrap();
    let beyond_checkpoint = stored_at_kill - at_kill["counts"]["imported"].as_u64().unwrap();

    let out = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "lines were refused: {said}");
    assert!(
        said.contains(&format!("resumed after line {}", at_kill["line"])),
        "{said}"
    );
    // Every line settled once over the two runs: imported or (stored by the killed run after
    // its last checkpoint) found already stored — and each person has exactly one fit note.
    let summary = said
        .lines()
        .find(|l| l.contains("finished"))
        .unwrap()
        .to_string();
    eprintln!("resumed: {summary}");
    let number_before = |word: &str| -> u64 {
        let at = summary.find(word).unwrap();
        summary[..at]
            .split_whitespace()
            .last()
            .unwrap()
            .trim_start_matches(':')
            .parse()
            .unwrap()
    };
    assert_eq!(
        number_before("imported") + number_before("already stored"),
        total as u64 - refused,
        "{summary}"
    );
    assert_eq!(number_before("rejected"), refused, "{summary}");
    assert_eq!(
        number_before("already stored"),
        beyond_checkpoint,
        "exactly the lines stored after the checkpoint are found stored: {summary}"
    );
    // Each line stored once: the practice has exactly one fit note per valid line (the killed
    // run's lines after its checkpoint were sent again and found stored).
    let (status, all) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/Observation?_summary=count")
        .await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"].as_u64(), Some(total as u64 - refused), "{all}");
    // Person n is on line n + 1; every hundredth line is not a fit note.
    let valid = |n: usize| if n % 100 == 99 { n + 1 } else { n };
    for n in [0, valid(saved_at as usize), total - 2] {
        assert_eq!(notes_of(&server, &nhs_number(n)).await, 1, "person {n}");
    }
    // The report holds each refused line once, however the runs divided the file.
    let report = report_of(&dir.path().join("history.ndjson.rejected.ndjson"));
    let reported: Vec<u64> = report.iter().map(|r| r["line"].as_u64().unwrap()).collect();
    assert_eq!(
        reported,
        (1..=total as u64)
            .filter(|l| l % 100 == 0)
            .collect::<Vec<_>>()
    );
    assert!(!checkpoint.exists());

    // A checkpoint for another file is refused rather than trusted.
    std::fs::write(
        &checkpoint,
        json!({"kind": "fit-notes", "format": "ndjson", "head_sha256": "00", "tail_sha256": "00", "offset": 10, "line": 1,
               "counts": {"imported": 1, "already_stored": 0, "rejected": 0}, "report_len": 0})
        .to_string(),
    )
    .unwrap();
    let refused = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("another file"),
        "{}",
        stderr(&refused)
    );
}

#[tokio::test]
async fn imported_history_raises_prompts_only_for_an_absence_still_current() {
    let server = Server::start_with(
        "[[services]]\nid = \"pas-county-durham\"\nname = \"Patient Advisory Service, County Durham\"\n\
         [[services.prompts]]\nid = \"first-fit-note\"\nversion = \"test-1\"\nwhen = \"first-in-run\"\n\
         [[services]]\nid = \"sheffield-whs\"\nname = \"Sheffield Work and Health Service\"\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.ndjson");
    let today = chrono::Utc::now().date_naive();
    let past = generated_note(1, today - chrono::Duration::days(400));
    let current = generated_note(2, today - chrono::Duration::days(3));
    // One spell of absence whose first note is over and whose second covers today: the spell
    // is current, so "first in run" fires once, at the second note.
    let mut ended = generated_note(4, today - chrono::Duration::days(30));
    ended["fitNoteId"] = json!("IMPORT-4a");
    let mut continued = generated_note(4, today - chrono::Duration::days(16));
    continued["fitNoteId"] = json!("IMPORT-4b");
    write_lines(
        &file,
        &[
            compact(&past),
            compact(&current),
            compact(&ended),
            compact(&continued),
        ],
    );
    let out = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, tasks) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get(&format!("/fhir/Task?owner={DEFAULT_PRACTICE}"))
        .await;
    let prompts = tasks["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(
        prompts, 2,
        "one prompt for each current absence, none for the spell that is over: {tasks}"
    );
    // The same past note sent over the API would have raised one: only imports hold back.
    let mut live = generated_note(3, today - chrono::Duration::days(400));
    live["fitNoteId"] = json!("LIVE-3");
    let (status, _, body) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .post("/api/v1/fit-notes", &live)
        .await;
    assert_eq!(status, 201, "{body}");
    let (_, after) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get(&format!("/fhir/Task?owner={DEFAULT_PRACTICE}"))
        .await;
    assert_eq!(after["entry"].as_array().map_or(0, Vec::len), 3, "{after}");
}

#[tokio::test]
async fn referrals_are_imported_as_the_api_takes_them() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("referrals.ndjson");
    let valid = fixtures("referrals/valid");
    let mut lines: Vec<String> = valid.iter().map(|f| compact(&read_json(f))).collect();
    let mut expected_rejects = Vec::new();
    for f in fixtures("referrals/invalid") {
        lines.push(compact(&read_json(&f)));
        expected_rejects.push((
            lines.len() as u64,
            expected_issue_keys(&read_json(&expected_path(&f))),
        ));
    }
    write_lines(&file, &lines);
    let out = server.whg(&["import", "referrals", file.to_str().unwrap()]);
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{} imported, 0 already stored, {} rejected",
            valid.len(),
            expected_rejects.len()
        )),
        "{said}"
    );
    let report = report_of(&dir.path().join("referrals.ndjson.rejected.ndjson"));
    for (line, keys) in &expected_rejects {
        let row = report.iter().find(|r| r["line"] == *line).unwrap();
        assert_eq!(&issue_keys(&row["outcome"]), keys, "line {line}: {row}");
    }
    // Each practice reads back the referrals it sent, as if it had sent them over the API.
    let first = read_json(&valid[0]);
    let ods = first["practice"]["odsCode"].as_str().unwrap();
    let from_it = valid
        .iter()
        .filter(|f| read_json(f)["practice"]["odsCode"] == ods)
        .count() as u64;
    let (status, bundle) = server
        .as_(Principal::practice(ods))
        .get("/fhir/ServiceRequest?_summary=count")
        .await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(bundle["total"].as_u64(), Some(from_it), "{bundle}");
    let again = server.whg(&["import", "referrals", file.to_str().unwrap()]);
    assert!(
        stderr(&again).contains(&format!("0 imported, {} already stored", valid.len())),
        "{}",
        stderr(&again)
    );
}

#[tokio::test]
async fn a_spreadsheet_export_is_imported_through_its_column_mapping() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // The fixture copied beside its report: the report and checkpoint go next to the file.
    let file = dir.path().join("fit-notes.csv");
    std::fs::copy(root().join("fixtures/import/fit-notes.csv"), &file).unwrap();
    let mapping = root().join("fixtures/import/fit-notes.columns.toml");
    let expected = read_json(&root().join("fixtures/import/fit-notes.expected.json"));
    let out = server.whg(&[
        "import",
        "fit-notes",
        "--columns",
        mapping.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let said = stderr(&out);
    let rejected = expected["rejected"].as_array().unwrap();
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!(
            "{} imported, 0 already stored, {} rejected",
            expected["imported"],
            rejected.len()
        )),
        "{said}"
    );
    let report = report_of(&dir.path().join("fit-notes.csv.rejected.ndjson"));
    assert_eq!(report.len(), rejected.len());
    for (row, want) in report.iter().zip(rejected) {
        assert_eq!(
            row["line"], want["line"],
            "the row's line in the file: {row}"
        );
        assert_eq!(
            issue_keys(&row["outcome"]),
            expected_issue_keys(want),
            "{row}"
        );
    }
    // A quoted cell keeps its comma and its line break; UK dates are read as dates.
    let (_, found) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get("/fhir/Observation?patient.identifier=https://fhir.nhs.uk/Id/nhs-number|9992000007")
        .await;
    let note = &found["entry"][0]["resource"];
    assert_eq!(note["effectivePeriod"]["start"], "2026-03-02", "{found}");
    assert!(
        note.to_string()
            .contains("Cannot lift, or sit for long periods.\\nReview in four weeks."),
        "{note}"
    );
    // A mapping naming a column the file lacks is refused before any row.
    let wrong = dir.path().join("wrong.toml");
    std::fs::write(&wrong, "[fields]\nfitNoteId = \"Reference\"\n").unwrap();
    let refused = server.whg(&[
        "import",
        "fit-notes",
        "--columns",
        wrong.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("'Reference'"),
        "{}",
        stderr(&refused)
    );
}
