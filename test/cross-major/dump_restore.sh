#!/usr/bin/env bash
# Upgrade across PostgreSQL majors with pg_dump / pg_restore (issue 24
# item 5): a database made on one major (15) with events, snapshots,
# projections and subscriptions is dumped, restored on another (17, 18) and
# must keep every event byte for byte and stay append-only.
#
#   dump_restore.sh make  BINDIR OUTDIR   on the old major: build the
#                                         database, write OUTDIR/dump.custom
#                                         and the expected table contents
#   dump_restore.sh check BINDIR OUTDIR   on the new major: restore
#                                         OUTDIR/dump.custom, compare, prints
#                                         "ok N - ..." lines and the usual
#                                         "N passed, N failed"
#
# BINDIR is the server's bin directory (event_store must be installed in
# that server: make install).  Run as root or postgres; each step makes a
# throw-away cluster in a mktemp directory (unix socket only) and removes it.
# scripts/test-matrix.sh runs "make" with 15 on the machine and "check" in
# each chroot.  pg_upgrade cannot be tried this way: it needs both majors'
# binaries in one root.
set -uo pipefail

MODE=${1:?make or check}
BIN=${2:?server bin directory}
OUT=${3:?output directory}
mkdir -p "$OUT"
chmod a+rwx "$OUT"

as_postgres() {
    if [[ $(id -un) == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}

W=$(mktemp -d /tmp/es_xmajor.XXXXXX)
chown postgres "$W"
stop() { as_postgres "$BIN/pg_ctl" -D "$W/data" -m fast stop >/dev/null 2>&1; rm -rf "$W"; }
trap stop EXIT

as_postgres "$BIN/initdb" -D "$W/data" -U postgres -A trust --no-instructions >"$W/initdb.log" 2>&1 ||
    { cat "$W/initdb.log"; echo "0 passed, 1 failed"; exit 1; }
cat >>"$W/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$W'
shared_preload_libraries = 'event_store'
# no live projection worker (1.12): the check compares the restored
# checkpoints byte for byte and then runs the async projection itself
event_store.projection_workers = 0
timezone = 'UTC'
datestyle = 'ISO, YMD'
CONF
as_postgres "$BIN/pg_ctl" -D "$W/data" -l "$W/server.log" -w start >/dev/null ||
    { cat "$W/server.log"; echo "0 passed, 1 failed"; exit 1; }

psql() { as_postgres "$BIN/psql" -X -q -h "$W" -U postgres -v ON_ERROR_STOP=1 "$@"; }

# Every table whose rows must survive, in a fixed order, as COPY text.
TABLES="event_store.events event_store.streams event_store.snapshots event_store.reducers
        event_store.projection_registry event_store.projection_checkpoints
        event_store.subscriptions event_store.subscription_checkpoints event_store.settings
        public.balances public.type_counts"
copy_out() {    # copy_out DB DIR
    local t
    mkdir -p "$2"
    for t in $TABLES; do
        psql -d "$1" -At -c "COPY (SELECT x.* FROM $t x ORDER BY x::text COLLATE \"C\") TO STDOUT" >"$2/$t.copy" || return 1
    done
    psql -d "$1" -At -c "SELECT string_agg(format('%s %s %s %s', partition, range_start, range_end, access_method), ',' ORDER BY range_start) FROM event_store.partition_info" >"$2/partitions.txt"
    psql -d "$1" -At -c "SELECT last_value FROM event_store.global_position_seq" >"$2/sequence.txt"
    psql -d "$1" -At -c "SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'account-' || i)::text FROM generate_series(1, 20) i ORDER BY i" >"$2/folds.txt"
    psql -d "$1" -At -c "SELECT event_store.reducer_revision('event_store.merge_patch(jsonb,event_store.events)')" >"$2/revision.txt"
}

if [[ $MODE == make ]]; then
    psql -d postgres -c "CREATE DATABASE src"
    psql -d src -f - <<'SQL' >"$W/make.log" 2>&1 || { cat "$W/make.log"; exit 1; }
CREATE EXTENSION event_store;
CREATE TABLE balances (account text PRIMARY KEY, balance numeric NOT NULL);
CREATE FUNCTION on_money(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO balances VALUES (event_store.cardinal_id(e.stream_id), (e.data->>'amount')::numeric)
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance
$$;
CREATE TABLE type_counts (event_type text PRIMARY KEY, n bigint NOT NULL);
CREATE FUNCTION count_type(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1
$$;
SELECT event_store.create_projection('balances', 'on_money(event_store.events)',
       event_types => ARRAY['Deposited'], categories => ARRAY['account'], mode => 'inline');
SELECT event_store.create_projection('stats', 'count_type(event_store.events)', mode => 'async');
SELECT event_store.subscribe('shipping', categories => ARRAY['account']);
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 3);
-- events of every shape: unicode, nested, null metadata, explicit ids and times
SELECT event_store.append('account-' || i, ARRAY[
         event_store.event('Opened', jsonb_build_object('owner', 'Åsa ' || i, 'tags', jsonb_build_array(i, 'x', NULL)),
                           '{"by": "xmajor"}', md5('e' || i)::uuid, '2024-02-29 12:00:00.123456+00'),
         event_store.event('Deposited', jsonb_build_object('amount', i * 10.5)),
         event_store.event('Deposited', jsonb_build_object('amount', 1e-3, 'note', E'line\nbreak "quoted" \\ €')),
         event_store.event('Renamed', jsonb_build_object('owner', NULL, 'deep', '{"a": {"b": [1, 2.50, {"c": true}]}}'::jsonb))])
  FROM generate_series(1, 20) i;
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'account-' || i)
  FROM generate_series(1, 20) i;
SELECT event_store.run_projection('stats', 50);
SELECT count(*) FROM event_store.poll('shipping', 30);
SELECT event_store.ack('shipping', 30);
SQL
    copy_out src "$OUT/expected" || exit 1
    as_postgres "$BIN/pg_dump" -h "$W" -U postgres -Fc -f "$W/dump.custom" src || exit 1
    cp "$W/dump.custom" "$OUT/dump.custom"
    "$BIN/postgres" --version >"$OUT/source_version.txt"
    echo "made $OUT/dump.custom on $(cat "$OUT/source_version.txt"): $(wc -l <"$OUT/expected/event_store.events.copy") events"
    exit 0
fi

# ---- check
n=0
failed=0
check() {    # check NAME command...
    n=$((n + 1))
    if "${@:2}" >"$W/check.out" 2>&1; then
        echo "ok $n - $1"
    else
        echo "not ok $n - $1"
        sed 's/^/#   /' "$W/check.out" | head -20
        failed=$((failed + 1))
    fi
}
refused() {    # refused SQL: fails with SQLSTATE ES003 (append-only)
    local out
    out=$(psql -d dst -v VERBOSITY=verbose -c "$1" 2>&1) && { echo "succeeded: $1"; return 1; }
    grep -q 'ES003' <<<"$out" || { echo "$out"; return 1; }
}
same() { cmp "$1" "$2"; }

from=$(cat "$OUT/source_version.txt")
to=$("$BIN/postgres" --version)
echo "# dump made on: $from"
echo "# restored on:  $to"
psql -d postgres -c "CREATE DATABASE dst"
check "pg_restore of the dump made on the old major" \
    as_postgres "$BIN/pg_restore" --exit-on-error -h "$W" -U postgres -d dst "$OUT/dump.custom"
copy_out dst "$W/got" >/dev/null 2>&1
for t in $TABLES; do
    check "$t: every row byte for byte" same "$OUT/expected/$t.copy" "$W/got/$t.copy"
done
check "partitions: same names, ranges and access method" same "$OUT/expected/partitions.txt" "$W/got/partitions.txt"
check "position sequence where it was" same "$OUT/expected/sequence.txt" "$W/got/sequence.txt"
check "folds (from the restored snapshots) give the same states" same "$OUT/expected/folds.txt" "$W/got/folds.txt"
check "snapshots still match their reducer's revision" same "$OUT/expected/revision.txt" "$W/got/revision.txt"
check "UPDATE still refused (ES003)" refused "UPDATE event_store.events SET data = '{}'"
check "DELETE still refused (ES003)" refused "DELETE FROM event_store.events"
check "TRUNCATE still refused (ES003)" refused "TRUNCATE event_store.events"
vacuum_full_keeps_events() {
    psql -d dst -c 'VACUUM FULL event_store.events' &&
        psql -d dst -At -c "COPY (SELECT x.* FROM event_store.events x ORDER BY x::text COLLATE \"C\") TO STDOUT" |
        cmp - "$OUT/expected/event_store.events.copy"
}
appends_continue() {
    local v last
    last=$(cat "$OUT/expected/sequence.txt")
    v=$(psql -d dst -At -c "SELECT event_store.append_event('account-1', 'Deposited', '{\"amount\": 1}', expected_version => 4)") &&
        [[ $v == 5 ]] &&
        [[ $(psql -d dst -At -c "SELECT global_position > $last FROM event_store.events WHERE stream_id = 'account-1' AND stream_version = 5") == t ]]
}
# account-1: 10.5 + 0.001 before the dump, + 1 appended above
inline_projection_runs() { [[ $(psql -d dst -At -c "SELECT balance FROM balances WHERE account = '1'") == 11.501 ]]; }
# 80 events dumped (50 handled before), 1 appended since: 31 left
async_projection_resumes() { [[ $(psql -d dst -At -c "SELECT event_store.run_projection('stats', 1000)") == 31 ]]; }
# acknowledged up to position 30: 50 dumped after it, 1 appended since
subscription_resumes() {
    [[ $(psql -d dst -At -c "SELECT min(global_position) > 30 AND count(*) = 51 FROM event_store.poll('shipping', 1000)") == t ]]
}
check "VACUUM FULL leaves every event in place" vacuum_full_keeps_events
check "appends continue at the right version and position" appends_continue
check "the inline projection still runs on append" inline_projection_runs
check "the async projection resumes from its checkpoint" async_projection_resumes
check "the subscription polls from its acknowledged position" subscription_resumes
echo "cross-major dump/restore: $((n - failed)) passed, $failed failed"
echo "$((n - failed)) passed, $failed failed"
((failed == 0))
