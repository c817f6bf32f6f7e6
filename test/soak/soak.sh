#!/usr/bin/env bash
# On demand: a mixed event_store workload for DURATION_SECONDS (default 600)
# with pgbench clients, then every invariant checked.  Not in CI (the short
# variant is test/t/009_soak_short.pl, 45 s).
#
#   bash test/soak/soak.sh            # 10 minutes, 3 clients
#   bash test/soak/soak.sh 60         # one minute
#
# The workload (weights in parentheses; scripts in this directory):
#   append.pgbench (30)           single events, no expected version, 200 streams
#   append_expected.pgbench (15)  expected versions on 5 hot streams: conflicts
#                                 (ES001) expected, caught and counted
#   batch.pgbench (10)            batches of 1..50 events, new streams with
#                                 expected version 0, append_all over two streams
#   read.pgbench (15)             read_stream, read_stream_backward, read_category
#   fold.pgbench (15)             state_as_of (now, a second ago), fold with a C
#                                 and a SQL reducer
#   async.pgbench (5)             run_projection of the async projection
#   feed.pgbench (8)              two feed readers paging through everything:
#                                 read_all with a checkpoint, poll/ack
#   maintenance.pgbench (2)       premake_partitions
# plus an inline projection on every append (setup.sql).
#
# Passes when: pgbench ran without any failed transaction or aborted client,
# the server logged no ERROR (the expected conflicts are caught in SQL and
# counted, never logged), every client backend's anonymous memory (RssAnon,
# sampled every SOAK_SAMPLE seconds) grew less than SOAK_MEM_BOUND_KB from
# the end of the warm-up (a fifth of the run) to the end, and check.sql's
# invariants hold: versions contiguous from 1, event_store.streams agrees
# with the events, both projections' tables agree with a recomputation, both
# feed readers saw every event exactly once.
#
# Environment:
#   SOAK_CLIENTS       pgbench clients (default 3)
#   SOAK_SAMPLE        seconds between memory samples (default 10)
#   SOAK_MEM_BOUND_KB  allowed RssAnon growth per backend (default 65536)
#   SOAK_KEEP=1        leave the cluster running at the end
#   PG_MAJOR           PostgreSQL major version (default 15)
#
# Run as root with the extension installed (make install).  The cluster is
# made and run as the postgres OS user in a mktemp directory, unix socket
# only, and removed at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
DURATION=${1:-600}
CLIENTS=${SOAK_CLIENTS:-3}
SAMPLE=${SOAK_SAMPLE:-10}
MEM_BOUND_KB=${SOAK_MEM_BOUND_KB:-65536}

[[ $DURATION =~ ^[0-9]+$ ]] && ((DURATION >= 10)) || { echo "usage: $0 [DURATION_SECONDS >= 10]" >&2; exit 2; }
# shellcheck source=../bench/lib.sh
. "$HERE/../bench/lib.sh"
SAMPLER=
BENCH_CLEANUP_HOOK='if [[ -n $SAMPLER ]]; then kill "$SAMPLER" 2>/dev/null || true; fi'
BENCH_KEEP=${SOAK_KEEP:-0}
BENCH_CONF=$'shared_buffers = 128MB\nmax_wal_size = 4GB\nlog_min_messages = warning\nlog_min_error_statement = error'
bench_cluster_start es_soak
echo "== cluster in $WORK (unix socket only)"
export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d soak)
"$PGBIN/createdb" soak
"${PSQL[@]}" -c 'CREATE EXTENSION event_store'
"${PSQL[@]}" -f "$HERE/setup.sql" >/dev/null

# Memory sampler: RssAnon of every pgbench client backend.
sample_memory() {
    local t0=$SECONDS pid rss
    while sleep "$SAMPLE"; do
        for pid in $("$PGBIN/psql" -X -At -d soak -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgbench'" 2>/dev/null); do
            rss=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || continue
            [[ -n $rss ]] && echo "$((SECONDS - t0)) $pid $rss"
        done
    done
}
sample_memory >"$WORK/memory.txt" &
SAMPLER=$!

echo "== workload: $CLIENTS clients for $DURATION s"
pgbench_rc=0
(cd "$HERE" && "$PGBIN/pgbench" -n -c "$CLIENTS" -j "$CLIENTS" -T "$DURATION" -P 60 \
    -f append.pgbench@30 -f append_expected.pgbench@15 -f batch.pgbench@10 -f read.pgbench@15 \
    -f fold.pgbench@15 -f async.pgbench@5 -f feed.pgbench@8 -f maintenance.pgbench@2 soak) \
    >"$WORK/pgbench.log" 2>&1 || pgbench_rc=$?
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
SAMPLER=

passed=0
failed=0
result() {   # result OK NAME [DETAIL]
    if (($1)); then passed=$((passed + 1)); echo "ok     $2"; else failed=$((failed + 1)); echo "FAILED $2${3:+: $3}"; fi
}
grep -E '^(progress|number of (transactions|failed)|latency average|tps)' "$WORK/pgbench.log" | sed 's/^/  /' || true
result $((pgbench_rc == 0)) "pgbench exited 0" "exit $pgbench_rc; $(grep -iE 'error|abort' "$WORK/pgbench.log" | head -5)"
failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$WORK/pgbench.log")
result $((${failed_tx:-0} == 0)) "no failed transactions" "${failed_tx:-?}"
errors=$(grep -c 'ERROR:' "$WORK/server.log" || true)
result $((errors == 0)) "the server logged no ERROR" "$errors; $(grep -m5 'ERROR:' "$WORK/server.log")"

# memory: per backend, growth from the end of the warm-up to the largest later sample
warmup=$((DURATION / 5))
mem=$(awk -v w="$warmup" '$1 >= w { if (!($2 in base)) base[$2] = $3; if ($3 > peak[$2]) peak[$2] = $3 }
      END { for (p in base) printf "%s %d %d\n", p, base[p], peak[p] - base[p] }' "$WORK/memory.txt")
nsamples=$(wc -l <"$WORK/memory.txt")
result $((nsamples > 0)) "memory sampled ($nsamples samples of $CLIENTS backends)"
while read -r pid base growth; do
    [[ -n $pid ]] || continue
    result $((growth < MEM_BOUND_KB)) "memory flat: backend $pid RssAnon ${base} kB after warm-up, grew ${growth} kB (bound $MEM_BOUND_KB kB)"
done <<<"$mem"

echo "== invariants"
while IFS='|' read -r kind name got expected; do
    case $kind in
        check) [[ $got == "$expected" ]] && ok=1 || ok=0; result $ok "$name" "got $got, expected $expected" ;;
        info) echo "  $name: $got" ;;
    esac
done < <("$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 -d soak -f "$HERE/check.sql" 2>&1)
echo "$passed passed, $failed failed"
((failed == 0 && passed >= 12))
