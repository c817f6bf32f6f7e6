#!/usr/bin/env bash
# Message DB compatibility benchmark: our message_store API against the real
# Message DB (npm package @eventide/message-db, installed with its own
# script), in one throw-away cluster, same run, same data, pgbench
# (-M prepared), connected as the message_store role.  Prints ratios
# (ours / Message DB, transactions per second); targets: write_message
# >= 1.3x, get_category_messages with a consumer group >= 2x.
#
#   bash test/bench/messagedb_bench.sh          # BENCH_SECONDS (10) per run
#   bash test/bench/messagedb_bench.sh --quick  # 3 s per run
#
# Run as root with the extension installed (make install) and npm on PATH.
#
# Environment:
#   BENCH_SECONDS   seconds per pgbench run (default 10; 3 with --quick)
#   BENCH_PASSES    interleaved passes per workload, tps summed (default 3; 1 with --quick)
#   BENCH_CLIENTS   client counts for the write test (default "1 4")
#   BENCH_STREAMS   streams in the read test's category (default 1000)
#   BENCH_ROUNDS    messages per stream in the read test (default 50)
#   BENCH_ID_SCOPE  event_store.set_event_id_scope() of database ours: store
#                   (default: ids unique across the store, Message DB's rule)
#                   or stream (event_store's default)
#   BENCH_GROUP     consumer group size in the read test (default 4)
#   BENCH_OUT       results directory (default test/bench/results)
#   PG_MAJOR        PostgreSQL major version (default 15)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
SECS=${BENCH_SECONDS:-10}
PASSES=${BENCH_PASSES:-3}
[[ "${1:-}" == "--quick" ]] && SECS=${BENCH_SECONDS:-3} && PASSES=${BENCH_PASSES:-1}
CLIENTS=${BENCH_CLIENTS:-1 4}
NSTREAMS=${BENCH_STREAMS:-1000}
ROUNDS=${BENCH_ROUNDS:-50}
GROUP=${BENCH_GROUP:-4}
ID_SCOPE=${BENCH_ID_SCOPE:-store}
OUTDIR=${BENCH_OUT:-$HERE/results}

if [[ $(id -u) -ne 0 ]]; then
    echo "run as root (the cluster is made and run as the postgres OS user)" >&2
    exit 1
fi
command -v npm >/dev/null || { echo "npm is needed (apt-get install npm)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/messagedb_bench.XXXXXX)
chown postgres "$WORK"
PORT=$((20000 + RANDOM % 10000))
as_pg() { su postgres -s /bin/bash -c "$*"; }
cleanup() {
    as_pg "$PGBIN/pg_ctl -D '$WORK/data' -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "== fetching @eventide/message-db"
(cd "$WORK" && HOME="$WORK" npm_config_cache="$WORK/.npm" npm pack --silent @eventide/message-db >/dev/null 2>&1)
tar xzf "$WORK"/eventide-message-db-*.tgz -C "$WORK"
chown -R postgres "$WORK"

echo "== cluster on port $PORT"
as_pg "$PGBIN/initdb -D '$WORK/data' -A trust" >/dev/null
cat >>"$WORK/data/postgresql.conf" <<CONF
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'event_store'
shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
CONF
as_pg "$PGBIN/pg_ctl -D '$WORK/data' -l '$WORK/log' -w start" >/dev/null
export PGHOST=$WORK PGPORT=$PORT
psql_pg() { as_pg "PGHOST='$WORK' PGPORT=$PORT $PGBIN/psql -X -q -v ON_ERROR_STOP=1 $*"; }

echo "== installing Message DB (database mdb) and event_store_messagedb (database ours)"
as_pg "PGHOST='$WORK' PGPORT=$PORT DATABASE_NAME=mdb PATH=$PGBIN:\$PATH bash '$WORK/package/database/install.sh'" >/dev/null
psql_pg -d postgres -c "'CREATE DATABASE ours'"
psql_pg -d ours -c "'CREATE EXTENSION event_store_messagedb CASCADE'"
# Message DB's ids are unique store-wide; scope store gives the log that
# rule natively (a unique event_id index per partition, docs/reference.md "Event id
# scope"), so that write_message need not look the id up in the partition
# it writes to.
psql_pg -d ours -c "\"SELECT event_store.set_event_id_scope('$ID_SCOPE')\"" >/dev/null

echo "== loading $((NSTREAMS * ROUNDS)) messages in category account, as many in category other"
# The same messages, interleaved across streams, in both stores.
cat >"$WORK/load_mdb.sql" <<SQL
INSERT INTO message_store.messages (stream_name, position, type, data, metadata)
SELECT c || '-' || s, r, 'Deposited', jsonb_build_object('amount', r), '{"correlationStreamName": "payment-1"}'
  FROM generate_series(0, $ROUNDS - 1) r, generate_series(1, $NSTREAMS) s, (VALUES ('account'), ('other')) v(c)
 ORDER BY r, s, c;
ANALYZE message_store.messages;
SQL
cat >"$WORK/load_ours.sql" <<SQL
DO \$\$
BEGIN
    FOR r IN 0 .. $ROUNDS - 1 LOOP
        FOR s IN 1 .. $NSTREAMS LOOP
            PERFORM event_store.append_event(c || '-' || s, 'Deposited', jsonb_build_object('amount', r),
                                             '{"correlationStreamName": "payment-1"}')
               FROM (VALUES ('account'), ('other')) v(c) ORDER BY c;
        END LOOP;
    END LOOP;
END
\$\$;
ANALYZE event_store.events;
SQL
chown postgres "$WORK"/*.sql
psql_pg -d mdb -f "'$WORK/load_mdb.sql'"
psql_pg -d ours -f "'$WORK/load_ours.sql'"
MAXPOS=$((NSTREAMS * ROUNDS * 2))

cat >"$WORK/write.sql" <<SQL
\set s random(1, 100000)
SELECT write_message(gen_random_uuid()::varchar, ('writeBench-' || :s)::varchar, 'SomeType'::varchar, '{"attribute": "some value"}'::jsonb, '{"metaAttribute": "some meta value", "correlationStreamName": "someCorrelation-123"}'::jsonb);
SQL
cp "$WORK/write.sql" "$WORK/write_ceiling.sql"
cat >"$WORK/write_ceiling_insert.sql" <<SQL
\set s random(1, 100000)
\set p random(0, 1000000000)
INSERT INTO public.write_ceiling (id, stream_name, type, position, data, metadata) VALUES (gen_random_uuid(), 'writeBench-' || :s, 'SomeType', :p, '{"attribute": "some value"}', '{"metaAttribute": "some meta value", "correlationStreamName": "someCorrelation-123"}');
SQL
psql_pg -d mdb -c "'CREATE TABLE public.write_ceiling (LIKE message_store.messages INCLUDING ALL)'"
psql_pg -d mdb -c "'GRANT INSERT ON public.write_ceiling TO message_store'"
cat >"$WORK/category.sql" <<SQL
\set pos random(1, $MAXPOS)
\set member random(0, $((GROUP - 1)))
SELECT count(*) FROM get_category_messages('account', :pos, 100, NULL, :member, $GROUP);
SQL
chown postgres "$WORK"/*.sql

# pgbench as the message_store role: its search_path ("\$user") finds the
# functions unqualified in both databases, as Message DB's clients call them.
tps() {
    local db=$1 script=$2 clients=$3
    as_pg "PGHOST='$WORK' PGPORT=$PORT $PGBIN/pgbench -n -M prepared -U message_store -c $clients -j $clients -T $SECS -f '$WORK/$script' $db" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

mkdir -p "$OUTDIR"
REPORT="$OUTDIR/messagedb_$(date -u +%Y%m%dT%H%M%SZ).txt"
{
    echo "Message DB compatibility benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), $(free -g | awk '/Mem:/ {print $2}') GB RAM"
    echo "PostgreSQL $($PGBIN/postgres --version | awk '{print $3}'); Message DB $(cat "$WORK/package/database/VERSION.txt"); ${SECS}s per run, $PASSES interleaved passes (mean tps), synchronous_commit=off; ours: event id scope $ID_SCOPE"
    echo
    printf '%-52s %12s %12s %8s\n' workload "ours tps" "mdb tps" ratio
} | tee "$REPORT"

# row NAME SCRIPT CLIENTS TARGET [FIRST_DB FIRST_SCRIPT]: the first column
# runs FIRST_SCRIPT (default SCRIPT) in FIRST_DB (default ours), the second
# SCRIPT in mdb; TARGET "-" marks a reference row without a target.
row() {
    local name=$1 script=$2 clients=$3 target=$4 first_db=${5:-ours} first_script=${6:-$2}
    local t_mdb=0 t_ours=0
    # interleaved passes, so that background load hits both alike
    for ((p = 0; p < PASSES; p++)); do
        t_mdb=$(awk -v a="$t_mdb" -v b="$(tps mdb "$script" "$clients")" 'BEGIN {print a + b / '"$PASSES"'}')
        t_ours=$(awk -v a="$t_ours" -v b="$(tps "$first_db" "$first_script" "$clients")" 'BEGIN {print a + b / '"$PASSES"'}')
    done
    awk -v n="$name" -v o="$t_ours" -v m="$t_mdb" -v t="$target" 'BEGIN {
        r = o / m; printf "%-52s %12.1f %12.1f %7.2fx %s\n", n, o, m, r,
            (t == "-" ? "(reference)" : r >= t ? "(target " t "x: met)" : "(target " t "x: MISSED)") }' | tee -a "$REPORT"
}

for c in $CLIENTS; do
    row "write_message, $c client(s), 100000 streams" write.sql "$c" 1.3
done
# What one client's transaction rate allows at all: the same message
# inserted by a bare prepared INSERT (no function, no version lookup, no
# id check) into a copy of Message DB's table with its four indexes, in the
# first column, against Message DB's write_message.
row "bare INSERT, MDB's own table (reference), 1 client" write_ceiling.sql 1 - mdb write_ceiling_insert.sql
row "get_category_messages batch 100, group of $GROUP, 1 client" category.sql 1 2
row "get_category_messages batch 100, group of $GROUP, 4 clients" category.sql 4 2

echo "report: $REPORT"
