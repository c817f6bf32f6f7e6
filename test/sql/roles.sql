-- Roles and privileges (1.5): what PUBLIC, a reader, a writer and an admin
-- can and cannot do; reducers run as the caller, projection handlers (since
-- 1.11) as the role that registered them.
-- In a database of its own (the log is append-only).
\set own_db es_roles_test
\set own_db_extension 'event_store VERSION ''1.5'''
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
\set VERBOSITY terse

-- Runs a statement as the current role; 'ok: <first column>' or
-- '<SQLSTATE>: <message>'.
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

-- The three roles exist, nest, and cannot log in.
SELECT rolname, rolcanlogin, rolsuper, rolcreaterole, rolcreatedb
  FROM pg_roles WHERE rolname LIKE 'event\_store\_%' ORDER BY rolname;
SELECT pg_has_role('event_store_writer', 'event_store_reader', 'MEMBER') AS writer_reads,
       pg_has_role('event_store_admin', 'event_store_writer', 'MEMBER') AS admin_writes,
       pg_has_role('event_store_reader', 'event_store_writer', 'MEMBER') AS reader_writes;

-- PUBLIC gets nothing: no function, no table, not the schema.
SELECT count(*) AS public_executable
  FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
  JOIN pg_extension x ON x.oid = d.refobjid AND x.extname = 'event_store'
 WHERE has_function_privilege('public', p.oid, 'EXECUTE');
SELECT count(*) AS public_relations
  FROM pg_class c WHERE c.relnamespace = 'event_store'::regnamespace
   AND (has_table_privilege('public', c.oid, 'SELECT,INSERT,UPDATE,DELETE,TRUNCATE,REFERENCES,TRIGGER')
        OR (c.relkind = 'S' AND has_sequence_privilege('public', c.oid, 'USAGE,SELECT,UPDATE')));
SELECT has_schema_privilege('public', 'event_store', 'USAGE') AS public_schema_usage;

-- Every SECURITY DEFINER function pins search_path to pg_catalog, pg_temp.
SELECT p.oid::regprocedure AS security_definer, p.proconfig
  FROM pg_proc p WHERE p.pronamespace = 'event_store'::regnamespace AND p.prosecdef ORDER BY 1::text;
-- Folds, appends and projection dispatch are not SECURITY DEFINER: reducers
-- and user triggers run as the caller (handlers, since 1.11, as their
-- registrar: projection.c switches to it for each call).
SELECT p.proname, p.prosecdef FROM pg_proc p
 WHERE p.pronamespace = 'event_store'::regnamespace
   AND p.proname IN ('fold', 'fold_to_version', 'fold_bitemporal', 'take_snapshot', 'state_as_of',
                     'append', 'append_event', 'append_all', 'append_if', '_dispatch_projections',
                     'run_projection', 'rebuild_projection')
 ORDER BY 1;

-- Login roles for the test (cluster-wide: dropped at the end).
CREATE ROLE es_t_nobody;
CREATE ROLE es_t_reader IN ROLE event_store_reader;
CREATE ROLE es_t_writer IN ROLE event_store_writer;
CREATE ROLE es_t_admin IN ROLE event_store_admin;

-- A reducer of the user's: it reports the role it runs as, and a table
-- only the admin may read.
CREATE TABLE public.secrets (s text);
INSERT INTO public.secrets VALUES ('top secret');
GRANT SELECT ON public.secrets TO es_t_admin;
CREATE FUNCTION public.who_folds(state text, e event_store.events) RETURNS text
LANGUAGE sql AS $$ SELECT current_user::text $$;
CREATE FUNCTION public.peek(state text, e event_store.events) RETURNS text
LANGUAGE sql AS $$ SELECT s FROM public.secrets $$;
-- A projection handler that records who ran it.
CREATE TABLE public.handled (by_role text, stream_id text, version bigint);
CREATE FUNCTION public.record_handler(e event_store.events) RETURNS void
LANGUAGE sql AS $$ INSERT INTO public.handled VALUES (current_user, e.stream_id, e.stream_version) $$;
GRANT INSERT, SELECT ON public.handled TO es_t_writer;

SELECT event_store.append_event('acct-1', 'Opened', '{"owner": "ada"}');

-- A role with no grants can do nothing.
SET ROLE es_t_nobody;
SELECT try($$SELECT count(*) FROM event_store.read_stream('acct-1')$$) AS nobody_read_stream;
SELECT try($$SELECT count(*) FROM event_store.events$$) AS nobody_select_events;
SELECT try($$SELECT event_store.append_event('acct-1', 'X', '{}')$$) AS nobody_append;
SELECT try($$SELECT event_store.state_as_of('acct-1')$$) AS nobody_state;
RESET ROLE;
-- Not even with USAGE on the schema, which alone grants nothing else.
GRANT USAGE ON SCHEMA event_store TO es_t_nobody;
SET ROLE es_t_nobody;
SELECT try($$SELECT count(*) FROM event_store.read_stream('acct-1')$$) AS nobody_read_stream;
SELECT try($$SELECT count(*) FROM event_store.events$$) AS nobody_select_events;
SELECT try($$SELECT event_store.append_event('acct-1', 'X', '{}')$$) AS nobody_append;
SELECT try($$SELECT event_store.state_as_of('acct-1')$$) AS nobody_state;
SELECT try($$SELECT event_store.jsonb_merge_patch('{}', '{}')$$) AS nobody_merge_patch;
RESET ROLE;
REVOKE USAGE ON SCHEMA event_store FROM es_t_nobody;

-- Reader: reads and folds; appends, writes and maintenance are refused.
SET ROLE es_t_reader;
SELECT try($$SELECT count(*) FROM event_store.read_stream('acct-1')$$) AS read_stream;
SELECT try($$SELECT count(*) FROM event_store.read_stream_backward('acct-1')$$) AS read_stream_backward;
SELECT try($$SELECT count(*) FROM event_store.read_all()$$) AS read_all;
SELECT try($$SELECT count(*) FROM event_store.read_category('acct')$$) AS read_category;
SELECT try($$SELECT count(*) FROM event_store.read_by_tags('{x}')$$) AS read_by_tags;
SELECT try($$SELECT event_store.stream_version('acct-1')$$) AS stream_version;
SELECT try($$SELECT event_store.state_as_of('acct-1')$$) AS state_as_of;
SELECT try($$SELECT event_store.fold('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'acct-1')$$) AS fold_builtin;
SELECT try($$SELECT event_store.fold('public.who_folds(text,event_store.events)', NULL::text, 'acct-1')$$) AS fold_runs_as;
SELECT try($$SELECT event_store.fold('public.peek(text,event_store.events)', NULL::text, 'acct-1')$$) AS fold_cannot_peek;
SELECT try($$SELECT count(*) FROM event_store.feed_status$$) AS feed_status;
SELECT try($$SELECT count(*) FROM event_store.partition_info$$) AS partition_info;
SELECT try($$SELECT count(*) FROM event_store.streams$$) AS select_streams;
SELECT try($$SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 1}')$$) AS append_event;
SELECT try($$SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{}')])$$) AS append;
SELECT try($$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('acct-1', NULL, ARRAY[event_store.event('D', '{}')])::event_store.stream_append])$$) AS append_all;
SELECT try($$SELECT event_store.append_if(ARRAY[event_store.event('D', '{}', tags => '{t}')], 'acct-1', NULL, '{t}', 0)$$) AS append_if;
SELECT try($$INSERT INTO event_store.events SELECT * FROM event_store.events$$) AS insert_events;
SELECT try($$UPDATE event_store.streams SET version = 0$$) AS update_streams;
SELECT try($$SELECT event_store.set_partition_interval('1 day')$$) AS set_partition_interval;
SELECT try($$SELECT event_store.premake_partitions()$$) AS premake_partitions;
SELECT try($$SELECT event_store.take_snapshot('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'acct-1')$$) AS take_snapshot;
SELECT try($$SELECT event_store.drop_snapshots()$$) AS drop_snapshots;
SELECT try($$SELECT event_store.set_snapshot_policy('event_store.count_by_type(jsonb,event_store.events)', 1)$$) AS set_snapshot_policy;
SELECT try($$SELECT event_store.create_projection('p', 'public.record_handler(event_store.events)')$$) AS create_projection;
SELECT try($$SELECT event_store._create_partition_for(now())$$) AS create_partition;
RESET ROLE;

-- Writer: also appends (all four functions), without direct writes.
SET ROLE es_t_writer;
SELECT try($$SELECT event_store.append_event('acct-1', 'Deposited', '{"amount": 5}', expected_version => 1)$$) AS append_event;
SELECT try($$SELECT event_store.append('acct-1', ARRAY[event_store.event('Deposited', '{"amount": 7}')], 2)$$) AS append;
SELECT try($$SELECT string_agg(stream_id || '@' || version, ',') FROM event_store.append_all(ARRAY[ROW('acct-1', 3, ARRAY[event_store.event('Withdrawn', '{"amount": 2}')])::event_store.stream_append, ROW('acct-2', 0, ARRAY[event_store.event('Opened', '{}')])::event_store.stream_append])$$) AS append_all;
SELECT try($$SELECT event_store.append_if(ARRAY[event_store.event('Reserved', '{}', tags => '{seat:1A}')], 'acct-2', NULL, '{seat:1A}', 0)$$) AS append_if;
SELECT try($$SELECT event_store.append_event('acct-1', 'Deposited', '{}', expected_version => 1)$$) AS stale_version;
SELECT try($$SELECT event_store.state_as_of('acct-1')$$) AS state_as_of;
SELECT try($$INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data, event_id, recorded_at, occurred_at, transaction_id) VALUES (999, 'acct-1', 99, 'Forged', '{}', gen_random_uuid(), '2000-01-01', '2000-01-01', pg_current_xact_id())$$) AS forge_event;
SELECT try($$INSERT INTO event_store.streams VALUES ('forged', 'forged', 1, now(), now(), 1, 1)$$) AS forge_stream;
SELECT try($$UPDATE event_store.streams SET version = 1 WHERE stream_id = 'acct-1'$$) AS rewind_stream;
SELECT try($$DELETE FROM event_store.streams$$) AS delete_streams;
SELECT try($$UPDATE event_store.events SET data = '{}'$$) AS update_events;
SELECT try($$DELETE FROM event_store.events$$) AS delete_events;
SELECT try($$TRUNCATE event_store.events$$) AS truncate_events;
SELECT regexp_replace(try(format('INSERT INTO %s SELECT * FROM event_store.events LIMIT 1', (SELECT partition FROM event_store.partition_ranges() LIMIT 1))), 'events_p\w+', 'events_p...') AS insert_partition;
SELECT try($$SELECT setval('event_store.global_position_seq', 1)$$) AS setval;
SELECT try($$SELECT event_store.set_premake_partitions(3)$$) AS set_premake;
SELECT try($$SELECT event_store.drop_snapshots()$$) AS drop_snapshots;
SELECT try($$SELECT event_store.subscribe('s')$$) AS subscribe;
RESET ROLE;

-- Admin: maintenance, snapshots, projections; still never rewrites the log.
SET ROLE es_t_admin;
SELECT try($$SELECT event_store.set_partition_interval('1 month')$$) AS set_partition_interval;
SELECT try($$SELECT event_store.set_premake_partitions(1)$$) AS set_premake;
SELECT try($$SELECT event_store.premake_partitions()$$) AS premake_partitions;
SELECT try($$SELECT event_store.set_snapshot_policy('event_store.count_by_type(jsonb,event_store.events)', 2)$$) AS set_snapshot_policy;
SELECT try($$SELECT event_store.take_snapshot('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'acct-1')$$) AS take_snapshot;
SELECT try($$SELECT event_store.drop_snapshots('acct-1')$$) AS drop_snapshots;
SELECT try($$SELECT event_store.fold('public.peek(text,event_store.events)', NULL::text, 'acct-1')$$) AS fold_admin_peeks;
SELECT try($$SELECT event_store.create_projection('who_handles', 'public.record_handler(event_store.events)')$$) AS create_projection;
SELECT try($$SELECT event_store.subscribe('audit')$$) AS subscribe;
SELECT try($$UPDATE event_store.events SET data = '{}'$$) AS update_events;
SELECT try($$DELETE FROM event_store.events$$) AS delete_events;
SELECT try($$TRUNCATE event_store.events$$) AS truncate_events;
SELECT try($$UPDATE event_store.streams SET version = 0$$) AS update_streams;
RESET ROLE;

-- The inline projection handler runs as its registrar, never as the
-- appending writer (1.11; this database's SQL is 1.5, which does not record
-- registrars: the handler's owner stands in, as the update to 1.11 records
-- for existing projections; handler_privileges.sql tests 1.11) ...
SET ROLE es_t_writer;
SELECT try($$SELECT event_store.append_event('acct-3', 'Opened', '{}')$$) AS append_with_projection;
RESET ROLE;
SELECT * FROM public.handled ORDER BY stream_id, version;
-- ... so a writer without INSERT on the handler's table still appends: the
-- handler's own rights count.
REVOKE INSERT ON public.handled FROM es_t_writer;
SELECT count(*) AS events_before FROM event_store.events \gset
SET ROLE es_t_writer;
SELECT try($$SELECT event_store.append_event('acct-4', 'Opened', '{}')$$) AS append_without_handler_privilege;
RESET ROLE;
SELECT count(*) - :events_before AS events_added, (SELECT count(*) FROM event_store.streams WHERE stream_id = 'acct-4') AS acct_4_streams
  FROM event_store.events;
SELECT event_store.drop_projection('who_handles');

-- Reader as subscription consumer: poll and ack.
SET ROLE es_t_reader;
SELECT try($$SELECT count(*) FROM event_store.poll('audit')$$) AS poll;
SELECT try($$SELECT event_store.ack('audit', 2)$$) AS ack;
RESET ROLE;

-- The log is intact: versions contiguous, streams agree.
SELECT stream_id, array_agg(stream_version ORDER BY stream_version) AS versions,
       (SELECT version FROM event_store.streams s WHERE s.stream_id = e.stream_id) AS stream_row_version
  FROM event_store.events e GROUP BY stream_id ORDER BY stream_id;

-- Roles are cluster-wide: a second database reuses them.
\c :orig_db
CREATE DATABASE es_roles_test2;
\c es_roles_test2
SET client_min_messages = warning;
CREATE EXTENSION event_store VERSION '1.4';
ALTER EXTENSION event_store UPDATE TO '1.5';
RESET client_min_messages;
SELECT count(*) AS roles FROM pg_roles WHERE rolname IN ('event_store_reader', 'event_store_writer', 'event_store_admin');
SELECT has_function_privilege('event_store_writer', 'event_store.append_event(text,text,jsonb,jsonb,bigint,uuid,timestamptz,text[])', 'EXECUTE') AS writer_appends,
       has_function_privilege('event_store_reader', 'event_store.append_event(text,text,jsonb,jsonb,bigint,uuid,timestamptz,text[])', 'EXECUTE') AS reader_appends,
       has_function_privilege('public', 'event_store.read_all(bigint,int)', 'EXECUTE') AS public_reads;

\c :orig_db
DROP DATABASE es_roles_test;
DROP DATABASE es_roles_test2;
DROP ROLE es_t_nobody, es_t_reader, es_t_writer, es_t_admin;
