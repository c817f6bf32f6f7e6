-- event_store_messagedb 1.2 -> 1.3: stream lifecycle (event_store issue 28).
\echo Use "ALTER EXTENSION event_store_messagedb UPDATE TO '1.3'" to load this file. \quit

------------------------------------------------------------------------------
-- issue 28: the Message DB reads hide the events that event_store's
-- delete_stream(), truncate_stream() and stream metadata (max_count,
-- max_age) hide, with the same check against the stream's row in
-- event_store.streams as event_store's own reads (event_store 1.11,
-- README "Deleting and truncating streams").  Only the query conditions
-- change.  message_store.stream_version keeps returning the stream's real
-- last position: writers pass it as expected_version, and a soft-deleted
-- stream's versions continue.  The views (message_store.messages, the
-- summaries) still show every stored message.
--
-- The reads also keep upcasting their messages (event_store issue 27,
-- messagedb 1.2), now only while event_store._upcasting() is true: with no
-- upcaster to apply they run the plain statement, no _upcast() per row.
------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute
                    WHERE attrelid OPERATOR(pg_catalog.=) 'event_store.streams'::regclass
                      AND attname OPERATOR(pg_catalog.=) 'truncate_before' AND NOT attisdropped) THEN
        RAISE EXCEPTION 'event_store_messagedb 1.3 needs event_store 1.11 or later'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'ALTER EXTENSION event_store UPDATE first.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION message_store.get_stream_messages(
    stream_name varchar, "position" bigint DEFAULT 0, batch_size bigint DEFAULT 1000,
    condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    _stream text := get_stream_messages.stream_name;
    _position bigint := coalesce(get_stream_messages.position, 0);
    _batch_size bigint := coalesce(get_stream_messages.batch_size, 1000);
    _limit bigint := CASE WHEN _batch_size OPERATOR(pg_catalog.=) -1 THEN NULL ELSE _batch_size END;
BEGIN
    IF message_store.is_category(get_stream_messages.stream_name) THEN
        RAISE EXCEPTION 'Must be a stream name: %', get_stream_messages.stream_name
            USING HINT = 'A stream name has a ''-'' between category and id; read a category with get_category_messages.';
    END IF;

    IF get_stream_messages.condition IS NOT NULL THEN
        IF pg_catalog.current_setting('message_store.sql_condition', true) IS NULL OR
           pg_catalog.current_setting('message_store.sql_condition', true) OPERATOR(pg_catalog.=) 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated'
                USING HINT = 'SET message_store.sql_condition = on';
        END IF;
        IF event_store._upcasting() THEN  -- (event_store issue 27) the condition sees the upcast message
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT (x.e).event_id AS id, (x.e).stream_id AS stream_name, (x.e).event_type AS type,
                            (x.e).stream_version OPERATOR(pg_catalog.-) 1 AS position, (x.e).global_position,
                            (x.e).data, (x.e).metadata, ((x.e).recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
                      WHERE e.stream_id OPERATOR(pg_catalog.=) $1
                        AND e.stream_version OPERATOR(pg_catalog.>) $2
                        AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                              AND h.truncate_before IS NOT NULL
                              AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                   OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                   OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age))) OFFSET 0) x) messages
              WHERE (' || get_stream_messages.condition || ')
              ORDER BY position
              LIMIT $3'
            USING _stream, _position, _limit;
        ELSE
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT e.event_id AS id, e.stream_id AS stream_name, e.event_type AS type,
                            e.stream_version OPERATOR(pg_catalog.-) 1 AS position, e.global_position,
                            e.data, e.metadata, (e.recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM event_store.events e
                      WHERE e.stream_id OPERATOR(pg_catalog.=) $1
                        AND e.stream_version OPERATOR(pg_catalog.>) $2
                        AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                              AND h.truncate_before IS NOT NULL
                              AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                   OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                   OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))) messages
              WHERE (' || get_stream_messages.condition || ')
              ORDER BY position
              LIMIT $3'
            USING _stream, _position, _limit;
        END IF;
        RETURN;
    END IF;

    IF event_store._upcasting() THEN  -- (event_store issue 27)
        RETURN QUERY
        SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
               (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
               (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
          FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) _stream
           AND e.stream_version OPERATOR(pg_catalog.>) _position
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version
         LIMIT _limit) u;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
        SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
               e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
               e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
          FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) _stream
           AND e.stream_version OPERATOR(pg_catalog.>) _position
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version
         LIMIT _limit;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION message_store.get_category_messages(
    category varchar, "position" bigint DEFAULT 1, batch_size bigint DEFAULT 1000,
    correlation varchar DEFAULT NULL, consumer_group_member bigint DEFAULT NULL,
    consumer_group_size bigint DEFAULT NULL, condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    _category text := get_category_messages.category;
    _position bigint := coalesce(get_category_messages.position, 1);
    _batch_size bigint := coalesce(get_category_messages.batch_size, 1000);
    _limit bigint := CASE WHEN _batch_size OPERATOR(pg_catalog.=) -1 THEN NULL ELSE _batch_size END;
    _member bigint := get_category_messages.consumer_group_member;
    _size bigint := get_category_messages.consumer_group_size;
    _correlation text := get_category_messages.correlation;
BEGIN
    IF NOT message_store.is_category(_category) THEN
        RAISE EXCEPTION 'Must be a category: %', _category
            USING HINT = 'A category has no ''-''; read one stream with get_stream_messages.';
    END IF;

    IF _correlation IS NOT NULL AND pg_catalog.strpos(_correlation, '-') OPERATOR(pg_catalog.>) 0 THEN
        RAISE EXCEPTION 'Correlation must be a category (Correlation: %)', _correlation
            USING HINT = 'Pass the category of the correlation stream name.';
    END IF;

    IF (_member IS NULL) OPERATOR(pg_catalog.<>) (_size IS NULL) THEN
        RAISE EXCEPTION 'Consumer group member and size must be specified (Consumer Group Member: %, Consumer Group Size: %)',
            _member, _size;
    END IF;
    IF _size IS NOT NULL THEN
        IF _size OPERATOR(pg_catalog.<) 1 THEN
            RAISE EXCEPTION 'Consumer group size must not be less than 1 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member OPERATOR(pg_catalog.<) 0 THEN
            RAISE EXCEPTION 'Consumer group member must not be less than 0 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member OPERATOR(pg_catalog.>=) _size THEN
            RAISE EXCEPTION 'Consumer group member must be less than the group size (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
    END IF;

    IF get_category_messages.condition IS NOT NULL THEN
        IF pg_catalog.current_setting('message_store.sql_condition', true) IS NULL OR
           pg_catalog.current_setting('message_store.sql_condition', true) OPERATOR(pg_catalog.=) 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated'
                USING HINT = 'SET message_store.sql_condition = on';
        END IF;
    END IF;

    -- Message DB passes the group size as a smallint.
    _size := _size::smallint;

    -- (NULL: Message DB's query matches no row)
    IF _category IS NULL THEN
        RETURN;
    END IF;

    IF get_category_messages.condition IS NOT NULL THEN
        IF event_store._upcasting() THEN  -- (event_store issue 27) the condition sees the upcast message
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT (x.e).event_id AS id, (x.e).stream_id AS stream_name, (x.e).event_type AS type,
                            (x.e).stream_version OPERATOR(pg_catalog.-) 1 AS position, (x.e).global_position,
                            (x.e).data, (x.e).metadata, ((x.e).recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
                      WHERE (pg_catalog.split_part(e.stream_id, ''-'', 1), e.global_position) OPERATOR(pg_catalog.>=) ($1, $2)
                        AND (pg_catalog.split_part(e.stream_id, ''-'', 1), e.global_position)
                            OPERATOR(pg_catalog.<=) ($1, 9223372036854775807::bigint)
                        AND ($4 IS NULL OR pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) ''correlationStreamName'', ''-'', 1) OPERATOR(pg_catalog.=) $4)
                        AND ($6 IS NULL OR message_store._in_consumer_group(e.stream_id, $5, $6))
                        AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                              AND h.truncate_before IS NOT NULL
                              AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                   OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                   OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age))) OFFSET 0) x) messages
              WHERE (' || get_category_messages.condition || ')
              ORDER BY pg_catalog.split_part(stream_name, ''-'', 1), global_position
              LIMIT $3'
            USING _category, _position, _limit, _correlation, _member, _size;
        ELSE
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT e.event_id AS id, e.stream_id AS stream_name, e.event_type AS type,
                            e.stream_version OPERATOR(pg_catalog.-) 1 AS position, e.global_position,
                            e.data, e.metadata, (e.recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM event_store.events e
                      WHERE (pg_catalog.split_part(e.stream_id, ''-'', 1), e.global_position) OPERATOR(pg_catalog.>=) ($1, $2)
                        AND (pg_catalog.split_part(e.stream_id, ''-'', 1), e.global_position)
                            OPERATOR(pg_catalog.<=) ($1, 9223372036854775807::bigint)
                        AND ($4 IS NULL OR pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) ''correlationStreamName'', ''-'', 1) OPERATOR(pg_catalog.=) $4)
                        AND ($6 IS NULL OR message_store._in_consumer_group(e.stream_id, $5, $6))
                        AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                              AND h.truncate_before IS NOT NULL
                              AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                   OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                   OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))) messages
              WHERE (' || get_category_messages.condition || ')
              ORDER BY pg_catalog.split_part(stream_name, ''-'', 1), global_position
              LIMIT $3'
            USING _category, _position, _limit, _correlation, _member, _size;
        END IF;
        RETURN;
    END IF;

    -- Two statements, not "(_size IS NULL OR _in_consumer_group(...))":
    -- in a generic plan the planner cannot fold the NULL test, would
    -- underestimate the rows of a read without a group, and could then
    -- collect and sort the category's whole rest instead of stopping.
    IF _size IS NULL THEN
        IF event_store._upcasting() THEN  -- (event_store issue 27)
            RETURN QUERY
            SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
                   (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
                   (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
              FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) OPERATOR(pg_catalog.>=) (_category, _position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position)
                   OPERATOR(pg_catalog.<=) (_category, 9223372036854775807::bigint)
               AND (_correlation IS NULL OR
                    pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) 'correlationStreamName', '-', 1) OPERATOR(pg_catalog.=) _correlation)
               AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                     AND h.truncate_before IS NOT NULL
                     AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                          OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                          OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT _limit) u;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
            SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
                   e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
                   e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) OPERATOR(pg_catalog.>=) (_category, _position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position)
                   OPERATOR(pg_catalog.<=) (_category, 9223372036854775807::bigint)
               AND (_correlation IS NULL OR
                    pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) 'correlationStreamName', '-', 1) OPERATOR(pg_catalog.=) _correlation)
               AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                     AND h.truncate_before IS NOT NULL
                     AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                          OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                          OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT _limit;
        END IF;
    ELSE
        IF event_store._upcasting() THEN  -- (event_store issue 27)
            RETURN QUERY
            SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
                   (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
                   (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
              FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) OPERATOR(pg_catalog.>=) (_category, _position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position)
                   OPERATOR(pg_catalog.<=) (_category, 9223372036854775807::bigint)
               AND (_correlation IS NULL OR
                    pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) 'correlationStreamName', '-', 1) OPERATOR(pg_catalog.=) _correlation)
               AND message_store._in_consumer_group(e.stream_id, _member, _size)
               AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                     AND h.truncate_before IS NOT NULL
                     AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                          OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                          OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT _limit) u;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
            SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
                   e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
                   e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) OPERATOR(pg_catalog.>=) (_category, _position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position)
                   OPERATOR(pg_catalog.<=) (_category, 9223372036854775807::bigint)
               AND (_correlation IS NULL OR
                    pg_catalog.split_part(e.metadata OPERATOR(pg_catalog.->>) 'correlationStreamName', '-', 1) OPERATOR(pg_catalog.=) _correlation)
               AND message_store._in_consumer_group(e.stream_id, _member, _size)
               AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                     AND h.truncate_before IS NOT NULL
                     AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                          OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                          OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT _limit;
        END IF;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION message_store.get_last_stream_message(stream_name varchar, "type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE sql STABLE
AS $$
    -- (event_store issue 27) upcast only while event_store._upcasting(),
    -- a one-time filter of each branch
    (SELECT * FROM (
        SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
               e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
               e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
          FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
           AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) $2::text)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version DESC
         LIMIT 1) p WHERE NOT event_store._upcasting())
    UNION ALL
    (SELECT * FROM (
        SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
               (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
               (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
          FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
           AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) $2::text)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version DESC
         LIMIT 1) u) q WHERE event_store._upcasting())
$$;

-- (event_store issue 27) the reads ask event_store._upcasting() whether to
-- call event_store._upcast() on each row
GRANT EXECUTE ON FUNCTION event_store._upcasting() TO message_store;
