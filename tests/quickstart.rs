//! The README's quick start, run as written: its shell blocks, in order, in one shell, from a
//! fresh directory holding only the fixtures (no `data/`, no keys, no database), with `cargo run
//! … -- ARGS` standing for the `whg` binary these tests built. So the README cannot go stale: a
//! step that stops working fails here.
//!
//! The gateway and the mock practice listen where the README says (127.0.0.1:8080 and :8090), so
//! this suite has one test and runs on its own (cargo runs test binaries one at a time).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The `sh` code blocks of the README's "Quick start" section, in order.
fn quick_start_blocks() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Quick start")
        .expect("a Quick start section");
    let rest = &readme[start + 3..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

/// Kills what it holds when the test ends, however it ends.
struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `bash -c script` in `dir`, as a person in a fresh clone would run it: `cargo run … -- ARGS`
/// is this build's `whg ARGS`, HOME is the test's own, and no WHG_* setting leaks in.
fn shell(dir: &Path, home: &Path, shim: &Path, script: &str) -> Command {
    let mut command = Command::new("bash");
    command.arg("-c").arg(script).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("WHG_") {
            command.env_remove(name);
        }
    }
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.env("PATH", path).env("HOME", home).env("WHG", WHG);
    command
}

async fn wait_for(url: &str, what: &str, children: &mut Running) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http_get(url).await
            && r.status().is_success()
        {
            return;
        }
        for child in &mut children.0 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what}: a quick-start process exited ({status}) before {url} answered");
            }
        }
        assert!(
            Instant::now() < until,
            "{what}: {url} did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_quick_start_works_as_written_from_a_fresh_clone() {
    for port in [8080, 8090] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "the quick start listens on 127.0.0.1:{port}, which something else holds"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let clone = tmp.path().join("clone");
    let home = tmp.path().join("home");
    let shim = tmp.path().join("bin");
    for dir in [&clone, &home, &shim] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::os::unix::fs::symlink(root().join("fixtures"), clone.join("fixtures")).unwrap();
    let cargo = shim.join("cargo");
    std::fs::write(
        &cargo,
        "#!/bin/sh\n# `cargo run [flags] -- ARGS` as the README writes it: this build's whg ARGS.\n\
         [ \"$1\" = run ] || { echo \"cargo shim: only 'cargo run … -- ARGS'\" >&2; exit 2; }\n\
         while [ $# -gt 0 ] && [ \"$1\" != -- ]; do shift; done\n\
         [ $# -gt 0 ] || { echo 'cargo shim: no -- ARGS' >&2; exit 2; }\nshift\nexec \"$WHG\" \"$@\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();

    let blocks = quick_start_blocks();
    assert!(blocks.len() >= 4, "{blocks:?}");
    // The first block starts what stays running: each of its commands in the background.
    let mut running = Running(Vec::new());
    for line in blocks[0].lines().filter(|l| !l.trim().is_empty()) {
        let child = shell(&clone, &home, &shim, line)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        running.0.push(child);
    }
    wait_for(
        "http://127.0.0.1:8080/health/ready",
        "the gateway",
        &mut running,
    )
    .await;
    wait_for(
        "http://127.0.0.1:8090/fhir/metadata",
        "the mock practice",
        &mut running,
    )
    .await;

    // The rest, in one shell, as a person types them one after another.
    let script = blocks[1..].join("\n");
    let out = shell(&clone, &home, &shim, &script).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let said = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    for expected in [
        "HTTP/1.1 201 Created",
        "referral stored as ServiceRequest/",
        "\"total\":1",
        "\"total\":0",
        "\"stage\":\"accepted\"",
        "\"resourceType\":\"Communication\"",
        "\"code\":\"ok\"",
    ] {
        assert!(
            stdout.contains(expected),
            "the quick start's output lacks {expected:?}:\n{said}"
        );
    }
    assert!(
        !stdout.contains("\"severity\":\"error\",\"code\":\"forbidden\""),
        "{said}"
    );
    // The private key is the client's, outside the gateway's data directory.
    assert!(home.join(".whg-client/my-gp.pem").exists());
    assert!(!clone.join("data/my-gp.pem").exists());

    // The letter reached the practice system and its acknowledgement was recorded.
    let until = Instant::now() + Duration::from_secs(30);
    let received = loop {
        let received: Value = http_get("http://127.0.0.1:8090/received")
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if received["total"].as_u64() >= Some(1) || Instant::now() > until {
            break received;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(received["total"], 1, "{received}\n{said}");
    assert!(
        received.to_string().contains("DocumentReference"),
        "{received}"
    );
    let letters = shell(
        &clone,
        &home,
        &shim,
        "curl -s -H \"Authorization: Bearer $(cargo run -q --release -- token --role service --org sheffield-whs)\" http://127.0.0.1:8080/api/v1/letters",
    )
    .output()
    .unwrap();
    let letters: Value = serde_json::from_slice(&letters.stdout).unwrap();
    assert_eq!(letters["letters"][0]["state"], "accepted", "{letters}");
}
