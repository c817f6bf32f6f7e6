-- issue 31: Message DB's data and metadata are any JSON value or NULL, and
-- write_message stores them as given: the reads return them byte for byte
-- (data::text), event_store reads the same values, event_store's own
-- appends keep refusing them, and the reducers say what a non-object does.
-- Also the error fields a client branches on (constraint, table, column).
SET search_path = message_store, public;
\pset null '<null>'

-- The error and its fields, as a client sees them.
CREATE FUNCTION pg_temp.err_fields(q text) RETURNS text LANGUAGE plpgsql AS $f$
DECLARE
    st text; msg text; sch text; tab text; col text; con text;
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, sch = SCHEMA_NAME,
        tab = TABLE_NAME, col = COLUMN_NAME, con = CONSTRAINT_NAME;
    RETURN format('%s: %s [schema=%s table=%s column=%s constraint=%s]',
                  st, msg, nullif(sch, ''), nullif(tab, ''), nullif(col, ''), nullif(con, ''));
END
$f$;

------------------------------------------------------------------------------
-- data: SQL NULL, JSON null, an array, a string, a number, a boolean, an
-- object; metadata: SQL NULL, JSON null, an object, an array, a string
------------------------------------------------------------------------------
SELECT write_message('30000000-0000-4000-8000-000000000001', 'mdbAny-1', 'NoData', NULL);
SELECT write_message('30000000-0000-4000-8000-000000000002', 'mdbAny-1', 'JsonNull', 'null');
SELECT write_message('30000000-0000-4000-8000-000000000003', 'mdbAny-1', 'Array', '[1, "two", {"three": 3}]', '[1]');
SELECT write_message('30000000-0000-4000-8000-000000000004', 'mdbAny-1', 'String', '"x"', 'null');
SELECT write_message('30000000-0000-4000-8000-000000000005', 'mdbAny-1', 'Number', '12.50', '"m"');
SELECT write_message('30000000-0000-4000-8000-000000000006', 'mdbAny-1', 'Boolean', 'false', '{"correlationStreamName": "mdbOther-1"}');
SELECT write_message('30000000-0000-4000-8000-000000000007', 'mdbAny-1', 'Object', '{"a": [1, null]}', '{"k": 1}', 5);

-- read back exactly as written (SQL NULL stays NULL, JSON null is 'null')
SELECT position, type, data, data IS NULL AS data_is_sql_null, metadata, metadata IS NULL AS metadata_is_sql_null
  FROM get_stream_messages('mdbAny-1');
SELECT position, type, data, metadata FROM get_category_messages('mdbAny');
SELECT position, type, data, metadata FROM get_last_stream_message('mdbAny-1', 'NoData');
SELECT position, type, data, metadata FROM get_last_stream_message('mdbAny-1', 'Number');
SELECT position, type, data, metadata FROM get_last_stream_message('mdbAny-1');
-- correlation reads the object metadata; the other kinds have no correlation
SELECT position, type FROM get_category_messages('mdbAny', 1, 1000, 'mdbOther');
-- conditions see data and metadata as jsonb, as in Message DB
SET message_store.sql_condition = on;
SELECT position, type FROM get_stream_messages('mdbAny-1', 0, 1000, 'data IS NULL OR jsonb_typeof(data) <> ''object''');
SELECT position, type FROM get_category_messages('mdbAny', 1, 1000, NULL, NULL, NULL, 'jsonb_typeof(metadata) = ''array''');
RESET message_store.sql_condition;

-- One log, two APIs: event_store reads the same values
SELECT stream_version, event_type, data, jsonb_typeof(data) AS kind, metadata
  FROM event_store.read_stream('mdbAny-1') ORDER BY stream_version;
SELECT count(*) FILTER (WHERE m.data IS NOT DISTINCT FROM e.data::varchar
                          AND m.metadata IS NOT DISTINCT FROM e.metadata::varchar) AS same,
       count(*) AS total
  FROM get_stream_messages('mdbAny-1') m JOIN event_store.events e ON e.event_id = m.id::uuid;

------------------------------------------------------------------------------
-- event_store's own appends still refuse data that is not an object, and
-- metadata that is neither an object nor NULL; nothing is written
------------------------------------------------------------------------------
SELECT pg_temp.err_fields($$SELECT event_store.append_event('mdbAny-1', 'X', NULL)$$);
SELECT pg_temp.err_fields($$SELECT event_store.append_event('mdbAny-1', 'X', '[1]')$$);
SELECT pg_temp.err_fields($$SELECT event_store.append_event('mdbAny-1', 'X', 'null')$$);
SELECT pg_temp.err_fields($$SELECT event_store.append_event('mdbAny-1', 'X', '{}', '[1]')$$);
SELECT pg_temp.err_fields($$SELECT event_store.append('mdbAny-1', ARRAY[event_store.event('X', '"s"')])$$);
-- a retry of a core append with the id of a NULL-data message is a
-- different event: refused, not a crash and not a silent success
SELECT pg_temp.err_fields($$SELECT event_store.append_event('mdbAny-1', 'NoData', '{}', NULL, NULL,
                                                           '30000000-0000-4000-8000-000000000001')$$);
SELECT stream_version('mdbAny-1') AS still_at_6;

------------------------------------------------------------------------------
-- The reducers on such data (docs/reference.md "Data that is not an object"):
-- merge_patch (and state_as_of) skips SQL NULL data and, as RFC 7386 says,
-- takes any other non-object as the new state; an object merges into an
-- object state and replaces a non-object one; last_by_type records NULL
-- data as JSON null; count_by_type and event_count count every event.
------------------------------------------------------------------------------
SELECT v, event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'mdbAny-1', v) AS merge_patch
  FROM generate_series(1, 7) v;
SELECT event_store.state_as_of('mdbAny-1') AS state_as_of;
SELECT event_store.fold('event_store.last_by_type(jsonb,event_store.events)', NULL::jsonb, 'mdbAny-1') AS last_by_type;
SELECT event_store.fold('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'mdbAny-1') AS count_by_type;
SELECT event_store.fold('event_store.event_count(bigint,event_store.events)', 0::bigint, 'mdbAny-1') AS event_count;
-- the plain reducer path (a reducer of one's own) gets the same rows
CREATE FUNCTION pg_temp.kinds(s text, e event_store.events) RETURNS text LANGUAGE sql IMMUTABLE
RETURN s || coalesce(jsonb_typeof(e.data), 'NULL') || ' ';
SELECT event_store.fold('pg_temp.kinds(text,event_store.events)', ''::text, 'mdbAny-1') AS kinds;
-- a stream whose only message has NULL data has no document
SELECT write_message('30000000-0000-4000-8000-000000000008', 'mdbAny-2', 'NoData', NULL);
SELECT event_store.state_as_of('mdbAny-2') IS NULL AS no_document;

------------------------------------------------------------------------------
-- Errors with Message DB's fields: a duplicate id names the constraint,
-- a NULL id, stream name or type the column, with table and schema
------------------------------------------------------------------------------
SELECT pg_temp.err_fields(q) FROM (VALUES
  (1, $$SELECT write_message('30000000-0000-4000-8000-000000000001', 'mdbAny-3', 'Again', '{}')$$),
  (2, $$SELECT write_message('30000000-0000-4000-8000-000000000001', 'mdbAny-3', 'Again', NULL)$$),
  (3, $$SELECT write_message(NULL, 'mdbAny-3', 'X', NULL)$$),
  (4, $$SELECT write_message('30000000-0000-4000-8000-000000000009', NULL, 'X', '[1]')$$),
  (5, $$SELECT write_message('30000000-0000-4000-8000-000000000009', 'mdbAny-3', NULL, 'null')$$),
  (6, $$SELECT write_message('not-a-uuid', 'mdbAny-3', 'X', '"s"')$$),
  (7, $$SELECT write_message('30000000-0000-4000-8000-000000000009', 'mdbAny-3', 'X', '1', NULL, 0)$$),
  -- event_store's limits still apply (docs/messagedb.md)
  (8, $$SELECT write_message('30000000-0000-4000-8000-000000000009', '', 'X', '[]')$$)
) t(n, q) ORDER BY n;
SELECT stream_version('mdbAny-3') AS nothing_written;

------------------------------------------------------------------------------
-- read_category returns them as stored; redact() by fields changes only
-- objects (an array holding the field's name is not an object with it),
-- and redact() of the whole data replaces every kind, NULL too
------------------------------------------------------------------------------
SELECT stream_version, data FROM event_store.read_category('mdbAny') WHERE stream_id = 'mdbAny-1' ORDER BY global_position;
SET client_min_messages = warning;
SELECT event_store.redact('mdbAny-1', 'issue 31 test', ARRAY['two', 'a']) AS redacted_fields;
SELECT event_store.redact('mdbAny-1', 'issue 31 test') AS redacted_whole;
RESET client_min_messages;
SELECT position, type, data FROM get_stream_messages('mdbAny-1');

------------------------------------------------------------------------------
-- The log's data column is nullable (1.11's upgrade script): in the log,
-- the archive and every partition (a partition moves between the two)
------------------------------------------------------------------------------
SELECT c.oid::regclass AS "table", a.attnotnull
  FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'data'
 WHERE c.oid IN ('event_store.events'::regclass, 'event_store_archive.events'::regclass)
 ORDER BY 1::text;
SELECT count(*) > 0 AS has_partitions, count(*) FILTER (WHERE a.attnotnull) AS partitions_with_not_null_data
  FROM pg_inherits i JOIN pg_attribute a ON a.attrelid = i.inhrelid AND a.attname = 'data'
 WHERE i.inhparent IN ('event_store.events'::regclass, 'event_store_archive.events'::regclass);
RESET search_path;
