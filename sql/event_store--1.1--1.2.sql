-- event_store 1.1 -> 1.2: consistency beyond one stream.
--   * event tags (events.tags, new_event.tags), indexed per partition;
--   * event_store.append_all(): several streams, all or nothing;
--   * event_store.append_if() / read_by_tags(): query-based append
--     conditions ("dynamic consistency boundaries").
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.2'" to load this file. \quit

------------------------------------------------------------------------------
-- Tags on events
------------------------------------------------------------------------------
-- A new nullable column: no table rewrite.
ALTER TABLE event_store.events ADD COLUMN tags text[];

-- A GIN index on tags on every partition, partial so that untagged events
-- cost nothing.  New partitions get it from _create_partition_for.
DO $$
DECLARE
    part regclass;
    rel  text;
BEGIN
    FOR part IN SELECT r.partition FROM event_store.partition_ranges() r LOOP
        SELECT c.relname INTO rel FROM pg_catalog.pg_class c WHERE c.oid = part;
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin (tags) WHERE tags IS NOT NULL',
                       rel || '_tags_idx', part);
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION event_store._create_partition_for(ts timestamptz) RETURNS regclass
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET datestyle = 'ISO, YMD'
SET client_min_messages = warning
AS $$
DECLARE
    existing regclass;
    lo       timestamptz;
    hi       timestamptz;
    name     text;
    suffix   int := 0;
BEGIN
    IF ts IS NULL OR NOT isfinite(ts) THEN
        RAISE EXCEPTION 'cannot create an event partition for %', coalesce(ts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    LOCK TABLE event_store.events IN SHARE UPDATE EXCLUSIVE MODE;

    SELECT r.partition INTO existing FROM event_store.partition_ranges() r
     WHERE ts >= r.range_start AND ts < r.range_end;
    IF existing IS NOT NULL THEN
        RETURN existing;
    END IF;

    SELECT a.range_start, a.range_end INTO lo, hi
      FROM event_store._aligned_range(ts, event_store.partition_interval()) a;
    SELECT greatest(lo, max(r.range_end)) INTO lo FROM event_store.partition_ranges() r WHERE r.range_end <= ts;
    SELECT least(hi, min(r.range_start)) INTO hi FROM event_store.partition_ranges() r WHERE r.range_start > ts;
    lo := coalesce(lo, ts);

    name := 'events_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS');
    WHILE to_regclass(format('event_store.%I', name)) IS NOT NULL LOOP
        suffix := suffix + 1;
        name := 'events_p' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD"_"HH24MISS') || '_' || suffix;
    END LOOP;

    EXECUTE format('CREATE TABLE event_store.%I (LIKE event_store.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMPRESSION) USING event_store_log', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I (stream_id, stream_version)', name || '_stream_idx', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I (global_position)', name || '_position_idx', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I (pg_catalog.split_part(stream_id, ''-'', 1), global_position)', name || '_category_idx', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I (event_id)', name || '_event_id_idx', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I USING gin (tags) WHERE tags IS NOT NULL', name || '_tags_idx', name);
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.%I FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_modification()', name);
    EXECUTE format('ALTER TABLE event_store.%I ENABLE ALWAYS TRIGGER events_no_truncate', name);
    EXECUTE format('REVOKE ALL ON event_store.%I FROM PUBLIC', name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON event_store.%I FROM CURRENT_USER', name);
    EXECUTE format('ALTER TABLE event_store.events ATTACH PARTITION event_store.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN format('event_store.%I', name)::regclass;
END
$$;

-- new_event gains tags; the constructor and append_event take them.
ALTER TYPE event_store.new_event ADD ATTRIBUTE tags text[];

DROP FUNCTION event_store.event(text, jsonb, jsonb, uuid, timestamptz);
CREATE FUNCTION event_store.event(
    event_type text, data jsonb, metadata jsonb DEFAULT NULL,
    event_id uuid DEFAULT NULL, occurred_at timestamptz DEFAULT NULL,
    tags text[] DEFAULT NULL)
RETURNS event_store.new_event
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(event_type, data, metadata, event_id, occurred_at, tags)::event_store.new_event;

DROP FUNCTION event_store.append_event(text, text, jsonb, jsonb, bigint, uuid, timestamptz);
CREATE FUNCTION event_store.append_event(
    stream_id text, event_type text, data jsonb, metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL, event_id uuid DEFAULT NULL,
    occurred_at timestamptz DEFAULT NULL, tags text[] DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.append_event(text, text, jsonb, jsonb, bigint, uuid, timestamptz, text[]) IS
  'Append one event to a stream; returns the new stream version.';

------------------------------------------------------------------------------
-- Several streams at once
------------------------------------------------------------------------------
CREATE TYPE event_store.stream_append AS (
    stream_id        text,
    expected_version bigint,
    events           event_store.new_event[]
);

CREATE FUNCTION event_store.append_all(appends event_store.stream_append[])
RETURNS TABLE (stream_id text, version bigint)
AS 'MODULE_PATHNAME', 'es_append_all' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.append_all(event_store.stream_append[]) IS
  'Append to several streams atomically, each with its own expected version; returns each stream''s new version.';

------------------------------------------------------------------------------
-- Query-based append conditions
------------------------------------------------------------------------------
CREATE FUNCTION event_store.append_if(
    events event_store.new_event[], stream_id text,
    condition_types text[], condition_tags text[], after_position bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_if' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.append_if(event_store.new_event[], text, text[], text[], bigint) IS
  'Append only if no event with all condition_tags (and one of condition_types) was appended after after_position; else SQLSTATE ES005.';

CREATE TYPE event_store.tagged_event AS (
    global_position    bigint,
    stream_id          text,
    stream_version     bigint,
    event_type         text,
    data               jsonb,
    metadata           jsonb,
    event_id           uuid,
    recorded_at        timestamptz,
    occurred_at        timestamptz,
    tags               text[],
    condition_position bigint
);

-- The events carrying all the tags (and of one of the types, when given),
-- after a position, by position; condition_position, on every row, is the
-- position to pass to append_if (the last one read).
CREATE FUNCTION event_store.read_by_tags(
    tags text[], types text[] DEFAULT NULL, after_position bigint DEFAULT 0)
RETURNS SETOF event_store.tagged_event
LANGUAGE sql STABLE
AS $$
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
           max(e.global_position) OVER ()
      FROM event_store.events e
     WHERE e.tags @> $1
       AND ($2 IS NULL OR e.event_type = ANY ($2))
       AND e.global_position > $3
     ORDER BY e.global_position
$$;
COMMENT ON FUNCTION event_store.read_by_tags(text[], text[], bigint) IS
  'Events carrying all the tags, by position; condition_position is what to pass to append_if as after_position.';
