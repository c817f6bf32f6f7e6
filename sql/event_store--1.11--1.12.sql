-- event_store 1.11 -> 1.12.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.12'" to load this file. \quit


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
