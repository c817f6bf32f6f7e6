#!/usr/bin/env bash
# CPU per append (issue 26): the server CPU time one backend spends per
# single-event append, each append its own transaction, against a raw INSERT
# into a table with Message DB's columns and four indexes, measured in the
# same run.  Throughput on a shared 2-core machine swings by 2x from one
# run to the next as other work comes and goes; the CPU a backend itself
# used (utime + stime from /proc/PID/stat) moves much less, and on a
# machine whose appends are CPU-bound (several clients, 2 cores) it is
# what decides the ratio of throughputs.
#
# Each measured session runs a procedure that appends N times with a
# COMMIT after each, with synchronous_commit off in that session (the WAL
# flush wait is not CPU, and with it on the backend's own fdatasync
# dominates both sides); random streams of BENCH_STREAMS seeded ones.
#
#   bash test/bench/append_cpu_bench.sh
#   BENCH_LIB_A=/old/event_store.so BENCH_LIB_B=/new/event_store.so \
#     PGBIN=/private/copy/usr/lib/postgresql/15/bin bash test/bench/append_cpu_bench.sh
#
# With BENCH_LIB_A and BENCH_LIB_B (both of the same SQL version) the two
# builds are swapped in by a restart between rounds (ABAB); PGBIN must then
# be an installation of its own (its event_store.so is overwritten; B is
# left in place).  Run as root.
#
# Environment: BENCH_APPENDS (20000) per measurement, BENCH_ROUNDS (3),
# BENCH_STREAMS (100000), BENCH_OUT (test/bench/results).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
. "$HERE/lib.sh"
N=${BENCH_APPENDS:-20000}
ROUNDS=${BENCH_ROUNDS:-3}
NSTREAMS=${BENCH_STREAMS:-100000}
OUTDIR=${BENCH_OUT:-$HERE/results}
LIB_A=${BENCH_LIB_A:-}
LIB_B=${BENCH_LIB_B:-}
PKGLIB=$("$PGBIN/pg_config" --pkglibdir)
if [[ -n $LIB_A || -n $LIB_B ]]; then
    [[ -n $LIB_A && -n $LIB_B ]] || { echo "set both BENCH_LIB_A and BENCH_LIB_B" >&2; exit 2; }
    [[ $PGBIN != /usr/lib/postgresql/* ]] || { echo "with two builds PGBIN must be a private installation" >&2; exit 2; }
    VARIANTS="A B"
    cp "$LIB_A" "$PKGLIB/event_store.so"
else
    VARIANTS="current"
fi

BENCH_CONF="shared_buffers = 256MB
max_wal_size = 4GB
fsync = on"
bench_cluster_start append_cpu
as_pg() { runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" "$@"; }
psql_q() { as_pg "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 "$@"; }

bench_append_stores "$NSTREAMS"
psql_q -d raw <<SQL
CREATE PROCEDURE appends(n int) LANGUAGE plpgsql AS \$\$
BEGIN
  FOR i IN 1 .. n LOOP
    INSERT INTO messages (stream_name, position, type, data)
    VALUES ('bench-' || (1 + (random() * ($NSTREAMS - 1))::int), (random() * 1e12)::bigint, 'Appended', '{"a": 1}');
    COMMIT;
  END LOOP;
END \$\$;
SQL
psql_q -d ours <<SQL
CREATE PROCEDURE appends(n int) LANGUAGE plpgsql AS \$\$
BEGIN
  FOR i IN 1 .. n LOOP
    PERFORM event_store.append_event('bench-' || (1 + (random() * ($NSTREAMS - 1))::int), 'Appended', '{"a": 1}');
    COMMIT;
  END LOOP;
END \$\$;
SQL

use_lib() {
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -w -m fast stop >/dev/null
    cp "$1" "$PKGLIB/event_store.so"
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 60 start >/dev/null
}

# cpu_per_append DB: microseconds of the backend's CPU per append, N appends
cpu_per_append() {
    local db=$1 pid a b
    rm -f "$WORK/pid" "$WORK/done"
    psql_q -d "$db" -c 'CALL appends(1000)'   # warm the caches after a restart
    printf '%s\n' "SET synchronous_commit = off;" "SELECT pg_backend_pid() \\g $WORK/pid" \
        "SELECT pg_sleep(0.5);" "CALL appends($N);" "SELECT 1 \\g $WORK/done" "SELECT pg_sleep(1);" |
        psql_q -d "$db" >/dev/null &
    until [[ -s $WORK/pid ]]; do sleep 0.05; done
    pid=$(cat "$WORK/pid")
    a=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    until [[ -s $WORK/done ]]; do sleep 0.05; done
    b=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    wait
    awk -v a="$a" -v b="$b" -v n="$N" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", (b - a) / hz * 1e6 / n}'
}

mkdir -p "$OUTDIR"
REPORT="$OUTDIR/append_cpu_$(date -u +%Y%m%dT%H%M%SZ).txt"
{
    echo "CPU per append, $(date -u '+%Y-%m-%d %H:%M UTC'); machine: $(bench_machine); load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); $N appends per measurement, each its own transaction (synchronous_commit off in the measured session); $ROUNDS rounds; $NSTREAMS streams"
    [[ -n $LIB_A ]] && echo "A: $LIB_A" && echo "B: $LIB_B"
    printf '%-6s %-8s %12s %12s %10s\n' round build "raw us" "ours us" "ours/raw"
} | tee "$REPORT"
declare -A RATIOS OURS
for ((r = 1; r <= ROUNDS; r++)); do
    for v in $VARIANTS; do
        [[ $v == A ]] && use_lib "$LIB_A"
        [[ $v == B ]] && use_lib "$LIB_B"
        if (( r % 2 )); then t_raw=$(cpu_per_append raw); t_ours=$(cpu_per_append ours)
        else t_ours=$(cpu_per_append ours); t_raw=$(cpu_per_append raw); fi
        q=$(awk -v o="$t_ours" -v r="$t_raw" 'BEGIN {printf "%.3f", o / r}')
        RATIOS[$v]="${RATIOS[$v]:-} $q"
        OURS[$v]="${OURS[$v]:-} $t_ours"
        printf '%-6s %-8s %12s %12s %9sx\n' "$r" "$v" "$t_raw" "$t_ours" "$q" | tee -a "$REPORT"
    done
done
for v in $VARIANTS; do
    # shellcheck disable=SC2086  # the ratios: words on purpose
    echo "$v: median ours/raw CPU per append $(printf '%s\n' ${RATIOS[$v]} | sort -g |
        awk '{a[NR] = $1} END {printf "%.2fx (of %d rounds, %.2f-%.2f)", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, NR, a[1], a[NR]}')" | tee -a "$REPORT"
done
if [[ -n $LIB_A ]]; then
    # the raw INSERT's own CPU moves with the machine's load between rounds:
    # the builds' own CPU per append, compared directly, is shown too
    med() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
    # shellcheck disable=SC2086  # words on purpose
    awk -v a="$(med ${OURS[A]})" -v b="$(med ${OURS[B]})" 'BEGIN {printf "B/A: ours CPU per append, medians %.1f / %.1f us = %.2fx\n", b, a, b / a}' | tee -a "$REPORT"
fi
echo "report: $REPORT"
