-- event_store 1.2 -> 1.3: the gap-free global feed.
--   * feed_horizon(), feed_mode(), the feed_status view;
--   * read_all() and read_category() deliver only positions at or below
--     the horizon, so a consumer paging by position never skips an event
--     that commits later with a lower position.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.3'" to load this file. \quit

CREATE FUNCTION event_store.feed_horizon() RETURNS bigint
AS 'MODULE_PATHNAME', 'es_feed_horizon' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.feed_horizon() IS
  'Highest global_position safe to deliver: every position at or below it is committed or will never appear. Compute it before the statement that reads.';

CREATE FUNCTION event_store.feed_mode() RETURNS text
AS 'MODULE_PATHNAME', 'es_feed_mode' LANGUAGE C STABLE;
COMMENT ON FUNCTION event_store.feed_mode() IS
  '''registry'' when event_store is in shared_preload_libraries (gap-free feed), else ''unprotected''.';

CREATE FUNCTION event_store._feed_in_flight(OUT in_flight int, OUT lowest_position bigint)
AS 'MODULE_PATHNAME', 'es_feed_in_flight' LANGUAGE C VOLATILE;

CREATE VIEW event_store.feed_status AS
SELECT event_store.feed_mode() AS mode,
       NULLIF(event_store.feed_horizon(), 9223372036854775807) AS horizon,
       f.in_flight AS appends_in_flight,
       f.lowest_position AS lowest_in_flight_position,
       (SELECT s.last_value FROM event_store.global_position_seq s) AS last_drawn_position
  FROM event_store._feed_in_flight() f;
COMMENT ON VIEW event_store.feed_status IS
  'The global feed: mode, horizon (NULL: nothing in flight), appending transactions in flight.';

-- The reads the feed's consumers page with.  PL/pgSQL (VOLATILE) so that
-- the horizon is computed in one statement and the events read in the
-- next, with a snapshot taken after it (READ COMMITTED).
CREATE OR REPLACE FUNCTION event_store.read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
BEGIN
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
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
BEGIN
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE split_part(e.stream_id, '-', 1) = category
           AND e.global_position > after_position
           AND e.global_position <= horizon
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;
