-- event_store 1.10 -> 1.11: hardening (issue 25) and PostgreSQL 15-18
-- (issue 24).  Every section below says which class of attack it closes.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.11'" to load this file. \quit


------------------------------------------------------------------------------
-- issue 25 item 2: projection handlers run as the role that registered them
--
-- Before 1.11 handlers ran as whoever appended: redact() appends its audit
-- event as the log's owner, and run_maintenance() runs async projections as
-- its caller, so an admin's handler ran as a superuser there.  Since 1.11
-- every handler, and the reset function of a rebuild, runs as the role that
-- registered the projection (registered_by), like a SECURITY DEFINER function
-- owned by that role, inside a security-restricted operation with
-- search_path "$user", public, pg_temp (src/projection.c).  Handlers in
-- temporary schemas are refused.  See docs/security.md.
------------------------------------------------------------------------------

-- Registrations made before 1.11 ran as the appender.  Their registrar is
-- unknown: the handler's owner stands in (the role that wrote the code: a
-- SECURITY DEFINER function owned by it would run the same way), and
-- event_store_admin when the handler no longer exists.  Handlers in
-- temporary schemas never worked outside their session and broke other
-- sessions' appends: those registrations are removed, with a WARNING.
ALTER TABLE event_store.projection_registry ADD COLUMN registered_by text;

DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT g.name, g.handler FROM event_store.projection_registry g
              WHERE g.handler OPERATOR(pg_catalog.~*) '^"?pg_(toast_)?temp'
                 OR g.reset_handler OPERATOR(pg_catalog.~*) '^"?pg_(toast_)?temp' LOOP
        RAISE WARNING 'projection "%" removed: its handler % is in a temporary schema', r.name, r.handler;
        DELETE FROM event_store.projection_checkpoints c WHERE c.name OPERATOR(pg_catalog.=) r.name;
        DELETE FROM event_store.projection_registry g WHERE g.name OPERATOR(pg_catalog.=) r.name;
    END LOOP;
    UPDATE event_store.projection_registry g
       SET registered_by = coalesce(
             (SELECT a.rolname::text FROM pg_catalog.pg_proc p
                JOIN pg_catalog.pg_roles a ON a.oid OPERATOR(pg_catalog.=) p.proowner
               WHERE p.oid OPERATOR(pg_catalog.=) pg_catalog.to_regprocedure(g.handler)),
             'event_store_admin');
END
$$;
ALTER TABLE event_store.projection_registry
    ALTER COLUMN registered_by SET DEFAULT CURRENT_USER,
    ALTER COLUMN registered_by SET NOT NULL;
COMMENT ON COLUMN event_store.projection_registry.registered_by IS
  'The role the handler and the reset function run as: whoever wrote the row (create_projection()); set by the registry''s trigger.';

-- The registry is written by create_projection() and by admins directly
-- (they hold INSERT, UPDATE on it).  Whoever writes a row becomes its
-- registrar, so no one can name a more privileged role; only the table's
-- owner (pg_restore, superusers) keeps the value given.  Temporary
-- handlers are refused (42P13).
CREATE FUNCTION event_store._projection_registry_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    fn text;
BEGIN
    FOREACH fn IN ARRAY ARRAY[NEW.handler, NEW.reset_handler] LOOP
        CONTINUE WHEN fn IS NULL;
        IF fn ~* '^"?pg_(toast_)?temp' THEN
            RAISE EXCEPTION 'projection handler % is in a temporary schema', fn
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = 'A temporary function exists only for the session that created it; other sessions cannot run it.',
                      HINT = 'Create the handler in a permanent schema.';
        ELSIF EXISTS (SELECT 1 FROM pg_catalog.pg_proc p
                       WHERE p.oid = pg_catalog.to_regprocedure(fn)
                         AND (p.pronamespace = pg_catalog.pg_my_temp_schema()
                              OR pg_catalog.pg_is_other_temp_schema(p.pronamespace))) THEN
            RAISE EXCEPTION 'projection handler % is in a temporary schema', fn
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = 'A temporary function exists only for the session that created it; other sessions cannot run it.',
                      HINT = 'Create the handler in a permanent schema.';
        END IF;
    END LOOP;
    IF NEW.registered_by IS NULL
       OR NOT pg_catalog.pg_has_role(current_user,
                                     (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID),
                                     'USAGE') THEN
        NEW.registered_by := current_user;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER projection_registry_check
    BEFORE INSERT OR UPDATE ON event_store.projection_registry
    FOR EACH ROW EXECUTE FUNCTION event_store._projection_registry_check();

-- The reset function of a rebuild, called by C as the registrar.
CREATE FUNCTION event_store._call_projection_reset(name text) RETURNS void
AS 'MODULE_PATHNAME', 'es_call_projection_reset' LANGUAGE C VOLATILE STRICT;
REVOKE ALL ON FUNCTION event_store._call_projection_reset(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._call_projection_reset(text) TO event_store_admin;

CREATE OR REPLACE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name = _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = _rebuild_start.name FOR UPDATE;
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = now(),
           rebuild_started_at = clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name = _rebuild_start.name;
    -- as the registrar (1.10 ran it as the caller)
    PERFORM event_store._call_projection_reset(_rebuild_start.name);
    mode := reg.mode;
END
$$;

-- The registrar, shown (a new last column).
CREATE OR REPLACE VIEW event_store.projections AS
SELECT r.name,
       r.mode,
       pg_catalog.to_regprocedure(r.handler) AS handler,
       pg_catalog.to_regprocedure(r.reset_handler) AS reset,
       r.event_types,
       r.categories,
       CASE WHEN r.mode = 'async' THEN c.position END AS checkpoint,
       CASE WHEN r.mode = 'async'
            THEN greatest(event_store._last_drawn_position() - c.position, 0)
            ELSE 0 END AS lag,
       c.events_processed,
       c.updated_at AS last_run_at,
       c.rebuild_started_at,
       c.rebuild_finished_at,
       CASE WHEN c.rebuild_started_at IS NULL THEN NULL
            WHEN c.rebuild_finished_at IS NOT NULL OR c.rebuild_target <= 0 THEN 100.0
            ELSE round(100.0 * least(c.position, c.rebuild_target) / c.rebuild_target, 1) END AS rebuild_progress,
       r.created_at,
       r.registered_by
  FROM event_store.projection_registry r
  LEFT JOIN event_store.projection_checkpoints c ON c.name = r.name;

-- Maintenance snapshots: run_maintenance() (often a superuser's, or
-- pg_cron's) folded every reducer with a snapshot policy as its caller, so a
-- reducer an admin wrote and gave a policy ran as a superuser.  A reducer
-- now runs here only when its owner holds every privilege of the caller
-- (the caller gains nothing the reducer's author did not have); the others
-- are skipped with a WARNING (their owner can take them with take_snapshot()).
CREATE OR REPLACE FUNCTION event_store.take_due_snapshots(max_streams int DEFAULT 1000) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r      record;
    rev    text;
    stype  text;
    owner  oid;
    sid    text;
    n      bigint := 0;
BEGIN
    FOR r IN SELECT x.reducer, x.snapshot_every FROM event_store.reducers x
              WHERE x.snapshot_every IS NOT NULL ORDER BY x.reducer LOOP
        BEGIN
            rev := event_store.reducer_revision(r.reducer::regprocedure);
            SELECT format_type(p.prorettype, NULL), p.proowner INTO stype, owner
              FROM pg_proc p WHERE p.oid = r.reducer::regprocedure;
        EXCEPTION WHEN undefined_function OR invalid_text_representation OR undefined_object THEN
            CONTINUE;           -- the reducer is gone
        END;
        IF NOT pg_has_role(owner, current_user, 'USAGE') THEN
            RAISE WARNING 'snapshots of reducer % skipped: its owner % lacks privileges of %',
                r.reducer, owner::regrole, current_user
                USING DETAIL = 'Maintenance runs a reducer only as a role whose privileges its owner holds.',
                      HINT = format('Let %s take them with event_store.take_snapshot(), or run maintenance as a role that %s is a member of.',
                                    owner::regrole, owner::regrole);
            CONTINUE;
        END IF;
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

------------------------------------------------------------------------------
-- issue 25 item 3: only the sanctioned functions write audit streams
--
-- Every append path refuses streams of category '$audit' (42501) unless
-- src/append.c's es_append_audit_event() sanctioned exactly that stream just
-- before.  redact() uses it from C, and so does _drop_archived_partition()
-- (src/retention.c, issue 25 item 9 below), which drop_archived_partition()
-- calls.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- issue 25 item 11: the table owner's writes to event_store.streams and to
-- the position sequence.  A row of streams is its stream's version and
-- position range; UPDATE, DELETE or TRUNCATE outside the append path would
-- let versions repeat.  The direct-write guard (src/append.c) now refuses
-- them for the owner too (INSERT stays: pg_restore and a subscription's
-- initial copy load the table with it); TRUNCATE gets the same guard.
-- src/owner_guard.c refuses ALTER SEQUENCE of global_position_seq and
-- disabling or dropping the guard triggers; the event trigger below brings
-- those refusals to backends that have not loaded the library.
------------------------------------------------------------------------------
CREATE TRIGGER _direct_write_guard_truncate BEFORE TRUNCATE ON event_store.streams
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._refuse_direct_write();
ALTER TABLE event_store.streams ENABLE ALWAYS TRIGGER _direct_write_guard_truncate;

CREATE EVENT TRIGGER event_store_guard_owner_ddl ON ddl_command_start
    WHEN TAG IN ('ALTER SEQUENCE', 'DROP TRIGGER')
    EXECUTE FUNCTION event_store._guard_ddl();
ALTER EVENT TRIGGER event_store_guard_owner_ddl ENABLE ALWAYS;

------------------------------------------------------------------------------
-- issue 25 smaller: LOCK TABLE by writers and readers.  LOCK in the modes
-- above ROW EXCLUSIVE needs a table-level UPDATE, DELETE or TRUNCATE, so a
-- writer (table-level UPDATE on streams) could take ACCESS EXCLUSIVE and
-- stop every append, and a reader likewise on subscription_checkpoints.
-- The appends and ack() update only some columns; column privileges are
-- enough for them (and for SELECT ... FOR NO KEY UPDATE) and do not allow
-- those LOCK modes.
------------------------------------------------------------------------------
REVOKE UPDATE ON event_store.streams FROM event_store_writer;
GRANT UPDATE (version, updated_at, last_position) ON event_store.streams TO event_store_writer;
REVOKE UPDATE ON event_store.subscription_checkpoints FROM event_store_reader;
GRANT UPDATE (position, updated_at) ON event_store.subscription_checkpoints TO event_store_reader;

------------------------------------------------------------------------------
-- issue 25 smaller: _create_partition_for.  A writer may create the
-- partition an append needs (recorded_at is between the transaction's
-- start and the clock, give or take a minute of clock skew), not others:
-- it could otherwise make partitions without limit.  An admin may also
-- create them up to premake_partitions' cap (1000 partitions) ahead; the
-- table owner (and superusers) anything.  A SECURITY DEFINER function
-- cannot see who called it, so _create_partition_for now runs as the
-- caller, chooses by the caller's role, and only the two limited entry
-- points run as the owner.  Timestamps too close to the end of the
-- timestamp range get 22008 with a hint instead of a bare overflow.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._make_partition_for(ts timestamptz) RETURNS regclass
LANGUAGE plpgsql
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

    BEGIN
        SELECT a.range_start, a.range_end INTO lo, hi
          FROM event_store._aligned_range(ts, event_store.partition_interval()) a;
    EXCEPTION WHEN datetime_field_overflow THEN
        RAISE EXCEPTION 'cannot create an event partition for %: its range would end past the last representable timestamp', ts
            USING ERRCODE = 'datetime_field_overflow',
                  HINT = format('Partitions of width %s must end before 294277-01-01 AD; use an earlier timestamp.',
                                event_store.partition_interval());
    END;
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
REVOKE ALL ON FUNCTION event_store._make_partition_for(timestamptz) FROM PUBLIC;
COMMENT ON FUNCTION event_store._make_partition_for(timestamptz) IS
  'Internal: create the partition that holds ts (any ts), as the caller; the owner''s path of _create_partition_for.';

-- The writer's limit: ts within a minute of [transaction start, clock].
CREATE FUNCTION event_store._partition_for_append(ts timestamptz) RETURNS regclass
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF ts IS NULL OR NOT isfinite(ts) THEN
        RAISE EXCEPTION 'cannot create an event partition for %', coalesce(ts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF ts < transaction_timestamp() - interval '1 minute' OR ts > clock_timestamp() + interval '1 minute' THEN
        RAISE EXCEPTION 'a writer may create only the partition that holds the current time, not one for %', ts
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Appends record events at the current time; other partitions are made ahead of time by an admin.',
                  HINT = 'An event_store_admin runs event_store.premake_partitions(); the table owner event_store.ensure_partitions(from, to).';
    END IF;
    RETURN event_store._make_partition_for(ts);
END
$$;
REVOKE ALL ON FUNCTION event_store._partition_for_append(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._partition_for_append(timestamptz) TO event_store_writer;
COMMENT ON FUNCTION event_store._partition_for_append(timestamptz) IS
  'Internal: the partition for a timestamp within a minute of now, as the owner (writers'' path of _create_partition_for).';

-- The admin's limit: from a minute before the transaction started up to
-- 1001 partition widths past the clock (premake_partitions' cap of 1000
-- ahead, after the current one).
CREATE FUNCTION event_store._partition_ahead(ts timestamptz) RETURNS regclass
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    horizon timestamptz;
BEGIN
    IF ts IS NULL OR NOT isfinite(ts) THEN
        RAISE EXCEPTION 'cannot create an event partition for %', coalesce(ts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    horizon := clock_timestamp() + event_store.partition_interval() * 1001 + interval '1 minute';
    IF ts < transaction_timestamp() - interval '1 minute' OR ts > horizon THEN
        RAISE EXCEPTION 'an admin may create partitions from now up to 1000 partitions ahead (until %), not one for %', horizon, ts
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Partitions for the past, or further ahead, are created by the owner of event_store.events.',
                  HINT = 'The table owner runs event_store.ensure_partitions(from, to).';
    END IF;
    RETURN event_store._make_partition_for(ts);
END
$$;
REVOKE ALL ON FUNCTION event_store._partition_ahead(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._partition_ahead(timestamptz) TO event_store_admin;
COMMENT ON FUNCTION event_store._partition_ahead(timestamptz) IS
  'Internal: the partition for a timestamp from now to 1000 partitions ahead, as the owner (admins'' path of _create_partition_for).';

-- Runs as the caller now (SECURITY INVOKER): the owner of the log (or a
-- superuser) creates any partition itself; admins and writers go through
-- their limited SECURITY DEFINER entry points.
CREATE OR REPLACE FUNCTION event_store._create_partition_for(ts timestamptz) RETURNS regclass
LANGUAGE plpgsql SECURITY INVOKER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_has_role(current_user,
                   (SELECT c.relowner FROM pg_class c WHERE c.oid = 'event_store.events'::regclass), 'USAGE') THEN
        RETURN event_store._make_partition_for(ts);
    ELSIF pg_has_role(current_user, 'event_store_admin', 'USAGE') THEN
        RETURN event_store._partition_ahead(ts);
    ELSE
        RETURN event_store._partition_for_append(ts);
    END IF;
END
$$;

------------------------------------------------------------------------------
-- issue 25 smaller: premake_partitions(n) had no cap and ran out of shared
-- memory (one lock per index) at 100000; it now has set_premake_partitions'
-- cap of 1000 (22023).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.premake_partitions(ahead int DEFAULT NULL) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n_ahead int := coalesce(ahead, event_store.premake_count());
    before  int;
    ts      timestamptz := clock_timestamp();
    part    regclass;
BEGIN
    IF n_ahead < 0 OR n_ahead > 1000 THEN
        RAISE EXCEPTION 'premake count must be between 0 and 1000, got %', n_ahead
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Premake at most 1000 partitions ahead; widen them with event_store.set_partition_interval() to cover more time.';
    END IF;
    SELECT count(*) INTO before FROM event_store.partition_ranges();
    FOR i IN 0 .. n_ahead LOOP
        part := event_store._create_partition_for(ts);
        SELECT r.range_end INTO ts FROM event_store.partition_ranges() r WHERE r.partition = part;
    END LOOP;
    RETURN (SELECT count(*) FROM event_store.partition_ranges()) - before;
END
$$;

------------------------------------------------------------------------------
-- issue 25 smaller: values written directly into event_store.settings
-- (admins hold INSERT and UPDATE on it) broke partition creation later
-- with an error about the stored text.  A row trigger now checks every
-- value as the set_* functions do (22023, nothing written), and the event
-- id scope, whose change rebuilds indexes, may be written only by
-- set_event_id_scope() (it runs as the table's owner).
------------------------------------------------------------------------------
CREATE FUNCTION event_store._check_setting() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    width  interval;
    months int;
    n      int;
BEGIN
    IF NEW.name = 'partition_interval' THEN
        BEGIN
            width := NEW.value::interval;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR interval_field_overflow THEN
            width := NULL;
        END;
        IF width IS NOT NULL THEN
            months := extract(year FROM width)::int * 12 + extract(month FROM width)::int;
        END IF;
        IF width IS NULL OR months < 0 OR width < interval '1 second' OR width > interval '100 years'
           OR (months > 0 AND width <> make_interval(months => months)) THEN
            RAISE EXCEPTION 'invalid partition_interval setting %', quote_literal(NEW.value)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It must be an interval between 1 second and 100 years, either whole months or a fixed width.',
                      HINT = 'Use event_store.set_partition_interval(interval).';
        END IF;
    ELSIF NEW.name = 'premake_partitions' THEN
        BEGIN
            n := NEW.value::int;
        EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
            n := NULL;
        END;
        IF n IS NULL OR n < 0 OR n > 1000 THEN
            RAISE EXCEPTION 'invalid premake_partitions setting %', quote_literal(NEW.value)
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'It must be a whole number between 0 and 1000.',
                      HINT = 'Use event_store.set_premake_partitions(int).';
        END IF;
    ELSIF NEW.name = 'event_id_scope' THEN
        IF NEW.value NOT IN ('stream', 'store') THEN
            RAISE EXCEPTION 'invalid event_id_scope setting %', quote_literal(NEW.value)
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use event_store.set_event_id_scope(''stream'') or (''store'').';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION event_store._check_setting() FROM PUBLIC;

-- The event id scope must match the partitions' indexes: only
-- set_event_id_scope() (SECURITY DEFINER, so the owner) changes it.
CREATE FUNCTION event_store._check_setting_owner() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF (TG_OP = 'DELETE' AND OLD.name = 'event_id_scope' OR TG_OP <> 'DELETE' AND NEW.name = 'event_id_scope'
        OR TG_OP = 'UPDATE' AND OLD.name = 'event_id_scope')
       AND NOT pg_has_role(current_user,
                           (SELECT c.relowner FROM pg_class c WHERE c.oid = 'event_store.settings'::regclass), 'USAGE') THEN
        RAISE EXCEPTION 'the event id scope is changed with event_store.set_event_id_scope() only'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'Changing it rebuilds every partition''s event_id index; a row written directly would not.',
                  HINT = 'SELECT event_store.set_event_id_scope(''store'') (or ''stream'').';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
REVOKE ALL ON FUNCTION event_store._check_setting_owner() FROM PUBLIC;

CREATE TRIGGER _check_setting BEFORE INSERT OR UPDATE ON event_store.settings
    FOR EACH ROW EXECUTE FUNCTION event_store._check_setting();
CREATE TRIGGER _check_setting_owner BEFORE INSERT OR UPDATE OR DELETE ON event_store.settings
    FOR EACH ROW EXECUTE FUNCTION event_store._check_setting_owner();
-- Rows stored before 1.11 are checked now: a bad one stops the update
-- with the same error (fix it with the set_* function and update again).
UPDATE event_store.settings SET value = value WHERE name <> 'event_id_scope';

------------------------------------------------------------------------------
-- issue 25 smaller: set_retention('100000000 years', ...) raised 22008
-- from the date arithmetic; it is 22023 (invalid_parameter_value) as
-- documented.  A tablespace now needs the caller's CREATE privilege on it
-- (apply_retention moves partitions there as the owner, below).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store.set_retention(keep interval, mode text DEFAULT 'archive', tablespace name DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    in_range boolean;
BEGIN
    IF mode IS NULL OR mode NOT IN ('archive', 'none') THEN
        RAISE EXCEPTION 'retention mode must be ''archive'' or ''none'', got %', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mode = 'none' THEN
        DELETE FROM event_store.retention;
        RETURN;
    END IF;
    BEGIN
        in_range := keep > interval '0' AND isfinite(now() - keep);
    EXCEPTION WHEN datetime_field_overflow THEN
        in_range := false;
    END;
    IF keep IS NULL OR NOT in_range THEN
        RAISE EXCEPTION 'retention period must be a positive interval, got %', coalesce(keep::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'now() minus the period must be a representable timestamp.',
                  HINT = 'E.g. event_store.set_retention(''2 years'', ''archive''); event_store.set_retention(NULL, ''none'') turns retention off.';
    END IF;
    IF tablespace IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_tablespace t WHERE t.spcname = tablespace) THEN
        RAISE EXCEPTION 'tablespace "%" does not exist', tablespace
            USING ERRCODE = 'undefined_object';
    END IF;
    IF tablespace IS NOT NULL AND NOT has_tablespace_privilege(tablespace, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for tablespace %', tablespace
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Archived partitions move to the tablespace: the role setting the policy needs CREATE on it.';
    END IF;
    INSERT INTO event_store.retention (keep, mode, tablespace) VALUES (keep, mode, tablespace)
    ON CONFLICT (singleton) DO UPDATE
       SET keep = excluded.keep, mode = excluded.mode, tablespace = excluded.tablespace, updated_at = now();
END
$$;

------------------------------------------------------------------------------
-- issue 25 smaller: the docs said admins may run the retention and
-- redaction functions, but they were granted to nobody.
-- - set_retention: runs as the admin; it needs the retention table.
-- - apply_retention, restore_partition: detaching and attaching
--   partitions needs ownership of the log, so they run as the owner
--   (SECURITY DEFINER, search_path pinned since 1.6).  They run no code
--   an admin chose: no append, no handler; the names they act on are
--   looked up in the catalogs, the policy is set_retention's.
-- - redact: written in C, it switches to the log's owner for its writes
--   itself (src/redact.c).
-- drop_archived_partition stays the owner's (and superusers'): it deletes
-- events for good, and its audit record names the role that ran it,
-- which a SECURITY DEFINER function could not see.
------------------------------------------------------------------------------
GRANT SELECT, INSERT, UPDATE, DELETE ON event_store.retention TO event_store_admin;
GRANT EXECUTE ON FUNCTION event_store.set_retention(interval, text, name) TO event_store_admin;
ALTER FUNCTION event_store.apply_retention() SECURITY DEFINER;
ALTER FUNCTION event_store.restore_partition(text) SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION event_store.apply_retention() TO event_store_admin;
GRANT EXECUTE ON FUNCTION event_store.restore_partition(text) TO event_store_admin;
GRANT EXECUTE ON FUNCTION event_store.redact(text, text, text[]) TO event_store_admin;

------------------------------------------------------------------------------
-- issue 25 smaller: unqualified operators.  Functions of the extension
-- that pin search_path (pg_catalog, pg_temp) resolve every operator in
-- pg_catalog; SQL-standard bodies were bound at creation.  Three
-- plpgsql routines do neither, because they call the user's reset
-- function and projection handlers, which keep the caller's search_path:
-- _rebuild_start, rebuild_projection and the procedure
-- rebuild_projection_in_batches (a procedure that commits cannot have a
-- SET clause).  Their operators and functions are now qualified, so an
-- operator planted on an admin's search_path is never called by them
-- (test/sql/hardening_small.sql).
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name FOR UPDATE;
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = pg_catalog.now(),
           rebuild_started_at = pg_catalog.clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    -- as the registrar (issue 25 item 2; 1.10 ran it as the caller)
    PERFORM event_store._call_projection_reset(_rebuild_start.name);
    mode := reg.mode;
END
$$;

CREATE OR REPLACE FUNCTION event_store.rebuild_projection(name text, notice_every int DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
BEGIN
    IF notice_every IS NULL OR notice_every OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'notice_every must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection.name) s;
    IF m OPERATOR(pg_catalog.=) 'inline' THEN
        total := event_store._replay_inline(rebuild_projection.name, notice_every);
    ELSE
        LOOP
            n := event_store.run_projection(rebuild_projection.name, notice_every);
            total := total OPERATOR(pg_catalog.+) n;
            EXIT WHEN n OPERATOR(pg_catalog.<) notice_every;
            RAISE NOTICE 'rebuilding projection "%": % events', rebuild_projection.name, total;
        END LOOP;
    END IF;
    PERFORM event_store._rebuild_finish(rebuild_projection.name, total);
    RAISE NOTICE 'rebuilt projection "%": % events', rebuild_projection.name, total;
    RETURN total;
END
$$;

CREATE OR REPLACE PROCEDURE event_store.rebuild_projection_in_batches(name text, batch_size int DEFAULT 10000)
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
BEGIN
    IF batch_size IS NULL OR batch_size OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT r.mode FROM event_store.projection_registry r
         WHERE r.name OPERATOR(pg_catalog.=) rebuild_projection_in_batches.name) OPERATOR(pg_catalog.=) 'inline' THEN
        RAISE EXCEPTION 'projection "%" is inline: rebuild it in one transaction', name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Between batches its appenders would update a half-rebuilt read model.',
                  HINT = 'Use SELECT event_store.rebuild_projection(...).';
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection_in_batches.name) s;
    COMMIT;
    LOOP
        n := event_store.run_projection(rebuild_projection_in_batches.name, batch_size);
        total := total OPERATOR(pg_catalog.+) n;
        COMMIT;
        EXIT WHEN n OPERATOR(pg_catalog.<) batch_size;
        RAISE NOTICE 'rebuilding projection "%": % events', name, total;
    END LOOP;
    PERFORM event_store._rebuild_finish(rebuild_projection_in_batches.name, total);
    COMMIT;
    RAISE NOTICE 'rebuilt projection "%": % events', name, total;
END
$$;

------------------------------------------------------------------------------
-- issue 25 items 4-8: routes around append-only (src/guard.c).
--   * The ddl_command_start guard now sees every DDL command (no tag
--     filter): ALTER TABLE on event tables is an allowlist (no column
--     surgery, no SET UNLOGGED, no switching the guard triggers), RENAME
--     COLUMN, ALTER EXTENSION event_store DROP, DROP EXTENSION while the log
--     holds events (unless event_store.allow_drop_with_events = on) and
--     unfit partitions (heap, foreign, partitioned, unlogged) are refused.
--     Firing on every DDL command also loads the library before any
--     deletion, so its object access hook refuses dropping a non-empty
--     event partition by any route (DROP OWNED BY, DROP ... CASCADE) in
--     both modes, preloaded or not, under the deletion's own lock.
--   * A ddl_command_end trigger checks that every partition of the log is
--     a plain, logged event_store_log table after CREATE / ALTER TABLE.
------------------------------------------------------------------------------
DROP EVENT TRIGGER event_store_guard_ddl;
CREATE EVENT TRIGGER event_store_guard_ddl ON ddl_command_start
    EXECUTE FUNCTION event_store._guard_ddl();
ALTER EVENT TRIGGER event_store_guard_ddl ENABLE ALWAYS;

CREATE FUNCTION event_store._guard_ddl_end() RETURNS event_trigger
AS 'MODULE_PATHNAME', 'es_guard_ddl_end' LANGUAGE C;
REVOKE ALL ON FUNCTION event_store._guard_ddl_end() FROM PUBLIC;
CREATE EVENT TRIGGER event_store_guard_ddl_end ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE FOREIGN TABLE', 'ALTER FOREIGN TABLE')
    EXECUTE FUNCTION event_store._guard_ddl_end();
ALTER EVENT TRIGGER event_store_guard_ddl_end ENABLE ALWAYS;

------------------------------------------------------------------------------
-- issue 25 item 9: internal entry points apply the policy and the audit
-- themselves (src/retention.c).  _detach_partition(events, part) detaches
-- only a partition the retention policy archives now (or an empty one);
-- _drop_archived_partition(part) detaches the archived partition, counts,
-- drops and records it in '$audit-retention' itself, so calling it
-- directly is the same as calling drop_archived_partition().
------------------------------------------------------------------------------
DROP FUNCTION event_store._drop_archived_partition(regclass);
CREATE FUNCTION event_store._drop_archived_partition(part regclass) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_drop_archived_partition' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION event_store._drop_archived_partition(regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION event_store.drop_archived_partition(name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET client_min_messages = warning
AS $$
DECLARE
    part regclass := event_store._partition_named(name, 'event_store_archive');
BEGIN
    IF part IS NULL OR NOT EXISTS (SELECT 1 FROM event_store._partition_ranges_of('event_store_archive.events') r
                                    WHERE r.partition = part) THEN
        RAISE EXCEPTION 'no archived partition named "%"', name
            USING ERRCODE = 'undefined_table',
                  HINT = 'Only archived partitions can be dropped: SELECT partition FROM event_store.partition_info WHERE archived.';
    END IF;
    -- Detach, count, drop and the '$audit-retention' record: all in C.
    RETURN event_store._drop_archived_partition(part);
END
$$;
COMMENT ON FUNCTION event_store.drop_archived_partition(text) IS
  'Drop an archived partition and its events for good; returns how many events it held. Recorded in stream ''$audit-retention''.';
REVOKE ALL ON FUNCTION event_store.drop_archived_partition(text) FROM PUBLIC;

------------------------------------------------------------------------------
-- issue 25 re-probe: routes the first round missed (all in C, no SQL here;
-- test/sql/attack_regressions.sql, docs/security.md "Re-probe").
--   * src/log_am.c: during redact() the access method itself checks each
--     update is a redaction (same stream, other columns unchanged, data the
--     marker or fields replaced by it).  An owner's BEFORE UPDATE trigger
--     firing after the row guard, or a rule, forged redacted events.
--   * src/guard.c: DROP / RENAME / CREATE OR REPLACE of the guard triggers;
--     RENAME and SET SCHEMA of the extension's tables and sequences and
--     RENAME of its schemas (the guards know streams and the position
--     sequence by name); SET UNLOGGED of any of them; column changes of
--     streams.  The existing ddl_command_start trigger reaches all of these
--     commands when the library is not preloaded.
--   * src/append.c: appends refuse row-level security that applies to the
--     appender on event_store.events (0A000), as folds do: policies hid
--     stored events from the idempotent-retry check, and a retry appended
--     its events twice.
------------------------------------------------------------------------------

------------------------------------------------------------------------------
-- issue 25 re-probe: event_store.retention written directly.  Admins hold
-- INSERT and UPDATE on it; set_retention() checks that the caller may
-- CREATE in the tablespace it names, but a row written directly skipped
-- that check, and apply_retention() (SECURITY DEFINER, as the log's owner)
-- then moved partitions into a tablespace the admin has no rights on.  A
-- row trigger now makes the same check for every write.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._check_retention() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.tablespace IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_tablespace t WHERE t.spcname = NEW.tablespace) THEN
        RAISE EXCEPTION 'tablespace "%" does not exist', NEW.tablespace
            USING ERRCODE = 'undefined_object';
    END IF;
    IF NEW.tablespace IS NOT NULL AND NOT has_tablespace_privilege(NEW.tablespace, 'CREATE') THEN
        RAISE EXCEPTION 'permission denied for tablespace %', NEW.tablespace
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'apply_retention() moves archived partitions there as the log''s owner.',
                  HINT = 'The role setting the retention policy needs CREATE on its tablespace.';
    END IF;
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION event_store._check_retention() FROM PUBLIC;
CREATE TRIGGER _check_retention BEFORE INSERT OR UPDATE ON event_store.retention
    FOR EACH ROW EXECUTE FUNCTION event_store._check_retention();

------------------------------------------------------------------------------
-- issue 31: messages of Message DB whose data is not a JSON object
--
-- Message DB's data and metadata are any JSON value or NULL, and its
-- clients write such messages (equinox-js sends SQL NULL for an event
-- without data, the Practical Microservices client passes JSON null).
-- message_store.write_message stores them as given, so that both APIs read
-- the same message; event_store's own appends still refuse them (22004,
-- 22023).  The log's data column so becomes nullable, in the log and in
-- the archive (a partition moves between the two: ATTACH needs the same
-- NOT NULL markings).  Dropping NOT NULL reads no row.  What the readers
-- do with such data: README "Data that is not an object".
------------------------------------------------------------------------------
ALTER TABLE event_store.events ALTER COLUMN data DROP NOT NULL;
ALTER TABLE event_store_archive.events ALTER COLUMN data DROP NOT NULL;

------------------------------------------------------------------------------
-- issue 27: event schema evolution -- upcasters applied on every read path
--
-- Every event carries schema_version (the version of its type's data when
-- it was appended; 1 for every event written before 1.11: a fast default,
-- no rewrite, no scan of the log).  event_store.upcasters holds the steps
-- from version v of a type to v + 1 (a function, or a declarative jsonb
-- transform run in C), event_store.event_schema_versions the current
-- version of each type (1 when absent).  Appends stamp the current version
-- (or "$schema_version" of the metadata); every read path returns events
-- upcast to the current version (src/upcast.c); the stored rows never
-- change.  The reads apply event_store._upcast() to each row they return;
-- folds and projections call the C code directly.  docs/upcasting.md.
------------------------------------------------------------------------------
ALTER TABLE event_store.events ADD COLUMN schema_version int NOT NULL DEFAULT 1;
ALTER TABLE event_store_archive.events ADD COLUMN schema_version int NOT NULL DEFAULT 1;
COMMENT ON COLUMN event_store.events.schema_version IS
  'The version of the event type''s data the event was appended with (1.11). Reads return events upcast to the current version: docs/upcasting.md.';

CREATE TABLE event_store.event_schema_versions (
    event_type      text        PRIMARY KEY,
    current_version int         NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now()
);
COMMENT ON TABLE event_store.event_schema_versions IS
  'The current schema version of each event type (1 when absent). Write with event_store.set_event_schema().';

CREATE TABLE event_store.upcasters (
    event_type     text        NOT NULL,
    from_version   int         NOT NULL,
    upcaster       text,
    takes_event    boolean     NOT NULL DEFAULT false,
    transform      jsonb,
    new_event_type text,
    registered_by  text        NOT NULL DEFAULT CURRENT_USER,
    registered_at  timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (event_type, from_version)
);
COMMENT ON TABLE event_store.upcasters IS
  'Upcasting steps: version from_version of event_type to from_version + 1 (renamed to new_event_type when set), by the function upcaster (a schema-qualified signature) or the declarative transform. Write with event_store.register_upcaster().';
SELECT pg_catalog.pg_extension_config_dump('event_store.event_schema_versions', '');
SELECT pg_catalog.pg_extension_config_dump('event_store.upcasters', '');
REVOKE ALL ON event_store.event_schema_versions, event_store.upcasters FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON event_store.event_schema_versions TO event_store_admin;
GRANT SELECT, INSERT, DELETE ON event_store.upcasters TO event_store_admin;

CREATE FUNCTION event_store._upcast(event event_store.events) RETURNS event_store.events
AS 'MODULE_PATHNAME', 'es_upcast' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast(event_store.events) IS
  'The event upcast to the current schema version of its type (the read functions apply it to every row).';
REVOKE ALL ON FUNCTION event_store._upcast(event_store.events) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._upcast(event_store.events) TO event_store_reader;

-- The reads branch once per call on this: false while no type has a step
-- below its current version, and then they run the 1.10 statements.
-- Answered from the backend's cache of the registry (src/upcast.c).
CREATE FUNCTION event_store._upcasting() RETURNS boolean
AS 'MODULE_PATHNAME', 'es_upcasting' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcasting() IS
  'Whether any event type has an upcasting step below its current schema version (the read functions skip event_store._upcast() when not).';
REVOKE ALL ON FUNCTION event_store._upcasting() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._upcasting() TO event_store_reader;

-- The same, folded to a constant when a plan is made (read_stream and
-- read_stream_backward: their 1.10 statement plans as in 1.10).  Plans that
-- hold it are dropped when the registry changes (a relcache invalidation
-- of event_store.events); not for PL/pgSQL conditions, whose simple
-- expressions read no table.
CREATE FUNCTION event_store._upcasting_support(internal) RETURNS internal
AS 'MODULE_PATHNAME', 'es_upcasting_support' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION event_store._upcasting_support(internal) FROM PUBLIC;
CREATE FUNCTION event_store._upcasting_planned() RETURNS boolean
AS 'MODULE_PATHNAME', 'es_upcasting' LANGUAGE C STABLE PARALLEL SAFE
SUPPORT event_store._upcasting_support;
COMMENT ON FUNCTION event_store._upcasting_planned() IS
  'event_store._upcasting(), folded to a constant when a plan is made (only in statements that read event_store.events: their plans are invalidated when the registry changes).';
REVOKE ALL ON FUNCTION event_store._upcasting_planned() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._upcasting_planned() TO event_store_reader;

CREATE FUNCTION event_store._stamp_schema_version(event_type text, metadata jsonb) RETURNS int
AS 'MODULE_PATHNAME', 'es_stamp_schema_version' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store._stamp_schema_version(text, jsonb) IS
  'The schema_version an append stamps: "$schema_version" of the metadata, else the current version of the type.';
REVOKE ALL ON FUNCTION event_store._stamp_schema_version(text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._stamp_schema_version(text, jsonb) TO event_store_writer;

CREATE FUNCTION event_store._check_upcast_transform(transform jsonb) RETURNS void
AS 'MODULE_PATHNAME', 'es_check_upcast_transform' LANGUAGE C IMMUTABLE PARALLEL SAFE;
REVOKE ALL ON FUNCTION event_store._check_upcast_transform(jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._check_upcast_transform(jsonb) TO event_store_admin;

CREATE FUNCTION event_store._upcasters_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_upcasters_changed' LANGUAGE C;
REVOKE ALL ON FUNCTION event_store._upcasters_changed() FROM PUBLIC;

-- Every write of the registry is checked here, whether it comes through
-- the functions below or straight from an admin; one lock serializes the
-- writers of both tables, so a chain is checked against a stable registry.
CREATE FUNCTION event_store._upcasters_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    cur int;
    fn oid;
    p record;
BEGIN
    LOCK TABLE event_store.upcasters IN SHARE ROW EXCLUSIVE MODE;
    IF TG_OP = 'UPDATE' THEN
        RAISE EXCEPTION 'a registered upcaster cannot be changed'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Unregister the step and register it again (event_store.unregister_upcaster, register_upcaster).';
    END IF;
    IF TG_OP = 'DELETE' THEN
        SELECT v.current_version INTO cur FROM event_store.event_schema_versions v
         WHERE v.event_type = OLD.event_type;
        IF OLD.from_version < coalesce(cur, 1) THEN
            RAISE EXCEPTION 'the upcaster of event type "%" from version % is in use', OLD.event_type, OLD.from_version
                USING ERRCODE = 'ES021',
                      DETAIL = format('The current version of "%s" is %s: events of version %s reach it through this step.',
                                      OLD.event_type, cur, OLD.from_version),
                      HINT = 'Only steps at or above the current version can be unregistered.';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.event_type IS NULL OR NEW.event_type = '' OR octet_length(NEW.event_type) > 255 THEN
        RAISE EXCEPTION 'event_type must be a non-empty text of at most 255 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.from_version IS NULL OR NEW.from_version < 1 THEN
        RAISE EXCEPTION 'from_version must be at least 1, got %', coalesce(NEW.from_version::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Schema versions start at 1; a step turns from_version into from_version + 1.';
    END IF;
    IF NEW.new_event_type IS NOT NULL AND (NEW.new_event_type = '' OR octet_length(NEW.new_event_type) > 255) THEN
        RAISE EXCEPTION 'new_event_type must be a non-empty text of at most 255 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (NEW.upcaster IS NULL) = (NEW.transform IS NULL) THEN
        RAISE EXCEPTION 'an upcaster is either a function or a transform'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM event_store.upcasters u
                WHERE u.event_type = NEW.event_type AND u.from_version = NEW.from_version) THEN
        RAISE EXCEPTION 'an upcaster of event type "%" from version % is already registered', NEW.event_type, NEW.from_version
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Unregister it first (event_store.unregister_upcaster), if it is not in use.';
    END IF;
    IF NEW.transform IS NOT NULL THEN
        PERFORM event_store._check_upcast_transform(NEW.transform);
        NEW.takes_event := false;
    ELSE
        fn := pg_catalog.to_regprocedure(NEW.upcaster);
        IF fn IS NULL THEN
            RAISE EXCEPTION 'upcaster function % does not exist', NEW.upcaster
                USING ERRCODE = 'undefined_function',
                      HINT = 'Name it with its schema and argument types, e.g. public.my_upcaster(jsonb).';
        END IF;
        SELECT pr.prokind, pr.proretset, pr.pronargs, pr.prorettype, pr.proargtypes[0] AS arg,
               pr.pronamespace = pg_my_temp_schema() OR pg_is_other_temp_schema(pr.pronamespace) AS temp
          INTO p FROM pg_catalog.pg_proc pr WHERE pr.oid = fn;
        IF p.prokind <> 'f' OR p.proretset OR p.pronargs <> 1 OR p.prorettype <> 'jsonb'::regtype
           OR p.arg NOT IN ('jsonb'::regtype, 'event_store.events'::regtype) THEN
            RAISE EXCEPTION 'function % is not an upcaster', fn::regprocedure
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = format('An upcaster has the signature (data jsonb) RETURNS jsonb or (event event_store.events) RETURNS jsonb; %s returns %s%s.',
                                      fn::regprocedure, CASE WHEN p.proretset THEN 'setof ' ELSE '' END, p.prorettype::regtype);
        END IF;
        IF p.temp THEN
            RAISE EXCEPTION 'upcaster function % is in a temporary schema', fn::regprocedure
                USING ERRCODE = 'invalid_function_definition',
                      DETAIL = 'A temporary function exists only for the session that created it; other sessions cannot run it.';
        END IF;
        IF NOT pg_catalog.has_function_privilege(fn, 'EXECUTE') THEN
            RAISE EXCEPTION 'permission denied for function %', fn::regprocedure
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'Upcasters run as the role that registers them.';
        END IF;
        NEW.upcaster := event_store._reducer_key(fn);
        NEW.takes_event := p.arg = 'event_store.events'::regtype;
    END IF;
    IF NEW.registered_by IS NULL
       OR NOT pg_catalog.pg_has_role(current_user,
                                     (SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = TG_RELID),
                                     'USAGE') THEN
        NEW.registered_by := current_user;
    END IF;
    NEW.registered_at := pg_catalog.now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION event_store._upcasters_check() FROM PUBLIC;

CREATE FUNCTION event_store._event_schema_versions_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    gap int;
    first int;
BEGIN
    LOCK TABLE event_store.upcasters IN SHARE ROW EXCLUSIVE MODE;
    IF TG_OP = 'DELETE' THEN
        IF OLD.current_version > 1 THEN
            RAISE EXCEPTION 'the current version of event type "%" cannot go back from % to 1', OLD.event_type, OLD.current_version
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Events were appended at the current version; reads never downcast.';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.event_type IS NULL OR NEW.event_type = '' OR octet_length(NEW.event_type) > 255 THEN
        RAISE EXCEPTION 'event_type must be a non-empty text of at most 255 bytes'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NEW.current_version IS NULL OR NEW.current_version < 1 THEN
        RAISE EXCEPTION 'a schema version must be at least 1, got %', coalesce(NEW.current_version::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF NEW.event_type <> OLD.event_type THEN
            RAISE EXCEPTION 'the event type of a schema version cannot be changed'
                USING ERRCODE = 'feature_not_supported';
        END IF;
        IF NEW.current_version < OLD.current_version THEN
            RAISE EXCEPTION 'the current version of event type "%" cannot go back from % to %',
                            NEW.event_type, OLD.current_version, NEW.current_version
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'Events were appended at the current version; reads never downcast.';
        END IF;
    END IF;
    -- Every version from the first up must have a step: version 1 is where
    -- a type starts (appends may name any version up to the current one),
    -- unless steps of other types rename into it: then the lowest version
    -- they deliver.
    SELECT coalesce(pg_catalog.min(r.from_version) + 1, 1) INTO first
      FROM event_store.upcasters r WHERE r.new_event_type = NEW.event_type;
    SELECT pg_catalog.min(c.v) INTO gap
      FROM (SELECT first AS v
            UNION ALL
            SELECT u.from_version + 1 FROM event_store.upcasters u WHERE u.event_type = NEW.event_type) c
     WHERE c.v >= first AND c.v < NEW.current_version
       AND NOT EXISTS (SELECT 1 FROM event_store.upcasters u
                        WHERE u.event_type = NEW.event_type AND u.from_version = c.v);
    IF gap IS NOT NULL THEN
        RAISE EXCEPTION 'version % of event type "%" cannot be reached from version %', NEW.current_version, NEW.event_type, first
            USING ERRCODE = 'ES021',
                  DETAIL = format('No upcaster is registered from version %s: stored events of version %s could not be upcast.', gap, gap),
                  HINT = format('Register the step first: event_store.register_upcaster(%L, %s, ...).', NEW.event_type, gap);
    END IF;
    NEW.updated_at := pg_catalog.now();
    RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION event_store._event_schema_versions_check() FROM PUBLIC;

CREATE TRIGGER upcasters_check BEFORE INSERT OR UPDATE OR DELETE ON event_store.upcasters
    FOR EACH ROW EXECUTE FUNCTION event_store._upcasters_check();
CREATE TRIGGER event_schema_versions_check BEFORE INSERT OR UPDATE OR DELETE ON event_store.event_schema_versions
    FOR EACH ROW EXECUTE FUNCTION event_store._event_schema_versions_check();
CREATE TRIGGER upcasters_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.upcasters
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._upcasters_changed();
CREATE TRIGGER event_schema_versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.event_schema_versions
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._upcasters_changed();

CREATE FUNCTION event_store.set_event_schema(event_type text, version int) RETURNS int
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF set_event_schema.event_type IS NULL OR set_event_schema.version IS NULL THEN
        RAISE EXCEPTION 'event_type and version must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO event_store.event_schema_versions AS v (event_type, current_version)
    VALUES (set_event_schema.event_type, set_event_schema.version)
    ON CONFLICT ON CONSTRAINT event_schema_versions_pkey DO UPDATE SET current_version = EXCLUDED.current_version
     WHERE v.current_version <> EXCLUDED.current_version;
    RETURN set_event_schema.version;
END
$$;
COMMENT ON FUNCTION event_store.set_event_schema(text, int) IS
  'Set the current schema version of an event type: appends stamp it, reads upcast to it. It never goes back, and every version below it must have an upcaster.';

CREATE FUNCTION event_store.register_upcaster(event_type text, from_version int, upcaster regprocedure,
                                              new_event_type text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF register_upcaster.event_type IS NULL OR register_upcaster.from_version IS NULL
       OR register_upcaster.upcaster IS NULL THEN
        RAISE EXCEPTION 'event_type, from_version and upcaster must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO event_store.upcasters (event_type, from_version, upcaster, new_event_type)
    VALUES (register_upcaster.event_type, register_upcaster.from_version,
            event_store._reducer_key(register_upcaster.upcaster), register_upcaster.new_event_type);
END
$$;
COMMENT ON FUNCTION event_store.register_upcaster(text, int, regprocedure, text) IS
  'Register a function (data jsonb) or (event event_store.events) RETURNS jsonb that turns version from_version of event_type into from_version + 1, optionally renaming the type. It runs as the registering role.';

CREATE FUNCTION event_store.register_upcaster(event_type text, from_version int, transform jsonb,
                                              new_event_type text DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF register_upcaster.event_type IS NULL OR register_upcaster.from_version IS NULL
       OR register_upcaster.transform IS NULL THEN
        RAISE EXCEPTION 'event_type, from_version and transform must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO event_store.upcasters (event_type, from_version, transform, new_event_type)
    VALUES (register_upcaster.event_type, register_upcaster.from_version,
            register_upcaster.transform, register_upcaster.new_event_type);
END
$$;
COMMENT ON FUNCTION event_store.register_upcaster(text, int, jsonb, text) IS
  'Register a declarative step (rename, remove, set, merge; docs/upcasting.md), run in C, that turns version from_version of event_type into from_version + 1, optionally renaming the type.';

CREATE FUNCTION event_store.unregister_upcaster(event_type text, from_version int) RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM event_store.upcasters u
     WHERE u.event_type = unregister_upcaster.event_type
       AND u.from_version = unregister_upcaster.from_version;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n > 0;
END
$$;
COMMENT ON FUNCTION event_store.unregister_upcaster(text, int) IS
  'Remove a step that the current version does not depend on (from_version at or above it); false when there was none.';

REVOKE ALL ON FUNCTION event_store.set_event_schema(text, int),
    event_store.register_upcaster(text, int, regprocedure, text),
    event_store.register_upcaster(text, int, jsonb, text),
    event_store.unregister_upcaster(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.set_event_schema(text, int),
    event_store.register_upcaster(text, int, regprocedure, text),
    event_store.register_upcaster(text, int, jsonb, text),
    event_store.unregister_upcaster(text, int) TO event_store_admin;

CREATE VIEW event_store.event_schemas AS
SELECT t.event_type,
       coalesce(v.current_version, 1) AS current_version,
       coalesce((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                        'from_version', u.from_version,
                        'to_version', u.from_version OPERATOR(pg_catalog.+) 1,
                        'upcaster', u.upcaster,
                        'transform', u.transform,
                        'new_event_type', u.new_event_type,
                        'active', u.from_version OPERATOR(pg_catalog.<) coalesce(v.current_version, 1),
                        'registered_by', u.registered_by))
                        ORDER BY u.from_version)
                   FROM event_store.upcasters u
                  WHERE u.event_type OPERATOR(pg_catalog.=) t.event_type), '[]'::jsonb) AS upcasters
  FROM (SELECT x.event_type FROM event_store.event_schema_versions x
        UNION
        SELECT y.event_type FROM event_store.upcasters y) t
  LEFT JOIN event_store.event_schema_versions v ON v.event_type OPERATOR(pg_catalog.=) t.event_type;
COMMENT ON VIEW event_store.event_schemas IS
  'Event types with their current schema version and upcaster chain (active: the step applies to reads now).';
REVOKE ALL ON event_store.event_schemas FROM PUBLIC;
GRANT SELECT ON event_store.event_schemas TO event_store_reader;

-- The reads: each row through event_store._upcast(), after the LIMIT (a
-- read upcasts only the rows it returns).  When nothing can be upcast
-- (event_store._upcasting() false: no type has a step below its current
-- version) the 1.10 statement runs instead, unchanged.  read_stream and
-- read_stream_backward have a planner support function that replaces the
-- call by _<name>_plain (1.10's body) or _<name>_upcast, both inlinable
-- SQL: a read with nothing to upcast plans exactly as in 1.10.  Their own
-- bodies (used only where the support does not run) are both statements,
-- gated by _upcasting_planned(), folded to a constant when planned.  Plans
-- holding the choice are invalidated when the registry changes
-- (src/upcast.c).  The PL/pgSQL reads branch with IF on _upcasting(),
-- evaluated per call.
-- Planner support of read_stream and read_stream_backward (src/upcast.c):
-- the call is replaced when the plan is made by _<name>_plain (1.10's
-- statement) or _<name>_upcast, which the planner then inlines.
CREATE FUNCTION event_store._read_stream_support(internal) RETURNS internal
AS 'MODULE_PATHNAME', 'es_read_stream_support' LANGUAGE C STRICT;
REVOKE ALL ON FUNCTION event_store._read_stream_support(internal) FROM PUBLIC;

CREATE FUNCTION event_store._read_stream_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT (u.e).*
      FROM (SELECT event_store._upcast(e) AS e
              FROM event_store.events e
             WHERE e.stream_id OPERATOR(pg_catalog.=) $1
               AND e.stream_version OPERATOR(pg_catalog.>=) $2
               AND e.stream_version OPERATOR(pg_catalog.<)
                   (CASE WHEN $3 IS NULL
                           OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1))
                         THEN 9223372036854775807
                         ELSE GREATEST($2, 1) OPERATOR(pg_catalog.+) $3 END)
               AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
             ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
             LIMIT $3) u
$$;
REVOKE ALL ON FUNCTION event_store._read_stream_upcast(text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._read_stream_upcast(text, bigint, int) TO event_store_reader;

CREATE FUNCTION event_store._read_stream_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) $2
       AND e.stream_version OPERATOR(pg_catalog.<)
           (CASE WHEN $3 IS NULL
                   OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1))
                 THEN 9223372036854775807
                 ELSE GREATEST($2, 1) OPERATOR(pg_catalog.+) $3 END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3
$$;
REVOKE ALL ON FUNCTION event_store._read_stream_plain(text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._read_stream_plain(text, bigint, int) TO event_store_reader;

CREATE OR REPLACE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
SUPPORT event_store._read_stream_support
AS $$
    -- replaced when planned by _read_stream_plain or _read_stream_upcast
    -- (_read_stream_support); this body where the support does not run
    -- nothing to upcast: the 1.10 statement
    (SELECT e.*
      FROM event_store.events e
     WHERE NOT event_store._upcasting_planned()
       AND e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) $2
       AND e.stream_version OPERATOR(pg_catalog.<)
           (CASE WHEN $3 IS NULL
                   OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-) GREATEST($2, 1))
                 THEN 9223372036854775807
                 ELSE GREATEST($2, 1) OPERATOR(pg_catalog.+) $3 END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3)
    UNION ALL
    -- else the same rows upcast
    SELECT * FROM event_store._read_stream_upcast($1, $2, $3) WHERE event_store._upcasting_planned()
$$;

CREATE FUNCTION event_store._read_stream_backward_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT (u.e).*
      FROM (SELECT event_store._upcast(e) AS e
              FROM event_store.events e
             WHERE e.stream_id OPERATOR(pg_catalog.=) $1
               AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
               AND e.stream_version OPERATOR(pg_catalog.>)
                   (CASE WHEN $3 IS NULL THEN 0
                         ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                              OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
               AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
               AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
             ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
             LIMIT $3) u
$$;
REVOKE ALL ON FUNCTION event_store._read_stream_backward_upcast(text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._read_stream_backward_upcast(text, bigint, int) TO event_store_reader;

CREATE FUNCTION event_store._read_stream_backward_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
       AND e.stream_version OPERATOR(pg_catalog.>)
           (CASE WHEN $3 IS NULL THEN 0
                 ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                      OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3
$$;
REVOKE ALL ON FUNCTION event_store._read_stream_backward_plain(text, bigint, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._read_stream_backward_plain(text, bigint, int) TO event_store_reader;

CREATE OR REPLACE FUNCTION event_store.read_stream_backward(
    stream_id text, from_version bigint DEFAULT NULL, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
SUPPORT event_store._read_stream_support
AS $$
    -- replaced when planned by _read_stream_backward_plain or _read_stream_backward_upcast
    -- (_read_stream_support); this body where the support does not run
    -- nothing to upcast: the 1.10 statement
    (SELECT e.*
      FROM event_store.events e
     WHERE NOT event_store._upcasting_planned()
       AND e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
       AND e.stream_version OPERATOR(pg_catalog.>)
           (CASE WHEN $3 IS NULL THEN 0
                 ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                      OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3)
    UNION ALL
    -- else the same rows upcast
    SELECT * FROM event_store._read_stream_backward_upcast($1, $2, $3) WHERE event_store._upcasting_planned()
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
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(e) AS e
                      FROM event_store.events e
                     WHERE e.global_position > after_position
                       AND e.global_position <= horizon
                       AND e.recorded_at >= scan_from
                       AND e.recorded_at < scan_to
                     ORDER BY e.global_position
                     LIMIT max_count) u;
    ELSE  -- nothing to upcast: the 1.10 statement
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
             ORDER BY e.global_position
             LIMIT max_count;
    END IF;
END
$$;

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
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(e) AS e
                      FROM event_store.events e
                     WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
                       AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
                       AND e.recorded_at >= scan_from
                       AND e.recorded_at < scan_to
                     ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                     LIMIT max_count) u;
    ELSE  -- nothing to upcast: the 1.10 statement
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count;
    END IF;
END
$$;

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
    scan_to := event_store._feed_scan_to(horizon);
    IF s.categories IS NULL THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT (u.e).*
                  FROM (SELECT event_store._upcast(e) AS e
                          FROM event_store.events e
                         WHERE e.global_position > after_position
                           AND e.global_position <= horizon
                           AND e.recorded_at >= scan_from
                           AND e.recorded_at < scan_to
                           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                           AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                         ORDER BY e.global_position
                         LIMIT max_count) u;
        ELSE  -- nothing to upcast: the 1.10 statement
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE e.global_position > after_position
                   AND e.global_position <= horizon
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                 ORDER BY e.global_position
                 LIMIT max_count;
        END IF;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT (u.e).*
                  FROM (SELECT event_store._upcast(e) AS e
                          FROM event_store.events e
                         WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                           AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                           AND e.recorded_at >= scan_from
                           AND e.recorded_at < scan_to
                           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                           AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                         LIMIT max_count) u;
        ELSE  -- nothing to upcast: the 1.10 statement
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                   AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                 ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                 LIMIT max_count;
        END IF;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(x.ev) AS e
              FROM pg_catalog.unnest(categories) AS c(category)
             CROSS JOIN LATERAL (
                   SELECT e AS ev, e.global_position
                     FROM event_store.events e
                    WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (c.category, after_position)
                      AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (c.category, horizon)
                      AND e.recorded_at >= scan_from
                      AND e.recorded_at < scan_to
                      AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                      AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT max_count) x
             ORDER BY x.global_position
             LIMIT max_count) u;
    ELSE  -- nothing to upcast: the 1.10 statement
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
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT max_count) x
             ORDER BY x.global_position
             LIMIT max_count;
    END IF;
END
$$;

-- issue 26: push without NOTIFY's commit lock
--
-- wait_for_feed() blocks until the gap-free horizon passes a position,
-- woken by the committing appender through shared memory (src/feed_wait.c,
-- src/feed.c).  Appends no longer NOTIFY per transaction when the library
-- is preloaded: a background worker per database sends one coalesced
-- NOTIFY per 10 ms, payload the horizon (event_store.notify).
------------------------------------------------------------------------------
CREATE FUNCTION event_store.wait_for_feed(after bigint, timeout_ms integer DEFAULT 10000) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_wait_for_feed' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.wait_for_feed(bigint, integer) IS
  'Blocks until the feed horizon passes after, at most timeout_ms milliseconds; returns the horizon, or after on a timeout. Preloaded: woken by the committing appender; not preloaded (feed_mode() = locks): polls every 10 ms.';
REVOKE ALL ON FUNCTION event_store.wait_for_feed(bigint, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.wait_for_feed(bigint, integer) TO event_store_reader;

CREATE FUNCTION event_store._feed_waiters() RETURNS integer
AS 'MODULE_PATHNAME', 'es_feed_waiters' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store._feed_waiters() IS
  'Backends of the cluster sleeping in wait_for_feed() (0 when not preloaded).';
REVOKE ALL ON FUNCTION event_store._feed_waiters() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._feed_waiters() TO event_store_reader;

COMMENT ON FUNCTION event_store.feed_mode() IS
  '''registry'' when event_store is in shared_preload_libraries: gap-free by a shared-memory registry, wait_for_feed() is woken by committing appenders and NOTIFYs are coalesced by a worker. ''locks'' when not preloaded: gap-free by advisory locks, wait_for_feed() polls every 10 ms, and every appending transaction sends its own NOTIFY.';

------------------------------------------------------------------------------
-- issue 29: subscriptions that survive failures: nack(), retries with
-- backoff, parking, parked_events, replay_parked() and skip_parked().
--
-- A subscription now has max_attempts (1 to 1000, default 5) and
-- retry_delay (over 0, at most 1 day, default 1 second).  nack() records a
-- failed delivery in subscription_retries; the n-th retry of an event is
-- due retry_delay * 2^(n-1) after its n-th nack (the exponent capped at
-- 16), and the max_attempts-th nack parks it.  poll() delivers, in
-- position order: retries that are due, and events after the member's
-- checkpoint, but never an event of a stream that has an earlier event
-- waiting (for its retry, or behind another one): per stream order holds.
-- A parked event no longer holds its stream back.  ack(p) resolves the
-- retries at or before p that poll() delivered, and keeps the events after
-- the checkpoint that poll() held back as "held" rows, delivered once
-- their stream's earlier event is resolved or parked.  The guarantee (at
-- least once, ordered per stream, group size changes): README
-- "Failures: nack, retries and parking".
------------------------------------------------------------------------------
ALTER TABLE event_store.subscriptions
    ADD COLUMN max_attempts int NOT NULL DEFAULT 5
        CONSTRAINT subscriptions_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    ADD COLUMN retry_delay interval NOT NULL DEFAULT '1 second'
        CONSTRAINT subscriptions_retry_delay_check CHECK (retry_delay > '0' AND retry_delay <= '1 day');

-- One row per event of a subscription that failed (nack) or waits behind
-- one of its stream that did (held: attempts 0).  Rows follow the stream:
-- the member that receives it is computed at poll time, for the group size
-- polled.
CREATE TABLE event_store.subscription_retries (
    name            text NOT NULL REFERENCES event_store.subscriptions (name) ON DELETE CASCADE,
    global_position bigint NOT NULL,
    stream_id       text NOT NULL,
    event_type      text NOT NULL,
    attempts        int NOT NULL CHECK (attempts >= 0),
    last_error      text,
    first_failed_at timestamptz,
    last_failed_at  timestamptz,
    next_attempt_at timestamptz,
    delivered_at    timestamptz,
    state           text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'parked', 'skipped')),
    PRIMARY KEY (name, global_position)
);
CREATE INDEX subscription_retries_stream ON event_store.subscription_retries (name, stream_id, global_position);
SELECT pg_catalog.pg_extension_config_dump('event_store.subscription_retries', '');
COMMENT ON TABLE event_store.subscription_retries IS
  'Events of subscriptions that were nacked (attempts >= 1; state parked after max_attempts), wait behind an earlier event of their stream (held, attempts 0), or were skipped (skip_parked(), until the checkpoint passes them).';
REVOKE ALL ON event_store.subscription_retries FROM PUBLIC;
GRANT SELECT ON event_store.subscription_retries TO event_store_reader;
-- nack(), ack() and poll() run as the consumer, like the checkpoint writes.
GRANT INSERT, DELETE ON event_store.subscription_retries TO event_store_reader;
GRANT UPDATE (attempts, last_error, first_failed_at, last_failed_at, next_attempt_at, delivered_at, state)
    ON event_store.subscription_retries TO event_store_reader;
GRANT INSERT, UPDATE, DELETE ON event_store.subscription_retries TO event_store_admin;

-- The 3-argument subscribe() would make calls with 3 arguments ambiguous.
DROP FUNCTION event_store.subscribe(text, text[], text[]);
CREATE FUNCTION event_store.subscribe(
    name text, categories text[] DEFAULT NULL, event_types text[] DEFAULT NULL,
    max_attempts int DEFAULT 5, retry_delay interval DEFAULT '1 second')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s event_store.subscriptions;
BEGIN
    PERFORM event_store._check_name(subscribe.name, 'subscription');
    PERFORM event_store._check_filter(categories, 'categories');
    PERFORM event_store._check_filter(event_types, 'event_types');
    IF subscribe.max_attempts IS NULL OR subscribe.max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000, got %', coalesce(subscribe.max_attempts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'max_attempts 1 parks an event at its first nack().';
    END IF;
    IF subscribe.retry_delay IS NULL OR NOT (subscribe.retry_delay > '0' AND subscribe.retry_delay <= '1 day') THEN
        RAISE EXCEPTION 'retry_delay must be over 0 and at most 1 day, got %', coalesce(subscribe.retry_delay::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO event_store.subscriptions (name, categories, event_types, max_attempts, retry_delay)
    VALUES (subscribe.name, subscribe.categories, subscribe.event_types, subscribe.max_attempts, subscribe.retry_delay)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT * INTO s FROM event_store.subscriptions x WHERE x.name = subscribe.name;
    IF s.categories IS DISTINCT FROM subscribe.categories OR s.event_types IS DISTINCT FROM subscribe.event_types THEN
        RAISE EXCEPTION 'subscription "%" already exists with other filters', subscribe.name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('It has categories %s and event_types %s.',
                                  coalesce(s.categories::text, 'NULL'), coalesce(s.event_types::text, 'NULL')),
                  HINT = 'Unsubscribe first, or use another name.';
    END IF;
    -- The retry policy may change; rows already waiting keep their times.
    UPDATE event_store.subscriptions x
       SET max_attempts = subscribe.max_attempts, retry_delay = subscribe.retry_delay
     WHERE x.name = subscribe.name
       AND (x.max_attempts, x.retry_delay) IS DISTINCT FROM (subscribe.max_attempts, subscribe.retry_delay);
    RETURN false;
END
$$;
COMMENT ON FUNCTION event_store.subscribe(text, text[], text[], int, interval) IS
  'Create a subscription (true), or nothing when it exists with the same filters (false; its max_attempts and retry_delay are set). It starts at the beginning of the log.';
REVOKE ALL ON FUNCTION event_store.subscribe(text, text[], text[], int, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.subscribe(text, text[], text[], int, interval) TO event_store_admin;

-- The delay before the n-th retry (after the n-th nack): retry_delay *
-- 2^(n-1), the exponent capped at 16 so that it cannot overflow.
CREATE FUNCTION event_store.retry_backoff(retry_delay interval, attempt int) RETURNS interval
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
RETURN retry_delay * pg_catalog.power(2, least(greatest(attempt, 1) - 1, 16))::float8;
COMMENT ON FUNCTION event_store.retry_backoff(interval, int) IS
  'The delay before the retry that follows an event''s attempt-th nack(): retry_delay * 2^(attempt-1), exponent capped at 16.';
REVOKE ALL ON FUNCTION event_store.retry_backoff(interval, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.retry_backoff(interval, int) TO event_store_reader;

-- Whether poll() holds back an event at pos of stream: an unparked retry
-- row of an earlier event of the same stream waits.
CREATE FUNCTION event_store._subscription_held(name text, stream_id text, pos bigint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT 1 FROM event_store.subscription_retries r
                WHERE r.name = $1 AND r.stream_id = $2 AND r.global_position < $3 AND r.state = 'waiting');
REVOKE ALL ON FUNCTION event_store._subscription_held(text, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._subscription_held(text, text, bigint) TO event_store_reader;

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
    fresh          int;
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
    scan_to := event_store._feed_scan_to(horizon);
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
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
    -- Retries first, then new events: max_count in all.
    fresh := max_count - pg_catalog.cardinality(retries);
    RETURN QUERY
        SELECT e.* FROM event_store.events e
         WHERE e.global_position = ANY (retries)
         ORDER BY e.global_position;
    IF fresh = 0 THEN
        RETURN;
    END IF;
    IF s.categories IS NULL THEN
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
             ORDER BY e.global_position
             LIMIT fresh;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
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
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT fresh;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
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
                ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                LIMIT fresh) x
         ORDER BY x.global_position
         LIMIT fresh;
END
$$;
COMMENT ON FUNCTION event_store.poll(text, int, int, int) IS
  'The next events of a subscription (member): retries that are due, then events after its checkpoint from the gap-free feed, by global_position; never an event whose stream has an earlier one waiting. Does not move the checkpoint: ack() does.';

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
    after_position bigint;
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
        -- Events the checkpoint passes that poll() held back behind an
        -- earlier event of their stream stay, as held rows.
        INSERT INTO event_store.subscription_retries (name, global_position, stream_id, event_type, attempts)
        SELECT ack.name, e.global_position, e.stream_id, e.event_type, 0
          FROM event_store.events e
         WHERE e.global_position > after_position AND e.global_position <= ack.position
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
COMMENT ON FUNCTION event_store.ack(text, bigint, int, int) IS
  'Acknowledge everything poll() delivered up to position for a subscription (member), retries included; the checkpoint never moves back. Events nacked and not redelivered since stay waiting.';

-- A consumer failed on an event poll() gave it: record the attempt and when
-- to retry, or park it.  The reason is kept for parked_events (at most
-- 10000 characters).
CREATE FUNCTION event_store.nack(
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
    n       int;
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
    SELECT x.global_position, x.stream_id, x.event_type INTO e
      FROM event_store.events x
     WHERE x.global_position = nack.position AND x.global_position <= event_store.feed_horizon();
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
COMMENT ON FUNCTION event_store.nack(text, bigint, text, int, int) IS
  'A delivered event failed: it comes back from poll() after retry_backoff(retry_delay, attempts); at max_attempts it is parked. Returns ''retry'' or ''parked''.';
REVOKE ALL ON FUNCTION event_store.nack(text, bigint, text, int, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.nack(text, bigint, text, int, int) TO event_store_reader;

CREATE VIEW event_store.parked_events AS
SELECT r.name AS consumer, 'subscription'::text AS kind, r.global_position, r.stream_id, r.event_type,
       r.attempts, r.last_error, r.first_failed_at, r.last_failed_at
  FROM event_store.subscription_retries r
 WHERE r.state = 'parked';
COMMENT ON VIEW event_store.parked_events IS
  'Events that failed max_attempts times (or were parked at once) and are out of delivery until replay_parked() or skip_parked().';
REVOKE ALL ON event_store.parked_events FROM PUBLIC;
GRANT SELECT ON event_store.parked_events TO event_store_reader;

-- The consumer's parked rows to act on: all, or the one at position; an
-- unknown consumer or position is an error.
CREATE FUNCTION event_store._parked_args(consumer text, "position" bigint) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(consumer, 'consumer');
    IF NOT EXISTS (SELECT 1 FROM event_store.subscriptions s WHERE s.name = consumer) THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer
            USING ERRCODE = 'undefined_object',
                  HINT = 'A consumer is a subscription; see event_store.parked_events.';
    END IF;
    IF "position" IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM event_store.subscription_retries r
         WHERE r.name = consumer AND r.global_position = "position" AND r.state = 'parked') THEN
        RAISE EXCEPTION 'no parked event at position % of consumer "%"', "position", consumer
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See event_store.parked_events.';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store._parked_args(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._parked_args(text, bigint) TO event_store_reader;

CREATE FUNCTION event_store.replay_parked(consumer text, "position" bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM event_store._parked_args(consumer, "position");
    UPDATE event_store.subscription_retries r
       SET state = 'waiting', attempts = 0, next_attempt_at = NULL, delivered_at = NULL
     WHERE r.name = consumer AND r.state = 'parked' AND (replay_parked.position IS NULL OR r.global_position = replay_parked.position);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.replay_parked(text, bigint) IS
  'Put a consumer''s parked event (all of them when position is NULL) back into delivery, with max_attempts new attempts; returns how many.';
REVOKE ALL ON FUNCTION event_store.replay_parked(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.replay_parked(text, bigint) TO event_store_reader;

CREATE FUNCTION event_store.skip_parked(consumer text, "position" bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
BEGIN
    PERFORM event_store._parked_args(consumer, "position");
    UPDATE event_store.subscription_retries r
       SET state = 'skipped', next_attempt_at = NULL, delivered_at = NULL
     WHERE r.name = consumer AND r.state = 'parked' AND (skip_parked.position IS NULL OR r.global_position = skip_parked.position);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.skip_parked(text, bigint) IS
  'Drop a consumer''s parked event (all of them when position is NULL) for good; returns how many.';
REVOKE ALL ON FUNCTION event_store.skip_parked(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.skip_parked(text, bigint) TO event_store_reader;

------------------------------------------------------------------------------
-- issue 29: async projections that park failing events instead of
-- blocking.  create_projection(..., on_error DEFAULT 'retry', max_attempts
-- DEFAULT 5, retry_delay DEFAULT '1 second'):
--   'stop'  a handler error aborts run_projection() (the behaviour before
--           1.11, kept for projections registered before it);
--   'park'  the event is parked at its first failure and the run goes on;
--   'retry' the event is retried by later runs, retry_backoff(retry_delay, n)
--           after its n-th failure, and parked at the max_attempts-th;
--           later events of its stream wait for it (held), other streams go
--           on.
-- run_projection() (src/projection.c) calls the handler in a subtransaction
-- for 'park' and 'retry', handles due retries before new events, and moves
-- the checkpoint past failed and held events.  Inline projections ignore
-- on_error: a handler error rolls the append back.
------------------------------------------------------------------------------
ALTER TABLE event_store.projection_registry
    ADD COLUMN on_error text NOT NULL DEFAULT 'stop'
        CONSTRAINT projection_registry_on_error_check CHECK (on_error IN ('retry', 'park', 'stop')),
    ADD COLUMN max_attempts int NOT NULL DEFAULT 5
        CONSTRAINT projection_registry_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    ADD COLUMN retry_delay interval NOT NULL DEFAULT '1 second'
        CONSTRAINT projection_registry_retry_delay_check CHECK (retry_delay > '0' AND retry_delay <= '1 day');
-- Registered before 1.11: 'stop' (unchanged); from now on 'retry'.
ALTER TABLE event_store.projection_registry ALTER COLUMN on_error SET DEFAULT 'retry';

CREATE TABLE event_store.projection_retries (
    name            text NOT NULL REFERENCES event_store.projection_registry (name) ON DELETE CASCADE,
    global_position bigint NOT NULL,
    stream_id       text NOT NULL,
    event_type      text NOT NULL,
    attempts        int NOT NULL CHECK (attempts >= 0),
    last_error      text,
    first_failed_at timestamptz,
    last_failed_at  timestamptz,
    next_attempt_at timestamptz,
    state           text NOT NULL DEFAULT 'waiting' CHECK (state IN ('waiting', 'parked')),
    PRIMARY KEY (name, global_position)
);
CREATE INDEX projection_retries_stream ON event_store.projection_retries (name, stream_id, global_position);
SELECT pg_catalog.pg_extension_config_dump('event_store.projection_retries', '');
COMMENT ON TABLE event_store.projection_retries IS
  'Events of async projections whose handler failed (attempts >= 1; parked after max_attempts, or at once with on_error ''park'') or that wait behind such an event of their stream (held, attempts 0).';
REVOKE ALL ON event_store.projection_retries FROM PUBLIC;
GRANT SELECT ON event_store.projection_retries TO event_store_reader;
GRANT INSERT, UPDATE, DELETE ON event_store.projection_retries TO event_store_admin;

DROP FUNCTION event_store.create_projection(text, regprocedure, text[], text[], text, regprocedure);
CREATE FUNCTION event_store.create_projection(
    name text, handler regprocedure, event_types text[] DEFAULT NULL,
    categories text[] DEFAULT NULL, mode text DEFAULT 'inline',
    reset regprocedure DEFAULT NULL, on_error text DEFAULT 'retry',
    max_attempts int DEFAULT 5, retry_delay interval DEFAULT '1 second')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(create_projection.name, 'projection');
    IF handler IS NULL THEN
        RAISE EXCEPTION 'projection handler must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF mode IS NULL OR mode NOT IN ('inline', 'async') THEN
        RAISE EXCEPTION 'invalid projection mode "%"', coalesce(mode, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''inline'' (in the appending transaction) or ''async'' (run_projection()).';
    END IF;
    IF on_error IS NULL OR on_error NOT IN ('retry', 'park', 'stop') THEN
        RAISE EXCEPTION 'invalid on_error "%"', coalesce(on_error, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''retry'' (with backoff, then park), ''park'' or ''stop''.';
    END IF;
    IF create_projection.max_attempts IS NULL OR create_projection.max_attempts NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'max_attempts must be between 1 and 1000, got %', coalesce(create_projection.max_attempts::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF create_projection.retry_delay IS NULL
       OR NOT (create_projection.retry_delay > '0' AND create_projection.retry_delay <= '1 day') THEN
        RAISE EXCEPTION 'retry_delay must be over 0 and at most 1 day, got %', coalesce(create_projection.retry_delay::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM event_store._check_handler(handler, 'handler');
    IF reset IS NOT NULL THEN
        PERFORM event_store._check_handler(reset, 'reset');
    END IF;
    PERFORM event_store._check_filter(event_types, 'event_types');
    PERFORM event_store._check_filter(categories, 'categories');
    IF EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = create_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', create_projection.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with event_store.drop_projection().';
    END IF;
    INSERT INTO event_store.projection_registry (name, handler, event_types, categories, mode, reset_handler,
                                                 on_error, max_attempts, retry_delay)
    VALUES (create_projection.name, handler::text, event_types, categories, mode, reset::text,
            on_error, create_projection.max_attempts, create_projection.retry_delay);
    INSERT INTO event_store.projection_checkpoints (name) VALUES (create_projection.name);
END
$$;
COMMENT ON FUNCTION event_store.create_projection(text, regprocedure, text[], text[], text, regprocedure, text, int, interval) IS
  'Register a projection: handler (event event_store.events) RETURNS void, optional filters, mode inline|async, optional reset function () RETURNS void for rebuilds, on_error retry|park|stop for async runs. Past events are not replayed: call rebuild_projection().';
REVOKE ALL ON FUNCTION event_store.create_projection(text, regprocedure, text[], text[], text, regprocedure, text, int, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.create_projection(text, regprocedure, text[], text[], text, regprocedure, text, int, interval) TO event_store_admin;

-- Called by run_projection() (C) for 'retry' and 'park' projections.
-- Whether an event waits behind an earlier one of its stream.
CREATE FUNCTION event_store._projection_held(name text, stream_id text, pos bigint) RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN EXISTS (SELECT 1 FROM event_store.projection_retries r
                WHERE r.name = $1 AND r.stream_id = $2 AND r.global_position < $3 AND r.state = 'waiting');

-- Keep an event that waits behind an earlier one of its stream.
CREATE FUNCTION event_store._projection_hold(name text, pos bigint, stream_id text, event_type text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    INSERT INTO event_store.projection_retries (name, global_position, stream_id, event_type, attempts)
    VALUES ($1, $2, $3, $4, 0)
    ON CONFLICT ON CONSTRAINT projection_retries_pkey DO NOTHING;
END;

-- A handler failed on an event: count the attempt, schedule the retry or
-- park it.  True when it waits (later events of its stream are held).
CREATE FUNCTION event_store._projection_failed(name text, pos bigint, stream_id text, event_type text, error text)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
    n   int;
BEGIN
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name = _projection_failed.name;
    n := coalesce((SELECT x.attempts FROM event_store.projection_retries x
                    WHERE x.name = _projection_failed.name AND x.global_position = pos), 0) + 1;
    INSERT INTO event_store.projection_retries AS x
           (name, global_position, stream_id, event_type, attempts, last_error,
            first_failed_at, last_failed_at, next_attempt_at, state)
    VALUES (_projection_failed.name, pos, _projection_failed.stream_id, _projection_failed.event_type, n,
            pg_catalog.left(error, 10000), pg_catalog.now(), pg_catalog.now(),
            CASE WHEN reg.on_error = 'park' OR n >= reg.max_attempts THEN NULL
                 ELSE pg_catalog.now() + event_store.retry_backoff(reg.retry_delay, n) END,
            CASE WHEN reg.on_error = 'park' OR n >= reg.max_attempts THEN 'parked' ELSE 'waiting' END)
    ON CONFLICT ON CONSTRAINT projection_retries_pkey DO UPDATE
       SET attempts = excluded.attempts, last_error = excluded.last_error,
           first_failed_at = coalesce(x.first_failed_at, excluded.first_failed_at),
           last_failed_at = excluded.last_failed_at, next_attempt_at = excluded.next_attempt_at,
           state = excluded.state;
    RETURN NOT (reg.on_error = 'park' OR n >= reg.max_attempts);
END
$$;

-- The waiting events whose turn has come: due, and first of their stream.
CREATE FUNCTION event_store._projection_due(name text, max_count bigint)
RETURNS TABLE (e event_store.events, global_position bigint, stream_id text, event_type text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ev, ev.global_position, ev.stream_id, ev.event_type
      FROM event_store.projection_retries r
      JOIN event_store.events ev ON ev.global_position = r.global_position
     WHERE r.name = $1 AND r.state = 'waiting'
       AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= pg_catalog.now())
       AND NOT event_store._projection_held($1, r.stream_id, r.global_position)
     ORDER BY r.global_position
     LIMIT $2;
END;

-- A retried or held event went through.
CREATE FUNCTION event_store._projection_done(name text, pos bigint) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    DELETE FROM event_store.projection_retries r WHERE r.name = $1 AND r.global_position = $2;
END;

DO $$
DECLARE
    f text;
BEGIN
    FOREACH f IN ARRAY ARRAY['event_store._projection_held(text,text,bigint)',
                             'event_store._projection_hold(text,bigint,text,text)',
                             'event_store._projection_failed(text,bigint,text,text,text)',
                             'event_store._projection_due(text,bigint)',
                             'event_store._projection_done(text,bigint)'] LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO event_store_admin', f);
    END LOOP;
END
$$;

-- A rebuild starts the projection over: its retries and parked events go.
CREATE OR REPLACE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name FOR UPDATE;
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = pg_catalog.now(),
           rebuild_started_at = pg_catalog.clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    DELETE FROM event_store.projection_retries r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    -- as the registrar (issue 25 item 2; 1.10 ran it as the caller)
    PERFORM event_store._call_projection_reset(_rebuild_start.name);
    mode := reg.mode;
END
$$;

CREATE OR REPLACE VIEW event_store.parked_events AS
SELECT r.name AS consumer, 'subscription'::text AS kind, r.global_position, r.stream_id, r.event_type,
       r.attempts, r.last_error, r.first_failed_at, r.last_failed_at
  FROM event_store.subscription_retries r
 WHERE r.state = 'parked'
UNION ALL
SELECT r.name, 'projection', r.global_position, r.stream_id, r.event_type,
       r.attempts, r.last_error, r.first_failed_at, r.last_failed_at
  FROM event_store.projection_retries r
 WHERE r.state = 'parked';

CREATE OR REPLACE VIEW event_store.projection_status AS
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
       p.events_processed,
       (SELECT count(*) FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.state = 'parked') AS parked,
       (SELECT count(*) FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.state = 'waiting') AS waiting,
       (SELECT r.last_error FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.last_failed_at IS NOT NULL
         ORDER BY r.last_failed_at DESC, r.global_position DESC LIMIT 1) AS last_error
  FROM event_store.projections p
 ORDER BY p.name;
COMMENT ON VIEW event_store.projection_status IS
  'Projections: checkpoint, lag in events and in time (age of the oldest unprocessed event; async only), last run; events parked and waiting for a retry, and the last handler error.';

-- replay_parked() and skip_parked() act on subscriptions and projections
-- (both, when a subscription and a projection share the name).
CREATE OR REPLACE FUNCTION event_store._parked_args(consumer text, "position" bigint) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(consumer, 'consumer');
    IF NOT EXISTS (SELECT 1 FROM event_store.subscriptions s WHERE s.name = consumer)
       AND NOT EXISTS (SELECT 1 FROM event_store.projection_registry p WHERE p.name = consumer) THEN
        RAISE EXCEPTION 'consumer "%" does not exist', consumer
            USING ERRCODE = 'undefined_object',
                  HINT = 'A consumer is a subscription or a projection; see event_store.parked_events.';
    END IF;
    IF "position" IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM event_store.parked_events r
         WHERE r.consumer = _parked_args.consumer AND r.global_position = "position") THEN
        RAISE EXCEPTION 'no parked event at position % of consumer "%"', "position", consumer
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'See event_store.parked_events.';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.replay_parked(consumer text, "position" bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
    m bigint;
BEGIN
    PERFORM event_store._parked_args(consumer, "position");
    IF EXISTS (SELECT 1 FROM event_store.subscriptions s WHERE s.name = consumer) THEN
        UPDATE event_store.subscription_retries r
           SET state = 'waiting', attempts = 0, next_attempt_at = NULL, delivered_at = NULL
         WHERE r.name = consumer AND r.state = 'parked'
           AND (replay_parked.position IS NULL OR r.global_position = replay_parked.position);
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF EXISTS (SELECT 1 FROM event_store.projection_registry p WHERE p.name = consumer) THEN
        -- the next run_projection() handles it first
        UPDATE event_store.projection_retries r
           SET state = 'waiting', attempts = 0, next_attempt_at = NULL
         WHERE r.name = consumer AND r.state = 'parked'
           AND (replay_parked.position IS NULL OR r.global_position = replay_parked.position);
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION event_store.skip_parked(consumer text, "position" bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
    m bigint;
BEGIN
    PERFORM event_store._parked_args(consumer, "position");
    IF EXISTS (SELECT 1 FROM event_store.subscriptions s WHERE s.name = consumer) THEN
        UPDATE event_store.subscription_retries r
           SET state = 'skipped', next_attempt_at = NULL, delivered_at = NULL
         WHERE r.name = consumer AND r.state = 'parked'
           AND (skip_parked.position IS NULL OR r.global_position = skip_parked.position);
        GET DIAGNOSTICS n = ROW_COUNT;
    END IF;
    IF EXISTS (SELECT 1 FROM event_store.projection_registry p WHERE p.name = consumer) THEN
        -- the checkpoint is past it already
        DELETE FROM event_store.projection_retries r
         WHERE r.name = consumer AND r.state = 'parked'
           AND (skip_parked.position IS NULL OR r.global_position = skip_parked.position);
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END IF;
    RETURN n;
END
$$;

------------------------------------------------------------------------------
-- issue 28: stream lifecycle -- delete_stream (soft and hard) and
-- truncate_stream (src/lifecycle.c; README "Deleting and truncating
-- streams").
--
-- The stream's row carries the state; no event is changed or removed (the
-- log stays append-only, docs/append-only.md):
--   truncate_before  events of the stream below this version are hidden
--                    from every read path (NULL: none);
--   deleted_at       set by delete_stream(): the stream is deleted while its
--                    version is below truncate_before (a later append
--                    recreates it, its versions continuing);
--   tombstoned_at    set by delete_stream(hard => true): every later
--                    append to the stream id fails with ES006.
-- The columns have no default, so new rows (the direct append path writes
-- them as NULL) need nothing new.  A row trigger with a WHEN clause refuses
-- the version bump of a tombstoned stream on every executor path; the
-- direct path (src/append_direct.c) checks the column itself and leaves
-- such an append to the statement.  Reads filter with one condition
-- against the row: e.stream_version >= truncate_before (and, with stream
-- metadata below, the max_count and max_age windows).
------------------------------------------------------------------------------
ALTER TABLE event_store.streams
    ADD COLUMN truncate_before bigint,
    ADD COLUMN deleted_at timestamptz,
    ADD COLUMN tombstoned_at timestamptz,
    ADD COLUMN metadata jsonb,
    ADD COLUMN metadata_version bigint,
    ADD COLUMN max_age interval,
    ADD COLUMN max_count bigint;
COMMENT ON COLUMN event_store.streams.truncate_before IS
  'Events of the stream below this version are hidden from reads (delete_stream, truncate_stream); NULL: none.';
COMMENT ON COLUMN event_store.streams.deleted_at IS
  'When delete_stream() last deleted the stream; it stays deleted while version < truncate_before.';
COMMENT ON COLUMN event_store.streams.tombstoned_at IS
  'When delete_stream(hard => true) tombstoned the stream: appends to it fail with ES006.';
COMMENT ON COLUMN event_store.streams.metadata IS
  'The stream''s metadata object (set_stream_metadata); NULL when never set.';
COMMENT ON COLUMN event_store.streams.metadata_version IS
  'How many times set_stream_metadata() changed the metadata; NULL (0) when never.';
COMMENT ON COLUMN event_store.streams.max_age IS
  'Metadata max_age: events recorded longer ago than this are hidden from reads.';
COMMENT ON COLUMN event_store.streams.max_count IS
  'Metadata max_count: only the newest max_count events are visible.';
-- the few streams with hidden events, for the readers' anti-join
-- (max_age and max_count set truncate_before to at least 1, so that this
-- one predicate finds every stream with hidden events)
CREATE INDEX streams_truncated_idx ON event_store.streams (stream_id)
    INCLUDE (truncate_before, version, max_count, max_age)
    WHERE truncate_before IS NOT NULL;

CREATE FUNCTION event_store._refuse_tombstoned() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_refuse_tombstoned' LANGUAGE C;
REVOKE ALL ON FUNCTION event_store._refuse_tombstoned() FROM PUBLIC;
CREATE TRIGGER _refuse_tombstoned BEFORE UPDATE OF version ON event_store.streams
    FOR EACH ROW WHEN (OLD.tombstoned_at IS NOT NULL)
    EXECUTE FUNCTION event_store._refuse_tombstoned();
ALTER TABLE event_store.streams ENABLE ALWAYS TRIGGER _refuse_tombstoned;

CREATE FUNCTION event_store.delete_stream(stream_id text, expected_version bigint DEFAULT NULL,
    hard boolean DEFAULT false, reason text DEFAULT NULL) RETURNS void
AS 'MODULE_PATHNAME', 'es_delete_stream' LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION event_store.delete_stream(text, bigint, boolean, text) IS
  'Hide a stream''s events from every read (hard: and refuse later appends, ES006); checked against expected_version (ES001); recorded in ''$audit-deletions''.';
REVOKE ALL ON FUNCTION event_store.delete_stream(text, bigint, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.delete_stream(text, bigint, boolean, text) TO event_store_admin;

CREATE FUNCTION event_store.truncate_stream(stream_id text, before_version bigint) RETURNS void
AS 'MODULE_PATHNAME', 'es_truncate_stream' LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION event_store.truncate_stream(text, bigint) IS
  'Hide the stream''s events below before_version from every read; recorded in ''$audit-deletions''.';
REVOKE ALL ON FUNCTION event_store.truncate_stream(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.truncate_stream(text, bigint) TO event_store_admin;

-- Each stream's lifecycle state, for readers.
CREATE VIEW event_store.stream_lifecycle AS
SELECT s.stream_id, s.category, s.version,
       CASE WHEN s.tombstoned_at IS NOT NULL THEN 'tombstoned'
            WHEN s.deleted_at IS NOT NULL AND s.version OPERATOR(pg_catalog.<) s.truncate_before THEN 'deleted'
            WHEN s.truncate_before OPERATOR(pg_catalog.>) 1
              OR s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.>=) 1 THEN 'truncated'
            ELSE 'live' END AS state,
       GREATEST(coalesce(s.truncate_before, 1), s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1) AS first_visible_version,
       s.deleted_at, s.tombstoned_at, s.max_age, s.max_count, coalesce(s.metadata_version, 0) AS metadata_version
  FROM event_store.streams s;
COMMENT ON VIEW event_store.stream_lifecycle IS
  'Each stream''s lifecycle state: live, truncated, deleted (soft) or tombstoned (hard), and its first visible version.';
REVOKE ALL ON event_store.stream_lifecycle FROM PUBLIC;
GRANT SELECT ON event_store.stream_lifecycle TO event_store_reader;

-- A deleted stream has no version (NULL); an unknown one still 0.
CREATE OR REPLACE FUNCTION event_store.stream_version(stream_id text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT CASE WHEN s.stream_id IS NULL THEN 0
                    WHEN s.tombstoned_at IS NOT NULL
                      OR (s.deleted_at IS NOT NULL AND s.version OPERATOR(pg_catalog.<) s.truncate_before) THEN NULL
                    ELSE s.version END
          FROM (SELECT) d
          LEFT JOIN event_store.streams s ON s.stream_id OPERATOR(pg_catalog.=) stream_version.stream_id);

-- The first version of the stream that reads show, by truncate_before
-- (deletions, truncation) and max_count; NULL when nothing is hidden that
-- way.  max_age hides by recorded_at instead.
CREATE FUNCTION event_store._first_visible_version(stream_id text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT GREATEST(s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1)
          FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) _first_visible_version.stream_id);
REVOKE ALL ON FUNCTION event_store._first_visible_version(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._first_visible_version(text) TO event_store_reader;

-- Stream reads start at the stream's first visible version: a page from
-- version 1 of a truncated stream is its first visible events.  Under
-- max_age a page has no upper version bound (old events inside it are
-- skipped, and the page still holds max_count events when there are).
CREATE OR REPLACE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
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
       AND e.stream_version OPERATOR(pg_catalog.>)
           (CASE WHEN $3 IS NULL THEN 0
                 ELSE GREATEST(coalesce($2, (SELECT s.version FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)), 0)
                      OPERATOR(pg_catalog.-) GREATEST($3, 0) END)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
       AND e.stream_version OPERATOR(pg_catalog.>=) coalesce(event_store._first_visible_version($1), 1)
       AND e.recorded_at OPERATOR(pg_catalog.>=) coalesce((SELECT pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1), '-infinity')
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3
$$;

-- The feeds and tag reads skip the hidden events of deleted and truncated
-- streams: a check against the stream's row for each event (a partial
-- index holds only the streams that hide events).  The feeds first ask
-- whether any stream they read hides events at all, and skip the per-event
-- check when none does (one index probe per call).
CREATE INDEX streams_truncated_category_idx ON event_store.streams (category)
    WHERE truncate_before IS NOT NULL;

-- Does any stream of these categories (NULL: any stream) hide events?
-- The partial indexes answer it; seq scans are off because the planner
-- expects an EXISTS over a large streams table to stop early, which it
-- never does when the answer is no (the common case).
CREATE FUNCTION event_store._streams_hide(categories text[]) RETURNS boolean
LANGUAGE sql STABLE
SET enable_seqscan = off
RETURN CASE WHEN categories IS NULL
            THEN EXISTS (SELECT FROM event_store.streams h WHERE h.truncate_before IS NOT NULL)
            ELSE EXISTS (SELECT FROM event_store.streams h
                          WHERE h.truncate_before IS NOT NULL
                            AND h.category OPERATOR(pg_catalog.=) ANY (categories)) END;
REVOKE ALL ON FUNCTION event_store._streams_hide(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._streams_hide(text[]) TO event_store_reader;
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
    -- any stream with hidden events at all? (else no per-event check)
    _hides    boolean := event_store._streams_hide(NULL);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
           AND e.recorded_at >= scan_from
           AND e.recorded_at < scan_to
           AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                             AND h.truncate_before IS NOT NULL
                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;

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
    -- any stream of the category with hidden events? (else no per-event check)
    _hides    boolean := event_store._streams_hide(ARRAY[category]);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
           AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
           AND e.recorded_at >= scan_from
           AND e.recorded_at < scan_to
           AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                             AND h.truncate_before IS NOT NULL
                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
         LIMIT max_count;
END
$$;

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
    fresh          int; _hides boolean;  -- (one line: error line numbers stay)
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
    scan_to := event_store._feed_scan_to(horizon); _hides := event_store._streams_hide(s.categories);  -- issue 28: hidden events?
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
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
    -- Retries first, then new events: max_count in all.
    fresh := max_count - pg_catalog.cardinality(retries);
    RETURN QUERY
        SELECT e.* FROM event_store.events e
         WHERE e.global_position = ANY (retries)
         ORDER BY e.global_position;
    IF fresh = 0 THEN
        RETURN;
    END IF;
    IF s.categories IS NULL THEN
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
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                 AND h.truncate_before IS NOT NULL
                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT fresh;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
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
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                 AND h.truncate_before IS NOT NULL
                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT fresh;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
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
                  AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                    AND h.truncate_before IS NOT NULL
                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                LIMIT fresh) x
         ORDER BY x.global_position
         LIMIT fresh;
END
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
       AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                        AND h.truncate_before IS NOT NULL
                        AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                             OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                             OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
     ORDER BY e.global_position USING OPERATOR(pg_catalog.<)
$$;

-- issue 28: stream metadata.  Versioned with optimistic concurrency on the
-- metadata version; the keys max_age, max_count and truncate_before hide
-- events from reads (above), the rest is kept for the user.
CREATE FUNCTION event_store.set_stream_metadata(stream_id text, metadata jsonb,
    expected_metadata_version bigint DEFAULT NULL) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_set_stream_metadata' LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION event_store.set_stream_metadata(text, jsonb, bigint) IS
  'Replace a stream''s metadata (keys max_age, max_count, truncate_before honoured); checked against expected_metadata_version (ES001); returns the new metadata version.';
REVOKE ALL ON FUNCTION event_store.set_stream_metadata(text, jsonb, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.set_stream_metadata(text, jsonb, bigint) TO event_store_admin;

CREATE FUNCTION event_store.stream_metadata(stream_id text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN (SELECT s.metadata FROM event_store.streams s
         WHERE s.stream_id OPERATOR(pg_catalog.=) stream_metadata.stream_id);
COMMENT ON FUNCTION event_store.stream_metadata(text) IS
  'The stream''s metadata object; NULL when none was set or the stream does not exist.';
REVOKE ALL ON FUNCTION event_store.stream_metadata(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.stream_metadata(text) TO event_store_reader;

------------------------------------------------------------------------------
-- issues 27, 28, 29: read functions combined.  Issue 27 (upcasters), issue
-- 28 (lifecycle hiding) and issue 29 (poll's retries and held events) each
-- redefined these reads above; the last definition in this script is the
-- one installed, so each is given once more here with all three: upcasting
-- only when event_store._upcasting() is true (the plain statement
-- otherwise), and the _hides filter of issue 28 in both variants.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION event_store._read_stream_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
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
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT (u.e).*
      FROM (SELECT event_store._upcast(e) AS e
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
             LIMIT $3) u
$$;

-- SUPPORT restated: a CREATE OR REPLACE without it would drop it.
CREATE OR REPLACE FUNCTION event_store.read_stream(
    stream_id text, from_version bigint DEFAULT 1, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
SUPPORT event_store._read_stream_support
AS $$
    -- replaced when planned by _read_stream_plain or _read_stream_upcast
    -- (_read_stream_support); this body where the support does not run
    (SELECT * FROM event_store._read_stream_plain($1, $2, $3) WHERE NOT event_store._upcasting_planned())
    UNION ALL
    SELECT * FROM event_store._read_stream_upcast($1, $2, $3) WHERE event_store._upcasting_planned()
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_backward_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT e.*
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
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_backward_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    SELECT (u.e).*
      FROM (SELECT event_store._upcast(e) AS e
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
             LIMIT $3) u
$$;

CREATE OR REPLACE FUNCTION event_store.read_stream_backward(
    stream_id text, from_version bigint DEFAULT NULL, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
SUPPORT event_store._read_stream_support
AS $$
    -- replaced when planned by _read_stream_backward_plain or _read_stream_backward_upcast
    -- (_read_stream_support); this body where the support does not run
    (SELECT * FROM event_store._read_stream_backward_plain($1, $2, $3) WHERE NOT event_store._upcasting_planned())
    UNION ALL
    SELECT * FROM event_store._read_stream_backward_upcast($1, $2, $3) WHERE event_store._upcasting_planned()
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
    -- any stream with hidden events at all? (else no per-event check)
    _hides    boolean := event_store._streams_hide(NULL);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(e) AS e
                      FROM event_store.events e
                     WHERE e.global_position > after_position
                       AND e.global_position <= horizon
                       AND e.recorded_at >= scan_from
                       AND e.recorded_at < scan_to
                       AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                     ORDER BY e.global_position
                     LIMIT max_count) u;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT max_count;
    END IF;
END
$$;

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
    -- any stream of the category with hidden events? (else no per-event check)
    _hides    boolean := event_store._streams_hide(ARRAY[category]);
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(e) AS e
                      FROM event_store.events e
                     WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
                       AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
                       AND e.recorded_at >= scan_from
                       AND e.recorded_at < scan_to
                       AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                     ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                     LIMIT max_count) u;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count;
    END IF;
END
$$;

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
    fresh          int; _hides boolean;  -- (one line: error line numbers stay)
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
    scan_to := event_store._feed_scan_to(horizon); _hides := event_store._streams_hide(s.categories);  -- issue 28: hidden events?
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
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
    IF pg_catalog.cardinality(retries) > 0 THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT (u.e).*
                  FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
                         WHERE e.global_position = ANY (retries)
                         ORDER BY e.global_position
                         LIMIT max_count) u;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries)
                 ORDER BY e.global_position;
        END IF;
    END IF;
    IF fresh = 0 THEN
        RETURN;
    END IF;
    IF s.categories IS NULL THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT (u.e).*
                  FROM (SELECT event_store._upcast(e) AS e
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
                           AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                         ORDER BY e.global_position
                         LIMIT fresh) u;
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
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
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
                SELECT (u.e).*
                  FROM (SELECT event_store._upcast(e) AS e
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
                           AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                         ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                         LIMIT fresh) u;
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
                   AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                             AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
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
            SELECT (u.e).*
              FROM (SELECT event_store._upcast(x.ev) AS e
                      FROM pg_catalog.unnest(categories) AS c(category)
                     CROSS JOIN LATERAL (
                           SELECT e AS ev, e.global_position
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
                      AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                            ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                            LIMIT fresh) x
                     ORDER BY x.global_position
                     LIMIT fresh) u;
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
                      AND (NOT _hides OR NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh;
    END IF;
END
$$;

