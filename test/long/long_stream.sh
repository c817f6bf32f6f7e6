#!/usr/bin/env bash
# On demand (not in CI): long streams and large payloads at full size.
# Runs test/long/long_stream.sql (the checks test/t/008_long_stream.pl runs
# in CI with 100,000 events) against a throw-away cluster with 1,000,000
# events: a 1 MB event, a batch of exactly event_store.max_batch_size, a
# 1,000,000-event stream (versions, read_stream paging, state_as_of, folds
# against formulas) and the backend's memory around the folds and reads.
#
#   bash test/long/long_stream.sh                 # 1,000,000 events
#   LONG_EVENTS=3000000 bash test/long/long_stream.sh
#
# About 6-7 minutes on 2 CPUs for 1,000,000 events, most of it paging
# read_stream by 1,000 from PL/pgSQL: once PL/pgSQL switches to a generic
# plan, each page bitmap-scans and sorts the rest of the stream (about 1 s
# per page in the middle of a 1,000,000-event stream, 16 ms with a custom
# plan): a known performance issue of read_stream, not of this test.
#
# Environment:
#   LONG_EVENTS     events in the long stream (default 1000000)
#   LONG_PAD        md5 strings (32 bytes each) of padding per event (default 3)
#   LONG_MEM_BOUND  bytes the backend's memory may grow over the folds and
#                   reads (default 67108864; shared_buffers is 16MB)
#   LONG_KEEP=1     leave the cluster running at the end
#   PG_MAJOR        PostgreSQL major version (default 15)
#
# Run as root with the extension installed (make install).  The cluster is
# made and run as the postgres OS user in a mktemp directory, unix socket
# only, and removed at the end.  Exit status 0 when every check passed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
N=${LONG_EVENTS:-1000000}
PAD=${LONG_PAD:-3}
MEM_BOUND=${LONG_MEM_BOUND:-67108864}

# shellcheck source=../bench/lib.sh
. "$HERE/../bench/lib.sh"
BENCH_KEEP=${LONG_KEEP:-0}
BENCH_CONF=$'shared_buffers = 16MB\nmax_wal_size = 4GB'
bench_cluster_start es_long
echo "== cluster in $WORK (unix socket only)"
"$PGBIN/createdb" long
"$PGBIN/psql" -X -q -d long -c 'CREATE EXTENSION event_store'

echo "== test/long/long_stream.sql with $N events (padding $PAD x 32 bytes)"
start=$(date +%s)
out=$("$PGBIN/psql" -X -At -v ON_ERROR_STOP=1 -v n="$N" -v pad="$PAD" -v mem_bound="$MEM_BOUND" \
      -d long -f "$HERE/long_stream.sql")
passed=0
failed=0
while IFS='|' read -r kind name got expected; do
    case $kind in
        check) if [[ $got == "$expected" ]]; then ok=1; else ok=0; fi ;;
        mem) if ((got < expected)); then ok=1; else ok=0; fi; name="memory flat: $name ($got bytes, bound $expected)" ;;
        *) continue ;;
    esac
    if ((ok)); then
        passed=$((passed + 1)); echo "ok     $name"
    else
        failed=$((failed + 1)); echo "FAILED $name: got ${got:0:200}, expected ${expected:0:200}"
    fi
done <<<"$out"
echo "== $(($(date +%s) - start)) s; events in the database: $("$PGBIN/psql" -X -At -d long -c 'SELECT count(*) FROM event_store.events')"
((passed + failed == 27)) || { echo "expected 27 checks, got $((passed + failed))"; failed=$((failed + 1)); }
echo "$passed passed, $failed failed"
((failed == 0))
