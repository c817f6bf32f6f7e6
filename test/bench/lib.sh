# Shared helpers of the benchmark scripts (sourced, not run).
#
#   bench_cluster_start NAME   -> a throw-away cluster owned by the postgres OS
#                                 user in a mktemp dir (unix socket only,
#                                 shared_preload_libraries = 'event_store'),
#                                 removed on exit; sets WORK, PGDATA_DIR, LOG,
#                                 PORT and exports PGHOST/PGPORT/PGUSER
#   bench_fetch_messagedb DIR  -> unpacks npm @eventide/message-db into
#                                 DIR/package (returns 1 if npm fails)
#   bench_median               -> median of the numbers on stdin
#   bench_machine              -> one line: CPU model, cores, RAM
#   bench_run_length "$@"      -> SECS and PASSES: BENCH_SECONDS (5) and
#                                 BENCH_PASSES (3), or 2 and 1 with --quick
#
# Needs PGBIN set.  Extra postgresql.conf lines: BENCH_CONF (a string);
# extra initdb options: BENCH_INITDB_OPTS (e.g. --no-data-checksums: initdb
# turns data checksums on by default from PostgreSQL 18, off before).
# BENCH_CLEANUP_HOOK: a command run first at exit (e.g. to stop a sampler).
# Also sourced by test/long/long_stream.sh and test/soak/soak.sh.

bench_port_in_use() {
    ss -Hltn "sport = :$1" 2>/dev/null | grep -q . ||
        [[ -e /var/run/postgresql/.s.PGSQL.$1 || -e /tmp/.s.PGSQL.$1 ]]
}

bench_cleanup() {
    local rc=$?
    if [[ -n ${BENCH_CLEANUP_HOOK:-} ]]; then eval "$BENCH_CLEANUP_HOOK" || true; fi
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "BENCH_KEEP=1: cluster left running: PGHOST=$WORK PGPORT=$PORT psql -U postgres"
        echo "  stop and remove: runuser -u postgres -- $PGBIN/pg_ctl -D $PGDATA_DIR stop && rm -rf $WORK"
        exit $rc
    fi
    if [[ -n ${PGDATA_DIR:-} && -f $PGDATA_DIR/postmaster.pid ]]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    [[ -n ${WORK:-} ]] && rm -rf "$WORK"
    exit $rc
}

bench_cluster_start() {
    local name=$1 p
    if [[ $(id -u) -ne 0 ]]; then
        echo "run as root (the cluster is made and run as the postgres OS user)" >&2
        exit 2
    fi
    for tool in initdb pg_ctl psql pgbench; do
        [[ -x $PGBIN/$tool ]] || { echo "missing $PGBIN/$tool" >&2; exit 2; }
    done
    if [[ ! -f $($PGBIN/pg_config --pkglibdir)/event_store.so ]]; then
        echo "event_store is not installed: make install" >&2
        exit 2
    fi
    WORK=$(mktemp -d "/tmp/$name.XXXXXX")
    chown postgres: "$WORK"
    chmod 700 "$WORK"
    PGDATA_DIR=$WORK/data
    LOG=$WORK/server.log
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    PORT=
    for _ in $(seq 1 100); do
        p=$((20000 + RANDOM % 40000))
        if ! bench_port_in_use "$p"; then PORT=$p; break; fi
    done
    [[ -n $PORT ]] || { echo "no free port found" >&2; exit 1; }
    # shellcheck disable=SC2086  # BENCH_INITDB_OPTS: words on purpose
    runuser -u postgres -- "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust \
        --no-sync -E UTF8 --locale=C ${BENCH_INITDB_OPTS:-} >"$WORK/initdb.log" 2>&1 ||
        { cat "$WORK/initdb.log"; exit 1; }
    cat >>"$PGDATA_DIR/postgresql.conf" <<CONF
# --- $name
port = $PORT
listen_addresses = ''
unix_socket_directories = '$WORK'
shared_preload_libraries = 'event_store'
${BENCH_CONF:-}
CONF
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$LOG" -w -t 60 start >/dev/null ||
        { cat "$LOG"; exit 1; }
    export PGHOST=$WORK PGPORT=$PORT PGUSER=postgres
}

bench_fetch_messagedb() {
    local dir=$1
    command -v npm >/dev/null || { echo "npm is not installed" >&2; return 1; }
    mkdir -p "$dir"
    (cd "$dir" && HOME="$dir" npm_config_cache="$dir/.npm" npm_config_fetch_retries=1 timeout 90 npm pack --silent @eventide/message-db) \
        >"$dir/npm.log" 2>&1 || { tail -5 "$dir/npm.log" >&2; return 1; }
    tar xzf "$dir"/eventide-message-db-*.tgz -C "$dir" || return 1
    [[ -f $dir/package/database/install.sh ]]
}

bench_median() {
    sort -g | awk '{ a[++n] = $1 } END { if (!n) exit; print (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2 }'
}

bench_machine() {
    local cpu
    cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
    echo "${cpu:-unknown CPU}, $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GB RAM"
}

bench_run_length() {
    SECS=${BENCH_SECONDS:-5}
    PASSES=${BENCH_PASSES:-3}
    if [[ ${1:-} == --quick ]]; then SECS=${BENCH_SECONDS:-2}; PASSES=${BENCH_PASSES:-1}; fi
}

# bench_raw_messages DB NSTREAMS: in database DB of the bench cluster,
# Message DB's messages table (its columns and its four indexes) seeded
# with one message in each of the streams 'bench-1' .. 'bench-NSTREAMS':
# the raw INSERT baseline of the append benchmarks.
bench_raw_messages() {
    runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT" \
        "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -d "$1" <<SQL
CREATE FUNCTION category(stream_name varchar) RETURNS varchar IMMUTABLE LANGUAGE sql
  AS \$\$ SELECT split_part(stream_name, '-', 1) \$\$;
CREATE TABLE messages (
  global_position bigserial NOT NULL,
  position bigint NOT NULL,
  time timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
  stream_name text NOT NULL,
  type text NOT NULL,
  data jsonb,
  metadata jsonb,
  id uuid NOT NULL DEFAULT gen_random_uuid(),
  PRIMARY KEY (global_position));
CREATE UNIQUE INDEX messages_id ON messages (id);
CREATE UNIQUE INDEX messages_stream ON messages (stream_name, position);
CREATE INDEX messages_category ON messages (category(stream_name), global_position, category(metadata->>'correlationStreamName'));
INSERT INTO messages (stream_name, position, type, data)
SELECT 'bench-' || s, 0, 'Seeded', '{"a": 1}' FROM generate_series(1, $2) s;
VACUUM ANALYZE messages;
SQL
}

# bench_append_stores NSTREAMS: the two stores of the append benchmarks in
# the bench cluster: database ours (event_store, one event in each of the
# streams 'bench-1' .. 'bench-NSTREAMS') and database raw
# (bench_raw_messages), and the pgbench scripts $WORK/ours.sql and
# $WORK/raw.sql, which append one event to a random one of those streams.
bench_append_stores() {
    local n=$1
    local -a q=(runuser -u postgres -- env PGHOST="$PGHOST" PGPORT="$PGPORT"
                "$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1)
    echo "== seeding $n streams in each store"
    "${q[@]}" -d postgres -c 'CREATE DATABASE ours' -c 'CREATE DATABASE raw'
    "${q[@]}" -d ours -c 'CREATE EXTENSION event_store'
    "${q[@]}" -d ours -c "SELECT count(event_store.append_event('bench-' || s, 'Seeded', '{\"a\": 1}')) FROM generate_series(1, $n) s" >/dev/null
    "${q[@]}" -d ours -c 'VACUUM ANALYZE'
    bench_raw_messages raw "$n"
    cat >"$WORK/ours.sql" <<SQL
\set s random(1, $n)
SELECT event_store.append_event('bench-' || :s, 'Appended', '{"a": 1}');
SQL
    cat >"$WORK/raw.sql" <<SQL
\set s random(1, $n)
\set p random(1, 1000000000)
INSERT INTO messages (stream_name, position, type, data) VALUES ('bench-' || :s, :p, 'Appended', '{"a": 1}');
SQL
    chown postgres "$WORK/ours.sql" "$WORK/raw.sql"
}
