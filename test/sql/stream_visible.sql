-- Issue 28 (1.12): event_store._stream_visible(), the feeds' per-event
-- lifecycle test (a hash of the streams that hide events, filled once per
-- statement), gives the visibility rule's answer for every event, whether
-- its categories argument is a constant (filled once), NULL (every
-- stream) or an expression that changes from row to row (filled again
-- whenever it changes).  In a database of its own.
\set own_db es_stream_visible_test
\i test/sql/include/own_db.sql

CREATE FUNCTION public.seed(cat text, first int, last int) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN first..last LOOP
        PERFORM event_store.append(cat || '-' || i, ARRAY(
            SELECT event_store.event('E', jsonb_build_object('i', i, 'j', j)) FROM generate_series(1, 5) j), NULL);
    END LOOP;
END
$$;
-- two categories, appended interleaved; in each one stream per state:
-- live (1), deleted (2), deleted then appended to again (3), truncated (4),
-- max_count (5), max_age 0 (6), hard-deleted (7)
SELECT count(public.seed(c, i, i)) AS streams FROM generate_series(1, 7) i, unnest(ARRAY['sv', 'sw']) c;
SELECT count(*) AS streams_changed
  FROM unnest(ARRAY['sv', 'sw']) c,
       LATERAL (SELECT event_store.delete_stream(c || '-2'), event_store.delete_stream(c || '-3'),
                       event_store.truncate_stream(c || '-4', 3),
                       event_store.set_stream_metadata(c || '-5', '{"max_count": 2}'),
                       event_store.set_stream_metadata(c || '-6', '{"max_age": "0 seconds"}'),
                       event_store.delete_stream(c || '-7', hard => true)) x;
SELECT event_store.append(c || '-3', ARRAY[event_store.event('E', '{"again": true}')], NULL) AS again_version
  FROM unnest(ARRAY['sv', 'sw']) c;

-- The rule (docs/append-only.md) next to each way of calling the function.
CREATE TEMP VIEW answers AS
SELECT e.stream_id, e.stream_version,
       (e.stream_version < s.truncate_before OR e.stream_version <= s.version - s.max_count
        OR e.recorded_at < now() - s.max_age) IS NOT TRUE AS rule,
       event_store._stream_visible(ARRAY['sv', 'sw'], e.stream_id, e.stream_version, e.recorded_at) AS constant,
       event_store._stream_visible(NULL, e.stream_id, e.stream_version, e.recorded_at) AS all_streams,
       event_store._stream_visible(ARRAY[event_store.category(e.stream_id)], e.stream_id, e.stream_version,
                                   e.recorded_at) AS per_row
  FROM event_store.events e JOIN event_store.streams s USING (stream_id)
 WHERE s.category IN ('sv', 'sw');

-- every event (scanned in the log's order, so per_row's category changes
-- every few rows): the same answer each way; which versions each stream shows
SELECT stream_id,
       count(*) AS events,
       count(*) FILTER (WHERE rule) AS visible,
       string_agg(stream_version::text, ',' ORDER BY stream_version) FILTER (WHERE rule) AS visible_versions,
       bool_and(constant = rule AND all_streams = rule AND per_row = rule) AS all_agree
  FROM answers
 GROUP BY stream_id
 ORDER BY stream_id;
-- Only the categories given are covered: a hidden event of a stream of
-- another category is not found in the set (callers read those categories
-- only); NULL arguments give NULL.
SELECT event_store._stream_visible(ARRAY['sw'], 'sv-2', 1, now()) AS other_category,
       event_store._stream_visible(ARRAY['sv'], 'sv-2', 1, now()) AS own_category,
       event_store._stream_visible(ARRAY['sv'], NULL, 1, now()) AS null_stream;

\c :orig_db
DROP DATABASE es_stream_visible_test;
