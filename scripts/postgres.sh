#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for the tests and CI, from the machine's server binaries.
#
#   scripts/postgres.sh start    starts it (initialising it first if needed); prints its admin URL
#   scripts/postgres.sh url      prints the admin URL of the running cluster
#   scripts/postgres.sh stop     stops it (its data is kept for the next start)
#   scripts/postgres.sh destroy  stops it and deletes its data
#
# Only the URL goes to standard output (`export WHG_TEST_POSTGRES=$(scripts/postgres.sh start)`);
# everything else goes to standard error. Each command is idempotent: `start` on a running
# cluster prints its URL, `stop` on a stopped one does nothing.
#
# The cluster lives in target/pg (WHG_PG_DIR to choose another place), listens on a free
# loopback TCP port only, and keeps its socket inside its own directory. Its superuser `whg` has
# a generated password (SCRAM), so other users of the machine cannot use it. fsync stays on:
# the tests check durability, which a cluster that may lose commits would not show.
#
# The server binaries come from Debian's postgresql-15 package (WHG_PG_BIN to use others); a
# machine without them gets the package installed as CI would, with apt-get. initdb refuses to
# run as root, so as root the cluster belongs to an unprivileged system user, `whgpg`, created
# when missing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
state=${WHG_PG_DIR:-$repo/target/pg}
bin=${WHG_PG_BIN:-/usr/lib/postgresql/15/bin}
superuser=whg
pg_user=whgpg

say() { echo "postgres.sh: $*" >&2; }
die() {
  say "$*"
  exit 1
}

ensure_binaries() {
  local tool missing=0
  for tool in initdb pg_ctl postgres; do
    [ -x "$bin/$tool" ] || missing=1
  done
  [ "$missing" = 0 ] && return
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null ||
    die "no PostgreSQL 15 server binaries in $bin: install Debian's postgresql-15 package (or set WHG_PG_BIN)"
  say "installing postgresql-15 (the server binaries are missing)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends postgresql-15 >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends postgresql-15 >&2; }
  for tool in initdb pg_ctl postgres; do
    [ -x "$bin/$tool" ] || die "postgresql-15 is installed but $bin/$tool is missing"
  done
}

# Runs a command as the cluster's owner, from a directory it can read.
if [ "$(id -u)" = 0 ]; then
  as_owner() { (cd / && runuser -u "$pg_user" -- "$@"); }
  ensure_user() {
    id -u "$pg_user" >/dev/null 2>&1 ||
      useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$pg_user"
  }
  give_to_owner() { chown "$pg_user:$pg_user" "$1"; }
else
  as_owner() { (cd / && "$@"); }
  ensure_user() { :; }
  give_to_owner() { :; }
fi

# The cluster's directory: under $state when its owner can reach it there, otherwise (a checkout
# in a directory only root may enter) a private directory under /tmp, recorded in $state.
cluster_dir() {
  if [ -f "$state/location" ]; then
    cat "$state/location"
    return
  fi
  local dir=$state/cluster
  mkdir -p "$dir"
  chmod 700 "$dir"
  give_to_owner "$dir"
  if ! as_owner test -w "$dir"; then
    rmdir "$dir"
    dir=$(mktemp -d /tmp/whg-pg.XXXXXX)
    give_to_owner "$dir"
  fi
  echo "$dir" >"$state/location"
  echo "$dir"
}

running() { [ -f "$1/data/postmaster.pid" ] && as_owner "$bin/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

# The admin URL of the running cluster: its port is the fourth line of postmaster.pid.
url_of() {
  local port
  port=$(sed -n 4p "$1/data/postmaster.pid")
  echo "postgres://$superuser:$(cat "$state/password")@127.0.0.1:$port/postgres"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

init_cluster() {
  local dir=$1 pwfile
  # A password made of URL-safe characters, so the URL needs no escaping.
  (umask 077 && head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$state/password")
  pwfile=$dir/pwfile
  install -m 600 /dev/null "$pwfile"
  give_to_owner "$pwfile"
  cat "$state/password" >"$pwfile"
  as_owner "$bin/initdb" --pgdata="$dir/data" --username="$superuser" --pwfile="$pwfile" \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  rm -f "$pwfile"
  mkdir -p "$dir/run"
  chmod 700 "$dir/run"
  give_to_owner "$dir/run"
  # Loopback TCP only, the socket inside the cluster's directory; durable commits as in
  # production; room for many test gateways at once, each with its own pool.
  cat >>"$dir/data/postgresql.conf" <<EOF

# scripts/postgres.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir/run'
fsync = on
synchronous_commit = on
max_connections = 400
shared_buffers = 64MB
EOF
}

start() {
  ensure_binaries
  mkdir -p "$state"
  # The owner must pass through to its cluster; the password file in it is owner-only.
  chmod 711 "$state"
  exec 9>"$state/lock"
  flock 9
  ensure_user
  local dir attempt port
  dir=$(cluster_dir)
  if running "$dir"; then
    url_of "$dir"
    return
  fi
  [ -f "$dir/data/PG_VERSION" ] || init_cluster "$dir"
  # A port free a moment ago may be taken before the server binds it: try another.
  for attempt in 1 2 3; do
    port=$(free_port)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 -o "-p $port" start >/dev/null 9>&-; then
      url_of "$dir"
      return
    fi
    say "start on port $port failed (attempt $attempt)"
  done
  tail -n 20 "$dir/server.log" >&2 || true
  die "PostgreSQL did not start"
}

stop() {
  [ -f "$state/location" ] || return 0
  local dir
  dir=$(cat "$state/location")
  if running "$dir"; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null
  fi
}

url() {
  [ -f "$state/location" ] || die "no cluster: run scripts/postgres.sh start"
  local dir
  dir=$(cat "$state/location")
  running "$dir" || die "the cluster is not running: run scripts/postgres.sh start"
  url_of "$dir"
}

destroy() {
  stop
  if [ -f "$state/location" ]; then
    rm -rf "$(cat "$state/location")"
  fi
  rm -rf "$state"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  url) url ;;
  destroy) destroy ;;
  *)
    echo "usage: $0 start|url|stop|destroy" >&2
    exit 2
    ;;
esac
