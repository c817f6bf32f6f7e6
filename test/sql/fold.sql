SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_fold_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
-- Temporal reducers: fold, fold_to_version, state_as_of, the built-in
-- reducers, composite states, the aggregate, and every refusal.

-- A booking, appended in separate transactions: each has its own recorded_at.
SELECT event_store.append_event('fold-booking-1', 'Created', '{"flight": "LH400", "seat": "12A", "passenger": {"name": "Ada", "tier": "gold"}}');
SELECT event_store.append_event('fold-booking-1', 'SeatChanged', '{"seat": "14C"}');
SELECT event_store.append_event('fold-booking-1', 'PassengerChanged', '{"passenger": {"tier": null, "phone": "+49"}}');
SELECT event_store.append_event('fold-booking-1', 'Paid', '{"paid": 420.50, "extras": ["bag", "meal"]}');
SELECT event_store.append_event('fold-booking-1', 'ExtrasChanged', '{"extras": ["bag"]}');
SELECT recorded_at AS t1 FROM event_store.events WHERE stream_id = 'fold-booking-1' AND stream_version = 1 \gset
SELECT recorded_at AS t3 FROM event_store.events WHERE stream_id = 'fold-booking-1' AND stream_version = 3 \gset
SELECT recorded_at AS t5 FROM event_store.events WHERE stream_id = 'fold-booking-1' AND stream_version = 5 \gset
SELECT :'t1'::timestamptz < :'t3'::timestamptz AND :'t3'::timestamptz < :'t5'::timestamptz AS times_ascend;

-- The current document: RFC 7386 over data in version order.
SELECT event_store.state_as_of('fold-booking-1');
-- As of each event's recorded_at, and just before the third.
SELECT event_store.state_as_of('fold-booking-1', :'t1');
SELECT event_store.state_as_of('fold-booking-1', :'t3');
SELECT event_store.state_as_of('fold-booking-1', :'t3'::timestamptz - interval '1 microsecond');
SELECT event_store.state_as_of('fold-booking-1', :'t5') = event_store.state_as_of('fold-booking-1') AS at_t5_is_current;
-- Before the first event, and a stream that does not exist: NULL.
SELECT event_store.state_as_of('fold-booking-1', :'t1'::timestamptz - interval '1 day') IS NULL AS before_first;
SELECT event_store.state_as_of('no-such-stream') IS NULL AS missing_stream;

-- fold() with the built-in reducer and an initial state.
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{"source": "web"}'::jsonb, 'fold-booking-1');
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{"source": "web"}'::jsonb, 'fold-booking-1', :'t1');
-- The initial state is returned when there is nothing to fold.
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{"source": "web"}'::jsonb, 'no-such-stream');
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{"source": "web"}'::jsonb, 'fold-booking-1', '2000-01-01');

-- Cut by version.
SELECT v, event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'fold-booking-1', v)
  FROM generate_series(0, 6) v;
SELECT event_store.fold_to_version('event_store.event_count(bigint,event_store.events)', 0::bigint, 'fold-booking-1', NULL) AS all_versions;
SELECT event_store.fold_to_version('event_store.event_count(bigint,event_store.events)', 0::bigint, 'fold-booking-1', -1);

-- The other built-in reducers.
SELECT event_store.fold('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'fold-booking-1');
SELECT event_store.fold('event_store.last_by_type(jsonb,event_store.events)', NULL::jsonb, 'fold-booking-1', :'t3');
SELECT event_store.fold('event_store.event_count(bigint,event_store.events)', 0::bigint, 'fold-booking-1'),
       event_store.fold('event_store.event_count(bigint,event_store.events)', 100::bigint, 'fold-booking-1', :'t3'),
       event_store.fold('event_store.event_count(bigint,event_store.events)', NULL::bigint, 'fold-booking-1');

-- fold equals the same fold written in SQL over read_stream, at every version.
SELECT bool_and(event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'fold-booking-1', v)
                IS NOT DISTINCT FROM
                (SELECT event_store.merge_patch_agg(e.data ORDER BY e.stream_version)
                   FROM event_store.read_stream('fold-booking-1') e WHERE e.stream_version <= v)) AS fold_matches_sql
  FROM generate_series(1, 5) v;

------------------------------------------------------------------------------
-- User reducers: a composite state in SQL and in PL/pgSQL, a numeric sum.
------------------------------------------------------------------------------
CREATE TYPE booking_state AS (seat text, paid numeric, changes int, status text);

CREATE FUNCTION booking_reducer(s booking_state, e event_store.events) RETURNS booking_state
LANGUAGE sql IMMUTABLE
RETURN ROW(coalesce(e.data->>'seat', s.seat),
           coalesce((e.data->>'paid')::numeric, s.paid),
           s.changes + 1,
           CASE e.event_type WHEN 'Paid' THEN 'paid' ELSE s.status END)::booking_state;

SELECT * FROM event_store.fold('booking_reducer(booking_state,event_store.events)',
                               ROW(NULL, 0, 0, 'new')::booking_state, 'fold-booking-1');
SELECT * FROM event_store.fold('booking_reducer(booking_state,event_store.events)',
                               ROW(NULL, 0, 0, 'new')::booking_state, 'fold-booking-1', :'t3');
SELECT (event_store.fold_to_version('booking_reducer(booking_state,event_store.events)',
                                    ROW(NULL, 0, 0, 'new')::booking_state, 'fold-booking-1', 2)).*;

CREATE FUNCTION plpgsql_reducer(s booking_state, e event_store.events) RETURNS booking_state
LANGUAGE plpgsql AS $$
BEGIN
    s.changes := s.changes + 1;
    s.seat := coalesce(e.data->>'seat', s.seat);
    RETURN s;
END
$$;
SELECT * FROM event_store.fold('plpgsql_reducer(booking_state,event_store.events)',
                               ROW(NULL, 0, 0, 'new')::booking_state, 'fold-booking-1');

CREATE FUNCTION sum_paid(s numeric, e event_store.events) RETURNS numeric
LANGUAGE sql IMMUTABLE STRICT
RETURN s + coalesce((e.data->>'paid')::numeric, 0);
SELECT event_store.fold('sum_paid(numeric,event_store.events)', 0::numeric, 'fold-booking-1');
-- A STRICT reducer leaves a NULL state NULL (it is never called).
SELECT event_store.fold('sum_paid(numeric,event_store.events)', NULL::numeric, 'fold-booking-1') IS NULL AS stays_null;

-- Folds in a query over many streams.
SELECT event_store.append_event('fold-booking-2', 'Created', '{"seat": "1A"}');
SELECT event_store.append_event('fold-booking-2', 'SeatChanged', '{"seat": "2B"}');
SELECT s.stream_id, event_store.state_as_of(s.stream_id) ->> 'seat' AS seat
  FROM event_store.streams s WHERE s.stream_id LIKE 'fold-booking-%' ORDER BY 1;

------------------------------------------------------------------------------
-- Errors
------------------------------------------------------------------------------
\set VERBOSITY default
-- Wrong signatures are refused before any event is read, naming the one expected.
CREATE FUNCTION one_arg(s jsonb) RETURNS jsonb LANGUAGE sql RETURN s;
CREATE FUNCTION wrong_event(s jsonb, e jsonb) RETURNS jsonb LANGUAGE sql RETURN s;
CREATE FUNCTION wrong_return(s jsonb, e event_store.events) RETURNS text LANGUAGE sql RETURN 'x';
CREATE FUNCTION set_returning(s jsonb, e event_store.events) RETURNS SETOF jsonb LANGUAGE sql AS 'SELECT s';
SELECT event_store.fold('one_arg(jsonb)', '{}'::jsonb, 'fold-booking-1');
SELECT event_store.fold('wrong_event(jsonb,jsonb)', '{}'::jsonb, 'fold-booking-1');
SELECT event_store.fold('wrong_return(jsonb,event_store.events)', '{}'::jsonb, 'fold-booking-1');
SELECT event_store.fold('set_returning(jsonb,event_store.events)', '{}'::jsonb, 'fold-booking-1');
-- The state type comes from the initial state: it must be the reducer's.
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', 'x'::text, 'fold-booking-1');
SELECT event_store.fold('event_store.event_count(bigint,event_store.events)', 0, 'fold-booking-1');
-- An aggregate is not a reducer.
SELECT event_store.fold('sum(bigint)', 0::numeric, 'fold-booking-1');
-- Refused even for a stream without events.
SELECT event_store.fold('one_arg(jsonb)', '{}'::jsonb, 'no-such-stream');
-- An untyped NULL initial state cannot say which state type is meant.
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', NULL, 'fold-booking-1');
-- NULL reducer or stream.
SELECT event_store.fold(NULL, '{}'::jsonb, 'fold-booking-1');
SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{}'::jsonb, NULL);
SELECT event_store.state_as_of(NULL);

-- A reducer that raises aborts the fold with its own error.
CREATE FUNCTION failing(s jsonb, e event_store.events) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
    IF e.stream_version = 3 THEN
        RAISE EXCEPTION 'cannot apply % at version %', e.event_type, e.stream_version
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN s || e.data;
END
$$;
SELECT event_store.fold('failing(jsonb,event_store.events)', '{}'::jsonb, 'fold-booking-1');
SELECT event_store.fold_to_version('failing(jsonb,event_store.events)', '{}'::jsonb, 'fold-booking-1', 2) ? 'seat' AS before_the_failure;

-- A reducer returning NULL for a non-NULL state: SQLSTATE ES010.
CREATE FUNCTION returns_null(s jsonb, e event_store.events) RETURNS jsonb LANGUAGE sql
RETURN CASE WHEN e.event_type = 'Paid' THEN NULL ELSE s END;
SELECT event_store.fold('returns_null(jsonb,event_store.events)', '{}'::jsonb, 'fold-booking-1');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
-- From a NULL state, NULL is allowed (the state stays NULL).
SELECT event_store.fold('returns_null(jsonb,event_store.events)', NULL::jsonb, 'fold-booking-1') IS NULL AS null_to_null;

-- Reducers run with the caller's privileges: EXECUTE on the reducer is required.
CREATE ROLE fold_reader;
GRANT USAGE ON SCHEMA event_store TO fold_reader;
-- Since 1.5 PUBLIC may execute nothing of the extension: grant it all.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA event_store TO fold_reader;
GRANT SELECT ON event_store.events, event_store.streams, event_store.reducers TO fold_reader;
REVOKE EXECUTE ON FUNCTION sum_paid(numeric, event_store.events) FROM PUBLIC;
SET ROLE fold_reader;
SELECT event_store.state_as_of('fold-booking-1') ->> 'seat' AS reader_sees;
SELECT event_store.fold('sum_paid(numeric,event_store.events)', 0::numeric, 'fold-booking-1');
RESET ROLE;
-- And SELECT on event_store.events.
REVOKE SELECT ON event_store.events FROM fold_reader;
SET ROLE fold_reader;
SELECT event_store.state_as_of('fold-booking-1');
RESET ROLE;
DROP OWNED BY fold_reader;
DROP ROLE fold_reader;

------------------------------------------------------------------------------
-- Which partitions a fold reads: only those of the stream's time range.
------------------------------------------------------------------------------
SELECT count(*) AS partitions_read,
       bool_and(p IN (SELECT DISTINCT tableoid::regclass FROM event_store.events WHERE stream_id = 'fold-booking-1')) AS all_hold_the_stream
  FROM event_store.stream_partitions('fold-booking-1') p;
SELECT count(*) AS partitions_read FROM event_store.stream_partitions('fold-booking-1', '2000-01-01');
SELECT count(*) AS partitions_read FROM event_store.stream_partitions('no-such-stream');

\c :orig_db
DROP DATABASE es_fold_test;
