-- event_store_messagedb 1.1 -> 1.2: hardening (event_store issue 25).
\echo Use "ALTER EXTENSION event_store_messagedb UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Every operator and function in the reads is schema-qualified.  The
-- functions run with the caller's search_path (Message DB's clients call
-- them unqualified, with message_store and public on the path), and
-- get_stream_messages / get_last_stream_message compared text with
-- varchar through an unqualified "=": pg_catalog has no text = varchar
-- operator (the varchar is cast), so an "=" (text, varchar) planted in
-- public was the better match and ran as whoever read the stream, the
-- message_store role included.  SQL-standard bodies (RETURN ...) and the
-- views were bound when they were created and need no change.
------------------------------------------------------------------------------
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
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT e.event_id AS id, e.stream_id AS stream_name, e.event_type AS type,
                            e.stream_version OPERATOR(pg_catalog.-) 1 AS position, e.global_position,
                            e.data, e.metadata, (e.recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM event_store.events e
                      WHERE e.stream_id OPERATOR(pg_catalog.=) $1
                        AND e.stream_version OPERATOR(pg_catalog.>) $2) messages
              WHERE (' || get_stream_messages.condition || ')
              ORDER BY position
              LIMIT $3'
            USING _stream, _position, _limit;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
           e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
           e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) _stream
       AND e.stream_version OPERATOR(pg_catalog.>) _position
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
     ORDER BY e.stream_version
     LIMIT _limit;
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
                        AND ($6 IS NULL OR message_store._in_consumer_group(e.stream_id, $5, $6))) messages
              WHERE (' || get_category_messages.condition || ')
              ORDER BY pg_catalog.split_part(stream_name, ''-'', 1), global_position
              LIMIT $3'
            USING _category, _position, _limit, _correlation, _member, _size;
        RETURN;
    END IF;

    -- Two statements, not "(_size IS NULL OR _in_consumer_group(...))":
    -- in a generic plan the planner cannot fold the NULL test, would
    -- underestimate the rows of a read without a group, and could then
    -- collect and sort the category's whole rest instead of stopping.
    IF _size IS NULL THEN
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
         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
         LIMIT _limit;
    ELSE
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
         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
         LIMIT _limit;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION message_store.get_last_stream_message(stream_name varchar, "type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE sql STABLE
AS $$
    SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
           e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
           e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
       AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) $2::text)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
     ORDER BY e.stream_version DESC
     LIMIT 1
$$;

------------------------------------------------------------------------------
-- The message_store role held UPDATE on event_store.streams, enough for
-- LOCK TABLE ... IN ACCESS EXCLUSIVE MODE, which stops every append.
-- Appends update three columns only; column privileges are enough for
-- them and allow no lock mode above ROW EXCLUSIVE.
------------------------------------------------------------------------------
REVOKE UPDATE ON event_store.streams FROM message_store;
GRANT UPDATE (version, updated_at, last_position) ON event_store.streams TO message_store;

------------------------------------------------------------------------------
-- event_store issue 27: the reads return messages upcast to the current
-- schema version of their type (event_store._upcast() on each row they
-- return, after the LIMIT; with a condition, before it, so that the
-- condition sees the upcast message).  Needs event_store 1.11: update
-- event_store first.  The messages view shows the messages as stored.
------------------------------------------------------------------------------
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
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT (x.e).event_id AS id, (x.e).stream_id AS stream_name, (x.e).event_type AS type,
                            (x.e).stream_version OPERATOR(pg_catalog.-) 1 AS position, (x.e).global_position,
                            (x.e).data, (x.e).metadata, ((x.e).recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
                      WHERE e.stream_id OPERATOR(pg_catalog.=) $1
                        AND e.stream_version OPERATOR(pg_catalog.>) $2 OFFSET 0) x) messages
              WHERE (' || get_stream_messages.condition || ')
              ORDER BY position
              LIMIT $3'
            USING _stream, _position, _limit;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
           (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
           (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
      FROM (SELECT event_store._upcast(e) AS e
              FROM event_store.events e
             WHERE e.stream_id OPERATOR(pg_catalog.=) _stream
               AND e.stream_version OPERATOR(pg_catalog.>) _position
               AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
               AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _stream)
             ORDER BY e.stream_version
             LIMIT _limit) u;
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
                        AND ($6 IS NULL OR message_store._in_consumer_group(e.stream_id, $5, $6)) OFFSET 0) x) messages
              WHERE (' || get_category_messages.condition || ')
              ORDER BY pg_catalog.split_part(stream_name, ''-'', 1), global_position
              LIMIT $3'
            USING _category, _position, _limit, _correlation, _member, _size;
        RETURN;
    END IF;

    -- Two statements, not "(_size IS NULL OR _in_consumer_group(...))":
    -- in a generic plan the planner cannot fold the NULL test, would
    -- underestimate the rows of a read without a group, and could then
    -- collect and sort the category's whole rest instead of stopping.
    IF _size IS NULL THEN
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
         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
         LIMIT _limit) u;
    ELSE
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
         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
         LIMIT _limit) u;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION message_store.get_last_stream_message(stream_name varchar, "type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE sql STABLE
AS $$
    SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
           (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
           (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
      FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
       AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) $2::text)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
     ORDER BY e.stream_version DESC
     LIMIT 1) u
$$;


-- (issue 27) the role message_store reads through event_store._upcast()
GRANT EXECUTE ON FUNCTION event_store._upcast(event_store.events) TO message_store;
