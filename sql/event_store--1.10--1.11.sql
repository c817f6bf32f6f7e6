-- event_store 1.10 -> 1.11: hardening (issue 25) and PostgreSQL 15-18
-- (issue 24).  Every section below says which class of attack it closes.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.11'" to load this file. \quit


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
