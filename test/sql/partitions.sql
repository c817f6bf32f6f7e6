SET timezone = 'UTC';
-- Partitions: made ahead, made on demand when the premade set runs out (an
-- append never fails for want of a partition), listed by partition_info.

SELECT event_store.partition_interval(), event_store.premake_count();

-- premake_partitions() is idempotent: the current and next partitions exist.
SELECT event_store.premake_partitions();

-- Very short partitions and none made ahead, in a database of its own whose
-- premade monthly partitions are dropped (they are empty): the appends
-- below find only partitions of the past (events restored from a dump)
-- and one made ahead, and must create their own in between.
\set own_db es_partitions_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
SELECT event_store.partition_interval(), event_store.premake_count();
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
END
$$;
SELECT count(*) AS partitions_left FROM event_store.partition_info;

-- The past, restored: timeline-1's first two events two hours ago, and an
-- empty partition made ahead, an hour from now.
\i test/sql/include/restored.sql
SELECT pg_temp.restore_stream('timeline-1', now() - interval '2 hours',
                              '[{"type": "Tick", "data": {"i": 1}}, {"type": "Tick", "data": {"i": 2}}]') AS restored;
SELECT event_store._create_partition_for(now() + interval '1 hour') IS NOT NULL AS made_ahead;
SELECT count(*) AS partitions, bool_and(range_end <= now() OR range_start > now()) AS none_covers_now
  FROM event_store.partition_info;

-- From here on, wide partitions: the one the next append creates covers
-- the gap up to the one made ahead, whatever the clock.
SELECT event_store.set_partition_interval('100 years');
SELECT event_store.append_event('timeline-1', 'Tick', '{"i": 3}');
SELECT count(*), max(stream_version) FROM event_store.events WHERE stream_id = 'timeline-1';

-- One transaction appending to two streams while a partition of the past
-- is attached in the middle of it (a restore running alongside).
BEGIN;
SELECT event_store.append_event('timeline-2', 'Tick', '{}');
SELECT pg_temp.restore_event('history-1', 'Tick', '{}', now() - interval '3 hours') AS restored;
SELECT event_store.append_event('timeline-2', 'Tick', '{}');
SELECT event_store.append('timeline-3', ARRAY[event_store.event('Tick', '{}'), event_store.event('Tock', '{}')]);
COMMIT;
SELECT stream_id, count(*) FROM event_store.events WHERE stream_id LIKE 'timeline-%' GROUP BY 1 ORDER BY 1;

-- Reading a stream touches only the partitions of its time range (run-time
-- partition pruning from the stream's first and last recorded_at).
CREATE FUNCTION pg_temp.scanned_partitions(query text) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF, FORMAT JSON) ' || query INTO plan;
    RETURN (SELECT count(*) FROM regexp_matches(plan::text, '"Relation Name": "events_p[^"]*"[^}]*?"Actual Loops": [1-9]', 'g'));
END
$$;
-- the two restored partitions and the one the appends created hold events;
-- the one made ahead is empty
SELECT count(*) AS partitions, (SELECT count(DISTINCT tableoid) FROM event_store.events) AS holding_events
  FROM event_store.partition_info;
SELECT count(DISTINCT tableoid) AS stream_partitions FROM event_store.events WHERE stream_id = 'timeline-3';
SELECT pg_temp.scanned_partitions($$SELECT * FROM event_store.read_stream('timeline-3')$$) AS scanned;

-- Every event sits in the partition whose range holds its recorded_at, and
-- partitions never overlap.
SELECT bool_and(e.recorded_at >= p.range_start AND e.recorded_at < p.range_end) AS rows_in_range
  FROM event_store.events e JOIN event_store.partition_info p ON p.partition = e.tableoid;
SELECT count(*) AS overlaps
  FROM event_store.partition_info a JOIN event_store.partition_info b
    ON a.partition <> b.partition AND a.range_start < b.range_end AND b.range_start < a.range_end;
SELECT bool_and(access_method = 'event_store_log') AS all_append_only FROM event_store.partition_info;

-- partition_info: range, rows (planner estimate, after ANALYZE), bytes.
ANALYZE event_store.events;
SELECT sum(rows) = (SELECT count(*) FROM event_store.events) AS rows_add_up,
       bool_and(bytes > 0) AS has_bytes,
       bool_and(range_end > range_start) AS ranges_valid
  FROM event_store.partition_info;

-- New partitions are created by the extension owner and carry the guard.
SELECT bool_and(c.relowner = (SELECT relowner FROM pg_class WHERE oid = 'event_store.events'::regclass)) AS same_owner,
       bool_and(EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p.partition AND t.tgname = 'events_no_truncate'
                        AND t.tgenabled = 'A')) AS truncate_guard,
       bool_and(EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = p.partition AND t.tgname = 'events_append_only')) AS row_guard
  FROM event_store.partition_info p JOIN pg_class c ON c.oid = p.partition;

-- Month-wide alignment: months are counted from the start of the year.
SELECT * FROM event_store._aligned_range('2026-05-17 13:00+00', '1 month');
SELECT * FROM event_store._aligned_range('2026-05-17 13:00+00', '3 months');
SELECT * FROM event_store._aligned_range('2026-05-17 13:00+00', '1 year');
SELECT * FROM event_store._aligned_range('2026-05-17 13:00+00', '7 days');
SELECT * FROM event_store._aligned_range('2026-05-17 13:00:04.5+00', '1 second');

-- Back to the defaults: the next monthly partition is clipped so that it
-- starts where the 1-second one made ahead ends (two ahead: the open
-- partition ends where that one starts).
DELETE FROM event_store.settings;
SELECT event_store.partition_interval(), event_store.premake_count();
SELECT event_store.premake_partitions(2) > 0 AS premade;
SELECT count(*) AS overlaps
  FROM event_store.partition_info a JOIN event_store.partition_info b
    ON a.partition <> b.partition AND a.range_start < b.range_end AND b.range_start < a.range_end;
SELECT bool_or(now() >= range_start AND now() < range_end) AS covers_now FROM event_store.partition_info;
SELECT event_store.append_event('timeline-1', 'Tick', '{}');

\c :orig_db
DROP DATABASE es_partitions_test;
