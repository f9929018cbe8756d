#!/usr/bin/env bash
# The load harness (examples/load.rs) on each backend in one run, one after the other, for
# throughput side by side: SQLite (a fresh file) and PostgreSQL (a fresh database on the
# throwaway cluster scripts/postgres.sh starts, with fsync on). Arguments go to the harness:
#
#   scripts/load-both.sh 20000 64            # referrals
#   scripts/load-both.sh 20000 64 fit-notes
#   scripts/load-both.sh 2000 16 letters
#
# Builds the release binary first. Prints each run's report under its backend's name.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --quiet --bin whg --example load
started_postgres=no
scripts/postgres.sh url >/dev/null 2>&1 || started_postgres=yes
trap '[ "$started_postgres" = yes ] && scripts/postgres.sh stop || true' EXIT
admin=$(scripts/postgres.sh start)

echo "== SQLite"
env -u WHG_LOAD_POSTGRES target/release/examples/load "$@"
echo "== PostgreSQL"
WHG_LOAD_POSTGRES=$admin target/release/examples/load "$@"
