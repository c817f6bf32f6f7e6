-- Reading streams, categories and the global log.
SELECT event_store.append('flight-LH400', ARRAY[
    event_store.event('FlightScheduled', '{"seats": 180}'),
    event_store.event('SeatBooked', '{"seat": "1A"}'),
    event_store.event('SeatBooked', '{"seat": "1B"}'),
    event_store.event('SeatReleased', '{"seat": "1A"}'),
    event_store.event('SeatBooked', '{"seat": "2C"}')
]);
SELECT event_store.append_event('flight-BA117', 'FlightScheduled', '{"seats": 200}');
SELECT event_store.append_event('flight-LH400', 'BoardingStarted', '{}');

-- read_stream: ascending from a version, at most max_count.
SELECT stream_version, event_type, data FROM event_store.read_stream('flight-LH400');
SELECT stream_version, event_type FROM event_store.read_stream('flight-LH400', 3);
SELECT stream_version, event_type FROM event_store.read_stream('flight-LH400', 2, 2);
SELECT stream_version FROM event_store.read_stream('flight-LH400', 100);
SELECT count(*) AS missing_stream FROM event_store.read_stream('flight-XX000');

-- read_stream_backward: descending from a version (default: the last).
SELECT stream_version, event_type FROM event_store.read_stream_backward('flight-LH400');
SELECT stream_version, event_type FROM event_store.read_stream_backward('flight-LH400', 4, 2);
SELECT count(*) AS missing_stream FROM event_store.read_stream_backward('flight-XX000');

-- stream_version: 0 for a stream that does not exist.
SELECT event_store.stream_version('flight-LH400'), event_store.stream_version('flight-XX000');

-- read_category: events of all streams of a category, by global position.
SELECT stream_id, stream_version, event_type
  FROM event_store.read_category('flight') ORDER BY global_position;
SELECT (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.read_category('flight'))
     = (SELECT array_agg(global_position) FROM event_store.read_category('flight')) AS category_ordered;
-- after a position, at most max_count
SELECT min(global_position) AS first_position FROM event_store.read_category('flight') \gset
SELECT stream_id, stream_version FROM event_store.read_category('flight', :first_position, 2);
-- the category is matched exactly, not as a pattern
SELECT count(*) FROM event_store.read_category('fli%');
SELECT count(*) FROM event_store.read_category('flight-LH400');

-- read_all: every event by global position.
SELECT count(*) = (SELECT count(*) FROM event_store.events) AS all_events
  FROM event_store.read_all(0, 1000000);
SELECT bool_and(global_position > prev) AS strictly_ascending
  FROM (SELECT global_position, lag(global_position, 1, 0::bigint) OVER () AS prev
          FROM event_store.read_all(0, 1000000)) s;
SELECT count(*) FROM event_store.read_all(0, 3);
SELECT count(*) FROM event_store.read_all(:first_position, 2);

-- The stream reads are plain SQL and are inlined into the caller's query:
-- the plan shows index scans of the partitions, no function scan of them
-- (since 1.11 it holds one of the upcasting reader, run only when some
-- type has a chain to apply: test/sql/upcasters.sql).  The
-- feed reads (read_all, read_category) are PL/pgSQL since 1.3: they compute
-- the feed horizon in one statement and read in the next.
CREATE FUNCTION pg_temp.plan_of(query text) RETURNS TABLE (function_scan bool, index_scans bool)
LANGUAGE plpgsql AS $$
DECLARE
    plan text := '';
    line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || query LOOP
        plan := plan || line || E'\n';
    END LOOP;
    RETURN QUERY SELECT plan LIKE '%Function Scan on read_stream%', plan LIKE '%Index Scan%';
END
$$;
SELECT * FROM pg_temp.plan_of($$SELECT * FROM event_store.read_stream('flight-LH400', 2, 10)$$);
SELECT * FROM pg_temp.plan_of($$SELECT * FROM event_store.read_stream_backward('flight-LH400')$$);
SELECT p.proname, l.lanname, p.provolatile FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'event_store'::regnamespace AND p.proname IN ('read_all', 'read_category', 'read_stream', 'read_stream_backward')
 ORDER BY 1;

-- A page of a stream reads only that page, also with a generic plan (as
-- PL/pgSQL and drivers' prepared statements use): versions are
-- contiguous, so the page from v of n events is versions [v, v + n).
SELECT event_store.append('paged-1', (SELECT array_agg(event_store.event('Tick', jsonb_build_object('i', i)))
                                        FROM generate_series(1, 3000) i));
CREATE FUNCTION pg_temp.rows_read(query text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) ' || query INTO plan;
    -- rows produced by the scans of event partitions
    RETURN (SELECT coalesce(sum(m[1]::bigint), 0)
              FROM regexp_matches(plan::text, '"Relation Name": "events_p[^"]*"[^}]*?"Actual Rows": ([0-9]+)', 'g') m);
END
$$;
SET plan_cache_mode = force_generic_plan;
PREPARE page(bigint, int) AS SELECT * FROM event_store.read_stream('paged-1', $1, $2);
PREPARE page_back(bigint, int) AS SELECT * FROM event_store.read_stream_backward('paged-1', $1, $2);
SELECT pg_temp.rows_read('EXECUTE page(1500, 100)') AS forward_rows,
       pg_temp.rows_read('EXECUTE page_back(1500, 100)') AS backward_rows,
       pg_temp.rows_read('EXECUTE page_back(NULL, 100)') AS backward_from_last_rows;
SELECT min(stream_version), max(stream_version), count(*) FROM event_store.read_stream('paged-1', 1500, 100);
SELECT min(stream_version), max(stream_version), count(*) FROM event_store.read_stream_backward('paged-1', 1500, 100);
SELECT min(stream_version), max(stream_version), count(*) FROM event_store.read_stream_backward('paged-1', NULL, 100);
RESET plan_cache_mode;
-- the edges: before the first version, past the last, huge positions
SELECT count(*) FROM event_store.read_stream('paged-1', -5, 10);
SELECT count(*) FROM event_store.read_stream('paged-1', 2995, 100);
SELECT count(*) FROM event_store.read_stream('paged-1', 9223372036854775807, 100);
SELECT count(*) FROM event_store.read_stream_backward('paged-1', 9223372036854775807, 10);
SELECT count(*) FROM event_store.read_stream_backward('paged-1', -9223372036854775807, 10);
SELECT count(*) FROM event_store.read_stream_backward('paged-1', 3, 100);
-- NULL max_count: no limit, as LIMIT NULL
SELECT count(*) FROM event_store.read_stream('paged-1', 2001, NULL);
SELECT count(*) FROM event_store.read_stream_backward('paged-1', 1000, NULL);
