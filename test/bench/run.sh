#!/usr/bin/env bash
# Side-by-side benchmark (issue 6): event_store vs the real Message DB (npm
# @eventide/message-db, installed with its own SQL scripts at run time) vs a
# raw table with Message DB's columns and indexes, in ONE throw-away cluster,
# same run, pgbench -M prepared, interleaved passes (A B C, C B A, ...).
#
#   bash test/bench/run.sh            # 5 s per run, 2 passes, 1 and 2 clients, sync on/off (~13 min)
#   bash test/bench/run.sh --quick    # 2 s per run, 1 pass, 1 client, sync off (smoke test, ~1.5 min)
#
# A full run replaces the "## Side by side" section of docs/benchmarks.md and
# redraws docs/benchmarks.svg (gnuplot); --quick writes its report only to
# test/bench/results/.  If npm cannot fetch Message DB, --quick skips the
# Message DB variants (peer columns "n/a"); a full run fails.
#
# Run as root with the extension installed (make install).
#
# Environment:
#   BENCH_SECONDS   seconds per pgbench run (default 5; 2 with --quick)
#   BENCH_PASSES    interleaved passes (default 2; 1 with --quick)
#   BENCH_CLIENTS   client counts (default "1 2"; "1" with --quick)
#   BENCH_SYNC      synchronous_commit values for writes (default "on off"; "off" with --quick)
#   BENCH_STREAMS   streams per category in the read data (default 500; 100 with --quick)
#   BENCH_ROUNDS    events per stream in the read data (default 20; 10 with --quick)
#   BENCH_PARTS     partitions of the many-partition database (default 120)
#   BENCH_DOCS      1: write docs/benchmarks.md + plot (default 1; 0 with --quick)
#   BENCH_OUT       results directory (default test/bench/results)
#   BENCH_ONLY      groups to run (default "single hot batch proj rs cat fold part")
#   BENCH_KEEP=1    leave the cluster running at the end
#   PG_MAJOR        PostgreSQL major version (default 15)
#   BENCH_INITDB_OPTS  extra initdb options (18 turns data checksums on by
#                   default: --no-data-checksums there, -k on 15, to compare)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
# shellcheck source=lib.sh
. "$HERE/lib.sh"

QUICK=0
for arg in "$@"; do
    case $arg in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done
if ((QUICK)); then
    SECS=${BENCH_SECONDS:-2}; PASSES=${BENCH_PASSES:-1}; CLIENTS=${BENCH_CLIENTS:-1}
    SYNCS=${BENCH_SYNC:-off}; NSTREAMS=${BENCH_STREAMS:-100}; ROUNDS=${BENCH_ROUNDS:-10}
    DOCS=${BENCH_DOCS:-0}
else
    SECS=${BENCH_SECONDS:-5}; PASSES=${BENCH_PASSES:-2}; CLIENTS=${BENCH_CLIENTS:-1 2}
    SYNCS=${BENCH_SYNC:-on off}; NSTREAMS=${BENCH_STREAMS:-500}; ROUNDS=${BENCH_ROUNDS:-20}
    DOCS=${BENCH_DOCS:-1}
fi
NPARTS=${BENCH_PARTS:-120}
OUTDIR=${BENCH_OUT:-$HERE/results}
BATCH=100
T0=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

BENCH_CONF="shared_buffers = 512MB
max_wal_size = 4GB
checkpoint_timeout = 30min
max_connections = 30
log_min_messages = warning
autovacuum = off"
SETTINGS="shared_buffers 512MB, max_wal_size 4GB, checkpoint_timeout 30min, autovacuum off (VACUUM + CHECKPOINT before every write run; writes go to copies of the loaded databases, reads never see them), fsync on"

bench_cluster_start es_side_by_side
echo "== cluster in $WORK (port $PORT, unix socket only)"
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1)

# ---------------------------------------------------------------------------
# Message DB from npm (its own install.sh), or none in --quick if npm fails
# ---------------------------------------------------------------------------
MDB=1
MDB_VERSION=
echo "== fetching @eventide/message-db with npm"
if bench_fetch_messagedb "$WORK/npm"; then
    MDB_VERSION=$(cat "$WORK/npm/package/database/VERSION.txt")
    chown -R postgres "$WORK/npm"
    runuser -u postgres -- env PGHOST="$WORK" PGPORT="$PORT" DATABASE_NAME=mdb PATH="$PGBIN:$PATH" \
        bash "$WORK/npm/package/database/install.sh" >"$WORK/mdb-install.log" 2>&1 ||
        { cat "$WORK/mdb-install.log"; exit 1; }
    # its functions name their tables unqualified (the message_store role's search_path)
    "${PSQL[@]}" -d mdb -c "ALTER DATABASE mdb SET search_path = message_store, public"
    echo "   Message DB $MDB_VERSION installed in database mdb"
elif ((QUICK)); then
    MDB=0
    echo "SKIPPED: Message DB could not be fetched from the npm registry; the Message DB variants are left out (peer columns n/a)" >&2
else
    echo "Message DB could not be fetched from the npm registry (npm pack @eventide/message-db); a full run needs it" >&2
    exit 1
fi

# ---------------------------------------------------------------------------
# Databases: es1 (event_store, 1 partition, + event_store_messagedb),
# es120 (NPARTS partitions), esproj (an inline projection), raw (a copy of
# Message DB's messages table), mdb (Message DB)
# ---------------------------------------------------------------------------
DATA='{"flight": "LH400", "passenger": "Ada Lovelace", "seat": "12A", "price": 412.5, "currency": "EUR"}'
META='{"correlationStreamName": "booking-1"}'
MAXPOS=$((2 * NSTREAMS * ROUNDS))

for db in es1 es120 esproj raw; do "$PGBIN/createdb" "$db"; done
for db in es1 es120 esproj; do
    "${PSQL[@]}" -d "$db" -c "SET client_min_messages = warning" -c "CREATE EXTENSION event_store"
done
"${PSQL[@]}" -d es1 -c "SET client_min_messages = warning" -c "CREATE EXTENSION event_store_messagedb"
# NPARTS partitions: daily partitions in the past, then today's on the first append
"${PSQL[@]}" -d es120 -At >/dev/null <<SQL
SET client_min_messages = warning;
SELECT event_store.set_partition_interval('1 day');
DO \$\$
DECLARE i int := 1;
BEGIN   -- daily partitions in the past until NPARTS - 1 (today's comes with the first append)
    WHILE (SELECT count(*) FROM event_store.partition_info) < $NPARTS - 1 AND i < 1000 LOOP
        PERFORM event_store._create_partition_for(now() - make_interval(days => i));
        i := i + 1;
    END LOOP;
END \$\$;
SQL

# The raw baseline: Message DB's messages table (columns, primary key, the
# three indexes, the PL/pgSQL category() they use), without its functions.
"${PSQL[@]}" -d raw <<'SQL'
CREATE SCHEMA bench_raw;
CREATE FUNCTION bench_raw.category(stream_name varchar) RETURNS varchar AS $$
BEGIN
  RETURN SPLIT_PART(category.stream_name, '-', 1);
END;
$$ LANGUAGE plpgsql IMMUTABLE;
CREATE TABLE bench_raw.messages (
  global_position bigserial NOT NULL,
  position bigint NOT NULL,
  time TIMESTAMP WITHOUT TIME ZONE DEFAULT (now() AT TIME ZONE 'utc') NOT NULL,
  stream_name text NOT NULL,
  type text NOT NULL,
  data jsonb,
  metadata jsonb,
  id UUID NOT NULL DEFAULT gen_random_uuid()
);
ALTER TABLE bench_raw.messages ADD PRIMARY KEY (global_position);
CREATE INDEX messages_category ON bench_raw.messages (
  bench_raw.category(stream_name), global_position, bench_raw.category(metadata->>'correlationStreamName'));
CREATE UNIQUE INDEX messages_id ON bench_raw.messages (id);
CREATE UNIQUE INDEX messages_stream ON bench_raw.messages (stream_name, position);
-- the commit floor: one int per transaction, no index
CREATE TABLE bench_floor (n int);
-- hot stream: the plain-SQL analogue of an expected version is the unique (stream_name, position)
CREATE FUNCTION bench_try_insert(s text, v bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO bench_raw.messages (position, stream_name, type, data, metadata)
  VALUES (v + 1, s, 'BenchEvent', '{"n": 1}', NULL);
  RETURN 1;
EXCEPTION WHEN unique_violation THEN RETURN 0;
END $$;
SQL

# The same data everywhere, in the same order (so global positions match):
# NSTREAMS streams x ROUNDS events in categories account and other,
# interleaved; a 1,000-event stream reader-1 (merge patches); NSTREAMS
# streams bench-N with one event; the stream hot-1 with one event.
echo "== loading $((MAXPOS + 1000 + NSTREAMS + 1)) events into each store"
load_es() {
    "${PSQL[@]}" -d "$1" >/dev/null <<SQL
SET client_min_messages = warning;
DO \$\$
BEGIN
    FOR r IN 0 .. $ROUNDS - 1 LOOP
        FOR s IN 1 .. $NSTREAMS LOOP
            PERFORM event_store.append_event(c || '-' || s, 'Deposited', jsonb_build_object('amount', r), '$META')
               FROM (VALUES ('account'), ('other')) v(c) ORDER BY c;
        END LOOP;
    END LOOP;
END \$\$;
SELECT event_store.append('reader-1', ARRAY(SELECT event_store.event('Patched',
       jsonb_build_object('k' || (i % 20), i, 'n', i, 'obj', jsonb_build_object('a' || (i % 5), i)), '$META')
       FROM generate_series(1, 1000) i ORDER BY i));
SELECT count(event_store.append_event('bench-' || i, 'BenchEvent', '$DATA', '$META')) FROM generate_series(1, $NSTREAMS) i;
SELECT event_store.append_event('hot-1', 'BenchEvent', '{"n": 1}');
SELECT event_store.subscribe('cg', ARRAY['account']);
CREATE FUNCTION bench_try_append(s text, v bigint) RETURNS int LANGUAGE plpgsql AS \$f\$
BEGIN
    PERFORM event_store.append_event(s, 'BenchEvent', '{"n": 1}', NULL, v);
    RETURN 1;
EXCEPTION WHEN SQLSTATE 'ES001' THEN RETURN 0;
END \$f\$;
-- a PL/pgSQL fold over read_stream with the same C merge as state_as_of
CREATE FUNCTION bench_plpgsql_fold(stream text) RETURNS jsonb LANGUAGE plpgsql AS \$f\$
DECLARE s jsonb; r record;
BEGIN
    FOR r IN SELECT data FROM event_store.read_stream(stream, 1, 2000000000) LOOP
        s := event_store.jsonb_merge_patch(s, r.data);
    END LOOP;
    RETURN s;
END \$f\$;
VACUUM ANALYZE;
SQL
}
load_sql_mdb() {   # $1 = table, $2 = category function
    cat <<SQL
INSERT INTO $1 (stream_name, position, type, data, metadata)
SELECT c || '-' || s, r, 'Deposited', jsonb_build_object('amount', r), '$META'
  FROM generate_series(0, $ROUNDS - 1) r, generate_series(1, $NSTREAMS) s, (VALUES ('account'), ('other')) v(c)
 ORDER BY r, s, c;
INSERT INTO $1 (stream_name, position, type, data, metadata)
SELECT 'reader-1', i - 1, 'Patched',
       jsonb_build_object('k' || (i % 20), i, 'n', i, 'obj', jsonb_build_object('a' || (i % 5), i)), '$META'
  FROM generate_series(1, 1000) i ORDER BY i;
INSERT INTO $1 (stream_name, position, type, data, metadata)
SELECT 'bench-' || i, 0, 'BenchEvent', '$DATA', '$META' FROM generate_series(1, $NSTREAMS) i;
INSERT INTO $1 (stream_name, position, type, data) VALUES ('hot-1', 0, 'BenchEvent', '{"n": 1}');
VACUUM ANALYZE;
SQL
}
load_es es1 & p1=$!
load_es es120 & p2=$!
load_sql_mdb bench_raw.messages | "${PSQL[@]}" -d raw >/dev/null
if ((MDB)); then
    load_sql_mdb message_store.messages | "${PSQL[@]}" -d mdb >/dev/null
    "${PSQL[@]}" -d mdb <<'SQL'
CREATE FUNCTION bench_try_write(s varchar, v bigint) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  PERFORM write_message(gen_random_uuid()::varchar, s, 'BenchEvent', '{"n": 1}'::jsonb, NULL, v);
  RETURN 1;
EXCEPTION WHEN raise_exception THEN
  IF SQLERRM LIKE 'Wrong expected version%' THEN RETURN 0; END IF;
  RAISE;
END $$;
SQL
fi
wait $p1; wait $p2
"${PSQL[@]}" -d esproj >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE TABLE balances (account text PRIMARY KEY, balance numeric NOT NULL, events int NOT NULL);
CREATE FUNCTION on_money(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO balances VALUES (e.stream_id, (e.data->>'amount')::numeric, 1)
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance,
                                        events = balances.events + 1
$$;
SELECT event_store.create_projection('balances', 'on_money(event_store.events)');
SQL
PARTS1=$("${PSQL[@]}" -d es1 -Atc "SELECT count(*) FROM event_store.partition_info")
PARTSN=$("${PSQL[@]}" -d es120 -Atc "SELECT count(*) FROM event_store.partition_info")
echo "   es1: $PARTS1 partition(s); es120: $PARTSN partitions"

# Writes go to copies of the loaded databases (es1_w, mdb_w, raw_w), reads
# to the loaded ones: the reads measure the same data in every run, however
# many rows the write groups of that run managed to add (with the writes in
# the same databases, the read tables had grown a hundredfold by the second
# pass, and their plans followed the statistics, stale or fresh).
for db in es1 raw $( ((MDB)) && echo mdb); do
    "${PSQL[@]}" -d postgres -c "CREATE DATABASE ${db}_w TEMPLATE $db" >/dev/null
done
((MDB)) && "${PSQL[@]}" -d postgres -c "ALTER DATABASE mdb_w SET search_path = message_store, public" >/dev/null

# ---------------------------------------------------------------------------
# pgbench scripts and variants: name -> database, script, group
# ---------------------------------------------------------------------------
S=$WORK/scripts
mkdir -p "$S"
declare -A V_DB V_SCRIPT V_COUNT
variant() {   # name db script-body [count-query for the hot stream]
    V_DB[$1]=$2; V_SCRIPT[$1]=$S/$1.sql; V_COUNT[$1]=${4:-}
    printf '%s\n' "$3" >"$S/$1.sql"
}
MDBQ="'BenchEvent'::varchar, '$DATA'::jsonb, '$META'::jsonb"
RAWCOLS="position, stream_name, type, data, metadata"
# (1) one event to a random one of NSTREAMS streams
variant single_es es1_w "\\set s random(1, $NSTREAMS)
SELECT event_store.append_event('bench-' || :s, 'BenchEvent', '$DATA', '$META');"
variant single_mdb mdb_w "\\set s random(1, $NSTREAMS)
SELECT write_message(gen_random_uuid()::varchar, ('bench-' || :s)::varchar, $MDBQ);"
variant single_msapi es1_w "\\set s random(1, $NSTREAMS)
SELECT message_store.write_message(gen_random_uuid()::varchar, ('bench-' || :s)::varchar, $MDBQ);"
# the physical limit of a one-transaction append: a transaction that writes
# one small row to a table without indexes (client round trip, one WAL
# record, commit and -- with synchronous_commit on -- its flush)
variant single_floor raw_w "INSERT INTO bench_floor VALUES (1);"
variant single_raw raw_w "\\set s random(1, $NSTREAMS)
INSERT INTO bench_raw.messages (global_position, $RAWCOLS)
VALUES (nextval('bench_raw.messages_global_position_seq'), currval('bench_raw.messages_global_position_seq'),
        'bench-' || :s, 'BenchEvent', '$DATA', '$META');"
# (2) one hot stream: read the version, append with it (a conflict returns 0)
variant hot_es es1_w "SELECT event_store.stream_version('hot-1') AS v \\gset
SELECT bench_try_append('hot-1', :v);" "SELECT event_store.stream_version('hot-1')"
variant hot_mdb mdb_w "SELECT stream_version('hot-1') AS v \\gset
SELECT bench_try_write('hot-1', :v);" "SELECT stream_version('hot-1')"
variant hot_raw raw_w "SELECT max(position) AS v FROM bench_raw.messages WHERE stream_name = 'hot-1' \\gset
SELECT bench_try_insert('hot-1', :v);" "SELECT max(position) FROM bench_raw.messages WHERE stream_name = 'hot-1'"
# (3) 100 events to one stream in one statement
variant batch_es es1_w "\\set s random(1, $NSTREAMS)
SELECT event_store.append('bench-' || :s,
       ARRAY(SELECT event_store.event('BenchEvent', '$DATA', '$META') FROM generate_series(1, $BATCH)));"
variant batch_mdb mdb_w "\\set s random(1, $NSTREAMS)
SELECT count(write_message(gen_random_uuid()::varchar, ('bench-' || :s)::varchar, $MDBQ)) FROM generate_series(1, $BATCH);"
variant batch_raw raw_w "\\set s random(1, $NSTREAMS)
INSERT INTO bench_raw.messages (global_position, $RAWCOLS)
SELECT g.p, g.p, 'bench-' || :s, 'BenchEvent', '$DATA', '$META'
  FROM (SELECT nextval('bench_raw.messages_global_position_seq') AS p FROM generate_series(1, $BATCH)) g;"
# (8) inline projection: the same append with and without an inline upsert projection
variant proj_plain es1_w "\\set s random(1, 1000)
SELECT event_store.append_event('acct-' || :s, 'Deposited', '{\"amount\": 1}');"
variant proj_inline esproj "\\set s random(1, 1000)
SELECT event_store.append_event('acct-' || :s, 'Deposited', '{\"amount\": 1}');"
# (4) a 1,000-event stream, every row to the client
variant rs_es es1 "SELECT * FROM event_store.read_stream('reader-1', 1, 1000);"
variant rs_msapi es1 "SELECT * FROM message_store.get_stream_messages('reader-1', 0, 1000);"
variant rs_mdb mdb "SELECT * FROM get_stream_messages('reader-1', 0, 1000);"
variant rs_raw raw "SELECT * FROM bench_raw.messages WHERE stream_name = 'reader-1' ORDER BY position LIMIT 1000;"
# (5) category reads: batches of 100, consumer group of 4 (random member, random start)
# Start positions leave >= 100 rows of the member after them: a read that
# runs out of category rows before its LIMIT scans on to the end of the log
# (in both stores: ~1 s each with 800,000 later events), and a few such
# draws would decide the average.
CATMAX=$((MAXPOS - 1000))
CATSET="\\set pos random(1, $CATMAX)
\\set m random(0, 3)"
variant cat_poll es1 "$CATSET
SELECT * FROM event_store.poll('cg', 100, :m, 4);"
variant cat_msapi es1 "$CATSET
SELECT * FROM message_store.get_category_messages('account', :pos, 100, NULL, :m, 4);"
variant cat_mdbg mdb "$CATSET
SELECT * FROM get_category_messages('account', :pos, 100, NULL, :m, 4);"
variant cat_rc es1 "$CATSET
SELECT * FROM event_store.read_category('account', :pos, 100);"
variant cat_mdb mdb "$CATSET
SELECT * FROM get_category_messages('account', :pos, 100);"
variant cat_raw raw "$CATSET
SELECT * FROM bench_raw.messages WHERE bench_raw.category(stream_name) = 'account' AND global_position >= :pos
 ORDER BY global_position LIMIT 100;"
# (6) the state of the 1,000-event stream
variant fold_sa es1 "SELECT event_store.state_as_of('reader-1');"
variant fold_plpgsql es1 "SELECT bench_plpgsql_fold('reader-1');"
variant fold_read es1 "SELECT data FROM event_store.read_stream('reader-1', 1, 1000);"
# (7) the same reads with NPARTS partitions
variant rs_es_p es120 "$(cat "$S/rs_es.sql")"
variant cat_poll_p es120 "$(cat "$S/cat_poll.sql")"
variant cat_rc_p es120 "$(cat "$S/cat_rc.sql")"
variant fold_sa_p es120 "$(cat "$S/fold_sa.sql")"
chmod -R a+rX "$S"

GROUP_NAMES=(${BENCH_ONLY:-single hot batch proj rs cat fold part})
declare -A G_VARIANTS=(
    [single]="single_es single_msapi single_mdb single_raw single_floor" [hot]="hot_es hot_mdb hot_raw"
    [batch]="batch_es batch_mdb batch_raw" [proj]="proj_plain proj_inline"
    [rs]="rs_es rs_msapi rs_mdb rs_raw" [cat]="cat_poll cat_msapi cat_mdbg cat_rc cat_mdb cat_raw"
    [fold]="fold_sa fold_plpgsql fold_read" [part]="rs_es_p cat_poll_p cat_rc_p fold_sa_p")
declare -A G_WRITE=([single]=1 [hot]=1 [batch]=1 [proj]=1)

# run_pgbench VARIANT CLIENTS SYNC SECS -> "tps ok_share"
run_pgbench() {
    local v=$1 c=$2 sync=$3 secs=$4 db=${V_DB[$1]} out rc n before after ok=1
    if [[ -n ${G_WRITE_V[$v]:-} ]]; then
        [[ $db == es* ]] && "${PSQL[@]}" -d "$db" -c 'VACUUM event_store.streams' >/dev/null
        "${PSQL[@]}" -d postgres -c 'CHECKPOINT' >/dev/null
    fi
    [[ -n ${V_COUNT[$v]} ]] && before=$("${PSQL[@]}" -d "$db" -Atc "${V_COUNT[$v]}")
    set +e
    out=$(PGOPTIONS="-c synchronous_commit=$sync" "$PGBIN/pgbench" -n -M prepared \
        -c "$c" -j "$c" -T "$secs" -f "${V_SCRIPT[$v]}" "$db" 2>&1)
    rc=$?
    set -e
    if [[ $rc -ne 0 ]] || grep -q 'aborted' <<<"$out"; then
        { echo "pgbench failed for $v (clients $c, sync $sync):"; echo "$out"; tail -20 "$LOG"; } >&2
        exit 1
    fi
    if [[ -n ${V_COUNT[$v]} ]]; then
        after=$("${PSQL[@]}" -d "$db" -Atc "${V_COUNT[$v]}")
        n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
        ok=$(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.4f", (n > 0 ? (a - b) / n : 1) }')
    fi
    echo "$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' <<<"$out") $ok"
}
declare -A G_WRITE_V
for g in "${!G_WRITE[@]}"; do for v in ${G_VARIANTS[$g]}; do G_WRITE_V[$v]=1; done; done

RAW=$WORK/runs.tsv   # pass group clients sync variant tps ok_share
: >"$RAW"
configs_for() {   # group -> "clients sync" lines
    local c s
    for c in $CLIENTS; do
        if [[ -n ${G_WRITE[$1]:-} ]]; then for s in $SYNCS; do echo "$c $s"; done
        else echo "$c off"; fi
    done
}
nruns=0
for g in "${GROUP_NAMES[@]}"; do
    nv=0; for v in ${G_VARIANTS[$g]}; do [[ $v == *mdb* ]] && ((MDB == 0)) && continue; nv=$((nv + 1)); done
    nruns=$((nruns + nv * $(configs_for "$g" | wc -l)))
done
echo "== $PASSES pass(es) x $nruns runs x ${SECS}s (≈ $(( (PASSES * nruns * (SECS + 1) + 59) / 60 )) min); load average $LOAD_BEFORE"

echo "== warm-up (not counted)"
for g in "${GROUP_NAMES[@]}"; do
    for v in ${G_VARIANTS[$g]}; do
        [[ $v == *mdb* ]] && ((MDB == 0)) && continue
        run_pgbench "$v" 1 off 1 >/dev/null
    done
done

for pass in $(seq 1 "$PASSES"); do
    for g in "${GROUP_NAMES[@]}"; do
        vs=()
        for v in ${G_VARIANTS[$g]}; do [[ $v == *mdb* ]] && ((MDB == 0)) && continue; vs+=("$v"); done
        if ((pass % 2 == 0)); then
            rev=(); for ((i = ${#vs[@]} - 1; i >= 0; i--)); do rev+=("${vs[i]}"); done; vs=("${rev[@]}")
        fi
        while read -r c s; do
            for v in "${vs[@]}"; do
                read -r tps ok < <(run_pgbench "$v" "$c" "$s" "$SECS")
                printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pass" "$g" "$c" "$s" "$v" "$tps" "$ok" >>"$RAW"
                printf '   pass %d  %-6s clients %d  sync %-3s  %-13s %10.1f tps%s\n' "$pass" "$g" "$c" "$s" "$v" "$tps" \
                    "$([[ $ok != 1 ]] && awk -v o="$ok" 'BEGIN { printf "  (%.1f%% conflicts)", (1 - o) * 100 }')"
            done
        done < <(configs_for "$g")
    done
done

check=$("${PSQL[@]}" -d es1_w -Atc "SELECT (SELECT sum(version) FROM event_store.streams) = (SELECT count(*) FROM event_store.events)")
[[ $check == t ]] || { echo "es1_w: stream versions do not add up to the events written" >&2; exit 1; }
check=$("${PSQL[@]}" -d esproj -Atc "SELECT coalesce((SELECT sum(events) FROM balances), 0) = (SELECT count(*) FROM event_store.events)")
[[ $check == t ]] || { echo "esproj: the read model does not match the log" >&2; exit 1; }
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------------------
# Report: rows = (label, short label, group, ours, peer, raw, events per
# transaction, target ours/peer, target ours/raw)
# ---------------------------------------------------------------------------
ROWS=$WORK/rows.tsv
cat >"$ROWS" <<ROWS
(1) single-event append (appends/s): append_event · write_message · INSERT	append	single	single_es	single_mdb	single_raw	1	1.3	0.85
(1b) the same: our message_store.write_message · Message DB's · INSERT	mdb-api append	single	single_msapi	single_mdb	single_raw	1	1.3	-
(1c) the limit: one small row into a table without indexes · write_message · INSERT	commit floor	single	single_floor	single_mdb	single_raw	1	-	-
(2) hot stream, expected version (successful appends/s, conflicts): append_event · write_message · INSERT on unique (stream, position)	hot stream	hot	hot_es	hot_mdb	hot_raw	1	-	-
(3) 100-event batch (events/s): append · 100 write_message in one statement · INSERT … SELECT	batch (ev/s)	batch	batch_es	batch_mdb	batch_raw	$BATCH	-	0.8
(4) read a 1,000-event stream (reads/s): read_stream · get_stream_messages · SELECT	stream read	rs	rs_es	rs_mdb	rs_raw	1	1.5	-
(4b) the same: our message_store.get_stream_messages · Message DB's · SELECT	mdb-api read	rs	rs_msapi	rs_mdb	rs_raw	1	1.5	-
(5a) category, group of 4, batch 100 (batches/s): poll · get_category_messages · SELECT (no group)	poll group	cat	cat_poll	cat_mdbg	cat_raw	1	2	-
(5b) the same: our message_store.get_category_messages · Message DB's · SELECT	mdb-api group	cat	cat_msapi	cat_mdbg	cat_raw	1	2	-
(5c) category, no group (batches/s): read_category · get_category_messages · SELECT	category	cat	cat_rc	cat_mdb	cat_raw	1	-	-
(6) state of the 1,000-event stream (calls/s): state_as_of · PL/pgSQL fold (same C merge) · read_stream of data	state_as_of	fold	fold_sa	fold_plpgsql	fold_read	1	-	-
(7a) read_stream with $PARTSN partitions · with $PARTS1	rs ${PARTSN}p	part	rs_es_p	rs_es	-	1	-	-
(7b) poll, group of 4, $PARTSN partitions · $PARTS1	poll ${PARTSN}p	part	cat_poll_p	cat_poll	-	1	-	-
(7c) read_category, $PARTSN partitions · $PARTS1	category ${PARTSN}p	part	cat_rc_p	cat_rc	-	1	-	-
(7d) state_as_of, $PARTSN partitions · $PARTS1	state ${PARTSN}p	part	fold_sa_p	fold_sa	-	1	-	-
(8) inline projection (appends/s): append_event with an inline upsert projection · without	inline proj	proj	proj_inline	proj_plain	-	1	-	-
ROWS

# every (group, clients, sync) config in the order run; medians over passes
REPORT_TABLE=$(awk -F'\t' -v rowsfile="$ROWS" -v plot="$WORK/plot.dat" '
function median(k,   n, i, j, t, a) {
    n = split(vals[k], a, " "); if (!n) return ""
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
    return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function fmt(x) { return x == "" ? "n/a" : sprintf("%.0f", x) }
function rat(a, b) { return (a == "" || b == "" || b == 0) ? "" : a / b }
function fr(r) { return r == "" ? "n/a" : sprintf("%.2f", r) }
BEGIN { while ((getline line < rowsfile) > 0) { nr++; split(line, f, "\t")
        lab[nr] = f[1]; short[nr] = f[2]; grp[nr] = f[3]; ours[nr] = f[4]; peer[nr] = f[5]; raw[nr] = f[6]
        mult[nr] = f[7]; tpeer[nr] = f[8]; traw[nr] = f[9] } }
{   k = $3 SUBSEP $4 SUBSEP $5
    vals[k] = vals[k] " " ($6 * $7); okv[k] = okv[k] " " $7
    if (!(($2, $3, $4) in seen)) { seen[$2, $3, $4] = 1; cfgs[$2] = cfgs[$2] " " $3 "/" $4 } }
END {
    print "| workload (ours · peer · raw) | clients | sync commit | ours | peer | raw | ours / peer | ours / raw | target |"
    print "|---|---:|---|---:|---:|---:|---:|---:|---|"
    for (r = 1; r <= nr; r++) {
        n = split(cfgs[grp[r]], cf, " ")
        for (i = 1; i <= n; i++) {
            split(cf[i], cs, "/"); c = cs[1]; s = cs[2]
            o = median(c SUBSEP s SUBSEP ours[r]); p = (peer[r] == "-") ? "" : median(c SUBSEP s SUBSEP peer[r])
            w = (raw[r] == "-") ? "" : median(c SUBSEP s SUBSEP raw[r])
            if (o != "") o *= mult[r]; if (p != "") p *= mult[r]; if (w != "") w *= mult[r]
            oc = fmt(o); pc = fmt(p); wc = (raw[r] == "-") ? "–" : fmt(w)
            if (grp[r] == "hot") {
                oc = oc sprintf(" (%.0f%% conflicts)", (1 - median(c SUBSEP s SUBSEP ours[r] "ok")) * 100)
            }
            rp = rat(o, p); rw = rat(o, w)
            t = ""; 
            if (tpeer[r] != "-") t = t "≥" tpeer[r] "x peer: " (rp == "" ? "n/a" : (rp >= tpeer[r] ? "met" : "**missed**"))
            if (traw[r] != "-") t = t (t == "" ? "" : "; ") "≥" traw[r] "x raw: " (rw == "" ? "n/a" : (rw >= traw[r] ? "met" : "**missed**"))
            if (grp[r] == "hot") {
                pcon = median(c SUBSEP s SUBSEP peer[r] "ok"); wcon = median(c SUBSEP s SUBSEP raw[r] "ok")
                if (pc != "n/a") pc = pc sprintf(" (%.0f%%)", (1 - pcon) * 100)
                if (wc != "n/a") wc = wc sprintf(" (%.0f%%)", (1 - wcon) * 100)
            }
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", lab[r], c, s, oc, pc, wc, fr(rp), (raw[r] == "-" ? "–" : fr(rw)), t
            if (c == 1 && s == "off") printf "\"%s\"\t%s\t%s\t%s\n", short[r], (o == "" ? "NaN" : o), (p == "" ? "NaN" : p), (w == "" ? "NaN" : w) > plot
        }
    }
}' <(awk -F'\t' -v OFS='\t' '{ print; $5 = $5 "ok"; $6 = $7; $7 = 1; print }' "$RAW"))

STAMP=$(date -u +%Y%m%d-%H%M%S)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
[[ -n $(git -C "$ROOT" status --porcelain -- src sql 2>/dev/null) ]] && commit="$commit (src/sql modified)"
server_version=$("${PSQL[@]}" -d es1 -Atc 'SHOW server_version')
ext_version=$("${PSQL[@]}" -d es1 -Atc "SELECT extversion FROM pg_extension WHERE extname = 'event_store'")
ELAPSED=$(( $(date +%s) - T0 ))
SECTION=$WORK/section.md
{
    echo "## Side by side"
    echo
    echo "Generated by \`bash test/bench/run.sh\` on $DATE ($((ELAPSED / 60)) min $((ELAPSED % 60)) s); replaced on every full run."
    echo
    echo "- machine: $(bench_machine); load average before $LOAD_BEFORE, after $LOAD_AFTER (the machine is shared: other engineers' test suites run on it)"
    echo "- PostgreSQL $server_version; $SETTINGS; one throw-away cluster, unix socket"
    echo "- event_store $ext_version (commit $commit); Message DB ${MDB_VERSION:-not installed (npm failed)} from npm @eventide/message-db, its own install.sh; raw = a plain table with Message DB's columns, primary key and three indexes (PL/pgSQL category() included)"
    echo "- pgbench -M prepared, ${SECS} s per run, $PASSES interleaved pass(es) (variants back to back, order reversed every other pass); clients $CLIENTS; writes with synchronous_commit $SYNCS, reads with off"
    echo "- data: $NSTREAMS streams × $ROUNDS events in categories account and other (interleaved), a 1,000-event stream, $NSTREAMS one-event streams written at random; es1 has $PARTS1 partition(s), es120 $PARTSN; category reads start at a random position in 1..$CATMAX (so that 100 rows of the member follow), poll at the subscription's start"
    echo "- cells: median over passes (per second); ratios are median / median. Hot stream: successful appends/s, conflicts as a share of attempts in parentheses."
    echo "  Rows (6)–(8) compare event_store with itself or a plain alternative: \"peer\" is the second name in the row."
    echo
    echo "$REPORT_TABLE"
    echo
    echo "![throughput per workload, 1 client, synchronous_commit off](benchmarks.svg)"
    echo
    echo "<details><summary>every run (pass, group, clients, sync, variant, tps, share of attempts that succeeded)</summary>"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
    echo "</details>"
    echo
} >"$SECTION"

mkdir -p "$OUTDIR"
cp "$SECTION" "$OUTDIR/side-by-side-$STAMP.md"
echo
echo "$REPORT_TABLE"
echo
echo "report: ${OUTDIR#"$ROOT"/}/side-by-side-$STAMP.md ($ELAPSED s)"

if ((DOCS)); then
    doc=$ROOT/docs/benchmarks.md
    # replace the old "## Side by side" section where it stands (at the end
    # when there is none); the sections around it keep their order
    awk -v sec="$SECTION" '
        /^## / { skipping = ($0 == "## Side by side") }
        /^## Side by side$/ && !done { while ((getline l < sec) > 0) print l; done = 1 }
        !skipping { print }
        END { if (!done) while ((getline l < sec) > 0) print l }' "$doc" >"$WORK/benchmarks.md"
    cp "$WORK/benchmarks.md" "$doc"
    echo "docs/benchmarks.md: section \"Side by side\" replaced"
    if command -v gnuplot >/dev/null; then
        gnuplot <<GP
set terminal svg size 1100,560 dynamic noenhanced font "sans,11" background "white"
set output "$ROOT/docs/benchmarks.svg"
set title "event_store vs Message DB vs raw table — 1 client, synchronous_commit off, median per second ($DATE)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y
set ylabel "operations (or events) per second, log scale"
set xtics rotate by 30 right nomirror font "sans,10"
set bmargin 6
set grid ytics
set key top right opaque
set datafile separator "\t"
set datafile missing "NaN"
plot "$WORK/plot.dat" using 2:xtic(1) title "event_store" lc rgb "#1f77b4", \
     "" using 3 title "peer: Message DB (for state_as_of, 119p, inline proj: the second variant of the table row)" lc rgb "#ff7f0e", \
     "" using 4 title "raw table" lc rgb "#7f7f7f"
GP
        echo "docs/benchmarks.svg: drawn"
    else
        echo "gnuplot is not installed (scripts/ensure-deps.sh --with-bench): no plot" >&2
    fi
fi
echo "side-by-side benchmark: done"
