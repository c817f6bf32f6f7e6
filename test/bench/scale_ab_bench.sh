#!/usr/bin/env bash
# Two builds of the library side by side (issue 26): single-event appends to
# a random one of BENCH_STREAMS streams at each client count, build A and
# build B swapped in by a restart between runs (ABAB..., same cluster, same
# data), and a raw INSERT with Message DB's columns and indexes measured in
# every pass as the common baseline.  Prints per client count the median
# over passes of ours/raw for each build and of B/A.
#
#   BENCH_LIB_A=/path/old/event_store.so BENCH_LIB_B=/path/new/event_store.so \
#     PGBIN=/private/copy/usr/lib/postgresql/15/bin bash test/bench/scale_ab_bench.sh
#
# Run as root.  PGBIN must be a PostgreSQL installation of its own: the
# script overwrites its event_store.so (it puts back B at the end).  The SQL
# of both builds must be the same version (the extension is created once).
#
# Every run of A or B also samples the appenders' wait events every 10 ms
# (pg_stat_activity): how often an appender waited on the feed registry's
# LWLock (event_store_feed) is a count that a busy machine does not blur
# the way it blurs throughput.
#
# Environment: BENCH_SECONDS (6) per run, BENCH_PASSES (3), BENCH_CLIENTS
# ("1 4 16 64"), BENCH_STREAMS (100000), BENCH_OUT (test/bench/results),
# BENCH_SYNC (synchronous_commit, default on; off takes the WAL flush out
# and leaves the CPU and lock cost of an append).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:?set PGBIN to a private installation}
. "$HERE/lib.sh"
LIB_A=${BENCH_LIB_A:?build A}
LIB_B=${BENCH_LIB_B:?build B}
SECS=${BENCH_SECONDS:-6}
PASSES=${BENCH_PASSES:-3}
NSTREAMS=${BENCH_STREAMS:-100000}
CLIENTS=${BENCH_CLIENTS:-1 4 16 64}
OUTDIR=${BENCH_OUT:-$HERE/results}
PKGLIB=$("$PGBIN/pg_config" --pkglibdir)

BENCH_CONF="shared_buffers = 256MB
max_wal_size = 4GB
max_connections = 250
max_worker_processes = 16
synchronous_commit = ${BENCH_SYNC:-on}
fsync = on"
cp "$LIB_A" "$PKGLIB/event_store.so"
bench_cluster_start scale_ab
as_pg() { runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$@"; }
psql_q() { as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
use_lib() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -w -m fast stop >/dev/null
    cp "$1" "$PKGLIB/event_store.so"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 60 start >/dev/null
    # warm the caches again (a restart empties shared buffers): the raw run
    # before it ran warm
    psql_q -d ours -c "SELECT pg_prewarm(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE n.nspname = 'event_store' AND c.relkind IN ('r', 'i')" >/dev/null
    as_pg "$PGBIN/pgbench" -n -M prepared -c 4 -j 2 -T 2 -f "$WORK/ours.sql" ours >/dev/null 2>&1
}

bench_append_stores "$NSTREAMS"
psql_q -d ours -c 'CREATE EXTENSION pg_prewarm'
psql_q -d postgres -c 'CREATE UNLOGGED TABLE wait_samples (variant text, clients int, waiting text)'
sample() {   # variant clients: sample the appenders' wait events while a run lasts
    psql_q -d postgres -c "DO \$\$
DECLARE stop timestamptz := clock_timestamp() + interval '$((SECS - 1)) s';
BEGIN
  PERFORM pg_sleep(0.5);
  WHILE clock_timestamp() < stop LOOP
    INSERT INTO wait_samples
    SELECT '$1', $2, coalesce(a.wait_event_type || ':' || a.wait_event, 'CPU')
      FROM pg_stat_activity a WHERE a.datname = 'ours' AND a.state = 'active' AND a.query LIKE '%append_event%';
    PERFORM pg_sleep(0.01);
  END LOOP;
END \$\$" >/dev/null
}
tps() {
    local db=$1 script=$2 clients=$3 threads=$(( $3 < 4 ? $3 : 4 ))
    as_pg "$PGBIN/pgbench" -n -M prepared -c "$clients" -j "$threads" -T "$SECS" -f "$WORK/$script" "$db" 2>&1 |
        sed -n 's/^tps = \([0-9.]*\).*/\1/p'
}

mkdir -p "$OUTDIR"
REPORT="$OUTDIR/scale_ab_$(date -u +%Y%m%dT%H%M%SZ).txt"
{
    echo "A/B append scaling, $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(bench_machine); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "A: $LIB_A"; echo "B: $LIB_B"
    echo "${SECS}s per run, $PASSES passes (raw, A, B per pass and client count), $NSTREAMS streams, fsync on, synchronous_commit ${BENCH_SYNC:-on}"
} | tee "$REPORT"
RAW="$WORK/runs.tsv"; : >"$RAW"
for ((p = 1; p <= PASSES; p++)); do
    for c in $CLIENTS; do
        # alternate the order of A and B between passes
        if (( p % 2 )); then order="A B"; else order="B A"; fi
        r=$(tps raw raw.sql "$c")
        for v in $order; do
            [[ $v == A ]] && use_lib "$LIB_A" || use_lib "$LIB_B"
            sample "$v" "$c" &
            t=$(tps ours ours.sql "$c")
            wait
            printf '%s\t%s\t%s\t%s\t%s\n' "$p" "$c" "$v" "$t" "$r" | tee -a "$RAW"
        done
    done
done
echo | tee -a "$REPORT"
printf '%-8s %10s %10s %10s %10s %10s %10s\n' clients "A tps" "B tps" "raw tps" "A/raw" "B/raw" "B/A" | tee -a "$REPORT"
for c in $CLIENTS; do
    awk -F'\t' -v c="$c" '$2 == c' "$RAW" | sort -n | awk -F'\t' '
        { if ($3 == "A") { a[$1] = $4 } else { b[$1] = $4 }; r[$1] = $5 }
        function med(x,   n, i, v, t, j) { n = 0; for (i in x) v[++n] = x[i];
            for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
            return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
        END { for (p in a) { ra[p] = a[p] / r[p]; rb[p] = b[p] / r[p]; ba[p] = b[p] / a[p] }
              printf "%-8s %10d %10d %10d %9.2fx %9.2fx %9.2fx\n", c, med(a), med(b), med(r), med(ra), med(rb), med(ba) }' c="$c" | tee -a "$REPORT"
done
echo "(medians over passes; ratios are medians of per-pass ratios)" | tee -a "$REPORT"
echo | tee -a "$REPORT"
echo "appender wait samples (every 10 ms): all / on LWLock:event_store_feed / top waits" | tee -a "$REPORT"
psql_q -d postgres -F ' ' -c "
SELECT format('%-8s %s %6s %6s   %s', clients, variant, count(*), count(*) FILTER (WHERE waiting = 'LWLock:event_store_feed'),
              (SELECT string_agg(w || ' ' || n, ', ' ORDER BY n DESC) FROM (
                  SELECT waiting AS w, count(*) AS n FROM wait_samples t
                   WHERE t.variant = s.variant AND t.clients = s.clients GROUP BY 1 ORDER BY 2 DESC LIMIT 4) x))
  FROM wait_samples s GROUP BY clients, variant ORDER BY clients, variant" | tee -a "$REPORT"
cp "$LIB_B" "$PKGLIB/event_store.so"
echo "report: $REPORT"
