-- Event schema evolution (issue 27): schema_version, upcasters, and every
-- read path returning events upcast to the current version of their type.
-- Types and streams here are named upc* so that nothing else sees them.
\set VERBOSITY default

-- Events written before any schema change are at version 1.
SELECT event_store.append('upcorder-1', ARRAY[
    event_store.event('UpcPlaced', '{"amount": 5, "cust": "ann"}'),
    event_store.event('UpcPlaced', '{"amount": 7, "cust": "bob", "legacy": true}')], NULL);
SELECT stream_version, event_type, data, schema_version FROM event_store.events
 WHERE stream_id = 'upcorder-1' ORDER BY 1;
-- a fold before any upcaster (and a snapshot of it)
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'upcorder-1');
SELECT event_store.state_as_of('upcorder-1');
-- Nothing to upcast yet: the reads run their 1.10 statements
-- (event_store._upcasting() is what they branch on, once per call).  A
-- generic plan prepared now upcasts once a chain applies (below): the
-- registry change invalidates it.
SELECT event_store._upcasting();
CREATE FUNCTION pg_temp.upc_plan(query text) RETURNS TABLE (upcasting_branch bool, one_time_filter bool)
LANGUAGE plpgsql AS $$
DECLARE
    plan text := '';
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (VERBOSE, COSTS OFF) ' || query LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN QUERY SELECT plan LIKE '%event_store._upcast(%', plan LIKE '%One-Time Filter%';
END
$$;
-- read_stream plans as in 1.10: no upcasting, no filter (the planner
-- support put 1.10's statement in its place)
SELECT * FROM pg_temp.upc_plan($$SELECT * FROM event_store.read_stream('upcorder-1')$$);
SELECT * FROM pg_temp.upc_plan($$SELECT * FROM event_store.read_stream_backward('upcorder-1')$$);
SET plan_cache_mode = force_generic_plan;
PREPARE upc_read AS
    SELECT stream_version, data, schema_version FROM event_store.read_stream('upcorder-1');
RESET plan_cache_mode;
EXECUTE upc_read;

-- A declarative step 1 -> 2 is registered; it applies once the current
-- version moves past it.
SELECT event_store.register_upcaster('UpcPlaced', 1,
    '{"rename": {"cust": "customer"}, "remove": ["legacy"], "set": {"currency": "EUR"}}'::jsonb);
SELECT event_store._upcasting();
SELECT stream_version, event_type, data, schema_version FROM event_store.read_stream('upcorder-1');
SELECT event_store.set_event_schema('UpcPlaced', 2);
SELECT event_store._upcasting();
EXECUTE upc_read;
DEALLOCATE upc_read;
SELECT * FROM pg_temp.upc_plan($$SELECT * FROM event_store.read_stream('upcorder-1')$$);
SELECT * FROM event_store.event_schemas WHERE event_type LIKE 'Upc%';

-- Every read path now returns version 2; the stored rows are unchanged.
SELECT stream_version, event_type, data, schema_version FROM event_store.read_stream('upcorder-1');
SELECT stream_version, event_type, data, schema_version FROM event_store.read_stream_backward('upcorder-1');
SELECT stream_version, data FROM event_store.read_category('upcorder', 0, 10);
SELECT stream_version, data FROM event_store.read_all(0, 100000) WHERE stream_id = 'upcorder-1';
SELECT stream_version, data, schema_version FROM event_store.events WHERE stream_id = 'upcorder-1' ORDER BY 1;
-- folds: the snapshot taken before the change is not used (the result
-- reflects the upcaster), and every fold function upcasts
SELECT event_store.state_as_of('upcorder-1');
SELECT event_store.state_bitemporal('upcorder-1', NULL, NULL);
SELECT event_store.fold('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'upcorder-1');
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb, event_store.events)', NULL::jsonb, 'upcorder-1', 1);
SELECT event_store.fold_bitemporal('event_store.last_by_type(jsonb, event_store.events)', NULL::jsonb, 'upcorder-1', NULL, NULL);
SELECT count(DISTINCT revision) AS revisions FROM event_store.snapshots WHERE stream_id = 'upcorder-1';

-- Appends stamp the current version; "$schema_version" in the metadata
-- names an older one (upcast on read like any other).
SELECT event_store.append('upcorder-1', ARRAY[
    event_store.event('UpcPlaced', '{"amount": 1, "customer": "cy", "currency": "USD"}'),
    event_store.event('UpcPlaced', '{"amount": 2, "cust": "di"}', '{"$schema_version": 1}')], 2);
SELECT event_store.append_event('upcorder-1', 'UpcPlaced', '{"amount": 3, "customer": "ed"}');
SELECT stream_version, schema_version, data FROM event_store.events WHERE stream_id = 'upcorder-1' ORDER BY 1;
SELECT stream_version, schema_version, data FROM event_store.read_stream('upcorder-1', 3);

-- A function step 2 -> 3 that renames the type.
CREATE FUNCTION upc_cents(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT data || jsonb_build_object('cents', (data->>'amount')::int * 100) $$;
SELECT event_store.register_upcaster('UpcPlaced', 2, 'upc_cents(jsonb)'::regprocedure, 'UpcCreated');
SELECT event_store.set_event_schema('UpcPlaced', 3);
SELECT stream_version, event_type, schema_version, data FROM event_store.read_stream('upcorder-1');
-- the renamed type continues with its own chain, from the version the
-- rename delivers (3); an event-form function step
CREATE FUNCTION upc_origin(event event_store.events) RETURNS jsonb LANGUAGE plpgsql STABLE
AS $$ BEGIN RETURN event.data || jsonb_build_object('origin', event.stream_id || '@' || event.stream_version); END $$;
SELECT event_store.register_upcaster('UpcCreated', 3, 'upc_origin(event_store.events)'::regprocedure);
SELECT event_store.set_event_schema('UpcCreated', 4);
SELECT stream_version, event_type, schema_version, data FROM event_store.read_stream('upcorder-1', 1, 2);
SELECT event_store.state_as_of('upcorder-1');

-- Inline and async projections get upcast events.
CREATE TABLE upc_seen (projection text, stream_version bigint, event_type text, schema_version int, data jsonb);
CREATE FUNCTION upc_record(e event_store.events) RETURNS void LANGUAGE sql
AS $$ INSERT INTO upc_seen VALUES ('async', e.stream_version, e.event_type, e.schema_version, e.data) $$;
CREATE FUNCTION upc_record_inline(e event_store.events) RETURNS void LANGUAGE sql
AS $$ INSERT INTO upc_seen VALUES ('inline', e.stream_version, e.event_type, e.schema_version, e.data) $$;
SELECT event_store.create_projection('upc_async', 'upc_record(event_store.events)',
                                     categories => ARRAY['upcorder'], mode => 'async');
SELECT event_store.create_projection('upc_inline', 'upc_record_inline(event_store.events)',
                                     categories => ARRAY['upcorder']);
SELECT event_store.append_event('upcorder-1', 'UpcPlaced', '{"amount": 4, "cust": "fay"}', '{"$schema_version": 1}');
SELECT event_store.rebuild_projection('upc_async');
SELECT * FROM upc_seen ORDER BY projection, stream_version;

-- poll
SELECT event_store.subscribe('upc_sub', categories => ARRAY['upcorder']);
SELECT stream_version, event_type, schema_version FROM event_store.poll('upc_sub', 3);

-- Message DB reads
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS event_store_messagedb CASCADE;
RESET client_min_messages;
SELECT position, type, data FROM message_store.get_stream_messages('upcorder-1', 0, 2);
SELECT position, type, data FROM message_store.get_category_messages('upcorder', 1, 2);
SELECT position, type, data FROM message_store.get_last_stream_message('upcorder-1');

-- Bad input: a clear error each, and nothing written.
SELECT event_store.register_upcaster('UpcGap', 1, '{"set": {"a": 1}}'::jsonb);
SELECT event_store.register_upcaster('UpcGap', 3, '{"set": {"c": 1}}'::jsonb);
CREATE TEMP TABLE upc_before AS SELECT * FROM event_store.upcasters;
CREATE TEMP TABLE upc_versions_before AS SELECT * FROM event_store.event_schema_versions;
-- a gap (steps from 1 and 3, none from 2)
SELECT event_store.set_event_schema('UpcGap', 4);
-- a chain that stops short
SELECT event_store.set_event_schema('UpcGap', 3);
-- lower than the current version
SELECT event_store.set_event_schema('UpcPlaced', 2);
SELECT event_store.set_event_schema('UpcPlaced', 0);
-- from_version < 1
SELECT event_store.register_upcaster('UpcPlaced', 0, '{"set": {"a": 1}}'::jsonb);
-- a step the current version depends on
SELECT event_store.unregister_upcaster('UpcPlaced', 1);
-- two upcasters for the same step
SELECT event_store.register_upcaster('UpcPlaced', 1, '{"set": {"a": 1}}'::jsonb);
-- wrong signatures
CREATE FUNCTION upc_wrong(data text) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
CREATE FUNCTION upc_wrong2(data jsonb) RETURNS text LANGUAGE sql AS $$ SELECT '' $$;
SELECT event_store.register_upcaster('UpcPlaced', 5, 'upc_wrong(text)'::regprocedure);
SELECT event_store.register_upcaster('UpcPlaced', 5, 'upc_wrong2(jsonb)'::regprocedure);
-- unknown transform keys and malformed transforms
SELECT event_store.register_upcaster('UpcPlaced', 5, '{"rename": {"a": "b"}, "copy": {"x": "y"}}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '{"rename": {"a": 1}}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '{"rename": {"a": "z", "b": "z"}}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '{"remove": "a"}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '{}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '[]'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, '{"merge": [1]}'::jsonb);
SELECT event_store.register_upcaster('UpcPlaced', 5, NULL::jsonb);
-- an admin's direct write goes through the same checks
INSERT INTO event_store.upcasters (event_type, from_version, transform) VALUES ('UpcPlaced', 0, '{"set": {"a": 1}}');
UPDATE event_store.event_schema_versions SET current_version = 1 WHERE event_type = 'UpcPlaced';
DELETE FROM event_store.upcasters WHERE event_type = 'UpcPlaced';
-- a bad "$schema_version" fails the append
SELECT event_store.append_event('upcorder-1', 'UpcPlaced', '{"amount": 9}', '{"$schema_version": 9}');
SELECT event_store.append_event('upcorder-1', 'UpcPlaced', '{"amount": 9}', '{"$schema_version": "1"}');
-- nothing was written
SELECT (SELECT count(*) FROM event_store.upcasters) - (SELECT count(*) FROM upc_before) AS new_steps,
       (SELECT count(*) FROM (SELECT * FROM event_store.event_schema_versions EXCEPT SELECT * FROM upc_versions_before) x) AS changed_versions,
       (SELECT version FROM event_store.streams WHERE stream_id = 'upcorder-1') AS stream_version;
-- registering from the current version is allowed; unregistering a step
-- at or above it too
SELECT event_store.register_upcaster('UpcCreated', 4, '{"set": {"v5": true}}'::jsonb);
SELECT event_store.unregister_upcaster('UpcCreated', 4);
SELECT event_store.unregister_upcaster('UpcCreated', 4);

-- An upcaster returning NULL or a non-object, or raising, fails the read
-- and names the event.
CREATE FUNCTION upc_null(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT NULL::jsonb $$;
CREATE FUNCTION upc_array(data jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '[1]'::jsonb $$;
CREATE FUNCTION upc_raise(data jsonb) RETURNS jsonb LANGUAGE plpgsql
AS $$ BEGIN RAISE EXCEPTION 'cannot upcast %', data->>'n'; END $$;
SELECT event_store.append_event('upcbad-1', 'UpcNull', '{"n": 1}');
SELECT event_store.append_event('upcbad-2', 'UpcArray', '{"n": 2}');
SELECT event_store.append_event('upcbad-3', 'UpcRaise', '{"n": 3}');
SELECT event_store.register_upcaster('UpcNull', 1, 'upc_null(jsonb)'::regprocedure);
SELECT event_store.register_upcaster('UpcArray', 1, 'upc_array(jsonb)'::regprocedure);
SELECT event_store.register_upcaster('UpcRaise', 1, 'upc_raise(jsonb)'::regprocedure);
SELECT event_store.set_event_schema(t, 2) FROM unnest(ARRAY['UpcNull', 'UpcArray', 'UpcRaise']) t;
-- (default verbosity: a LOCATION line would name C source lines, which
-- differ between majors; the SQLSTATE is echoed instead)
SELECT data FROM event_store.read_stream('upcbad-1');
\echo :LAST_ERROR_SQLSTATE
SELECT data FROM event_store.read_stream('upcbad-2');
\echo :LAST_ERROR_SQLSTATE
SELECT event_store.state_as_of('upcbad-3');
\echo :LAST_ERROR_SQLSTATE
-- the raw rows are still there
SELECT stream_id, data FROM event_store.events WHERE stream_id LIKE 'upcbad-%' ORDER BY 1;

-- Upcaster functions run as the role that registered them, never as the
-- reader: the registrar may read upc_rates, the reader may not.
CREATE ROLE upc_admin IN ROLE event_store_admin;
CREATE ROLE upc_reader IN ROLE event_store_reader;
CREATE TABLE upc_rates (currency text, rate numeric);
INSERT INTO upc_rates VALUES ('EUR', 2);
REVOKE ALL ON upc_rates FROM PUBLIC;
GRANT SELECT ON upc_rates TO upc_admin;
CREATE FUNCTION upc_rate(data jsonb) RETURNS jsonb LANGUAGE sql STABLE
AS $$ SELECT data || jsonb_build_object('rate', (SELECT r.rate FROM public.upc_rates r WHERE r.currency = 'EUR'),
                                        'by', current_user) $$;
SELECT event_store.append_event('upcrate-1', 'UpcRated', '{"n": 1}');
SET ROLE upc_reader;
SELECT event_store.register_upcaster('UpcRated', 1, '{"set": {"x": 1}}'::jsonb);  -- not an admin
SET ROLE upc_admin;
SELECT event_store.register_upcaster('UpcRated', 1, 'upc_rate(jsonb)'::regprocedure);
SELECT event_store.set_event_schema('UpcRated', 2);
SET ROLE upc_reader;
SELECT count(*) FROM upc_rates;
SELECT data FROM event_store.read_stream('upcrate-1');
SELECT event_store.state_as_of('upcrate-1');
RESET ROLE;
SELECT registered_by FROM event_store.upcasters WHERE event_type = 'UpcRated';

-- Property: random chains of declarative steps give what the same steps
-- written as SQL functions give (merge patches included).
SELECT setseed(0.27);
CREATE TABLE upc_prop_steps AS
SELECT s AS step,
       (ARRAY[
          jsonb_build_object('rename', jsonb_build_object('k' || (random() * 4)::int, 'k' || (random() * 4)::int + 5)),
          jsonb_build_object('remove', jsonb_build_array('k' || (random() * 8)::int)),
          jsonb_build_object('set', jsonb_build_object('k' || (random() * 8)::int, (random() * 100)::int)),
          jsonb_build_object('merge', jsonb_build_object('k' || (random() * 8)::int,
                                CASE WHEN random() < 0.3 THEN 'null'::jsonb
                                     ELSE jsonb_build_object('n', (random() * 9)::int) END))
        ])[1 + (random() * 3)::int] AS transform
  FROM generate_series(1, 12) s;
-- the SQL form of each step
CREATE FUNCTION upc_prop_apply(t jsonb, d jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE k text; v jsonb;
BEGIN
    IF t ? 'rename' THEN
        FOR k, v IN SELECT * FROM jsonb_each(t->'rename') LOOP
            IF d ? k THEN d := (d - k - (v #>> '{}')) || jsonb_build_object(v #>> '{}', d->k); END IF;
        END LOOP;
    END IF;
    IF t ? 'remove' THEN d := d - ARRAY(SELECT jsonb_array_elements_text(t->'remove')); END IF;
    IF t ? 'set' THEN
        FOR k, v IN SELECT * FROM jsonb_each(t->'set') LOOP
            IF NOT d ? k THEN d := d || jsonb_build_object(k, v); END IF;
        END LOOP;
    END IF;
    IF t ? 'merge' THEN d := event_store.jsonb_merge_patch(d, t->'merge'); END IF;
    RETURN d;
END $$;
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT * FROM upc_prop_steps ORDER BY step LOOP
        EXECUTE format('CREATE FUNCTION upc_prop_%s(data jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS %L',
                       r.step, format('SELECT upc_prop_apply(%L::jsonb, data)', r.transform));
    END LOOP;
END $$;
SELECT event_store.append('upcprop-decl', ARRAY(
    SELECT event_store.event('UpcPropDecl', jsonb_build_object('k0', i, 'k1', jsonb_build_object('n', i), 'k2', 'x', 'k3', i * 2))
      FROM generate_series(1, 20) i), NULL) IS NOT NULL AS appended;
SELECT event_store.append('upcprop-fn', ARRAY(
    SELECT event_store.event('UpcPropFn', jsonb_build_object('k0', i, 'k1', jsonb_build_object('n', i), 'k2', 'x', 'k3', i * 2))
      FROM generate_series(1, 20) i), NULL) IS NOT NULL AS appended;
SELECT count(*) AS registered
  FROM (SELECT event_store.register_upcaster('UpcPropDecl', step, transform),
               event_store.register_upcaster('UpcPropFn', step, format('upc_prop_%s(jsonb)', step)::regprocedure)
          FROM upc_prop_steps) r;
SELECT event_store.set_event_schema('UpcPropDecl', 13), event_store.set_event_schema('UpcPropFn', 13);
SELECT count(*) AS events,
       count(*) FILTER (WHERE d.data = f.data AND d.schema_version = 13 AND f.schema_version = 13) AS equal,
       count(*) FILTER (WHERE d.data <> (SELECT e.data FROM event_store.events e
                                          WHERE e.stream_id = 'upcprop-decl' AND e.stream_version = d.stream_version)) AS changed
  FROM event_store.read_stream('upcprop-decl') d
  JOIN event_store.read_stream('upcprop-fn') f USING (stream_version);
SELECT event_store.state_as_of('upcprop-decl') = event_store.state_as_of('upcprop-fn') AS same_state;

-- Issues 27, 28 and 29 together (the combined read functions at the end
-- of event_store--1.10--1.11.sql): a poll retry is upcast like a new
-- event, and a deleted stream's events stay hidden while upcasters apply.
SELECT event_store.subscribe('upclc', categories => ARRAY['upclc']);
SELECT event_store.append('upclc-1', ARRAY[event_store.event('UpcLc', '{"v": 1}')], NULL) IS NOT NULL AS appended;
SELECT event_store.append('upclc-2', ARRAY[event_store.event('UpcLc', '{"v": 2}')], NULL) IS NOT NULL AS appended;
SELECT event_store.register_upcaster('UpcLc', 1, '{"set": {"upcast": true}}'::jsonb);
SELECT event_store.set_event_schema('UpcLc', 2);
SELECT event_store._upcasting();
SELECT stream_id, data, schema_version FROM event_store.poll('upclc');
SELECT event_store.nack('upclc', (SELECT global_position FROM event_store.events WHERE stream_id = 'upclc-1'), 'later');
SELECT event_store.ack('upclc', (SELECT global_position FROM event_store.events WHERE stream_id = 'upclc-2'));
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second' WHERE name = 'upclc';
-- the retry, upcast
SELECT stream_id, data, schema_version FROM event_store.poll('upclc');
SELECT event_store.ack('upclc', (SELECT global_position FROM event_store.events WHERE stream_id = 'upclc-1'));
SELECT stream_id, data, schema_version FROM event_store.events WHERE stream_id LIKE 'upclc-%' ORDER BY 1;
-- delete upclc-2: hidden from every read, the rest still upcast
SELECT event_store.delete_stream('upclc-2');
SELECT count(*) AS forward FROM event_store.read_stream('upclc-2');
SELECT count(*) AS backward FROM event_store.read_stream_backward('upclc-2');
SELECT * FROM pg_temp.upc_plan($$SELECT * FROM event_store.read_stream('upclc-2')$$);
SELECT stream_id, data, schema_version FROM event_store.read_category('upclc');
SELECT stream_id, data, schema_version FROM event_store.read_all((SELECT min(global_position) - 1 FROM event_store.events WHERE stream_id LIKE 'upclc-%'))
 WHERE stream_id LIKE 'upclc-%';
SELECT stream_id, data, schema_version FROM event_store.read_stream('upclc-1');
SELECT stream_id, data, schema_version FROM event_store.read_stream_backward('upclc-1');
SELECT event_store.append('upclc-2', ARRAY[event_store.event('UpcLc', '{"v": 3}')], NULL) IS NOT NULL AS appended;
-- a new event of the deleted stream (stored at version 2): only it is polled
SELECT stream_id, data, schema_version FROM event_store.poll('upclc');
SELECT stream_version, data, schema_version FROM event_store.read_stream('upclc-2');
-- Message DB reads (messagedb 1.3): upclc-2's deleted event stays hidden,
-- the others are upcast, with a condition too (it sees the upcast data)
SELECT position, type, data FROM message_store.get_stream_messages('upclc-1');
SELECT position, type, data FROM message_store.get_stream_messages('upclc-2');
SELECT stream_name, data FROM message_store.get_category_messages('upclc');
SELECT position, data FROM message_store.get_last_stream_message('upclc-1');
SET message_store.sql_condition = on;
SELECT position, data FROM message_store.get_stream_messages('upclc-1', condition => $$data::jsonb ? 'upcast'$$);
SELECT stream_name, data FROM message_store.get_category_messages('upclc', condition => $$data::jsonb ? 'upcast'$$);
RESET message_store.sql_condition;
