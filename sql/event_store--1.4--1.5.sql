-- event_store 1.4 -> 1.5: roles and privileges.
--   * roles event_store_reader, event_store_writer (member of reader) and
--     event_store_admin (member of writer), created when missing (roles are
--     cluster-wide: the databases of a cluster share them);
--   * PUBLIC gets nothing: EXECUTE on every function of the extension, and
--     every privilege on its schema, tables, views and sequence, revoked;
--   * each role gets what its job needs (README "Roles and security",
--     docs/security.md);
--   * the append functions keep running with the caller's privileges (so
--     that inline projection handlers and user triggers never run as the
--     extension's owner); writers hold INSERT on events and INSERT, UPDATE
--     on streams, and a statement-level trigger refuses every write to
--     those two tables that does not come from the append path;
--   * the SQL-language reads are qualified down to their operators.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.5'" to load this file. \quit

------------------------------------------------------------------------------
-- Roles.  NOLOGIN group roles: grant them to login roles.  Reused when they
-- exist (another database of the cluster made them, or an administrator
-- did); DROP EXTENSION leaves them (other databases may use them).
------------------------------------------------------------------------------
DO $$
DECLARE
    r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['event_store_reader', 'event_store_writer', 'event_store_admin'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = r) THEN
            EXECUTE pg_catalog.format('CREATE ROLE %I NOLOGIN', r);
        END IF;
    END LOOP;
    IF NOT pg_catalog.pg_has_role('event_store_writer', 'event_store_reader', 'MEMBER') THEN
        GRANT event_store_reader TO event_store_writer;
    END IF;
    IF NOT pg_catalog.pg_has_role('event_store_admin', 'event_store_writer', 'MEMBER') THEN
        GRANT event_store_writer TO event_store_admin;
    END IF;
END
$$;

------------------------------------------------------------------------------
-- Direct writes to the log and the streams table: only the append path.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._refuse_direct_write() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_refuse_direct_write' LANGUAGE C;

CREATE TRIGGER _direct_write_guard BEFORE INSERT OR UPDATE OR DELETE ON event_store.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_direct_write();
CREATE TRIGGER _direct_write_guard BEFORE INSERT OR UPDATE OR DELETE ON event_store.streams
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_direct_write();
ALTER TABLE event_store.events ENABLE ALWAYS TRIGGER _direct_write_guard;
ALTER TABLE event_store.streams ENABLE ALWAYS TRIGGER _direct_write_guard;

------------------------------------------------------------------------------
-- SQL-language reads: the same bodies, every operator and function
-- schema-qualified, so that objects on the caller's search_path cannot
-- change what they do.  Still plain SQL, still inlined.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.stream_version(stream_id text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN coalesce((SELECT s.version FROM event_store.streams s
                             WHERE s.stream_id OPERATOR(pg_catalog.=) stream_version.stream_id), 0);

CREATE OR REPLACE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) $2
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store.read_stream_backward(
    stream_id text, from_version bigint DEFAULT NULL, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store.read_by_tags(
    tags text[], types text[] DEFAULT NULL, after_position bigint DEFAULT 0)
RETURNS SETOF event_store.tagged_event
LANGUAGE sql STABLE
AS $$
    SELECT e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
           pg_catalog.max(e.global_position) OVER ()
      FROM event_store.events e
     WHERE e.tags OPERATOR(pg_catalog.@>) $1
       AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) ANY ($2))
       AND e.global_position OPERATOR(pg_catalog.>) $3
     ORDER BY e.global_position USING OPERATOR(pg_catalog.<)
$$;

CREATE OR REPLACE FUNCTION event_store.drop_snapshots(stream_id text DEFAULT NULL, reducer regprocedure DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    WITH gone AS (
        DELETE FROM event_store.snapshots s
         WHERE ($1 IS NULL OR s.stream_id OPERATOR(pg_catalog.=) $1)
           AND ($2 IS NULL OR s.reducer OPERATOR(pg_catalog.=) event_store._reducer_key($2))
        RETURNING 1)
    SELECT pg_catalog.count(*) FROM gone
$$;

------------------------------------------------------------------------------
-- consumer_group_member(stream, 0) divided by zero (SQLSTATE 22012): now
-- 22023 with a message.  Still one inlinable SQL expression.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._invalid_group_size(consumer_group_size int) RETURNS int
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'consumer_group_size must be at least 1, got %', consumer_group_size
        USING ERRCODE = 'invalid_parameter_value';
END
$$;

CREATE OR REPLACE FUNCTION event_store.consumer_group_member(stream_id text, consumer_group_size int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN consumer_group_size OPERATOR(pg_catalog.<) 1
            THEN event_store._invalid_group_size(consumer_group_size)
            ELSE (pg_catalog.abs(event_store._hash_64(event_store.cardinal_id(stream_id)))
                  OPERATOR(pg_catalog.%) consumer_group_size)::int END;

------------------------------------------------------------------------------
-- PUBLIC gets nothing.
------------------------------------------------------------------------------
REVOKE ALL ON SCHEMA event_store FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA event_store FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA event_store FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA event_store FROM PUBLIC;
REVOKE ALL ON ALL PROCEDURES IN SCHEMA event_store FROM PUBLIC;
REVOKE ALL ON TYPE event_store.new_event, event_store.stream_append, event_store.tagged_event FROM PUBLIC;

------------------------------------------------------------------------------
-- Grants.  Functions are granted by name (every overload); a name that
-- does not exist is skipped.  Functions in no list (trigger and access
-- method handlers, the DDL guard's helpers) are executable by no one but
-- superusers and the extension's owner: triggers do not need EXECUTE.
------------------------------------------------------------------------------
DO $$
DECLARE
    grants constant text[][] := ARRAY[
      -- readers: read, fold, follow the feed, poll and acknowledge
      ['event_store_reader', 'event'], ['event_store_reader', 'stream_version'],
      ['event_store_reader', 'read_stream'], ['event_store_reader', 'read_stream_backward'],
      ['event_store_reader', 'category'], ['event_store_reader', 'read_category'],
      ['event_store_reader', 'read_all'], ['event_store_reader', 'read_by_tags'],
      ['event_store_reader', 'partition_ranges'], ['event_store_reader', 'partition_interval'],
      ['event_store_reader', 'premake_count'], ['event_store_reader', '_aligned_range'],
      ['event_store_reader', 'feed_horizon'], ['event_store_reader', 'feed_mode'],
      ['event_store_reader', '_feed_in_flight'], ['event_store_reader', '_last_drawn_position'],
      ['event_store_reader', 'fold'], ['event_store_reader', 'fold_to_version'],
      ['event_store_reader', 'fold_bitemporal'], ['event_store_reader', 'stream_partitions'],
      ['event_store_reader', 'state_as_of'], ['event_store_reader', 'state_bitemporal'],
      ['event_store_reader', 'merge_patch'], ['event_store_reader', 'jsonb_merge_patch'],
      ['event_store_reader', 'merge_patch_agg'], ['event_store_reader', 'last_by_type'],
      ['event_store_reader', 'count_by_type'], ['event_store_reader', 'event_count'],
      ['event_store_reader', 'reducer_revision'], ['event_store_reader', '_reducer_key'],
      ['event_store_reader', '_definition_revision'],
      ['event_store_reader', 'cardinal_id'], ['event_store_reader', 'consumer_group_member'],
      ['event_store_reader', '_hash_64'], ['event_store_reader', '_invalid_group_size'], ['event_store_reader', 'poll'],
      ['event_store_reader', 'ack'], ['event_store_reader', '_subscription_args'],
      ['event_store_reader', '_subscription_position'], ['event_store_reader', '_check_name'],
      ['event_store_reader', '_check_filter'],
      -- writers: append (a new partition, when one is missing, is made by
      -- the SECURITY DEFINER _create_partition_for)
      ['event_store_writer', 'append'], ['event_store_writer', 'append_event'],
      ['event_store_writer', 'append_all'], ['event_store_writer', 'append_if'],
      ['event_store_writer', '_create_partition_for'],
      -- admins: partitions, snapshots and reducers, projections, subscriptions, maintenance
      ['event_store_admin', 'premake_partitions'], ['event_store_admin', 'set_partition_interval'],
      ['event_store_admin', 'set_premake_partitions'], ['event_store_admin', 'take_snapshot'],
      ['event_store_admin', 'set_reducer_revision'], ['event_store_admin', 'set_snapshot_policy'],
      ['event_store_admin', 'drop_snapshots'], ['event_store_admin', 'drop_stale_snapshots'],
      ['event_store_admin', 'create_projection'], ['event_store_admin', 'drop_projection'],
      ['event_store_admin', '_check_handler'], ['event_store_admin', '_projection_not_found'],
      ['event_store_admin', 'run_projection'], ['event_store_admin', '_replay_inline'],
      ['event_store_admin', '_rebuild_start'], ['event_store_admin', '_rebuild_finish'],
      ['event_store_admin', 'rebuild_projection'], ['event_store_admin', 'rebuild_projection_in_batches'],
      ['event_store_admin', 'subscribe'], ['event_store_admin', 'unsubscribe'],
      ['event_store_admin', 'run_maintenance'], ['event_store_admin', 'schedule_maintenance'],
      ['event_store_admin', 'unschedule_maintenance'], ['event_store_admin', 'archive_partition'],
      ['event_store_admin', 'redact'], ['event_store_admin', 'redact_event']];
    p record;
BEGIN
    FOR i IN 1 .. pg_catalog.array_length(grants, 1) LOOP
        FOR p IN SELECT f.oid::regprocedure AS sig, f.prokind
                   FROM pg_catalog.pg_proc f
                  WHERE f.pronamespace OPERATOR(pg_catalog.=) 'event_store'::regnamespace
                    AND f.proname OPERATOR(pg_catalog.=) grants[i][2] LOOP
            EXECUTE pg_catalog.format('GRANT EXECUTE ON %s %s TO %I',
                CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'FUNCTION' ELSE 'FUNCTION' END,
                p.sig, grants[i][1]);
        END LOOP;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA event_store TO event_store_reader;
GRANT USAGE ON TYPE event_store.new_event, event_store.stream_append, event_store.tagged_event
    TO event_store_reader;

-- Readers: every table and view of the extension, and the sequence's
-- last value (feed_status, lag).
DO $$
DECLARE
    rel regclass;
BEGIN
    FOR rel IN SELECT c.oid::regclass FROM pg_catalog.pg_class c
                WHERE c.relnamespace OPERATOR(pg_catalog.=) 'event_store'::regnamespace
                  AND c.relkind IN ('r', 'p', 'v', 'S')
                  AND c.relispartition IS FALSE
                  AND c.oid IN (SELECT d.objid FROM pg_catalog.pg_depend d
                                 WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::regclass
                                   AND d.deptype OPERATOR(pg_catalog.=) 'e'
                                   AND d.refobjid OPERATOR(pg_catalog.=)
                                       (SELECT x.oid FROM pg_catalog.pg_extension x
                                         WHERE x.extname OPERATOR(pg_catalog.=) 'event_store')) LOOP
        EXECUTE pg_catalog.format('GRANT SELECT ON %s TO event_store_reader', rel);
    END LOOP;
END
$$;
-- ack() moves a consumer's own checkpoint.
GRANT INSERT, UPDATE ON event_store.subscription_checkpoints TO event_store_reader;

-- Writers: what the append functions do as the caller.  The guard trigger
-- above refuses the same statements when they do not come from them.
GRANT INSERT ON event_store.events TO event_store_writer;
GRANT INSERT, UPDATE ON event_store.streams TO event_store_writer;
GRANT USAGE ON SEQUENCE event_store.global_position_seq TO event_store_writer;

-- Admins: settings, reducers' policies, snapshots, projections and
-- subscriptions.  Never UPDATE, DELETE or TRUNCATE on the log.
GRANT INSERT, UPDATE, DELETE ON event_store.settings, event_store.reducers, event_store.snapshots,
    event_store.projection_registry, event_store.projection_checkpoints,
    event_store.subscriptions, event_store.subscription_checkpoints
    TO event_store_admin;

-- The Message DB companion's role (extension event_store_messagedb) writes
-- through event_store.append_event: it is a writer.  When the companion is
-- installed after this update, run the same GRANT (docs/security.md).
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'message_store')
       AND NOT pg_catalog.pg_has_role('message_store', 'event_store_writer', 'MEMBER') THEN
        GRANT event_store_writer TO message_store;
    END IF;
END
$$;
