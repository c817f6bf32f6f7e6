#!/usr/bin/env bash
# Live async projections (issue 29): the projection worker's lag and its
# cost to appenders, in one run.
#
#   1. lag: pgbench appends one event per transaction at BENCH_RATE
#      (default 1,000/s) for BENCH_SECONDS with event_store.projection_workers
#      = 1; one async projection inserts a row per event with
#      clock_timestamp(); lag = that time - the event's recorded_at.
#      Reported: p50, p99, max (target p99 <= 200 ms) and the rate reached.
#   2. throughput: unthrottled pgbench appends (BENCH_CLIENTS clients) with
#      projection_workers = 0 (A) and = 1 (B), interleaved A B A B ...
#      (BENCH_PASSES pairs); reported: median of the B/A ratios of
#      transactions per second (target >= 0.9).
#
#   bash test/bench/projection_lag_bench.sh           # 10 s lag run, 5 s x 3 pairs
#   bash test/bench/projection_lag_bench.sh --quick   # 5 s lag run, 3 s x 2 pairs
#
# Run as root with the extension installed (make install into the
# PostgreSQL of PGBIN).  A throw-away cluster is made (test/bench/lib.sh).
# Environment: PGBIN (default /usr/lib/postgresql/$PG_MAJOR/bin), PG_MAJOR
# (15), BENCH_RATE, BENCH_SECONDS, BENCH_PASSES, BENCH_CLIENTS (default 4).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
# shellcheck source=lib.sh
source "$HERE/lib.sh"

LAG_SECS=${BENCH_SECONDS:-10}
TP_SECS=5
PASSES=${BENCH_PASSES:-3}
for arg in "$@"; do
    case $arg in
        --quick) LAG_SECS=${BENCH_SECONDS:-5}; TP_SECS=3; PASSES=${BENCH_PASSES:-2} ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
RATE=${BENCH_RATE:-1000}
CLIENTS=${BENCH_CLIENTS:-4}

BENCH_CONF="synchronous_commit = off
max_worker_processes = 16" bench_cluster_start es_lagbench
PSQL=("$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d postgres)
run_pg() { runuser -u postgres -- "$@"; }

"${PSQL[@]}" <<'SQL'
CREATE EXTENSION event_store;
CREATE TABLE lag_rm (pos bigint, recorded_at timestamptz, applied_at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION lag_h(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO lag_rm (pos, recorded_at) VALUES (e.global_position, e.recorded_at) $$;
SELECT event_store.create_projection('lag_p', 'lag_h(event_store.events)', mode => 'async');
SQL
cat >"$WORK/append.sql" <<'SQL'
\set s random(1, 1000)
SELECT event_store.append_event('bench-' || :s, 'Tick', '{"n": 1}');
SQL
chown postgres "$WORK/append.sql"

set_workers() {
    "${PSQL[@]}" -c "ALTER SYSTEM SET event_store.projection_workers = $1" -c "SELECT pg_reload_conf()" >/dev/null
    sleep 1.5
}
# wait until the projection has caught up with the log
catch_up() {
    for _ in $(seq 1 600); do
        [[ $("${PSQL[@]}" -c "SELECT count(*) = 0 FROM event_store.events e WHERE e.global_position > (SELECT c.position FROM event_store.projection_checkpoints c WHERE c.name = 'lag_p')") == t ]] && return 0
        sleep 0.1
    done
    echo "projection did not catch up" >&2; exit 1
}

echo "# projection_lag_bench: $(bench_machine); PostgreSQL $("${PSQL[@]}" -c 'SHOW server_version')"

# 1. lag at RATE appends/s
set_workers 1
"${PSQL[@]}" -c "SELECT event_store.append_event('warm', 'Tick', '{}')" >/dev/null
catch_up
"${PSQL[@]}" -c "TRUNCATE lag_rm" >/dev/null
out=$(run_pg "$PGBIN/pgbench" -n -M prepared -f "$WORK/append.sql" -R "$RATE" -T "$LAG_SECS" -c 4 -j 2 postgres 2>&1)
catch_up
reached=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)
"${PSQL[@]}" -F ' ' <<'SQL' | while read -r n p50 p99 pmax; do
SELECT count(*),
       round(1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY applied_at - recorded_at))::numeric, 1),
       round(1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY applied_at - recorded_at))::numeric, 1),
       round(1000 * extract(epoch FROM max(applied_at - recorded_at))::numeric, 1)
  FROM lag_rm;
SQL
    echo "lag: $n events at $reached appends/s (target $RATE): p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms (target p99 <= 200 ms)"
done

# 2. appenders' throughput, worker off (A) and on (B), interleaved
ratios=()
for pass in $(seq 1 "$PASSES"); do
    tps=()
    for w in 0 1; do
        set_workers "$w"
        catch_up_if() { [[ $w == 1 ]] && catch_up || true; }
        catch_up_if
        t=$(run_pg "$PGBIN/pgbench" -n -M prepared -f "$WORK/append.sql" -T "$TP_SECS" -c "$CLIENTS" -j 2 postgres 2>&1 |
            sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -1)
        tps+=("$t")
    done
    r=$(awk -v a="${tps[0]}" -v b="${tps[1]}" 'BEGIN { printf "%.3f", b / a }')
    ratios+=("$r")
    echo "pass $pass: without worker ${tps[0]} tps, with worker ${tps[1]} tps, ratio $r"
    # let the worker drain the backlog of the B run before the next A run
    set_workers 1; catch_up
done
echo "throughput ratio with/without worker: median $(printf '%s\n' "${ratios[@]}" | bench_median) (target >= 0.9)"
