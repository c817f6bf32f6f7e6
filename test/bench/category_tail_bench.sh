#!/usr/bin/env bash
# Category reads at the end of a quiet category (event_store 1.10): the
# same data in two databases of one throw-away cluster, one with event_store
# 1.9 (category equality, order by position: the planner could walk the
# global_position index) and one updated to 1.10 (a range over the
# category index's key); read_category and poll, at the tail of the quiet
# category and in its middle, pgbench -M prepared, passes interleaved.
# Prints calls per second and the ratio 1.10 / 1.9 of each read.
#
#   bash test/bench/category_tail_bench.sh           # BENCH_SECONDS (5) per run
#   bash test/bench/category_tail_bench.sh --quick   # 2 s per run, one pass
#
# Run as root with the extension installed (make install).
#
# Environment:
#   BENCH_SECONDS  seconds per pgbench run (default 5; 2 with --quick)
#   BENCH_PASSES   interleaved passes, calls summed (default 3; 1 with --quick)
#   BENCH_QUIET    events of the four quiet categories (default 100000)
#   BENCH_BUSY     events of the busy category written after them (default 300000)
#   PG_MAJOR       PostgreSQL major version (default 15)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
QUIET=${BENCH_QUIET:-100000}
BUSY=${BENCH_BUSY:-300000}

# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
autovacuum = off"
bench_cluster_start category_tail_bench
psql_pg() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== $(bench_machine); PostgreSQL $PG_MAJOR; $QUIET quiet events, then $BUSY busy"
for db in v19 v110; do
    psql_pg -d postgres -c "CREATE DATABASE $db"
    psql_pg -d "$db" -o /dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION event_store VERSION '1.9';
-- four quiet categories, streams of 5 interleaved; then the busy one
SELECT count(event_store.append((ARRAY['account', 'aaa', 'zzz', 'mmm'])[1 + (hashint4(s) & 3)] || '-' || s,
             ARRAY(SELECT event_store.event('Quiet', '{}') FROM generate_series(1, 5))))
  FROM generate_series(1, $QUIET / 5) s;
SELECT count(event_store.append('writeBench-' || s,
             ARRAY(SELECT event_store.event('Busy', '{}') FROM generate_series(1, 10))))
  FROM generate_series(1, $BUSY / 10) s;
VACUUM ANALYZE event_store.events;
SELECT event_store.subscribe('account_reader', ARRAY['account']);
SELECT event_store.subscribe('two_reader', ARRAY['account', 'zzz']);
SQL
done
psql_pg -d v110 -c "ALTER EXTENSION event_store UPDATE TO '1.10'" >/dev/null
TAIL=$(psql_pg -d v19 -At -c "SELECT max(global_position) - 50 FROM event_store.events WHERE stream_id LIKE 'account-%'")
MIDDLE=$((QUIET / 2))
for db in v19 v110; do
    psql_pg -d "$db" -c "SELECT event_store.ack('account_reader', $TAIL), event_store.ack('two_reader', $TAIL)" >/dev/null
done
echo "== versions: $(psql_pg -d v19 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'event_store'") and $(psql_pg -d v110 -At -c "SELECT extversion FROM pg_extension WHERE extname = 'event_store'"); tail position $TAIL"

WORKLOADS=(
    "read_category, tail of the quiet category|SELECT count(*) FROM event_store.read_category('account', $TAIL, 100);"
    "read_category, middle of the quiet category|SELECT count(*) FROM event_store.read_category('account', $MIDDLE, 100);"
    "poll, one category, at its tail|SELECT count(*) FROM event_store.poll('account_reader', 100);"
    "poll, two categories, at their tail|SELECT count(*) FROM event_store.poll('two_reader', 100);"
)

declare -A CALLS
for ((pass = 1; pass <= PASSES; pass++)); do
    order="v19 v110"
    ((pass % 2 == 0)) && order="v110 v19"
    for i in "${!WORKLOADS[@]}"; do
        sql=${WORKLOADS[$i]#*|}
        printf '%s\n' "$sql" >"$WORK/w$i.sql"
        chown postgres "$WORK/w$i.sql"
        for db in $order; do
            n=$(runuser -u postgres -- "$PGBIN/pgbench" -n -M prepared -T "$SECS" -c 1 -f "$WORK/w$i.sql" "$db" 2>&1 |
                sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
            CALLS[$i,$db]=$((${CALLS[$i,$db]:-0} + ${n:-0}))
        done
    done
done

printf '\n| read (1 client, %d x %d s) | 1.9 calls/s | 1.10 calls/s | 1.10 / 1.9 |\n|---|---|---|---|\n' "$PASSES" "$SECS"
for i in "${!WORKLOADS[@]}"; do
    name=${WORKLOADS[$i]%%|*}
    secs=$((PASSES * SECS))
    awk -v n="$name" -v a="${CALLS[$i,v19]}" -v b="${CALLS[$i,v110]}" -v s="$secs" \
        'BEGIN { printf "| %s | %.0f | %.0f | %s |\n", n, a / s, b / s, (a > 0 ? sprintf("%.2f", b / a) : "-") }'
done
