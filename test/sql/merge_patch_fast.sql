SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_merge_patch_fast_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
-- The fold applies event_store.merge_patch in place, on a tree kept for the
-- whole fold (src/merge_state.c), instead of calling the reducer per event.
-- Property: that fast path gives byte for byte what the reducer gives when
-- it is called per event.  The references take the generic path (the fold
-- does not recognise them, so it calls them per event):
--   generic_mp    an SQL reducer calling the RFC 7386 merge of two documents
--                 (jsonb_merge_patch) on each event's data;
--   generic_c_mp  the C function of event_store.merge_patch itself under
--                 another name: the very code the fold used to call per
--                 event, so its results can be compared byte for byte (the
--                 SQL function's results are repacked with short varlena
--                 headers when small, so only their values and text are
--                 compared).
CREATE FUNCTION generic_mp(s jsonb, e event_store.events) RETURNS jsonb
LANGUAGE sql IMMUTABLE
RETURN event_store.jsonb_merge_patch(s, e.data);
SELECT probin AS es_lib FROM pg_proc WHERE oid = 'event_store.merge_patch(jsonb,event_store.events)'::regprocedure \gset
CREATE FUNCTION generic_c_mp(s jsonb, e event_store.events) RETURNS jsonb
AS :'es_lib', 'es_merge_patch' LANGUAGE C IMMUTABLE;

-- Random patches, the same on every run (setseed).  Keys of several lengths
-- (jsonb orders keys by length, then bytewise), the empty key and a
-- multibyte one; values: JSON null (removes the key), integers, decimals with
-- trailing zeros, strings (empty too), booleans, arrays (of anything,
-- nested objects and nulls included: replaced whole), nested objects (merged
-- recursively, with nulls of their own).  Event data is always an object
-- (append refuses others); states that are not objects come from the
-- initial states further down.
CREATE FUNCTION pg_temp.rand_key() RETURNS text LANGUAGE sql AS $$
    SELECT (ARRAY['a', 'b', 'aa', 'ab', 'ba', 'k1', 'k2', 'k10', '', 'é', 'n', 'nested', 'long_key_name'])
           [1 + floor(random() * 13)::int]
$$;
CREATE FUNCTION pg_temp.rand_value(depth int) RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    r float8 := random();
BEGIN
    IF r < 0.18 THEN
        RETURN 'null';
    ELSIF r < 0.32 THEN
        RETURN to_jsonb(floor(random() * 1000)::int);
    ELSIF r < 0.40 THEN
        RETURN to_jsonb(round((random() * 100)::numeric, 2) * 1.0);
    ELSIF r < 0.50 THEN
        RETURN to_jsonb(substr(md5(random()::text), 1, floor(random() * 10)::int));
    ELSIF r < 0.56 THEN
        RETURN to_jsonb(random() < 0.5);
    ELSIF r < 0.68 OR depth >= 4 THEN
        IF depth >= 4 THEN
            RETURN to_jsonb(depth);
        END IF;
        RETURN (SELECT coalesce(jsonb_agg(pg_temp.rand_value(depth + 1)), '[]')
                  FROM generate_series(1, floor(random() * 4)::int));
    ELSE
        RETURN pg_temp.rand_object(depth + 1);
    END IF;
END $$;
CREATE FUNCTION pg_temp.rand_object(depth int) RETURNS jsonb LANGUAGE sql AS $$
    SELECT coalesce(jsonb_object_agg(pg_temp.rand_key(), pg_temp.rand_value(depth)), '{}')
      FROM generate_series(1, floor(random() * 5)::int)
$$;

-- 40 streams of 30 events; valid times (occurred_at) are shuffled, so
-- that bitemporal folds reorder the events.
SELECT setseed(0.42);
DO $$
BEGIN
    FOR i IN 1 .. 30 LOOP
        FOR s IN 1 .. 40 LOOP
            PERFORM event_store.append_event('mpf-' || s, 'Patched', pg_temp.rand_object(0),
                        occurred_at => timestamptz '2026-01-01' + make_interval(hours => floor(random() * 1000)::int));
        END LOOP;
    END LOOP;
END $$;

-- What the patches hold.
SELECT count(*) AS events,
       count(*) FILTER (WHERE data = '{}') AS empty,
       count(*) FILTER (WHERE data::text LIKE '%null%') AS with_nulls,
       count(*) FILTER (WHERE jsonb_path_exists(data, '$.* ? (@.type() == "object")')) AS with_nested_objects,
       count(*) FILTER (WHERE jsonb_path_exists(data, '$.* ? (@.type() == "array")')) AS with_arrays,
       count(*) FILTER (WHERE jsonb_path_exists(data, '$.*.* ? (@ == null)')) AS with_nested_removals,
       count(*) FILTER (WHERE data ? '') AS with_empty_key
  FROM event_store.events;

-- All paths at every version of every stream, from a NULL state: the same
-- value and text, and the same size as the C reducer's (the size of the
-- datum the fold returned, before the table may compress it).
CREATE TEMP TABLE by_version AS
SELECT stream_id, v, t, fast, generic, generic_c,
       pg_column_size(fast) AS fast_size, pg_column_size(generic_c) AS generic_c_size
  FROM (SELECT s.stream_id, e.stream_version AS v, e.recorded_at AS t,
               event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, s.stream_id, e.stream_version) AS fast,
               event_store.fold_to_version('generic_mp(jsonb,event_store.events)', NULL::jsonb, s.stream_id, e.stream_version) AS generic,
               event_store.fold_to_version('generic_c_mp(jsonb,event_store.events)', NULL::jsonb, s.stream_id, e.stream_version) AS generic_c
          FROM event_store.streams s JOIN event_store.events e USING (stream_id)
         WHERE s.stream_id LIKE 'mpf-%') f;
SELECT count(*) AS cuts,
       count(DISTINCT fast) AS distinct_states,
       max(fast_size) AS largest,
       count(*) FILTER (WHERE fast IS DISTINCT FROM generic
                           OR fast::text IS DISTINCT FROM generic::text
                           OR fast IS DISTINCT FROM generic_c
                           OR fast::text IS DISTINCT FROM generic_c::text
                           OR fast_size IS DISTINCT FROM generic_c_size) AS mismatches
  FROM by_version;
-- The aggregate (jsonb_merge_patch per row) agrees too.
SELECT count(*) AS mismatches_with_aggregate
  FROM by_version b
 WHERE b.fast::text IS DISTINCT FROM
       (SELECT event_store.merge_patch_agg(e.data ORDER BY e.stream_version)::text
          FROM event_store.events e WHERE e.stream_id = b.stream_id AND e.stream_version <= b.v);
-- A few of the states, for the eye.
SELECT stream_id, v, fast FROM by_version
 WHERE stream_id = 'mpf-1' AND v IN (1, 2, 3, 15, 30) ORDER BY v;

-- Cut by time: state_as_of (fast) and fold (generic) at every recorded_at
-- and just before it.
SELECT count(*) AS cuts,
       count(*) FILTER (WHERE event_store.state_as_of(stream_id, t)::text
                              IS DISTINCT FROM event_store.fold('generic_mp(jsonb,event_store.events)', NULL::jsonb, stream_id, t)::text
                           OR event_store.state_as_of(stream_id, t - interval '1 microsecond')::text
                              IS DISTINCT FROM event_store.fold('generic_mp(jsonb,event_store.events)', NULL::jsonb, stream_id, t - interval '1 microsecond')::text)
         AS mismatches
  FROM by_version;

-- From initial states that are not NULL: an object with nested objects, an
-- array, a string, JSON null, an empty object.
SELECT i.initial, count(*) AS cuts,
       count(*) FILTER (WHERE event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', i.initial, b.stream_id, b.v)::text
                              IS DISTINCT FROM event_store.fold_to_version('generic_mp(jsonb,event_store.events)', i.initial, b.stream_id, b.v)::text
                           OR pg_column_size(event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', i.initial, b.stream_id, b.v))
                              IS DISTINCT FROM pg_column_size(event_store.fold_to_version('generic_c_mp(jsonb,event_store.events)', i.initial, b.stream_id, b.v)))
         AS mismatches
  FROM by_version b,
       (VALUES ('{"a": {"b": 1, "c": [1, 2]}, "k1": "x", "z": {"y": {"x": true}}}'::jsonb), ('[1, 2]'), ('"s"'), ('null'), ('{}')) i(initial)
 WHERE b.stream_id IN ('mpf-1', 'mpf-2', 'mpf-3', 'mpf-4', 'mpf-5')
 GROUP BY i.initial ORDER BY i.initial::text;

-- Bitemporal: state_bitemporal (fast) and fold_bitemporal (generic) at
-- every valid time of a stream's events, as known at every recorded_at.
SELECT count(*) AS cuts,
       count(*) FILTER (WHERE event_store.state_bitemporal(b.stream_id, o.occurred_at, b.t)::text
                              IS DISTINCT FROM event_store.fold_bitemporal('generic_mp(jsonb,event_store.events)', NULL::jsonb, b.stream_id, o.occurred_at, b.t)::text)
         AS mismatches
  FROM by_version b
  JOIN event_store.events o ON o.stream_id = b.stream_id
 WHERE b.stream_id IN ('mpf-1', 'mpf-2', 'mpf-3', 'mpf-4', 'mpf-5', 'mpf-6', 'mpf-7', 'mpf-8')
   AND b.v % 3 = 0;

-- Snapshots written from the tree (every 4 versions, and take_snapshot)
-- hold the generic path's state, and folds that start from them answer the
-- same.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 4);
SELECT count(event_store.state_as_of(stream_id)) AS folded FROM event_store.streams WHERE stream_id LIKE 'mpf-%';
SELECT count(event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', '{"init": 1}'::jsonb, stream_id)) AS taken
  FROM event_store.streams WHERE stream_id LIKE 'mpf-%';
SELECT count(*) AS snapshots,
       count(*) FILTER (WHERE s.state IS DISTINCT FROM
                        event_store.fold_to_version('generic_mp(jsonb,event_store.events)',
                            CASE WHEN s.initial_digest = 'null' THEN NULL ELSE '{"init": 1}'::jsonb END,
                            s.stream_id, s.version)::text) AS mismatches
  FROM event_store.snapshots s;
SELECT count(*) AS cuts,
       count(*) FILTER (WHERE event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, stream_id, v)::text
                              IS DISTINCT FROM generic::text
                           OR event_store.state_as_of(stream_id, t)::text
                              IS DISTINCT FROM event_store.fold('generic_mp(jsonb,event_store.events)', NULL::jsonb, stream_id, t)::text)
         AS mismatches_with_snapshots
  FROM by_version;
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', NULL);
SELECT event_store.drop_snapshots() >= 0 AS dropped;

-- A wide state: 400 keys of lengths 1 to 4, added in an order that is not
-- jsonb's, then every third removed and every fifth replaced by an object;
-- and a deep one: each event patches one level deeper.
SELECT count(event_store.append_event('mpf-wide', 'Patched', jsonb_build_object(to_hex(i * 7919 % 65536), i)))
  FROM generate_series(1, 400) i;
SELECT count(event_store.append_event('mpf-wide', 'Patched',
                 jsonb_build_object(to_hex(i * 7919 % 65536), CASE WHEN i % 3 = 0 THEN NULL ELSE jsonb_build_object('i', i) END)))
  FROM generate_series(1, 400) i WHERE i % 3 = 0 OR i % 5 = 0;
SELECT count(event_store.append_event('mpf-deep', 'Patched',
                 (repeat('{"d": ', i) || '{"v": ' || i || ', "w": null}' || repeat('}', i))::jsonb))
  FROM generate_series(0, 40) i;
SELECT stream_id,
       jsonb_typeof(event_store.state_as_of(stream_id)) AS type,
       length(event_store.state_as_of(stream_id)::text) AS length,
       event_store.state_as_of(stream_id)::text = event_store.fold('generic_mp(jsonb,event_store.events)', NULL::jsonb, stream_id)::text AS same,
       pg_column_size(event_store.state_as_of(stream_id)) = pg_column_size(event_store.fold('generic_c_mp(jsonb,event_store.events)', NULL::jsonb, stream_id)) AS same_size
  FROM (VALUES ('mpf-wide'), ('mpf-deep')) s(stream_id);
SELECT (SELECT count(*) FROM jsonb_object_keys(event_store.state_as_of('mpf-wide'))) AS wide_keys,
       event_store.state_as_of('mpf-deep') #> '{d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d,d}' AS deepest;

\c :orig_db
DROP DATABASE es_merge_patch_fast_test;
