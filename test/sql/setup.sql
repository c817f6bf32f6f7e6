-- Installing the extension: schema, tables, the access method, the first
-- partitions.
CREATE EXTENSION event_store;

SELECT extname, extversion, extrelocatable, n.nspname
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE extname = 'event_store';

-- pg_cron is optional: the control file does not require it.
SELECT DISTINCT requires FROM pg_available_extension_versions WHERE name = 'event_store';

SELECT c.relname, c.relkind
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'event_store' AND c.relkind IN ('r', 'p', 'S', 'v')
   AND c.relname NOT LIKE 'events\_p%'
 ORDER BY 1;

-- The log is range-partitioned by recorded_at.
SELECT pg_get_partkeydef('event_store.events'::regclass);

-- Creating the extension made the current partition and the next one,
-- both stored with the append-only access method.
SELECT count(*) AS partitions,
       bool_and(access_method = 'event_store_log') AS all_append_only,
       bool_or(now() >= range_start AND now() < range_end) AS covers_now,
       bool_and(NOT archived) AS none_archived
  FROM event_store.partition_info;

-- Partitions are not extension members (so pg_dump keeps their rows).
SELECT count(*) AS member_partitions
  FROM pg_depend d
 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'event_store')
   AND d.deptype = 'e' AND d.classid = 'pg_class'::regclass
   AND d.objid IN (SELECT partition FROM event_store.partition_info);

-- TOAST of event partitions stays heap.
SELECT DISTINCT am.amname AS toast_am
  FROM event_store.partition_info p
  JOIN pg_class c ON c.oid = p.partition
  JOIN pg_class t ON t.oid = c.reltoastrelid
  JOIN pg_am am ON am.oid = t.relam;

-- Preloaded, live projection workers (issue 29) would run the async
-- projections of the tests below on their own; these tests call
-- run_projection() themselves.  test/sql/projection_workers.sql and
-- test/t/022_projection_worker.pl test the workers.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET event_store.live_projections = off', current_database());
END
$$;

-- The public API.
SELECT p.oid::regprocedure AS function
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'event_store' AND p.proname NOT LIKE '\_%'
 ORDER BY p.oid::regprocedure::text;
