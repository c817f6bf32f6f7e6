-- event_store 1.0 — install script.  Released scripts are never edited:
-- later changes go to event_store--1.0--X.Y.sql upgrade scripts.
\echo Use "CREATE EXTENSION event_store" to load this file. \quit

------------------------------------------------------------------------------
-- Settings: rows only for values changed from their defaults, so that a
-- dump/restore (the table's rows are dumped) never collides with defaults.
------------------------------------------------------------------------------
CREATE TABLE event_store.settings (
    name  text PRIMARY KEY CHECK (name IN ('partition_interval', 'premake_partitions')),
    value text NOT NULL
);
SELECT pg_catalog.pg_extension_config_dump('event_store.settings', '');

CREATE FUNCTION event_store.partition_interval() RETURNS interval
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT value::interval FROM event_store.settings WHERE name = 'partition_interval'),
                interval '1 month');
COMMENT ON FUNCTION event_store.partition_interval() IS 'Width of new event partitions (default 1 month).';

CREATE FUNCTION event_store.premake_count() RETURNS int
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT value::int FROM event_store.settings WHERE name = 'premake_partitions'), 1);
COMMENT ON FUNCTION event_store.premake_count() IS 'How many partitions beyond the current one are made ahead (default 1).';

------------------------------------------------------------------------------
-- The log
------------------------------------------------------------------------------
-- Positions are drawn one at a time (CACHE 1) so that they follow the order
-- in which appends draw them; see README "The global position".
CREATE SEQUENCE event_store.global_position_seq AS bigint NO CYCLE CACHE 1;
SELECT pg_catalog.pg_extension_config_dump('event_store.global_position_seq', '');

CREATE TABLE event_store.events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version >= 1),
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb,
    event_id        uuid        NOT NULL,
    recorded_at     timestamptz NOT NULL,
    occurred_at     timestamptz NOT NULL,
    transaction_id  xid8        NOT NULL
) PARTITION BY RANGE (recorded_at);
COMMENT ON TABLE event_store.events IS 'The append-only event log, range-partitioned by recorded_at. Write with event_store.append().';

-- Indexes live on each partition, made with it by _create_partition_for:
-- (stream_id, stream_version), (global_position),
-- (split_part(stream_id, '-', 1), global_position) and (event_id).  They are
-- deliberately not partitioned indexes of the parent: the parent belongs to
-- the extension, so a restore would find ATTACH PARTITION creating indexes
-- that the dump then creates again.

-- One row per stream: its lock, its version and where it lives in the log.
CREATE TABLE event_store.streams (
    stream_id      text        PRIMARY KEY,
    category       text        NOT NULL,
    version        bigint      NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    first_position bigint      NOT NULL,
    last_position  bigint      NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX streams_category_idx ON event_store.streams (category);
SELECT pg_catalog.pg_extension_config_dump('event_store.streams', '');
COMMENT ON TABLE event_store.streams IS 'One row per stream: version, category, first/last position and time. Maintained by event_store.append().';

------------------------------------------------------------------------------
-- Append-only at the storage layer
------------------------------------------------------------------------------
CREATE FUNCTION event_store.log_am_handler(internal) RETURNS table_am_handler
AS 'MODULE_PATHNAME', 'es_log_am_handler' LANGUAGE C STRICT;
CREATE ACCESS METHOD event_store_log TYPE TABLE HANDLER event_store.log_am_handler;
COMMENT ON ACCESS METHOD event_store_log IS 'Heap storage that refuses UPDATE, DELETE and TRUNCATE (event_store partitions)';

CREATE FUNCTION event_store._refuse_modification() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_refuse_modification' LANGUAGE C;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_store.events
    FOR EACH ROW EXECUTE FUNCTION event_store._refuse_modification();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_modification();
ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER events_no_truncate;

REVOKE ALL ON event_store.events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON event_store.events FROM CURRENT_USER;

CREATE FUNCTION event_store._guard_ddl() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'es_guard_ddl' LANGUAGE C;
CREATE EVENT TRIGGER event_store_guard_ddl ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE')
    EXECUTE FUNCTION event_store._guard_ddl();
ALTER EVENT TRIGGER event_store_guard_ddl ENABLE ALWAYS;

------------------------------------------------------------------------------
-- Partitions
------------------------------------------------------------------------------
CREATE FUNCTION event_store.partition_ranges(
    OUT partition regclass, OUT range_start timestamptz, OUT range_end timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'es_partition_ranges' LANGUAGE C STABLE;
COMMENT ON FUNCTION event_store.partition_ranges() IS 'Partitions of event_store.events with their recorded_at ranges [range_start, range_end).';

-- The aligned range of the given width that holds ts: whole months counted
-- from year 0 for month widths, otherwise bins from 2000-01-01 UTC.
CREATE FUNCTION event_store._aligned_range(ts timestamptz, width interval,
    OUT range_start timestamptz, OUT range_end timestamptz)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    utc    timestamp := ts AT TIME ZONE 'UTC';
    months int := extract(year FROM width)::int * 12 + extract(month FROM width)::int;
    m      int;
    lo     timestamp;
BEGIN
    IF months > 0 THEN
        m  := extract(year FROM utc)::int * 12 + extract(month FROM utc)::int - 1;
        m  := m - (m % months);
        lo := make_timestamp(m / 12, m % 12 + 1, 1, 0, 0, 0);
    ELSE
        lo := date_bin(width, utc, timestamp '2000-01-01');
    END IF;
    range_start := lo AT TIME ZONE 'UTC';
    range_end   := (lo + width) AT TIME ZONE 'UTC';
END
$$;

-- Create the partition that holds ts unless one exists.  Serialized by the
-- SHARE UPDATE EXCLUSIVE lock ATTACH PARTITION takes anyway, which does not
-- block appends or reads.  The new range is the aligned one, clipped so it
-- never overlaps a neighbour (the width may have changed since).
CREATE FUNCTION event_store._create_partition_for(ts timestamptz) RETURNS regclass
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
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.%I FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_modification()', name);
    EXECUTE format('ALTER TABLE event_store.%I ENABLE ALWAYS TRIGGER events_no_truncate', name);
    EXECUTE format('REVOKE ALL ON event_store.%I FROM PUBLIC', name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON event_store.%I FROM CURRENT_USER', name);
    EXECUTE format('ALTER TABLE event_store.events ATTACH PARTITION event_store.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN format('event_store.%I', name)::regclass;
END
$$;
REVOKE ALL ON FUNCTION event_store._create_partition_for(timestamptz) FROM PUBLIC;

-- Restores: CREATE EXTENSION premakes empty partitions; the dump then
-- creates and attaches its own.  The DDL guard (src/guard.c) calls these so
-- that an EMPTY partition yields to a restored one with the same name or an
-- overlapping range.  A partition holding any block never yields.
CREATE FUNCTION event_store._yield_empty_partition(part regclass) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM event_store.partition_ranges() r WHERE r.partition = part)
       OR pg_relation_size(part) <> 0 THEN
        RETURN false;
    END IF;
    EXECUTE format('ALTER TABLE event_store.events DETACH PARTITION %s', part);
    EXECUTE format('DROP TABLE %s', part);
    RETURN true;
END
$$;

CREATE FUNCTION event_store._yield_overlapping_partitions(range_start text, range_end text, attaching oid)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    lo timestamptz := coalesce(range_start::timestamptz, '-infinity');
    hi timestamptz := coalesce(range_end::timestamptz, 'infinity');
    part regclass;
    n int := 0;
BEGIN
    FOR part IN SELECT r.partition FROM event_store.partition_ranges() r
                 WHERE r.partition::oid IS DISTINCT FROM attaching
                   AND r.range_start < hi AND lo < r.range_end LOOP
        IF event_store._yield_empty_partition(part) THEN
            n := n + 1;
        END IF;
    END LOOP;
    RETURN n;
END
$$;

-- Make the current partition and premake_count() more after it.
CREATE FUNCTION event_store.premake_partitions(ahead int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_ahead int := coalesce(ahead, event_store.premake_count());
    before  int;
    ts      timestamptz := clock_timestamp();
    part    regclass;
BEGIN
    IF n_ahead < 0 THEN
        RAISE EXCEPTION 'ahead must not be negative' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT count(*) INTO before FROM event_store.partition_ranges();
    FOR i IN 0 .. n_ahead LOOP
        part := event_store._create_partition_for(ts);
        SELECT r.range_end INTO ts FROM event_store.partition_ranges() r WHERE r.partition = part;
    END LOOP;
    RETURN (SELECT count(*) FROM event_store.partition_ranges()) - before;
END
$$;
COMMENT ON FUNCTION event_store.premake_partitions(int) IS 'Create the current partition and the next ones ahead of time; returns how many were created.';

CREATE FUNCTION event_store.set_partition_interval(width interval) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    months int;
BEGIN
    IF width IS NULL THEN
        RAISE EXCEPTION 'partition interval must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    months := extract(year FROM width)::int * 12 + extract(month FROM width)::int;
    IF months < 0 OR width < interval '1 second' OR width > interval '100 years' THEN
        RAISE EXCEPTION 'partition interval % is out of range', width
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use an interval between 1 second and 100 years.';
    END IF;
    IF months > 0 AND width <> make_interval(months => months) THEN
        RAISE EXCEPTION 'partition interval % mixes months with days or time', width
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use whole months (e.g. ''1 month'', ''3 months'') or a fixed width (e.g. ''7 days'', ''1 hour'').';
    END IF;
    INSERT INTO event_store.settings (name, value) VALUES ('partition_interval', width::text)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
END
$$;
COMMENT ON FUNCTION event_store.set_partition_interval(interval) IS 'Width of partitions created from now on; existing partitions keep theirs.';

CREATE FUNCTION event_store.set_premake_partitions(ahead int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ahead IS NULL OR ahead < 0 OR ahead > 1000 THEN
        RAISE EXCEPTION 'premake count must be between 0 and 1000, got %', coalesce(ahead::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO event_store.settings (name, value) VALUES ('premake_partitions', ahead::text)
    ON CONFLICT (name) DO UPDATE SET value = excluded.value;
END
$$;

CREATE VIEW event_store.partition_info AS
SELECT r.partition,
       r.range_start,
       r.range_end,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS rows,
       pg_catalog.pg_total_relation_size(r.partition) AS bytes,
       am.amname AS access_method,
       false AS archived
  FROM event_store.partition_ranges() r
  JOIN pg_catalog.pg_class c ON c.oid = r.partition
  LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
 ORDER BY r.range_start;
COMMENT ON VIEW event_store.partition_info IS 'Event partitions: range, estimated rows (planner statistics), size, access method.';

------------------------------------------------------------------------------
-- Writing
------------------------------------------------------------------------------
CREATE TYPE event_store.new_event AS (
    event_type  text,
    data        jsonb,
    metadata    jsonb,
    event_id    uuid,
    occurred_at timestamptz
);

CREATE FUNCTION event_store.event(
    event_type text, data jsonb, metadata jsonb DEFAULT NULL,
    event_id uuid DEFAULT NULL, occurred_at timestamptz DEFAULT NULL)
RETURNS event_store.new_event
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN ROW(event_type, data, metadata, event_id, occurred_at)::event_store.new_event;

CREATE FUNCTION event_store.append(
    stream_id text, events event_store.new_event[], expected_version bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.append(text, event_store.new_event[], bigint) IS
  'Append events to a stream atomically; returns the new stream version. expected_version: NULL any, 0 no stream, -1 stream exists, N exactly N.';

CREATE FUNCTION event_store.append_event(
    stream_id text, event_type text, data jsonb, metadata jsonb DEFAULT NULL,
    expected_version bigint DEFAULT NULL, event_id uuid DEFAULT NULL,
    occurred_at timestamptz DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_event' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.append_event(text, text, jsonb, jsonb, bigint, uuid, timestamptz) IS
  'Append one event to a stream; returns the new stream version.';

------------------------------------------------------------------------------
-- Reading.  Plain SQL functions, inlined by the planner; the stream's time
-- range from event_store.streams lets run-time pruning skip partitions.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.stream_version(stream_id text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT s.version FROM event_store.streams s WHERE s.stream_id = stream_version.stream_id), 0);

CREATE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id = $1
       AND e.stream_version >= $2
       AND e.recorded_at >= (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id = $1)
       AND e.recorded_at <= (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id = $1)
     ORDER BY e.stream_version
     LIMIT $3
$$;

CREATE FUNCTION event_store.read_stream_backward(
    stream_id text, from_version bigint DEFAULT NULL, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id = $1
       AND e.stream_version <= coalesce($2, 9223372036854775807)
       AND e.recorded_at >= (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id = $1)
       AND e.recorded_at <= (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id = $1)
     ORDER BY e.stream_version DESC
     LIMIT $3
$$;

CREATE FUNCTION event_store.category(stream_id text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN pg_catalog.split_part(stream_id, '-', 1);
COMMENT ON FUNCTION event_store.category(text) IS 'The category of a stream: its id up to the first ''-''.';

CREATE FUNCTION event_store.read_category(
    category text, after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE pg_catalog.split_part(e.stream_id, '-', 1) = $1
       AND e.global_position > $2
     ORDER BY e.global_position
     LIMIT $3
$$;

CREATE FUNCTION event_store.read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.global_position > $1
     ORDER BY e.global_position
     LIMIT $2
$$;

------------------------------------------------------------------------------
-- The current partition and the next one.
------------------------------------------------------------------------------
SELECT event_store.premake_partitions();

-- Partitions hold user data: they must not be members of the extension, or
-- pg_dump would skip them (and their rows).  Those made just now by this
-- script are released here; later ones are never members.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT r.partition FROM event_store.partition_ranges() r LOOP
        EXECUTE format('ALTER EXTENSION event_store DROP TABLE %s', part);
    END LOOP;
END
$$;
