-- The direct one-event append (1.8, src/append_direct.c): an append of one
-- event to an existing stream updates the stream row and inserts the event
-- without the executor, but only where that writes exactly what the
-- statement would.  Every condition that sends an append back to the
-- statement is tried here, and the rows both ways are compared.
\set own_db es_append_direct_test
\i test/sql/include/own_db.sql

-- What one append wrote, as a row of facts that must hold either way.
CREATE FUNCTION facts(s text) RETURNS TABLE (
    stream_version bigint, positions_rise boolean, recorded_is_updated boolean,
    occurred_default boolean, stream_version_matches boolean,
    last_position_matches boolean, metadata jsonb, tags text[])
LANGUAGE sql AS $$
    SELECT e.stream_version,
           e.global_position > coalesce((SELECT max(p.global_position) FROM event_store.events p
                                         WHERE p.stream_id = s AND p.stream_version < e.stream_version), 0),
           e.recorded_at = st.updated_at,
           e.occurred_at = e.recorded_at,
           st.version = e.stream_version,
           st.last_position = e.global_position,
           e.metadata, e.tags
      FROM event_store.events e JOIN event_store.streams st USING (stream_id)
     WHERE e.stream_id = s
     ORDER BY e.stream_version DESC LIMIT 1
$$;

-- 1. The direct path: existing stream, no trigger of the user's.
SELECT event_store.append_event('direct-1', 'Opened', '{"n": 1}');
BEGIN;
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 2}', '{"who": "ada"}');
SELECT * FROM facts('direct-1');
SELECT transaction_id = pg_current_xact_id() AS this_transaction
  FROM event_store.events WHERE stream_id = 'direct-1' AND stream_version = 2;
COMMIT;
BEGIN;
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 3}');
SELECT * FROM facts('direct-1');
COMMIT;
-- an expected version: right, -1 (any), wrong (nothing written)
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 4}', NULL, 3);
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 5}', NULL, -1);
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 6}', NULL, 2);
SELECT version FROM event_store.streams WHERE stream_id = 'direct-1';
-- an event id and an occurred_at given by the caller
SELECT event_store.append_event('direct-1', 'Noted', '{"n": 7}', NULL, NULL,
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '2020-01-01 00:00:00+00');
SELECT event_id, occurred_at, stream_version FROM event_store.events
 WHERE stream_id = 'direct-1' ORDER BY stream_version DESC LIMIT 1;
-- several appends to one stream in one statement see each other
SELECT array_agg(v ORDER BY i) FROM (
    SELECT i, event_store.append_event('direct-1', 'Tick', jsonb_build_object('i', i)) AS v
      FROM generate_series(1, 5) i) x;
SELECT count(*), count(DISTINCT global_position), max(stream_version)
  FROM event_store.events WHERE stream_id = 'direct-1';
-- the event is where the indexes find it: by stream, by id, by category
SET enable_seqscan = off;
SELECT count(*) FROM event_store.events WHERE stream_id = 'direct-1';
SELECT stream_version FROM event_store.events WHERE event_id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11';
SELECT count(*) FROM event_store.read_category('direct', 0, 100);
RESET enable_seqscan;
-- a savepoint rolled back takes the direct append with it
BEGIN;
SAVEPOINT a;
SELECT event_store.append_event('direct-1', 'Lost', '{}');
ROLLBACK TO SAVEPOINT a;
SELECT event_store.append_event('direct-1', 'Kept', '{}');
COMMIT;
SELECT stream_version, event_type FROM event_store.events
 WHERE stream_id = 'direct-1' ORDER BY stream_version DESC LIMIT 2;
-- SERIALIZABLE and REPEATABLE READ appends (the former always by statement)
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT event_store.append_event('direct-1', 'Serial', '{}');
COMMIT;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT event_store.append_event('direct-1', 'Repeatable', '{}');
COMMIT;
-- a read-only transaction gets PostgreSQL's error, nothing written
BEGIN READ ONLY;
SELECT event_store.append_event('direct-1', 'ReadOnly', '{}');
ROLLBACK;
SELECT count(*) FROM event_store.events WHERE event_type = 'ReadOnly';

-- 1b. New streams (the stream row by speculative insertion): the category
-- is split_part(stream_id, '-', 1), the times and positions the event's.
SELECT event_store.append_event(s, 'Created', '{}')
  FROM unnest(ARRAY['new-a', 'new-b-c', 'nodash', '-lead', 'trail-', 'üñï-1']) s;
SELECT s.stream_id, s.category, s.version, s.created_at = e.recorded_at AS created_is_recorded,
       s.updated_at = e.recorded_at AS updated_is_recorded,
       s.first_position = e.global_position AND s.last_position = e.global_position AS positions,
       e.stream_version, e.occurred_at = e.recorded_at AS occurred_default
  FROM event_store.streams s JOIN event_store.events e USING (stream_id)
 WHERE s.stream_id IN ('new-a', 'new-b-c', 'nodash', '-lead', 'trail-', 'üñï-1')
 ORDER BY s.stream_id;
SELECT category, count(*) FROM event_store.streams GROUP BY category ORDER BY category;
-- expected version 0 on a new stream, then again (ES001, nothing written)
SELECT event_store.append_event('new-d', 'Created', '{}', NULL, 0);
SELECT event_store.append_event('new-d', 'Created', '{}', NULL, 0);
SELECT count(*) FROM event_store.events WHERE stream_id = 'new-d';
-- a new stream in a transaction that rolls back leaves nothing
BEGIN;
SELECT event_store.append_event('new-e', 'Created', '{}');
ROLLBACK;
SELECT count(*) FROM event_store.streams WHERE stream_id = 'new-e';
SELECT event_store.append_event('new-e', 'Created', '{}');
-- a column of the user's on the streams table: new streams by statement (its default)
ALTER TABLE event_store.streams ADD COLUMN owner text DEFAULT 'ops';
SELECT event_store.append_event('new-f', 'Created', '{}');
SELECT event_store.append_event('new-f', 'Again', '{}');
SELECT stream_id, version, owner FROM event_store.streams WHERE stream_id = 'new-f';
ALTER TABLE event_store.streams DROP COLUMN owner;
SELECT event_store.append_event('new-g', 'Created', '{}');
SELECT stream_id, category, version FROM event_store.streams WHERE stream_id = 'new-g';

-- 2. A CHECK constraint of the user's holds on the direct path too.
-- (the error names the partition and shows the row: only its SQLSTATE and constraint here)
ALTER TABLE event_store.events ADD CONSTRAINT no_forbidden CHECK (event_type <> 'Forbidden');
DO $$
DECLARE c text;
BEGIN
    PERFORM event_store.append_event('direct-1', 'Forbidden', '{}');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS c = CONSTRAINT_NAME;
    RAISE NOTICE 'check_violation (23514) on constraint %', c;
END $$;
SELECT count(*) FROM event_store.events WHERE event_type = 'Forbidden';
SELECT version FROM event_store.streams WHERE stream_id = 'direct-1';
ALTER TABLE event_store.events DROP CONSTRAINT no_forbidden;

-- A deferrable unique constraint on a partition: appends go through the
-- statement, which checks it at commit (a duplicate event id in another
-- stream fails there; nothing of that transaction is kept).
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info WHERE NOT archived LOOP
        EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I UNIQUE (event_id) DEFERRABLE INITIALLY DEFERRED',
                       part, (SELECT relname FROM pg_class WHERE oid = part) || '_one_id');
    END LOOP;
END $$;
SELECT event_store.append_event('direct-1', 'Deferred', '{}', NULL, NULL, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
BEGIN;
SELECT event_store.append_event('direct-2', 'Deferred', '{}', NULL, NULL, 'b0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
\set VERBOSITY sqlstate
COMMIT;
\set VERBOSITY default
SELECT count(*) AS deferred_events FROM event_store.events WHERE event_type = 'Deferred';
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info WHERE NOT archived LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', part, (SELECT relname FROM pg_class WHERE oid = part) || '_one_id');
    END LOOP;
END $$;

-- 3. Since 1.11 no column can be added to the log (issue 25 item 4: a
-- default would show on every stored event); appends go on as before.
\set VERBOSITY sqlstate
ALTER TABLE event_store.events ADD COLUMN source text DEFAULT 'app';
\set VERBOSITY default
SELECT event_store.append_event('direct-1', 'WithoutSource', '{}');
SELECT * FROM facts('direct-1');

-- 4. A trigger of the user's fires: the append goes through the statement.
CREATE TABLE audit (stream_id text, stream_version bigint);
CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit VALUES (NEW.stream_id, NEW.stream_version);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_events AFTER INSERT ON event_store.events
    FOR EACH ROW EXECUTE FUNCTION audit_row();
SELECT event_store.append_event('direct-1', 'Audited', '{}');
SELECT * FROM audit;
DROP TRIGGER audit_events ON event_store.events;
-- and on the streams table
CREATE FUNCTION audit_stream() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit VALUES (NEW.stream_id, NEW.version);
    RETURN NEW;
END $$;
CREATE TRIGGER audit_streams BEFORE UPDATE ON event_store.streams
    FOR EACH ROW EXECUTE FUNCTION audit_stream();
SELECT event_store.append_event('direct-1', 'AuditedStream', '{}');
SELECT * FROM audit ORDER BY stream_version;
DROP TRIGGER audit_streams ON event_store.streams;
-- a disabled trigger of the user's does not stop the direct path (nor fire)
CREATE TRIGGER audit_events AFTER INSERT ON event_store.events
    FOR EACH ROW EXECUTE FUNCTION audit_row();
ALTER TABLE event_store.events DISABLE TRIGGER audit_events;
SELECT event_store.append_event('direct-1', 'Unaudited', '{}');
SELECT count(*) FROM audit;
DROP TRIGGER audit_events ON event_store.events;

-- 5. Inline projections: the direct path dispatches the event to them as
-- the statement's trigger does.
CREATE TABLE tally (stream_id text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION count_it(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO tally VALUES (e.stream_id, 1)
    ON CONFLICT (stream_id) DO UPDATE SET n = tally.n + 1
$$;
SELECT event_store.create_projection('tally', 'count_it(event_store.events)');
SELECT event_store.append_event('direct-1', 'Counted', '{}');
SELECT event_store.append_event('direct-1', 'Counted', '{}');
SELECT * FROM tally;
-- a handler that reads the log sees the event it is called for (and the
-- stream row), also a STABLE one (it reads with the active snapshot)
CREATE FUNCTION look(e event_store.events) RETURNS void LANGUAGE plpgsql STABLE AS $$
BEGIN
    RAISE NOTICE 'version % of %: % events in the log, stream row at version %',
        e.stream_version, e.stream_id,
        (SELECT count(*) FROM event_store.events x WHERE x.stream_id = e.stream_id),
        (SELECT s.version FROM event_store.streams s WHERE s.stream_id = e.stream_id);
END $$;
SELECT event_store.create_projection('look', 'look(event_store.events)');
SELECT event_store.append_event('look-1', 'Looked', '{}');
SELECT event_store.append_event('look-1', 'Looked', '{}');
SELECT event_store.drop_projection('look');
SELECT event_store.drop_projection('tally');
SELECT event_store.append_event('direct-1', 'NotCounted', '{}');
SELECT * FROM tally;

-- 6. Privileges: a member of event_store_writer takes the direct path; a
-- role without UPDATE on the streams table gets the statement's
-- permission error, nothing written.
CREATE ROLE es_direct_writer IN ROLE event_store_writer;
SET ROLE es_direct_writer;
SELECT event_store.append_event('direct-1', 'ByWriter', '{}');
RESET ROLE;
CREATE ROLE es_direct_nostreams;
GRANT USAGE ON SCHEMA event_store TO es_direct_nostreams;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA event_store TO es_direct_nostreams;
GRANT USAGE ON SEQUENCE event_store.global_position_seq TO es_direct_nostreams;
GRANT SELECT, INSERT ON event_store.events TO es_direct_nostreams;
GRANT SELECT ON event_store.streams TO es_direct_nostreams;
SET ROLE es_direct_nostreams;
\set VERBOSITY terse
SELECT event_store.append_event('direct-1', 'Refused', '{}');
\set VERBOSITY default
RESET ROLE;
SELECT count(*) FROM event_store.events WHERE event_type = 'Refused';

-- 7. Row-level security on the streams table: the statement applies it.
-- The policy shows the writer only streams named direct-*: other-1 looks
-- missing to it, and creating it again breaks the policy.
SELECT event_store.append_event('other-1', 'Opened', '{}');
ALTER TABLE event_store.streams ENABLE ROW LEVEL SECURITY;
CREATE POLICY only_direct ON event_store.streams USING (stream_id LIKE 'direct-%');
SET ROLE es_direct_writer;
SELECT event_store.append_event('direct-1', 'UnderPolicy', '{}');
\set VERBOSITY terse
SELECT event_store.append_event('other-1', 'Hidden', '{}');
\set VERBOSITY default
RESET ROLE;
SELECT count(*) FROM event_store.events WHERE event_type = 'Hidden';
DROP POLICY only_direct ON event_store.streams;
ALTER TABLE event_store.streams DISABLE ROW LEVEL SECURITY;

-- Everything above: one event per version, positions unique, no gaps in versions.
SELECT count(*) = max(stream_version) AS versions_dense,
       count(DISTINCT global_position) = count(*) AS positions_unique
  FROM event_store.events WHERE stream_id = 'direct-1';
SELECT version = (SELECT max(stream_version) FROM event_store.events WHERE stream_id = 'direct-1') AS stream_row_agrees
  FROM event_store.streams WHERE stream_id = 'direct-1';

-- 8. write_message's id probe (each partition's event_id index directly):
-- an id written in an earlier partition is found from a later one.  In a
-- database of its own, with one-second partitions.
\c :orig_db
DROP DATABASE es_append_direct_test;
CREATE DATABASE es_append_direct_mdb;
\c es_append_direct_mdb
SET client_min_messages = warning;
CREATE EXTENSION event_store_messagedb CASCADE;
RESET client_min_messages;
SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
END
$$;
-- the first message recorded an hour ago (restored), in a partition of its own
\i test/sql/include/restored.sql
SELECT pg_temp.restore_event('mdbdirect-1', 'Written', '{}', now() - interval '1 hour',
                             '30000000-0000-4000-8000-000000000001') AS restored_version;
SELECT message_store.write_message('30000000-0000-4000-8000-000000000002', 'mdbdirect-1', 'Written', '{}');
SELECT count(DISTINCT tableoid) AS partitions FROM event_store.events WHERE stream_id = 'mdbdirect-1';
SELECT message_store.write_message('30000000-0000-4000-8000-000000000001', 'mdbdirect-2', 'Again', '{}');
SELECT message_store.write_message('30000000-0000-4000-8000-000000000002', 'mdbdirect-1', 'Again', '{}');
SELECT count(*) FROM event_store.events WHERE event_type = 'Again';
-- a caller without SELECT on the log: the query's permission error, nothing written
CREATE ROLE es_direct_mdb_writer;
GRANT USAGE ON SCHEMA event_store, message_store TO es_direct_mdb_writer;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA event_store, message_store TO es_direct_mdb_writer;
GRANT USAGE ON SEQUENCE event_store.global_position_seq TO es_direct_mdb_writer;
GRANT INSERT ON event_store.events TO es_direct_mdb_writer;
GRANT SELECT, INSERT, UPDATE ON event_store.streams TO es_direct_mdb_writer;
SET ROLE es_direct_mdb_writer;
\set VERBOSITY terse
SELECT message_store.write_message('30000000-0000-4000-8000-000000000003', 'mdbdirect-1', 'NoSelect', '{}');
\set VERBOSITY default
RESET ROLE;
SELECT count(*) FROM event_store.events WHERE event_type = 'NoSelect';

-- 9. A default or an identity on a column of the log sends appends to the
-- statement, which writes what an INSERT naming the log's columns (all but
-- tags) writes: the default of tags is filled in for an untagged event,
-- alone (new stream or not) or in a batch (always the statement); that of
-- metadata is not (the column is named: NULL stays NULL).  In a database
-- of its own.
\c :orig_db
CREATE DATABASE es_append_direct_fallback;
\c es_append_direct_fallback
SET client_min_messages = warning;
CREATE EXTENSION event_store;
RESET client_min_messages;
-- the stream row agrees with the stream's last event
CREATE FUNCTION stream_agrees(s text) RETURNS TABLE (version bigint, row_agrees boolean)
LANGUAGE sql AS $$
    SELECT st.version,
           st.version = e.stream_version AND st.last_position = e.global_position
           AND st.updated_at = e.recorded_at
      FROM event_store.streams st,
           LATERAL (SELECT * FROM event_store.events x WHERE x.stream_id = st.stream_id
                     ORDER BY x.stream_version DESC LIMIT 1) e
     WHERE st.stream_id = s
$$;
SELECT event_store.append_event('dflt-1', 'Opened', '{}');
ALTER TABLE event_store.events ALTER COLUMN tags SET DEFAULT ARRAY['x'];
ALTER TABLE event_store.events ALTER COLUMN metadata SET DEFAULT '{"by": "default"}';
SELECT event_store.append_event('dflt-1', 'Noted', '{}');
SELECT event_store.append_event('dflt-2', 'Opened', '{}');
SELECT event_store.append_event('dflt-1', 'Tagged', '{}', tags => ARRAY['t']);
SELECT event_store.append_event('dflt-1', 'WithMetadata', '{}', '{"by": "caller"}');
SELECT event_store.append('dflt-1', ARRAY[event_store.event('Batch', '{}'), event_store.event('Batch', '{}')]);
SELECT stream_id, stream_version, event_type, metadata, tags
  FROM event_store.events WHERE stream_id LIKE 'dflt-%' ORDER BY global_position;
SELECT * FROM stream_agrees('dflt-1');
SELECT * FROM stream_agrees('dflt-2');
ALTER TABLE event_store.events ALTER COLUMN tags DROP DEFAULT;
ALTER TABLE event_store.events ALTER COLUMN metadata DROP DEFAULT;
-- no default left on the log or its partitions: NULL again
SELECT count(*) AS defaults_left FROM pg_attribute
 WHERE attrelid IN (SELECT 'event_store.events'::regclass
                    UNION ALL SELECT partition FROM event_store.partition_info)
   AND attnum > 0 AND atthasdef
   AND attname <> 'schema_version';  -- (the log's own default, 1.11)
SELECT event_store.append_event('dflt-1', 'NoDefault', '{}');
SELECT event_store.append_event('dflt-3', 'NoDefault', '{}');
SELECT stream_id, stream_version, metadata, tags FROM event_store.events
 WHERE event_type = 'NoDefault' ORDER BY global_position;
-- An identity on global_position: BY DEFAULT gives way to the store's own
-- positions (its sequence is never drawn from); ALWAYS refuses the value
-- the statement names (428C9), on an existing and on a new stream, with
-- nothing written.
ALTER TABLE event_store.events ALTER COLUMN global_position ADD GENERATED BY DEFAULT AS IDENTITY;
SELECT max(global_position) AS before_identity FROM event_store.events \gset
SELECT event_store.append_event('dflt-1', 'Identity', '{}');
SELECT event_store.append_event('dflt-4', 'Identity', '{}');
SELECT stream_id, stream_version, global_position > :before_identity AS later_position
  FROM event_store.events WHERE event_type = 'Identity' ORDER BY global_position;
SELECT pg_sequence_last_value(pg_get_serial_sequence('event_store.events', 'global_position'))
       AS identity_drawn;
SELECT * FROM stream_agrees('dflt-1');
ALTER TABLE event_store.events ALTER COLUMN global_position SET GENERATED ALWAYS;
\set VERBOSITY sqlstate
SELECT event_store.append_event('dflt-1', 'Always', '{}');
SELECT event_store.append_event('dflt-5', 'Always', '{}');
\set VERBOSITY default
SELECT count(*) AS always_events FROM event_store.events WHERE event_type = 'Always';
SELECT event_store.stream_version('dflt-1') AS dflt_1, event_store.stream_version('dflt-5') AS dflt_5;
ALTER TABLE event_store.events ALTER COLUMN global_position DROP IDENTITY;
SELECT count(*) AS identities_left FROM pg_attribute
 WHERE attrelid IN (SELECT 'event_store.events'::regclass
                    UNION ALL SELECT partition FROM event_store.partition_info)
   AND attnum > 0 AND attidentity <> '';
SELECT event_store.append_event('dflt-1', 'AfterIdentity', '{}');
SELECT * FROM stream_agrees('dflt-1');
-- A default on the streams table: the statement names every column of a
-- new stream's row, so it never applies.
ALTER TABLE event_store.streams ALTER COLUMN category SET DEFAULT 'defaulted';
SELECT event_store.append_event('sdflt-1', 'Opened', '{}');
SELECT event_store.append_event('sdflt-1', 'Again', '{}');
SELECT stream_id, category, version FROM event_store.streams WHERE stream_id = 'sdflt-1';
ALTER TABLE event_store.streams ALTER COLUMN category DROP DEFAULT;

-- 10. A CHECK constraint on the streams table (the direct update would not
-- check it): appends go through the statement.  An append that breaks it,
-- to an existing stream or creating one, fails (23514) with nothing
-- written; one that keeps it works.  NOT VALID, so that a stream made
-- before it can break it.
CREATE FUNCTION try_append(s text, t text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE code text; tab text; con text;
BEGIN
    RETURN 'version ' || event_store.append_event(s, t, '{}');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS code = RETURNED_SQLSTATE, tab = TABLE_NAME, con = CONSTRAINT_NAME;
    RETURN format('%s on %s (%s)', code, tab, con);
END $$;
CREATE VIEW check_streams AS
    SELECT s AS stream_id, event_store.stream_version(s) AS version,
           (SELECT count(*) FROM event_store.events e WHERE e.stream_id = s) AS events
      FROM unnest(ARRAY['check-1', 'check-2', 'check-this-stream-id-is-far-too-long',
                        'check-this-new-stream-id-is-too-long']) s;
SELECT event_store.append_event('check-this-stream-id-is-far-too-long', 'Opened', '{}');
SELECT event_store.append_event('check-1', 'Opened', '{}');
ALTER TABLE event_store.streams ADD CONSTRAINT t_short CHECK (length(stream_id) < 30) NOT VALID;
SELECT * FROM check_streams;
SELECT try_append('check-this-stream-id-is-far-too-long', 'TooLong');
SELECT try_append('check-this-new-stream-id-is-too-long', 'TooLong');
SELECT * FROM check_streams;
SELECT count(*) AS too_long_events FROM event_store.events WHERE event_type = 'TooLong';
-- at top level too, the transaction's earlier append going with it
BEGIN;
SELECT event_store.append_event('check-1', 'Lost', '{}');
\set VERBOSITY sqlstate
SELECT event_store.append_event('check-this-stream-id-is-far-too-long', 'TooLong', '{}');
\set VERBOSITY default
ROLLBACK;
SELECT * FROM check_streams;
-- appends that keep it
SELECT event_store.append_event('check-1', 'Fits', '{}');
SELECT event_store.append_event('check-2', 'Fits', '{}');
SELECT * FROM check_streams;
SELECT * FROM stream_agrees('check-1');
SELECT * FROM stream_agrees('check-2');
ALTER TABLE event_store.streams DROP CONSTRAINT t_short;
SELECT event_store.append_event('check-this-stream-id-is-far-too-long', 'Allowed', '{}');
SELECT * FROM check_streams;
\c :orig_db
DROP DATABASE es_append_direct_mdb;
DROP DATABASE es_append_direct_fallback;
DROP ROLE es_direct_mdb_writer;
DROP ROLE es_direct_writer;
DROP ROLE es_direct_nostreams;
