#!/usr/bin/env bash
# Consistency beyond one stream (issue 9), as ratios measured in one run:
#   - append_all of 2 streams x 1 event vs two append_event calls in one
#     transaction;
#   - append_if with a one-tag condition vs a plain append_event, untagged
#     and tagged (target: <= 1.5x the time of a plain append).
# pgbench -M prepared, 1 client, synchronous_commit off, interleaved passes.
#
#   bash test/bench/consistency_bench.sh [--quick]
#   BENCH_SECONDS (default 5; 2 with --quick), BENCH_PASSES (default 3; 1)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
bench_cluster_start es_consistency_bench
DB=bench
"$PGBIN/createdb" "$DB"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB")
"${PSQL[@]}" <<'SQL'
CREATE EXTENSION event_store;
-- 2000 accounts and 1000 courses exist before the runs
SELECT count(event_store.append_event('account-' || i, 'Opened', '{}')) FROM generate_series(1, 2000) i;
SELECT count(event_store.append_event('course-' || i, 'Defined', '{}', tags => ARRAY['course:' || i]))
  FROM generate_series(1, 1000) i;
VACUUM ANALYZE;
SQL

S=$WORK/scripts
mkdir -p "$S"
cat >"$S/two_appends.sql" <<'SQL'
\set a random(1, 1000)
\set b random(1001, 2000)
BEGIN;
SELECT event_store.append_event('account-' || :a, 'Debited', '{"amount": 5}');
SELECT event_store.append_event('account-' || :b, 'Credited', '{"amount": 5}');
COMMIT;
SQL
cat >"$S/append_all.sql" <<'SQL'
\set a random(1, 1000)
\set b random(1001, 2000)
SELECT count(*) FROM event_store.append_all(ARRAY[
  ROW('account-' || :a, NULL, ARRAY[event_store.event('Debited', '{"amount": 5}')])::event_store.stream_append,
  ROW('account-' || :b, NULL, ARRAY[event_store.event('Credited', '{"amount": 5}')])::event_store.stream_append]);
SQL
cat >"$S/tagged_append.sql" <<'SQL'
\set c random(1, 1000)
SELECT event_store.append_event('course-' || :c, 'StudentEnrolled', '{"student": "s"}', tags => ARRAY['course:' || :c]);
SQL
cat >"$S/plain_append.sql" <<'SQL'
\set c random(1, 1000)
SELECT event_store.append_event('course-' || :c, 'StudentEnrolled', '{"student": "s"}');
SQL
# the condition is read up to the newest position: it holds (no conflict)
cat >"$S/append_if.sql" <<'SQL'
\set c random(1, 1000)
SELECT event_store.append_if(ARRAY[event_store.event('StudentEnrolled', '{"student": "s"}', tags => ARRAY['course:' || :c])],
       'course-' || :c, ARRAY['StudentEnrolled'], ARRAY['course:' || :c],
       (SELECT last_value FROM event_store.global_position_seq));
SQL

RAW=$WORK/raw.tsv
: >"$RAW"
run() {
    local v=$1 out tps
    "${PSQL[@]}" -c 'VACUUM event_store.streams' >/dev/null
    out=$(PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -M prepared -c 1 -j 1 -T "$SECS" -f "$S/$v.sql" "$DB" 2>&1)
    if grep -q 'aborted' <<<"$out"; then echo "$out" >&2; exit 1; fi
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)
    printf '%s\t%s\n' "$v" "$tps" >>"$RAW"
}
for pass in $(seq 1 "$PASSES"); do
    if ((pass % 2)); then order=(two_appends append_all plain_append tagged_append append_if)
    else order=(append_if tagged_append plain_append append_all two_appends); fi
    for v in "${order[@]}"; do run "$v"; done
done
med() { awk -v v="$1" '$1 == v {print $2}' "$RAW" | bench_median; }
two=$(med two_appends); all=$(med append_all); plain=$(med plain_append); tag=$(med tagged_append); cond=$(med append_if)
OUT=$HERE/results
mkdir -p "$OUT"
REPORT=$OUT/consistency-$(date -u +%Y%m%d-%H%M%S).md
{
    echo "# Consistency beyond one stream — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- $(bench_machine); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); pgbench -M prepared, 1 client, synchronous_commit off, ${SECS}s x $PASSES interleaved passes; load average $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "| workload | tps (median) | ratio |"
    echo "|---|---:|---|"
    echo "| two append_event in one transaction (2 streams x 1 event) | $two | |"
    echo "| append_all (2 streams x 1 event) | $all | **$(awk -v a="$all" -v b="$two" 'BEGIN{printf "%.2f", a/b}')** x the two appends |"
    echo "| append_event, untagged (plain append) | $plain | |"
    echo "| append_event of a tagged event | $tag | $(awk -v a="$plain" -v b="$tag" 'BEGIN{printf "%.2f", a/b}') x the time of the plain append |"
    echo "| append_if, one-tag condition | $cond | **$(awk -v a="$plain" -v b="$cond" 'BEGIN{printf "%.2f", a/b}')** x the time of the plain append (target <= 1.5); $(awk -v a="$tag" -v b="$cond" 'BEGIN{printf "%.2f", a/b}') x the tagged append |"
} | tee "$REPORT"
