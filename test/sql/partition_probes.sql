-- nack(), ack() and poll()'s delete of hidden retries read the log by
-- global_position; the log is partitioned by recorded_at, so each now
-- bounds its read by recorded_at (review of 1.12, item 2), as poll's retry
-- read was in 1.12 (test poll_partitions).  Shown by the partitions whose
-- indexes each call scans, from the statistics around one call: they count
-- what the functions themselves did, the same way on every PostgreSQL
-- version (no plan printed).  Each probed partition is shown by the
-- positions it holds, oldest partition first.
\set own_db es_partition_probes_test
\i test/sql/include/own_db.sql
\i test/sql/include/restored.sql
SET stats_fetch_consistency = none;
-- no projection worker scanning the log meanwhile (the first append asks
-- for one; with this setting it leaves at once, reading nothing)
ALTER DATABASE :"own_db" SET event_store.live_projections = off;
-- daily partitions from 70 to 31 days ago (before this month's partition,
-- whatever the date); events 60 and 45 days ago, then today
SELECT event_store.set_partition_interval('1 day');
SELECT count(event_store._create_partition_for(now() - make_interval(days => i)))
  FROM generate_series(31, 70) i;
SELECT pg_temp.restore_stream('account-1', now() - interval '60 days',
       '[{"type": "Opened", "data": {"n": 1}}, {"type": "Deposited", "data": {"n": 2}}]');
SELECT pg_temp.restore_stream('account-2', now() - interval '45 days',
       '[{"type": "Opened", "data": {"n": 3}}]');
SELECT count(event_store.append_event('account-' || (i % 3 + 1) || '0', 'Deposited', jsonb_build_object('n', i)))
  FROM generate_series(4, 9) i;
CREATE TEMP TABLE scans_before (part regclass, scans bigint);
-- index scans of each partition so far
CREATE FUNCTION pg_temp.snap() RETURNS void LANGUAGE sql AS $$
    DELETE FROM scans_before;
    INSERT INTO scans_before
    SELECT i.inhrelid, coalesce(s.idx_scan, 0)
      FROM pg_inherits i JOIN pg_stat_user_tables s ON s.relid = i.inhrelid
     WHERE i.inhparent = 'event_store.events'::regclass;
$$;
-- the partitions scanned since snap(): those holding events, each as its
-- positions; how many empty ones outside them (older than the oldest or
-- newer than the newest: never needed) and between them
CREATE FUNCTION pg_temp.probed(OUT holding text, OUT empty_outside int, OUT empty_between int)
LANGUAGE plpgsql AS $$
DECLARE
    r     record;
    pos   bigint[];
    held  text[] := '{}';
    empty int := 0;
BEGIN
    empty_outside := 0;
    empty_between := 0;
    FOR r IN SELECT b.part FROM scans_before b
               JOIN pg_stat_user_tables s ON s.relid = b.part
               JOIN event_store.partition_ranges() x ON x.partition = b.part
              WHERE s.idx_scan > b.scans
              ORDER BY x.range_start LOOP
        EXECUTE format('SELECT array_agg(global_position ORDER BY global_position) FROM ONLY %s', r.part) INTO pos;
        IF pos IS NULL THEN
            empty := empty + 1;
        ELSE
            IF cardinality(held) = 0 THEN empty_outside := empty; ELSE empty_between := empty_between + empty; END IF;
            empty := 0;
            held := held || pos::text;
        END IF;
    END LOOP;
    empty_outside := empty_outside + empty;
    holding := array_to_string(held, ' ');
END
$$;
SELECT count(*) > 40 AS many_partitions FROM event_store.partition_info;
SELECT event_store.subscribe('pp', ARRAY['account'], NULL, 5, '1 hour');
SELECT global_position FROM event_store.poll('pp', 4);
-- the feed's bound reads the highest position of each closed partition
-- once per session (then kept): read them now
SELECT event_store._feed_scan_from(0) IS NOT NULL AS bound;
-- nack() of the event of 45 days ago looks it up in its partition only
-- (and today's, whose highest position the bound reads: it may still grow)
SELECT pg_stat_force_next_flush();
SELECT pg_temp.snap();
SELECT event_store.nack('pp', 3, 'boom'), pg_stat_force_next_flush();
SELECT * FROM pg_temp.probed();
SELECT event_store.ack('pp', 4);
SELECT global_position FROM event_store.poll('pp', 10);
-- ack() with a retry waiting looks for the held events it passes from
-- the checkpoint (4) on: today's partition only
SELECT pg_stat_force_next_flush();
SELECT pg_temp.snap();
SELECT event_store.ack('pp', 9), pg_stat_force_next_flush();
SELECT * FROM pg_temp.probed();
SELECT global_position, state FROM event_store.subscription_retries ORDER BY 1;
-- the retry's stream gets a max_count (hiding nothing yet): poll() looks
-- for waiting retries that the lifecycle hides, reading their events from
-- the earliest waiting one's partition (45 days ago) on, not the ones
-- before it (the empty ones between vary with the date); the retry is not
-- due (no retry read) and nothing is new
SELECT event_store.set_stream_metadata('account-2', '{"max_count": 100}');
SELECT pg_stat_force_next_flush();
SELECT pg_temp.snap();
SELECT count(*) AS polled, pg_stat_force_next_flush() FROM event_store.poll('pp', 10);
SELECT holding, empty_outside FROM pg_temp.probed();
SELECT global_position, state FROM event_store.subscription_retries ORDER BY 1;
\c :orig_db
DROP DATABASE es_partition_probes_test;
