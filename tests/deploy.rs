//! deploy/ checked offline (tools/deploy/check_deploy.py): the Kubernetes manifests against the
//! Kubernetes API's schemas, the compose file against the Compose Specification's schema, the
//! Dockerfile with hadolint, and every gateway configuration in them as the gateway itself reads
//! it. And the checker is shown to catch each kind of mistake, so its pass means something.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn check(deploy: &Path) -> (bool, String) {
    let out = Command::new(python())
        .arg(root().join("tools/deploy/check_deploy.py"))
        .arg(deploy)
        .arg(WHG)
        .output()
        .expect("the deploy checker runs (tools/requirements.txt installed?)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of deploy/ (as `deploy/` in a directory of its own: the compose file builds from
/// the directory above) with `edit` applied to the file at `relative`.
fn with_edit(relative: &str, edit: impl Fn(String) -> String) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    let deploy = dir.path().join("deploy");
    std::fs::create_dir(&deploy).unwrap();
    copy_dir(&root().join("deploy"), &deploy);
    let file = deploy.join(relative);
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit of {relative} changed nothing");
    std::fs::write(&file, edited).unwrap();
    Copy(dir)
}

struct Copy(tempfile::TempDir);

impl Copy {
    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("deploy")
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_deployment_files_pass_every_check() {
    let (passed, output) = check(&root().join("deploy"));
    assert!(passed, "{output}");
}

#[test]
fn a_manifest_field_of_the_wrong_type_or_unknown_to_kubernetes_fails() {
    let copy = with_edit("kubernetes/deployment.yaml", |t| {
        t.replacen("replicas: 2", "replicas: two", 1)
    });
    let (passed, output) = check(&copy.path());
    assert!(!passed, "{output}");
    assert!(
        output
            .contains("kubernetes/deployment.yaml: spec.replicas: 'two' is not of type 'integer'"),
        "{output}"
    );
    let copy = with_edit("kubernetes/pdb.yaml", |t| {
        t.replacen("minAvailable: 1", "minAvailble: 1", 1)
    });
    let (passed, output) = check(&copy.path());
    assert!(!passed, "{output}");
    assert!(
        output.contains("kubernetes/pdb.yaml") && output.contains("minAvailble"),
        "{output}"
    );
}

#[test]
fn a_compose_file_the_specification_does_not_allow_fails() {
    let copy = with_edit("compose/compose.yaml", |t| {
        t.replacen("restart: unless-stopped", "restrat: unless-stopped", 1)
            .replacen("./nginx.conf", "./missing.conf", 1)
    });
    let (passed, output) = check(&copy.path());
    assert!(!passed, "{output}");
    assert!(
        output.contains("services.gateway-1: 'restrat' does not match"),
        "{output}"
    );
    assert!(
        output.contains("mounts ./missing.conf, which does not exist"),
        "{output}"
    );
    assert!(!output.contains("no Dockerfile"), "{output}");
}

#[test]
fn a_dockerfile_hadolint_objects_to_fails() {
    let copy = with_edit("Dockerfile", |t| {
        t.replacen(
            "FROM debian:${DEBIAN_RELEASE}-slim",
            "FROM debian:latest",
            1,
        )
    });
    let (passed, output) = check(&copy.path());
    assert!(!passed, "{output}");
    assert!(output.contains("DL3007"), "{output}");
}

#[test]
fn a_configuration_the_gateway_would_refuse_fails() {
    let copy = with_edit("kubernetes/configmap.yaml", |t| {
        t.replacen(
            "    [telemetry]\n",
            "    [telemetry]\n    sample_rate = 0.5\n",
            1,
        )
    });
    let (passed, output) = check(&copy.path());
    assert!(!passed, "{output}");
    assert!(
        output.contains("kubernetes/configmap.yaml (whg.toml): the gateway refuses it")
            && output.contains("sample_rate"),
        "{output}"
    );
}
