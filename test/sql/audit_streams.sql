-- Issue 25 item 3 (1.11): only the sanctioned functions write the audit
-- streams (category '$audit': '$audit-redactions', '$audit-retention', ...).
-- Every append path refuses them with 42501 and writes nothing.  In a
-- database of its own.
\set own_db es_audit_streams_test
\set own_db_extension 'event_store_messagedb CASCADE'
\i test/sql/include/own_db.sql
\set VERBOSITY terse

CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
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

CREATE ROLE es_as_writer IN ROLE event_store_writer;
CREATE ROLE es_as_admin IN ROLE event_store_admin;
GRANT message_store TO es_as_writer;

SELECT event_store.append_event('acct-1', 'Opened', '{}');
SELECT event_store.redact('acct-1', 'test');      -- a real audit record
SELECT count(*) AS events_before, (SELECT count(*) FROM event_store.streams) AS streams_before
  FROM event_store.events \gset

-- A writer forges through every append path: refused.
SET ROLE es_as_writer;
SELECT try($$SELECT event_store.append_event('$audit-redactions', 'StreamRedacted', '{"stream_id": "acct-1"}')$$) AS append_event;
SELECT try($$SELECT event_store.append('$audit-retention', ARRAY[event_store.event('ArchivedPartitionDropped', '{}')])$$) AS append;
SELECT try($$SELECT event_store.append('$audit-retention', ARRAY[event_store.event('ArchivedPartitionDropped', '{}')], 0)$$) AS append_new_stream;
SELECT try($$SELECT count(*) FROM event_store.append_all(ARRAY[
    ROW('acct-2', NULL, ARRAY[event_store.event('Opened', '{}')])::event_store.stream_append,
    ROW('$audit-redactions', NULL, ARRAY[event_store.event('StreamRedacted', '{}')])::event_store.stream_append])$$) AS append_all;
SELECT try($$SELECT event_store.append_if(ARRAY[event_store.event('Forged', '{}')], '$audit-x', NULL, ARRAY['t'], 0)$$) AS append_if;
SELECT try($$SELECT event_store.append_event('$audit', 'Forged', '{}')$$) AS bare_category;
SELECT try($$SELECT message_store.write_message(gen_random_uuid()::text, '$audit-redactions', 'StreamRedacted', '{}')$$) AS write_message;
-- ... and directly
SELECT try($$INSERT INTO event_store.events (stream_id, stream_version, event_type, data)
             VALUES ('$audit-redactions', 2, 'StreamRedacted', '{}')$$) AS direct_insert;
RESET ROLE;
-- An admin cannot either, nor call the sanctioned path's helper.
SET ROLE es_as_admin;
SELECT try($$SELECT event_store.append_event('$audit-retention', 'ArchivedPartitionDropped', '{}')$$) AS admin_append;
SELECT try($$SELECT event_store._drop_archived_partition('event_store.events'::regclass)$$) AS admin_internal_drop;
RESET ROLE;
-- Nothing was written.
SELECT count(*) - :events_before AS events_added,
       (SELECT count(*) FROM event_store.streams) - :streams_before AS streams_added
  FROM event_store.events;
SELECT stream_id, event_type FROM event_store.events WHERE stream_id LIKE '$audit%' ORDER BY global_position;

-- Streams that merely look alike are ordinary streams.
SET ROLE es_as_writer;
SELECT event_store.append_event('$auditor-1', 'Hired', '{}') AS lookalike;
SELECT event_store.append_event('audit-1', 'Noted', '{}') AS no_dollar;
RESET ROLE;

-- A handler cannot use the sanction of the audit append that fired it:
-- redact()'s inline handler tries to append to the audit stream.
CREATE FUNCTION public.piggyback(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM event_store.append_event('$audit-redactions', 'StreamRedacted', '{"forged": true}');
END
$$;
SELECT event_store.create_projection('piggyback', 'public.piggyback(event_store.events)', categories => ARRAY['$audit']);
SELECT event_store.append_event('acct-3', 'Opened', '{}');
SELECT count(*) AS events_before FROM event_store.events \gset
SELECT try($$SELECT event_store.redact('acct-3', 'test')$$) AS redact_with_piggyback;
SELECT count(*) - :events_before AS events_added FROM event_store.events;
SELECT event_store.drop_projection('piggyback');

-- The sanctioned functions still write: redact() (above) and
-- drop_archived_partition() (test/sql/operations.sql).
SELECT data->>'stream_id' AS redacted, data->>'reason' AS reason
  FROM event_store.read_stream('$audit-redactions');

\c :orig_db
DROP DATABASE es_audit_streams_test;
DROP ROLE es_as_writer;
DROP ROLE es_as_admin;
