#!/usr/bin/env bash
# Append scaling with clients (issue 26): single-event appends to a random
# one of 100k streams at 1, 4, 16 and 64 clients, with the shipped defaults
# (event_store.notify on), against a raw INSERT into a table with Message
# DB's columns and indexes and against Message DB's write_message (when npm
# can fetch it), ratios from the same run; fsync and synchronous_commit on.
# Then: wait_for_feed() latency from an append's commit to the waiter's
# return at ~1k appends/s (p50/p99), the append rate at 16 clients with
# 100 waiters vs none, and the locks an append holds (pg_locks and wait
# events sampled at 16 clients).  Then (1.12): hot streams with expected
# versions against Message DB at 4 and 16 clients, and an inline upsert
# projection at 16 clients against the same appends without it.
#
#   bash test/bench/scale_bench.sh          # BENCH_SECONDS (8) per run, 4 interleaved passes
#   bash test/bench/scale_bench.sh --quick  # 3 s per run, one pass, 20k streams seeded
#
# Run as root with the extension installed.  PGBIN (default
# /usr/lib/postgresql/$PG_MAJOR/bin) may point at a private installation.
#
# Environment:
#   BENCH_SECONDS   seconds per pgbench run
#   BENCH_PASSES    interleaved passes (curve: medians of tps and of per-pass ratios; else tps averaged)
#   BENCH_CLIENTS   client counts (default "1 4 16 64")
#   BENCH_STREAMS   streams seeded and appended to (default 100000)
#   BENCH_WAITERS   waiters of the waiter test (default 100)
#   BENCH_OUT       results directory (default test/bench/results)
#   BENCH_DOC=1     write the results into docs/benchmarks.md and redraw docs/scale_bench.svg
#   BENCH_PARTS     parts to run (default "curve latency waiters locks hot proj")
#   BENCH_HOT       hot streams of the hot part (default 4)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
. "$HERE/lib.sh"

SECS=${BENCH_SECONDS:-8}
PASSES=${BENCH_PASSES:-4}
NSTREAMS=${BENCH_STREAMS:-100000}
if [[ ${1:-} == --quick ]]; then
    SECS=${BENCH_SECONDS:-3}; PASSES=${BENCH_PASSES:-1}; NSTREAMS=${BENCH_STREAMS:-20000}
fi
CLIENTS=${BENCH_CLIENTS:-1 4 16 64}
PARTS=" ${BENCH_PARTS:-curve latency waiters locks hot proj} "
part() { [[ $PARTS == *" $1 "* ]]; }
NHOT=${BENCH_HOT:-4}
NWAITERS=${BENCH_WAITERS:-100}
OUTDIR=${BENCH_OUT:-$HERE/results}

BENCH_CONF="shared_buffers = 256MB
max_wal_size = 4GB
max_connections = 250
max_worker_processes = 16
synchronous_commit = on
fsync = on"
bench_cluster_start scale_bench
as_pg() { runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$@"; }
psql_q() { as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

bench_append_stores "$NSTREAMS"
MDB=0
if bench_fetch_messagedb "$WORK/mdb" 2>/dev/null; then
    chown -R postgres "$WORK/mdb"
    as_pg env DATABASE_NAME=mdb PATH="$PGBIN:$PATH" bash "$WORK/mdb/package/database/install.sh" >/dev/null 2>&1 && MDB=1
    if [[ $MDB == 1 ]]; then
        psql_q -d mdb -c "SET search_path = message_store; SELECT count(message_store.write_message(gen_random_uuid()::varchar, 'bench-' || s, 'Seeded', '{\"a\": 1}')) FROM generate_series(1, $NSTREAMS) s" >/dev/null
        psql_q -d mdb -c 'VACUUM ANALYZE'
    fi
fi
[[ $MDB == 1 ]] || echo "   (Message DB not available: npm could not fetch it; its column stays empty)"

cat >"$WORK/mdb.sql" <<SQL
\set s random(1, $NSTREAMS)
SELECT write_message(gen_random_uuid()::varchar, ('bench-' || :s)::varchar, 'Appended'::varchar, '{"a": 1}'::jsonb);
SQL
chown postgres "$WORK/mdb.sql"

tps() {
    local db=$1 script=$2 clients=$3 threads=$(( $3 < 4 ? $3 : 4 )) user=postgres
    # Message DB's functions call each other unqualified: its role's search_path finds them
    [[ $db == mdb ]] && user=message_store
    as_pg "$PGBIN/pgbench" -n -M prepared -U "$user" -c "$clients" -j "$threads" -T "$SECS" -f "$WORK/$script" "$db" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}
median() {   # numbers...: their median
    printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

mkdir -p "$OUTDIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT="$OUTDIR/scale_$STAMP.txt"
DAT="$WORK/scale.dat"
{
    echo "Append scaling benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(bench_machine); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); fsync on, synchronous_commit on; ${SECS}s per run, $PASSES pass(es); $NSTREAMS streams seeded; event_store defaults (notify on)"
    echo
    printf '%-8s %12s %12s %12s %10s %10s\n' clients "event_store" "raw INSERT" "Message DB" "ours/raw" "ours/MDB"
} | tee "$REPORT"
printf '# clients\tours\traw\tmdb\n' >"$DAT"
part curve || CLIENTS=
for c in $CLIENTS; do
    # Interleaved passes (raw first in odd passes, ours first in even ones),
    # so that background load hits all alike; the ratio is the median of
    # the per-pass ratios, the tps columns the medians of the passes.
    r_raw=(); r_ours=(); r_mdb=(); ratios=(); ratios_mdb=()
    for ((p = 0; p < PASSES; p++)); do
        if (( p % 2 == 0 )); then a=$(tps raw raw.sql "$c"); b=$(tps ours ours.sql "$c")
        else b=$(tps ours ours.sql "$c"); a=$(tps raw raw.sql "$c"); fi
        r_raw+=("$a"); r_ours+=("$b"); ratios+=("$(awk -v o="$b" -v r="$a" 'BEGIN {print o / r}')")
        if [[ $MDB == 1 ]]; then
            m=$(tps mdb mdb.sql "$c"); r_mdb+=("$m"); ratios_mdb+=("$(awk -v o="$b" -v m="$m" 'BEGIN {print o / m}')")
        fi
    done
    t_raw=$(median "${r_raw[@]}"); t_ours=$(median "${r_ours[@]}"); t_mdb=NaN; q_mdb=NaN
    q_raw=$(median "${ratios[@]}")
    [[ $MDB == 1 ]] && { t_mdb=$(median "${r_mdb[@]}"); q_mdb=$(median "${ratios_mdb[@]}"); }
    awk -v c="$c" -v o="$t_ours" -v r="$t_raw" -v m="$t_mdb" -v q="$q_raw" -v qm="$q_mdb" -v lo="$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)" \
        -v hi="$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)" 'BEGIN {
        printf "%-8s %12d %12d %12s %9.2fx %10s   (ours/raw per pass: %.2f-%.2f)\n", c, o, r, (m == "NaN" ? "-" : sprintf("%d", m)), q,
               (qm == "NaN" ? "-" : sprintf("%.2fx", qm)), lo, hi }' | tee -a "$REPORT"
    printf '%s\t%s\t%s\t%s\n' "$c" "$t_ours" "$t_raw" "$t_mdb" >>"$DAT"
done

if part latency; then
echo | tee -a "$REPORT"
echo "== wait_for_feed latency, commit to the waiter's return, ~1000 appends/s" | tee -a "$REPORT"
psql_q -d ours -c 'CREATE UNLOGGED TABLE lat_commit (pos bigint, at timestamptz)' \
       -c 'CREATE UNLOGGED TABLE lat_wake (horizon bigint, at timestamptz)'
cat >"$WORK/lat.sql" <<SQL
\set s random(1, $NSTREAMS)
SELECT event_store.append_event('bench-' || :s, 'Appended', '{"a": 1}') AS v \gset
INSERT INTO lat_commit SELECT global_position, clock_timestamp() FROM event_store.events
 WHERE stream_id = 'bench-' || :s AND stream_version = :v;
SQL
chown postgres "$WORK/lat.sql"
LATSECS=$((SECS + 2))
as_pg "$PGBIN/psql" -X -q -d ours -c "DO \$\$
DECLARE h bigint := event_store.feed_horizon(); n bigint; hs bigint[] := '{}'; ts timestamptz[] := '{}';
        stop timestamptz := clock_timestamp() + interval '$LATSECS s';
BEGIN
  WHILE clock_timestamp() < stop LOOP
    n := event_store.wait_for_feed(h, 1000);
    IF n > h THEN hs := hs || n; ts := ts || clock_timestamp(); h := n; END IF;
  END LOOP;
  INSERT INTO lat_wake SELECT * FROM unnest(hs, ts);
END \$\$" &
WAITER=$!
sleep 1
as_pg "$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -R 1000 -T "$SECS" -f "$WORK/lat.sql" ours 2>&1 | sed -n 's/^tps = \([0-9.]*\).*/   appender: \1 appends\/s/p' | tee -a "$REPORT"
wait $WAITER
psql_q -d ours -c "
WITH lat AS (
  SELECT extract(epoch FROM (SELECT min(w.at) FROM lat_wake w WHERE w.horizon >= c.pos) - c.at) * 1000 AS ms
    FROM lat_commit c)
SELECT format('   %s appends: p50 %s ms, p99 %s ms, max %s ms (negative: the waiter returned before the appender got its COMMIT reply)',
              count(ms), round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 2),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 2), round(max(ms)::numeric, 2))
  FROM lat WHERE ms IS NOT NULL" | tee -a "$REPORT"
fi

if part waiters; then
echo | tee -a "$REPORT"
echo "== appends at 16 clients with $NWAITERS waiters vs none" | tee -a "$REPORT"
# Waiters are pgbench clients too, one wait_for_feed() statement per call
# (a waiter holds its statement's snapshot while it waits, like any
# statement: one long transaction around many waits would hold back
# vacuum and HOT pruning of the streams table and slow the appends down).
cat >"$WORK/wait_far.sql" <<SQL
SELECT event_store.wait_for_feed(event_store.feed_horizon() + 1000000000, 500);
SQL
cat >"$WORK/wait_follow.sql" <<SQL
SELECT event_store.wait_for_feed(event_store.feed_horizon(), 1000);
SQL
chown postgres "$WORK"/wait_*.sql
waiters() {   # mode: follow (each returns on every advance and waits again) or far (a position never reached)
    local mode=$1 pid
    as_pg "$PGBIN/pgbench" -n -M prepared -c "$NWAITERS" -j 2 -T $((SECS + 30)) -f "$WORK/wait_$mode.sql" ours >/dev/null 2>&1 &
    pid=$!
    # measure once all are connected and waiting (starting 100 backends takes a while here)
    for _ in $(seq 1 300); do
        [[ $(psql_q -d ours -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%wait_for_feed(event_store.feed_horizon()%' AND pid <> pg_backend_pid()") -ge $NWAITERS ]] && break
        sleep 0.1
    done
    sleep 0.5
    echo "   $mode: $(psql_q -d ours -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%wait_for_feed(event_store.feed_horizon()%' AND pid <> pg_backend_pid()") waiter sessions, $(psql_q -d ours -c 'SELECT event_store._feed_waiters()') on the waiter list when measuring started"
    tps ours ours.sql 16 >"$WORK/waiters_$mode.tps"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    psql_q -d ours -c "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query LIKE '%wait_for_feed(event_store.feed_horizon()%' AND pid <> pg_backend_pid()" >/dev/null
}
T0=$(tps ours ours.sql 16)
waiters far | tee -a "$REPORT"; T_FAR=$(cat "$WORK/waiters_far.tps")
waiters follow | tee -a "$REPORT"; T_FOLLOW=$(cat "$WORK/waiters_follow.tps")
T1=$(tps ours ours.sql 16)
awk -v a="$T0" -v b="$T1" -v f="$T_FAR" -v w="$T_FOLLOW" -v n="$NWAITERS" 'BEGIN {
  base = (a + b) / 2;
  printf "   no waiters: %d appends/s (before %d, after)\n", base, a, b;
  printf "   %d waiters on a position never reached: %d appends/s (%.2fx)\n", n, f, f / base;
  printf "   %d waiters following the feed (wake, return, wait again): %d appends/s (%.2fx)\n", n, w, w / base }' | tee -a "$REPORT"
fi

if part locks; then
echo | tee -a "$REPORT"
echo "== what appenders wait on and which locks they hold, 16 clients, sampled every 10 ms" | tee -a "$REPORT"
psql_q -d ours -c 'CREATE UNLOGGED TABLE lock_samples (waiting text, lock text)'
as_pg "$PGBIN/pgbench" -n -M prepared -c 16 -j 4 -T "$SECS" -f "$WORK/ours.sql" ours >/dev/null 2>&1 &
PGB=$!
sleep 1
as_pg "$PGBIN/psql" -X -q -d ours -c "DO \$\$
DECLARE stop timestamptz := clock_timestamp() + interval '$((SECS - 2)) s';
BEGIN
  WHILE clock_timestamp() < stop LOOP
    INSERT INTO lock_samples
    SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU'), NULL
      FROM pg_stat_activity a WHERE a.query LIKE '%append_event%' AND a.pid <> pg_backend_pid() AND a.state = 'active';
    INSERT INTO lock_samples
    SELECT NULL, l.locktype || ' ' || l.mode || ' ' ||
           coalesce(CASE WHEN l.relation IS NOT NULL THEN regexp_replace(l.relation::regclass::text, '_p[0-9_]+\$', '_<partition>') END,
                    CASE l.locktype WHEN 'object' THEN l.classid::regclass::text || '/' || l.objid
                                    WHEN 'advisory' THEN 'advisory' ELSE '' END) ||
           CASE WHEN l.granted THEN '' ELSE ' (waiting)' END
      FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE a.query LIKE '%append_event%' AND a.pid <> pg_backend_pid() AND a.state = 'active';
    PERFORM pg_sleep(0.01);
  END LOOP;
END \$\$"
wait $PGB || true
psql_q -d ours -F ' ' -c "SELECT '   wait ' || waiting, count(*) FROM lock_samples WHERE waiting IS NOT NULL GROUP BY 1 ORDER BY 2 DESC" | tee -a "$REPORT"
psql_q -d ours -F ' ' -c "SELECT '   lock ' || lock, count(*) FROM lock_samples WHERE lock IS NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 25" | tee -a "$REPORT"
echo "   (counts: samples of an active appender in that wait / holding that lock)" | tee -a "$REPORT"
fi
cp "$DAT" "$OUTDIR/scale_$STAMP.dat"

# ---- hot streams: read the version, append with it; conflicts count as none
if part hot; then
echo | tee -a "$REPORT"
echo "== $NHOT hot streams with expected versions, successful appends/s (conflicts/s)" | tee -a "$REPORT"
psql_q -d ours >/dev/null <<SQL
SELECT count(event_store.append_event('hot-' || h, 'Seeded', '{"a": 1}')) FROM generate_series(1, $NHOT) h;
CREATE FUNCTION bench_try_append(s text, v bigint) RETURNS int LANGUAGE plpgsql AS \$f\$
BEGIN
    PERFORM event_store.append_event(s, 'Appended', '{"a": 1}', NULL, v);
    RETURN 1;
EXCEPTION WHEN SQLSTATE 'ES001' THEN RETURN 0;
END \$f\$;
SQL
cat >"$WORK/hot_ours.sql" <<SQL
\set h random(1, $NHOT)
SELECT event_store.stream_version('hot-' || :h) AS v \\gset
SELECT bench_try_append('hot-' || :h, :v);
SQL
if [[ $MDB == 1 ]]; then
    psql_q -d mdb >/dev/null <<SQL
SET search_path = message_store;
SELECT count(message_store.write_message(gen_random_uuid()::varchar, 'hot-' || h, 'Seeded', '{"a": 1}')) FROM generate_series(1, $NHOT) h;
CREATE FUNCTION message_store.bench_try_write(s varchar, v bigint) RETURNS int LANGUAGE plpgsql AS \$f\$
BEGIN
    PERFORM message_store.write_message(gen_random_uuid()::varchar, s, 'Appended', '{"a": 1}'::jsonb, NULL, v);
    RETURN 1;
EXCEPTION WHEN raise_exception THEN RETURN 0;
END \$f\$;
GRANT EXECUTE ON FUNCTION message_store.bench_try_write(varchar, bigint) TO message_store;
SQL
fi
cat >"$WORK/hot_mdb.sql" <<SQL
\set h random(1, $NHOT)
SELECT stream_version(('hot-' || :h)::varchar) AS v \\gset
SELECT bench_try_write(('hot-' || :h)::varchar, :v);
SQL
chown postgres "$WORK"/hot_*.sql
hot_sum() {   # db: the sum of the hot streams' versions
    if [[ $1 == mdb ]]; then
        # Message DB's functions name its table unqualified
        psql_q -d mdb -c "SET search_path = message_store" -c "SELECT sum(message_store.stream_version('hot-' || h)) FROM generate_series(1, $NHOT) h"
    else
        psql_q -d ours -c "SELECT sum(event_store.stream_version('hot-' || h)) FROM generate_series(1, $NHOT) h"
    fi
}
hot_run() {   # db script clients -> "successes/s conflicts/s"
    local before after t
    before=$(hot_sum "$1")
    t=$(tps "$1" "$2" "$3")
    after=$(hot_sum "$1")
    awk -v b="$before" -v a="$after" -v t="$t" -v s="$SECS" 'BEGIN { printf "%.0f %.0f", (a - b) / s, t - (a - b) / s }'
}
printf '   %-8s %18s %18s %10s\n' clients "event_store ok/s" "Message DB ok/s" "ours/MDB" | tee -a "$REPORT"
for c in 4 16; do
    so=0; sm=0; cm=0; co=0
    for ((p = 0; p < PASSES; p++)); do   # interleaved
        read -r o oc <<<"$(hot_run ours hot_ours.sql "$c")"
        so=$((so + o)); co=$((co + oc))
        if [[ $MDB == 1 ]]; then read -r m mc <<<"$(hot_run mdb hot_mdb.sql "$c")"; sm=$((sm + m)); cm=$((cm + mc)); fi
    done
    awk -v c="$c" -v o="$so" -v oc="$co" -v m="$sm" -v mc="$cm" -v n="$PASSES" -v mdb="$MDB" 'BEGIN {
        printf "   %-8s %11d (%4d) %11s %6s %10s\n", c, o / n, oc / n, (mdb ? sprintf("%d", m / n) : "-"),
               (mdb ? sprintf("(%d)", mc / n) : ""), (mdb && m > 0 ? sprintf("%.2fx", o / m) : "-") }' | tee -a "$REPORT"
done
fi

# ---- an inline upsert projection at 16 clients vs the same appends without
if part proj; then
echo | tee -a "$REPORT"
echo "== 16 clients, one inline upsert projection (a row per stream) vs none" | tee -a "$REPORT"
# a copy of ours (same seeded data); the notifier worker may still be
# connected to ours for up to a second after the last append
for _ in $(seq 1 30); do
    psql_q -d postgres -c 'CREATE DATABASE proj TEMPLATE ours' 2>/dev/null && break
    sleep 1
done
psql_q -d proj <<'SQL'
CREATE TABLE counts (stream_id text PRIMARY KEY, events int NOT NULL, last_position bigint NOT NULL);
CREATE FUNCTION on_event(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO counts VALUES (e.stream_id, 1, e.global_position)
    ON CONFLICT (stream_id) DO UPDATE SET events = counts.events + 1, last_position = excluded.last_position
$$;
CREATE TABLE proj_start AS SELECT coalesce(max(global_position), 0) AS m FROM event_store.events;
SELECT event_store.create_projection('counts', 'on_event(event_store.events)');
VACUUM ANALYZE;
SQL
tp=0; tn=0
for ((p = 0; p < PASSES; p++)); do   # interleaved
    tn=$(awk -v a="$tn" -v b="$(tps ours ours.sql 16)" 'BEGIN {print a + b}')
    tp=$(awk -v a="$tp" -v b="$(tps proj ours.sql 16)" 'BEGIN {print a + b}')
done
check=$(psql_q -d proj -c "SELECT (SELECT sum(events) FROM counts) = (SELECT count(*) FROM event_store.events WHERE global_position > (SELECT m FROM proj_start))")
awk -v n="$tn" -v p="$tp" -v k="$PASSES" 'BEGIN {
    printf "   without: %d appends/s; with the projection: %d appends/s (%.2fx)\n", n / k, p / k, p / n }' | tee -a "$REPORT"
echo "   read model matches the appended events: $check" | tee -a "$REPORT"
fi

if [[ ${BENCH_DOC:-0} == 1 ]] && command -v gnuplot >/dev/null; then
    gnuplot <<GP
set terminal svg size 900,500 dynamic noenhanced font "sans,11" background "white"
set yrange [0:*]
set output "$ROOT/docs/scale_bench.svg"
set title "Single-event appends to random streams vs clients (fsync on, synchronous_commit on, $(nproc) cores, $STAMP)"
set logscale x 2
set xlabel "clients"
set ylabel "appends (INSERTs) per second"
set grid
set key top left
set datafile separator "\t"
set datafile missing "NaN"
plot "$DAT" using 1:2 with linespoints lw 2 title "event_store 1.11 (defaults)", \
     "" using 1:3 with linespoints lw 2 title "raw INSERT, Message DB's indexes", \
     "" using 1:4 with linespoints lw 2 title "Message DB write_message"
GP
    echo "docs/scale_bench.svg: drawn"
fi
echo "report: $REPORT"
