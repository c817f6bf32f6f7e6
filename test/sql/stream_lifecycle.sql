-- Issue 28 (1.11): stream lifecycle.  delete_stream (soft and hard),
-- truncate_stream; every read path hides the events; bad input is refused
-- with its SQLSTATE and writes nothing.  In a database of its own.
\set own_db es_lifecycle_test
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

-- What a refused call must leave alone: the log, the streams' rows, the snapshots.
CREATE FUNCTION public.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM event_store.events) || ' events, ' ||
           (SELECT md5(string_agg(s::text, ',' ORDER BY s.stream_id)) FROM event_store.streams s) || ', ' ||
           (SELECT count(*) FROM event_store.snapshots) || ' snapshots'
$$;

CREATE ROLE es_lc_writer IN ROLE event_store_writer;
CREATE ROLE es_lc_admin IN ROLE event_store_admin;
GRANT message_store TO es_lc_writer;

SELECT event_store.append('acct-1', ARRAY[event_store.event('Opened', '{"balance": 0}'),
                                         event_store.event('Deposited', '{"balance": 10}'),
                                         event_store.event('Deposited', '{"balance": 20}')]);
SELECT event_store.append('acct-2', ARRAY[event_store.event('Opened', '{"balance": 5}'),
                                         event_store.event('Deposited', '{"balance": 7}')]);
SELECT event_store.append('other-1', ARRAY[event_store.event('Noted', '{}')]);
SELECT event_store.subscribe('accounts', categories => ARRAY['acct']);
SELECT event_store.subscribe('everything');
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'acct-1');
SELECT public.fingerprint() AS before \gset

-- Bad input: each refused with its SQLSTATE, nothing written.
SELECT try($$SELECT event_store.delete_stream('acct-404')$$) AS missing_stream;
SELECT try($$SELECT event_store.delete_stream('acct-1', expected_version => 2)$$) AS wrong_expected;
SELECT try($$SELECT event_store.delete_stream('acct-1', expected_version => 0)$$) AS expected_new;
SELECT try($$SELECT event_store.delete_stream('acct-1', expected_version => -2)$$) AS expected_below_minus_one;
SELECT try($$SELECT event_store.delete_stream(NULL)$$) AS null_stream;
SELECT try($$SELECT event_store.delete_stream('')$$) AS empty_stream;
SELECT try($$SELECT event_store.delete_stream('acct-1', hard => NULL)$$) AS null_hard;
SELECT try($$SELECT event_store.delete_stream('$audit-deletions')$$) AS audit_stream;
SELECT try($$SELECT event_store.delete_stream('$audit')$$) AS audit_category;
SELECT try($$SELECT event_store.truncate_stream('acct-1', 5)$$) AS truncate_past_end;
SELECT try($$SELECT event_store.truncate_stream('acct-1', 0)$$) AS truncate_zero;
SELECT try($$SELECT event_store.truncate_stream('acct-1', NULL)$$) AS truncate_null;
SELECT try($$SELECT event_store.truncate_stream('acct-404', 1)$$) AS truncate_missing;
SELECT try($$SELECT event_store.truncate_stream('$audit-redactions', 1)$$) AS truncate_audit;
-- Writers may not delete or truncate unless granted; admins may.
SET ROLE es_lc_writer;
SELECT try($$SELECT event_store.delete_stream('acct-1')$$) AS writer_delete;
SELECT try($$SELECT event_store.truncate_stream('acct-1', 2)$$) AS writer_truncate;
-- nor write the lifecycle columns themselves
SELECT try($$UPDATE event_store.streams SET truncate_before = 99 WHERE stream_id = 'acct-2'$$) AS writer_update;
RESET ROLE;
SELECT public.fingerprint() = :'before' AS nothing_written;
SELECT count(*) AS deletion_audit_events FROM event_store.events WHERE stream_id = '$audit-deletions';

-- Soft delete, checked against the expected version, as an admin.
SET ROLE es_lc_admin;
SELECT event_store.delete_stream('acct-1', expected_version => 3, reason => 'account closed');
RESET ROLE;
-- the audit record: who, why, which versions
SELECT event_type, data->>'stream_id' AS stream, data->>'reason' AS reason, data->>'by' AS by,
       data->'version' AS version, data->'truncate_before' AS truncate_before
  FROM event_store.read_stream('$audit-deletions');
-- every read path hides the stream
SELECT count(*) AS read_stream FROM event_store.read_stream('acct-1');
SELECT count(*) AS read_stream_backward FROM event_store.read_stream_backward('acct-1');
SELECT stream_id, stream_version FROM event_store.read_category('acct') ORDER BY global_position;
SELECT stream_id, stream_version FROM event_store.read_all() WHERE stream_id NOT LIKE '$%' ORDER BY global_position;
SELECT stream_id, stream_version FROM event_store.poll('accounts');
SELECT stream_id, stream_version FROM event_store.poll('everything') WHERE stream_id NOT LIKE '$%';
SELECT event_store.stream_version('acct-1') AS deleted_version,
       event_store.stream_version('acct-404') AS unknown_version,
       event_store.state_as_of('acct-1') AS state,
       event_store.fold('event_store.merge_patch(jsonb,event_store.events)', '{"init": true}'::jsonb, 'acct-1') AS fold;
-- the Message DB reads too (event_store_messagedb 1.3)
SELECT count(*) AS mdb_stream FROM message_store.get_stream_messages('acct-1');
SELECT count(*) AS mdb_last FROM message_store.get_last_stream_message('acct-1');
SELECT stream_name, position FROM message_store.get_category_messages('acct') ORDER BY global_position;
SELECT stream_name, position FROM message_store.get_category_messages('acct', consumer_group_member => 0, consumer_group_size => 1)
 ORDER BY global_position;
SET message_store.sql_condition = on;
SELECT count(*) AS mdb_stream_condition FROM message_store.get_stream_messages('acct-1', condition => 'true');
SELECT stream_name, position FROM message_store.get_category_messages('acct', condition => 'true') ORDER BY global_position;
RESET message_store.sql_condition;
-- message_store.stream_version stays the real last position (writers' expected_version)
SELECT message_store.stream_version('acct-1') AS mdb_version;
-- the messages view and its summaries hide them too (event_store_messagedb 1.4)
SELECT count(*) AS mdb_view FROM message_store.messages WHERE stream_name = 'acct-1';
SELECT stream_name, message_count FROM message_store.stream_summary WHERE stream_name LIKE 'acct-%';
SELECT category, type, message_count FROM message_store.category_type_summary WHERE category = 'acct';
SELECT count(*) AS snapshots_left FROM event_store.snapshots WHERE stream_id = 'acct-1';
SELECT stream_id, version, state, first_visible_version, deleted_at IS NOT NULL AS deleted, tombstoned_at IS NOT NULL AS tombstoned
  FROM event_store.stream_lifecycle ORDER BY stream_id;
-- a second soft delete finds no stream; the events are still in the log
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.delete_stream('acct-1')$$) AS delete_again;
SELECT public.fingerprint() = :'before' AS nothing_written;
SELECT count(*) AS stored_events FROM event_store.events WHERE stream_id = 'acct-1';

-- A later append recreates the stream; its versions continue (4), reads
-- show only the new events.  Its expected version is the stream's real
-- version (3, event_store.stream_lifecycle.version), as for any stream:
-- 0 (no stream) and any other number fail with ES001, whose detail gives
-- the real version; NULL (any) and -1 (exists) pass.  Message DB's
-- write_message likewise takes the real last position (2), not -1.
-- (docs/reference.md, "Appending after a soft delete")
CREATE FUNCTION public.try_detail(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    d text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
    RETURN st || ': ' || d;
END
$$;
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => 0)$$) AS expected_new_after_delete;
SELECT try_detail($$SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => 0)$$) AS its_detail;
SELECT try($$SELECT event_store.append('acct-1', ARRAY[event_store.event('Reopened', '{}'), event_store.event('Reopened', '{}')], expected_version => 0)$$) AS batch_expected_new;
SELECT try($$SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => 2)$$) AS expected_older;
SELECT try($$SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => 4)$$) AS expected_newer;
SELECT try($$SELECT message_store.write_message(gen_random_uuid()::text, 'acct-1', 'Reopened', '{}', NULL, -1)$$) AS mdb_expected_no_stream;
SELECT public.fingerprint() = :'before' AS nothing_written;
BEGIN;
SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => -1) AS expected_exists;
ROLLBACK;
BEGIN;
SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}') AS expected_any;
ROLLBACK;
BEGIN;
SELECT message_store.write_message(gen_random_uuid()::text, 'acct-1', 'Reopened', '{}', NULL, 2) AS mdb_expected_position;
ROLLBACK;
SELECT public.fingerprint() = :'before' AS nothing_written;
SELECT event_store.append_event('acct-1', 'Reopened', '{"balance": 1}', expected_version => 3);
SELECT stream_version, event_type FROM event_store.read_stream('acct-1');
SELECT stream_version FROM event_store.read_stream_backward('acct-1');
SELECT event_store.stream_version('acct-1') AS version, event_store.state_as_of('acct-1') AS state;
SELECT stream_id, stream_version FROM event_store.read_category('acct') ORDER BY global_position;
SELECT stream_id, stream_version FROM event_store.poll('accounts');
SELECT position, type FROM message_store.get_stream_messages('acct-1');
SELECT position, type FROM message_store.get_last_stream_message('acct-1');
SELECT position, type FROM message_store.messages WHERE stream_name = 'acct-1';
SELECT state FROM event_store.stream_lifecycle WHERE stream_id = 'acct-1';

-- Hard delete: a tombstone.  Every append path refuses the stream (ES006)
-- and writes nothing; so do delete and truncate.
SELECT event_store.delete_stream('acct-2', hard => true, reason => 'erasure request');
SELECT event_type, data->>'stream_id' AS stream, data->>'reason' AS reason
  FROM event_store.read_stream_backward('$audit-deletions', max_count => 1);
SELECT public.fingerprint() AS before \gset
SELECT try($$SELECT event_store.append_event('acct-2', 'Deposited', '{}')$$) AS append_event;
SELECT try($$SELECT event_store.append_event('acct-2', 'Deposited', '{}', expected_version => 2)$$) AS append_event_expected;
SELECT try($$SELECT event_store.append('acct-2', ARRAY[event_store.event('A', '{}'), event_store.event('B', '{}')])$$) AS append_batch;
SELECT try($$SELECT event_store.append_all(ARRAY[ROW('acct-2', NULL, ARRAY[event_store.event('A', '{}')])::event_store.stream_append])$$) AS append_all;
SELECT try($$SELECT event_store.append_if(ARRAY[event_store.event('A', '{}', tags => ARRAY['t'])], 'acct-2', NULL, ARRAY['t'], 0)$$) AS append_if;
SELECT try($$SELECT message_store.write_message(gen_random_uuid()::text, 'acct-2', 'Deposited', '{}')$$) AS write_message;
SET ROLE es_lc_writer;
SELECT try($$SELECT event_store.append_event('acct-2', 'Deposited', '{}')$$) AS writer_append;
RESET ROLE;
SELECT try($$SELECT event_store.delete_stream('acct-2')$$) AS delete_tombstoned;
SELECT try($$SELECT event_store.delete_stream('acct-2', hard => true)$$) AS hard_delete_tombstoned;
SELECT try($$SELECT event_store.truncate_stream('acct-2', 1)$$) AS truncate_tombstoned;
-- The owner (a superuser here) cannot lift a tombstone either: the row
-- guard refuses its UPDATE, the DDL guard refuses disabling, dropping,
-- renaming or replacing the trigger (ES003).
SELECT try($$UPDATE event_store.streams SET tombstoned_at = NULL WHERE stream_id = 'acct-2'$$) AS owner_update;
SELECT try($$ALTER TABLE event_store.streams DISABLE TRIGGER _refuse_tombstoned$$) AS owner_disable;
SELECT try($$DROP TRIGGER _refuse_tombstoned ON event_store.streams$$) AS owner_drop;
SELECT try($$ALTER TRIGGER _refuse_tombstoned ON event_store.streams RENAME TO x$$) AS owner_rename;
SELECT try($$CREATE OR REPLACE TRIGGER _refuse_tombstoned BEFORE UPDATE ON event_store.streams
              FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger()$$) AS owner_replace;
SELECT try($$SELECT event_store._refuse_tombstoned()$$) AS direct_call;
SELECT public.fingerprint() = :'before' AS nothing_written;
SELECT count(*) AS read_stream, event_store.stream_version('acct-2') AS version
  FROM event_store.read_stream('acct-2');
SELECT state FROM event_store.stream_lifecycle WHERE stream_id = 'acct-2';
SELECT count(*) AS mdb_view FROM message_store.messages WHERE stream_name = 'acct-2';

-- truncate_stream: events below before_version disappear from every read;
-- folds start from the empty state there.
SELECT event_store.append('t-1', ARRAY[event_store.event('E', '{"a": 1}'), event_store.event('E', '{"b": 2}'),
                                      event_store.event('E', '{"c": 3}'), event_store.event('E', '{"d": 4}'),
                                      event_store.event('E', '{"e": 5}')]);
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 't-1');
SELECT event_store.truncate_stream('t-1', 3);
SELECT stream_version FROM event_store.read_stream('t-1');
SELECT stream_version FROM event_store.read_stream('t-1', 1, 2);
SELECT stream_version FROM event_store.read_stream('t-1', 4, 1);
SELECT count(*) AS null_from_version FROM event_store.read_stream('t-1', NULL);  -- as for any stream: none
SELECT stream_version FROM event_store.read_stream_backward('t-1');
SELECT stream_version FROM event_store.read_category('t');
SELECT position FROM message_store.messages WHERE stream_name = 't-1' ORDER BY position;
SELECT event_store.state_as_of('t-1') AS state, event_store.stream_version('t-1') AS version,
       (SELECT count(*) FROM event_store.snapshots WHERE stream_id = 't-1') AS snapshots;
-- lowering truncate_before changes and records nothing
SELECT count(*) AS audits FROM event_store.events WHERE stream_id = '$audit-deletions' \gset
SELECT event_store.truncate_stream('t-1', 2);
SELECT event_store.truncate_stream('t-1', 3);
SELECT count(*) = :audits AS no_audit, (SELECT first_visible_version FROM event_store.stream_lifecycle WHERE stream_id = 't-1') AS first_visible
  FROM event_store.events WHERE stream_id = '$audit-deletions';
SELECT event_type, data->>'stream_id' AS stream, data->'previous_truncate_before' AS previous, data->'truncate_before' AS truncate_before
  FROM event_store.read_stream_backward('$audit-deletions', max_count => 1);

-- The snapshot-event pattern: append a summary of the state, then
-- truncate before it.  The fold gives the same state from the summary.
SELECT event_store.state_as_of('t-1') AS before_summary;
SELECT event_store.append_event('t-1', 'Summary', event_store.state_as_of('t-1') || '{"a": 1, "b": 2}');
SELECT event_store.truncate_stream('t-1', event_store.stream_version('t-1'));
SELECT event_store.state_as_of('t-1') AS after_summary;
SELECT stream_version, event_type FROM event_store.read_stream('t-1');

-- truncate up to version + 1 hides every event, but the stream is not deleted
SELECT event_store.truncate_stream('t-1', 7);
SELECT count(*) AS visible, event_store.stream_version('t-1') AS version,
       (SELECT state FROM event_store.stream_lifecycle WHERE stream_id = 't-1') AS state
  FROM event_store.read_stream('t-1');

-- max_count and max_age hide messages from the messages view as from the
-- reads; without them the messages are back (nothing was removed).
SELECT event_store.append('mc-1', ARRAY[event_store.event('E', '{}'), event_store.event('E', '{}'),
                                       event_store.event('E', '{}')]);
SELECT event_store.set_stream_metadata('mc-1', '{"max_count": 2}');
SELECT position FROM message_store.messages WHERE stream_name = 'mc-1' ORDER BY position;
SELECT position FROM message_store.get_stream_messages('mc-1');
SELECT event_store.set_stream_metadata('mc-1', '{"max_age": "0 seconds"}');
SELECT count(*) AS mdb_view_max_age FROM message_store.messages WHERE stream_name = 'mc-1';
SELECT count(*) AS mdb_read_max_age FROM message_store.get_stream_messages('mc-1');
SELECT event_store.set_stream_metadata('mc-1', '{}');
SELECT count(*) AS mdb_view_no_limit FROM message_store.messages WHERE stream_name = 'mc-1';

-- The log itself still holds every event: nothing was updated or removed.
SELECT stream_id, count(*) FROM event_store.events WHERE stream_id IN ('acct-1', 'acct-2', 't-1')
 GROUP BY 1 ORDER BY 1;

\c :orig_db
DROP DATABASE es_lifecycle_test;
DROP ROLE es_lc_writer;
DROP ROLE es_lc_admin;
