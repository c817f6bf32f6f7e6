-- event_store 1.6 -> 1.7: feed reads skip partitions that cannot hold
-- positions after the reader's.
--   Partitions are by recorded_at, the feed reads by position: without a
--   bound on recorded_at every feed read scans every partition's position
--   index.  _feed_scan_from(after) gives that bound (src/feed.c): a
--   partition that can receive no more rows (its range ends before now and
--   before the first draw of every append in flight) has a final highest
--   position, cached per session; partitions whose final highest position
--   is at or below `after` are left out.  read_all, read_category and poll
--   add `recorded_at >= _feed_scan_from(after)`, which run-time partition
--   pruning turns into skipped partitions; run_projection does the same in C.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.7'" to load this file. \quit

CREATE FUNCTION event_store._feed_scan_from(after_position bigint) RETURNS timestamptz
AS 'MODULE_PATHNAME', 'es_feed_scan_from' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store._feed_scan_from(bigint) IS
  'Lower bound on recorded_at of events with global_position > after_position (partitions before it are final and hold none).';

CREATE OR REPLACE FUNCTION event_store.read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
BEGIN
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;

CREATE OR REPLACE FUNCTION event_store.read_category(
    category text, after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
BEGIN
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE split_part(e.stream_id, '-', 1) = category
           AND e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
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
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    after_position bigint;
    horizon        bigint;
    scan_from      timestamptz;
BEGIN
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
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
           AND (s.categories IS NULL OR pg_catalog.split_part(e.stream_id, '-', 1) = ANY (s.categories))
           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
           AND (size = 1 OR event_store.consumer_group_member(e.stream_id, size) = member)
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;
COMMENT ON FUNCTION event_store.poll(text, int, int, int) IS
  'The next events of a subscription after its (member''s) checkpoint, from the gap-free feed, by global_position. Does not move the checkpoint: ack() does.';

-- Readers call it through read_all/read_category/poll with their own privileges.
REVOKE ALL ON FUNCTION event_store._feed_scan_from(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._feed_scan_from(bigint) TO event_store_reader;

------------------------------------------------------------------------------
-- Stream reads read only the page asked for.  Versions are contiguous, so
-- the page from version v of n events is exactly versions [v, v + n): the
-- upper bound keeps a generic plan (PL/pgSQL, prepared statements) from
-- scanning and sorting the whole rest of the stream for every page.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) $2
       AND e.stream_version OPERATOR(pg_catalog.<)
           (CASE WHEN $3 IS NULL
                   OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1))
                 THEN 9223372036854775807
                 ELSE GREATEST($2, 1) OPERATOR(pg_catalog.+) $3 END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store.read_stream_backward(
    stream_id text, from_version bigint DEFAULT NULL, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
       AND e.stream_version OPERATOR(pg_catalog.>)
           (CASE WHEN $3 IS NULL THEN 0
                 ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                      OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3
$$;
