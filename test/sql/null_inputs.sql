-- Issue 25, item 1: NULL fields in hand-built composites, NULL array
-- elements, JSON of the wrong kind and extreme values given to the C
-- functions.  Before 1.11 count_by_type() crashed the server (SIGSEGV) on
-- a hand-built event row without an event_type and last_by_type() raised
-- XX000; every case here now ends in a documented SQLSTATE (or a documented
-- result) and writes nothing.  test/t/013_fuzz.pl calls every function with
-- generated arguments of these kinds.
SET timezone = 'UTC';
CREATE SCHEMA null_inputs;
CREATE ROLE null_inputs_reader;
CREATE ROLE null_inputs_writer;
GRANT event_store_reader TO null_inputs_reader;
GRANT event_store_writer TO null_inputs_writer;
GRANT USAGE ON SCHEMA null_inputs TO PUBLIC;

-- '<SQLSTATE>: <message>' or 'ok: <result>'.
CREATE FUNCTION null_inputs.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || msg;
END
$$;
GRANT EXECUTE ON FUNCTION null_inputs.try(text) TO PUBLIC;

SELECT event_store.append_event('null-inputs-1', 'Opened', '{"a": 1}');
CREATE TABLE null_inputs.before AS
SELECT (SELECT count(*) FROM event_store.events) AS events,
       (SELECT count(*) FROM event_store.streams) AS streams,
       (SELECT max(global_position) FROM event_store.events) AS last_position;

-- The reducers, called by a reader with rows built by hand.
SET ROLE null_inputs_reader;
-- The issue's crash: an event row whose event_type is NULL.
SELECT event_store.count_by_type('{}', ROW(1,'s-1',1,NULL,'{}',NULL,gen_random_uuid(),now(),now(),'1'::xid8,NULL,NULL)::event_store.events);
-- The same for last_by_type (was XX000 "event without event_type").
SELECT event_store.last_by_type('{}', ROW(1,'s-1',1,NULL,'{}',NULL,gen_random_uuid(),now(),now(),'1'::xid8,NULL,NULL)::event_store.events);
SELECT c AS "case", null_inputs.try(q) AS result FROM (VALUES
  ('count_by_type, all-NULL row',
   $$SELECT event_store.count_by_type('{}', ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('count_by_type, all-NULL row, NULL state',
   $$SELECT event_store.count_by_type(NULL, ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('last_by_type, all-NULL row',
   $$SELECT event_store.last_by_type('{}', ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  -- documented results: the reducers read only event_type and data
  ('count_by_type, only event_type set',
   $$SELECT event_store.count_by_type('{"T": 2}', ROW(NULL,NULL,NULL,'T',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('count_by_type, state a JSON array (treated as {})',
   $$SELECT event_store.count_by_type('[1]', ROW(NULL,NULL,NULL,'T',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('count_by_type, counter not a number (restarts at 1)',
   $$SELECT event_store.count_by_type('{"T": "x"}', ROW(NULL,NULL,NULL,'T',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('last_by_type, NULL data (JSON null)',
   $$SELECT event_store.last_by_type('{}', ROW(NULL,NULL,NULL,'T',NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('last_by_type, data a JSON array',
   $$SELECT event_store.last_by_type('{}', ROW(NULL,NULL,NULL,'T','[1]',NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('merge_patch, all-NULL row (state unchanged)',
   $$SELECT event_store.merge_patch('{"a": 1}', ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('merge_patch, data a JSON scalar (replaces the state, RFC 7386)',
   $$SELECT event_store.merge_patch('{"a": 1}', ROW(NULL,NULL,NULL,'T','"s"',NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('count_by_type, NULL row (state unchanged)',
   $$SELECT event_store.count_by_type('{"T": 1}', NULL)$$),
  ('last_by_type, NULL row and NULL state',
   $$SELECT event_store.last_by_type(NULL, NULL)$$),
  ('event_count, NULL row (state unchanged)',
   $$SELECT event_store.event_count(5, NULL)$$),
  ('event_count, all-NULL row (reads no column)',
   $$SELECT event_store.event_count(41, ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('event_count at the largest bigint',
   $$SELECT event_store.event_count(9223372036854775807, ROW(NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL,NULL)::event_store.events)$$),
  ('merge_patch_agg over NULL and non-object patches',
   $$SELECT event_store.merge_patch_agg(d) FROM (VALUES ('{"a": 1}'::jsonb), (NULL), ('[]'), ('{"b": 2}')) v(d)$$),
  ('jsonb_merge_patch, patch nested 2000 deep',
   $$SELECT length(event_store.jsonb_merge_patch('{}', (repeat('{"a": ', 2000) || '1' || repeat('}', 2000))::jsonb)::text)$$)
) v(c, q);
RESET ROLE;

-- A trigger function called directly (by the owner: nobody else may
-- execute it) was XX000; now 39P01 like the other trigger functions.
SELECT null_inputs.try($$SELECT event_store._refuse_direct_write()$$);

-- Writers: NULL fields of new_event and stream_append composites, NULL
-- array elements, empty and two-dimensional arrays, JSON of the wrong
-- kind, extreme versions and times.
SET ROLE null_inputs_writer;
SELECT c AS "case", null_inputs.try(q) AS result FROM (VALUES
  ('append, all-NULL new_event',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW(NULL,NULL,NULL,NULL,NULL,NULL)::event_store.new_event])$$),
  ('append, NULL element',
   $$SELECT event_store.append('null-inputs-1', ARRAY[event_store.event('T', '{}'), NULL])$$),
  ('append, new_event with NULL data',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW('T',NULL,NULL,NULL,NULL,NULL)::event_store.new_event])$$),
  ('append, data a JSON array',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW('T','[]',NULL,NULL,NULL,NULL)::event_store.new_event])$$),
  ('append, metadata the JSON null',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW('T','{}','null',NULL,NULL,NULL)::event_store.new_event])$$),
  ('append, tags holding NULL',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW('T','{}',NULL,NULL,NULL,ARRAY['a',NULL])::event_store.new_event])$$),
  ('append, occurred_at -infinity',
   $$SELECT event_store.append('null-inputs-1', ARRAY[ROW('T','{}',NULL,NULL,'-infinity',NULL)::event_store.new_event])$$),
  ('append, empty array',
   $$SELECT event_store.append('null-inputs-1', '{}')$$),
  ('append, two-dimensional array',
   $$SELECT event_store.append('null-inputs-1', ARRAY[[event_store.event('T', '{}')], [event_store.event('T', '{}')]])$$),
  ('append, expected_version the smallest bigint',
   $$SELECT event_store.append('null-inputs-1', ARRAY[event_store.event('T', '{}')], -9223372036854775808)$$),
  ('append, expected_version the largest bigint',
   $$SELECT event_store.append('null-inputs-1', ARRAY[event_store.event('T', '{}')], 9223372036854775807)$$),
  ('append_all, all-NULL stream_append',
   $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW(NULL,NULL,NULL)::event_store.stream_append])$$),
  ('append_all, NULL element',
   $$SELECT count(*) FROM event_store.append_all(ARRAY[NULL::event_store.stream_append])$$),
  ('append_all, NULL events',
   $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('null-inputs-2',NULL,NULL)::event_store.stream_append])$$),
  ('append_all, events holding NULL',
   $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('null-inputs-2',NULL,ARRAY[NULL::event_store.new_event])::event_store.stream_append])$$),
  ('append_all, an all-NULL new_event',
   $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('null-inputs-2',NULL,ARRAY[ROW(NULL,NULL,NULL,NULL,NULL,NULL)::event_store.new_event])::event_store.stream_append])$$),
  ('append_if, condition_tags holding NULL',
   $$SELECT event_store.append_if(ARRAY[event_store.event('T', '{}')], 'null-inputs-2', NULL, ARRAY[NULL], 0)$$),
  ('append_if, condition_types holding NULL',
   $$SELECT event_store.append_if(ARRAY[event_store.event('T', '{}')], 'null-inputs-2', ARRAY['T', NULL], ARRAY['a'], 0)$$),
  ('append_if, all-NULL new_event',
   $$SELECT event_store.append_if(ARRAY[ROW(NULL,NULL,NULL,NULL,NULL,NULL)::event_store.new_event], 'null-inputs-2', NULL, ARRAY['a'], 0)$$),
  ('append_event, tags holding NULL',
   $$SELECT event_store.append_event('null-inputs-1', 'T', '{}', tags => ARRAY[NULL])$$),
  ('append_event, data the JSON null',
   $$SELECT event_store.append_event('null-inputs-1', 'T', 'null')$$)
) v(c, q);
RESET ROLE;

-- Nothing was written.
SELECT (SELECT count(*) FROM event_store.events) - b.events AS new_events,
       (SELECT count(*) FROM event_store.streams) - b.streams AS new_streams,
       (SELECT max(global_position) FROM event_store.events) = b.last_position AS same_last_position
  FROM null_inputs.before b;

DROP SCHEMA null_inputs CASCADE;
DROP ROLE null_inputs_reader;
DROP ROLE null_inputs_writer;
