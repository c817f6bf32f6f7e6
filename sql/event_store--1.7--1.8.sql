-- event_store 1.7 -> 1.8: consumer-group reads at C speed.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.8'" to load this file. \quit

------------------------------------------------------------------------------
-- consumer_group_member is evaluated for every candidate row of a consumer-
-- group poll.  As a SQL function wrapping _hash_64 and cardinal_id it was
-- not inlined into the read's plan: every row paid a SQL function call
-- (~40 us).  The same rule in C (src/consumer_group.c) costs one md5.
-- Same results, same error for a group size below 1.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.consumer_group_member(stream_id text, consumer_group_size int) RETURNS int
AS 'MODULE_PATHNAME', 'es_consumer_group_member'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

-- The consumer group filter of poll(), as a boolean with a planner support
-- function: the planner cannot see inside it, guessed that 1 row in 200
-- passes, concluded that a poll could never fill its max_count early and
-- collected and sorted everything after the checkpoint (a consumer far
-- behind re-read the whole rest of its category on every poll).  The
-- support function tells it 1/size pass, so the read follows the position
-- order of an index and stops at max_count.
CREATE FUNCTION event_store._in_consumer_group_support(internal) RETURNS internal
AS 'MODULE_PATHNAME', 'es_in_consumer_group_support' LANGUAGE C IMMUTABLE STRICT;
CREATE FUNCTION event_store._in_consumer_group(stream_id text, consumer_group_member int, consumer_group_size int)
RETURNS boolean
AS 'MODULE_PATHNAME', 'es_in_consumer_group'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE COST 10
SUPPORT event_store._in_consumer_group_support;
COMMENT ON FUNCTION event_store._in_consumer_group(text, int, int) IS
  'consumer_group_member(stream_id, consumer_group_size) = consumer_group_member, with a selectivity the planner can use (1 / size).';
REVOKE ALL ON FUNCTION event_store._in_consumer_group(text, int, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION event_store._in_consumer_group_support(internal) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._in_consumer_group(text, int, int) TO event_store_reader;

------------------------------------------------------------------------------
-- Feed reads with many partitions are planned for their actual values.  A
-- cached generic plan covers every partition; with the positions unknown
-- and each empty partition estimated at a row, it sorted a position-range
-- scan of the whole live partition (read_category 10x slower with 120
-- partitions than with 2).  _feed_choose_plan_mode() (src/feed.c) forces
-- custom plans above a few partitions; the functions' own SET clause ends
-- that setting with the call.  With few partitions the generic plan stays.
------------------------------------------------------------------------------
-- ... and partitions premade for the future, empty, are left out too:
-- _feed_scan_to(horizon) is the end of the latest partition with any block
-- (computed after the horizon; see src/feed.c).
CREATE FUNCTION event_store._feed_scan_to(horizon bigint) RETURNS timestamptz
AS 'MODULE_PATHNAME', 'es_feed_scan_to' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store._feed_scan_to(bigint) IS
  'Upper bound (exclusive) on recorded_at of events with global_position <= horizon: the end of the latest partition that has any block. Call after feed_horizon().';
REVOKE ALL ON FUNCTION event_store._feed_scan_to(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._feed_scan_to(bigint) TO event_store_reader;

CREATE FUNCTION event_store._feed_choose_plan_mode() RETURNS void
AS 'MODULE_PATHNAME', 'es_feed_choose_plan_mode' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store._feed_choose_plan_mode() IS
  'Inside a feed read function: plan its statements for their actual values when the log has many partitions (the function''s SET plan_cache_mode clause ends it).';
REVOKE ALL ON FUNCTION event_store._feed_choose_plan_mode() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._feed_choose_plan_mode() TO event_store_reader;

CREATE OR REPLACE FUNCTION event_store.read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
    scan_to   timestamptz := event_store._feed_scan_to(horizon);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
           AND e.recorded_at < scan_to
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;

CREATE OR REPLACE FUNCTION event_store.read_category(
    category text, after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
    scan_to   timestamptz := event_store._feed_scan_to(horizon);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE split_part(e.stream_id, '-', 1) = category
           AND e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
           AND e.recorded_at < scan_to
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;

CREATE OR REPLACE FUNCTION event_store.poll(
    name text, max_count int DEFAULT 100,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    after_position bigint;
    horizon        bigint;
    scan_from      timestamptz;
    scan_to        timestamptz;
    categories     text[];
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    s := event_store._subscription_args(name, consumer_group_member, consumer_group_size);
    IF max_count IS NULL OR max_count <= 0 THEN
        RAISE EXCEPTION 'max_count must be positive, got %', coalesce(max_count::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'poll() needs READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'The feed horizon must be read before the snapshot that reads the events.';
    END IF;
    after_position := event_store._subscription_position(name, member, size);
    -- The horizon first; the next statement reads with a newer snapshot.
    horizon := event_store.feed_horizon();
    scan_from := event_store._feed_scan_from(after_position);
    scan_to := event_store._feed_scan_to(horizon);
    IF s.categories IS NULL THEN
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
               AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
             ORDER BY e.global_position
             LIMIT max_count;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE pg_catalog.split_part(e.stream_id, '-', 1) = categories[1]
               AND e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
               AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
             ORDER BY e.global_position
             LIMIT max_count;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
    RETURN QUERY
        SELECT x.*
          FROM pg_catalog.unnest(categories) AS c(category)
         CROSS JOIN LATERAL (
               SELECT e.*
                 FROM event_store.events e
                WHERE pg_catalog.split_part(e.stream_id, '-', 1) = c.category
                  AND e.global_position > after_position
                  AND e.global_position <= horizon
                  AND e.recorded_at >= scan_from
                  AND e.recorded_at < scan_to
                  AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                  AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                ORDER BY e.global_position
                LIMIT max_count) x
         ORDER BY x.global_position
         LIMIT max_count;
END
$$;

------------------------------------------------------------------------------
-- The feed is gap-free without preloading too ("locks" mode, src/feed.c):
-- the registry's protocol on the lock manager.  Nothing to create here; the
-- description of feed_mode() changes.
------------------------------------------------------------------------------
COMMENT ON FUNCTION event_store.feed_mode() IS
  '''registry'' when event_store is in shared_preload_libraries, else ''locks'' (the same protocol on advisory locks); both gap-free.';
