#!/usr/bin/env bash
# The conformance kit as an integrator runs it, against this build: a gateway on its embedded
# defaults (a fresh data directory, loopback), the mock practice its test organisations deliver
# to, and a registered test-tenant practice client. `whg conformance` drives the gateway and then
# the mock practice as a receiver; the JUnit XML and HTML reports are kept in target/conformance.
# Exits non-zero if a check fails. Uses target/debug/whg (scripts/test.sh builds it) unless WHG is set.
set -euo pipefail
cd "$(dirname "$0")/.."
whg=${WHG:-target/debug/whg}
[ -x "$whg" ] || cargo build --quiet --bin whg
whg=$(cd "$(dirname "$whg")" && pwd)/$(basename "$whg")
out=$PWD/target/conformance
mkdir -p "$out"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Ports of their own, so that a gateway on the README's 8080 is left alone.
gateway=127.0.0.1:18080
practice=127.0.0.1:18090
cat > "$work/whg.toml" <<TOML
[test_tenant]
practice_endpoint = "http://$practice/fhir"
TOML
export WHG_CONFIG=$work/whg.toml
(cd "$work" && exec "$whg" serve --listen "$gateway" >"$work/gateway.log" 2>&1) & pids+=($!)
(cd "$work" && exec "$whg" mock-practice --listen "$practice" >"$work/practice.log" 2>&1) & pids+=($!)
for url in "http://$gateway/health/ready" "http://$practice/fhir/metadata"; do
  for _ in $(seq 1 150); do curl -sf "$url" >/dev/null && break; sleep 0.2; done
  curl -sf "$url" >/dev/null || { echo "conformance: $url did not answer"; cat "$work"/*.log; exit 1; }
done
(cd "$work" && "$whg" clients keygen --out "$work/kit.pem" >"$work/kit.jwks.json" 2>/dev/null)
(cd "$work" && "$whg" clients add conformance-kit --role practice --org C88901 --tenant test --jwks "$work/kit.jwks.json" >/dev/null)

status=0
"$whg" conformance --target gateway --url "http://$gateway" --client conformance-kit --key "$work/kit.pem" \
  --org C88901 --junit "$out/gateway.xml" --html "$out/gateway.html" || status=1
"$whg" conformance --target receiver --url "http://$practice/fhir" \
  --junit "$out/receiver.xml" --html "$out/receiver.html" || status=1
echo "conformance reports: $out/{gateway,receiver}.{xml,html}"
exit $status
