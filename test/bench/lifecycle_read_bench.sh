#!/usr/bin/env bash
# Stream lifecycle and reads (issue 28): what deleted streams cost the reads
# of the streams and categories around them, as ratios to the same reads
# without deletions, measured in the same run.  Not part of the test suite.
#
#   bash test/bench/lifecycle_read_bench.sh          # BENCH_PAIRS (401) pairs
#   bash test/bench/lifecycle_read_bench.sh --quick  # 101 pairs
#   BENCH_BEFORE=defs.sql bash test/bench/lifecycle_read_bench.sh
#       # defs.sql (CREATE OR REPLACE of read functions, e.g. an older
#       # version's) is run after CREATE EXTENSION: the "before" numbers
#
# Run as root with the extension installed (make install) in PGBIN's
# PostgreSQL (PGBIN=/usr/lib/postgresql/15/bin unless set).  A throw-away
# cluster owned by the postgres OS user is made and removed (test/bench/lib.sh).
#
# The data: categories 'live' (none deleted), 'half' (every second stream
# soft-deleted) and 'tenth' (every tenth deleted), 1,000 streams of 10
# events each, and 100-event streams live-1 and half-1 (half-1 among 1,000
# 100-event streams of which half are deleted: the log holds 50 % deleted
# streams of that shape).  Appended interleaved, as a live log is.
# Each timing is taken inside the server (clock_timestamp around EXECUTE,
# planning included).  Ratios come from interleaved pairs, alternated
# BENCH_PAIRS times in each order; the ratio is the geometric mean of the two
# orders' median pair ratios (a shared machine's noise hits both alike):
#   1. read_stream of a live 100-event stream among deleted ones / the same
#      read of a stream with no deleted neighbours (target: <= 1.1x);
#   2. read_category (1,000 events) of a category with 10 % deleted streams
#      / of a category with none (target: <= 1.2x);
#   3. read_stream of 100 events, nothing deleted / a copy of 1.10's
#      read_stream (the lifecycle conditions' own cost; information, and
#      <= 1.1x as for 1.).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
PAIRS=${BENCH_PAIRS:-401}
for arg in "$@"; do
    case $arg in
        --quick) PAIRS=${BENCH_PAIRS:-101} ;;
        -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
BEFORE=
if [[ -n ${BENCH_BEFORE:-} ]]; then BEFORE=$(cat "$BENCH_BEFORE"); fi
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_cluster_start es_lifecycle_read_bench
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres)

"${PSQL[@]}" <<'SQL'
CREATE EXTENSION event_store;
DO $$
BEGIN
    FOR i IN 1..1000 LOOP
        PERFORM event_store.append(c || '-' || i, ARRAY(
            SELECT event_store.event('Deposited', jsonb_build_object('n', j, 'note', repeat('x', 40)))
              FROM generate_series(1, 10) j), NULL)
           FROM unnest(ARRAY['live', 'half', 'tenth']) c;
        PERFORM event_store.append(c || '-' || i, ARRAY(
            SELECT event_store.event('Deposited', jsonb_build_object('n', j, 'note', repeat('x', 40)))
              FROM generate_series(1, 100) j), NULL)
           FROM unnest(ARRAY['slive', 'shalf']) c;
    END LOOP;
    FOR i IN 1..1000 LOOP
        IF i % 2 = 0 THEN
            PERFORM event_store.delete_stream('half-' || i);
            PERFORM event_store.delete_stream('shalf-' || i);
        END IF;
        IF i % 10 = 0 THEN PERFORM event_store.delete_stream('tenth-' || i); END IF;
    END LOOP;
END $$;
VACUUM ANALYZE;
-- read_stream as 1.10 defined it (sql/event_store--1.6--1.7.sql)
CREATE FUNCTION read_stream_110(stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) $2
       AND e.stream_version OPERATOR(pg_catalog.<)
           (CASE WHEN $3 IS NULL
                   OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1))
                 THEN 9223372036854775807
                 ELSE GREATEST($2, 1) OPERATOR(pg_catalog.+) $3 END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3
$$;
-- a and b timed alternately n times: medians of each and of b/a
CREATE FUNCTION pairs(a text, b text, n int, OUT med_a float8, OUT med_b float8, OUT med_ratio float8)
LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ta float8; tb float8; ra float8[] := '{}'; rb float8[] := '{}'; rr float8[] := '{}';
BEGIN
    EXECUTE a; EXECUTE b;   -- warm-up
    FOR i IN 1..n LOOP
        t0 := clock_timestamp(); EXECUTE a; ta := extract(epoch FROM clock_timestamp() - t0) * 1000;
        t0 := clock_timestamp(); EXECUTE b; tb := extract(epoch FROM clock_timestamp() - t0) * 1000;
        ra := ra || ta; rb := rb || tb; rr := rr || tb / ta;
    END LOOP;
    med_a := (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(ra) x);
    med_b := (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(rb) x);
    med_ratio := (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(rr) x);
END $$;
SQL
if [[ -n $BEFORE ]]; then
    echo "BENCH_BEFORE: running $BENCH_BEFORE"
    "${PSQL[@]}" <<<"$BEFORE"
fi

echo "lifecycle_read_bench: $(bench_machine); $PAIRS pairs in each order"
"${PSQL[@]}" -v pairs="$PAIRS" <<'SQL'
\pset footer off
-- the same events must come back (the bench compares like with like)
SELECT count(*) = 100 AS ok FROM event_store.read_stream('shalf-1')
UNION ALL SELECT count(*) = 1000 FROM event_store.read_category('tenth', 0, 1000)
UNION ALL SELECT NOT EXISTS (SELECT FROM event_store.read_category('tenth', 0, 1000) WHERE stream_id LIKE '%0')
UNION ALL SELECT count(*) = 0 FROM event_store.read_stream('shalf-2');
CREATE TEMP TABLE q (what text, target text, base text, stmt text, against text);
INSERT INTO q VALUES
 ('read_stream 100, live stream, 50 % of its neighbours deleted', '1.1', 'read_stream, no deletions',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('shalf-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('slive-1')$$),
 ('read_category 1,000, 10 % of its streams deleted', '1.2', 'read_category, no deletions',
  $$SELECT sum(length(data::text)) FROM event_store.read_category('tenth', 0, 1000)$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_category('live', 0, 1000)$$),
 ('read_category 1,000, 50 % of its streams deleted', NULL, 'read_category, no deletions',
  $$SELECT sum(length(data::text)) FROM event_store.read_category('half', 0, 1000)$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_category('live', 0, 1000)$$),
 ('read_stream 100, nothing deleted', '1.1', 'a copy of 1.10''s read_stream',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('slive-1')$$,
  $$SELECT sum(length(data::text)) FROM read_stream_110('slive-1')$$),
 ('read_stream_backward 100, nothing deleted', NULL, 'a copy of 1.10''s read_stream (forward)',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream_backward('slive-1')$$,
  $$SELECT sum(length(data::text)) FROM read_stream_110('slive-1')$$);
CREATE TEMP TABLE r AS
SELECT q.what, q.base, q.target, f.med_b AS ms, f.med_a AS base_ms,
       sqrt(f.med_ratio / b.med_ratio) AS ratio
  FROM q, LATERAL pairs(q.against, q.stmt, :pairs) f, LATERAL pairs(q.stmt, q.against, :pairs) b;
SELECT what, 'vs ' || base AS against, round(ms::numeric, 3) AS ms, round(base_ms::numeric, 3) AS against_ms,
       round(ratio::numeric, 3) AS ratio, coalesce('<= ' || target, '(information)') AS target
  FROM r;
SQL
