#!/usr/bin/env bash
# Fuzzes the practice parsers, the FHIR intake and the token endpoint with cargo-fuzz
# (libFuzzer), each for a bounded time, starting from the fixtures. Exits non-zero if any target
# crashes; the crashing input is left in fuzz/artifacts/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 60; CI uses 30)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
# libFuzzer's instrumentation needs nightly flags: the machine's nightly toolchain when it has
# one, otherwise the stable compiler told to accept them.
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

seed() { # target, fixture folders...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for folder in "$@"; do
    for f in "$folder"/*.json; do
      case "$f" in *.expected.json) ;; *) cp "$f" "$dir/" ;; esac
    done
  done
}
seed practice_referral fixtures/referrals/valid fixtures/referrals/invalid
seed practice_fit_note fixtures/fit-notes/valid fixtures/fit-notes/invalid
seed fhir_intake fixtures/messages/valid fixtures/messages/invalid fixtures/consent/valid
mkdir -p fuzz/corpus/token_request
printf 'grant_type=client_credentials&client_assertion_type=urn%%3Aietf%%3Aparams%%3Aoauth%%3Aclient-assertion-type%%3Ajwt-bearer&client_assertion=eyJhbGciOiJFUzM4NCIsImtpZCI6ImsxIn0.eyJpc3MiOiJncC0xIiwic3ViIjoiZ3AtMSIsImF1ZCI6Imh0dHBzOi8vd2hnLmV4YW1wbGUvb2F1dGgyL3Rva2VuIiwiZXhwIjo0MTAyNDQ0ODAwLCJqdGkiOiJqMSJ9.c2ln&scope=system%%2F*.rs+system%%2FServiceRequest.c\n' \
  > fuzz/corpus/token_request/seed.txt

for target in practice_referral practice_fit_note fhir_intake token_request; do
  echo "== fuzz $target (${seconds}s)"
  "${fuzz[@]}" run --sanitizer none "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536
done
