#!/usr/bin/env bash
# Upcasters (issue 27): the cost of reading through upcaster chains, as
# ratios to the same read without upcasters, measured in the same run.
# Not part of the test suite.
#
#   bash test/bench/upcast_bench.sh            # BENCH_REPS (31) timings each
#   bash test/bench/upcast_bench.sh --quick    # 11 timings each
#
# Run as root with the extension installed (make install) in PGBIN's
# PostgreSQL (PGBIN=/usr/lib/postgresql/15/bin unless set).  A throw-away
# cluster owned by the postgres OS user is made and removed (test/bench/lib.sh).
#
# Each timing is taken inside the server (clock_timestamp around the
# statement, in a PL/pgSQL loop; the first run is discarded).  Ratios come
# from interleaved pairs -- the two reads alternated BENCH_PAIRS times (401;
# 101 with --quick), in each order; the ratio is the geometric mean of the
# two orders' median pair ratios, which cancels the order's own bias and
# keeps a shared machine's noise out of the ratio (it hits both alike):
#   1. read_stream of 1,000 events, all through one declarative rename
#      (target: <= 1.3x the same read of a type without upcasters);
#   2. the same with a SQL-function upcaster (target: <= 3x);
#   3. state_as_of over 10,000 events through a two-step declarative chain
#      (target: <= 1.5x the same fold of a type without upcasters);
#   4. read_stream of 1,000 events already at the current version of a type
#      that has upcasters (target: <= 1.05x);
#   5. first, before anything is registered: read_stream against a copy of
#      1.10's read_stream (target: <= 1.03x);
# and, for information: the rename and a type without upcasters once other
# types have chains (1.12: each row passes the per-column functions, which
# leave it alone) against _read_stream_plain -- the statement read_stream
# runs when nothing is registered --, 1.10's read_stream and the plain
# SELECT, and medians of BENCH_REPS (31; 11 with --quick) separate timings.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PG_MAJOR=${PG_MAJOR:-15}
PGBIN=${PGBIN:-/usr/lib/postgresql/$PG_MAJOR/bin}
REPS=${BENCH_REPS:-31}
PAIRS=${BENCH_PAIRS:-401}
for arg in "$@"; do
    case $arg in
        --quick) REPS=${BENCH_REPS:-11}; PAIRS=${BENCH_PAIRS:-101} ;;
        -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $arg" >&2; exit 2 ;;
    esac
done
# shellcheck source=lib.sh
. "$HERE/lib.sh"
bench_cluster_start es_upcast_bench
PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -d postgres)

"${PSQL[@]}" <<'SQL'
CREATE EXTENSION event_store;
CREATE FUNCTION rename_cust(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT (data - 'cust') || jsonb_build_object('customer', data->'cust') $$;
-- 1,000-event streams, one type each, all written at version 1
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['None', 'Decl', 'Fn', 'Cur'] LOOP
        PERFORM event_store.append('b' || lower(t) || '-1', ARRAY(
            SELECT event_store.event('B' || t, jsonb_build_object('cust', 'c' || i, 'amount', i, 'note', repeat('x', 40)))
              FROM generate_series(1, 1000) i), NULL);
    END LOOP;
    FOREACH t IN ARRAY ARRAY['None', 'Chain'] LOOP
        FOR b IN 1..10 LOOP
            PERFORM event_store.append('f' || lower(t) || '-1', ARRAY(
                SELECT event_store.event('F' || t, jsonb_build_object('cust', 'c' || i, 'amount', i, 'k' || (i % 7), i))
                  FROM generate_series(1, 1000) i), NULL);
        END LOOP;
    END LOOP;
END $$;
VACUUM ANALYZE;
-- read_stream as 1.10 defined it (sql/event_store--1.6--1.7.sql), the baseline
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

CREATE FUNCTION bench(stmt text, reps int) RETURNS float8 LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz; ms float8[] := '{}';
BEGIN
    EXECUTE stmt;   -- warm-up
    FOR i IN 1..reps LOOP
        t0 := clock_timestamp();
        EXECUTE stmt;
        ms := ms || extract(epoch FROM clock_timestamp() - t0) * 1000;
    END LOOP;
    RETURN (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x) FROM unnest(ms) x);
END $$;
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


echo "upcast_bench: $(bench_machine); medians of $REPS"
# 1. nothing registered: read_stream against the 1.10 statement it runs
"${PSQL[@]}" -v reps="$REPS" -v pairs="$PAIRS" <<'SQL'
CREATE TABLE r0 AS
SELECT 'plain SELECT from the table, 1,000 (before 1.11)' AS what,
       bench($$SELECT sum(length(data::text)) FROM (SELECT * FROM event_store.events e WHERE e.stream_id = 'bnone-1' ORDER BY e.stream_version LIMIT 1000) x$$, :reps) AS ms
UNION ALL SELECT 'state_as_of 10,000, nothing registered',
       bench($$SELECT event_store.state_as_of('fnone-1')$$, :reps);
-- read_stream against 1.10's, in interleaved pairs (the machine may be
-- shared: a run's noise hits both alike), in both orders
CREATE TABLE p0 AS
SELECT * FROM pairs($$SELECT sum(length(data::text)) FROM read_stream_110('bnone-1')$$,
                    $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$, :pairs)
UNION ALL
SELECT * FROM pairs($$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$,
                    $$SELECT sum(length(data::text)) FROM read_stream_110('bnone-1')$$, :pairs);
INSERT INTO r0 SELECT 'read_stream 1,000, nothing registered', (SELECT med_b FROM p0 LIMIT 1);
INSERT INTO r0 SELECT '1.10 read_stream (a copy), 1,000', (SELECT med_a FROM p0 LIMIT 1);
SQL
# 2. the chains
"${PSQL[@]}" -o /dev/null <<'SQL'
SELECT event_store.register_upcaster('BDecl', 1, '{"rename": {"cust": "customer"}}'::jsonb);
SELECT event_store.register_upcaster('BFn', 1, 'rename_cust(jsonb)'::regprocedure);
SELECT event_store.register_upcaster('BCur', 1, '{"rename": {"cust": "customer"}}'::jsonb);
SELECT event_store.register_upcaster('FChain', 1, '{"rename": {"cust": "customer"}}'::jsonb);
SELECT event_store.register_upcaster('FChain', 2, '{"set": {"currency": "EUR"}, "remove": ["k3"]}'::jsonb);
SELECT event_store.set_event_schema('BDecl', 2), event_store.set_event_schema('BFn', 2),
       event_store.set_event_schema('BCur', 2), event_store.set_event_schema('FChain', 3);
-- a stream of a type with upcasters whose events are all at the current
-- version, and the same data in a type without upcasters (its baseline:
-- the same bytes to print)
SELECT event_store.append('bcurrent-1', ARRAY(
    SELECT event_store.event('BCur', jsonb_build_object('customer', 'c' || i, 'amount', i, 'note', repeat('x', 40)))
      FROM generate_series(1, 1000) i), NULL) IS NOT NULL AS appended;
SELECT event_store.append('bnonecust-1', ARRAY(
    SELECT event_store.event('BNone', jsonb_build_object('customer', 'c' || i, 'amount', i, 'note', repeat('x', 40)))
      FROM generate_series(1, 1000) i), NULL) IS NOT NULL AS appended;
VACUUM ANALYZE;
SQL
"${PSQL[@]}" -v reps="$REPS" -v pairs="$PAIRS" <<'SQL'
\pset footer off
-- each target: the read with the chain against the same read of a type
-- without upcasters, in interleaved pairs, both orders (as in 1.)
CREATE TEMP TABLE q (what text, target text, base text, stmt text, against text);
INSERT INTO q VALUES
 ('read_stream 1,000, declarative rename', '1.3', 'read_stream, type without upcasters',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bdecl-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$),
 ('read_stream 1,000, SQL-function upcaster', '3', 'read_stream, type without upcasters',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bfn-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$),
 ('read_stream 1,000, at the current version', '1.05', 'read_stream, type without upcasters',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bcurrent-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnonecust-1')$$),
 ('state_as_of 10,000, two declarative steps', '1.5', 'state_as_of, type without upcasters',
  $$SELECT event_store.state_as_of('fchain-1')$$,
  $$SELECT event_store.state_as_of('fnone-1')$$),
 ('read_stream 1,000, type without upcasters (others have chains)', NULL, '1.10 read_stream',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$,
  $$SELECT sum(length(data::text)) FROM read_stream_110('bnone-1')$$),
 ('read_stream 1,000, declarative rename', NULL, '_read_stream_plain (no upcasting route)',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bdecl-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store._read_stream_plain('bnone-1', 1, 1000)$$),
 ('read_stream 1,000, type without upcasters (others have chains)', NULL, '_read_stream_plain (no upcasting route)',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$,
  $$SELECT sum(length(data::text)) FROM event_store._read_stream_plain('bnone-1', 1, 1000)$$),
 ('read_stream 1,000, type without upcasters (others have chains)', NULL, 'plain SELECT',
  $$SELECT sum(length(data::text)) FROM event_store.read_stream('bnone-1')$$,
  $$SELECT sum(length(data::text)) FROM (SELECT * FROM event_store.events e WHERE e.stream_id = 'bnone-1' ORDER BY e.stream_version LIMIT 1000) x$$);
CREATE TEMP TABLE r AS
SELECT q.what, q.base, q.target, f.med_b AS ms, f.med_a AS base_ms,
       sqrt(f.med_ratio / b.med_ratio) AS ratio
  FROM q, LATERAL pairs(q.against, q.stmt, :pairs) f, LATERAL pairs(q.stmt, q.against, :pairs) b;
SELECT what, round(ms::numeric, 3) AS ms FROM r0;
SELECT what, 'vs ' || base AS against, round(ms::numeric, 3) AS ms, round(base_ms::numeric, 3) AS against_ms,
       round(ratio::numeric, 3) AS ratio, coalesce('<= ' || target, '(information)') AS target
  FROM r;
SELECT 'nothing registered: read_stream / 1.10 read_stream, pairs' AS ratio,
       round(sqrt((SELECT med_ratio FROM p0 LIMIT 1) / (SELECT med_ratio FROM p0 OFFSET 1 LIMIT 1))::numeric, 3) AS value,
       '<= 1.03' AS target
UNION ALL SELECT 'nothing registered: read_stream / plain SELECT, medians',
       round(((SELECT ms FROM r0 WHERE what = 'read_stream 1,000, nothing registered') / (SELECT ms FROM r0 WHERE what LIKE 'plain%'))::numeric, 3), '(information)'
UNION ALL SELECT 'nothing registered: 1.10 read_stream / plain SELECT, medians',
       round(((SELECT ms FROM r0 WHERE what = '1.10 read_stream (a copy), 1,000') / (SELECT ms FROM r0 WHERE what LIKE 'plain%'))::numeric, 3), '(information)';
SQL
