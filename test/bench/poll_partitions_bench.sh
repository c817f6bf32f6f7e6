#!/usr/bin/env bash
# poll() against the number of partitions (issue 26/29).  Two databases of
# one throw-away cluster with the same events (as test/bench/run.sh loads
# them: BENCH_STREAMS streams x BENCH_ROUNDS events in categories account
# and other, interleaved, all recorded today): "p2" has the log's 2
# partitions, "pmany" also daily partitions in the past up to BENCH_PARTS in
# all (run.sh's (7b) row: 119).  In both, two subscriptions to account:
#
#   cg  no retries: run.sh's (7b), poll('cg', 100, m, 4)
#   rq  20 retries due (5 nacked events per member, retry_delay 1 ms):
#       every poll reads its retries first, then new events
#
# and bench.poll, poll() as it was before the fix (the retry read without
# its recorded_at bound: the generated definition with that condition cut
# out), to measure "before" in the same run.  pgbench -M prepared, one
# client, BENCH_SECONDS per run; every pass runs all variants with p2 and
# pmany back to back (order reversed every other pass).  Prints tps and, per
# variant, the median over passes of tps(pmany) / tps(p2).
#
#   bash test/bench/poll_partitions_bench.sh           # 5 s runs, 3 passes
#   bash test/bench/poll_partitions_bench.sh --quick   # 2 s, one pass
#
# Run as root with the extension installed (make install).
#
# Environment:
#   BENCH_SECONDS  seconds per pgbench run (default 5; 2 with --quick)
#   BENCH_PASSES   interleaved passes (default 3; 1 with --quick)
#   BENCH_PARTS    partitions of database pmany (default 119)
#   BENCH_STREAMS  streams per category (default 500)
#   BENCH_ROUNDS   events per stream (default 20)
#   PG_MAJOR       PostgreSQL major version (default 15); PGBIN overrides
#                  the server binaries' directory
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
NPARTS=${BENCH_PARTS:-119}
NSTREAMS=${BENCH_STREAMS:-500}
ROUNDS=${BENCH_ROUNDS:-20}

# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
autovacuum = off"
bench_cluster_start poll_partitions_bench
psql_pg() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

for db in p2 pmany; do
    runuser -u postgres -- "$PGBIN/createdb" "$db"
    psql_pg -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION event_store"
done
psql_pg -d pmany >/dev/null <<SQL
SET client_min_messages = warning;
SELECT event_store.set_partition_interval('1 day');
DO \$\$
DECLARE i int := 1;
BEGIN   -- daily partitions in the past until NPARTS in all (today's is premade)
    WHILE (SELECT count(*) FROM event_store.partition_info) < $NPARTS AND i < 1000 LOOP
        PERFORM event_store._create_partition_for(now() - make_interval(days => i));
        i := i + 1;
    END LOOP;
END \$\$;
SQL
for db in p2 pmany; do
    psql_pg -d "$db" >/dev/null <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
    FOR r IN 0 .. $ROUNDS - 1 LOOP
        FOR s IN 1 .. $NSTREAMS LOOP
            PERFORM event_store.append_event(c || '-' || s, 'Deposited', jsonb_build_object('amount', r))
               FROM (VALUES ('account'), ('other')) v(c) ORDER BY c;
        END LOOP;
    END LOOP;
END \$\$;
SELECT event_store.subscribe('cg', ARRAY['account']);
SELECT event_store.subscribe('rq', ARRAY['account'], NULL, 1000, '1 millisecond');
DO \$\$
DECLARE p bigint;
BEGIN
    FOR m IN 0 .. 3 LOOP
        FOR p IN SELECT global_position FROM event_store.poll('rq', 5, m, 4) LOOP
            PERFORM event_store.nack('rq', p, 'bench', m, 4);
        END LOOP;
    END LOOP;
END \$\$;
-- poll as before the fix: the retry read without its recorded_at bound
CREATE SCHEMA bench;
DO \$\$
DECLARE def text := pg_get_functiondef('event_store.poll(text, int, int, int)'::regprocedure);
BEGIN
    IF strpos(def, ' AND e.recorded_at >= retry_from AND e.recorded_at < scan_to') = 0 THEN
        RAISE EXCEPTION 'poll() has no bounded retry read to cut out (not 1.12 with issue 26/29?)';
    END IF;
    def := replace(def, ' AND e.recorded_at >= retry_from AND e.recorded_at < scan_to', '');
    def := replace(def, 'FUNCTION event_store.poll(', 'FUNCTION bench.poll(');
    EXECUTE def;
END \$\$;
VACUUM ANALYZE;
SQL
done
sleep 0.1   # the retries are due (retry_delay 1 ms)
P2=$(psql_pg -d p2 -Atc "SELECT count(*) FROM event_store.partition_info")
PN=$(psql_pg -d pmany -Atc "SELECT count(*) FROM event_store.partition_info")
RQ=$(psql_pg -d pmany -Atc "SELECT count(*) FROM event_store.subscription_retries WHERE name = 'rq' AND state = 'waiting'")
echo "== p2: $P2 partitions, pmany: $PN partitions; $((2 * NSTREAMS * ROUNDS)) events each; rq: $RQ retries due"

S=$WORK/scripts
mkdir -p "$S"
declare -A SCRIPT=(
    [cg]="SELECT * FROM event_store.poll('cg', 100, :m, 4);"
    [cg_before]="SELECT * FROM bench.poll('cg', 100, :m, 4);"
    [rq]="SELECT * FROM event_store.poll('rq', 100, :m, 4);"
    [rq_before]="SELECT * FROM bench.poll('rq', 100, :m, 4);"
)
VARIANTS=(cg_before cg rq_before rq)
for v in "${VARIANTS[@]}"; do
    printf '\\set m random(0, 3)\n%s\n' "${SCRIPT[$v]}" >"$S/$v.sql"
done
chmod -R a+rX "$S"

run() {   # variant db -> tps
    runuser -u postgres -- "$PGBIN/pgbench" -n -M prepared -c 1 -T "$SECS" -f "$S/$1.sql" "$2" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
for v in "${VARIANTS[@]}"; do run "$v" p2 >/dev/null; run "$v" pmany >/dev/null; done  # warm-up, not counted
declare -A RATIOS
for pass in $(seq 1 "$PASSES"); do
    order=("${VARIANTS[@]}")
    if ((pass % 2 == 0)); then order=(cg rq_before rq cg_before); fi
    for v in "${order[@]}"; do
        if ((pass % 2)); then a=$(run "$v" p2); b=$(run "$v" pmany)
        else b=$(run "$v" pmany); a=$(run "$v" p2); fi
        r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')
        RATIOS[$v]="${RATIOS[$v]:-} $r"
        printf '   pass %d  %-10s p2 %8.1f tps   pmany %8.1f tps   pmany/p2 %s\n' "$pass" "$v" "$a" "$b" "$r"
    done
done
echo
echo "| variant | median pmany/p2 ($PN vs $P2 partitions) | passes |"
echo "|---|---:|---|"
for v in "${VARIANTS[@]}"; do
    # shellcheck disable=SC2086  # the list on purpose
    m=$(printf '%s\n' ${RATIOS[$v]} | bench_median)
    echo "| $v | $m | ${RATIOS[$v]# } |"
done
echo
echo "$(bench_machine); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); ${SECS} s x $PASSES pass(es); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
