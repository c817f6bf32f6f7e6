-- event_store 1.11 -> 1.12.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.12'" to load this file. \quit


------------------------------------------------------------------------------
-- issue 29: live projection workers.  Preloaded, a launcher and up to
-- event_store.projection_workers background workers run the async
-- projections of each database as events arrive (src/projection_worker.c,
-- docs/projections.md "Live async projections").  Here: the workers'
-- status, the trigger that asks for a worker when the registry changes,
-- and projection_status's worker_pid / worker_last_run_at.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.projection_workers(
    OUT datid oid, OUT state text, OUT pid int, OUT state_since timestamptz,
    OUT started_at timestamptz, OUT last_run_at timestamptz,
    OUT events_applied bigint, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'es_projection_workers' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.projection_workers() IS
  'Live projection workers, one row per database the launcher knows (empty when event_store is not preloaded): state none|idle|wanted|starting|running|failed, the running worker''s pid, its start, last round, events applied since the server started, and the last failed batch.';
REVOKE ALL ON FUNCTION event_store.projection_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.projection_workers() TO event_store_reader;

-- A change of the registry (a new async projection) asks for a worker at
-- commit, even in a database last seen without async projections.
CREATE FUNCTION event_store._projection_worker_kick() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_projection_worker_kick' LANGUAGE C;
REVOKE ALL ON FUNCTION event_store._projection_worker_kick() FROM PUBLIC;
CREATE TRIGGER projection_registry_worker
    AFTER INSERT OR UPDATE ON event_store.projection_registry
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._projection_worker_kick();

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
         ORDER BY r.last_failed_at DESC, r.global_position DESC LIMIT 1) AS last_error,
       w.pid AS worker_pid,
       w.last_run_at AS worker_last_run_at
  FROM event_store.projections p
  LEFT JOIN (SELECT x.pid, x.last_run_at FROM event_store.projection_workers() x
              WHERE x.datid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                AND x.state OPERATOR(pg_catalog.=) 'running') w
         ON p.mode = 'async'
 ORDER BY p.name;
COMMENT ON VIEW event_store.projection_status IS
  'Projections: checkpoint, lag in events and in time (age of the oldest unprocessed event; async only), last run; events parked and waiting for a retry, and the last handler error; for async projections, the pid and last round of the live worker serving the database (NULL: none runs now).';
