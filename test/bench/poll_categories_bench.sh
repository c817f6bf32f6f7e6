#!/usr/bin/env bash
# poll() over one category against poll() over two (review 1.13 poll2).
# One throw-away cluster, one database with BENCH_EVENTS events (default
# 100,000) in 5 categories interleaved by position (account, order, user,
# invoice, shipment; 100 streams each), recorded over the last 6 days of
# the current month, so that the log keeps its default 2 partitions and
# poll's statements run as generic plans (at most 4 partitions).  Loaded
# by INSERT as test/sql/include/restored.sql does (append_event would take
# minutes).  Two subscriptions, checkpoint at half the log: "one" to
# account, "two" to account and order.  Variants, pgbench -M prepared, one
# client, poll(name, 100):
#
#   one, two                 event_store.poll (runs with jit = off)
#   one_before, two_before   bench.poll: the same definition without its
#                            jit = off (poll as in 1.12 and 1.13 before)
#
# Every pass runs the four back to back (ABAB: one_before, one, two_before,
# two; reversed every other pass) and gives, for before and after, the
# ratio tps(one) / tps(two) (how many times longer a two-category poll
# takes) and tps(after) / tps(before) of each; printed: the medians over
# passes.
#
#   bash test/bench/poll_categories_bench.sh           # 5 s runs, 3 passes
#   bash test/bench/poll_categories_bench.sh --quick   # 2 s, one pass
#
# Run as root with the extension installed (make install).
#
# Environment:
#   BENCH_SECONDS  seconds per pgbench run (default 5; 2 with --quick)
#   BENCH_PASSES   interleaved passes (default 3; 1 with --quick)
#   BENCH_EVENTS   events in the log (default 100000; a multiple of 1000)
#   PG_MAJOR       PostgreSQL major version (default 15); PGBIN overrides
#                  the server binaries' directory
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
NEVENTS=${BENCH_EVENTS:-100000}

# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
autovacuum = off"
bench_cluster_start poll_categories_bench
psql_pg() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

runuser -u postgres -- "$PGBIN/createdb" pc
psql_pg -d pc >/dev/null <<SQL
SET client_min_messages = warning;
CREATE EXTENSION event_store;
-- $NEVENTS events, 5 categories interleaved by position, 100 streams each,
-- recorded over the 6 days before now (the current month's partition:
-- a log made at the start of a month gets a third partition, still at
-- most 4)
CREATE TEMP TABLE ev AS
SELECT p, (ARRAY['account', 'order', 'user', 'invoice', 'shipment'])[p % 5 + 1] || '-' || ((p / 5) % 100) AS stream_id,
       now() - interval '6 days' + p * (interval '6 days' / $NEVENTS) AS at
  FROM generate_series(1, $NEVENTS) p;
SELECT event_store._create_partition_for(at) FROM ev WHERE p = 1;
SELECT setval('event_store.global_position_seq', $NEVENTS);
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, split_part(stream_id, '-', 1), count(*), min(at), max(at), min(p), max(p) FROM ev GROUP BY stream_id;
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data, event_id,
                                recorded_at, occurred_at, transaction_id)
SELECT p, stream_id, row_number() OVER (PARTITION BY stream_id ORDER BY p), 'Happened', jsonb_build_object('n', p),
       gen_random_uuid(), at, at, pg_current_xact_id()
  FROM ev;
SELECT event_store.subscribe('one', ARRAY['account']), event_store.subscribe('two', ARRAY['account', 'order']);
SELECT event_store.ack('one', $NEVENTS / 2), event_store.ack('two', $NEVENTS / 2);
-- poll as before: the same definition without its jit = off
CREATE SCHEMA bench;
DO \$\$
DECLARE def text := pg_get_functiondef('event_store.poll(text, int, int, int)'::regprocedure);
BEGIN
    IF strpos(def, E' SET jit TO ''off''\n') = 0 THEN
        RAISE EXCEPTION 'poll() has no jit = off to cut out (not 1.13 with review poll2?)';
    END IF;
    def := replace(def, E' SET jit TO ''off''\n', '');
    def := replace(def, 'FUNCTION event_store.poll(', 'FUNCTION bench.poll(');
    EXECUTE def;
END \$\$;
VACUUM ANALYZE;
SQL
INFO=$(psql_pg -d pc -Atc "SELECT (SELECT count(*) FROM event_store.partition_info) || ' partitions, jit available: ' || pg_jit_available() || ', jit_above_cost ' || current_setting('jit_above_cost')")
echo "== $NEVENTS events, $INFO; checkpoints at $((NEVENTS / 2))"

S=$WORK/scripts
mkdir -p "$S"
declare -A SCRIPT=(
    [one_before]="SELECT * FROM bench.poll('one', 100);"
    [one]="SELECT * FROM event_store.poll('one', 100);"
    [two_before]="SELECT * FROM bench.poll('two', 100);"
    [two]="SELECT * FROM event_store.poll('two', 100);"
)
VARIANTS=(one_before one two_before two)
for v in "${VARIANTS[@]}"; do
    printf '%s\n' "${SCRIPT[$v]}" >"$S/$v.sql"
done
chmod -R a+rX "$S"

run() {   # variant -> tps
    runuser -u postgres -- "$PGBIN/pgbench" -n -M prepared -c 1 -T "$SECS" -f "$S/$1.sql" pc 2>&1 |
        sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
for v in "${VARIANTS[@]}"; do run "$v" >/dev/null; done  # warm-up, not counted
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
declare -A TPS R
for pass in $(seq 1 "$PASSES"); do
    order=("${VARIANTS[@]}")
    if ((pass % 2 == 0)); then order=(two two_before one one_before); fi
    for v in "${order[@]}"; do TPS[$v]=$(run "$v"); done
    r_before=$(ratio "${TPS[one_before]}" "${TPS[two_before]}")
    r_after=$(ratio "${TPS[one]}" "${TPS[two]}")
    g_one=$(ratio "${TPS[one]}" "${TPS[one_before]}")
    g_two=$(ratio "${TPS[two]}" "${TPS[two_before]}")
    R[before]="${R[before]:-} $r_before"; R[after]="${R[after]:-} $r_after"
    R[g_one]="${R[g_one]:-} $g_one"; R[g_two]="${R[g_two]:-} $g_two"
    printf '   pass %d  tps: one_before %7.1f  one %7.1f  two_before %7.1f  two %7.1f\n' "$pass" \
        "${TPS[one_before]}" "${TPS[one]}" "${TPS[two_before]}" "${TPS[two]}"
done
med() { printf '%s\n' $1 | bench_median; }   # word splitting on purpose
echo
echo "| measure | median | passes |"
echo "|---|---:|---|"
echo "| one / two categories, before (tps(one) / tps(two)) | $(med "${R[before]}") | ${R[before]# } |"
echo "| one / two categories, after | $(med "${R[after]}") | ${R[after]# } |"
echo "| one category, after / before (tps) | $(med "${R[g_one]}") | ${R[g_one]# } |"
echo "| two categories, after / before (tps) | $(med "${R[g_two]}") | ${R[g_two]# } |"
echo
echo "$(bench_machine); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); ${SECS} s x $PASSES pass(es); load average before: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
