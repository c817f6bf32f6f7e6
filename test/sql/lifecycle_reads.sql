-- Issue 28 (1.12): the reads hide the same events whichever way they find
-- them.  read_stream/read_stream_backward bound the scan by the stream's
-- row; read_category and read_all take a hash probe while at most 1,000 of
-- the streams they read hide events, the per-event check beyond.  Each
-- read is compared with the visibility rule applied to the log directly.
-- In a database of its own.
\set own_db es_lifecycle_reads_test
\i test/sql/include/own_db.sql

-- The rule (docs/stream-lifecycle.md): hidden below truncate_before, at or
-- below version - max_count, and recorded longer ago than max_age.
CREATE FUNCTION public.visible(cat text) RETURNS SETOF bigint LANGUAGE sql AS $$
    SELECT e.global_position
      FROM event_store.events e JOIN event_store.streams s USING (stream_id)
     WHERE s.category = cat
       AND (e.stream_version < s.truncate_before OR e.stream_version <= s.version - s.max_count
            OR e.recorded_at < now() - s.max_age) IS NOT TRUE
     ORDER BY e.global_position
$$;
CREATE FUNCTION public.seed(cat text, first int, last int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first..last LOOP
        PERFORM event_store.append(cat || '-' || i, ARRAY(
            SELECT event_store.event('E', jsonb_build_object('i', i, 'j', j)) FROM generate_series(1, 5) j), NULL);
    END LOOP;
END
$$;
-- one stream in each state: live (1), deleted (2), deleted then appended
-- to again (3), truncated (4), max_count (5), max_age 0 (6), hard-deleted (7)
SELECT public.seed('lr', 1, 8);
SELECT event_store.delete_stream('lr-2'), event_store.delete_stream('lr-3'),
       event_store.truncate_stream('lr-4', 3),
       event_store.set_stream_metadata('lr-5', '{"max_count": 2}') AS v5,
       event_store.set_stream_metadata('lr-6', '{"max_age": "0 seconds"}') AS v6,
       event_store.delete_stream('lr-7', hard => true);
SELECT event_store.append('lr-3', ARRAY[event_store.event('E', '{"again": true}')], NULL) AS lr3_version;
SELECT event_store._streams_hiding(ARRAY['lr'], 1000) AS lr_hiding,
       event_store._streams_hiding(ARRAY['lr'], 3) AS lr_hiding_up_to_3;

-- read_category, few hiding streams (hash probes), both branches: without
-- and with something to upcast
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_category('lr', 0, 1000))
     = (SELECT array_agg(v) FROM public.visible('lr') v) AS category_as_rule,
       (SELECT count(*) FROM event_store.read_category('lr', 0, 1000)) AS category_events;
SELECT stream_id, array_agg(stream_version ORDER BY stream_version) AS versions
  FROM event_store.read_category('lr', 0, 1000) GROUP BY stream_id ORDER BY stream_id;
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_all(0, 1000)
         WHERE stream_id LIKE 'lr-%') = (SELECT array_agg(v) FROM public.visible('lr') v) AS all_as_rule;

-- read_stream and read_stream_backward, every stream, every start
SELECT s.stream_id, f.from_version,
       (SELECT array_agg(stream_version) FROM event_store.read_stream(s.stream_id, f.from_version, 2)) AS forward_2,
       (SELECT array_agg(stream_version) FROM event_store.read_stream_backward(s.stream_id, f.from_version, 2)) AS backward_2
  FROM event_store.streams s, (VALUES (1), (3), (5), (NULL::bigint)) f(from_version)
 WHERE s.category = 'lr'
 ORDER BY 1, 2;
SELECT count(*) AS unknown_stream FROM event_store.read_stream('lr-99');
SELECT count(*) AS unknown_stream_backward FROM event_store.read_stream_backward('lr-99');

-- the same with something to upcast (the _upcast statements)
SELECT event_store.register_upcaster('Other', 1, '{"rename": {"a": "b"}}'::jsonb);
SELECT event_store.set_event_schema('Other', 2);
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_category('lr', 0, 1000))
     = (SELECT array_agg(v) FROM public.visible('lr') v) AS upcasting_category_as_rule;
SELECT s.stream_id,
       (SELECT array_agg(stream_version) FROM event_store.read_stream(s.stream_id, 1, 100)) AS forward,
       (SELECT array_agg(stream_version) FROM event_store.read_stream_backward(s.stream_id, NULL, 100)) AS backward
  FROM event_store.streams s WHERE s.category = 'lr' ORDER BY 1;

-- past 1,000 hiding streams: the per-event check, the same events
SELECT public.seed('lr', 9, 1010);
SELECT count(event_store.delete_stream('lr-' || i)) AS deleted FROM generate_series(9, 1010) i;
SELECT event_store._streams_hiding(ARRAY['lr'], 1000) AS lr_hiding,
       event_store._streams_hiding(NULL, 1000) AS any_hiding;
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_category('lr', 0, 100000))
     = (SELECT array_agg(v) FROM public.visible('lr') v) AS many_category_as_rule,
       (SELECT count(*) FROM event_store.read_category('lr', 0, 100000)) AS many_category_events;
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_all(0, 100000)
         WHERE stream_id LIKE 'lr-%') = (SELECT array_agg(v) FROM public.visible('lr') v) AS many_all_as_rule;

\c :orig_db
DROP DATABASE es_lifecycle_reads_test;
