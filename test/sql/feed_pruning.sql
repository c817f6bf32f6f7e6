-- Feed reads skip partitions that cannot hold positions after the
-- reader's (1.7): _feed_scan_from(after) is a recorded_at lower bound that
-- run-time partition pruning uses.  In a database of its own, with
-- 1-second partitions, three partitions of 5 events each.
\set own_db es_feed_pruning_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)
SELECT event_store.feed_mode();
SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
END
$$;
-- Three rounds of 5 events recorded an hour ago, a second apart, as a
-- restore writes them (one stream each): three 1-second partitions, all
-- in the past, so their highest positions are final.
\i test/sql/include/restored.sql
DO $$
BEGIN
    FOR i IN 1 .. 3 LOOP
        PERFORM pg_temp.restore_event('prune-' || i || '_' || j, 'Tick', jsonb_build_object('round', i, 'j', j),
                                      date_trunc('second', now()) - interval '1 hour' + make_interval(secs => i))
           FROM generate_series(1, 5) j;
    END LOOP;
END
$$;
SELECT count(*) AS partitions, sum((SELECT count(*) FROM event_store.events e WHERE e.tableoid = p.partition)) AS events
  FROM event_store.partition_info p;
SELECT min(global_position) AS base FROM event_store.events \gset

-- For a reader at every position: the bound is exactly the start of the
-- first partition that holds a later position ('infinity' when none does):
-- every later event is at or after it (nothing is skipped) and every
-- partition before it is left out.
CREATE TEMP TABLE bounds AS
SELECT after, event_store._feed_scan_from(after) AS bound,
       (SELECT min(p.range_start) FROM event_store.partition_info p
         WHERE EXISTS (SELECT 1 FROM event_store.events e
                        WHERE e.tableoid = p.partition AND e.global_position > after)) AS first_needed
  FROM generate_series((:base - 1)::bigint, :base + 16) after;
SELECT bool_and(bound = coalesce(first_needed, 'infinity')) AS bound_is_tight,
       bool_and(NOT EXISTS (SELECT 1 FROM event_store.events e
                             WHERE e.global_position > after AND e.recorded_at < bound)) AS nothing_skipped,
       count(*) FILTER (WHERE bound > (SELECT min(range_start) FROM event_store.partition_info)) > 0 AS some_partitions_skipped,
       count(*) FILTER (WHERE bound = 'infinity') AS readers_with_nothing_left
  FROM bounds;

-- read_all returns exactly what an unbounded scan returns, from every position.
SELECT bool_and(a.got IS NOT DISTINCT FROM b.want) AS read_all_unchanged
  FROM generate_series(:base - 1, :base + 15) after
  CROSS JOIN LATERAL (SELECT array_agg(global_position ORDER BY global_position) AS got
                        FROM event_store.read_all(after, 100)) a
  CROSS JOIN LATERAL (SELECT array_agg(global_position ORDER BY global_position) AS want
                        FROM event_store.events WHERE global_position > after) b;
SELECT bool_and(a.got IS NOT DISTINCT FROM b.want) AS read_category_unchanged
  FROM generate_series(:base - 1, :base + 15) after
  CROSS JOIN LATERAL (SELECT array_agg(global_position ORDER BY global_position) AS got
                        FROM event_store.read_category('prune', after, 100)) a
  CROSS JOIN LATERAL (SELECT array_agg(global_position ORDER BY global_position) AS want
                        FROM event_store.events WHERE global_position > after) b;

-- A new append lands in a new (open) partition and is read from anywhere.
SELECT event_store.append_event('prune-9', 'Late', '{}');
SELECT count(*) FROM event_store.read_all(:base + 14, 100);
SELECT count(*) FROM event_store.read_all(:base - 1, 100);

-- Subscriptions and async projections read through the same bound.
SELECT event_store.subscribe('pruning-sub');
SELECT count(*) FROM event_store.poll('pruning-sub', 100);
CREATE TABLE pruning_counts (n bigint);
INSERT INTO pruning_counts VALUES (0);
CREATE FUNCTION pruning_count(e event_store.events) RETURNS void LANGUAGE sql
AS $$ UPDATE pruning_counts SET n = n + 1 $$;
SELECT event_store.create_projection('pruning-proj', 'pruning_count(event_store.events)', mode => 'async');
SELECT event_store.run_projection('pruning-proj');
SELECT n FROM pruning_counts;

\c :orig_db
DROP DATABASE es_feed_pruning_test;
