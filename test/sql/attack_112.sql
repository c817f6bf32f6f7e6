-- Issue 25 follow-up: attacks on what is new in 1.12 (scavenge, upcasting
-- per column, the projection workers' SQL face), each shown refused or
-- harmless.  docs/security.md, "1.12 attack surface".  In a database of
-- its own (partitions in the past, a tablespace).
SELECT current_database() AS orig_db \gset
CREATE DATABASE es_attack_112;
\c es_attack_112
SET client_min_messages = warning;
CREATE EXTENSION event_store;
RESET client_min_messages;
\set VERBOSITY terse

CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
BEGIN
    EXECUTE q;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || regexp_replace(msg, 'events_p[0-9_]+', 'events_pN', 'g');
END
$$;

CREATE ROLE es_a112_reader IN ROLE event_store_reader;
CREATE ROLE es_a112_admin IN ROLE event_store_admin;
CREATE ROLE es_a112_partowner;
CREATE SCHEMA a112 AUTHORIZATION es_a112_admin;

-- 1. An upcaster's set_config() outlived the call.  A LANGUAGE sql
-- upcaster that calls only built-in functions ran in the light frame
-- (user id switched, settings not undone), so an admin's upcaster could
-- leave a search_path of its choosing in the session that read the event:
-- a superuser's, whose next unqualified name then resolved in the admin's
-- schema.  Now set_config() and the other routes below take the full
-- frame, which undoes every setting.
SET ROLE es_a112_admin;
CREATE FUNCTION a112.upc(d jsonb) RETURNS jsonb LANGUAGE sql VOLATILE AS $$
    SELECT d OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('path',
        pg_catalog.set_config('search_path', 'a112, pg_catalog', false))
$$;
SELECT event_store.register_upcaster('A112Leak', 1, 'a112.upc(jsonb)'::regprocedure);
SELECT event_store.set_event_schema('A112Leak', 2);
RESET ROLE;
SELECT event_store.append_event('a112leak-1', 'A112Leak', '{"n": 1}', '{"$schema_version": 1}') IS NOT NULL AS appended;
SET search_path = public;
-- the upcaster ran (as the admin, in its frame) ...
SELECT data, schema_version FROM event_store.read_stream('a112leak-1');
SELECT data FROM event_store.read_all(0, 100) WHERE stream_id = 'a112leak-1';
-- ... and the superuser's search_path is its own
SHOW search_path;
SELECT current_user = session_user AS same_user;
RESET search_path;
-- The same through routes a check of the functions alone does not see: a
-- domain's CHECK (user code run by a built-in coercion) and SQL text run
-- by query_to_xml().  A type of the user's, a subquery or a built-in that
-- runs SQL text makes a step take the full frame; a light step that
-- changes search_path anyway fails (ES020) and the change is rolled back.
SET ROLE es_a112_admin;
CREATE FUNCTION a112.leaky_check(j jsonb) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_catalog.set_config('search_path', 'a112, pg_catalog', false);
    RETURN true;
END
$$;
CREATE DOMAIN a112.leaky_jsonb AS jsonb CHECK (a112.leaky_check(VALUE));
CREATE FUNCTION a112.upc_domain(d jsonb) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT (d OPERATOR(pg_catalog.||) '{"domain": true}')::a112.leaky_jsonb::jsonb
$$;
CREATE FUNCTION a112.upc_xml(d jsonb) RETURNS jsonb LANGUAGE sql VOLATILE AS $$
    SELECT d OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object('xml', pg_catalog.query_to_xml(
        'SELECT pg_catalog.set_config(''search_path'', ''a112, pg_catalog'', false) AS p', false, false, '')::text)
$$;
SELECT event_store.register_upcaster('A112Domain', 1, 'a112.upc_domain(jsonb)'::regprocedure);
SELECT event_store.set_event_schema('A112Domain', 2);
SELECT event_store.register_upcaster('A112Xml', 1, 'a112.upc_xml(jsonb)'::regprocedure);
SELECT event_store.set_event_schema('A112Xml', 2);
RESET ROLE;
SELECT event_store.append_event('a112leak-2', 'A112Domain', '{"n": 2}', '{"$schema_version": 1}') IS NOT NULL AS appended;
SELECT event_store.append_event('a112leak-3', 'A112Xml', '{"n": 3}', '{"$schema_version": 1}') IS NOT NULL AS appended;
SET search_path = public;
SELECT data FROM event_store.read_stream('a112leak-2');
SHOW search_path;
SELECT data ? 'xml' AS upcast FROM event_store.read_stream('a112leak-3');
SHOW search_path;
RESET search_path;

-- 2. scavenge() ran the admin's settings as the log's owner.  Closed
-- partitions with events restored into them, then streams that hide some.
SELECT event_store.ensure_partitions('2020-01-01', '2020-03-01') >= 2 AS made;
SELECT partition AS jan FROM event_store.partition_ranges() WHERE '2020-01-15' >= range_start AND '2020-01-15' < range_end \gset
SELECT partition AS feb FROM event_store.partition_ranges() WHERE '2020-02-15' >= range_start AND '2020-02-15' < range_end \gset
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data, metadata,
                                event_id, recorded_at, occurred_at, transaction_id)
SELECT nextval('event_store.global_position_seq'), m || '-' || s, v, 'Tick', jsonb_build_object('v', v),
       NULL, gen_random_uuid(), t + (s * 10 + v) * interval '1 minute', t, pg_current_xact_id()
  FROM (VALUES ('jan', '2020-01-10'::timestamptz), ('feb', '2020-02-10'::timestamptz)) x(m, t),
       generate_series(1, 3) s, generate_series(1, 4) v;
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, split_part(stream_id, '-', 1), max(stream_version), min(recorded_at), max(recorded_at),
       min(global_position), max(global_position)
  FROM event_store.events WHERE stream_id NOT LIKE '$%' AND stream_id NOT LIKE 'a112%' GROUP BY stream_id;
SELECT event_store.truncate_stream('jan-1', 3);
SELECT event_store.truncate_stream('feb-1', 3);

-- 2a. default_tablespace: the new partition and its indexes were created
-- as the owner with the admin's default_tablespace, in a tablespace the
-- admin may not create in (the class of the retention row trigger, 1.11).
-- Now scavenge() runs with default_tablespace = '' (and search_path =
-- pg_catalog, pg_temp): the partition stays where it was.
SET allow_in_place_tablespaces = on;
CREATE TABLESPACE es_a112_ts LOCATION '';
RESET allow_in_place_tablespaces;
SELECT has_tablespace_privilege('es_a112_admin', 'es_a112_ts', 'CREATE') AS admin_may_create_there;
SET ROLE es_a112_admin;
SET default_tablespace = es_a112_ts;
SET search_path = a112, event_store;
SELECT event_store.scavenge(:'jan') AS removed_jan;
SHOW default_tablespace;
SHOW search_path;
RESET default_tablespace;
RESET search_path;
RESET ROLE;
SELECT count(*) AS in_attackers_tablespace
  FROM pg_class c JOIN pg_tablespace t ON t.oid = c.reltablespace
 WHERE t.spcname = 'es_a112_ts';
SELECT count(*) AS jan_events, min(stream_version) FILTER (WHERE stream_id = 'jan-1') AS jan1_first
  FROM ONLY :jan;

-- 2b. An index name carrying a statement.  copy_shape() cut
-- pg_get_indexdef() at its first " USING ", which a quoted name may
-- contain, and ran the rest as the log's owner: a role the owner gave a
-- partition to (it may then index it) became superuser.  Now the exact
-- prefix is replaced, and every generated statement must be one.
ALTER TABLE :feb OWNER TO es_a112_partowner;
GRANT USAGE, CREATE ON SCHEMA event_store TO es_a112_partowner;
GRANT CREATE ON DATABASE es_attack_112 TO es_a112_partowner;
SET ROLE es_a112_partowner;
SELECT public.try(format('CREATE INDEX %I ON %s (stream_id)',
    'x USING btree ((1)); ALTER ROLE es_a112_partowner SUPERUSER; --', :'feb')) AS crafted_index;
-- 2c. An expression index with a function of the partition's owner.
-- The copy was indexed while the log's owner owned it, and CREATE INDEX
-- evaluates expressions as the table's owner: the function ran as the
-- log's owner.  Now the copy gets its owner first.
CREATE SCHEMA a112p;
CREATE TABLE a112p.calls (by_user text);
CREATE FUNCTION a112p.g() RETURNS void LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO a112p.calls VALUES (current_user);
    BEGIN
        EXECUTE 'ALTER ROLE es_a112_partowner CREATEROLE';
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
END
$$;
CREATE FUNCTION a112p.f(t text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM a112p.g();
    RETURN t;
END
$$;
SELECT public.try(format('CREATE INDEX a112_expr ON %s (a112p.f(stream_id))', :'feb')) AS expression_index;
RESET ROLE;
SELECT DISTINCT by_user FROM a112p.calls;
TRUNCATE a112p.calls;
SET ROLE es_a112_admin;
SELECT event_store.scavenge(:'feb') AS removed_feb;
RESET ROLE;
SELECT rolsuper AS partowner_superuser, rolcreaterole AS partowner_createrole
  FROM pg_roles WHERE rolname = 'es_a112_partowner';
-- the expression ran again for the copy's index, as the partition's owner
SELECT DISTINCT by_user FROM a112p.calls;
SELECT count(*) AS expression_index_kept FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = :'feb'::regclass AND c.relname = 'a112_expr';
-- the copy kept the crafted index (its name, its definition) and the owner
SELECT c.relname, pg_get_indexdef(c.oid) ~ 'USING btree \(stream_id\)' AS same_definition
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE i.indrelid = :'feb'::regclass AND c.relname LIKE 'x USING%';
SELECT pg_get_userbyid(relowner) AS feb_owner FROM pg_class WHERE oid = :'feb'::regclass;
SELECT count(*) AS feb_events FROM ONLY :feb;

-- 2d. Row-level security on a partition.  The copy reads the partition as
-- the log's owner; a non-superuser owner (superusers bypass policies)
-- with FORCE ROW LEVEL SECURITY and a policy hiding a stream made the copy
-- miss that stream's events, and the swap dropped them: events that no
-- deletion hid, erased by the owner, the audit record counting only the
-- hidden ones.  Now scavenge() runs with row_security = off: 42501,
-- nothing written.
SELECT event_store.ensure_partitions('2019-12-01', '2020-01-01') >= 1 AS made;
SELECT partition AS dec FROM event_store.partition_ranges() WHERE '2019-12-15' >= range_start AND '2019-12-15' < range_end \gset
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data, metadata,
                                event_id, recorded_at, occurred_at, transaction_id)
SELECT nextval('event_store.global_position_seq'), 'dec-' || s, v, 'Tick', jsonb_build_object('v', v),
       NULL, gen_random_uuid(), '2019-12-10'::timestamptz + (s * 10 + v) * interval '1 minute', '2019-12-10',
       pg_current_xact_id()
  FROM generate_series(1, 2) s, generate_series(1, 4) v;
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, 'dec', max(stream_version), min(recorded_at), max(recorded_at), min(global_position), max(global_position)
  FROM event_store.events WHERE stream_id LIKE 'dec-%' GROUP BY stream_id;
SELECT event_store.truncate_stream('dec-1', 3);
CREATE ROLE es_a112_logowner IN ROLE event_store_admin;
GRANT USAGE, CREATE ON SCHEMA event_store TO es_a112_logowner;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA event_store TO es_a112_logowner;
ALTER TABLE event_store.events OWNER TO es_a112_logowner;
ALTER TABLE :dec OWNER TO es_a112_logowner;
SET ROLE es_a112_logowner;
ALTER TABLE :dec ENABLE ROW LEVEL SECURITY;
ALTER TABLE :dec FORCE ROW LEVEL SECURITY;
CREATE POLICY a112_hide ON :dec USING (stream_id <> 'dec-2');
RESET ROLE;
SELECT stream_id, count(*) FROM ONLY :dec GROUP BY 1 ORDER BY 1;
SET ROLE es_a112_admin;
SELECT public.try(format('SELECT event_store.scavenge(%L)', :'dec')) AS scavenge_under_policy;
RESET ROLE;
SELECT stream_id, count(*) FROM ONLY :dec GROUP BY 1 ORDER BY 1;
SELECT count(*) AS dec_audit_records FROM event_store.events
 WHERE stream_id = '$audit-scavenge' AND data->>'partition' = :'dec';

-- 3. The per-column upcasting functions, with hand-built input, as a
-- reader: no crash, no XX000, a clear answer or error.  _upcast_data() of
-- a chain whose step takes the whole event was XX000 ("an upcaster of the
-- event row needs the row"); now 22023 naming the step.
CREATE FUNCTION public.a112_whole(e event_store.events) RETURNS jsonb LANGUAGE sql STABLE
    AS $$ SELECT e.data || '{"whole": true}' $$;
SELECT event_store.register_upcaster('A112Whole', 1, 'public.a112_whole(event_store.events)'::regprocedure);
SELECT event_store.set_event_schema('A112Whole', 2);
SET ROLE es_a112_reader;
SELECT event_store._upcast_kind('A112Whole', 1) AS whole_kind;
SELECT public.try($$SELECT event_store._upcast_data('A112Whole', 1, '{}', 's', 1)$$) AS whole_data;
SELECT event_store._upcast_kind('NoSuchType', 1) AS kind,
       event_store._upcast_type('NoSuchType', -5) AS type,
       event_store._upcast_version('NoSuchType', 2147483647) AS version;
SELECT event_store._upcast_kind(NULL, 1) IS NULL AS kind_null,
       event_store._upcast_type('T', NULL) IS NULL AS type_null;
SELECT event_store._upcast_data('NoSuchType', 1, '{"a": 1}', 's-1', 1) AS data_unchanged;
SELECT event_store._upcast_data(NULL, NULL, NULL, NULL, NULL) AS data_nulls;
SELECT event_store._upcast_data('A112Leak', -1, '[1, 2]', NULL, -1) AS data_below_chain;
SELECT event_store._upcast_data('A112Leak', 2147483647, '{}', NULL, NULL) AS data_above_chain;
-- the upcaster's own check on what it returns: its SQLSTATE, not XX000
SELECT public.try($$SELECT event_store._upcast_data('A112Leak', 1, '[1, 2]', 'x', 1)$$) AS data_not_object;
SELECT event_store._streams_hiding(NULL, 10) AS hiding_all,
       event_store._streams_hiding(ARRAY['jan'], -1) AS hiding_negative,
       event_store._streams_hiding(ARRAY[NULL]::text[], 2147483646) AS hiding_null_category;
SELECT public.try($$SELECT event_store._streams_hiding(NULL, 2147483647)$$) AS hiding_max;
SELECT public.try($$SELECT event_store._streams_hiding(NULL, -2)$$) AS hiding_below;
SELECT count(*) >= 0 AS workers_listed FROM event_store.projection_workers();
SELECT public.try($$SELECT event_store.scavenge()$$) AS reader_scavenge;
RESET ROLE;

\c :orig_db
SET client_min_messages = warning;
DROP DATABASE es_attack_112;
DROP TABLESPACE es_a112_ts;
DROP ROLE es_a112_reader;
DROP ROLE es_a112_admin;
DROP ROLE es_a112_partowner;
DROP ROLE es_a112_logowner;
