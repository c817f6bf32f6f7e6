#!/usr/bin/env bash
# write_message against the number of partitions holding rows.  Message DB
# ids are unique across the store; the log has no index across partitions,
# so write_message (event id scope store) looks the id up in every other
# partition that has rows (the one it writes to checks it with its unique
# index).  Two databases of one throw-away cluster, event_store_messagedb in
# both, scope store: "few" has only the current partition, "many" also
# BENCH_PAST past monthly partitions of BENCH_ROWS rows each.  One client,
# pgbench -M prepared, passes interleaved.  Prints transactions per second,
# the ratio many / few and the cost of one more partition in microseconds.
#
#   bash test/bench/messagedb_partitions_bench.sh           # 5 s runs, 3 passes
#   bash test/bench/messagedb_partitions_bench.sh --quick   # 2 s, one pass
#
# Run as root with the extensions installed (make install).
#
# Environment:
#   BENCH_SECONDS  seconds per pgbench run (default 5; 2 with --quick)
#   BENCH_PASSES   interleaved passes, transactions summed (default 3; 1 with --quick)
#   BENCH_PAST     past partitions of database many (default 23: two years, monthly)
#   BENCH_ROWS     rows in each past partition (default 2000)
#   PG_MAJOR       PostgreSQL major version (default 15)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PAST=${BENCH_PAST:-23}
ROWS=${BENCH_ROWS:-2000}

# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
autovacuum = off"
bench_cluster_start messagedb_partitions_bench
psql_pg() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "== $(bench_machine); PostgreSQL $PG_MAJOR; database many: $PAST past partitions of $ROWS rows"
for db in few many; do
    psql_pg -d postgres -c "CREATE DATABASE $db"
    psql_pg -d "$db" -o /dev/null -c "SET client_min_messages = warning" \
        -c "CREATE EXTENSION event_store_messagedb CASCADE"
done
# past partitions, their rows written around append (as a restore would)
psql_pg -d many -o /dev/null <<SQL
SELECT event_store._create_partition_for(date_trunc('month', now()) - k * interval '1 month')
  FROM generate_series(1, $PAST) k;
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                event_id, recorded_at, occurred_at, transaction_id)
SELECT 1000000000 + k * $ROWS + n, 'restored-' || k || '-' || n, 1, 'Restored', '{}',
       gen_random_uuid(), t, t, pg_current_xact_id()
  FROM generate_series(1, $PAST) k,
       LATERAL (SELECT date_trunc('month', now()) - k * interval '1 month' + interval '1 day' AS t) m,
       generate_series(1, $ROWS) n;
SQL
for db in few many; do
    psql_pg -d "$db" -o /dev/null -c "SELECT event_store.set_event_id_scope('store')" -c "VACUUM ANALYZE event_store.events"
done
for db in few many; do
    echo "== $db: $(psql_pg -d "$db" -At -c "SELECT count(*) || ' partitions, ' || count(*) FILTER (WHERE range_end <= now()) || ' of them past' FROM event_store.partition_info WHERE NOT archived")"
done

cat >"$WORK/write.sql" <<'SQL'
\set s random(1, 100000)
SELECT message_store.write_message(gen_random_uuid()::varchar, ('writeBench-' || :s)::varchar, 'SomeType'::varchar, '{"attribute": "some value"}'::jsonb, '{"metaAttribute": "some meta value"}'::jsonb);
SQL
chown postgres "$WORK/write.sql"

declare -A TX
for ((pass = 1; pass <= PASSES; pass++)); do
    order="few many"
    ((pass % 2 == 0)) && order="many few"
    for db in $order; do
        n=$(runuser -u postgres -- "$PGBIN/pgbench" -n -M prepared -T "$SECS" -c 1 -f "$WORK/write.sql" "$db" 2>&1 |
            sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p')
        TX[$db]=$((${TX[$db]:-0} + ${n:-0}))
    done
done

secs=$((PASSES * SECS))
awk -v a="${TX[few]}" -v b="${TX[many]}" -v s="$secs" -v p="$PAST" 'BEGIN {
    printf "\n| write_message, 1 client (%d s) | tps |\n|---|---|\n", s
    printf "| few: the current partition only | %.0f |\n", a / s
    printf "| many: and %d past partitions with rows | %.0f |\n", p, b / s
    if (a > 0 && b > 0)
        printf "\nmany / few: %.2f; each past partition adds %.2f us per write\n", b / a, (s / b - s / a) * 1e6 / p
}'
