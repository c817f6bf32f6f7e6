-- Bad input: each gives a clear error with a documented SQLSTATE, and
-- nothing is written.
\set VERBOSITY default
SELECT count(*) AS n_events FROM event_store.events \gset
SELECT count(*) AS n_streams FROM event_store.streams \gset
SELECT last_value AS last_position FROM event_store.global_position_seq \gset

-- try(): run a call, show its SQLSTATE, message and detail (or its result).
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    result text;
    state text;
    msg text;
    detail text;
BEGIN
    EXECUTE cmd INTO result;
    RETURN 'ok: ' || coalesce(result, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
    RETURN state || ': ' || msg || CASE WHEN detail <> '' THEN ' (' || detail || ')' ELSE '' END;
END
$f$;

-- stream_id: NULL, empty, longer than 1024 bytes
SELECT pg_temp.try($$SELECT event_store.append_event(NULL, 'E', '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('', 'E', '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append_event(repeat('x', 1025), 'E', '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append(NULL, ARRAY[event_store.event('E', '{}')])$$);
SELECT pg_temp.try($$SELECT event_store.append('', ARRAY[event_store.event('E', '{}')])$$);
-- multi-byte characters count as bytes; 1024 bytes is still fine
SELECT pg_temp.try($$SELECT event_store.append_event(repeat('é', 513), 'E', '{}')$$);
SELECT event_store.append_event(repeat('y', 1024), 'E', '{}');

-- events: NULL, empty, a NULL element, two-dimensional
SELECT pg_temp.try($$SELECT event_store.append('bad-1', NULL)$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[]::event_store.new_event[])$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[event_store.event('E', '{}'), NULL])$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[[event_store.event('E', '{}')], [event_store.event('F', '{}')]])$$);

-- event_type: NULL, empty, too long
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', NULL, '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', '', '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', repeat('t', 256), '{}')$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[event_store.event('Fine', '{}'), event_store.event(NULL, '{}')])$$);

-- data must be a JSON object; metadata a JSON object or NULL
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', NULL)$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '[1, 2]')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '"text"')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '42')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', 'null')$$);
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '{}', '[]')$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[event_store.event('E', '{}'), event_store.event('F', 'true')])$$);

-- occurred_at must be finite
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '{}', occurred_at => 'infinity')$$);

-- expected_version below -1
SELECT pg_temp.try($$SELECT event_store.append_event('bad-1', 'E', '{}', expected_version => -2)$$);
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[event_store.event('E', '{}')], -100)$$);

-- a duplicate event_id inside one batch
SELECT pg_temp.try($$SELECT event_store.append('bad-1', ARRAY[
    event_store.event('E', '{}', NULL, 'c0000000-0000-4000-8000-000000000001'),
    event_store.event('F', '{}', NULL, 'c0000000-0000-4000-8000-000000000002'),
    event_store.event('G', '{}', NULL, 'c0000000-0000-4000-8000-000000000001')])$$);

-- a batch larger than event_store.max_batch_size (default 10000)
SHOW event_store.max_batch_size;
SELECT pg_temp.try($$SELECT event_store.append('bad-1',
       (SELECT array_agg(event_store.event('E', '{}')) FROM generate_series(1, 10001)))$$);
SET event_store.max_batch_size = 3;
SELECT pg_temp.try($$SELECT event_store.append('bad-1',
       (SELECT array_agg(event_store.event('E', '{}')) FROM generate_series(1, 4)))$$);
RESET event_store.max_batch_size;
-- the limit itself is bounded, and only superusers may change it
SET event_store.max_batch_size = 0;
SET event_store.max_batch_size = 2000000;
CREATE ROLE es_bad_input_user;
SET ROLE es_bad_input_user;
SET event_store.max_batch_size = 20000;
RESET ROLE;
DROP ROLE es_bad_input_user;

-- read functions with odd arguments return nothing rather than failing
SELECT count(*) FROM event_store.read_stream(NULL);
SELECT count(*) FROM event_store.read_category(NULL);
SELECT count(*) FROM event_store.read_stream('bad-1', -5);
SELECT event_store.stream_version(NULL);
-- a negative max_count is refused by LIMIT
SELECT pg_temp.try($$SELECT count(*) FROM event_store.read_all(0, -1)$$);

-- partition settings
SELECT pg_temp.try($$SELECT event_store.set_partition_interval(NULL)$$);
SELECT pg_temp.try($$SELECT event_store.set_partition_interval('0 seconds')$$);
SELECT pg_temp.try($$SELECT event_store.set_partition_interval('-1 day')$$);
SELECT pg_temp.try($$SELECT event_store.set_partition_interval('1 month 3 days')$$);
SELECT pg_temp.try($$SELECT event_store.set_partition_interval('200 years')$$);
SELECT pg_temp.try($$SELECT event_store.set_premake_partitions(-1)$$);
SELECT pg_temp.try($$SELECT event_store.premake_partitions(-1)$$);

-- nothing was written (the two valid long stream ids above aside)
SELECT count(*) - :n_events AS new_events FROM event_store.events;
SELECT count(*) - :n_streams AS new_streams FROM event_store.streams;
SELECT count(*) AS bad_streams FROM event_store.streams WHERE stream_id LIKE 'bad-%';
SELECT count(*) AS settings_rows FROM event_store.settings;
