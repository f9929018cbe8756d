#!/usr/bin/env bash
# Runs every test. Installs what the tests need first (an independent FHIR R4 implementation from
# PyPI, in a virtualenv under target/), so it works the same on a fresh machine and in CI.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
export WHG_PYTHON="$PWD/$venv/bin/python"

cargo test --all-targets "$@"
