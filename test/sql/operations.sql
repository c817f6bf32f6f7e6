-- Operations (1.6): retention and archival, the DROP/DETACH guard, audited
-- redaction, maintenance, observability views, bad input.  In a database
-- of its own.  The events that must lie in an old partition are restored
-- (test/sql/include/restored.sql), recorded three hours ago; appends go to
-- one wide partition: nothing depends on the clock.
-- Partition names carry the time: outputs mask them as events_pN.
SET timezone = 'UTC';
\set own_db es_operations_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

-- Run a statement; show its SQLSTATE and message with partition names masked.
CREATE FUNCTION pg_temp.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'events_p[0-9_]+', 'events_pN', 'g');
END
$$;
CREATE FUNCTION pg_temp.mask(t text) RETURNS text LANGUAGE sql
RETURN regexp_replace(t, 'events_p[0-9_]+', 'events_pN', 'g');

SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
-- Empty partitions may always be dropped or detached (restores rely on it).
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('ALTER TABLE event_store.events DETACH PARTITION %s', part);
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
END
$$;
SELECT count(*) AS partitions_left FROM event_store.partition_info;

-- Two events of account-1 recorded three hours ago, in a one-second
-- partition of their own; then account-2 appended now, in a partition that
-- holds every later append (100-year partitions: it ends in 2100).
\i test/sql/include/restored.sql
SELECT pg_temp.restore_stream('account-1', date_trunc('second', now()) - interval '3 hours',
       '[{"type": "Opened", "data": {"owner": "Ann", "email": "ann@example.com", "plan": "gold"}},
         {"type": "Deposited", "data": {"amount": 10}}]') AS restored_events;
SELECT partition::text AS old_part FROM event_store.partition_info ORDER BY range_start LIMIT 1 \gset
SELECT event_store.set_partition_interval('100 years');
SELECT event_store.append_event('account-2', 'Opened', '{"owner": "Bob"}');
SELECT event_store.state_as_of('account-1') AS account_1_before;
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'account-1');

------------------------------------------------------------------------------
-- The guard: a partition holding events cannot be dropped or detached.
------------------------------------------------------------------------------
SELECT pg_temp.try(format('DROP TABLE %s', :'old_part')) AS drop_table;
SELECT pg_temp.try(format('ALTER TABLE event_store.events DETACH PARTITION %s', :'old_part')) AS detach;
SELECT pg_temp.try(format('DROP TABLE IF EXISTS %s, pg_temp.nothing', :'old_part')) AS drop_list;
SELECT count(*) AS events_still_there FROM event_store.events;

------------------------------------------------------------------------------
-- Retention: bad input first; nothing changes.
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT event_store.set_retention('0 seconds', 'archive')$$) AS zero;
SELECT pg_temp.try($$SELECT event_store.set_retention('-1 day', 'archive')$$) AS negative;
SELECT pg_temp.try($$SELECT event_store.set_retention(NULL, 'archive')$$) AS null_keep;
SELECT pg_temp.try($$SELECT event_store.set_retention('1 day', 'delete')$$) AS bad_mode;
SELECT pg_temp.try($$SELECT event_store.set_retention('1 day', 'archive', 'no_such_tablespace')$$) AS bad_tablespace;
SELECT count(*) AS policies FROM event_store.retention;
-- No policy: nothing archived.
SELECT count(*) AS archived FROM event_store.apply_retention();

-- keep 2 hours: the first partition (ended three hours ago) is due, the
-- second (open) is not.
SELECT event_store.set_retention('2 hours', 'archive');
SELECT keep, mode, tablespace FROM event_store.retention;
SELECT pg_temp.mask(p::text) AS archived FROM event_store.apply_retention() p;
-- Idempotent: nothing more to archive.
SELECT count(*) AS archived_again FROM event_store.apply_retention();
SELECT pg_temp.mask(partition::text) AS partition, archived, access_method, rows IS NULL OR rows >= 0 AS has_rows_column
  FROM event_store.partition_info ORDER BY range_start;

-- Archived events stay queryable, the stream keeps its version, appends continue.
SELECT stream_id, stream_version, event_type, archived
  FROM event_store.events_with_archive ORDER BY global_position;
SELECT event_store.stream_version('account-1') AS version;
SELECT count(*) AS attached_events_of_account_1 FROM event_store.read_stream('account-1');
SELECT event_store.append_event('account-1', 'Deposited', '{"amount": 5}', expected_version => 2);
SELECT stream_version, event_type FROM event_store.read_stream('account-1');
-- Archived partitions stay append-only.
SELECT pg_temp.try($$UPDATE event_store_archive.events SET data = '{}'$$) AS update_archive;
SELECT pg_temp.try($$DELETE FROM event_store_archive.events$$) AS delete_archive;
SELECT pg_temp.try(format('DROP TABLE event_store_archive.%s', split_part(:'old_part', '.', 2))) AS drop_archived_directly;
SELECT pg_temp.try(format('ALTER TABLE event_store_archive.events DETACH PARTITION event_store_archive.%s', split_part(:'old_part', '.', 2))) AS detach_archived_directly;

-- Unknown names.
SELECT pg_temp.try($$SELECT event_store.restore_partition('events_p19990101_000000')$$) AS restore_unknown;
SELECT pg_temp.try($$SELECT event_store.drop_archived_partition('events_p19990101_000000')$$) AS drop_unknown;
SELECT pg_temp.try($$SELECT event_store.drop_archived_partition('')$$) AS drop_empty_name;
-- An attached partition is not an archived one.
SELECT pg_temp.try(format('SELECT event_store.drop_archived_partition(%L)', (SELECT partition::text FROM event_store.partition_info WHERE NOT archived LIMIT 1))) AS drop_attached;

-- Restore re-attaches (turn the policy off first, or maintenance archives it again).
SELECT event_store.set_retention(NULL, 'none');
SELECT pg_temp.mask(event_store.restore_partition(split_part(:'old_part', '.', 2))::text) AS restored;
SELECT count(*) FILTER (WHERE archived) AS archived, count(*) FILTER (WHERE NOT archived) AS attached FROM event_store.partition_info;
SELECT stream_version, event_type FROM event_store.read_stream('account-1');

------------------------------------------------------------------------------
-- Redaction.
------------------------------------------------------------------------------
SELECT pg_temp.try($$SELECT event_store.redact('account-9', 'GDPR request 7')$$) AS missing_stream;
SELECT pg_temp.try($$SELECT event_store.redact('account-1', NULL)$$) AS no_reason;
SELECT pg_temp.try($$SELECT event_store.redact('account-1', '  ')$$) AS blank_reason;
SELECT pg_temp.try($$SELECT event_store.redact('account-1', 'x', '{}')$$) AS empty_fields;
SELECT pg_temp.try($$SELECT event_store.redact('account-1', 'x', ARRAY[NULL])$$) AS null_field;
SELECT pg_temp.try($$SELECT event_store.redact('$audit-redactions', 'x')$$) AS audit_stream;
SELECT count(*) AS audit_events FROM event_store.events WHERE stream_id = '$audit-redactions';

-- Named fields, then the whole data; a repeated call changes nothing.
SELECT event_store.redact('account-1', 'GDPR request 7: personal data', ARRAY['email', 'owner']) AS redacted;
SELECT event_store.redact('account-1', 'GDPR request 7: personal data', ARRAY['email', 'owner']) AS redacted_again;
SELECT stream_version, data FROM event_store.read_stream('account-1');
SELECT count(*) AS snapshots_left FROM event_store.snapshots WHERE stream_id = 'account-1';
SELECT event_store.state_as_of('account-1') AS account_1_after;
-- Other streams untouched.
SELECT data FROM event_store.read_stream('account-2');

-- Plain UPDATE is still refused, also for the redacted stream.
SELECT pg_temp.try($$UPDATE event_store.events SET data = '{}' WHERE stream_id = 'account-1'$$) AS plain_update;
SELECT pg_temp.try($$UPDATE event_store.events SET data = '{"$redacted": true}' WHERE stream_id = 'account-2'$$) AS plain_update_marker;

-- The audit trail.
SELECT stream_version, event_type,
       data->>'stream_id' AS stream, data->>'reason' AS reason, data->'fields' AS fields,
       data->>'redacted_by' AS by, (data->>'redacted_at')::timestamptz <= clock_timestamp() AS at_ok,
       data->'event_count' AS n, jsonb_path_query_array(data->'events', '$[*].stream_version') AS versions
  FROM event_store.read_stream('$audit-redactions');

-- Only granted roles may call it; an unprivileged role changes nothing.
CREATE ROLE es_ops_nobody;
GRANT USAGE ON SCHEMA event_store TO es_ops_nobody;
SET ROLE es_ops_nobody;
SELECT pg_temp.try($$SELECT event_store.redact('account-2', 'x')$$) AS redact_unprivileged;
SELECT pg_temp.try($$CALL event_store.run_maintenance()$$) AS maintenance_unprivileged;
SELECT pg_temp.try($$SELECT event_store.set_retention('1 day')$$) AS retention_unprivileged;
SELECT pg_temp.try($$SELECT event_store.schedule_maintenance()$$) AS schedule_unprivileged;
RESET ROLE;
-- A role granted EXECUTE redacts (as the log's owner) and is named in the audit.
CREATE ROLE es_ops_eraser;
GRANT USAGE ON SCHEMA event_store TO es_ops_eraser;
GRANT EXECUTE ON FUNCTION event_store.redact(text, text, text[]) TO es_ops_eraser;
SET ROLE es_ops_eraser;
SELECT event_store.redact('account-2', 'GDPR request 8') AS redacted_by_granted_role;
RESET ROLE;
SELECT data->>'redacted_by' AS by, data->>'stream_id' AS stream FROM event_store.read_stream_backward('$audit-redactions', NULL, 1);
SELECT data FROM event_store.read_stream('account-2');

------------------------------------------------------------------------------
-- Archive again, redact across the archive, drop the archived partition.
------------------------------------------------------------------------------
-- (old_part, attached again, is due again; account-1's third event stays
-- in the open partition: the redaction reaches both.)
SELECT event_store.set_retention('2 hours', 'archive');
SELECT pg_temp.mask(p::text) AS archived_again FROM event_store.apply_retention() p;
SELECT event_store.redact('account-1', 'GDPR request 9: everything') AS redacted_whole;
SELECT stream_version, data, archived FROM event_store.events_with_archive WHERE stream_id = 'account-1' ORDER BY stream_version;
SELECT event_store.drop_archived_partition(split_part(:'old_part', '.', 2)) AS dropped_events;
SELECT pg_temp.try($$SELECT event_store.restore_partition('$$ || split_part(:'old_part', '.', 2) || $$')$$) AS restore_dropped;
SELECT event_type, data->'events' AS events, data ? 'partition' AS names_partition
  FROM event_store.read_stream('$audit-retention');
SELECT event_store.stream_version('account-1') AS version_after_drop;

------------------------------------------------------------------------------
-- Maintenance: a procedure committing between steps; a second runner skips.
------------------------------------------------------------------------------
SELECT event_store.set_retention(NULL, 'none');
SELECT event_store.set_premake_partitions(2);
-- (The NOTICEs are hidden and the results matched: the step results are
-- counts.)
SET client_min_messages = warning;
CALL event_store.run_maintenance();
RESET client_min_messages;
SELECT step, result ~ '^([0-9]+ (partitions created|snapshots taken|events handled|partitions archived|events removed)|skipped: no stream hides events)$' AS result_ok, error
  FROM event_store.maintenance_status ORDER BY ran_at;
SELECT count(*) >= 1 AS premade FROM event_store.partition_info WHERE NOT archived AND range_start > now();
SET client_min_messages = warning;
SELECT pg_temp.try($$CALL event_store.run_maintenance()$$) AS inside_a_transaction;
RESET client_min_messages;
-- Another session holds the maintenance lock: this run skips, without error
-- and without waiting.
CREATE EXTENSION dblink;
SELECT dblink_connect('other', format('dbname=%s port=%s host=%s', current_database(),
       current_setting('port'), split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT * FROM dblink('other', 'SELECT pg_advisory_lock(7236178623481234561)::text') AS t(locked text);
CALL event_store.run_maintenance();
SELECT * FROM dblink('other', 'SELECT pg_advisory_unlock(7236178623481234561)') AS t(unlocked boolean);
SELECT dblink_disconnect('other');
DROP EXTENSION dblink;

-- Due snapshots: streams folded before with a reducer that has a policy.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 2);
SELECT event_store.append_event('account-3', 'Opened', '{"owner": "Cy"}');
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'account-3');
SELECT event_store.append_event('account-3', 'Deposited', '{"amount": 1}');
SELECT event_store.append_event('account-3', 'Deposited', '{"amount": 2}');
SELECT event_store.take_due_snapshots() AS taken;
SELECT event_store.take_due_snapshots() AS taken_again;
SELECT stream_id, version FROM event_store.snapshots WHERE stream_id = 'account-3' ORDER BY version;

-- Scheduling without pg_cron here: pg_cron lives in another database.
SELECT event_store.schedule_maintenance() IS NULL AS printed_the_call;
SELECT event_store.unschedule_maintenance() IS NULL AS printed_the_unschedule;

------------------------------------------------------------------------------
-- Observability.
------------------------------------------------------------------------------
SELECT category, streams, events, longest_stream FROM event_store.stream_stats;
SELECT attname FROM pg_attribute WHERE attrelid = 'event_store.partition_info'::regclass AND attnum > 0 ORDER BY attnum;
SELECT name FROM event_store.projection_status;

-- Publication and subscriber partitions: bad input.
SELECT pg_temp.try($$SELECT event_store.create_publication('')$$) AS empty_publication;
SELECT pg_temp.try($$SELECT event_store.ensure_partitions('2020-01-02', '2020-01-01')$$) AS reversed_range;
SELECT event_store.create_publication('es_ops_pub');
SELECT pubname, pubinsert, pubupdate, pubdelete, pubviaroot FROM pg_publication ORDER BY pubname;
SELECT pubname, schemaname, tablename FROM pg_publication_tables ORDER BY pubname;
DROP PUBLICATION es_ops_pub, es_ops_pub_streams;

\c :orig_db
DROP DATABASE es_operations_test;
DROP ROLE es_ops_nobody;
DROP ROLE es_ops_eraser;
