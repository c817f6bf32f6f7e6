-- event_store 1.8 -> 1.9: event ids unique across the store, on request.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.9'" to load this file. \quit

------------------------------------------------------------------------------
-- The event id scope.  'stream' (the default, as before): an event id is
-- unique within its stream, and repeating one there is an idempotent
-- retry.  'store': an event id is unique across the whole log, Message
-- DB's rule.  Under 'store' each partition's (event_id) index is UNIQUE,
-- so the check of the partition an event goes into is made by the insert
-- itself, in the descent of the index it makes anyway; only the other
-- partitions are looked up.  message_store.write_message (which checks
-- store-wide in either scope) then skips a lookup per message.
------------------------------------------------------------------------------
ALTER TABLE event_store.settings DROP CONSTRAINT settings_name_check;
ALTER TABLE event_store.settings ADD CONSTRAINT settings_name_check
    CHECK (name IN ('partition_interval', 'premake_partitions', 'event_id_scope'));

CREATE FUNCTION event_store.event_id_scope() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT value FROM event_store.settings WHERE name = 'event_id_scope'), 'stream');
COMMENT ON FUNCTION event_store.event_id_scope() IS
  'Where event ids are unique: ''stream'' (default) or ''store'' (across the log; each partition''s event_id index is unique).';

-- Give one partition a plain (event_id) btree index that is UNIQUE or not,
-- and no other: the one it has if it is already so, else a new one, built
-- before the old ones are dropped, under the name partitions' indexes have.
CREATE FUNCTION event_store._rebuild_event_id_index(part regclass, make_unique boolean) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    rel    text;
    nsp    text;
    keep   oid;
    old    regclass;
BEGIN
    SELECT c.relname, n.nspname INTO rel, nsp
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = part;
    SELECT i.indexrelid INTO keep
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
     WHERE i.indrelid = part AND i.indnatts = 1 AND a.attname = 'event_id' AND am.amname = 'btree'
       AND i.indexprs IS NULL AND i.indpred IS NULL AND i.indisvalid AND i.indisunique = make_unique
     LIMIT 1;
    IF keep IS NULL THEN
        EXECUTE format('CREATE %s INDEX %I ON %I.%I (event_id)',
                       CASE WHEN make_unique THEN 'UNIQUE' ELSE '' END,
                       left(rel, 40) || '_event_id_new', nsp, rel);
        keep := format('%I.%I', nsp, left(rel, 40) || '_event_id_new')::regclass;
    END IF;
    FOR old IN
        SELECT i.indexrelid::regclass
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indrelid = part AND i.indnatts = 1 AND a.attname = 'event_id' AND am.amname = 'btree'
           AND i.indexprs IS NULL AND i.indpred IS NULL AND i.indexrelid <> keep
    LOOP
        EXECUTE format('DROP INDEX %s', old);
    END LOOP;
    IF to_regclass(format('%I.%I', nsp, rel || '_event_id_idx')) IS NULL THEN
        EXECUTE format('ALTER INDEX %s RENAME TO %I', keep::regclass, rel || '_event_id_idx');
    END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store._rebuild_event_id_index(regclass, boolean) FROM PUBLIC;

CREATE FUNCTION event_store.set_event_id_scope(scope text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    dup  record;
    part regclass;
BEGIN
    IF scope IS NULL OR scope NOT IN ('stream', 'store') THEN
        RAISE EXCEPTION 'event id scope must be ''stream'' or ''store'', got %', coalesce(quote_literal(scope), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- No append until the indexes and the setting agree (reads go on).
    LOCK TABLE event_store.events IN SHARE MODE;
    IF scope = 'store' THEN
        SELECT e.event_id, min(e.stream_id) AS first_stream, max(e.stream_id) AS last_stream, count(*) AS n
          INTO dup
          FROM event_store.events e
         GROUP BY e.event_id HAVING count(*) > 1
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'event ids are not unique across the store'
                USING ERRCODE = 'unique_violation',
                      DETAIL = format('event_id %s is in the log %s times (streams %s ... %s).',
                                      dup.event_id, dup.n, quote_literal(dup.first_stream), quote_literal(dup.last_stream)),
                      HINT = 'The log is append-only: an id reused in several streams stays so.  Keep the scope ''stream''.';
        END IF;
    END IF;
    FOR part IN SELECT r.partition FROM event_store.partition_ranges() r LOOP
        PERFORM event_store._rebuild_event_id_index(part, scope = 'store');
    END LOOP;
    IF scope = 'stream' THEN
        DELETE FROM event_store.settings WHERE name = 'event_id_scope';
    ELSE
        INSERT INTO event_store.settings (name, value) VALUES ('event_id_scope', scope)
        ON CONFLICT (name) DO UPDATE SET value = excluded.value;
    END IF;
END
$$;
COMMENT ON FUNCTION event_store.set_event_id_scope(text) IS
  'Make event ids unique across the store (''store'': refused if the log already repeats one) or within a stream (''stream'', the default); rebuilds each partition''s event_id index.';
REVOKE ALL ON FUNCTION event_store.set_event_id_scope(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.set_event_id_scope(text) TO event_store_admin;
REVOKE ALL ON FUNCTION event_store.event_id_scope() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.event_id_scope() TO event_store_reader;

-- New partitions get the event_id index the scope asks for.
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
    EXECUTE format('CREATE %s INDEX %I ON event_store.%I (event_id)',
                   CASE WHEN event_store.event_id_scope() = 'store' THEN 'UNIQUE' ELSE '' END,
                   name || '_event_id_idx', name);
    EXECUTE format('CREATE INDEX %I ON event_store.%I USING gin (tags) WHERE tags IS NOT NULL', name || '_tags_idx', name);
    EXECUTE format('CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store.%I FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_modification()', name);
    EXECUTE format('ALTER TABLE event_store.%I ENABLE ALWAYS TRIGGER events_no_truncate', name);
    EXECUTE format('REVOKE ALL ON event_store.%I FROM PUBLIC', name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON event_store.%I FROM CURRENT_USER', name);
    EXECUTE format('ALTER TABLE event_store.events ATTACH PARTITION event_store.%I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
    RETURN format('event_store.%I', name)::regclass;
END
$$;
