#!/usr/bin/env bash
# scavenge() throughput (event_store 1.12, issue 28): a closed partition of
# BENCH_EVENTS events (streams of 10) with 30 % of its streams deleted is
# scavenged; in the same pass, on the same partition and with the same cache
# state, the baseline copies the survivors with INSERT ... SELECT into a
# plain heap table without indexes (and, second baseline, into one that then
# gets the partition's five indexes, which scavenge() builds too).  Each
# pass uses a fresh partition; the order of the baseline and the scavenge
# alternates between passes (the scavenge reads the partition before it
# rewrites it, so the baseline that runs second reads the rewritten one
# through the same filter: the same survivors).  Prints events/s and the
# median over passes of the ratio scavenge rate / baseline rate (goal:
# >= 0.5 against the plain INSERT ... SELECT).
#
# Second part, appends during a scavenge: pgbench appends single events
# (append_event, BENCH_CLIENTS clients, BENCH_SECONDS seconds) to the
# current partition, once alone and once while scavenges of a closed
# partition of BENCH_EVENTS events run back to back (each in BEGIN ...
# ROLLBACK, so every one of them rewrites the same partition: copy, index
# builds, swap under ACCESS EXCLUSIVE on the log), and once while the
# same copy and index builds run back to back as INSERT ... SELECT and
# CREATE INDEX into a plain table (a scavenge's CPU and I/O without its
# swap), in alternating order.  Prints the rates, the p99 and longest
# append latencies and the median ratios: during scavenges / alone (goal:
# >= 0.8) and during scavenges / during the plain copy (what the swap's
# lock costs beyond the CPU and I/O).
#
#   bash test/bench/scavenge_bench.sh             # 200000 events, 3 passes
#   BENCH_EVENTS=1000000 bash test/bench/scavenge_bench.sh
#   bash test/bench/scavenge_bench.sh --quick     # one pass
#
# Run as root with the extension installed (make install).
#
# Environment:
#   BENCH_EVENTS   events in each scavenged partition (default 200000)
#   BENCH_PASSES   passes (default 3; 1 with --quick)
#   BENCH_SECONDS  seconds per pgbench run of the appends part (default 5; 2 with --quick)
#   BENCH_CLIENTS  pgbench clients of the appends part (default 1)
#   BENCH_APPENDS  0 skips the appends part (default 1)
#   PG_MAJOR       PostgreSQL major version (default 15)
#   PGBIN          its bin directory (default /usr/lib/postgresql/$PG_MAJOR/bin)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
EVENTS=${BENCH_EVENTS:-200000}

# shellcheck source=lib.sh
source "$HERE/lib.sh"
bench_run_length "$@"
BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
synchronous_commit = off
autovacuum = off"
bench_cluster_start scavenge_bench
psql_pg() { PGOPTIONS="-c client_min_messages=warning" runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
now_ms() { date +%s%3N; }

echo "== $(bench_machine); PostgreSQL $PG_MAJOR; $EVENTS events per partition, 30 % of the streams deleted, $PASSES passes"
psql_pg -d postgres -c "CREATE DATABASE bench"
psql_pg -d bench -o /dev/null -c "SET client_min_messages = warning" -c "CREATE EXTENSION event_store"

# One month of 2001 per pass: EVENTS events in streams of 10, 30 % of the
# streams deleted (half soft, half hard).
fill() {
    local pass=$1
    psql_pg -d bench -o /dev/null <<SQL
SELECT event_store.ensure_partitions('2001-01-01'::timestamptz + interval '1 month' * $pass,
                                     '2001-01-01'::timestamptz + interval '1 month' * $pass + interval '1 second');
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                event_id, recorded_at, occurred_at, transaction_id)
SELECT nextval('event_store.global_position_seq'), 'p$pass-' || s, v, 'Tick',
       jsonb_build_object('s', s, 'v', v, 'amount', s * v, 'note', 'some event data of a typical size'),
       gen_random_uuid(), '2001-01-02'::timestamptz + interval '1 month' * $pass + (s * 10 + v) * interval '10 ms',
       '2001-01-02', pg_current_xact_id()
  FROM generate_series(1, $EVENTS / 10) s, generate_series(1, 10) v ORDER BY s, v;
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, 'p$pass', max(stream_version), min(recorded_at), max(recorded_at), min(global_position), max(global_position)
  FROM event_store.events WHERE stream_id LIKE 'p$pass-%' GROUP BY stream_id;
SELECT count(event_store.delete_stream('p$pass-' || s, hard => s % 2 = 0))
  FROM generate_series(1, $EVENTS / 10) s WHERE s % 10 < 3;
VACUUM ANALYZE event_store.streams;
CHECKPOINT;
SQL
    psql_pg -d bench -At -c "SELECT partition FROM event_store.partition_ranges()
        WHERE '2001-01-02'::timestamptz + interval '1 month' * $pass >= range_start
          AND '2001-01-02'::timestamptz + interval '1 month' * $pass < range_end"
}

HIDDEN="EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
          AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
               OR e.recorded_at < now() - h.max_age))"

warm() { psql_pg -d bench -o /dev/null -c "SELECT count(*) FROM ONLY $1"; }

# baseline PART INDEXES -> milliseconds
baseline() {
    local part=$1 indexes=$2 t0 t1
    psql_pg -d bench -o /dev/null -c "DROP TABLE IF EXISTS plain_copy" -c "CREATE TABLE plain_copy (LIKE event_store.events)"
    warm "$part"
    t0=$(now_ms)
    psql_pg -d bench -o /dev/null <<SQL
BEGIN;
INSERT INTO plain_copy SELECT e.* FROM ONLY $part e WHERE NOT $HIDDEN;
$( [[ $indexes == 1 ]] && cat <<IDX
CREATE INDEX ON plain_copy (stream_id, stream_version);
CREATE INDEX ON plain_copy (global_position);
CREATE INDEX ON plain_copy (split_part(stream_id, '-', 1), global_position);
CREATE INDEX ON plain_copy (event_id);
CREATE INDEX ON plain_copy USING gin (tags) WHERE tags IS NOT NULL;
IDX
)
COMMIT;
SQL
    t1=$(now_ms)
    echo $((t1 - t0))
}

# scavenge PART -> milliseconds
scavenge() {
    local part=$1 t0 t1 removed
    warm "$part"
    t0=$(now_ms)
    removed=$(psql_pg -d bench -At -c "SELECT event_store.scavenge('$part')")
    t1=$(now_ms)
    [[ $removed -gt 0 ]] || { echo "scavenge removed nothing" >&2; exit 1; }
    echo $((t1 - t0))
}

SURVIVORS=$((EVENTS - EVENTS * 3 / 10))
: >"$WORK/ratios_plain"; : >"$WORK/ratios_indexed"
printf '\n| pass | scavenge ms | INSERT...SELECT ms | + 5 indexes ms | scavenge events/s | INSERT...SELECT events/s | ratio (plain) | ratio (indexed) |\n|---|---|---|---|---|---|---|---|\n'
for ((pass = 1; pass <= PASSES; pass++)); do
    part=$(fill "$pass")
    if ((pass % 2 == 1)); then
        b=$(baseline "$part" 0); bi=$(baseline "$part" 1); s=$(scavenge "$part")
    else
        s=$(scavenge "$part"); b=$(baseline "$part" 0); bi=$(baseline "$part" 1)
    fi
    awk -v p="$pass" -v s="$s" -v b="$b" -v bi="$bi" -v n="$EVENTS" -v k="$SURVIVORS" \
        'BEGIN { printf "| %d | %d | %d | %d | %.0f | %.0f | %.2f | %.2f |\n", p, s, b, bi, n / (s / 1000), n / (b / 1000), b / s, bi / s }'
    awk -v s="$s" -v b="$b" 'BEGIN { print b / s }' >>"$WORK/ratios_plain"
    awk -v s="$s" -v bi="$bi" 'BEGIN { print bi / s }' >>"$WORK/ratios_indexed"
done
printf '\nmedian ratio scavenge / INSERT...SELECT (rates; >= 0.5 is the goal): %s\n' "$(bench_median <"$WORK/ratios_plain")"
printf 'median ratio scavenge / (INSERT...SELECT + the 5 indexes): %s\n' "$(bench_median <"$WORK/ratios_indexed")"
echo "(events/s: events of the partition read per second; $SURVIVORS of $EVENTS survive)"

[[ ${BENCH_APPENDS:-1} == 1 ]] || exit 0

# ---------------------------------------------------------------------------
# Appends to the current partition while a closed partition is scavenged
# ---------------------------------------------------------------------------
CLIENTS=${BENCH_CLIENTS:-1}
APART=$(fill 99)
cat >"$WORK/append.sql" <<'SQL'
\set s random(1, 1000)
SELECT event_store.append_event('live-' || :s, 'Tick', '{"amount": 12, "note": "some event data of a typical size"}');
SQL

# appends LOAD -> "tps p99_latency_ms max_latency_ms loops"; LOAD: none,
# scavenge (scavenges back to back), or copy (the same copy and five index
# builds done by INSERT ... SELECT and CREATE INDEX into a plain table,
# back to back: the CPU and I/O of a scavenge without its swap)
appends() {
    local load=$1 out loop_pid=
    psql_pg -d bench -o /dev/null -c "VACUUM event_store.streams" -c "CHECKPOINT"
    rm -f "$WORK/stop" "$WORK/loops"
    if [[ $load == scavenge ]]; then
        # ROLLBACK keeps the partition as it was: each one does the whole work again
        (while [[ ! -e $WORK/stop ]]; do
            psql_pg -d bench -At -c "BEGIN" -c "SELECT event_store.scavenge('$APART')" -c "ROLLBACK" >>"$WORK/loops"
         done) &
        loop_pid=$!
    elif [[ $load == copy ]]; then
        (while [[ ! -e $WORK/stop ]]; do
            psql_pg -d bench -At >>"$WORK/loops" <<SQL
BEGIN;
CREATE TABLE plain_copy2 (LIKE event_store.events);
INSERT INTO plain_copy2 SELECT e.* FROM ONLY $APART e WHERE NOT $HIDDEN;
CREATE INDEX ON plain_copy2 (stream_id, stream_version);
CREATE INDEX ON plain_copy2 (global_position);
CREATE INDEX ON plain_copy2 (split_part(stream_id, '-', 1), global_position);
CREATE INDEX ON plain_copy2 (event_id);
CREATE INDEX ON plain_copy2 USING gin (tags) WHERE tags IS NOT NULL;
SELECT 1;
ROLLBACK;
SQL
         done) &
        loop_pid=$!
    fi
    [[ -n $loop_pid ]] && sleep 0.2
    out=$("$PGBIN/pgbench" -n -M prepared -c "$CLIENTS" -j "$CLIENTS" -T "$SECS" -l --log-prefix="$WORK/lat" \
        -f "$WORK/append.sql" bench 2>&1) || { echo "$out" >&2; exit 1; }
    if [[ -n $loop_pid ]]; then
        touch "$WORK/stop"
        wait "$loop_pid"
    fi
    # the log's third field is the latency in microseconds
    echo "$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out") \
$(cat "$WORK"/lat.* | awk '{ print $3 }' | sort -n | awk '{ a[++n] = $1 } END { printf "%.1f %.1f", a[int(n * 0.99)] / 1000, a[n] / 1000 }') \
$(grep -c '^[1-9]' "$WORK/loops" 2>/dev/null || true)"
    rm -f "$WORK"/lat.*
}

: >"$WORK/ratios_appends"; : >"$WORK/ratios_swap"
printf '\n== appends during scavenge: %s client(s), %s s per run, scavenges of %s (%s events) back to back\n' \
    "$CLIENTS" "$SECS" "$APART" "$EVENTS"
printf '\n| pass | appends/s alone | during scavenges | during the same copy + indexes | scavenges in the window | p99 / max latency alone ms | during scavenges | during copy | ratio scavenge / alone | ratio scavenge / copy |\n|---|---|---|---|---|---|---|---|---|---|\n'
for ((pass = 1; pass <= PASSES; pass++)); do
    if ((pass % 2 == 1)); then
        read -r a pa ma _ <<<"$(appends none)"; read -r d pd md n <<<"$(appends scavenge)"; read -r c pc mc _ <<<"$(appends copy)"
    else
        read -r c pc mc _ <<<"$(appends copy)"; read -r d pd md n <<<"$(appends scavenge)"; read -r a pa ma _ <<<"$(appends none)"
    fi
    [[ $n -gt 0 ]] || { echo "no scavenge completed during the appends" >&2; exit 1; }
    awk -v p="$pass" -v a="$a" -v d="$d" -v c="$c" -v n="$n" -v pa="$pa" -v ma="$ma" -v pd="$pd" -v md="$md" -v pc="$pc" -v mc="$mc" \
        'BEGIN { printf "| %d | %.0f | %.0f | %.0f | %d | %s / %s | %s / %s | %s / %s | %.2f | %.2f |\n", p, a, d, c, n, pa, ma, pd, md, pc, mc, d / a, d / c }'
    awk -v a="$a" -v d="$d" 'BEGIN { print d / a }' >>"$WORK/ratios_appends"
    awk -v c="$c" -v d="$d" 'BEGIN { print d / c }' >>"$WORK/ratios_swap"
done
printf '\nmedian ratio appends during scavenges / appends alone (>= 0.8 is the goal): %s\n' "$(bench_median <"$WORK/ratios_appends")"
printf 'median ratio appends during scavenges / during the same copy and index builds without a swap: %s\n' "$(bench_median <"$WORK/ratios_swap")"
