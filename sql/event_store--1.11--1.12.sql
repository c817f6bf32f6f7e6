-- event_store 1.11 -> 1.12.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.12'" to load this file. \quit


------------------------------------------------------------------------------
-- issue 30: align upgraded installs with fresh ones
------------------------------------------------------------------------------
-- events_with_archive was created in 1.6 from e.* and a.*, which PostgreSQL
-- expands once, when the view is made: installs updated past 1.11 lack
-- the schema_version column that 1.11 added to both tables, while a fresh
-- install (sql/event_store--1.12.sql) has it.  Remade with today's columns;
-- its privileges are as before (none but the owner's).
DROP VIEW event_store.events_with_archive;
CREATE VIEW event_store.events_with_archive AS
SELECT e.*, false AS archived FROM event_store.events e
UNION ALL
SELECT a.*, true AS archived FROM event_store_archive.events a;
COMMENT ON VIEW event_store.events_with_archive IS 'Every event, attached or archived; the last column says which.';
REVOKE ALL ON event_store.events_with_archive FROM PUBLIC;

-- The partitions that CREATE EXTENSION event_store VERSION '1.0' premade
-- were extension members when _create_partition_for revoked UPDATE, DELETE
-- and TRUNCATE on them, so PostgreSQL recorded that ACL as their initial
-- privileges (pg_init_privs); 1.0 then removed them from the extension but
-- the record stayed.  pg_dump dumps a partition's ACL as the difference
-- from that record, i.e. nothing, and a restore gave the owner UPDATE,
-- DELETE and TRUNCATE on those partitions again.  Partitions are not
-- members: they have no initial privileges, as in a fresh install.
DELETE FROM pg_catalog.pg_init_privs ip
 WHERE ip.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND ip.privtype OPERATOR(pg_catalog.=) 'e'
   AND ip.objoid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent IN ('event_store.events'::pg_catalog.regclass,
                                            'event_store_archive.events'::pg_catalog.regclass))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid OPERATOR(pg_catalog.=) ip.objoid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e');


------------------------------------------------------------------------------
-- issue 29: a new group member starts where its own group left off
------------------------------------------------------------------------------
-- Where a member continues when it polls, acks or nacks: its own
-- checkpoint.  A member without one (new, or new to this group size) must
-- not skip an event of its streams that no one acknowledged.  Until 1.12 it
-- started at the lowest checkpoint of the whole subscription, which counted
-- the other members of its own size: they handle other streams, so member
-- 1 of 2 started past its own events once member 0 had acknowledged them.
-- Now only a group size other than its own counts, and only one whose
-- members 0 .. size-1 all have checkpoints: every event up to the lowest
-- of them was handled by the member that had its stream.  Of several such
-- sizes the highest such position wins; without one, the beginning of the
-- log.  A resize thus redelivers (at least once), never skips.
CREATE OR REPLACE FUNCTION event_store._subscription_position(name text, member int, size int) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(
    (SELECT c.position FROM event_store.subscription_checkpoints c
      WHERE c.name = $1 AND c.consumer_group_member = $2 AND c.consumer_group_size = $3),
    (SELECT max(g.handled) FROM (
        SELECT min(c.position) AS handled
          FROM event_store.subscription_checkpoints c
         WHERE c.name = $1 AND c.consumer_group_size <> $3
           AND c.consumer_group_member >= 0 AND c.consumer_group_member < c.consumer_group_size
         GROUP BY c.consumer_group_size
        HAVING count(*) = c.consumer_group_size) g),
    0);

-- issue 27: upcasting per column, not per composite (speed)
-- The readers passed every row through event_store._upcast() as a
-- composite (built from the scanned row, converted from the partition's row
-- type, split back into its columns): about 0.4 us a row even for types
-- without a chain.  They now compute only the three columns a chain can
-- change, from (event_type, schema_version), answered from the backend's
-- cache of the registry (src/upcast.c, "Per-column upcasting"); each call
-- site remembers its last (type, version), so a row of a type without a
-- chain costs a compare per column.  Only a chain with a step that takes
-- the whole event still builds the composite, for that row only.
CREATE FUNCTION event_store._upcast_kind(event_type text, schema_version int) RETURNS int
AS 'MODULE_PATHNAME', 'es_upcast_kind' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_kind(text, int) IS
  'What upcasting an event of this type and schema version does: 0 nothing, 1 changes the data only (event_store._upcast_data), 2 a step takes the whole event (event_store._upcast).';
CREATE FUNCTION event_store._upcast_type(event_type text, schema_version int) RETURNS text
AS 'MODULE_PATHNAME', 'es_upcast_type' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_type(text, int) IS
  'The event type an event of this type and schema version has once upcast (renames of its chain).';
CREATE FUNCTION event_store._upcast_version(event_type text, schema_version int) RETURNS int
AS 'MODULE_PATHNAME', 'es_upcast_version' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_version(text, int) IS
  'The schema version an event of this type and schema version has once upcast.';
CREATE FUNCTION event_store._upcast_data(event_type text, schema_version int, data jsonb,
                                         stream_id text, stream_version bigint) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_upcast_data' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_data(text, int, jsonb, text, bigint) IS
  'The data of an event upcast through a chain whose steps need only the data (event_store._upcast_kind 1); stream_id and stream_version name the event in errors.';
REVOKE ALL ON FUNCTION event_store._upcast_kind(text, int), event_store._upcast_type(text, int),
                       event_store._upcast_version(text, int),
                       event_store._upcast_data(text, int, jsonb, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._upcast_kind(text, int), event_store._upcast_type(text, int),
                          event_store._upcast_version(text, int),
                          event_store._upcast_data(text, int, jsonb, text, bigint) TO event_store_reader;

CREATE OR REPLACE FUNCTION event_store._read_stream_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.global_position, e.stream_id, e.stream_version,
           event_store._upcast_type(e.event_type, e.schema_version),
           CASE event_store._upcast_kind(e.event_type, e.schema_version)
                WHEN 0 THEN e.data
                WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                              e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                              e.tags, e.schema_version)::event_store.events)).data END,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
           event_store._upcast_version(e.event_type, e.schema_version)
      FROM (SELECT e.*
              FROM event_store.events e
             WHERE e.stream_id OPERATOR(pg_catalog.=) $1
               AND e.stream_version OPERATOR(pg_catalog.>=) (CASE WHEN $2 IS NOT NULL THEN GREATEST($2, event_store._first_visible_version($1)) END)
               AND e.stream_version OPERATOR(pg_catalog.<)
                   (CASE WHEN $3 IS NULL
                           OR (SELECT s.max_age FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1) IS NOT NULL
                           OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1, event_store._first_visible_version($1)))
                         THEN 9223372036854775807
                         ELSE GREATEST($2, 1, event_store._first_visible_version($1)) OPERATOR(pg_catalog.+) $3 END)
               AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.recorded_at OPERATOR(pg_catalog.>=) coalesce((SELECT pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1), '-infinity')
             ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
             LIMIT $3) e
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_backward_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.global_position, e.stream_id, e.stream_version,
           event_store._upcast_type(e.event_type, e.schema_version),
           CASE event_store._upcast_kind(e.event_type, e.schema_version)
                WHEN 0 THEN e.data
                WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                              e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                              e.tags, e.schema_version)::event_store.events)).data END,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
           event_store._upcast_version(e.event_type, e.schema_version)
      FROM (SELECT e.*
              FROM event_store.events e
             WHERE e.stream_id OPERATOR(pg_catalog.=) $1
               AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
               AND e.stream_version OPERATOR(pg_catalog.>)
                   (CASE WHEN $3 IS NULL THEN 0
                         ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                              OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
               AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.stream_version OPERATOR(pg_catalog.>=) coalesce(event_store._first_visible_version($1), 1)
               AND e.recorded_at OPERATOR(pg_catalog.>=) coalesce((SELECT pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1), '-infinity')
             ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
             LIMIT $3) e
$$;

-- issue 27: read_all, read_category and poll upcast per column too (as
-- read_stream above): each upcasting branch is now the 1.10 statement of
-- the other branch as a subquery, with the three columns a chain can change
-- computed over its rows.  poll's event_types filter (a subscription's
-- types) matches the type an event reads as, after upcasting: a type
-- renamed by an upcaster is subscribed to by its new name.
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
    -- any stream with hidden events at all? (else no per-event check)
    _hides    boolean := event_store._streams_hide(NULL);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT max_count) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT max_count;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.read_category(
    category text, after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
    scan_to   timestamptz := event_store._feed_scan_to(horizon);
    -- any stream of the category with hidden events? (else no per-event check)
    _hides    boolean := event_store._streams_hide(ARRAY[category]);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.poll(
    name text, max_count int DEFAULT 100,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
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
    pending        boolean;
    retries        bigint[];
    fresh          int; _hides boolean;  -- (one line: error line numbers stay)
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
    scan_to := event_store._feed_scan_to(horizon); _hides := event_store._streams_hide(s.categories);  -- issue 28: hidden events?
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
    IF pending THEN
        retries := ARRAY(
            SELECT r.global_position
              FROM event_store.subscription_retries r
             WHERE r.name = poll.name AND r.state = 'waiting'
               AND r.global_position <= horizon
               AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= pg_catalog.now())
               AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size))
               AND NOT event_store._subscription_held(poll.name, r.stream_id, r.global_position)
             ORDER BY r.global_position
             LIMIT max_count);
        UPDATE event_store.subscription_retries r SET delivered_at = pg_catalog.now()
         WHERE r.name = poll.name AND r.global_position = ANY (retries);
    ELSE
        retries := '{}';
    END IF;
    -- Retries first, then new events: max_count in all.  A retry is upcast
    -- like a new event (issue 27).
    fresh := max_count - pg_catalog.cardinality(retries);
    IF pg_catalog.cardinality(retries) > 0 THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries)
                 ORDER BY e.global_position) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries)
                 ORDER BY e.global_position;
        END IF;
    END IF;
    IF fresh = 0 THEN
        RETURN;
    END IF;
    IF s.categories IS NULL THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.*
                  FROM event_store.events e
                 WHERE e.global_position > after_position
                   AND e.global_position <= horizon
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY e.global_position
                 LIMIT fresh) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE e.global_position > after_position
                   AND e.global_position <= horizon
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY e.global_position
                 LIMIT fresh;
        END IF;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.*
                  FROM event_store.events e
                 WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                   AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                 LIMIT fresh) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                   AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                 LIMIT fresh;
        END IF;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT x.*
              FROM pg_catalog.unnest(categories) AS c(category)
             CROSS JOIN LATERAL (
                   SELECT e.*
                     FROM event_store.events e
                    WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (c.category, after_position)
                      AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (c.category, horizon)
                      AND e.recorded_at >= scan_from
                      AND e.recorded_at < scan_to
                      AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                      AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                      AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                WHERE r.name = poll.name AND r.global_position = e.global_position)
                                    OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                      AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT x.*
              FROM pg_catalog.unnest(categories) AS c(category)
             CROSS JOIN LATERAL (
                   SELECT e.*
                     FROM event_store.events e
                    WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (c.category, after_position)
                      AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (c.category, horizon)
                      AND e.recorded_at >= scan_from
                      AND e.recorded_at < scan_to
                      AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                      AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                      AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                WHERE r.name = poll.name AND r.global_position = e.global_position)
                                    OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                      AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh;
    END IF;
END
$$;

-- issue 27 item 2: read_by_tags returns its events upcast, and its types
-- filter matches the type an event reads as (after the renames of its
-- chain), like append_if's condition_types (src/consistency.c): a decision
-- that reads by a type's new name sees the events stored under the old
-- one, and its append condition with the same names sees them too.  While
-- nothing is to be upcast the planner keeps only the 1.11 statement
-- (_upcasting_planned() folded to a constant, as read_stream's body).
CREATE OR REPLACE FUNCTION event_store.read_by_tags(
    tags text[], types text[] DEFAULT NULL, after_position bigint DEFAULT 0)
RETURNS SETOF event_store.tagged_event
LANGUAGE sql STABLE
AS $$
    (SELECT * FROM (
        SELECT e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
               e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
               pg_catalog.max(e.global_position) OVER ()
          FROM event_store.events e
         WHERE e.tags OPERATOR(pg_catalog.@>) $1
           AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) ANY ($2))
           AND e.global_position OPERATOR(pg_catalog.>) $3
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                            AND h.truncate_before IS NOT NULL
                            AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                 OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                 OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.global_position USING OPERATOR(pg_catalog.<)) p
      WHERE NOT event_store._upcasting_planned())
    UNION ALL
    (SELECT * FROM (
        SELECT e.global_position, e.stream_id, e.stream_version,
               event_store._upcast_type(e.event_type, e.schema_version),
               CASE event_store._upcast_kind(e.event_type, e.schema_version)
                    WHEN 0 THEN e.data
                    WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                    ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                  e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                  e.tags, e.schema_version)::event_store.events)).data END,
               e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
               pg_catalog.max(e.global_position) OVER ()
          FROM event_store.events e
         WHERE e.tags OPERATOR(pg_catalog.@>) $1
           AND ($2 IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) OPERATOR(pg_catalog.=) ANY ($2))
           AND e.global_position OPERATOR(pg_catalog.>) $3
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                            AND h.truncate_before IS NOT NULL
                            AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                 OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                 OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.global_position USING OPERATOR(pg_catalog.<)) u
      WHERE event_store._upcasting_planned())
$$;


------------------------------------------------------------------------------
-- issue 29: zero-downtime rebuilds
------------------------------------------------------------------------------
-- A blue/green rebuild builds a new version of a projection's read model in
-- another table while the live one keeps being updated (inline by appends,
-- async by run_projection()).  The new version has its own checkpoint here
-- and is filled from the gap-free feed by catch_up_projection() (C), with
-- event_store.projection_target() naming its table to the handler;
-- swap_projection() finishes the catch-up while appends wait and swaps the
-- two tables' names in one transaction, so readers see the old model or
-- the new one, never a partial one.  One row while a rebuild is under way.
CREATE TABLE event_store.projection_versions (
    name             text PRIMARY KEY REFERENCES event_store.projection_registry (name) ON DELETE CASCADE,
    live_table       text NOT NULL,
    new_table        text NOT NULL,
    position         bigint NOT NULL DEFAULT 0,
    events_processed bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('event_store.projection_versions', '');
COMMENT ON TABLE event_store.projection_versions IS
  'Blue/green rebuilds under way: the live table readers use, the new version''s table and the position it is built up to. Written by rebuild_projection(into_table => ...), catch_up_projection(), swap_projection().';
REVOKE ALL ON TABLE event_store.projection_versions FROM PUBLIC;
GRANT SELECT ON event_store.projection_versions TO event_store_reader;
GRANT INSERT, UPDATE, DELETE ON event_store.projection_versions TO event_store_admin;

-- Is this event hidden from reads by its stream's lifecycle (deleted,
-- truncated, max_count, max_age)?  The predicate of the feeds' and tag
-- reads' anti-join, as one function that rebuilds use (issue 28 leftover:
-- rebuilds replayed hidden events).  Inlined by the planner.
CREATE FUNCTION event_store._event_hidden(stream_id text, stream_version bigint, recorded_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT FROM event_store.streams h
                WHERE h.stream_id OPERATOR(pg_catalog.=) $1
                  AND h.truncate_before IS NOT NULL
                  AND ($2 OPERATOR(pg_catalog.<) h.truncate_before
                       OR $2 OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                       OR $3 OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)));
REVOKE ALL ON FUNCTION event_store._event_hidden(text, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._event_hidden(text, bigint, timestamptz) TO event_store_reader, event_store_admin;

-- The table a handler or reset function writes into: the new version's
-- during the calls of a blue/green rebuild, else the argument (the live
-- table as the handler names it).
CREATE FUNCTION event_store.projection_target(live text DEFAULT NULL) RETURNS text
AS 'MODULE_PATHNAME', 'es_projection_target' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.projection_target(text) IS
  'In a projection handler or reset function: the table to write into (the new version''s during a blue/green rebuild, else live).';
GRANT EXECUTE ON FUNCTION event_store.projection_target(text) TO PUBLIC;

CREATE FUNCTION event_store.catch_up_projection(name text, max_events int DEFAULT 10000) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_catch_up_projection' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.catch_up_projection(text, int) IS
  'Blue/green rebuild: handle the next max_events events into the new version of the projection, in this transaction. Returns how many (fewer than max_events: caught up).';
REVOKE ALL ON FUNCTION event_store.catch_up_projection(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.catch_up_projection(text, int) TO event_store_admin;

-- SHARE lock on the log until commit: appends in flight end, new ones wait.
CREATE FUNCTION event_store._hold_appends() RETURNS void
AS 'MODULE_PATHNAME', 'es_hold_appends' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION event_store._hold_appends() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._hold_appends() TO event_store_admin;

-- An in-place rebuild while a blue/green one is under way would reset the
-- live version under the new one's feet: refused (55006).
CREATE OR REPLACE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name FOR UPDATE;
    PERFORM event_store._check_no_version(_rebuild_start.name);
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = pg_catalog.now(),
           rebuild_started_at = pg_catalog.clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    DELETE FROM event_store.projection_retries r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    -- as the registrar (issue 25 item 2; 1.10 ran it as the caller)
    PERFORM event_store._call_projection_reset(_rebuild_start.name);
    mode := reg.mode;
END
$$;

-- 55006 when a blue/green rebuild of the projection is under way.
CREATE FUNCTION event_store._check_no_version(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v event_store.projection_versions;
BEGIN
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name OPERATOR(pg_catalog.=) _check_no_version.name;
    IF FOUND THEN
        RAISE EXCEPTION 'a rebuild of projection "%" into % is already in progress', name, v.new_table
            USING ERRCODE = 'object_in_use',
                  DETAIL = pg_catalog.format('Its new version is built up to position %s.', v.position),
                  HINT = 'Finish it with event_store.swap_projection(), or abandon it with event_store.abandon_projection_rebuild().';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store._check_no_version(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._check_no_version(text) TO event_store_admin;

-- Start a blue/green rebuild (the names resolved by rebuild_projection()
-- with the caller's search_path) and catch the new version up to the feed.
CREATE FUNCTION event_store._rebuild_into(name text, notice_every int, live regclass, into_oid regclass,
                                          into_schema text, into_name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live_c   pg_catalog.pg_class;
    into_c   pg_catalog.pg_class;
    live_q   text;
    into_q   text;
    nonempty boolean;
    g        record;
    n        bigint;
    total    bigint := 0;
BEGIN
    PERFORM event_store._check_name(_rebuild_into.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = _rebuild_into.name) THEN
        PERFORM event_store._projection_not_found(_rebuild_into.name);
    END IF;
    -- one rebuild at a time: concurrent starts take turns here
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = _rebuild_into.name FOR UPDATE;
    PERFORM event_store._check_no_version(_rebuild_into.name);
    SELECT * INTO live_c FROM pg_class c WHERE c.oid = live;
    IF live_c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', live USING ERRCODE = 'wrong_object_type';
    END IF;
    live_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace), live_c.relname);
    -- the handler writes the new table as its registrar, and the swap
    -- renames both: only who could do that directly may ask for it
    IF NOT pg_has_role(current_user, live_c.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', live_q
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A blue/green rebuild has the projection''s handler write the new table as its registrar, and the swap renames both tables: it needs the rights of their owner.';
    END IF;
    IF into_schema IS NOT NULL AND into_schema <> (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace) THEN
        RAISE EXCEPTION 'the new version must be in the schema of %', live_q
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The swap renames the two tables; a rename does not move a table to another schema.';
    END IF;
    IF into_oid IS NOT NULL THEN
        SELECT * INTO into_c FROM pg_class c WHERE c.oid = into_oid;
        IF into_oid = live THEN
            RAISE EXCEPTION 'into_table and live_table are the same table %', live_q
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name a new table for the new version, e.g. ' || live_c.relname || '_next.';
        END IF;
        IF into_c.relkind NOT IN ('r', 'p') THEN
            RAISE EXCEPTION '% is not a table', into_oid USING ERRCODE = 'wrong_object_type';
        END IF;
        IF into_c.relnamespace <> live_c.relnamespace THEN
            RAISE EXCEPTION 'the new version must be in the schema of %', live_q
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The swap renames the two tables; a rename does not move a table to another schema.';
        END IF;
        into_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = into_c.relnamespace), into_c.relname);
        IF NOT pg_has_role(current_user, into_c.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of table %', into_q
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A blue/green rebuild has the projection''s handler write the new table as its registrar, and the swap renames both tables: it needs the rights of their owner.';
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM %s)', into_q) INTO nonempty;
        IF nonempty THEN
            RAISE EXCEPTION 'table % exists and is not empty', into_q
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'A new version is built from the log into an empty table.',
                      HINT = 'Name a new table (it is created like the live one) or an empty one.';
        END IF;
    ELSE
        -- created like the live table, with its table privileges and owner
        into_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace), into_name);
        EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING ALL)', into_q, live_q);
        FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable
                   FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = live AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, into_q,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        IF (SELECT c.relowner FROM pg_class c WHERE c.oid = into_q::regclass) <> live_c.relowner THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %I', into_q, pg_get_userbyid(live_c.relowner));
        END IF;
    END IF;
    INSERT INTO event_store.projection_versions (name, live_table, new_table)
    VALUES (_rebuild_into.name, live_q, into_q);
    LOOP
        n := event_store.catch_up_projection(_rebuild_into.name, notice_every);
        total := total + n;
        EXIT WHEN n < notice_every;
        RAISE NOTICE 'rebuilding projection "%" into %: % events', _rebuild_into.name, into_q, total;
    END LOOP;
    RAISE NOTICE 'built projection "%" into %: % events; readers still use %', _rebuild_into.name, into_q, total, live_q
        USING HINT = 'Swap it in with event_store.swap_projection(''' || _rebuild_into.name || ''').';
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION event_store._rebuild_into(text, int, regclass, regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._rebuild_into(text, int, regclass, regclass, text, text) TO event_store_admin;

-- rebuild_projection(name, notice_every) gains into_table and live_table
-- (into is a reserved word: it cannot name a parameter).  Without them it
-- rebuilds in place, as before.
DROP FUNCTION event_store.rebuild_projection(text, int);
CREATE FUNCTION event_store.rebuild_projection(name text, notice_every int DEFAULT 10000,
                                               into_table text DEFAULT NULL, live_table text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
    parts  text[];
    live   regclass;
BEGIN
    IF notice_every IS NULL OR notice_every OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'notice_every must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF into_table IS NOT NULL OR live_table IS NOT NULL THEN
        -- blue/green: names resolved with the caller's search_path
        IF into_table IS NULL OR live_table IS NULL THEN
            RAISE EXCEPTION 'into_table and live_table go together'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'live_table is the table readers use, into_table the new version''s.';
        END IF;
        live := pg_catalog.to_regclass(live_table);
        IF live IS NULL THEN
            RAISE EXCEPTION 'table "%" does not exist', live_table USING ERRCODE = 'undefined_table';
        END IF;
        parts := pg_catalog.parse_ident(into_table);
        IF pg_catalog.cardinality(parts) OPERATOR(pg_catalog.>) 2 THEN
            RAISE EXCEPTION 'invalid table name "%"', into_table USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN event_store._rebuild_into(rebuild_projection.name, notice_every, live,
                                         pg_catalog.to_regclass(into_table),
                                         CASE WHEN pg_catalog.cardinality(parts) OPERATOR(pg_catalog.=) 2 THEN parts[1] END,
                                         parts[pg_catalog.cardinality(parts)]);
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection.name) s;
    IF m OPERATOR(pg_catalog.=) 'inline' THEN
        total := event_store._replay_inline(rebuild_projection.name, notice_every);
    ELSE
        LOOP
            n := event_store.run_projection(rebuild_projection.name, notice_every);
            total := total OPERATOR(pg_catalog.+) n;
            EXIT WHEN n OPERATOR(pg_catalog.<) notice_every;
            RAISE NOTICE 'rebuilding projection "%": % events', rebuild_projection.name, total;
        END LOOP;
    END IF;
    PERFORM event_store._rebuild_finish(rebuild_projection.name, total);
    RAISE NOTICE 'rebuilt projection "%": % events', rebuild_projection.name, total;
    RETURN total;
END
$$;
COMMENT ON FUNCTION event_store.rebuild_projection(text, int, text, text) IS
  'Reset the projection and replay every visible event in this transaction (NOTICE every notice_every events); with into_table and live_table, build a new version beside the live one instead (swap it in with swap_projection()). Returns the number of events handled.';
REVOKE ALL ON FUNCTION event_store.rebuild_projection(text, int, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.rebuild_projection(text, int, text, text) TO event_store_admin;

-- Switch readers to the new version: refuse when it is more than max_lag
-- positions behind the log (55000); otherwise hold appends (SHARE lock on
-- the log, as registry changes do), catch it up to the end, lock both
-- tables and swap their names, all in this transaction.  The old version
-- keeps the new one's former name until the caller drops it (returned).
CREATE FUNCTION event_store.swap_projection(name text, max_lag bigint DEFAULT 10000) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        event_store.projection_versions;
    behind   bigint;
    n        bigint;
    live_c   pg_catalog.pg_class;
    new_c    pg_catalog.pg_class;
    nsp      text;
    tmp      text;
BEGIN
    PERFORM event_store._check_name(swap_projection.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = swap_projection.name) THEN
        PERFORM event_store._projection_not_found(swap_projection.name);
    END IF;
    IF max_lag IS NULL OR max_lag < 0 THEN
        RAISE EXCEPTION 'max_lag must be 0 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name = swap_projection.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" has no new version being built', swap_projection.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Start one with event_store.rebuild_projection(name, into_table => ..., live_table => ...).';
    END IF;
    behind := event_store._last_drawn_position() - v.position;
    IF behind > max_lag THEN
        RAISE EXCEPTION 'the new version of projection "%" has not caught up', swap_projection.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('%s is built up to position %s, %s positions behind the log (max_lag %s).',
                                  v.new_table, v.position, behind, max_lag),
                  HINT = format('Run event_store.catch_up_projection(%L) until it returns less than its max_events, then swap.',
                                swap_projection.name);
    END IF;
    -- appends in flight finish, new ones wait: the end of the log stays put
    PERFORM event_store._hold_appends();
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = swap_projection.name FOR UPDATE;
    LOOP
        n := event_store.catch_up_projection(swap_projection.name, 10000);
        EXIT WHEN n < 10000;
    END LOOP;
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name = swap_projection.name;
    EXECUTE format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE', v.live_table, v.new_table);
    SELECT * INTO live_c FROM pg_class c WHERE c.oid = v.live_table::regclass;
    SELECT * INTO new_c FROM pg_class c WHERE c.oid = v.new_table::regclass;
    nsp := (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace);
    tmp := 'es_swap_' || live_c.oid;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v.live_table, tmp);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v.new_table, live_c.relname);
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', nsp, tmp, new_c.relname);
    -- the projection continues from the new version's checkpoint; the old
    -- version's retries and parked events concern the old table
    UPDATE event_store.projection_checkpoints c
       SET position = v.position, events_processed = v.events_processed, updated_at = now(),
           rebuild_started_at = v.started_at, rebuild_target = v.position, rebuild_finished_at = clock_timestamp()
     WHERE c.name = swap_projection.name;
    DELETE FROM event_store.projection_retries r WHERE r.name = swap_projection.name;
    DELETE FROM event_store.projection_versions x WHERE x.name = swap_projection.name;
    RETURN v.new_table;
END
$$;
COMMENT ON FUNCTION event_store.swap_projection(text, bigint) IS
  'Blue/green rebuild: catch the new version up (appends wait) and swap the names of the live and new tables in this transaction. Refused (55000) when it is more than max_lag positions behind. Returns the name the old version now has.';
REVOKE ALL ON FUNCTION event_store.swap_projection(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.swap_projection(text, bigint) TO event_store_admin;

-- Give up a blue/green rebuild: the live version is untouched; the new
-- table is left to the caller (returned).
CREATE FUNCTION event_store.abandon_projection_rebuild(name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    PERFORM event_store._check_name(abandon_projection_rebuild.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = abandon_projection_rebuild.name) THEN
        PERFORM event_store._projection_not_found(abandon_projection_rebuild.name);
    END IF;
    DELETE FROM event_store.projection_versions x WHERE x.name = abandon_projection_rebuild.name
    RETURNING x.new_table INTO t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" has no new version being built', abandon_projection_rebuild.name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN t;
END
$$;
COMMENT ON FUNCTION event_store.abandon_projection_rebuild(text) IS
  'Blue/green rebuild: give it up; the live version is untouched. Returns the new version''s table, left for the caller to drop.';
REVOKE ALL ON FUNCTION event_store.abandon_projection_rebuild(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.abandon_projection_rebuild(text) TO event_store_admin;
