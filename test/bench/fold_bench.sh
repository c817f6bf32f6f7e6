#!/usr/bin/env bash
# Temporal reducers: speed and memory of event_store's C fold, as ratios to
# baselines measured in the same run (issue 3).  Not part of the test suite.
#
#   bash test/bench/fold_bench.sh            # full run (builds a 1,000,000-event stream)
#   bash test/bench/fold_bench.sh --quick    # 100,000 instead of 1,000,000 events
#
# Run as root with the extension installed (make install).  A throw-away
# cluster owned by the postgres OS user is made in a mktemp directory
# (unix socket only) and removed at the end.
#
# Reports (medians of BENCH_REPS client-side timings, psql \timing):
#   1. fold of 10,000 events with the built-in merge-patch reducer (applied in
#      place on a tree), against a PL/pgSQL loop over read_stream doing the
#      same merge (C jsonb_merge_patch and, second, a merge-patch written in
#      PL/pgSQL), against a plain SELECT data FROM read_stream(...) of the
#      same events, and against the fold calling the same C reducer per event
#      (es_merge_patch under another name: the path before the tree);
#   2. state_as_of on a BIG-event stream with snapshots (every 1,000) against
#      state_as_of on a 1,000-event stream;
#   3. growth of the backend's private memory (RssAnon, sampled every 20 ms)
#      while folding BIG events without snapshots;
#   4. a stream read (fold and read_stream) with 120 partitions against 1.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
BIG=1000000
REPS=${BENCH_REPS:-15}
for arg in "$@"; do
    case $arg in
        --quick) BIG=100000; REPS=${BENCH_REPS:-7} ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done

DIR=$(mktemp -d /tmp/es_fold_bench.XXXXXX)
chown postgres "$DIR"
PORT=${BENCH_PORT:-5491}
as_pg() { su postgres -s /bin/bash -c "$*"; }
as_pg "$PGBIN/initdb -D '$DIR/data' -A trust" >/dev/null
cat >>"$DIR/data/postgresql.conf" <<EOF
port=$PORT
unix_socket_directories='$DIR'
listen_addresses=''
shared_preload_libraries='event_store'
shared_buffers=512MB
max_wal_size=8GB
synchronous_commit=off
EOF
as_pg "$PGBIN/pg_ctl -D '$DIR/data' -l '$DIR/log' -w start" >/dev/null
cleanup() { as_pg "$PGBIN/pg_ctl -D '$DIR/data' -w stop -m fast" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT

PSQL=(psql -X -q -h "$DIR" -p "$PORT" -U postgres -v ON_ERROR_STOP=1)
sql() { "${PSQL[@]}" -d "${DB:-postgres}" -At -c "$1"; }

# median_ms DB QUERY: median of REPS client-side timings (one warm-up first)
median_ms() {
    local db=$1 q=$2
    {
        echo '\o /dev/null'
        echo "$q;"
        echo '\timing on'
        for _ in $(seq "$REPS"); do echo "$q;"; done
    } | "${PSQL[@]}" -d "$db" 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -g |
        awk '{a[NR]=$1} END {if (NR==0) {print "NaN"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f\n", m}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

# fill DB STREAM N: N events in batches of 10,000 (one transaction each)
fill() {
    local db=$1 stream=$2 n=$3 done=0 b
    while ((done < n)); do
        b=$((n - done < 10000 ? n - done : 10000))
        DB=$db sql "SELECT event_store.append('$stream', array_agg(event_store.event('Patched',
                      jsonb_build_object('k' || (i % 20), i, 'n', i, 'obj', jsonb_build_object('a' || (i % 5), i)))))
                    FROM generate_series($done + 1, $done + $b) i" >/dev/null
        done=$((done + b))
    done
}

echo "== setup"
sql "CREATE DATABASE bench" >/dev/null
sql "CREATE DATABASE bench_p120" >/dev/null
DB=bench sql "CREATE EXTENSION event_store" >/dev/null
DB=bench_p120 sql "CREATE EXTENSION event_store" >/dev/null
fill bench s10k 10000
fill bench s1k 1000
echo "   filling a $BIG-event stream ..."
fill bench sbig "$BIG"
DB=bench sql "VACUUM ANALYZE" >/dev/null

MP="'event_store.merge_patch(jsonb,event_store.events)'"
DB=bench sql "
CREATE FUNCTION plpgsql_fold(stream text) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE
    s jsonb;
    r record;
BEGIN
    FOR r IN SELECT data FROM event_store.read_stream(stream, 1, 2000000000) LOOP
        s := event_store.jsonb_merge_patch(s, r.data);
    END LOOP;
    RETURN s;
END \$\$;
CREATE FUNCTION plpgsql_merge(t jsonb, p jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS \$\$
DECLARE
    k text;
    v jsonb;
BEGIN
    IF jsonb_typeof(p) <> 'object' THEN RETURN p; END IF;
    IF t IS NULL OR jsonb_typeof(t) <> 'object' THEN t := '{}'; END IF;
    FOR k, v IN SELECT * FROM jsonb_each(p) LOOP
        IF jsonb_typeof(v) = 'null' THEN t := t - k;
        ELSE t := jsonb_set(t, ARRAY[k], plpgsql_merge(t -> k, v)); END IF;
    END LOOP;
    RETURN t;
END \$\$;
CREATE FUNCTION plpgsql_fold_pure(stream text) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE
    s jsonb;
    r record;
BEGIN
    FOR r IN SELECT data FROM event_store.read_stream(stream, 1, 2000000000) LOOP
        s := plpgsql_merge(s, r.data);
    END LOOP;
    RETURN s;
END \$\$;
CREATE FUNCTION percall_merge_patch(jsonb, event_store.events) RETURNS jsonb
AS '\$libdir/event_store', 'es_merge_patch' LANGUAGE C IMMUTABLE;" >/dev/null
PC="'percall_merge_patch(jsonb,event_store.events)'"
same=$(DB=bench sql "SELECT event_store.state_as_of('s10k') = plpgsql_fold('s10k') AND plpgsql_fold('s10k') = plpgsql_fold_pure('s10k')
                     AND event_store.state_as_of('s10k')::text = event_store.fold($PC, NULL::jsonb, 's10k')::text")
echo "   the four folds agree: $same"

echo "== 1. fold of 10,000 events"
t_fold=$(median_ms bench "SELECT event_store.state_as_of('s10k')")
t_fold_generic=$(median_ms bench "SELECT event_store.fold($MP, NULL::jsonb, 's10k')")
t_fold_percall=$(median_ms bench "SELECT event_store.fold($PC, NULL::jsonb, 's10k')")
t_loop=$(median_ms bench "SELECT plpgsql_fold('s10k')")
t_loop_pure=$(median_ms bench "SELECT plpgsql_fold_pure('s10k')")
t_select=$(median_ms bench "SELECT data FROM event_store.read_stream('s10k', 1, 100000)")
t_count=$(median_ms bench "SELECT event_store.fold('event_store.event_count(bigint,event_store.events)', 0::bigint, 's10k')")

echo "== 2. state_as_of with snapshots: $BIG events vs 1,000"
DB=bench sql "SELECT event_store.set_snapshot_policy($MP, 1000)" >/dev/null
DB=bench sql "SELECT event_store.state_as_of('sbig'), event_store.state_as_of('s1k')" >/dev/null   # takes the snapshots
nsnap=$(DB=bench sql "SELECT count(*) FROM event_store.snapshots WHERE stream_id = 'sbig'")
t_big_latest=$(median_ms bench "SELECT event_store.state_as_of('sbig')")
t_big_mid=$(median_ms bench "SELECT event_store.fold_to_version($MP, NULL::jsonb, 'sbig', $BIG - 500)")
t_big_time=$(median_ms bench "SELECT event_store.state_as_of('sbig', (SELECT recorded_at FROM event_store.events WHERE stream_id = 'sbig' AND stream_version = $BIG / 2))")
DB=bench sql "SELECT event_store.drop_snapshots('s1k')" >/dev/null
DB=bench sql "SELECT event_store.set_snapshot_policy($MP, NULL)" >/dev/null
t_1k=$(median_ms bench "SELECT event_store.state_as_of('s1k')")

echo "== 3. memory folding $BIG events without snapshots"
DB=bench sql "SELECT event_store.drop_snapshots('sbig')" >/dev/null
mem_out=$DIR/mem.txt
(
    "${PSQL[@]}" -d bench -At <<EOF
\o $DIR/pid
SELECT pg_backend_pid();
\o
SELECT pg_sleep(0.5);
\timing on
SELECT length(event_store.state_as_of('sbig')::text);
SELECT length(event_store.fold('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'sbig')::text);
EOF
) >"$DIR/fold_big.out" 2>&1 &
bgpid=$!
while [[ ! -s $DIR/pid ]]; do sleep 0.05; done
bpid=$(cat "$DIR/pid")
base=$(awk '/^RssAnon/ {print $2}' "/proc/$bpid/status")
peak=$base
while kill -0 "$bgpid" 2>/dev/null; do
    cur=$(awk '/^RssAnon/ {print $2}' "/proc/$bpid/status" 2>/dev/null || echo 0)
    ((cur > peak)) && peak=$cur
    sleep 0.02
done
wait "$bgpid"
t_big_fold=$(sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$DIR/fold_big.out" | head -1)
growth_mb=$(awk -v a="$peak" -v b="$base" 'BEGIN {printf "%.1f", (a - b) / 1024}')

echo "== 4. 120 partitions vs 1"
DB=bench_p120 sql "SELECT event_store.set_partition_interval('1 day');
                   SELECT count(event_store._create_partition_for(now() - make_interval(days => i))) FROM generate_series(1, 150) i" >/dev/null
fill bench_p120 s1k 1000
DB=bench_p120 sql "VACUUM ANALYZE" >/dev/null
parts1=$(DB=bench sql "SELECT count(*) FROM event_store.partition_info")
parts120=$(DB=bench_p120 sql "SELECT count(*) FROM event_store.partition_info")
read1=$(DB=bench sql "SELECT count(*) FROM event_store.stream_partitions('s1k')")
read120=$(DB=bench_p120 sql "SELECT count(*) FROM event_store.stream_partitions('s1k')")
t_p1_fold=$(median_ms bench "SELECT event_store.state_as_of('s1k')")
t_p120_fold=$(median_ms bench_p120 "SELECT event_store.state_as_of('s1k')")
t_p1_read=$(median_ms bench "SELECT data FROM event_store.read_stream('s1k')")
t_p120_read=$(median_ms bench_p120 "SELECT data FROM event_store.read_stream('s1k')")
t_p1_small=$(median_ms bench "SELECT event_store.fold_to_version($MP, NULL::jsonb, 's1k', 10)")
t_p120_small=$(median_ms bench_p120 "SELECT event_store.fold_to_version($MP, NULL::jsonb, 's1k', 10)")

cat <<EOF

== Temporal reducers benchmark
machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo), $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)
date:    $(date -u '+%Y-%m-%d %H:%M UTC'); PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}'); medians of $REPS runs

1. 10,000 events, merge-patch                       ms
   C fold (state_as_of)                        $t_fold
   C fold (fold(merge_patch, NULL, ...))       $t_fold_generic
   C fold, same C reducer called per event     $t_fold_percall
   C fold, event_count reducer (loop cost)     $t_count
   PL/pgSQL loop + C jsonb_merge_patch         $t_loop
   PL/pgSQL loop + PL/pgSQL merge              $t_loop_pure
   SELECT data FROM read_stream                $t_select
   speed-up vs PL/pgSQL loop (C merge):   $(ratio "$t_loop" "$t_fold")x   (target >= 10x)
   speed-up vs PL/pgSQL loop (PL merge):  $(ratio "$t_loop_pure" "$t_fold")x
   fold / plain SELECT:                   $(ratio "$t_fold" "$t_select")x   (target <= 2x)
   in place vs reducer called per event:  $(ratio "$t_fold_percall" "$t_fold")x

2. state_as_of with snapshots every 1,000 ($nsnap snapshots of the big stream)
   $BIG events, latest                  $t_big_latest ms
   $BIG events, to version BIG-500      $t_big_mid ms   (500 events after a snapshot)
   $BIG events, as of the middle        $t_big_time ms
   1,000 events, no snapshot            $t_1k ms
   big latest / 1k:        $(ratio "$t_big_latest" "$t_1k")x   (target <= 1.5x)
   big BIG-500 / 1k:       $(ratio "$t_big_mid" "$t_1k")x
   big middle / 1k:        $(ratio "$t_big_time" "$t_1k")x

3. folding $BIG events without snapshots: $t_big_fold ms
   backend RssAnon growth (peak - before): $growth_mb MB   (target < 50 MB)

4. 1,000-event stream, $parts120 partitions ($read120 read) vs $parts1 ($read1 read)
   state_as_of          $t_p120_fold ms vs $t_p1_fold ms   ratio $(ratio "$t_p120_fold" "$t_p1_fold")x   (target <= 1.5x)
   fold to version 10   $t_p120_small ms vs $t_p1_small ms   ratio $(ratio "$t_p120_small" "$t_p1_small")x
   read_stream (SQL)    $t_p120_read ms vs $t_p1_read ms   ratio $(ratio "$t_p120_read" "$t_p1_read")x
EOF
