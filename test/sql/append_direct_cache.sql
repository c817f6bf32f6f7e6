-- The direct one-event append keeps what inserting into a partition needs
-- (its index list with compiled expressions, its compiled CHECK
-- constraints) from one append to the next in a session.  Whatever
-- changes in between must be seen by the next append, as the statement
-- would see it: a new or dropped index, a constraint, a replaced function
-- a constraint calls.  And a stream at the largest version fails as the
-- statement does, with nothing written.
\set own_db es_append_direct_cache_test
\i test/sql/include/own_db.sql

-- the session's kept target is built by these appends
SELECT event_store.append_event('cache-1', 'Opened', '{"k": "a"}');
SELECT event_store.append_event('cache-1', 'Noted', '{"k": "b"}');

-- 1. A unique index created between two appends holds for the next one
-- (on each partition: a unique index of the log itself must include
-- recorded_at, which differs per append).
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info WHERE NOT archived LOOP
        EXECUTE format('CREATE UNIQUE INDEX %I ON %s ((data->>''k''))',
                       (SELECT relname FROM pg_class WHERE oid = part) || '_k_unique', part);
    END LOOP;
END $$;
SELECT event_store.append_event('cache-1', 'Noted', '{"k": "c"}');
\set VERBOSITY sqlstate
SELECT event_store.append_event('cache-1', 'Noted', '{"k": "c"}');
SELECT event_store.append_event('cache-2', 'Opened', '{"k": "a"}');
\set VERBOSITY default
SELECT count(*) AS c_events FROM event_store.events WHERE data->>'k' = 'c';
SELECT version FROM event_store.streams WHERE stream_id = 'cache-1';
SELECT count(*) AS cache_2_streams FROM event_store.streams WHERE stream_id = 'cache-2';

-- 2. The indexes dropped: the next append does not look for them.
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info WHERE NOT archived LOOP
        EXECUTE format('DROP INDEX event_store.%I', (SELECT relname FROM pg_class WHERE oid = part) || '_k_unique');
    END LOOP;
END $$;
SELECT event_store.append_event('cache-1', 'Noted', '{"k": "c"}');
SELECT event_store.append_event('cache-1', 'Noted', '{"k": "c"}');
SELECT count(*) AS c_events FROM event_store.events WHERE data->>'k' = 'c';

-- 3. A CHECK constraint calling a SQL function: replacing the function
-- (no change to the table itself) changes what the next append accepts.
CREATE FUNCTION allowed_kind(t text) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS $$ SELECT t <> 'Banned' $$;
ALTER TABLE event_store.events ADD CONSTRAINT kind_allowed CHECK (allowed_kind(event_type));
SELECT event_store.append_event('cache-1', 'Tolerated', '{}');
\set VERBOSITY sqlstate
SELECT event_store.append_event('cache-1', 'Banned', '{}');
\set VERBOSITY default
CREATE OR REPLACE FUNCTION allowed_kind(t text) RETURNS boolean LANGUAGE sql IMMUTABLE
    AS $$ SELECT t NOT IN ('Banned', 'Tolerated') $$;
\set VERBOSITY sqlstate
SELECT event_store.append_event('cache-1', 'Tolerated', '{}');
\set VERBOSITY default
ALTER TABLE event_store.events DROP CONSTRAINT kind_allowed;
DROP FUNCTION allowed_kind(text);
-- (counted without the constraint: the planner would trust it to exclude the partitions)
SELECT event_type, count(*) FROM event_store.events
 WHERE stream_id = 'cache-1' AND event_type IN ('Tolerated', 'Banned')
 GROUP BY event_type ORDER BY event_type;
SELECT event_store.append_event('cache-1', 'Banned', '{}');

-- 4. An error inside an append leaves the kept target usable.
\set VERBOSITY sqlstate
SELECT event_store.append_event('cache-1', 'Late', '{}', NULL, 1);
\set VERBOSITY default
SELECT event_store.append_event('cache-1', 'Late', '{}');
SELECT count(*) AS events, max(stream_version) AS last_version,
       (SELECT version FROM event_store.streams WHERE stream_id = 'cache-1') AS stream_version
  FROM event_store.events WHERE stream_id = 'cache-1';

-- 5. A stream at the largest version: the next version is out of range
-- (22003) on either path, and nothing is written.
-- (Since 1.11 even the owner may not UPDATE streams; a superuser still
-- can as logical replication's apply does, under the replica role.)
BEGIN;
SET LOCAL session_replication_role = replica;
UPDATE event_store.streams SET version = 9223372036854775807 WHERE stream_id = 'cache-1';
SET LOCAL session_replication_role = origin;
\set VERBOSITY sqlstate
SELECT event_store.append_event('cache-1', 'TooMany', '{}');
\set VERBOSITY default
ROLLBACK;
SELECT count(*) AS too_many FROM event_store.events WHERE event_type = 'TooMany';

\c :orig_db
DROP DATABASE es_append_direct_cache_test;
