-- Upcasters, 1.12 (issue 27): the reads upcast per column (no composite
-- per row), declarative steps rebuild the jsonb directly, a merge-patch
-- fold merges an upcast event's fields without building it, and type
-- filters match the type an event reads as.  Types and streams are named
-- upx* so that nothing else sees them.
\set VERBOSITY terse

-- Wide objects: every kind of value, and more than 32 keys (jsonb keeps an
-- offset instead of a length in every 32nd entry).
CREATE FUNCTION pg_temp.upx_wide(i int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_object_agg('f' || g,
             CASE g % 9
               WHEN 0 THEN to_jsonb(g * 1000003 + i)
               WHEN 1 THEN to_jsonb(g::numeric / 7 - i)
               WHEN 2 THEN to_jsonb(repeat('s', g + i % 5))
               WHEN 3 THEN to_jsonb(g % 2 = 0)
               WHEN 4 THEN 'null'::jsonb
               WHEN 5 THEN jsonb_build_array(g, 'a', jsonb_build_object('deep', i))
               WHEN 6 THEN jsonb_build_object('n', i, 'arr', jsonb_build_array(1.5, NULL, true))
               WHEN 7 THEN to_jsonb(''::text)
               ELSE '{}'::jsonb END)
        || jsonb_build_object('old', i, 'f1', 'renamed away', 'gone', i)
      FROM generate_series(1, 40) g
$$;
-- the two steps in SQL: step 1 renames old -> new and f1 -> g1, removes
-- gone and f2, sets added (a default); step 2 renames new -> newer, sets f3
-- (present: kept) and fresh
CREATE FUNCTION pg_temp.upx_step1(d jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (d - 'old' - 'f1' - 'gone' - 'f2')
           || jsonb_build_object('new', d -> 'old', 'g1', d -> 'f1', 'added', '{"x": [1, 2]}'::jsonb)
$$;
CREATE FUNCTION pg_temp.upx_step2(d jsonb) RETURNS jsonb LANGUAGE sql AS $$
    SELECT (d - 'new') || jsonb_build_object('newer', d -> 'new', 'fresh', 0)
$$;
SELECT event_store.register_upcaster('UpxWide', 1,
    '{"rename": {"old": "new", "f1": "g1"}, "remove": ["gone", "f2"], "set": {"added": {"x": [1, 2]}}}'::jsonb);
SELECT event_store.register_upcaster('UpxWide', 2, '{"rename": {"new": "newer"}, "set": {"f3": 0, "fresh": 0}}'::jsonb);
SELECT event_store.set_event_schema('UpxWide', 3);
-- 30 events at version 1, 2 and 3 (the producer says which)
SELECT event_store.append('upxwide-1', ARRAY(
    SELECT event_store.event('UpxWide',
             CASE i % 3 WHEN 0 THEN pg_temp.upx_wide(i)
                        WHEN 1 THEN pg_temp.upx_step1(pg_temp.upx_wide(i))
                        ELSE pg_temp.upx_step2(pg_temp.upx_step1(pg_temp.upx_wide(i))) END,
             jsonb_build_object('$schema_version', 1 + i % 3))
      FROM generate_series(0, 29) i), NULL) IS NOT NULL AS appended;
SELECT schema_version, count(*) FROM event_store.events WHERE stream_id = 'upxwide-1' GROUP BY 1 ORDER BY 1;
-- each read event is what the chain gives, looked up key by key too (the
-- lookups find keys through the written entries: order and offsets), and
-- of the size jsonb itself gives the same object (measured as read: the
-- table below compresses)
CREATE TEMP TABLE upx_check AS
SELECT r.stream_version, r.event_type, r.schema_version, r.data,
       pg_column_size(r.data) = pg_column_size(r.data::text::jsonb) AS canonical_size,
       CASE e.schema_version WHEN 1 THEN pg_temp.upx_step2(pg_temp.upx_step1(e.data))
                             WHEN 2 THEN pg_temp.upx_step2(e.data) ELSE e.data END AS expected
  FROM event_store.read_stream('upxwide-1') r
  JOIN event_store.events e ON e.stream_id = r.stream_id AND e.stream_version = r.stream_version;
SELECT count(*) AS events,
       bool_and(data = expected) AS equal,
       bool_and(schema_version = 3) AS at_version_3,
       bool_and(NOT data ? 'old' AND NOT data ? 'new' AND NOT data ? 'gone' AND data ? 'newer') AS renamed,
       bool_and(canonical_size) AS canonical_size,
       bool_and((SELECT bool_and(data -> k = expected -> k) FROM jsonb_object_keys(expected) k)) AS keys_found
  FROM upx_check;
SELECT data -> 'newer' AS newer, data -> 'added' AS added, data -> 'f3' AS f3, data -> 'f6' AS f6,
       data -> 'f5' AS f5, data -> 'f14' AS f14, data -> 'f40' AS f40
  FROM upx_check WHERE stream_version = 1;
-- backward, read_all, read_category: the same events
SELECT count(*) AS backward, bool_and(b.data = c.expected) AS equal
  FROM event_store.read_stream_backward('upxwide-1') b JOIN upx_check c USING (stream_version);
SELECT count(*) AS read_all, bool_and(a.data = c.expected AND a.schema_version = 3) AS equal
  FROM event_store.read_all((SELECT min(global_position) - 1 FROM event_store.events WHERE stream_id = 'upxwide-1')) a
  JOIN upx_check c USING (stream_version) WHERE a.stream_id = 'upxwide-1';
SELECT count(*) AS read_category, bool_and(a.data = c.expected) AS equal
  FROM event_store.read_category('upxwide') a JOIN upx_check c USING (stream_version);
-- the fold merges the upcast fields straight into its state: the same
-- state as merging the read events one by one
CREATE FUNCTION pg_temp.upx_fold_read(s text) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE st jsonb; r record;
BEGIN
    FOR r IN SELECT data FROM event_store.read_stream(s, 1, NULL) LOOP
        st := event_store.jsonb_merge_patch(coalesce(st, '{}'), r.data);
    END LOOP;
    RETURN st;
END $$;
SELECT event_store.state_as_of('upxwide-1') = pg_temp.upx_fold_read('upxwide-1') AS fold_equals_read,
       event_store.state_as_of('upxwide-1') ? 'newer' AS has_newer,
       event_store.state_as_of('upxwide-1') ? 'old' AS has_old;
SELECT event_store.state_bitemporal('upxwide-1', now(), now()) = pg_temp.upx_fold_read('upxwide-1') AS bitemporal_equals_read;

-- A type without upcasters, while others have chains: its rows come back
-- exactly as stored (each column passes the per-column functions, which
-- leave it alone).
SELECT event_store.append('upxplain-1', ARRAY(
    SELECT event_store.event('UpxPlain', jsonb_build_object('old', i, 'gone', i)) FROM generate_series(1, 5) i), NULL)
    IS NOT NULL AS appended;
SELECT event_store._upcasting() AS upcasting,
       (SELECT count(*) FROM (SELECT * FROM event_store.read_stream('upxplain-1')
                              EXCEPT ALL SELECT * FROM event_store.events WHERE stream_id = 'upxplain-1') d) AS differing,
       (SELECT count(*) FROM event_store.read_stream('upxplain-1')) AS read;

-- A step that takes the whole event (kind 2): that row goes through
-- event_store._upcast(); the columns agree with it.
CREATE FUNCTION upx_from_event(e event_store.events) RETURNS jsonb LANGUAGE sql
AS $$ SELECT e.data || jsonb_build_object('from_stream', e.stream_id, 'at', e.stream_version) $$;
SELECT event_store.register_upcaster('UpxEv', 1, '{"rename": {"a": "b"}}'::jsonb, new_event_type => 'UpxEv2');
SELECT event_store.register_upcaster('UpxEv2', 2, 'upx_from_event(event_store.events)'::regprocedure);
SELECT event_store.set_event_schema('UpxEv2', 3);
SELECT event_store.set_event_schema('UpxEv', 2);
SELECT event_store.append('upxev-1', ARRAY[event_store.event('UpxEv', '{"a": 1}', '{"$schema_version": 1}'),
                                            event_store.event('UpxPlain', '{"a": 2}')], NULL) IS NOT NULL AS appended;
SELECT event_store._upcast_kind('UpxEv', 1) AS kind_ev, event_store._upcast_kind('UpxWide', 1) AS kind_wide,
       event_store._upcast_kind('UpxWide', 3) AS kind_current, event_store._upcast_kind('UpxPlain', 1) AS kind_plain,
       event_store._upcast_type('UpxEv', 1) AS type_ev, event_store._upcast_version('UpxEv', 1) AS version_ev;
SELECT stream_version, event_type, schema_version, data FROM event_store.read_stream('upxev-1');
SELECT stream_version, event_type, schema_version, data FROM event_store.read_stream_backward('upxev-1');
SELECT (event_store._upcast(e)).data = r.data AS same_as_upcast
  FROM event_store.events e JOIN event_store.read_stream('upxev-1') r USING (stream_id, stream_version);
-- an upcaster that fails names the event, on the per-column path too (a
-- read that does not ask for data does not run it)
CREATE FUNCTION upx_fail(d jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'upx_fail: %', d; END $$;
SELECT event_store.register_upcaster('UpxFail', 1, 'upx_fail(jsonb)'::regprocedure);
SELECT event_store.set_event_schema('UpxFail', 2);
SELECT event_store.append('upxfail-1', ARRAY[event_store.event('UpxFail', '{"z": 1}', '{"$schema_version": 1}')], NULL)
    IS NOT NULL AS appended;
SELECT stream_version, event_type, schema_version FROM event_store.read_stream('upxfail-1');
\set VERBOSITY default
SELECT stream_version, data FROM event_store.read_stream('upxfail-1');
\set VERBOSITY terse

-- Type filters match the type an event reads as (item 2): OldT events
-- renamed to NewT by an upcaster are found by NewT, not by OldT.
SELECT event_store.register_upcaster('UpxOldT', 1, '{"rename": {"n": "num"}}'::jsonb, new_event_type => 'UpxNewT');
SELECT event_store.set_event_schema('UpxOldT', 2);
SELECT event_store.append('upxren-1', ARRAY[
    event_store.event('UpxOldT', '{"n": 1}', '{"$schema_version": 1}', tags => ARRAY['upx:tag']),
    event_store.event('UpxNewT', '{"num": 2}', tags => ARRAY['upx:tag'])], NULL) IS NOT NULL AS appended;
SELECT stream_version, event_type, schema_version, data FROM event_store.events WHERE stream_id = 'upxren-1' ORDER BY 1;
-- read_by_tags: events upcast; types by the new name find both
SELECT stream_version, event_type, data FROM event_store.read_by_tags(ARRAY['upx:tag'], ARRAY['UpxNewT']);
SELECT count(*) AS by_old_name FROM event_store.read_by_tags(ARRAY['upx:tag'], ARRAY['UpxOldT']);
SELECT stream_version, event_type, data FROM event_store.read_by_tags(ARRAY['upx:tag']);
-- append_if's condition_types agree with read_by_tags: an old producer's
-- UpxOldT event (read as UpxNewT) fails a condition on UpxNewT
SELECT max(global_position) AS upx_pos FROM event_store.events \gset
SELECT event_store.append('upxren-2', ARRAY[
    event_store.event('UpxOldT', '{"n": 3}', '{"$schema_version": 1}', tags => ARRAY['upx:tag'])], NULL)
    IS NOT NULL AS old_producer_appended;
SELECT event_store.append_if(ARRAY[event_store.event('UpxNewT', '{"num": 4}', tags => ARRAY['upx:tag'])], 'upxren-3',
                             ARRAY['UpxNewT'], ARRAY['upx:tag'], :upx_pos);
SELECT count(*) AS nothing_written FROM event_store.events WHERE stream_id = 'upxren-3';
-- a condition on the old name does not see it (it reads as UpxNewT)
SELECT event_store.append_if(ARRAY[event_store.event('UpxNewT', '{"num": 4}', tags => ARRAY['upx:tag'])], 'upxren-3',
                             ARRAY['UpxOldT'], ARRAY['upx:tag'], :upx_pos) IS NOT NULL AS appended;
-- the reducers by type see the new name (the fold upcasts first)
SELECT event_store.fold('event_store.count_by_type(jsonb, event_store.events)', '{}'::jsonb, 'upxren-1');
SELECT event_store.fold('event_store.last_by_type(jsonb, event_store.events)', '{}'::jsonb, 'upxren-1');
-- subscriptions (poll's event_types) and projections (inline and async)
SELECT event_store.subscribe('upx_sub_new', categories => ARRAY['upxren'], event_types => ARRAY['UpxNewT']);
SELECT event_store.subscribe('upx_sub_old', categories => ARRAY['upxren'], event_types => ARRAY['UpxOldT']);
SELECT stream_id, stream_version, event_type, data FROM event_store.poll('upx_sub_new');
SELECT count(*) AS polled_by_old_name FROM event_store.poll('upx_sub_old');
CREATE TABLE upx_seen (projection text, stream_id text, stream_version bigint, event_type text);
CREATE FUNCTION upx_rec_async(e event_store.events) RETURNS void LANGUAGE sql
AS $$ INSERT INTO upx_seen VALUES ('async', e.stream_id, e.stream_version, e.event_type) $$;
CREATE FUNCTION upx_rec_inline(e event_store.events) RETURNS void LANGUAGE sql
AS $$ INSERT INTO upx_seen VALUES ('inline', e.stream_id, e.stream_version, e.event_type) $$;
SELECT event_store.create_projection('upx_async', 'upx_rec_async(event_store.events)',
                                     event_types => ARRAY['UpxNewT'], categories => ARRAY['upxren'], mode => 'async');
SELECT event_store.create_projection('upx_inline', 'upx_rec_inline(event_store.events)',
                                     event_types => ARRAY['UpxNewT'], categories => ARRAY['upxren']);
SELECT event_store.create_projection('upx_inline_old', 'upx_rec_inline(event_store.events)',
                                     event_types => ARRAY['UpxOldT'], categories => ARRAY['upxren']);
SELECT event_store.append('upxren-4', ARRAY[
    event_store.event('UpxOldT', '{"n": 5}', '{"$schema_version": 1}')], NULL) IS NOT NULL AS appended;
SELECT event_store.rebuild_projection('upx_async');
SELECT * FROM upx_seen ORDER BY projection, stream_id, stream_version;
-- Message DB's get_last_stream_message(stream, type) (messagedb 1.4)
-- filters by the type the message reads as, and returns it upcast
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_store_messagedb CASCADE;
RESET client_min_messages;
SELECT count(*) AS by_old_name FROM message_store.get_last_stream_message('upxren-4', 'UpxOldT');
SELECT position, type, data FROM message_store.get_last_stream_message('upxren-4', 'UpxNewT');

-- Security (docs/security.md, "Upcasters").  Only admins register; an
-- upcaster function runs as its registrar inside a security-restricted
-- operation with search_path "$user", public, pg_temp, whoever reads.
CREATE ROLE upx_admin IN ROLE event_store_admin;
CREATE ROLE upx_reader IN ROLE event_store_reader;
CREATE ROLE upx_writer IN ROLE event_store_writer;
CREATE FUNCTION public.upx_helper() RETURNS text LANGUAGE sql AS $$ SELECT 'public helper' $$;
-- not inlinable (plpgsql): runs in the full frame
CREATE FUNCTION upx_who(d jsonb) RETURNS jsonb LANGUAGE plpgsql STABLE
AS $$ BEGIN RETURN d || jsonb_build_object('user', current_user, 'helper', upx_helper(),
                                           'path', current_setting('search_path')); END $$;
CREATE FUNCTION upx_temp(d jsonb) RETURNS jsonb LANGUAGE plpgsql
AS $$ BEGIN CREATE TEMP TABLE upx_planted (x int); RETURN d; END $$;
CREATE FUNCTION upx_setrole(d jsonb) RETURNS jsonb LANGUAGE plpgsql
AS $$ BEGIN SET ROLE upx_reader; RETURN d; END $$;
SELECT event_store.append('upxsec-1', ARRAY[event_store.event('UpxWho', '{"n": 1}')], NULL) IS NOT NULL AS appended;
SELECT event_store.append('upxsec-2', ARRAY[event_store.event('UpxTemp', '{"n": 2}'),
                                             event_store.event('UpxSetRole', '{"n": 3}')], NULL) IS NOT NULL AS appended;
-- a reader or a writer may not register (42501), nothing written
SET ROLE upx_reader;
SELECT event_store.register_upcaster('UpxWho', 1, 'upx_who(jsonb)'::regprocedure);
SET ROLE upx_writer;
SELECT event_store.register_upcaster('UpxWho', 1, '{"set": {"x": 1}}'::jsonb);
SELECT event_store.set_event_schema('UpxWho', 2);
RESET ROLE;
SELECT count(*) AS nothing_registered FROM event_store.upcasters WHERE event_type = 'UpxWho';
-- an admin registers; a forged registered_by in a direct insert is
-- replaced by the writing role
SET ROLE upx_admin;
SELECT event_store.register_upcaster('UpxWho', 1, 'upx_who(jsonb)'::regprocedure);
INSERT INTO event_store.upcasters (event_type, from_version, upcaster, registered_by)
VALUES ('UpxTemp', 1, 'public.upx_temp(jsonb)', 'postgres');
SELECT event_store.register_upcaster('UpxSetRole', 1, 'upx_setrole(jsonb)'::regprocedure);
SELECT event_store.set_event_schema(t, 2) FROM unnest(ARRAY['UpxWho', 'UpxTemp', 'UpxSetRole']) t;
RESET ROLE;
SELECT event_type, registered_by FROM event_store.upcasters WHERE event_type LIKE 'UpxWho' OR event_type LIKE 'UpxTemp' OR event_type LIKE 'UpxSetRole' ORDER BY 1;
-- the reader's (and a superuser's) read runs it as upx_admin, with the
-- fixed search_path: a helper planted on the reader's search_path is not
-- called
CREATE SCHEMA upx_evil;
CREATE FUNCTION upx_evil.upx_helper() RETURNS text LANGUAGE sql AS $$ SELECT 'planted helper' $$;
GRANT USAGE ON SCHEMA upx_evil TO PUBLIC;
SET ROLE upx_reader;
SET search_path = upx_evil, public;
SELECT data FROM event_store.read_stream('upxsec-1', 1, 1);
SELECT current_setting('search_path') AS reader_path_after;
RESET search_path;
RESET ROLE;
SELECT data ->> 'user' AS superuser_read_runs_as FROM event_store.read_stream('upxsec-1', 1, 1);
SELECT event_store.state_as_of('upxsec-1') ->> 'user' AS fold_runs_as;
-- an upcaster may not leave anything behind that would run as the reader
-- (no temporary objects, no SET ROLE): the read fails, nothing is created
SELECT data FROM event_store.read_stream('upxsec-2', 1, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM event_store.read_stream('upxsec-2', 2, 1);
\echo :LAST_ERROR_SQLSTATE
SELECT to_regclass('pg_temp.upx_planted') IS NULL AS nothing_planted, current_user = session_user AS same_user;
-- revoking the registrar's EXECUTE stops the step (42501) at the next load
REVOKE EXECUTE ON FUNCTION upx_who(jsonb) FROM PUBLIC;
SET ROLE upx_reader;
SELECT data FROM event_store.read_stream('upxsec-1', 1, 1);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
