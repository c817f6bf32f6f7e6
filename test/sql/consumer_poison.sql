-- issue 29: a poisoned event in the middle of 10,000 events and three
-- async projections.  The other streams and projections go on; after the
-- fix the parked or waiting event is handled; every event is applied
-- exactly once, and 'retry' keeps each stream's order.
SET timezone = 'UTC';
\set own_db es_consumer_poison_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)

CREATE TABLE fix (broken boolean);
INSERT INTO fix VALUES (true);
-- Per projection and stream: events applied, the last stream_version, and
-- whether every event came right after the one before.
CREATE TABLE cnt (projection text, stream text, n int, last_version bigint, in_order boolean,
                  PRIMARY KEY (projection, stream));
CREATE FUNCTION apply(e event_store.events, p text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO cnt VALUES (p, e.stream_id, 1, e.stream_version, e.stream_version = 1)
    ON CONFLICT (projection, stream) DO UPDATE
       SET n = cnt.n + 1, last_version = excluded.last_version,
           in_order = cnt.in_order AND excluded.last_version = cnt.last_version + 1;
    IF e.event_type = 'Poison' AND (SELECT broken FROM fix) THEN
        RAISE EXCEPTION 'cannot apply % of %', e.event_type, e.stream_id;
    END IF;
END $$;
CREATE FUNCTION h_retry(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT apply(e, 'retry') $$;
CREATE FUNCTION h_park(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT apply(e, 'park') $$;
CREATE FUNCTION h_ticks(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT apply(e, 'ticks') $$;
SELECT event_store.create_projection('retry', 'h_retry(event_store.events)', mode => 'async',
                                     on_error => 'retry', max_attempts => 3, retry_delay => '1 hour');
SELECT event_store.create_projection('park', 'h_park(event_store.events)', mode => 'async', on_error => 'park');
SELECT event_store.create_projection('ticks', 'h_ticks(event_store.events)', mode => 'async',
                                     event_types => ARRAY['Tick']);

-- 100 streams of 100 events; the 5,000th event (stream s-0's 50th) is poisoned.
SELECT count(event_store.append_event('s-' || (i % 100), CASE WHEN i = 5000 THEN 'Poison' ELSE 'Tick' END, '{}'))
  FROM generate_series(1, 10000) i;

CREATE PROCEDURE run_all() LANGUAGE plpgsql AS $$
DECLARE
    p text;
BEGIN
    FOREACH p IN ARRAY ARRAY['retry', 'park', 'ticks'] LOOP
        WHILE event_store.run_projection(p, 1000) > 0 LOOP
            COMMIT;
        END LOOP;
        COMMIT;
    END LOOP;
END $$;
CALL run_all();

-- retry: s-0 stops before its 50th event (the 51st to 100th are held);
-- park: only the poisoned event is missing; ticks never sees it (its
-- filter takes Tick only, so its s-0 has a version gap: not in order).
SELECT projection, sum(n) AS applied, count(*) FILTER (WHERE n <> 100) AS streams_short,
       sum(n) FILTER (WHERE stream = 's-0') AS s0_applied, bool_and(in_order) AS all_in_order
  FROM cnt GROUP BY projection ORDER BY projection;
SELECT name, checkpoint = (SELECT max(global_position) FROM event_store.events) AS caught_up,
       parked, waiting, last_error
  FROM event_store.projection_status ORDER BY name;

-- The fix; the retry becomes due (time passes), the parked event is replayed.
UPDATE fix SET broken = false;
UPDATE event_store.projection_retries SET next_attempt_at = now() - interval '1 second'
 WHERE name = 'retry' AND attempts > 0;
SELECT event_store.replay_parked('park');
CALL run_all();

-- Every event applied exactly once; retry kept every stream in order, park
-- applied s-0's poisoned event after the later ones.
SELECT projection, sum(n) AS applied, count(*) FILTER (WHERE n <> 100) AS streams_short,
       bool_and(in_order) AS all_in_order,
       array_agg(stream ORDER BY stream) FILTER (WHERE NOT in_order) AS out_of_order
  FROM cnt GROUP BY projection ORDER BY projection;
SELECT name, parked, waiting FROM event_store.projection_status ORDER BY name;
SELECT count(*) AS retries_left FROM event_store.projection_retries;

\c :orig_db
DROP DATABASE es_consumer_poison_test;
