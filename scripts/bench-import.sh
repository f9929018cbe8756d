#!/usr/bin/env bash
# `whg import` benchmark: generates N synthetic fit notes (999-range NHS numbers that pass
# Modulus 11, one person each) and imports them into a fresh SQLite database, printing the
# import's own summary and the peak RSS. Loopback only; nothing outside a temporary directory.
#
#   scripts/bench-import.sh [N]            # N defaults to 100000; release build
#   WHG_PROFILE=debug scripts/bench-import.sh 20000
#
# Figures and the command that produced them go in docs/import.md.
set -euo pipefail
cd "$(dirname "$0")/.."

n=${1:-100000}
profile=${WHG_PROFILE:-release}
if [ "$profile" = release ]; then
  cargo build --release --quiet --bin whg
else
  cargo build --quiet --bin whg
fi
whg=target/$profile/whg

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
file=$work/fit-notes.ndjson

python3 - "$n" "$file" <<'EOF'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open("fixtures/fit-notes/valid/01-doctor-not-fit-back-pain.json") as f:
    template = json.load(f)

def nhs_numbers():
    # 999 + six digits + the Modulus 11 check digit; candidates whose check digit would be 10
    # are skipped, as the algorithm says.
    i = 0
    while True:
        nine = "999%06d" % i
        i += 1
        total = sum(int(d) * w for d, w in zip(nine, range(10, 1, -1)))
        check = 11 - total % 11
        if check == 11:
            check = 0
        if check == 10:
            continue
        yield nine + str(check)

with open(path, "w") as out:
    for k, nhs in zip(range(n), nhs_numbers()):
        template["fitNoteId"] = "BENCH-%d" % k
        template["patient"]["nhsNumber"] = nhs
        out.write(json.dumps(template, separators=(",", ":")))
        out.write("\n")
EOF

cat > "$work/whg.toml" <<EOF
database_url = "sqlite://$work/whg.db"
[auth]
signing_key = "$work/keys/signing.jwk"
[consent]
pseudonym_key = "$work/keys/pseudonym.key"
EOF

echo "== $n fit notes ($(du -h "$file" | cut -f1)), $profile build, $(nproc) cores"
"$whg" --config "$work/whg.toml" migrate >/dev/null
/usr/bin/time -f "peak RSS %M KB, %e s wall, %U s user, %S s system" \
  "$whg" --config "$work/whg.toml" import fit-notes "$file"
echo "database: $(du -h "$work/whg.db" | cut -f1)"
