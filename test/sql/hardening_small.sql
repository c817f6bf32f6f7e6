-- Issue 25, item 11 and the "Smaller" list: the table owner's writes to
-- event_store.streams and the position sequence; clear errors for bad
-- input; grants that match the docs; LOCK and partition creation by
-- writers; operators planted on the caller's search_path.  Every refusal
-- shows its SQLSTATE and that nothing was written.  In a database of its
-- own.
\set own_db es_hardening_small
\set own_db_extension 'event_store_messagedb CASCADE'
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)
SET timezone = 'UTC';
\set VERBOSITY terse

-- '<SQLSTATE>: <message>' or 'ok: <first column>'; with_hint adds the hint.
CREATE FUNCTION public.try(q text, with_hint boolean DEFAULT false) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
    hint text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || CASE WHEN with_hint AND hint <> '' THEN ' (hint: ' || hint || ')' ELSE '' END;
END
$$;
GRANT EXECUTE ON FUNCTION public.try(text, boolean) TO PUBLIC;

-- What is stored, to compare before and after every refusal.
CREATE FUNCTION public.state() RETURNS text LANGUAGE sql AS $$
    SELECT format('events=%s streams=%s versions=%s partitions=%s settings=%s retention=%s',
                  (SELECT count(*) FROM event_store.events),
                  (SELECT count(*) FROM event_store.streams),
                  (SELECT string_agg(stream_id || ':' || version, ',' ORDER BY stream_id) FROM event_store.streams),
                  (SELECT count(*) FROM event_store.partition_ranges()),
                  (SELECT coalesce(string_agg(name || '=' || value, ',' ORDER BY name), '-') FROM event_store.settings),
                  (SELECT count(*) FROM event_store.retention))
$$;
GRANT EXECUTE ON FUNCTION public.state() TO PUBLIC;

SELECT event_store.append_event('acct-1', 'Opened', '{}');
SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 5}');
SELECT state() AS before \gset
SELECT :'before' AS before;
-- (failed appends burn positions, so the sequence is compared on its own)
SELECT format('%s %s %s', last_value, increment_by, cache_size) AS seq_before
  FROM pg_sequences WHERE schemaname = 'event_store' AND sequencename = 'global_position_seq' \gset

------------------------------------------------------------------------------
-- Item 11: the owner (here a superuser) cannot rewrite, remove or truncate
-- stream rows, nor restart the position sequence, nor switch the guard off.
------------------------------------------------------------------------------
SELECT try($$UPDATE event_store.streams SET version = 1 WHERE stream_id = 'acct-1'$$, true) AS owner_update;
SELECT try($$DELETE FROM event_store.streams$$) AS owner_delete;
SELECT try($$TRUNCATE event_store.streams$$) AS owner_truncate;
SELECT try($$INSERT INTO event_store.streams VALUES ('acct-1', 'acct', 9, now(), now(), 1, 1)
            ON CONFLICT (stream_id) DO UPDATE SET version = 9$$) AS owner_upsert;
SELECT try($$ALTER SEQUENCE event_store.global_position_seq RESTART WITH 1$$) AS restart_sequence;
SELECT try($$ALTER SEQUENCE event_store.global_position_seq INCREMENT BY -1$$) AS sequence_increment;
SELECT try($$ALTER SEQUENCE event_store.global_position_seq CACHE 20$$) AS sequence_cache;
SELECT try($$ALTER TABLE event_store.streams DISABLE TRIGGER _direct_write_guard$$) AS disable_guard;
SELECT try($$ALTER TABLE event_store.streams DISABLE TRIGGER ALL$$) AS disable_all;
SELECT try($$ALTER TABLE event_store.streams ENABLE TRIGGER _direct_write_guard$$) AS guard_to_origin;
SELECT try($$DROP TRIGGER _direct_write_guard ON event_store.streams$$) AS drop_guard;
SELECT try($$DROP TRIGGER _direct_write_guard_truncate ON event_store.streams$$) AS drop_truncate_guard;
SELECT state() = :'before' AS nothing_written,
       (SELECT format('%s %s %s', last_value, increment_by, cache_size) FROM pg_sequences
         WHERE schemaname = 'event_store' AND sequencename = 'global_position_seq') = :'seq_before' AS sequence_unchanged,
       (SELECT string_agg(tgname || ':' || tgenabled::text, ',' ORDER BY tgname) FROM pg_trigger
         WHERE tgrelid = 'event_store.streams'::regclass) AS guard_triggers;
-- The owner still inserts (pg_restore, a subscription's initial copy) ...
BEGIN;
SELECT try($$INSERT INTO event_store.streams VALUES ('restored-1', 'restored', 3, now(), now(), 10, 12) RETURNING stream_id$$) AS owner_insert;
ROLLBACK;
-- ... and logical replication's apply (session_replication_role = replica,
-- superusers only) updates rows.
BEGIN;
SET LOCAL session_replication_role = replica;
SELECT try($$UPDATE event_store.streams SET updated_at = updated_at WHERE stream_id = 'acct-1' RETURNING stream_id$$) AS replica_update;
ROLLBACK;
-- An empty streams table may be truncated (parallel pg_restore does).
CREATE DATABASE es_hardening_small_empty;
ALTER DATABASE es_hardening_small_empty SET event_store.live_projections = off;  -- no live projection worker (issue 29)
\c es_hardening_small_empty
SET client_min_messages = warning;
CREATE EXTENSION event_store;
RESET client_min_messages;
TRUNCATE event_store.streams;
\c es_hardening_small
SET timezone = 'UTC';
\set VERBOSITY terse
DROP DATABASE es_hardening_small_empty;
-- Appends still work and versions continue.
SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 1}', expected_version => 2) AS version;

------------------------------------------------------------------------------
-- Clear errors for what the user must fix.
------------------------------------------------------------------------------
SELECT state() AS before \gset
-- A BEFORE INSERT trigger that returns NULL would drop the event silently.
CREATE FUNCTION public.skip_event() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
CREATE TRIGGER skip_event BEFORE INSERT ON event_store.events FOR EACH ROW EXECUTE FUNCTION public.skip_event();
SELECT try($$SELECT event_store.append_event('acct-1', 'Deposited', '{}')$$, true) AS skipped_existing_stream;
SELECT try($$SELECT event_store.append_event('acct-9', 'Opened', '{}')$$) AS skipped_new_stream;
SELECT try($$SELECT event_store.append('acct-1', ARRAY[event_store.event('A', '{}'), event_store.event('B', '{}')])$$) AS skipped_batch;
SELECT try($$SELECT message_store.write_message(gen_random_uuid()::varchar, 'acct-1', 'A', '{}')$$) AS skipped_write_message;
DROP TRIGGER skip_event ON event_store.events;
-- Timestamps at the end of the range, retention beyond it, premaking
-- beyond the cap.
SELECT try($$SELECT event_store._create_partition_for('294276-12-01+00')$$, true) AS partition_at_the_end;
SELECT try($$SELECT event_store.set_retention('100000000 years', 'archive')$$) AS retention_overflow;
SELECT try($$SELECT event_store.premake_partitions(100000)$$, true) AS premake_too_many;
SELECT try($$SELECT event_store.premake_partitions(1001)$$) AS premake_1001;
-- Settings written directly are checked like the set_* functions' input.
SELECT try($$INSERT INTO event_store.settings VALUES ('partition_interval', 'bogus')$$, true) AS bad_interval;
SELECT try($$INSERT INTO event_store.settings VALUES ('partition_interval', '1 month 2 days')$$) AS mixed_interval;
SELECT try($$INSERT INTO event_store.settings VALUES ('partition_interval', '0 seconds')$$) AS zero_interval;
SELECT try($$INSERT INTO event_store.settings VALUES ('premake_partitions', '100000')$$) AS premake_setting;
SELECT try($$INSERT INTO event_store.settings VALUES ('premake_partitions', 'many')$$) AS premake_text;
SELECT try($$INSERT INTO event_store.settings VALUES ('event_id_scope', 'galaxy')$$) AS bad_scope;
SELECT state() = :'before' AS nothing_written;
-- Valid values still go in (and the functions still work).
SELECT event_store.set_partition_interval('7 days'), event_store.set_premake_partitions(2);
SELECT name, value FROM event_store.settings ORDER BY name;
DELETE FROM event_store.settings WHERE name IN ('partition_interval', 'premake_partitions');

-- A non-superuser owner adding a partition without EXECUTE on the log's
-- trigger functions: the error names the function (PostgreSQL's names none).
CREATE ROLE es_hs_owner;
GRANT USAGE, CREATE ON SCHEMA event_store TO es_hs_owner;
ALTER TABLE event_store.events OWNER TO es_hs_owner;
SET ROLE es_hs_owner;
SELECT try($$CREATE TABLE event_store.events_manual PARTITION OF event_store.events
            FOR VALUES FROM ('2100-01-01') TO ('2100-02-01')$$, true) AS partition_of;
CREATE TABLE event_store.events_manual (LIKE event_store.events);
SELECT try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.events_manual
            FOR VALUES FROM ('2100-01-01') TO ('2100-02-01')$$) AS attach_partition;
DROP TABLE event_store.events_manual;
RESET ROLE;
ALTER TABLE event_store.events OWNER TO CURRENT_USER;
REVOKE USAGE, CREATE ON SCHEMA event_store FROM es_hs_owner;
SELECT state() = :'before' AS nothing_written;

------------------------------------------------------------------------------
-- Writers and readers: no LOCK that stops appends or acks; partitions
-- only for the current time.  Admins: up to 1000 partitions ahead.
------------------------------------------------------------------------------
CREATE ROLE es_hs_reader;
CREATE ROLE es_hs_writer;
CREATE ROLE es_hs_admin;
GRANT event_store_reader TO es_hs_reader;
GRANT event_store_writer TO es_hs_writer;
GRANT event_store_admin TO es_hs_admin;
SELECT state() AS before \gset
SET ROLE es_hs_writer;
BEGIN;
SELECT try($$LOCK TABLE event_store.streams IN ACCESS EXCLUSIVE MODE$$) AS writer_lock_streams;
ROLLBACK;
BEGIN;
SELECT try($$LOCK TABLE event_store.streams IN SHARE MODE$$) AS writer_share_lock;
ROLLBACK;
BEGIN;
SELECT try($$LOCK TABLE event_store.events IN ACCESS EXCLUSIVE MODE$$) AS writer_lock_events;
ROLLBACK;
SELECT try($$SELECT event_store._create_partition_for('2999-01-01+00')$$, true) AS writer_partition_ahead;
SELECT try($$SELECT event_store._create_partition_for('2000-01-01+00')$$) AS writer_partition_past;
SELECT try($$SELECT event_store._partition_ahead(now() + interval '2 years')$$) AS writer_admin_path;
SELECT try($$SELECT event_store._make_partition_for(now() + interval '2 years')$$) AS writer_owner_path;
RESET ROLE;
SET ROLE es_hs_reader;
BEGIN;
SELECT try($$LOCK TABLE event_store.subscription_checkpoints IN ACCESS EXCLUSIVE MODE$$) AS reader_lock_checkpoints;
ROLLBACK;
RESET ROLE;
SET ROLE es_hs_admin;
SELECT regexp_replace(try($$SELECT event_store._create_partition_for('2000-01-01+00')$$, true), '\(until [^)]*\)', '(until <now + 1001 widths>)') AS admin_partition_past;
SELECT regexp_replace(try($$SELECT event_store._create_partition_for('2999-01-01+00')$$), '\(until [^)]*\)', '(until <now + 1001 widths>)') AS admin_partition_far;
SELECT try($$INSERT INTO event_store.settings VALUES ('event_id_scope', 'store')$$, true) AS admin_writes_scope;
RESET ROLE;
SELECT state() = :'before' AS nothing_written;
-- What they may do still works: appends (which create the partition they
-- need), acks, the current partition, premaking ahead.
SET ROLE es_hs_writer;
SELECT event_store.append_event('acct-2', 'Opened', '{}') AS writer_appends;
SELECT event_store._create_partition_for(now()) IS NOT NULL AS writer_current_partition;
RESET ROLE;
SELECT event_store.subscribe('hs-sub');
SET ROLE es_hs_reader;
SELECT count(*) > 0 AS reader_polls FROM event_store.poll('hs-sub');
SELECT event_store.ack('hs-sub', 1) AS reader_acks;
RESET ROLE;
SET ROLE es_hs_admin;
SELECT event_store.premake_partitions(3) >= 0 AS admin_premakes;
SELECT event_store._create_partition_for(now() + interval '30 months') IS NOT NULL AS admin_partition_ahead;
RESET ROLE;
SELECT event_store.unsubscribe('hs-sub');

------------------------------------------------------------------------------
-- Grants that match the docs: admins run set_retention, apply_retention,
-- restore_partition and redact; drop_archived_partition stays the owner's.
------------------------------------------------------------------------------
SET ROLE es_hs_admin;
SELECT try($$SELECT event_store.set_retention('10 years', 'archive')$$) AS admin_set_retention;
SELECT try($$SELECT count(*) FROM event_store.apply_retention()$$) AS admin_apply_retention;
SELECT try($$SELECT event_store.restore_partition('events_p20000101_000000')$$) AS admin_restore_partition;
SELECT try($$SELECT event_store.redact('acct-404', 'test')$$) AS admin_redact;
SELECT try($$SELECT event_store.drop_archived_partition('events_p20000101_000000')$$) AS admin_drop_archived;
SELECT try($$SELECT event_store.set_retention(NULL, 'none')$$) AS admin_retention_off;
RESET ROLE;
SET ROLE es_hs_writer;
SELECT try($$SELECT event_store.set_retention('10 years', 'archive')$$) AS writer_set_retention;
SELECT try($$SELECT count(*) FROM event_store.apply_retention()$$) AS writer_apply_retention;
SELECT try($$SELECT event_store.redact('acct-1', 'test')$$) AS writer_redact;
RESET ROLE;
SELECT p.oid::regprocedure AS function, p.prosecdef AS security_definer,
       array_to_string(p.proconfig, ', ') AS config,
       has_function_privilege('event_store_admin', p.oid, 'EXECUTE') AS admin,
       has_function_privilege('event_store_writer', p.oid, 'EXECUTE') AS writer
  FROM pg_proc p
 WHERE p.oid IN ('event_store.set_retention(interval,text,name)'::regprocedure,
                 'event_store.apply_retention()'::regprocedure,
                 'event_store.restore_partition(text)'::regprocedure,
                 'event_store.drop_archived_partition(text)'::regprocedure,
                 'event_store.redact(text,text,text[])'::regprocedure,
                 'event_store._create_partition_for(timestamptz)'::regprocedure,
                 'event_store._partition_for_append(timestamptz)'::regprocedure,
                 'event_store._partition_ahead(timestamptz)'::regprocedure,
                 'event_store._make_partition_for(timestamptz)'::regprocedure)
 ORDER BY 1::text;

------------------------------------------------------------------------------
-- Operators planted on the caller's search_path are never called by the
-- Message DB reads (text = varchar was the exact match of an unqualified
-- "=" there) nor by the rebuild functions.
------------------------------------------------------------------------------
CREATE SCHEMA planted;
GRANT USAGE ON SCHEMA planted TO PUBLIC;
CREATE FUNCTION planted.eq_text_varchar(text, varchar) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted = (text, varchar) ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.=) $2::text; END $$;
CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = varchar, FUNCTION = planted.eq_text_varchar);
CREATE FUNCTION planted.eq_text(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted = (text, text) ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
CREATE OPERATOR planted.= (LEFTARG = text, RIGHTARG = text, FUNCTION = planted.eq_text);
CREATE FUNCTION planted.lt_int(int, int) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted < (int, int) ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.<) $2; END $$;
CREATE OPERATOR planted.< (LEFTARG = int, RIGHTARG = int, FUNCTION = planted.lt_int);
CREATE FUNCTION planted.plus_bigint(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS
$$ BEGIN RAISE WARNING 'planted + (bigint, bigint) ran as %', current_user; RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR planted.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = planted.plus_bigint);
-- The trap works on the caller's own SQL, even behind pg_catalog ...
SET search_path = public, planted;
SELECT 'a'::text = 'a'::varchar AS caught;
RESET search_path;
-- ... and with planted first, as a careless search_path might have it.
SELECT message_store.write_message('6f0c3f0e-0000-4000-8000-000000000001', 'mdb-1', 'Opened', '{}');
GRANT message_store TO es_hs_writer;
CREATE FUNCTION public.hs_handler(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT NULL $$;
SELECT event_store.create_projection('hs_proj', 'public.hs_handler(event_store.events)', categories => ARRAY['mdb'], mode => 'async');
SET ROLE es_hs_writer;
SET search_path = planted, pg_catalog, message_store, public;
SELECT type, position FROM get_stream_messages('mdb-1');
SELECT type, position FROM get_last_stream_message('mdb-1');
SELECT type, position FROM get_last_stream_message('mdb-1', 'Opened');
SELECT type, position FROM get_category_messages('mdb');
SELECT type, position FROM get_category_messages('mdb', 1, 10, NULL, 0, 1);
SELECT write_message('6f0c3f0e-0000-4000-8000-000000000002', 'mdb-1', 'Done', '{}', NULL, 0);
RESET search_path;
RESET ROLE;
SET ROLE es_hs_admin;
SET search_path = planted, pg_catalog, public;
SELECT event_store.rebuild_projection('hs_proj', 1000) AS rebuilt;
CALL event_store.rebuild_projection_in_batches('hs_proj', 1000);
RESET search_path;
RESET ROLE;
SELECT event_store.drop_projection('hs_proj');

\c :orig_db
DROP DATABASE es_hardening_small;
DROP ROLE es_hs_owner, es_hs_reader, es_hs_writer, es_hs_admin;
