-- The log is append-only at the storage layer: UPDATE, DELETE and TRUNCATE
-- fail through the parent and on a partition, as the table owner, as
-- superuser, under session_replication_role = replica and with all triggers
-- disabled; the event count never changes.

-- try(): run a command, report ok or SQLSTATE and message (partition names
-- depend on today's date, so they are masked).
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'events_p[0-9_]+', 'events_pNNN', 'g');
END
$$;

SELECT event_store.append('guard-1', ARRAY[event_store.event('A', '{"v": 1}'), event_store.event('B', '{"v": 2}')]);
SELECT count(*) AS n_events, md5(string_agg(data::text, ',' ORDER BY global_position)) AS digest
  FROM event_store.events \gset
SELECT format('event_store.%I', relname) AS part
  FROM pg_class WHERE oid = (SELECT tableoid FROM event_store.events WHERE stream_id = 'guard-1' LIMIT 1) \gset

-- as superuser
SELECT pg_temp.try('UPDATE event_store.events SET data = ''{}''');
SELECT pg_temp.try('DELETE FROM event_store.events');
SELECT pg_temp.try('TRUNCATE event_store.events');
SELECT pg_temp.try(format('UPDATE %s SET data = ''{}''', :'part'));
SELECT pg_temp.try(format('DELETE FROM %s', :'part'));
SELECT pg_temp.try(format('TRUNCATE %s', :'part'));
-- MERGE and INSERT ... ON CONFLICT DO UPDATE reach the same refusal
SELECT pg_temp.try('MERGE INTO event_store.events e USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE');

-- under session_replication_role = replica (ordinary triggers do not fire)
SET session_replication_role = replica;
SELECT pg_temp.try('UPDATE event_store.events SET data = ''{}''');
SELECT pg_temp.try('DELETE FROM event_store.events');
SELECT pg_temp.try('TRUNCATE event_store.events');
SELECT pg_temp.try(format('DELETE FROM %s', :'part'));
SELECT pg_temp.try(format('TRUNCATE %s', :'part'));
RESET session_replication_role;

-- Since 1.11 the guard triggers cannot be disabled (issue 25 item 4) ...
SELECT pg_temp.try('ALTER TABLE event_store.events DISABLE TRIGGER ALL');
SELECT pg_temp.try(format('ALTER TABLE %s DISABLE TRIGGER events_no_truncate', :'part'));
-- ... and the access method refuses on its own: a table with no trigger at
-- all, stored with event_store_log (temporary: its session drops it).
CREATE TEMP TABLE am_only (LIKE event_store.events) USING event_store_log;
INSERT INTO am_only SELECT * FROM event_store.events;
SELECT count(*) > 0 AS am_only_has_rows FROM am_only;
SELECT pg_temp.try('UPDATE am_only SET data = ''{}''');
SELECT pg_temp.try('DELETE FROM am_only');
SELECT pg_temp.try('TRUNCATE am_only');
SELECT pg_temp.try('MERGE INTO am_only e USING (SELECT 1) s ON true WHEN MATCHED THEN DELETE');
SELECT pg_temp.try(format('ALTER TABLE %s ENABLE ALWAYS TRIGGER events_no_truncate', :'part'));

-- as a plain table owner (not superuser) who was granted everything
CREATE ROLE es_owner_test;
GRANT USAGE ON SCHEMA event_store TO es_owner_test;
GRANT ALL ON event_store.events TO es_owner_test;
SET ROLE es_owner_test;
SELECT pg_temp.try('UPDATE event_store.events SET data = ''{}''');
SELECT pg_temp.try('DELETE FROM event_store.events');
SELECT pg_temp.try('TRUNCATE event_store.events');
RESET ROLE;
-- the owner itself, with the privileges granted back
ALTER TABLE event_store.events OWNER TO es_owner_test;
GRANT ALL ON event_store.events TO es_owner_test;
SET ROLE es_owner_test;
SELECT pg_temp.try('UPDATE event_store.events SET data = ''{}''');
SELECT pg_temp.try('DELETE FROM event_store.events');
RESET ROLE;
ALTER TABLE event_store.events OWNER TO CURRENT_USER;
REVOKE ALL ON event_store.events FROM es_owner_test;
REVOKE ALL ON SCHEMA event_store FROM es_owner_test;
DROP ROLE es_owner_test;

-- UPDATE/DELETE/TRUNCATE are granted to no one, the owner included, on the
-- parent and on every partition; PUBLIC has no privilege at all.
SELECT count(*) AS modify_grants
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE (c.oid = 'event_store.events'::regclass
        OR c.oid IN (SELECT partition FROM event_store.partition_info))
   AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE');
SELECT count(*) AS public_grants
  FROM pg_class c, aclexplode(c.relacl) a
 WHERE (c.oid = 'event_store.events'::regclass
        OR c.oid IN (SELECT partition FROM event_store.partition_info))
   AND a.grantee = 0;

-- DDL that would rewrite stored events is refused.
SELECT pg_temp.try(format('ALTER TABLE %s SET ACCESS METHOD heap', :'part'));
SELECT pg_temp.try('ALTER TABLE event_store.events ALTER COLUMN data TYPE text');
SELECT pg_temp.try(format('ALTER TABLE %s ALTER COLUMN event_type TYPE varchar(3)', :'part'));

-- nothing changed
SELECT count(*) = :n_events AS same_count,
       md5(string_agg(data::text, ',' ORDER BY global_position)) = :'digest' AS same_data
  FROM event_store.events;

-- Everything else keeps working: INSERT (via append), COPY, indexes (also
-- CONCURRENTLY), VACUUM (FREEZE, FULL), CLUSTER, ANALYZE, SELECT FOR UPDATE.
SELECT event_store.append_event('guard-1', 'C', '{"v": 3}');
CREATE INDEX events_type_test_idx ON event_store.events (event_type);
CREATE INDEX CONCURRENTLY events_part_type_test_idx ON :part (event_type, stream_id);
REINDEX TABLE :part;
VACUUM (FREEZE) event_store.events;
VACUUM FULL event_store.events;
CLUSTER :part USING events_part_type_test_idx;
ANALYZE event_store.events;
SELECT stream_version FROM event_store.events WHERE stream_id = 'guard-1' ORDER BY 1 FOR UPDATE;
SET enable_seqscan = off;
SELECT stream_version, event_type FROM event_store.events WHERE event_type = 'C' AND stream_id = 'guard-1';
RESET enable_seqscan;
DROP INDEX event_store.events_type_test_idx;
DROP INDEX event_store.events_part_type_test_idx;

-- COPY into the log (as a restore does) goes through the access method too.
CREATE TEMP TABLE copy_buf AS
SELECT nextval('event_store.global_position_seq') AS global_position, 'copied-1'::text AS stream_id,
       1::bigint AS stream_version, 'Copied'::text AS event_type, '{}'::jsonb AS data, NULL::jsonb AS metadata,
       gen_random_uuid() AS event_id, now() AS recorded_at, now() AS occurred_at, pg_current_xact_id() AS transaction_id;
DO $$
DECLARE
    f text := '/tmp/event_store_copy_test_' || pg_backend_pid() || '.data';
BEGIN
    EXECUTE format('COPY copy_buf TO %L', f);
    EXECUTE format('COPY event_store.events (global_position, stream_id, stream_version, event_type, data, metadata, event_id, recorded_at, occurred_at, transaction_id) FROM %L', f);
    EXECUTE format('COPY (SELECT 1) TO %L', f);
END
$$;
SELECT count(*) FROM event_store.events WHERE stream_id = 'copied-1';

-- A table created in this transaction may be truncated (its rows are this
-- transaction's own); an existing one may not, even inside a transaction.
BEGIN;
CREATE TABLE pg_temp.scratch (x int) USING event_store_log;
INSERT INTO pg_temp.scratch VALUES (1);
TRUNCATE pg_temp.scratch;
SELECT count(*) FROM pg_temp.scratch;
INSERT INTO pg_temp.scratch VALUES (2);
COMMIT;
SELECT pg_temp.try('TRUNCATE pg_temp.scratch');
SELECT pg_temp.try('UPDATE pg_temp.scratch SET x = 2');
