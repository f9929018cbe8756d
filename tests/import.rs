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
    assert_eq!(report.len(), expected_rejects.len() + 1, "{report:?}");
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
        expected_rejects.len() + 1,
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
    let lines: Vec<String> = (0..total)
        .map(|n| compact(&generated_note(n, from)))
        .collect();
    write_lines(&file, &lines);

    let mut child = whg_command(None)
        .args(["import", "fit-notes"])
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
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(saved_at < total as u64);

    let out = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("resumed after line"), "{said}");
    // Every line settled once over the two runs: imported or (stored by the killed run after
    // its last checkpoint) found already stored — and each person has exactly one fit note.
    let summary = said
        .lines()
        .find(|l| l.contains("finished"))
        .unwrap()
        .to_string();
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
        total as u64,
        "{summary}"
    );
    assert_eq!(number_before("rejected"), 0, "{summary}");
    for n in [0, total / 2, total - 1] {
        assert_eq!(notes_of(&server, &nhs_number(n)).await, 1, "person {n}");
    }
    assert!(!checkpoint.exists());

    // A checkpoint for another file is refused rather than trusted.
    std::fs::write(
        &checkpoint,
        json!({"kind": "fit-notes", "head_sha256": "00", "offset": 10, "line": 1,
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
    write_lines(&file, &[compact(&past), compact(&current)]);
    let out = server.whg(&["import", "fit-notes", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, tasks) = server
        .as_(Principal::practice(DEFAULT_PRACTICE))
        .get(&format!("/fhir/Task?owner={DEFAULT_PRACTICE}"))
        .await;
    let prompts = tasks["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(prompts, 1, "one prompt, for the current absence: {tasks}");
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
    assert_eq!(after["entry"].as_array().map_or(0, Vec::len), 2, "{after}");
}
