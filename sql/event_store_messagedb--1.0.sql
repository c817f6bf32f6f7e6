-- event_store_messagedb 1.0 — Message DB 1.3's public API in schema
-- message_store, over the event_store log.  A Message DB stream is an
-- event_store stream: position = stream_version - 1, global_position is the
-- same number.  Released scripts are never edited.
--
-- Every reference below is schema-qualified, so the functions behave the
-- same whatever the caller's search_path (Message DB's own functions resolve
-- their helpers through the caller's search_path).
\echo Use "CREATE EXTENSION event_store_messagedb CASCADE" to load this file. \quit

------------------------------------------------------------------------------
-- The role Message DB's clients connect as.  Created when missing (with a
-- search_path that finds the functions unqualified, as clients call them);
-- an existing role of that name is reused as it is.
------------------------------------------------------------------------------
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'message_store') THEN
        CREATE ROLE message_store WITH LOGIN;
        ALTER ROLE message_store SET search_path = message_store, public;
    END IF;
END
$$;

------------------------------------------------------------------------------
-- The message type every read returns: Message DB's columns and types
-- (data and metadata as text, time as timestamp without time zone in UTC).
------------------------------------------------------------------------------
CREATE TYPE message_store.message AS (
    id              varchar,
    stream_name     varchar,
    type            varchar,
    position        bigint,
    global_position bigint,
    data            varchar,
    metadata        varchar,
    time            timestamp
);

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------
CREATE FUNCTION message_store.message_store_version() RETURNS varchar
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN '1.3.0';
COMMENT ON FUNCTION message_store.message_store_version() IS 'The Message DB version whose API this schema implements.';

CREATE FUNCTION message_store.hash_64(value varchar) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_mdb_hash_64'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION message_store.hash_64(varchar) IS 'First 64 bits of md5(value) as a signed bigint (Message DB''s hash).';

CREATE FUNCTION message_store.category(stream_name varchar) RETURNS varchar
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN pg_catalog.split_part(stream_name, '-', 1)::varchar;
COMMENT ON FUNCTION message_store.category(varchar) IS 'The stream name up to its first ''-''.';

-- A NULL name counts as a category, as in Message DB.
CREATE FUNCTION message_store.is_category(stream_name varchar) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(pg_catalog.strpos(stream_name, '-') = 0, true);
COMMENT ON FUNCTION message_store.is_category(varchar) IS 'True when the name has no ''-'' (or is NULL).';

CREATE FUNCTION message_store.id(stream_name varchar) RETURNS varchar
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN pg_catalog.strpos(stream_name, '-') = 0 THEN NULL
            ELSE pg_catalog.substr(stream_name, pg_catalog.strpos(stream_name, '-') + 1) END::varchar;
COMMENT ON FUNCTION message_store.id(varchar) IS 'The stream name after its first ''-'', or NULL.';

CREATE FUNCTION message_store.cardinal_id(stream_name varchar) RETURNS varchar
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN pg_catalog.split_part(message_store.id(stream_name), '+', 1)::varchar;
COMMENT ON FUNCTION message_store.cardinal_id(varchar) IS 'The id of a stream name up to its first ''+'', or NULL.';

CREATE FUNCTION message_store.acquire_lock(stream_name varchar) RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $$
DECLARE
    _category_name_hash bigint := message_store.hash_64(message_store.category(acquire_lock.stream_name));
BEGIN
    IF _category_name_hash IS NOT NULL THEN
        PERFORM pg_catalog.pg_advisory_xact_lock(_category_name_hash);
    END IF;
    RETURN _category_name_hash;
END
$$;
COMMENT ON FUNCTION message_store.acquire_lock(varchar) IS 'Transaction advisory lock on the stream''s category, as Message DB takes it (write_message does not need it here).';

-- Internal: the consumer group member Message DB gives a stream.
CREATE FUNCTION message_store._consumer_group_member(stream_name text, group_size bigint) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_mdb_consumer_group_member'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

------------------------------------------------------------------------------
-- Writing
------------------------------------------------------------------------------
CREATE FUNCTION message_store.write_message(
    id varchar, stream_name varchar, "type" varchar, data jsonb,
    metadata jsonb DEFAULT NULL, expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_mdb_write_message'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION message_store.write_message(varchar, varchar, varchar, jsonb, jsonb, bigint) IS
  'Write one message (through event_store.append_event); returns its 0-based position. expected_version: -1 no stream, N at position N.';

------------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------------
CREATE FUNCTION message_store.stream_version(stream_name varchar) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT s.version - 1 FROM event_store.streams s WHERE s.stream_id = stream_name);
COMMENT ON FUNCTION message_store.stream_version(varchar) IS 'Position of the stream''s last message, NULL when the stream has none.';

CREATE FUNCTION message_store.get_stream_messages(
    stream_name varchar, "position" bigint DEFAULT 0, batch_size bigint DEFAULT 1000,
    condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    _position bigint := coalesce(get_stream_messages.position, 0);
    _batch_size bigint := coalesce(get_stream_messages.batch_size, 1000);
    _limit bigint := CASE WHEN _batch_size = -1 THEN NULL ELSE _batch_size END;
BEGIN
    IF message_store.is_category(get_stream_messages.stream_name) THEN
        RAISE EXCEPTION 'Must be a stream name: %', get_stream_messages.stream_name
            USING HINT = 'A stream name has a ''-'' between category and id; read a category with get_category_messages.';
    END IF;

    IF get_stream_messages.condition IS NOT NULL THEN
        IF current_setting('message_store.sql_condition', true) IS NULL OR
           current_setting('message_store.sql_condition', true) = 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated'
                USING HINT = 'SET message_store.sql_condition = on';
        END IF;
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT e.event_id AS id, e.stream_id AS stream_name, e.event_type AS type,
                            e.stream_version - 1 AS position, e.global_position,
                            e.data, e.metadata, (e.recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM event_store.events e
                      WHERE e.stream_id = $1 AND e.stream_version > $2) messages
              WHERE (' || get_stream_messages.condition || ')
              ORDER BY position
              LIMIT $3'
            USING get_stream_messages.stream_name, _position, _limit;
        RETURN;
    END IF;

    RETURN QUERY
    SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
           e.stream_version - 1, e.global_position,
           e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
      FROM event_store.events e
     WHERE e.stream_id = get_stream_messages.stream_name
       AND e.stream_version > _position
       AND e.recorded_at >= (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id = get_stream_messages.stream_name)
       AND e.recorded_at <= (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id = get_stream_messages.stream_name)
     ORDER BY e.stream_version
     LIMIT _limit;
END
$$;
COMMENT ON FUNCTION message_store.get_stream_messages(varchar, bigint, bigint, varchar) IS
  'Messages of a stream from a 0-based position, at most batch_size (-1: all).';

CREATE FUNCTION message_store.get_category_messages(
    category varchar, "position" bigint DEFAULT 1, batch_size bigint DEFAULT 1000,
    correlation varchar DEFAULT NULL, consumer_group_member bigint DEFAULT NULL,
    consumer_group_size bigint DEFAULT NULL, condition varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    _position bigint := coalesce(get_category_messages.position, 1);
    _batch_size bigint := coalesce(get_category_messages.batch_size, 1000);
    _limit bigint := CASE WHEN _batch_size = -1 THEN NULL ELSE _batch_size END;
    _member bigint := get_category_messages.consumer_group_member;
    _size bigint := get_category_messages.consumer_group_size;
    _correlation varchar := get_category_messages.correlation;
BEGIN
    IF NOT message_store.is_category(get_category_messages.category) THEN
        RAISE EXCEPTION 'Must be a category: %', get_category_messages.category
            USING HINT = 'A category has no ''-''; read one stream with get_stream_messages.';
    END IF;

    IF _correlation IS NOT NULL AND pg_catalog.strpos(_correlation, '-') > 0 THEN
        RAISE EXCEPTION 'Correlation must be a category (Correlation: %)', _correlation
            USING HINT = 'Pass the category of the correlation stream name.';
    END IF;

    IF (_member IS NULL) <> (_size IS NULL) THEN
        RAISE EXCEPTION 'Consumer group member and size must be specified (Consumer Group Member: %, Consumer Group Size: %)',
            _member, _size;
    END IF;
    IF _size IS NOT NULL THEN
        IF _size < 1 THEN
            RAISE EXCEPTION 'Consumer group size must not be less than 1 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member < 0 THEN
            RAISE EXCEPTION 'Consumer group member must not be less than 0 (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
        IF _member >= _size THEN
            RAISE EXCEPTION 'Consumer group member must be less than the group size (Consumer Group Member: %, Consumer Group Size: %)',
                _member, _size;
        END IF;
    END IF;

    IF get_category_messages.condition IS NOT NULL THEN
        IF current_setting('message_store.sql_condition', true) IS NULL OR
           current_setting('message_store.sql_condition', true) = 'off' THEN
            RAISE EXCEPTION 'Retrieval with SQL condition is not activated'
                USING HINT = 'SET message_store.sql_condition = on';
        END IF;
    END IF;

    -- Message DB passes the group size as a smallint.
    _size := _size::smallint;

    IF get_category_messages.condition IS NOT NULL THEN
        RETURN QUERY EXECUTE
            'SELECT id::varchar, stream_name::varchar, type::varchar, position, global_position,
                    data::varchar, metadata::varchar, time
               FROM (SELECT e.event_id AS id, e.stream_id AS stream_name, e.event_type AS type,
                            e.stream_version - 1 AS position, e.global_position,
                            e.data, e.metadata, (e.recorded_at AT TIME ZONE ''UTC'') AS time
                       FROM event_store.events e
                      WHERE pg_catalog.split_part(e.stream_id, ''-'', 1) = $1
                        AND e.global_position >= $2
                        AND ($4 IS NULL OR pg_catalog.split_part(e.metadata->>''correlationStreamName'', ''-'', 1) = $4)
                        AND ($6 IS NULL OR message_store._consumer_group_member(e.stream_id, $6) = $5)) messages
              WHERE (' || get_category_messages.condition || ')
              ORDER BY global_position
              LIMIT $3'
            USING get_category_messages.category, _position, _limit, _correlation, _member, _size;
        RETURN;
    END IF;

    IF _size IS NULL THEN
        RETURN QUERY
        SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
               e.stream_version - 1, e.global_position,
               e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
          FROM event_store.events e
         WHERE pg_catalog.split_part(e.stream_id, '-', 1) = get_category_messages.category
           AND e.global_position >= _position
           AND (_correlation IS NULL OR
                pg_catalog.split_part(e.metadata->>'correlationStreamName', '-', 1) = _correlation)
         ORDER BY e.global_position
         LIMIT _limit;
    ELSE
        RETURN QUERY
        SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
               e.stream_version - 1, e.global_position,
               e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
          FROM event_store.events e
         WHERE pg_catalog.split_part(e.stream_id, '-', 1) = get_category_messages.category
           AND e.global_position >= _position
           AND (_correlation IS NULL OR
                pg_catalog.split_part(e.metadata->>'correlationStreamName', '-', 1) = _correlation)
           AND message_store._consumer_group_member(e.stream_id, _size) = _member
         ORDER BY e.global_position
         LIMIT _limit;
    END IF;
END
$$;
COMMENT ON FUNCTION message_store.get_category_messages(varchar, bigint, bigint, varchar, bigint, bigint, varchar) IS
  'Messages of a category from a global position, at most batch_size (-1: all); optionally by correlation category and consumer group.';

CREATE FUNCTION message_store.get_last_stream_message(stream_name varchar, "type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE sql STABLE
AS $$
    SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
           e.stream_version - 1, e.global_position,
           e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
      FROM event_store.events e
     WHERE e.stream_id = $1
       AND ($2 IS NULL OR e.event_type = $2)
       AND e.recorded_at >= (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id = $1)
       AND e.recorded_at <= (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id = $1)
     ORDER BY e.stream_version DESC
     LIMIT 1
$$;
COMMENT ON FUNCTION message_store.get_last_stream_message(varchar, varchar) IS
  'The stream''s last message, or its last message of the given type.';

------------------------------------------------------------------------------
-- Views: Message DB's messages table as a view of the log, and its summaries.
------------------------------------------------------------------------------
CREATE VIEW message_store.messages AS
SELECT e.global_position,
       e.stream_version - 1 AS position,
       (e.recorded_at AT TIME ZONE 'UTC') AS time,
       e.stream_id AS stream_name,
       e.event_type AS type,
       e.data,
       e.metadata,
       e.event_id AS id
  FROM event_store.events e;
COMMENT ON VIEW message_store.messages IS 'The event log in the shape of Message DB''s messages table (read-only; write with write_message).';

CREATE VIEW message_store.stream_summary AS
SELECT stream_name, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY stream_name ORDER BY stream_name;

CREATE VIEW message_store.type_summary AS
SELECT type, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY type ORDER BY type;

CREATE VIEW message_store.stream_type_summary AS
SELECT stream_name, type, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY stream_name, type ORDER BY stream_name, type;

CREATE VIEW message_store.type_stream_summary AS
SELECT type, stream_name, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY type, stream_name ORDER BY type, stream_name;

CREATE VIEW message_store.category_type_summary AS
SELECT pg_catalog.split_part(stream_name, '-', 1)::varchar AS category, type, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY 1, type ORDER BY 1, type;

CREATE VIEW message_store.type_category_summary AS
SELECT type, pg_catalog.split_part(stream_name, '-', 1)::varchar AS category, count(*) AS message_count,
       round(count(*) * 100 / sum(count(*)) OVER (), 2) AS percent
  FROM message_store.messages GROUP BY type, 2 ORDER BY type, 2;

------------------------------------------------------------------------------
-- Privileges of the message_store role: Message DB's (the schema, the
-- functions, the views) plus what writing and reading the log needs.
------------------------------------------------------------------------------
GRANT USAGE ON SCHEMA message_store TO message_store;
GRANT SELECT ON message_store.messages, message_store.stream_summary, message_store.type_summary,
    message_store.stream_type_summary, message_store.type_stream_summary,
    message_store.category_type_summary, message_store.type_category_summary TO message_store;
GRANT USAGE ON SCHEMA event_store TO message_store;
GRANT SELECT, INSERT ON event_store.events TO message_store;
GRANT SELECT, INSERT, UPDATE ON event_store.streams TO message_store;
GRANT USAGE, SELECT ON SEQUENCE event_store.global_position_seq TO message_store;
