-- Soak invariants, after the workload has stopped (test/soak/soak.sh,
-- test/t/009_soak_short.pl).  Prints
--   check|<name>|<got>|<expected>     passes when got = expected
--   info|<name>|<value>
\set QUIET on
SET client_min_messages = warning;
CREATE TEMP TABLE soak_results (kind text, name text, got text, expected text, seq serial);

-- the log
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'versions contiguous from 1, no duplicates', count(*)::text, '0'
  FROM (SELECT stream_id FROM event_store.events GROUP BY stream_id
         HAVING count(*) <> max(stream_version) OR min(stream_version) <> 1
             OR count(DISTINCT stream_version) <> count(*)) s;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'event_store.streams agrees with the events', count(*)::text, '0'
  FROM event_store.streams s
  FULL JOIN (SELECT stream_id, count(*) AS n, max(stream_version) AS v, min(global_position) AS f,
                    max(global_position) AS l FROM event_store.events GROUP BY stream_id) e USING (stream_id)
 WHERE s.version IS DISTINCT FROM e.v OR s.version IS DISTINCT FROM e.n
    OR s.first_position IS DISTINCT FROM e.f OR s.last_position IS DISTINCT FROM e.l;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'global positions and event ids unique',
       (count(DISTINCT global_position) = count(*) AND count(DISTINCT (stream_id, event_id)) = count(*))::text, 'true'
  FROM event_store.events;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'within a stream positions increase with versions', count(*)::text, '0'
  FROM (SELECT global_position < lag(global_position) OVER (PARTITION BY stream_id ORDER BY stream_version) AS bad
          FROM event_store.events) s WHERE bad;

-- the inline projection's table against a recomputation from the log
CREATE TEMP VIEW soak_expected AS
SELECT stream_id, count(*) AS n, sum(coalesce((data->>'amount')::bigint, 0)) AS total
  FROM event_store.events WHERE event_store.category(stream_id) = 'acct' GROUP BY stream_id;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'inline projection table agrees with the log', count(*)::text, '0'
  FROM soak_inline i FULL JOIN soak_expected x USING (stream_id)
 WHERE i.n IS DISTINCT FROM x.n OR i.total IS DISTINCT FROM x.total;

-- the async projection, caught up
DO $$ BEGIN WHILE event_store.run_projection('soak_async', 10000) > 0 LOOP END LOOP; END $$;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'async projection table agrees with the log after catch-up', count(*)::text, '0'
  FROM soak_async a FULL JOIN soak_expected x USING (stream_id)
 WHERE a.n IS DISTINCT FROM x.n OR a.total IS DISTINCT FROM x.total;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'async checkpoint counts every acct event once',
       (SELECT events_processed FROM event_store.projection_checkpoints WHERE name = 'soak_async')::text,
       (SELECT count(*) FROM event_store.events WHERE event_store.category(stream_id) = 'acct')::text;

-- the feed readers, drained: every event exactly once (soak_seen's key
-- refused any second sighting during the run)
DO $$ BEGIN WHILE soak_feed_step('all', 10000) > 0 LOOP END LOOP; END $$;
DO $$ BEGIN WHILE soak_feed_step('poll', 10000) > 0 LOOP END LOOP; END $$;
INSERT INTO soak_results (kind, name, got, expected)
SELECT 'check', 'feed reader ' || r || ' (paged through everything) saw every event once',
       (SELECT count(*) FROM soak_seen s JOIN event_store.events e USING (global_position) WHERE s.reader = r)
       || ':' || (SELECT count(*) FROM soak_seen s WHERE s.reader = r),
       (SELECT count(*) FROM event_store.events) || ':' || (SELECT count(*) FROM event_store.events)
  FROM unnest(ARRAY['all', 'poll']) r;

INSERT INTO soak_results (kind, name, got)
SELECT 'info', 'events', count(*)::text FROM event_store.events
UNION ALL SELECT 'info', 'streams', count(*)::text FROM event_store.streams
UNION ALL SELECT 'info', 'expected version conflicts caught', (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM soak_conflicts)::text
UNION ALL SELECT 'info', 'partitions', count(*)::text FROM event_store.partition_ranges();

SELECT kind || '|' || name || '|' || got || coalesce('|' || expected, '') FROM soak_results ORDER BY seq;
