#!/usr/bin/env bash
# Runs every test. Installs what the tests need first (an independent FHIR R4 implementation from
# PyPI, in a virtualenv under target/), so it works the same on a fresh machine and in CI.
#
# Every test runs on SQLite; then the suites that drive the gateway over HTTP, and the storage
# contract, run again on PostgreSQL, on a throwaway cluster this script starts (scripts/postgres.sh) and stops on exit.
# WHG_BACKENDS chooses the passes (default "sqlite postgres"); leaving one out is for local
# iteration only: CI runs both.
set -euo pipefail
cd "$(dirname "$0")/.."

backends=${WHG_BACKENDS:-sqlite postgres}
# The suites that run on either backend: those that start gateways (tests/common's Server), and
# the storage contract.
both_backends=(http_api consent fit_notes delivery security robustness attacks fixtures backup store_contract instances dashboard telemetry directory import self_referral referrers)

venv=target/pyenv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/requirements.txt
export WHG_PYTHON="$PWD/$venv/bin/python"
# The FHIR package build and the profile validators (fhir-snapshot-generator, @medplum/core,
# FHIR.js), pinned by tools/conformance/package-lock.json.
npm ci --prefix tools/conformance --no-audit --no-fund --loglevel=error
# The dashboard's browser test (tests/dashboard.rs): playwright-core and axe-core, pinned by
# tools/browser/package-lock.json, driving Debian's Chromium (no browser is downloaded).
npm ci --prefix tools/browser --no-audit --no-fund --loglevel=error
if [ ! -x /usr/bin/chromium ] && [ -z "${WHG_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the dashboard's browser test"
    apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
  else
    echo "no Chromium at /usr/bin/chromium and no apt-get as root: the browser test is skipped (CI fails it)"
  fi
fi

logs=$(mktemp -d)
# Every validation by tools/conformance/validate.mjs adds a line of counts here (docs/conformance.md).
export WHG_CONFORMANCE_SUMMARY=$logs/conformance.jsonl
started_postgres=no
cleanup() {
  if [ "$started_postgres" = yes ]; then
    scripts/postgres.sh stop || true
  fi
  rm -rf "$logs"
}
trap cleanup EXIT

# Passed and failed tests in a cargo test log: cargo prints one "test result" per binary (the
# last ones are targets without tests).
count() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "%d %d\n", p, f }' "$1"
}

status=0
summary=()
total_passed=0
total_failed=0
for backend in $backends; do
  log=$logs/$backend.log
  case $backend in
    sqlite)
      unset WHG_TEST_POSTGRES
      echo "== tests on SQLite"
      # Every exchange the tests make with the routes outside /fhir is recorded, then checked
      # against the API contract (profiles/openapi.json) below.
      export WHG_RECORD_EXCHANGES=$logs/exchanges.ndjson
      set +e
      cargo test --all-targets "$@" 2>&1 | tee "$log"
      code=${PIPESTATUS[0]}
      set -e
      unset WHG_RECORD_EXCHANGES
      ;;
    postgres)
      echo "== tests on PostgreSQL"
      scripts/postgres.sh url >/dev/null 2>&1 || started_postgres=yes
      url=$(scripts/postgres.sh start)
      export WHG_TEST_POSTGRES=$url
      args=()
      for suite in "${both_backends[@]}"; do
        if [ -f "tests/$suite.rs" ] || [ -f "tests/$suite/main.rs" ]; then args+=(--test "$suite"); fi
      done
      set +e
      cargo test "${args[@]}" "$@" 2>&1 | tee "$log"
      code=${PIPESTATUS[0]}
      set -e
      unset WHG_TEST_POSTGRES
      ;;
    *)
      echo "scripts/test.sh: unknown backend '$backend' in WHG_BACKENDS (sqlite, postgres)" >&2
      exit 2
      ;;
  esac
  read -r passed failed < <(count "$log")
  # A pass whose cargo failed without a failing test (a build error) still fails the run.
  [ "$code" = 0 ] || status=$code
  summary+=("$backend: $passed passed, $failed failed")
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
done

# The API contract: generated from its source and in step with the router, and every recorded
# exchange conforms to it, every operation exercised (tools/openapi/check_exchanges.py).
openapi_line="openapi: not checked (no exchanges recorded)"
if ! python3 tools/gen_openapi.py --check; then
  status=1
  openapi_line="openapi: profiles/openapi.json is stale (python3 tools/gen_openapi.py)"
elif [ -s "$logs/exchanges.ndjson" ]; then
  set +e
  "$venv/bin/python" tools/openapi/check_exchanges.py "$logs/exchanges.ndjson" > "$logs/openapi.log" 2>&1
  openapi_code=$?
  set -e
  tail -n 60 "$logs/openapi.log"
  openapi_line="openapi: $(grep -E '^== result' "$logs/openapi.log" | sed 's/^== result: //') over $(wc -l < "$logs/exchanges.ndjson") exchanges"
  # A run of only some tests (arguments given) does not exercise every operation.
  if [ "$openapi_code" != 0 ] && [ $# = 0 ]; then status=1; fi
fi

# One closing line per backend, then one over both.
printf '%s\n' "${summary[@]}"
echo "$openapi_line"
if [ -s "$WHG_CONFORMANCE_SUMMARY" ]; then
  node -e '
    const lines = require("fs").readFileSync(process.argv[1], "utf8").trim().split("\n").map(JSON.parse);
    const sum = (k) => lines.reduce((n, l) => n + l[k], 0);
    const by = {};
    for (const l of lines) for (const [p, n] of Object.entries(l.byProfile)) by[p] = (by[p] ?? 0) + n;
    console.log(`profile validation: ${sum("resources")} resources validated (medplum, FHIR.js), ${sum("profiled")} against gateway profiles ${JSON.stringify(by)}, ${sum("problems")} problems`);
  ' "$WHG_CONFORMANCE_SUMMARY"
fi
echo "tests: $total_passed passed, $total_failed failed"
exit "$status"
