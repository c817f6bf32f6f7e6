#!/usr/bin/env bash
# Build and install event_store, start a throw-away PostgreSQL cluster with
# it (server running as the postgres OS user, loopback only), run the
# flight-booking demo (scripts/demo.sql: appends, reads, a conflict, the
# state before and after a change, an inline projection, a subscription
# polled by a consumer group, a Message DB call) and print how to connect.
#
#   ES_DEMO_DIR   where the cluster lives   (default /tmp/event_store_demo)
#   ES_DEMO_PORT  TCP port on 127.0.0.1    (default 54329)
set -euo pipefail

cd "$(dirname "$0")/.."
# The server the demo runs: this machine's PostgreSQL 15 (Debian 12) unless
# PG_MAJOR names another installed major (16, 17 or 18).  ES_DEMO_PGBIN
# points at another server's bin directory (a private build, say).
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${ES_DEMO_PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
export PG_CONFIG=$PGBIN/pg_config
DIR=${ES_DEMO_DIR:-/tmp/event_store_demo}
PORT=${ES_DEMO_PORT:-54329}

bash scripts/ensure-deps.sh

echo "== the demo runs on $("$PGBIN/postgres" --version) ($PGBIN)"
echo "== building and installing event_store"
make -s
make -s install

as_postgres() {
    if [[ $(id -un) == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

if [[ -f "$DIR/data/postmaster.pid" ]]; then
    echo "== stopping the previous demo cluster in $DIR"
    as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -m fast stop >/dev/null || true
fi
rm -rf "$DIR"
mkdir -p "$DIR"
chown postgres "$DIR" 2>/dev/null || true

echo "== creating a throw-away cluster in $DIR (port $PORT, 127.0.0.1 only)"
as_postgres "$PGBIN/initdb" -D "$DIR/data" -U postgres -A trust --no-instructions >/dev/null
cat >>"$DIR/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$DIR'
shared_preload_libraries = 'event_store,pg_cron'
cron.database_name = 'demo'
CONF
as_postgres "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w start >/dev/null

PSQL=("$PGBIN/psql" -X -q -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE demo"
"${PSQL[@]}" -d demo -c "CREATE EXTENSION event_store"
"${PSQL[@]}" -d demo -c "CREATE EXTENSION event_store_messagedb"
"${PSQL[@]}" -d demo -c "SELECT extversion AS event_store_version FROM pg_extension WHERE extname = 'event_store'"

echo "== the flight-booking demo"
"${PSQL[@]}" -d demo -f scripts/demo.sql

cat <<MSG

The demo cluster is running ($("$PGBIN/postgres" --version)).
  connect:  psql -h 127.0.0.1 -p $PORT -U postgres demo
  stop:     runuser -u postgres -- $PGBIN/pg_ctl -D $DIR/data stop
  log:      $DIR/server.log
MSG
