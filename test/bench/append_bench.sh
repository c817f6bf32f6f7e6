#!/usr/bin/env bash
# Append throughput of event_store, as ratios to plain INSERTs measured in
# the same run, with pgbench (-M prepared).  See test/bench/README.md.
#
#   bash test/bench/append_bench.sh            # BENCH_SECONDS (10) per run, BENCH_PASSES (3) passes
#   bash test/bench/append_bench.sh --quick    # 3 s per run, one pass
#   bash test/bench/append_bench.sh --profile  # also perf an append_event and a raw INSERT backend
#
# Run as root with the extension installed (make install in the repository root).
# A throw-away cluster owned by the postgres OS user is made in a mktemp
# directory (unix socket only) and removed at the end.
#
# Environment:
#   BENCH_SECONDS          seconds per pgbench run (default 10; 3 with --quick)
#   BENCH_PASSES           interleaved passes (default 3; 1 with --quick)
#   BENCH_CLIENTS          client counts, space separated (default "1 2")
#   BENCH_SYNC             synchronous_commit values (default "on off")
#   BENCH_STREAMS          number of streams appended to at random (default 1000)
#   BENCH_BATCH            events per batch (default 100)
#   BENCH_PROFILE_SECONDS  seconds of perf record with --profile (default 5)
#   BENCH_OUT              results directory (default test/bench/results)
#   BENCH_KEEP=1           leave the cluster running at the end (prints how to stop it)
#   PG_MAJOR               PostgreSQL major version (default 15)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin

SECONDS_PER_RUN=${BENCH_SECONDS:-10}
PASSES=${BENCH_PASSES:-3}
PROFILE=0
for arg in "$@"; do
    case $arg in
        --quick) SECONDS_PER_RUN=${BENCH_SECONDS:-3}; PASSES=${BENCH_PASSES:-1} ;;
        --profile) PROFILE=1 ;;
        -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
CLIENTS=${BENCH_CLIENTS:-1 2}
SYNCS=${BENCH_SYNC:-on off}
NSTREAMS=${BENCH_STREAMS:-1000}
BATCH=${BENCH_BATCH:-100}
PROFILE_SECONDS=${BENCH_PROFILE_SECONDS:-5}
OUTDIR=${BENCH_OUT:-$HERE/results}

# ---------------------------------------------------------------------------
# Throw-away cluster (test/bench/lib.sh)
# ---------------------------------------------------------------------------
# shellcheck source=lib.sh
. "$HERE/lib.sh"
BENCH_CONF=$'shared_buffers = 1GB\nmax_wal_size = 4GB\ncheckpoint_timeout = 30min\nmax_connections = 20\nlog_min_messages = warning\n# vacuum runs between pgbench runs instead, never in the middle of one\nautovacuum = off'
bench_cluster_start es_bench
echo "== cluster in $WORK (port $PORT, unix socket only)"
# Keep a copy of the library exactly as the server mapped it (preloaded by the
# postmaster, inherited by every backend): the report names its build id, and
# the profile can name its functions even if the installed file is replaced
# during the run.
LIB_COPY=$WORK/event_store.so.loaded
postmaster_pid=$(head -1 "$PGDATA_DIR/postmaster.pid")
for m in /proc/"$postmaster_pid"/map_files/*; do
    if [[ $(readlink "$m") == */event_store.so* ]]; then cp "$m" "$LIB_COPY"; break; fi
done
[[ -f $LIB_COPY ]] || cp "$($PGBIN/pg_config --pkglibdir)/event_store.so" "$LIB_COPY"
LIB_BUILD_ID=$(readelf -n "$LIB_COPY" 2>/dev/null | sed -n 's/.*Build ID: *//p')

export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres
DB=bench
"$PGBIN/createdb" "$DB"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$DB")

# ---------------------------------------------------------------------------
# Schema: the extension and the raw baselines
# ---------------------------------------------------------------------------
"${PSQL[@]}" <<SQL
CREATE EXTENSION event_store;

CREATE SCHEMA bench_raw;
-- Same sequence settings as event_store.global_position_seq.
CREATE SEQUENCE bench_raw.global_position_seq AS bigint NO CYCLE CACHE 1;

-- Same columns, constraints and indexes as a partition of event_store.events,
-- but a plain heap table.
CREATE TABLE bench_raw.events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    event_id        uuid        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    occurred_at     timestamptz NOT NULL,
    transaction_id  xid8        NOT NULL
);
CREATE INDEX ON bench_raw.events (stream_id, stream_version);
CREATE INDEX ON bench_raw.events (global_position);
CREATE INDEX ON bench_raw.events (split_part(stream_id, '-', 1), global_position);
CREATE INDEX ON bench_raw.events (event_id);

-- Same as event_store.streams.
CREATE TABLE bench_raw.streams (
    stream_id      text        PRIMARY KEY,
    category       text        NOT NULL,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    first_position bigint      NOT NULL,
    last_position  bigint      NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX ON bench_raw.streams (category);

-- Every stream exists before the runs start, on both sides, so that each
-- measured append updates a stream row rather than creating one.
SELECT count(event_store.append_event('bench-' || i, 'BenchEvent', '{"seed": true}'))
  FROM generate_series(1, $NSTREAMS) i;
WITH s AS (
    INSERT INTO bench_raw.streams
    SELECT 'bench-' || i, 'bench', 1, now(), now(), nextval('bench_raw.global_position_seq'),
           currval('bench_raw.global_position_seq')
      FROM generate_series(1, $NSTREAMS) i
    RETURNING stream_id, version, last_position)
INSERT INTO bench_raw.events
SELECT last_position, stream_id, version, 'BenchEvent', '{"seed": true}', NULL,
       gen_random_uuid(), now(), now(), pg_current_xact_id()
  FROM s;
VACUUM ANALYZE;
SQL

# ---------------------------------------------------------------------------
# pgbench scripts: one statement (one round trip) per transaction each
# ---------------------------------------------------------------------------
SCRIPTS=$WORK/scripts
mkdir -p "$SCRIPTS"
DATA='{"flight": "LH400", "passenger": "Ada Lovelace", "seat": "12A", "price": 412.5, "currency": "EUR"}'
COLS='global_position, stream_id, stream_version, event_type, data, metadata, event_id, recorded_at, occurred_at, transaction_id'

# (1) one event
cat >"$SCRIPTS/single_es.sql" <<SQL
\set s random(1, $NSTREAMS)
SELECT event_store.append_event('bench-' || :s, 'BenchEvent', '$DATA');
SQL
# stream_version: the position, so each stream's versions ascend (as in
# event_store) without a stream table to count them.
cat >"$SCRIPTS/single_raw.sql" <<SQL
\set s random(1, $NSTREAMS)
INSERT INTO bench_raw.events ($COLS)
VALUES (nextval('bench_raw.global_position_seq'), 'bench-' || :s,
        currval('bench_raw.global_position_seq'), 'BenchEvent', '$DATA', NULL,
        gen_random_uuid(), now(), now(), pg_current_xact_id());
SQL
cat >"$SCRIPTS/single_raw_stream.sql" <<SQL
\set s random(1, $NSTREAMS)
WITH pos AS (SELECT nextval('bench_raw.global_position_seq') AS p),
     st AS (
    INSERT INTO bench_raw.streams AS st (stream_id, category, version, created_at,
                                         updated_at, first_position, last_position)
    SELECT 'bench-' || :s, split_part('bench-' || :s, '-', 1), 1, now(), now(), p, p FROM pos
    ON CONFLICT (stream_id) DO UPDATE
       SET version = st.version + 1,
           updated_at = greatest(st.updated_at, excluded.updated_at),
           last_position = excluded.last_position
    RETURNING version, last_position)
INSERT INTO bench_raw.events ($COLS)
SELECT st.last_position, 'bench-' || :s, st.version, 'BenchEvent', '$DATA', NULL,
       gen_random_uuid(), now(), now(), pg_current_xact_id()
  FROM st;
SQL

# (2) a batch of BATCH events to one stream
cat >"$SCRIPTS/batch_es.sql" <<SQL
\set s random(1, $NSTREAMS)
SELECT event_store.append('bench-' || :s,
       ARRAY(SELECT event_store.event('BenchEvent', '$DATA') FROM generate_series(1, $BATCH)));
SQL
cat >"$SCRIPTS/batch_raw.sql" <<SQL
\set s random(1, $NSTREAMS)
INSERT INTO bench_raw.events ($COLS)
SELECT g.p, 'bench-' || :s, g.p, 'BenchEvent', '$DATA', NULL,
       gen_random_uuid(), now(), now(), pg_current_xact_id()
  FROM (SELECT nextval('bench_raw.global_position_seq') AS p
          FROM generate_series(1, $BATCH)) g;
SQL

# variant -> workload, script, events per transaction
declare -A V_WORKLOAD=([single_es]=single [single_raw]=single [single_raw_stream]=single
                       [batch_es]=batch [batch_raw]=batch)
declare -A V_EVENTS=([single_es]=1 [single_raw]=1 [single_raw_stream]=1
                     [batch_es]=$BATCH [batch_raw]=$BATCH)
SINGLE_VARIANTS=(single_es single_raw single_raw_stream)
BATCH_VARIANTS=(batch_es batch_raw)

RAW=$WORK/raw.tsv     # pass clients sync variant tps
: >"$RAW"

# run_pgbench VARIANT CLIENTS SYNC SECONDS -> prints tps
run_pgbench() {
    local variant=$1 clients=$2 sync=$3 secs=$4 out rc
    "${PSQL[@]}" -c 'VACUUM event_store.streams, bench_raw.streams' -c 'CHECKPOINT' >/dev/null
    set +e
    out=$(PGOPTIONS="-c synchronous_commit=$sync" "$PGBIN/pgbench" -n -M prepared \
        -c "$clients" -j "$clients" -T "$secs" -f "$SCRIPTS/$variant.sql" "$DB" 2>&1)
    rc=$?
    set -e
    if [[ $rc -ne 0 ]] || grep -q 'aborted' <<<"$out" ||
        grep -Eq '^number of failed transactions: [1-9]' <<<"$out"; then
        echo "pgbench failed for $variant (clients $clients, sync $sync):" >&2
        echo "$out" >&2
        tail -20 "$LOG" >&2
        exit 1
    fi
    sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out"
}

# Facts for the reports
STAMP=$(date -u +%Y%m%d-%H%M%S)
mkdir -p "$OUTDIR"
REPORT=$OUTDIR/append-$STAMP.md
PERF_OUT=$OUTDIR/append-$STAMP.perf.md
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain -- src sql 2>/dev/null) ]]; then commit="$commit (src/sql modified)"; fi
server_version=$("${PSQL[@]}" -Atc 'SHOW server_version')
ext_version=$("${PSQL[@]}" -Atc "SELECT extversion FROM pg_extension WHERE extname = 'event_store'")
cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)

# ---------------------------------------------------------------------------
# --profile: perf one backend running append_event and one running the raw
# INSERT (1 client, synchronous_commit=off) and compare where their CPU goes
# per transaction.  Runs after the warm-up, before the measured passes.
# ---------------------------------------------------------------------------
PERF_HZ=997

# profile_variant VARIANT -> $WORK/perf-VARIANT.data; prints the run's tps
profile_variant() {
    local v=$1 pid= bench_pid
    "${PSQL[@]}" -c 'VACUUM event_store.streams, bench_raw.streams' -c 'CHECKPOINT' >/dev/null
    PGOPTIONS="-c synchronous_commit=off" "$PGBIN/pgbench" -n -M prepared -c 1 -j 1 \
        -T $((PROFILE_SECONDS + 3)) -f "$SCRIPTS/$v.sql" "$DB" >"$WORK/profile-$v.log" 2>&1 &
    bench_pid=$!
    for _ in $(seq 1 100); do
        pid=$("${PSQL[@]}" -Atc "SELECT pid FROM pg_stat_activity
                                  WHERE application_name = 'pgbench' AND backend_type = 'client backend' LIMIT 1")
        [[ -n $pid ]] && break
        sleep 0.05
    done
    [[ -n $pid ]] || { echo "no pgbench backend found" >&2; wait "$bench_pid"; return 1; }
    sleep 1
    # -N: no build-id cache in root's home
    perf record -q -N -F $PERF_HZ --call-graph dwarf,32768 -o "$WORK/perf-$v.data" -p "$pid" \
        -- sleep "$PROFILE_SECONDS" >/dev/null 2>&1 || true
    wait "$bench_pid"
    sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$WORK/profile-$v.log"
}

# Stacks of a perf.data, one sample per paragraph, leaf first, one function
# name a line.  Frames in event_store.so are named from the symbol table of
# the copy of the library the server loaded (the installed file may have been
# replaced since) and marked " [event_store]".
stacks() {
    nm --defined-only -n "$LIB_COPY" 2>/dev/null | awk '$2 ~ /^[tT]$/ { print "SYM", $1, $3 }' >"$WORK/lib.syms"
    # perf names inlined functions from the file now installed: trust those in
    # the library only if that file is still the one the server loaded.
    local installed trust=0
    installed=$(readelf -n "$($PGBIN/pg_config --pkglibdir)/event_store.so" 2>/dev/null | sed -n 's/.*Build ID: *//p')
    [[ -n $LIB_BUILD_ID && $installed == "$LIB_BUILD_ID" ]] && trust=1
    perf script -i "$1" -F ip,sym,dso 2>/dev/null | awk -v syms="$WORK/lib.syms" -v trust_inline=$trust '
    function hex(s,   i, c, v) { v = 0; s = tolower(s)
        for (i = 1; i <= length(s); i++) { c = index("0123456789abcdef", substr(s, i, 1)); v = v * 16 + c - 1 }
        return v }
    BEGIN { while ((getline line < syms) > 0) { split(line, f, " "); ns++; addr[ns] = hex(f[2]); name[ns] = f[3] } }
    function lib_sym(ip,   lo, hi, mid) { lo = 1; hi = ns; if (ns == 0 || ip < addr[1]) return "[unknown]"
        while (lo < hi) { mid = int((lo + hi + 1) / 2); if (addr[mid] <= ip) lo = mid; else hi = mid - 1 }
        return name[lo] }
    /^[ \t]*$/ { np = 0; print ""; next }
    # an inlined frame has no file of its own: it takes that of the next line
    / \(inlined\)$/ { pending[++np] = $2; next }
    { sym = $2; lib = index($0, "/event_store.so") > 0
      for (i = 1; i <= np; i++)
          if (!lib) print pending[i]
          else if (trust_inline) print pending[i] " [event_store]"
      np = 0
      # frames in event_store.so: always named from the loaded copy (perf would
      # read a file installed since then under the same name)
      if (lib) sym = lib_sym(hex($1)) " [event_store]"
      else if (sym == "[unknown]" && index($0, "/bin/postgres")) sym = "[postgres ?]"
      print sym }'
}

# Attribute each sample to one bucket: the innermost frame that names one.
buckets() {
    awk '
    function bucket(f) {
        if (f == "pg_strong_random") return "uuid (pg_strong_random)"
        if (f == "nextval_internal") return "nextval"
        if (f == "ExecInsertIndexTuples") return "executor: index inserts"
        if (f ~ /^(heap_insert|table_tuple_insert)$/) return "executor: heap insert"
        if (f ~ /^(heap_update|ExecCheckIndexConstraints|heap_lock_tuple|table_tuple_lock|index_getnext_slot|index_fetch_heap)$/) return "executor: stream row lookup/update"
        if (f ~ /^(ExecFindPartition|ExecInitPartitionInfo|ExecSetupPartitionTupleRouting|ExecInitRoutingInfo|ExecGetRootToChildMap|execute_attr_map_slot)$/) return "executor: partition routing"
        if (f ~ /^(standard_ExecutorStart|ExecInitNode)$/) return "executor: start (plan init)"
        if (f ~ /^(standard_ExecutorEnd|ExecEndNode|FreeExecutorState|ExecCloseResultRelations|ExecCloseRangeTableRelations)$/) return "executor: end"
        if (f ~ /^(standard_ExecutorRun|standard_ExecutorFinish|ExecutorRun)$/) return "executor: run (other)"
        if (f ~ /^(GetCachedPlan|RevalidateCachedQuery|CheckCachedPlan|AcquireExecutorLocks|ReleaseCachedPlan)$/) return "plan cache check, locks"
        if (f ~ /^(SPI_connect|SPI_connect_ext|SPI_finish)$/) return "SPI connect/finish"
        if (f ~ /^(SPI_execute_plan|SPI_execute_plan_extended|SPI_execute_plan_with_paramlist)$/) return "SPI other"
        if (f ~ /^(CommitTransactionCommand|StartTransactionCommand)$/) return "transaction start/commit"
        if (f ~ /^(pq_getbyte|secure_read|secure_write|pq_flush|pq_getmessage|WaitEventSetWait)$/) return "client protocol I/O, waiting"
        if (f ~ /^es_ensure_partition_for /) return "event_store: partition check"
        if (f ~ / \[event_store\]$/) return "event_store: C code (self)"
        if (f ~ /^(exec_bind_message|exec_execute_message|PortalRun|PortalStart|PortalDrop|exec_describe_portal_message)$/) return "bind/execute, portal"
        return ""
    }
    function flush(   i, b) { if (!n) return; b = ""
        for (i = 1; i <= n && b == ""; i++) b = bucket(st[i])
        if (b == "") b = "other"; cnt[b]++; total++; n = 0 }
    /^$/ { flush(); next }
    { st[++n] = $0 }
    END { flush(); for (b in cnt) printf "%s\t%d\n", b, cnt[b]; printf "TOTAL\t%d\n", total }'
}

# top_self: leaf functions.  top_below REGEX: functions on the stack from
# the outermost frame matching REGEX down (that frame and its callees,
# counted once a sample), as a share of the samples that have such a frame.
top_self() {
    awk -v lim="$1" '/^$/ { if (n) { c[first]++; t++ } n = 0; next }
        { if (!n) first = $0; n++ }
        END { if (n) { c[first]++; t++ }
              for (f in c) if (c[f] / t * 100 >= lim) printf "%6.2f%%  %s\n", c[f] / t * 100, f }' | sort -rn
}
top_below() {
    awk -v fn="$1" -v lim="$2" '
        function flush(   i, k, seen) { if (!n) return
            for (k = n; k >= 1 && st[k] !~ fn; k--) ;
            if (k >= 1) { t++; for (i = 1; i <= k; i++) if (st[i] !~ /^\[/ && !(st[i] in seen)) { seen[st[i]] = 1; c[st[i]]++ } }
            n = 0 }
        /^$/ { flush(); next } { st[++n] = $0 }
        END { flush(); if (!t) exit
              for (f in c) if (c[f] / t * 100 >= lim) printf "%6.2f%%  %s\n", c[f] / t * 100, f }' | sort -rn
}

# Record and analyse at once: perf unwinds the recorded stacks with the
# library file it finds at analysis time, so the sooner the better.
profile_report() {
    set +e   # a report section that finds nothing must not end the script
    echo "== perf: append_event vs raw INSERT, 1 client, synchronous_commit=off, ${PROFILE_SECONDS}s each"
    tps_es=$(profile_variant single_es)
    tps_raw=$(profile_variant single_raw)
    stacks "$WORK/perf-single_es.data" >"$WORK/stacks-es.txt"
    stacks "$WORK/perf-single_raw.data" >"$WORK/stacks-raw.txt"
    buckets <"$WORK/stacks-es.txt" | sort >"$WORK/buckets-es.tsv"
    buckets <"$WORK/stacks-raw.txt" | sort >"$WORK/buckets-raw.tsv"

    {
        echo "# perf: event_store.append_event vs raw INSERT — $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo
        echo "One backend each, 1 pgbench client (-M prepared), synchronous_commit=off,"
        echo "\`perf record -F $PERF_HZ --call-graph dwarf\` for ${PROFILE_SECONDS}s; commit $commit,"
        echo "library build id ${LIB_BUILD_ID:-?}. A sample is ~1 ms of backend CPU;"
        echo "µs/txn = samples × 1e6/$PERF_HZ ÷ (tps × ${PROFILE_SECONDS} s). Each sample counts once,"
        echo "in the bucket of the innermost frame that names one. The stripped server binary"
        echo "names only its exported functions (static ones show as [postgres ?])."
        if [[ $(readelf -n "$($PGBIN/pg_config --pkglibdir)/event_store.so" 2>/dev/null |
                sed -n 's/.*Build ID: *//p') != "$LIB_BUILD_ID" ]]; then
            echo
            echo "**Note:** event_store.so was reinstalled after the server loaded it; perf may"
            echo "stop unwinding at the library's frames, so callers above them can be missing."
        fi
        echo
        join -t $'\t' -a1 -a2 -e 0 -o 0,1.2,2.2 "$WORK/buckets-es.tsv" "$WORK/buckets-raw.tsv" |
        awk -F'\t' -v te="$tps_es" -v tr="$tps_raw" -v secs="$PROFILE_SECONDS" -v hz="$PERF_HZ" '
            { es[$1] = $2; raw[$1] = $3; if ($1 != "TOTAL") keys[++n] = $1 }
            END {
                if (te <= 0 || tr <= 0) { print "(no tps: profile failed)"; exit }
                us = 1e6 / hz
                for (i = 1; i <= n; i++) { b = keys[i]; e_us[b] = es[b] * us / (te * secs); r_us[b] = raw[b] * us / (tr * secs) }
                for (i = 2; i <= n; i++) for (j = i; j > 1 && e_us[keys[j-1]] - r_us[keys[j-1]] < e_us[keys[j]] - r_us[keys[j]]; j--) { t = keys[j]; keys[j] = keys[j-1]; keys[j-1] = t }
                print "| bucket | append_event µs/txn | raw INSERT µs/txn | difference |"
                print "|---|---:|---:|---:|"
                for (i = 1; i <= n; i++) { b = keys[i]
                    printf "| %s | %.1f | %.1f | %+.1f |\n", b, e_us[b], r_us[b], e_us[b] - r_us[b] }
                e = es["TOTAL"] * us / (te * secs); r = raw["TOTAL"] * us / (tr * secs)
                printf "| **total backend CPU** | **%.1f** | **%.1f** | **%+.1f** |\n", e, r, e - r
                printf "\ntps while profiled: append_event %.0f, raw INSERT %.0f\n", te, tr
            }'
        echo
        # the outermost frame in the library: the append function pgbench called
        # (whatever its inlining and tail calls leave on the stack)
        es_entry=' \[event_store\]$'
        es_share=$(awk -v fn="$es_entry" '/^$/ { if (n) { t++; if (hit) h++ } n = 0; hit = 0; next }
            { n++; if ($0 ~ fn) hit = 1 } END { if (t) printf "%.0f", h / t * 100 }' <"$WORK/stacks-es.txt")
        echo "## append_event backend: callees of the append function (inclusive, ≥2%)"
        echo
        echo "Functions of event_store.so are on ${es_share:-?}% of this backend's samples. Each line"
        echo "is the share of those samples with the function below the outermost event_store frame"
        echo "(unnamed frames left out); [event_store] marks the library's own functions."
        echo
        echo '```'
        top_below "$es_entry" 2 <"$WORK/stacks-es.txt" | head -45
        echo '```'
        echo
        echo "## append_event backend: top symbols (self, ≥1%)"
        echo '```'
        top_self 1 <"$WORK/stacks-es.txt" | head -30
        echo '```'
        echo
        echo "## raw INSERT backend: top symbols (self, ≥1%)"
        echo '```'
        top_self 1 <"$WORK/stacks-raw.txt" | head -30
        echo '```'
    } >"$PERF_OUT"
    echo "profile written to ${PERF_OUT#"$ROOT"/}"
    set -e
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" -v n="$(nproc)" 'BEGIN { exit !(l > n / 2) }'; then
    echo "warning: load average $LOAD_BEFORE on $(nproc) CPUs: other work will blur the ratios" >&2
fi
configs=()
for c in $CLIENTS; do for s in $SYNCS; do configs+=("$c $s"); done; done
nruns=$(( ${#configs[@]} * (${#SINGLE_VARIANTS[@]} + ${#BATCH_VARIANTS[@]}) ))
echo "== $PASSES pass(es) x $nruns runs x ${SECONDS_PER_RUN}s (≈ $(( PASSES * nruns * SECONDS_PER_RUN / 60 + 1 )) min)"

echo "== warm-up (plans, caches; not counted)"
for v in "${SINGLE_VARIANTS[@]}" "${BATCH_VARIANTS[@]}"; do
    run_pgbench "$v" 1 off 1 >/dev/null
done

if (( PROFILE )); then
    if command -v perf >/dev/null; then
        profile_report
    else
        echo "perf is not installed (apt-get install linux-perf); no profile" >&2
    fi
fi

# Interleaved passes: within a pass every variant of a configuration runs
# back to back; odd passes reverse the order (A B C, C B A, ...), so a slow
# drift (table and index growth, background activity) hits all variants
# alike and cancels in the medians.
for pass in $(seq 1 "$PASSES"); do
    for cfg in "${configs[@]}"; do
        read -r c s <<<"$cfg"
        for group in single batch; do
            if [[ $group == single ]]; then vs=("${SINGLE_VARIANTS[@]}"); else vs=("${BATCH_VARIANTS[@]}"); fi
            if (( pass % 2 == 0 )); then
                rev=(); for ((i=${#vs[@]}-1; i>=0; i--)); do rev+=("${vs[i]}"); done; vs=("${rev[@]}")
            fi
            for v in "${vs[@]}"; do
                tps=$(run_pgbench "$v" "$c" "$s" "$SECONDS_PER_RUN")
                printf '%s\t%s\t%s\t%s\t%s\n' "$pass" "$c" "$s" "$v" "$tps" >>"$RAW"
                printf '   pass %d  clients %d  sync %-3s  %-18s %10.1f tps\n' "$pass" "$c" "$s" "$v" "$tps"
            done
        done
    done
done

# Sanity: every measured append_event/append call really wrote its events.
check=$("${PSQL[@]}" -Atc "SELECT (SELECT sum(version) FROM event_store.streams)
                                  = (SELECT count(*) FROM event_store.events)")
if [[ $check != t ]]; then
    echo "event_store.streams versions do not add up to the events written" >&2
    exit 1
fi

# ---------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------

TABLE=$(awk -F'\t' -v batch="$BATCH" '
function median(key,   n, i, j, t, a) {
    n = split(vals[key], a, " ")
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
# The ratio of one pass compares runs made back to back; the cell shows the
# median of the per-pass ratios and their range.
function ratio_cell(num, den, c, s,   key, r, p, lo, hi, pr) {
    key = "ratio" SUBSEP c SUBSEP s SUBSEP num SUBSEP den
    lo = ""; hi = ""
    for (p = 1; p <= maxpass; p++) {
        if (!((p, c, s, num) in tps) || !((p, c, s, den) in tps)) continue
        pr = tps[p, c, s, num] / tps[p, c, s, den]
        vals[key] = vals[key] " " pr
        if (lo == "" || pr < lo) lo = pr
        if (hi == "" || pr > hi) hi = pr
    }
    r = median(key)
    if (maxpass > 1) return sprintf("**%.2f** (%.2f–%.2f)", r, lo, hi)
    return sprintf("**%.2f**", r)
}
{
    tps[$1, $2, $3, $4] = $5
    vals[$2 SUBSEP $3 SUBSEP $4] = vals[$2 SUBSEP $3 SUBSEP $4] " " $5
    if (!(($2, $3) in seen)) { seen[$2, $3] = 1; order[++ncfg] = $2 SUBSEP $3 }
    if ($1 > maxpass) maxpass = $1
}
END {
    print "| workload | clients | sync commit | event_store | raw INSERT | raw INSERT + stream upsert | event_store / raw | event_store / raw+stream |"
    print "|---|---:|---|---:|---:|---:|---|---|"
    for (k = 1; k <= ncfg; k++) {
        split(order[k], cs, SUBSEP); c = cs[1]; s = cs[2]
        printf "| append_event, 1 event (tps) | %s | %s | %.0f | %.0f | %.0f | %s | %s |\n", c, s,
            median(c SUBSEP s SUBSEP "single_es"), median(c SUBSEP s SUBSEP "single_raw"),
            median(c SUBSEP s SUBSEP "single_raw_stream"),
            ratio_cell("single_es", "single_raw", c, s), ratio_cell("single_es", "single_raw_stream", c, s)
    }
    for (k = 1; k <= ncfg; k++) {
        split(order[k], cs, SUBSEP); c = cs[1]; s = cs[2]
        printf "| append, %d-event batch (events/s) | %s | %s | %.0f | %.0f | – | %s | – |\n", batch, c, s,
            median(c SUBSEP s SUBSEP "batch_es") * batch, median(c SUBSEP s SUBSEP "batch_raw") * batch,
            ratio_cell("batch_es", "batch_raw", c, s)
    }
}' "$RAW")

{
    echo "# event_store append throughput vs plain INSERT — $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- commit $commit; event_store $ext_version (library build id ${LIB_BUILD_ID:-?}); PostgreSQL $server_version; $(nproc) CPU(s) ${cpu:+($cpu)}"
    echo "- pgbench -M prepared, ${SECONDS_PER_RUN}s per run, $PASSES interleaved pass(es), $NSTREAMS streams, batch $BATCH"
    echo "- throughputs are medians over the passes; a ratio is the median of the per-pass ratios (runs made back to back), with their range in parentheses"
    echo "- load average before the runs: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    echo "$TABLE"
    echo
    echo "<details><summary>every run (pass, clients, sync, variant, tps)</summary>"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo "</details>"
} >"$REPORT"

echo
echo "$TABLE"
echo
echo "written to ${REPORT#"$ROOT"/}"
if [[ -f $PERF_OUT ]]; then
    echo
    echo "profile (before the passes) in ${PERF_OUT#"$ROOT"/}:"
    sed -n '/^| bucket/,/^tps while/p' "$PERF_OUT"
fi
