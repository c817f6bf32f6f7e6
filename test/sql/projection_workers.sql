-- Live async projections (issue 29, 1.12): the GUCs of the projection
-- workers, their status function and projection_status's worker columns.
-- The workers themselves are tested in test/t/022_projection_worker.pl
-- (setup.sql switched them off for this database).

-- No worker serves this database (this call also loads the library, which
-- defines the GUCs, when it is not preloaded).
SELECT count(*) AS running_here
  FROM event_store.projection_workers() w
 WHERE w.datid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND w.state = 'running';

-- The defaults (live_projections: off, from setup.sql's ALTER DATABASE).
SHOW event_store.projection_workers;
SHOW event_store.projection_batch_timeout;
SHOW event_store.live_projections;

-- Bad input: the GUC machinery refuses it, nothing is written.
SET event_store.projection_workers = 2;
\set VERBOSITY sqlstate
ALTER SYSTEM SET event_store.projection_workers = 33;
ALTER SYSTEM SET event_store.projection_workers = -1;
ALTER SYSTEM SET event_store.projection_workers = 'many';
ALTER SYSTEM SET event_store.projection_batch_timeout = -1;
\set VERBOSITY default
ALTER SYSTEM SET event_store.projection_workers = 33;
SELECT count(*) AS written FROM pg_file_settings WHERE name LIKE 'event_store.projection%';
SHOW event_store.projection_workers;

-- live_projections is for superusers (ALTER DATABASE ... SET).
CREATE ROLE pw_user;
SET ROLE pw_user;
SET event_store.live_projections = off;
RESET ROLE;
DROP ROLE pw_user;

-- projection_status: worker_pid and worker_last_run_at, NULL without a worker.
CREATE TABLE pw_seen (pos bigint);
CREATE FUNCTION pw_handle(e event_store.events) RETURNS void LANGUAGE sql AS
  $$ INSERT INTO pw_seen VALUES (e.global_position) $$;
SELECT event_store.create_projection('pw_async', 'pw_handle(event_store.events)', categories => ARRAY['pw'], mode => 'async');
UPDATE event_store.projection_checkpoints SET position = event_store._last_drawn_position() WHERE name = 'pw_async';
SELECT event_store.append('pw-1', ARRAY[event_store.event('Tick', '{}')]) > 0 AS appended;
SELECT name, worker_pid, worker_last_run_at FROM event_store.projection_status WHERE name = 'pw_async';
-- run_projection() works as before
SELECT event_store.run_projection('pw_async');
SELECT count(*) FROM pw_seen;

-- A reader may look at the workers.
SELECT has_function_privilege('event_store_reader', 'event_store.projection_workers()', 'EXECUTE') AS reader,
       has_function_privilege('public', 'event_store.projection_workers()', 'EXECUTE') AS public;

SELECT event_store.drop_projection('pw_async');
DROP FUNCTION pw_handle(event_store.events);
DROP TABLE pw_seen;
