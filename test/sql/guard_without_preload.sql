-- Issue 25 item 10: what shared_preload_libraries adds to the DDL guard.
-- Without preloading, a backend that has not used the library yet has no
-- utility hook, and the guard there is the ddl_command_start event
-- trigger, which a superuser can disable: DETACH PARTITION of a partition
-- holding events then goes through, and the events leave the log.  (DROP
-- TABLE is still refused there: dropping the partition's indexes first
-- loads the library through the access method, and with it the object
-- access hook, before the table itself is dropped; the issue 25 re-probe
-- found this test's DROP TABLE refused in both modes.)  Preloaded, the hook is in every
-- backend from its start and refuses it anyway.  Two expected outputs:
-- guard_without_preload.out (preloaded), guard_without_preload_1.out
-- (not preloaded).  In a database of its own.
\set own_db es_guard_preload
\i test/sql/include/own_db.sql
\set VERBOSITY terse
SELECT event_store.append_event('acct-1', 'Opened', '{}');
SELECT p.partition::text AS part FROM event_store.partition_ranges() p
  JOIN LATERAL (SELECT count(*) AS n FROM event_store.events e WHERE e.tableoid = p.partition) c ON c.n > 0 \gset
-- A new backend: the library is loaded here only if it is preloaded.
\c es_guard_preload
\set VERBOSITY terse
SELECT count(*) > 0 AS library_loaded FROM pg_settings WHERE name = 'event_store.max_batch_size';
ALTER EVENT TRIGGER event_store_guard_ddl DISABLE;
\set VERBOSITY sqlstate
ALTER TABLE event_store.events DETACH PARTITION :part;
\set VERBOSITY terse
SELECT count(*) AS events_left FROM event_store.events;
\c :orig_db
DROP DATABASE es_guard_preload;
