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
