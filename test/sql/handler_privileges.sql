-- Issue 25 item 2 (1.11): projection handlers, reset functions and
-- maintenance reducers never run with more rights than the role that
-- registered (or wrote) them.  1.10 ran handlers as the appender: redact()
-- appends as the log's owner and run_maintenance() as its caller, so an
-- admin's handler became a superuser's.  In a database of its own.
\set own_db es_handler_privileges_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)
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

CREATE ROLE es_hp_admin IN ROLE event_store_admin;
CREATE ROLE es_hp_writer IN ROLE event_store_writer;
CREATE SCHEMA hp AUTHORIZATION es_hp_admin;
-- The read model: who ran which handler.  The writer may not touch it.
CREATE TABLE public.who_ran (what text, by_role text, stream_id text);
GRANT INSERT ON public.who_ran TO es_hp_admin;

-- The attack: an admin's handler on the audit category tries to make the
-- admin a superuser, and records who it ran as.
SET ROLE es_hp_admin;
CREATE FUNCTION hp.escalate(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.who_ran VALUES ('escalate', current_user, e.stream_id);
    BEGIN
        EXECUTE 'ALTER ROLE es_hp_admin SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        INSERT INTO public.who_ran VALUES ('escalate refused', current_user, e.stream_id);
    END;
END
$$;
SELECT event_store.create_projection('escalate', 'hp.escalate(event_store.events)', categories => ARRAY['$audit']);
SELECT event_store.create_projection('escalate_async', 'hp.escalate(event_store.events)',
                                     categories => ARRAY['acct'], mode => 'async');
RESET ROLE;
SELECT name, mode, registered_by FROM event_store.projections ORDER BY name;

-- 1. Through redact(): its audit event is appended as the log's owner, the
-- handler still runs as the admin and is refused.
SET ROLE es_hp_writer;
SELECT event_store.append_event('acct-1', 'Opened', '{"owner": "ada"}');
RESET ROLE;
SELECT event_store.redact('acct-1', 'GDPR request');
SELECT rolsuper AS admin_is_superuser FROM pg_roles WHERE rolname = 'es_hp_admin';
SELECT what, by_role, stream_id FROM public.who_ran ORDER BY what;
TRUNCATE public.who_ran;

-- 2. Through run_maintenance() called by a superuser: the async handler
-- runs as the admin too.
SET client_min_messages = warning;
CALL event_store.run_maintenance();
RESET client_min_messages;
SELECT rolsuper AS admin_is_superuser FROM pg_roles WHERE rolname = 'es_hp_admin';
SELECT what, by_role, stream_id FROM public.who_ran ORDER BY what;
TRUNCATE public.who_ran;
SELECT event_store.drop_projection('escalate');
SELECT event_store.drop_projection('escalate_async');

-- 3. An inline handler runs as its registrar, not as the appending writer
-- (who may not even read the table it writes), with its own search_path:
-- the writer's temporary table of the same name is not reached (pg_temp
-- comes last), and a setting the handler changes is undone after it.
SET ROLE es_hp_admin;
CREATE FUNCTION hp.record(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO who_ran VALUES ('record', current_user, e.stream_id);
    PERFORM set_config('search_path', 'hp', false);
END
$$;
SELECT event_store.create_projection('record', 'hp.record(event_store.events)', categories => ARRAY['acct']);
RESET ROLE;
SET ROLE es_hp_writer;
CREATE TEMP TABLE who_ran (what text, by_role text, stream_id text);
SHOW search_path;
SELECT event_store.append_event('acct-2', 'Opened', '{}');
SHOW search_path;
SELECT count(*) AS in_writers_temp_table FROM pg_temp.who_ran;
SELECT try($$SELECT count(*) FROM public.who_ran$$) AS writer_reads_read_model;
DROP TABLE pg_temp.who_ran;
RESET ROLE;
SELECT what, by_role, stream_id FROM public.who_ran ORDER BY what;
TRUNCATE public.who_ran;
SELECT event_store.drop_projection('record');

-- A handler runs inside a security-restricted operation: it cannot leave
-- temporary objects (or SET ROLE) in the appender's session.  The append
-- fails and nothing of it is written.
SET ROLE es_hp_admin;
CREATE FUNCTION hp.plant(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    CREATE TEMP TABLE planted (x int);
END
$$;
SELECT event_store.create_projection('plant', 'hp.plant(event_store.events)', categories => ARRAY['acct']);
RESET ROLE;
SELECT count(*) AS events_before FROM event_store.events \gset
SET ROLE es_hp_writer;
SELECT try($$SELECT event_store.append_event('acct-3', 'Opened', '{}')$$) AS append_with_planting_handler;
RESET ROLE;
SELECT count(*) - :events_before AS events_added, event_store.stream_version('acct-3') AS acct_3_version
  FROM event_store.events;
SELECT event_store.drop_projection('plant');

-- 4. The registrar's rights are checked at run time: a revoked EXECUTE,
-- or a dropped registrar, stops the projection with a clear error, and
-- the append writes nothing.
CREATE FUNCTION public.guarded(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.who_ran VALUES ('guarded', current_user, e.stream_id)
$$;
REVOKE EXECUTE ON FUNCTION public.guarded(event_store.events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.guarded(event_store.events) TO es_hp_admin;
SET ROLE es_hp_admin;
SELECT event_store.create_projection('guarded', 'public.guarded(event_store.events)', categories => ARRAY['acct']);
RESET ROLE;
SET ROLE es_hp_writer;
SELECT event_store.append_event('acct-4', 'Opened', '{}');
RESET ROLE;
REVOKE EXECUTE ON FUNCTION public.guarded(event_store.events) FROM es_hp_admin;
SELECT count(*) AS events_before FROM event_store.events \gset
SET ROLE es_hp_writer;
SELECT try($$SELECT event_store.append_event('acct-4', 'Deposited', '{}')$$) AS append_after_revoke;
RESET ROLE;
SELECT count(*) - :events_before AS events_added FROM event_store.events;
SELECT event_store.drop_projection('guarded');

CREATE ROLE es_hp_gone IN ROLE event_store_admin;
GRANT INSERT ON public.who_ran TO es_hp_gone;
GRANT EXECUTE ON FUNCTION public.guarded(event_store.events) TO es_hp_gone;
SET ROLE es_hp_gone;
SELECT event_store.create_projection('orphan', 'public.guarded(event_store.events)', categories => ARRAY['acct']);
RESET ROLE;
REVOKE ALL ON public.who_ran FROM es_hp_gone;
REVOKE ALL ON FUNCTION public.guarded(event_store.events) FROM es_hp_gone;
DROP ROLE es_hp_gone;
SET ROLE es_hp_writer;
SELECT try($$SELECT event_store.append_event('acct-4', 'Deposited', '{}')$$) AS append_registrar_dropped;
RESET ROLE;
SELECT count(*) - :events_before AS events_added FROM event_store.events;
SELECT event_store.drop_projection('orphan');
SELECT what, by_role, stream_id FROM public.who_ran ORDER BY what;
TRUNCATE public.who_ran;

-- 5. No one names a more privileged registrar: whoever writes a registry
-- row becomes its registrar (the table's owner excepted: pg_restore).
SET ROLE es_hp_admin;
INSERT INTO event_store.projection_registry (name, handler, mode, registered_by)
VALUES ('forged', 'hp.record(event_store.events)', 'async', 'postgres');
SELECT name, registered_by FROM event_store.projection_registry WHERE name = 'forged';
UPDATE event_store.projection_registry SET registered_by = 'postgres' WHERE name = 'forged';
SELECT name, registered_by FROM event_store.projection_registry WHERE name = 'forged';
DELETE FROM event_store.projection_registry WHERE name = 'forged';
RESET ROLE;

-- 6. Handlers in temporary schemas are refused (42P13), by create_projection
-- and by the registry itself; nothing is registered.
SET ROLE es_hp_admin;
CREATE FUNCTION pg_temp.temp_handler(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION pg_temp.temp_reset() RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT regexp_replace(try($$SELECT event_store.create_projection('temp', 'pg_temp.temp_handler(event_store.events)')$$),
                      'pg_temp_\d+', 'pg_temp_N') AS temp_handler;
SELECT regexp_replace(try($$SELECT event_store.create_projection('temp', 'hp.record(event_store.events)',
                                                  reset => 'pg_temp.temp_reset()')$$),
                      'pg_temp_\d+', 'pg_temp_N') AS temp_reset;
SELECT regexp_replace(try(format($$INSERT INTO event_store.projection_registry (name, handler, mode) VALUES ('temp', %L, 'inline')$$,
                  'pg_temp.temp_handler(event_store.events)'::regprocedure::text)), 'pg_temp_\d+', 'pg_temp_N') AS temp_direct;
SELECT try($$INSERT INTO event_store.projection_registry (name, handler, mode) VALUES ('temp', 'PG_TEMP.temp_handler(event_store.events)', 'inline')$$) AS temp_alias;
RESET ROLE;
SELECT count(*) AS registered FROM event_store.projection_registry;
-- A temporary registration made before 1.11 (simulated with the check
-- disabled) no longer breaks other sessions' appends: it is ignored, with a
-- WARNING.
ALTER TABLE event_store.projection_registry DISABLE TRIGGER projection_registry_check;
-- (another session's temporary schema, as stored by create_projection)
INSERT INTO event_store.projection_registry (name, handler, mode, registered_by)
VALUES ('old_temp', 'pg_temp_999.old_temp(event_store.events)', 'inline', 'es_hp_admin');
INSERT INTO event_store.projection_checkpoints (name) VALUES ('old_temp');
ALTER TABLE event_store.projection_registry ENABLE TRIGGER projection_registry_check;
\c es_handler_privileges_test
\set VERBOSITY terse
SET ROLE es_hp_writer;
SELECT try($$SELECT event_store.append_event('acct-5', 'Opened', '{}')$$) AS append_beside_old_temp;
RESET ROLE;
SELECT event_store.drop_projection('old_temp');

-- 7. A rebuild calls the reset function as the registrar too, whoever
-- rebuilds (here a superuser).
SET ROLE es_hp_admin;
CREATE FUNCTION hp.reset_record() RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.who_ran VALUES ('reset', current_user, NULL)
$$;
CREATE FUNCTION hp.noop(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT event_store.create_projection('resettable', 'hp.noop(event_store.events)', mode => 'async',
                                     reset => 'hp.reset_record()');
RESET ROLE;
SET client_min_messages = warning;
SELECT event_store.rebuild_projection('resettable') > 0 AS rebuilt;
RESET client_min_messages;
SELECT what, by_role FROM public.who_ran ORDER BY what;
TRUNCATE public.who_ran;
SELECT event_store.drop_projection('resettable');

-- 8. Maintenance snapshots: a reducer the admin wrote and gave a snapshot
-- policy is not run by a superuser's run_maintenance() (WARNING, skipped).
SET ROLE es_hp_admin;
CREATE FUNCTION hp.count_reducer(state bigint, e event_store.events) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.who_ran VALUES ('reducer', current_user, e.stream_id);
    BEGIN
        EXECUTE 'ALTER ROLE es_hp_admin SUPERUSER';
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;
    END;
    RETURN coalesce(state, 0) + 1;
END
$$;
SELECT event_store.set_snapshot_policy('hp.count_reducer(bigint,event_store.events)', 1);
SELECT event_store.take_snapshot('hp.count_reducer(bigint,event_store.events)', NULL::bigint, 'acct-2') AS snapshot;
RESET ROLE;
SET ROLE es_hp_writer;
SELECT event_store.append_event('acct-2', 'Deposited', '{}');
RESET ROLE;
TRUNCATE public.who_ran;
SET client_min_messages = warning;
CALL event_store.run_maintenance();
RESET client_min_messages;
SELECT rolsuper AS admin_is_superuser FROM pg_roles WHERE rolname = 'es_hp_admin';
SELECT count(*) AS reducer_calls FROM public.who_ran;
SELECT count(*) AS snapshots FROM event_store.snapshots WHERE stream_id = 'acct-2';

\c :orig_db
DROP DATABASE es_handler_privileges_test;
DROP ROLE es_hp_admin;
DROP ROLE es_hp_writer;
