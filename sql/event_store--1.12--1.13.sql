-- event_store 1.12 -> 1.13.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.13'" to load this file. \quit

-- --------------------------------------------------------------------------
-- review 1.12 item 1: one definition of the lifecycle visibility rule
-- --------------------------------------------------------------------------

-- The lifecycle rule (issue 28): does its stream's event_store.streams row
-- (truncate_before, version, max_count, max_age) hide an event?  Hidden:
-- below truncate_before (delete_stream, truncate_stream), at or below
-- version - max_count, or recorded before now() - max_age.  truncate_before
-- is set whenever any of them hides anything, and IS NOT NULL is the
-- predicate of the streams' partial indexes.  The rule's one SQL
-- definition; a plain expression without a sublink, so that the planner
-- inlines it into the anti-joins and subplans that join the stream's row
-- (their plans stay those of the expression written out).  src/lifecycle.c
-- (_stream_visible) applies the same rule from a hash; test lifecycle_reads
-- checks every read path against it.
CREATE FUNCTION event_store._lifecycle_hides(truncate_before bigint, version bigint, max_count bigint,
                                             max_age interval, stream_version bigint, recorded_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN $1 IS NOT NULL
   AND ($5 OPERATOR(pg_catalog.<) $1
        OR $5 OPERATOR(pg_catalog.<=) ($2 OPERATOR(pg_catalog.-) $3)
        OR $6 OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) $4));
REVOKE ALL ON FUNCTION event_store._lifecycle_hides(bigint, bigint, bigint, interval, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._lifecycle_hides(bigint, bigint, bigint, interval, bigint, timestamptz)
    TO event_store_reader, event_store_admin;

-- Is this event hidden from reads by its stream's lifecycle?  For the
-- rebuilds (src/projection.c) and per-event checks: the rule above on the
-- stream's row.  (A function with a sublink is not inlined: a call per
-- event; the feed reads write the subplan out, with the rule from
-- _lifecycle_hides().)
CREATE OR REPLACE FUNCTION event_store._event_hidden(stream_id text, stream_version bigint, recorded_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT FROM event_store.streams h
                WHERE h.stream_id OPERATOR(pg_catalog.=) $1
                  AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, $2, $3));

-- The feed reads (read_category, read_all, every branch of poll) and
-- poll's delete of hidden retries, with the rule from _lifecycle_hides();
-- bodies otherwise unchanged.  (A set-returning helper holding the whole
-- filter, inlined into each read, gave the same plans but cost 30-40 us
-- of planning per call where a read is planned per call: read_all, and
-- read_category and poll with more than 4 partitions; docs/benchmarks.md,
-- "One visibility rule, 1.13".)
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
    -- streams of the category with hidden events (up to 1,001): none, no
    -- per-event check; up to 1,000, one probe of a hash of them per event
    _hiding   int := event_store._streams_hiding(ARRAY[category], 1000);
    _hides    boolean := _hiding > 0;
    _few      boolean := _hiding <= 1000;
    _cats     text[] := ARRAY[category];  -- a variable: _stream_visible() fills its set once
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
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(_cats, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(_cats, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count;
    END IF;
END
$$;

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
    -- streams with hidden events (up to 1,001): none, no per-event check;
    -- up to 1,000, one probe of a hash of them per event
    _hiding   int := event_store._streams_hiding(NULL, 1000);
    _hides    boolean := _hiding > 0;
    _few      boolean := _hiding <= 1000;
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
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(NULL, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(NULL, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
             ORDER BY e.global_position
             LIMIT max_count;
    END IF;
END
$$;

-- poll's rule comes from _lifecycle_hides() too: its one restatement is in
-- the next section (with the partition bounds of nack, ack and poll).

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
                            AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age,
                                                             e.stream_version, e.recorded_at))
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
                            AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age,
                                                             e.stream_version, e.recorded_at))
         ORDER BY e.global_position USING OPERATOR(pg_catalog.<)) u
      WHERE event_store._upcasting_planned())
$$;

-- --------------------------------------------------------------------------
-- review 1.12 item 2: nack(), ack() and poll()'s hidden-retries delete read
-- the log within recorded_at bounds
-- --------------------------------------------------------------------------

-- Each read the log by global_position alone, which the partitioning (by
-- recorded_at) cannot prune: an index probe of every partition.  Now each
-- statement is bounded by recorded_at, as poll's retry read was in 1.12
-- (_feed_scan_from() below, _feed_scan_to() above), computed into
-- variables first so that the bounds prune at plan or executor startup
-- (test partition_probes counts the partitions probed).

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
    fresh          int; _hides boolean; _hiding int; _few boolean; retry_from timestamptz;  -- (one line: error line numbers stay)
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
    scan_to := event_store._feed_scan_to(horizon); _hiding := event_store._streams_hiding(s.categories, 1000); _hides := _hiding > 0; _few := _hiding <= 1000;  -- issue 28: hidden events? how many streams?
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
    IF pending AND _hides THEN
        -- issue 28: a retry or held event whose stream has since been
        -- deleted or truncated, or which max_count or max_age now hide, is
        -- dropped from the queue, not delivered (nor left to hold back the
        -- stream's visible events).
        -- (recorded_at: only the partitions from the earliest waiting row's)
        retry_from := event_store._feed_scan_from((SELECT pg_catalog.min(w.global_position) - 1 FROM event_store.subscription_retries w
                                                    WHERE w.name = poll.name AND w.state = 'waiting'));
        DELETE FROM event_store.subscription_retries r
         USING event_store.events e, event_store.streams h
         WHERE r.name = poll.name AND r.state = 'waiting'
           AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size))
           AND e.global_position = r.global_position AND e.recorded_at >= retry_from AND e.recorded_at < scan_to
           AND h.stream_id = r.stream_id
           AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at);
    END IF;
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
    IF pg_catalog.cardinality(retries) > 0 THEN retry_from := event_store._feed_scan_from((SELECT pg_catalog.min(x) FROM pg_catalog.unnest(retries) AS x) - 1);  -- issue 26/29: prunes
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
                 WHERE e.global_position = ANY (retries) AND e.recorded_at >= retry_from AND e.recorded_at < scan_to
                 ORDER BY e.global_position) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries) AND e.recorded_at >= retry_from AND e.recorded_at < scan_to
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
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
                      AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                         OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
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
                      AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                         OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND event_store._lifecycle_hides(h.truncate_before, h.version, h.max_count, h.max_age, e.stream_version, e.recorded_at)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.ack(
    name text, "position" bigint,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    after_position bigint; lo timestamptz; hi timestamptz;
BEGIN
    s := event_store._subscription_args(name, consumer_group_member, consumer_group_size);
    IF ack.position IS NULL THEN
        RAISE EXCEPTION 'position must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF ack.position < 0 OR ack.position > event_store._last_drawn_position() THEN
        RAISE EXCEPTION 'position % is not a position of the log', ack.position
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Positions drawn so far: 1 to %s.', event_store._last_drawn_position()),
                  HINT = 'Acknowledge the global_position of the last event poll() returned and you handled.';
    END IF;
    IF EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = ack.name AND r.state <> 'parked') THEN
        after_position := event_store._subscription_position(ack.name, member, size);
        -- recorded_at bounds: only the partitions that can hold the events
        -- passed (all of them when ack.position is past the horizon)
        lo := event_store._feed_scan_from(after_position);
        hi := CASE WHEN ack.position <= event_store.feed_horizon() THEN event_store._feed_scan_to(ack.position) ELSE 'infinity' END;
        -- Events the checkpoint passes that poll() held back behind an
        -- earlier event of their stream stay, as held rows.
        INSERT INTO event_store.subscription_retries (name, global_position, stream_id, event_type, attempts)
        SELECT ack.name, e.global_position, e.stream_id, e.event_type, 0
          FROM event_store.events e
         WHERE e.global_position > after_position AND e.global_position <= ack.position
           AND e.recorded_at >= lo AND e.recorded_at < hi
           AND (s.categories IS NULL OR pg_catalog.split_part(e.stream_id, '-', 1) = ANY (s.categories))
           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
           AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
           AND NOT EXISTS (SELECT 1 FROM event_store.subscription_retries r
                            WHERE r.name = ack.name AND r.global_position = e.global_position)
           AND event_store._subscription_held(ack.name, e.stream_id, e.global_position);
        -- Retries and held events poll() delivered are done.
        DELETE FROM event_store.subscription_retries r
         WHERE r.name = ack.name AND r.global_position <= ack.position
           AND r.state = 'waiting' AND r.delivered_at IS NOT NULL
           AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size));
        -- Skipped events kept poll() from delivering them again while they
        -- were after the checkpoint; once it passes them they can go.
        DELETE FROM event_store.subscription_retries r
         WHERE r.name = ack.name AND r.state = 'skipped'
           AND r.global_position <= greatest(after_position, ack.position)
           AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size));
    END IF;
    INSERT INTO event_store.subscription_checkpoints AS c
           (name, consumer_group_member, consumer_group_size, position, updated_at)
    VALUES (ack.name, member, size, ack.position, now())
    ON CONFLICT ON CONSTRAINT subscription_checkpoints_pkey
    DO UPDATE SET position = greatest(c.position, excluded.position), updated_at = excluded.updated_at;
END
$$;

-- A consumer failed on an event poll() gave it: record the attempt and when
-- to retry, or park it.  The reason is kept for parked_events (at most
-- 10000 characters).
CREATE OR REPLACE FUNCTION event_store.nack(
    subscription text, "position" bigint, reason text,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    r       event_store.subscription_retries;
    e       record;
    n       int; horizon bigint; lo timestamptz; hi timestamptz;  -- (one line: error line numbers stay)
BEGIN
    s := event_store._subscription_args(subscription, consumer_group_member, consumer_group_size);
    IF nack.position IS NULL THEN
        RAISE EXCEPTION 'position must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF reason IS NULL THEN
        RAISE EXCEPTION 'reason must not be null' USING ERRCODE = 'null_value_not_allowed',
              HINT = 'Pass the error the handler raised; parked_events shows it.';
    END IF;
    IF pg_catalog.length(reason) > 10000 THEN
        RAISE EXCEPTION 'reason is too long: % characters', pg_catalog.length(reason)
            USING ERRCODE = 'string_data_right_truncation',
                  DETAIL = 'A reason has at most 10000 characters.';
    END IF;
    SELECT * INTO r FROM event_store.subscription_retries x
     WHERE x.name = nack.subscription AND x.global_position = nack.position
       FOR UPDATE;
    IF FOUND THEN
        IF size > 1 AND NOT event_store._in_consumer_group(r.stream_id, member, size) THEN
            RAISE EXCEPTION 'event at position % was not delivered to member % of %', nack.position, member, size
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = format('Its stream %s goes to member %s.', r.stream_id,
                                      event_store.consumer_group_member(r.stream_id, size));
        END IF;
        IF r.state = 'skipped' THEN
            RAISE EXCEPTION 'event at position % of subscription "%" was skipped', nack.position, nack.subscription
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'skip_parked() dropped it.';
        END IF;
        IF r.state = 'parked' THEN
            RAISE EXCEPTION 'event at position % of subscription "%" is parked', nack.position, nack.subscription
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'event_store.replay_parked() puts it back into delivery.';
        END IF;
        IF r.delivered_at IS NULL THEN
            RAISE EXCEPTION 'event at position % of subscription "%" was not delivered since its last nack', nack.position, nack.subscription
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = CASE WHEN r.next_attempt_at IS NULL THEN 'It waits behind an earlier event of its stream.'
                                    ELSE 'It waits for its retry (next_attempt_at in event_store.subscription_retries).' END;
        END IF;
        n := r.attempts + 1;
        UPDATE event_store.subscription_retries x
           SET attempts = n, last_error = reason, last_failed_at = pg_catalog.now(),
               first_failed_at = coalesce(x.first_failed_at, pg_catalog.now()),
               state = CASE WHEN n >= s.max_attempts THEN 'parked' ELSE 'waiting' END,
               next_attempt_at = CASE WHEN n >= s.max_attempts THEN NULL
                                      ELSE pg_catalog.now() + event_store.retry_backoff(s.retry_delay, n) END,
               delivered_at = NULL
         WHERE x.name = nack.subscription AND x.global_position = nack.position;
        RETURN CASE WHEN n >= s.max_attempts THEN 'parked' ELSE 'retry' END;
    END IF;
    -- A first failure: an event after the member's checkpoint that poll()
    -- delivered to it (it matches, and no earlier event of its stream waits).
    IF nack.position <= event_store._subscription_position(nack.subscription, member, size) THEN
        RAISE EXCEPTION 'event at position % of subscription "%" is already acknowledged', nack.position, nack.subscription
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('The checkpoint is at %s.', event_store._subscription_position(nack.subscription, member, size));
    END IF;
    horizon := event_store.feed_horizon(); lo := event_store._feed_scan_from(nack.position - 1); hi := event_store._feed_scan_to(horizon);
    SELECT x.global_position, x.stream_id, x.event_type INTO e FROM event_store.events x  -- recorded_at: the event's partition; if not there, all (a row inserted late into a closed partition)
     WHERE x.global_position = nack.position AND x.global_position <= horizon AND x.recorded_at >= lo AND x.recorded_at < hi; IF NOT FOUND THEN SELECT x.global_position, x.stream_id, x.event_type INTO e FROM event_store.events x WHERE x.global_position = nack.position AND x.global_position <= horizon; END IF;
    IF NOT FOUND
       OR NOT (s.categories IS NULL OR pg_catalog.split_part(e.stream_id, '-', 1) = ANY (s.categories))
       OR NOT (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
       OR NOT (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size)) THEN
        RAISE EXCEPTION 'event at position % was not delivered to subscription "%"%', nack.position, nack.subscription,
                        CASE WHEN size > 1 THEN format(' member %s of %s', member, size) ELSE '' END
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Nack the global_position of an event poll() returned.';
    END IF;
    IF event_store._subscription_held(nack.subscription, e.stream_id, nack.position) THEN
        RAISE EXCEPTION 'event at position % of subscription "%" was not delivered', nack.position, nack.subscription
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'An earlier event of its stream waits for a retry.';
    END IF;
    n := 1;
    INSERT INTO event_store.subscription_retries AS x
           (name, global_position, stream_id, event_type, attempts, last_error,
            first_failed_at, last_failed_at, next_attempt_at, state)
    VALUES (nack.subscription, nack.position, e.stream_id, e.event_type, n, reason,
            pg_catalog.now(), pg_catalog.now(),
            CASE WHEN n >= s.max_attempts THEN NULL ELSE pg_catalog.now() + event_store.retry_backoff(s.retry_delay, n) END,
            CASE WHEN n >= s.max_attempts THEN 'parked' ELSE 'waiting' END)
    ON CONFLICT ON CONSTRAINT subscription_retries_pkey DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'event at position % of subscription "%" was nacked concurrently', nack.position, nack.subscription
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'It waits for its retry.';
    END IF;
    RETURN CASE WHEN n >= s.max_attempts THEN 'parked' ELSE 'retry' END;
END
$$;

-- --------------------------------------------------------------------------
-- review 1.12 item 3: an upgrade script asks for the projection worker by
-- name
-- --------------------------------------------------------------------------

-- At the commit of the calling transaction, ask for this database's live
-- projection worker (even if a worker marked the database as needing none):
-- the request the registry's statement triggers make, without a registry
-- change.  For upgrade scripts (sql/README.md, "An upgrade script that
-- needs the worker"); nothing when event_store is not preloaded or
-- event_store.projection_workers = 0, nothing on rollback.
CREATE FUNCTION event_store._request_projection_worker() RETURNS void
AS 'MODULE_PATHNAME', 'es_request_projection_worker' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store._request_projection_worker() IS
  'At commit, ask for this database''s live projection worker (as a registry change does). For upgrade scripts; no effect when event_store is not preloaded.';
REVOKE ALL ON FUNCTION event_store._request_projection_worker() FROM PUBLIC;

-- The update asks for a worker at its commit, as 1.12's did (there with
-- UPDATE projection_registry ... WHERE false): a database a worker marked
-- as needing none is looked at again at once, not a minute after the next
-- append (test/t/028_projection_worker_settings.pl).  The request acts at
-- commit, so its place in the script does not matter.
SELECT event_store._request_projection_worker();

-- --------------------------------------------------------------------------
-- review 1.13 poll2: poll() without JIT
-- --------------------------------------------------------------------------

-- A poll over two or more categories took 20-40 ms a call instead of
-- 0.2-0.5 ms on a log of 100,000 events.  Not its plan: each category's
-- index read stops after max_count rows and the merge sorts at most
-- max_count rows a category.  With at most 4 partitions poll's statements
-- run as generic plans, and the generic plan of that merged read costs
-- the number of categories, which the planner cannot see in a parameter
-- array (unnest: 10 rows), times the estimate of one category's read
-- (which grows with the log): over jit_above_cost (100,000) on such a
-- log, so every call compiled ~30 expressions with LLVM before reading
-- 200 rows; over jit_inline_above_cost and jit_optimize_above_cost
-- (500,000) on a log of 1,000,000, 0.1-0.5 s a call.  A one-category poll
-- crosses jit_above_cost there too.  Nothing poll runs is long enough for
-- JIT to pay off: poll runs with it off (docs/benchmarks.md, "Poll over
-- several categories, 1.13"; test poll_categories).  After every
-- restatement of poll above: CREATE OR REPLACE resets a function's SET
-- clauses.
ALTER FUNCTION event_store.poll(text, int, int, int) SET jit = off;

-- read_category runs its statements as generic plans too
-- (plan_cache_mode = force_generic_plan), whose estimate grows with the
-- log in the same way: about 92,000 on a log of 1,000,000 events, so past
-- jit_above_cost (100,000) a little beyond that every call would compile
-- before reading max_count rows.  Off, as for poll (and after every
-- restatement of read_category above, for the same reason).
ALTER FUNCTION event_store.read_category(text, bigint, int) SET jit = off;
