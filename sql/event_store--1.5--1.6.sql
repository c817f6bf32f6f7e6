-- event_store 1.5 -> 1.6: operations.
--   * retention and archival: set_retention(), apply_retention(), whole
--     partitions detached into event_store_archive.events, the view
--     events_with_archive, restore_partition(), drop_archived_partition();
--     DROP TABLE / DETACH PARTITION of a non-empty event partition refused
--     outside these functions (src/guard.c, src/retention.c);
--   * run_maintenance() (a procedure committing between steps) and
--     schedule_maintenance() / unschedule_maintenance() with pg_cron;
--   * audited erasure: redact() (src/redact.c), audit stream
--     '$audit-redactions';
--   * views stream_stats, projection_status; partition_info shows archived
--     partitions;
--   * create_publication() for logical replication.
-- See README "Operations" and docs/operations.md.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.6'" to load this file. \quit

------------------------------------------------------------------------------
-- The archive: a second range-partitioned parent with the log's columns.
-- Archived partitions are detached from event_store.events and attached
-- here, keeping their access method (still append-only), indexes and name.
-- The parent belongs to the extension; its partitions do not, so pg_dump
-- keeps them and their rows.
------------------------------------------------------------------------------
CREATE SCHEMA event_store_archive;
COMMENT ON SCHEMA event_store_archive IS 'Archived event partitions (event_store retention). Queried through event_store.events_with_archive.';
REVOKE ALL ON SCHEMA event_store_archive FROM PUBLIC;

CREATE TABLE event_store_archive.events (LIKE event_store.events)
    PARTITION BY RANGE (recorded_at);
COMMENT ON TABLE event_store_archive.events IS 'Archived event partitions, detached from event_store.events by retention. Append-only like the log.';
REVOKE ALL ON event_store_archive.events FROM PUBLIC;
REVOKE UPDATE, DELETE, TRUNCATE ON event_store_archive.events FROM CURRENT_USER;

CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON event_store_archive.events
    FOR EACH ROW EXECUTE FUNCTION event_store._refuse_modification();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON event_store_archive.events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_modification();
ALTER TABLE event_store_archive.events ENABLE ALWAYS TRIGGER events_append_only;
ALTER TABLE event_store_archive.events ENABLE ALWAYS TRIGGER events_no_truncate;

CREATE VIEW event_store.events_with_archive AS
SELECT e.*, false AS archived FROM event_store.events e
UNION ALL
SELECT a.*, true AS archived FROM event_store_archive.events a;
COMMENT ON VIEW event_store.events_with_archive IS 'Every event, attached or archived; the last column says which.';
REVOKE ALL ON event_store.events_with_archive FROM PUBLIC;

CREATE FUNCTION event_store._partition_ranges_of(parent regclass,
    OUT partition regclass, OUT range_start timestamptz, OUT range_end timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'es_partition_ranges_of' LANGUAGE C STABLE STRICT;

-- The DDL guard now also sees DROP TABLE (src/guard.c).
DROP EVENT TRIGGER event_store_guard_ddl;
CREATE EVENT TRIGGER event_store_guard_ddl ON ddl_command_start
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'DROP TABLE')
    EXECUTE FUNCTION event_store._guard_ddl();
ALTER EVENT TRIGGER event_store_guard_ddl ENABLE ALWAYS;

-- The sanctioned DDL (src/retention.c): only these may detach or drop a
-- non-empty event partition.
CREATE FUNCTION event_store._detach_partition(parent regclass, part regclass) RETURNS void
AS 'MODULE_PATHNAME', 'es_detach_partition' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION event_store._detach_partition(regclass, regclass) FROM PUBLIC;
CREATE FUNCTION event_store._drop_archived_partition(part regclass) RETURNS void
AS 'MODULE_PATHNAME', 'es_drop_archived_partition' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION event_store._drop_archived_partition(regclass) FROM PUBLIC;

------------------------------------------------------------------------------
-- Retention policy: one row when set (none is the default), dumped.
------------------------------------------------------------------------------
CREATE TABLE event_store.retention (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    keep       interval NOT NULL CHECK (keep > interval '0'),
    mode       text NOT NULL CHECK (mode IN ('archive', 'none')),
    tablespace name,
    updated_at timestamptz NOT NULL DEFAULT pg_catalog.now()
);
SELECT pg_catalog.pg_extension_config_dump('event_store.retention', '');
REVOKE ALL ON event_store.retention FROM PUBLIC;
COMMENT ON TABLE event_store.retention IS 'The retention policy (no row: none). Set with event_store.set_retention().';

CREATE FUNCTION event_store.set_retention(keep interval, mode text DEFAULT 'archive', tablespace name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF mode IS NULL OR mode NOT IN ('archive', 'none') THEN
        RAISE EXCEPTION 'retention mode must be ''archive'' or ''none'', got %', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mode = 'none' THEN
        DELETE FROM event_store.retention;
        RETURN;
    END IF;
    IF keep IS NULL OR keep <= interval '0' OR NOT isfinite(now() - keep) THEN
        RAISE EXCEPTION 'retention period must be a positive interval, got %', coalesce(keep::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'E.g. event_store.set_retention(''2 years'', ''archive''); event_store.set_retention(NULL, ''none'') turns retention off.';
    END IF;
    IF tablespace IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_tablespace t WHERE t.spcname = tablespace) THEN
        RAISE EXCEPTION 'tablespace "%" does not exist', tablespace
            USING ERRCODE = 'undefined_object';
    END IF;
    INSERT INTO event_store.retention (keep, mode, tablespace) VALUES (keep, mode, tablespace)
    ON CONFLICT (singleton) DO UPDATE
       SET keep = excluded.keep, mode = excluded.mode, tablespace = excluded.tablespace, updated_at = now();
END
$$;
COMMENT ON FUNCTION event_store.set_retention(interval, text, name) IS
  'Retention: ''archive'' detaches whole partitions whose range ended more than keep ago into event_store_archive (optionally moved to a tablespace); ''none'' (the default) keeps everything.';
REVOKE ALL ON FUNCTION event_store.set_retention(interval, text, name) FROM PUBLIC;

-- Archive one partition of the log: detach it (sanctioned), move it to the
-- archive schema (and tablespace), attach it to the archive parent.  An
-- EMPTY partition is simply dropped: it holds no event.  lock_timeout
-- keeps DETACH (ACCESS EXCLUSIVE on the log) from queueing appends behind
-- a long reader; the next run tries again.
CREATE FUNCTION event_store._archive_partition(part regclass, tablespace name DEFAULT NULL) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
SET lock_timeout = '5s'
AS $$
DECLARE
    lo   timestamptz;
    hi   timestamptz;
    rel  text;
    idx  regclass;
BEGIN
    SELECT r.range_start, r.range_end INTO lo, hi
      FROM event_store.partition_ranges() r WHERE r.partition = part;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'relation "%" is not a partition of event_store.events', part
            USING ERRCODE = 'undefined_table';
    END IF;
    SELECT c.relname INTO rel FROM pg_class c WHERE c.oid = part;
    IF pg_relation_size(part) = 0 THEN
        EXECUTE format('ALTER TABLE event_store.events DETACH PARTITION %s', part);
        EXECUTE format('DROP TABLE %s', part);
        RETURN 'dropped empty';
    END IF;
    IF to_regclass(format('event_store_archive.%I', rel)) IS NOT NULL THEN
        RAISE EXCEPTION 'an archived partition named "%" exists already', rel
            USING ERRCODE = 'duplicate_table';
    END IF;
    PERFORM event_store._detach_partition('event_store.events'::regclass, part);
    EXECUTE format('ALTER TABLE %s SET SCHEMA event_store_archive', part);
    IF tablespace IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s SET TABLESPACE %I', part, tablespace);
        FOR idx IN SELECT i.indexrelid::regclass FROM pg_index i WHERE i.indrelid = part LOOP
            EXECUTE format('ALTER INDEX %s SET TABLESPACE %I', idx, tablespace);
        END LOOP;
    END IF;
    EXECUTE format('ALTER TABLE event_store_archive.events ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                   part, lo, hi);
    RETURN 'archived';
END
$$;
REVOKE ALL ON FUNCTION event_store._archive_partition(regclass, name) FROM PUBLIC;

-- Apply the retention policy now; returns the partitions archived.
CREATE FUNCTION event_store.apply_retention() RETURNS SETOF regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pol  event_store.retention;
    part regclass;
    rel  text;
BEGIN
    SELECT * INTO pol FROM event_store.retention;
    IF NOT FOUND OR pol.mode = 'none' THEN
        RETURN;
    END IF;
    FOR part, rel IN
        SELECT r.partition, c.relname
          FROM event_store.partition_ranges() r JOIN pg_class c ON c.oid = r.partition
         WHERE r.range_end <= now() - pol.keep
         ORDER BY r.range_start
    LOOP
        IF event_store._archive_partition(part, pol.tablespace) = 'archived' THEN
            RETURN NEXT format('event_store_archive.%I', rel)::regclass;
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION event_store.apply_retention() IS
  'Archive the partitions whose whole range is older than the retention period (empty ones are dropped); returns the archived ones.';
REVOKE ALL ON FUNCTION event_store.apply_retention() FROM PUBLIC;

-- Resolve a partition name given as 'name' or 'schema.name' within one schema.
CREATE FUNCTION event_store._partition_named(name text, schema text) RETURNS regclass
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part regclass;
BEGIN
    IF name IS NULL OR name = '' THEN
        RAISE EXCEPTION 'partition name must not be empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT c.oid INTO part
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = schema
       AND (c.relname = name OR quote_ident(n.nspname) || '.' || quote_ident(c.relname) = name
            OR n.nspname || '.' || c.relname = name)
       AND c.relkind = 'r';
    RETURN part;
END
$$;

CREATE FUNCTION event_store.restore_partition(name text) RETURNS regclass
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    part  regclass := event_store._partition_named(name, 'event_store_archive');
    lo    timestamptz;
    hi    timestamptz;
    rel   text;
    other regclass;
BEGIN
    SELECT r.range_start, r.range_end INTO lo, hi
      FROM event_store._partition_ranges_of('event_store_archive.events') r WHERE r.partition = part;
    IF part IS NULL OR lo IS NULL THEN
        RAISE EXCEPTION 'no archived partition named "%"', name
            USING ERRCODE = 'undefined_table',
                  HINT = 'SELECT partition FROM event_store.partition_info WHERE archived lists them.';
    END IF;
    SELECT c.relname INTO rel FROM pg_class c WHERE c.oid = part;
    SELECT r.partition INTO other FROM event_store.partition_ranges() r
     WHERE r.range_start < hi AND lo < r.range_end AND pg_relation_size(r.partition) <> 0
     LIMIT 1;
    IF other IS NOT NULL THEN
        RAISE EXCEPTION 'cannot restore "%": its range overlaps partition % of event_store.events, which holds events', rel, other
            USING ERRCODE = 'object_in_use',
                  DETAIL = format('The archived range is [%s, %s).', lo, hi);
    END IF;
    IF to_regclass(format('event_store.%I', rel)) IS NOT NULL
       AND pg_relation_size(format('event_store.%I', rel)::regclass) <> 0 THEN
        RAISE EXCEPTION 'cannot restore "%": event_store.% exists and holds events', rel, rel
            USING ERRCODE = 'duplicate_table';
    END IF;
    -- Empty partitions overlapping the range yield (src/guard.c).
    PERFORM event_store._yield_overlapping_partitions(lo::text, hi::text, part);
    IF to_regclass(format('event_store.%I', rel)) IS NOT NULL THEN
        PERFORM event_store._yield_empty_partition(format('event_store.%I', rel)::regclass);
    END IF;
    PERFORM event_store._detach_partition('event_store_archive.events'::regclass, part);
    EXECUTE format('ALTER TABLE %s SET SCHEMA event_store', part);
    EXECUTE format('ALTER TABLE event_store.events ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
    RETURN part;
END
$$;
COMMENT ON FUNCTION event_store.restore_partition(text) IS
  'Re-attach an archived partition (by name) to event_store.events. The retention policy would archive it again: change the policy first.';
REVOKE ALL ON FUNCTION event_store.restore_partition(text) FROM PUBLIC;

CREATE FUNCTION event_store.drop_archived_partition(name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    part regclass := event_store._partition_named(name, 'event_store_archive');
    lo   timestamptz;
    hi   timestamptz;
    n    bigint;
    rel  text;
BEGIN
    SELECT r.range_start, r.range_end INTO lo, hi
      FROM event_store._partition_ranges_of('event_store_archive.events') r WHERE r.partition = part;
    IF part IS NULL OR lo IS NULL THEN
        RAISE EXCEPTION 'no archived partition named "%"', name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Only archived partitions can be dropped: SELECT partition FROM event_store.partition_info WHERE archived.';
    END IF;
    SELECT c.relname INTO rel FROM pg_class c WHERE c.oid = part;
    EXECUTE format('SELECT count(*) FROM %s', part) INTO n;
    PERFORM event_store._detach_partition('event_store_archive.events'::regclass, part);
    PERFORM event_store._drop_archived_partition(part);
    -- The drop is recorded in the log itself.
    PERFORM event_store.append_event('$audit-retention', 'ArchivedPartitionDropped',
        jsonb_build_object('partition', rel, 'range_start', lo, 'range_end', hi, 'events', n,
                           'dropped_by', current_user::text, 'session_user', session_user::text));
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.drop_archived_partition(text) IS
  'Drop an archived partition and its events for good; returns how many events it held. Recorded in stream ''$audit-retention''.';
REVOKE ALL ON FUNCTION event_store.drop_archived_partition(text) FROM PUBLIC;

------------------------------------------------------------------------------
-- Observability
------------------------------------------------------------------------------
-- Same columns as before (archived is real now), then the archived ones.
CREATE OR REPLACE VIEW event_store.partition_info AS
SELECT p.partition, p.range_start, p.range_end,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS rows,
       pg_catalog.pg_total_relation_size(p.partition) AS bytes,
       am.amname AS access_method,
       p.archived,
       ts.spcname AS tablespace
  FROM (SELECT r.partition, r.range_start, r.range_end, false AS archived
          FROM event_store.partition_ranges() r
        UNION ALL
        SELECT r.partition, r.range_start, r.range_end, true
          FROM event_store._partition_ranges_of('event_store_archive.events') r) p
  JOIN pg_catalog.pg_class c ON c.oid = p.partition
  LEFT JOIN pg_catalog.pg_am am ON am.oid = c.relam
  LEFT JOIN pg_catalog.pg_tablespace ts ON ts.oid = c.reltablespace
 ORDER BY p.range_start, p.archived;
COMMENT ON VIEW event_store.partition_info IS 'Event partitions, attached and archived: range, estimated rows (planner statistics), size, access method, tablespace (NULL: the default).';

CREATE VIEW event_store.stream_stats AS
SELECT s.category,
       count(*) AS streams,
       sum(s.version) AS events,
       max(s.version) AS longest_stream,
       min(s.created_at) AS first_event_at,
       max(s.updated_at) AS last_event_at
  FROM event_store.streams s
 GROUP BY s.category
 ORDER BY s.category;
COMMENT ON VIEW event_store.stream_stats IS 'Per category: streams, events (the sum of stream versions, archived events included), longest stream, first and last append.';

-- Async projections: checkpoint, lag in events (matching or not) and in
-- time (age of the oldest event after the checkpoint).
CREATE VIEW event_store.projection_status AS
SELECT p.name,
       p.mode,
       p.checkpoint,
       p.lag AS lag_events,
       CASE WHEN p.mode = 'async' THEN
            coalesce(pg_catalog.now() - (SELECT e.recorded_at FROM event_store.events e
                                           WHERE e.global_position > p.checkpoint
                                           ORDER BY e.global_position LIMIT 1),
                     interval '0')
       END AS lag_time,
       p.last_run_at,
       p.events_processed
  FROM event_store.projections p
 ORDER BY p.name;
COMMENT ON VIEW event_store.projection_status IS 'Projections: checkpoint, lag in events and in time (age of the oldest unprocessed event; async only), last run.';

------------------------------------------------------------------------------
-- Maintenance
------------------------------------------------------------------------------
-- Streams whose newest snapshot for a reducer with a snapshot policy is
-- at least snapshot_every versions old get a new one (folds with a NULL
-- initial state, as state_as_of and the built-in reducers use).  Returns
-- how many were taken; at most max_streams per reducer per run.
CREATE FUNCTION event_store.take_due_snapshots(max_streams int DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r      record;
    rev    text;
    stype  text;
    sid    text;
    n      bigint := 0;
BEGIN
    FOR r IN SELECT x.reducer, x.snapshot_every FROM event_store.reducers x
              WHERE x.snapshot_every IS NOT NULL ORDER BY x.reducer LOOP
        BEGIN
            rev := event_store.reducer_revision(r.reducer::regprocedure);
            SELECT format_type(p.prorettype, NULL) INTO stype FROM pg_proc p WHERE p.oid = r.reducer::regprocedure;
        EXCEPTION WHEN undefined_function OR invalid_text_representation OR undefined_object THEN
            CONTINUE;           -- the reducer is gone
        END;
        FOR sid IN
            SELECT s.stream_id FROM event_store.streams s
             WHERE s.version >= r.snapshot_every
               AND EXISTS (SELECT 1 FROM event_store.snapshots sn
                            WHERE sn.stream_id = s.stream_id AND sn.reducer = r.reducer)
               AND s.version - coalesce((SELECT max(sn.version) FROM event_store.snapshots sn
                                          WHERE sn.stream_id = s.stream_id AND sn.reducer = r.reducer
                                            AND sn.revision = rev), 0) >= r.snapshot_every
             ORDER BY s.updated_at DESC
             LIMIT max_streams
        LOOP
            EXECUTE format('SELECT event_store.take_snapshot(%L::regprocedure, NULL::%s, $1)', r.reducer, stype)
              USING sid;
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.take_due_snapshots(int) IS
  'Snapshot the streams folded before with a reducer that has a snapshot policy, when snapshot_every versions were appended since their newest snapshot; returns how many were taken.';
REVOKE ALL ON FUNCTION event_store.take_due_snapshots(int) FROM PUBLIC;

-- Run every async projection until it is caught up (at most max_batches
-- batches each); returns the events handled.  A failing projection is
-- reported and skipped.
CREATE FUNCTION event_store.run_due_projections(batch_size int DEFAULT 10000, max_batches int DEFAULT 10) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    pname text;
    k     bigint;
    n     bigint := 0;
BEGIN
    IF to_regclass('event_store.projection_registry') IS NULL
       OR to_regprocedure('event_store.run_projection(text,integer)') IS NULL THEN
        RAISE NOTICE 'no async projections in this version of event_store';
        RETURN 0;
    END IF;
    FOR pname IN EXECUTE 'SELECT r.name FROM event_store.projection_registry r WHERE r.mode = ''async'' ORDER BY r.name' LOOP
        BEGIN
            FOR i IN 1 .. max_batches LOOP
                EXECUTE 'SELECT event_store.run_projection($1, $2)' INTO k USING pname, batch_size;
                n := n + k;
                EXIT WHEN k < batch_size;
            END LOOP;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'projection "%" failed: %', pname, SQLERRM;
        END;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.run_due_projections(int, int) IS
  'Run the async projections (each until caught up or max_batches batches); returns the events handled.';
REVOKE ALL ON FUNCTION event_store.run_due_projections(int, int) FROM PUBLIC;

-- The maintenance log: one row per step of the last run.
CREATE TABLE event_store.maintenance_status (
    step        text PRIMARY KEY,
    ran_at      timestamptz NOT NULL,
    duration    interval NOT NULL,
    result      text,
    error       text
);
REVOKE ALL ON event_store.maintenance_status FROM PUBLIC;
COMMENT ON TABLE event_store.maintenance_status IS 'The last run of each step of event_store.run_maintenance(): when, how long, its result or error.';

CREATE FUNCTION event_store._maintenance_step(step text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t0     timestamptz := clock_timestamp();
    result text;
    err    text;
BEGIN
    BEGIN
        CASE step
        WHEN 'premake_partitions' THEN
            result := event_store.premake_partitions() || ' partitions created';
        WHEN 'snapshots' THEN
            result := event_store.take_due_snapshots() || ' snapshots taken';
        WHEN 'projections' THEN
            IF to_regprocedure('event_store.run_projection(text,integer)') IS NULL THEN
                result := 'skipped: no async projections in this version';
            ELSE
                result := event_store.run_due_projections() || ' events handled';
            END IF;
        WHEN 'retention' THEN
            result := (SELECT count(*) FROM event_store.apply_retention()) || ' partitions archived';
        END CASE;
    EXCEPTION WHEN OTHERS THEN
        err := SQLERRM;
        RAISE WARNING 'event_store maintenance step % failed: %', step, err;
    END;
    INSERT INTO event_store.maintenance_status AS m (step, ran_at, duration, result, error)
    VALUES (step, t0, clock_timestamp() - t0, result, err)
    ON CONFLICT ON CONSTRAINT maintenance_status_pkey DO UPDATE
       SET ran_at = excluded.ran_at, duration = excluded.duration,
           result = excluded.result, error = excluded.error;
    RETURN coalesce(result, 'failed: ' || err);
END
$$;
REVOKE ALL ON FUNCTION event_store._maintenance_step(text) FROM PUBLIC;

-- One entry point, committing after each step, so a step's locks are held
-- no longer than it runs.  A session advisory lock makes a second runner
-- skip with a NOTICE.  CALL it outside a transaction block.
-- (No SET clause: a procedure with one cannot COMMIT.  Every name is
-- schema-qualified or in pg_catalog.)
CREATE PROCEDURE event_store.run_maintenance()
LANGUAGE plpgsql
AS $$
DECLARE
    lock_key constant bigint := 7236178623481234561;   -- 'event_store.run_maintenance'
    step text;
BEGIN
    -- Fails here, before the session lock is taken, when called inside a
    -- transaction block (a lock taken first would outlive the error).
    COMMIT;
    IF NOT pg_catalog.pg_try_advisory_lock(lock_key) THEN
        RAISE NOTICE 'event_store maintenance is already running in another session: skipped';
        RETURN;
    END IF;
    FOREACH step IN ARRAY ARRAY['premake_partitions', 'snapshots', 'projections', 'retention'] LOOP
        RAISE NOTICE 'event_store maintenance: %: %', step, event_store._maintenance_step(step);
        COMMIT;
    END LOOP;
    PERFORM pg_catalog.pg_advisory_unlock(lock_key);
END
$$;
COMMENT ON PROCEDURE event_store.run_maintenance() IS
  'Premake partitions, take due snapshots, run async projections, apply retention; commits after each step; a concurrent second run skips. Results in event_store.maintenance_status.';
REVOKE ALL ON PROCEDURE event_store.run_maintenance() FROM PUBLIC;

------------------------------------------------------------------------------
-- Scheduling with pg_cron (optional: never required)
------------------------------------------------------------------------------
CREATE FUNCTION event_store._maintenance_job_name() RETURNS text
LANGUAGE sql STABLE
RETURN 'event_store_maintenance_' || current_database();

CREATE FUNCTION event_store.schedule_maintenance(schedule text DEFAULT '* * * * *') RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    job     text := event_store._maintenance_job_name();
    command constant text := 'CALL event_store.run_maintenance()';
    jobid   bigint;
BEGIN
    IF schedule IS NULL OR btrim(schedule) = '' THEN
        RAISE EXCEPTION 'schedule must not be empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A cron expression such as ''* * * * *'' or ''*/5 * * * *''.';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        BEGIN
            EXECUTE 'SELECT cron.schedule($1, $2, $3)' INTO jobid USING job, schedule, command;
        EXCEPTION WHEN invalid_parameter_value OR data_exception OR internal_error THEN
            RAISE EXCEPTION 'pg_cron rejected the schedule %', quote_literal(schedule)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = SQLERRM,
                      HINT = 'Use a cron expression: five fields (minute hour day month weekday), e.g. ''*/5 * * * *''.';
        END;
        RETURN jobid;
    END IF;
    IF cron_db IS NOT NULL AND cron_db <> current_database() THEN
        RAISE NOTICE 'pg_cron runs in database "%": run this there to schedule maintenance of "%":', cron_db, current_database()
            USING DETAIL = format('SELECT cron.schedule_in_database(%L, %L, %L, %L);',
                                  job, schedule, command, current_database());
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pg_cron is not installed in this database'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = CASE WHEN cron_db IS NULL
                          THEN 'Add pg_cron to shared_preload_libraries, restart, and CREATE EXTENSION pg_cron; or run CALL event_store.run_maintenance() from any scheduler.'
                          ELSE 'CREATE EXTENSION pg_cron in this database (cron.database_name); or run CALL event_store.run_maintenance() from any scheduler.' END;
END
$$;
COMMENT ON FUNCTION event_store.schedule_maintenance(text) IS
  'Schedule CALL event_store.run_maintenance() with pg_cron (one job per database, replaced on each call); returns the job id. With pg_cron in another database, prints the call to run there.';
REVOKE ALL ON FUNCTION event_store.schedule_maintenance(text) FROM PUBLIC;

CREATE FUNCTION event_store.unschedule_maintenance() RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cron_db text := current_setting('cron.database_name', true);
    job     text := event_store._maintenance_job_name();
    found   boolean;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_cron') THEN
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM cron.job WHERE jobname = $1 AND username = current_user)'
           INTO found USING job;
        IF found THEN
            EXECUTE 'SELECT cron.unschedule($1)' USING job;
        END IF;
        RETURN found;
    END IF;
    IF cron_db IS NOT NULL AND cron_db <> current_database() THEN
        RAISE NOTICE 'pg_cron runs in database "%": run this there to unschedule maintenance of "%":', cron_db, current_database()
            USING DETAIL = format('SELECT cron.unschedule(%L);', job);
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'pg_cron is not installed in this database'
        USING ERRCODE = 'object_not_in_prerequisite_state',
              HINT = 'Nothing is scheduled without pg_cron.';
END
$$;
COMMENT ON FUNCTION event_store.unschedule_maintenance() IS
  'Remove the pg_cron maintenance job of this database; false when there was none.';
REVOKE ALL ON FUNCTION event_store.unschedule_maintenance() FROM PUBLIC;

------------------------------------------------------------------------------
-- Audited erasure (src/redact.c).  EXECUTE is granted to nobody here; the
-- roles script grants it to event_store_admin.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.redact(stream_id text, reason text, fields text[] DEFAULT NULL) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_redact' LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION event_store.redact(text, text, text[]) IS
  'Replace the data (or the named top-level fields) of the stream''s events, attached or archived, with {"$redacted": true}; drops its snapshots; audited in stream ''$audit-redactions''. Returns how many events changed.';
REVOKE ALL ON FUNCTION event_store.redact(text, text, text[]) FROM PUBLIC;

------------------------------------------------------------------------------
-- Logical replication
------------------------------------------------------------------------------
-- Two publications: NAME carries the log through its root (inserts only:
-- the log never changes; a redaction is made on each database by its own
-- operators, and an UPDATE would need a replica identity the log does not
-- have); NAME_streams carries event_store.streams (inserts and updates),
-- so that a subscriber's stream versions and time ranges (which reads use
-- to prune partitions) match.  One subscription to both applies each
-- publisher transaction atomically.  Subscribers need partitions for the
-- rows they receive: event_store.ensure_partitions() before subscribing.
CREATE FUNCTION event_store.create_publication(name text DEFAULT 'event_store') RETURNS text[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL OR name = '' OR length(name) > 50 THEN
        RAISE EXCEPTION 'publication name must be 1 to 50 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('CREATE PUBLICATION %I FOR TABLE event_store.events WITH (publish = ''insert'', publish_via_partition_root = true)', name);
    EXECUTE format('CREATE PUBLICATION %I FOR TABLE event_store.streams WITH (publish = ''insert, update'')', name || '_streams');
    RETURN ARRAY[name, name || '_streams'];
END
$$;
COMMENT ON FUNCTION event_store.create_publication(text) IS
  'Publish the log (inserts, via the partition root) as NAME and event_store.streams as NAME_streams; returns both names. Subscribers: see docs/scaling.md.';
REVOKE ALL ON FUNCTION event_store.create_publication(text) FROM PUBLIC;

-- Partitions covering [from_ts, to_ts): for a subscriber before it copies
-- a publisher's log, or before bulk loads.  Returns how many were created.
CREATE FUNCTION event_store.ensure_partitions(from_ts timestamptz, to_ts timestamptz) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    ts     timestamptz := from_ts;
    before int;
    part   regclass;
BEGIN
    IF from_ts IS NULL OR to_ts IS NULL OR NOT isfinite(from_ts) OR NOT isfinite(to_ts) OR to_ts < from_ts THEN
        RAISE EXCEPTION 'invalid range [%, %)', from_ts, to_ts USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT count(*) INTO before FROM event_store.partition_ranges();
    WHILE ts < to_ts LOOP
        part := event_store._create_partition_for(ts);
        SELECT r.range_end INTO ts FROM event_store.partition_ranges() r WHERE r.partition = part;
    END LOOP;
    RETURN (SELECT count(*) FROM event_store.partition_ranges()) - before;
END
$$;
COMMENT ON FUNCTION event_store.ensure_partitions(timestamptz, timestamptz) IS
  'Create the partitions covering [from_ts, to_ts) that do not exist yet; returns how many were created.';
REVOKE ALL ON FUNCTION event_store.ensure_partitions(timestamptz, timestamptz) FROM PUBLIC;
