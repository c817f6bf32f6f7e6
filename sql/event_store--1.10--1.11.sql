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
-- before.  redact() uses it from C; drop_archived_partition() through
-- _append_audit_event(), which EXECUTE is granted to no one for and which
-- also requires the caller to own the log.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._append_audit_event(stream_id text, event_type text, data jsonb) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_append_audit_event_sql' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION event_store._append_audit_event(text, text, jsonb) FROM PUBLIC;

CREATE OR REPLACE FUNCTION event_store.drop_archived_partition(name text) RETURNS bigint
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
    -- The drop is recorded in the log itself, through the sanctioned path.
    PERFORM event_store._append_audit_event('$audit-retention', 'ArchivedPartitionDropped',
        jsonb_build_object('partition', rel, 'range_start', lo, 'range_end', hi, 'events', n,
                           'dropped_by', current_user::text, 'session_user', session_user::text));
    RETURN n;
END
$$;

------------------------------------------------------------------------------
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
