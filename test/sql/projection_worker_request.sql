-- event_store._request_projection_worker() (review of 1.12, item 3): an
-- upgrade script asks for the database's live projection worker by name,
-- through the path of the registry's statement triggers (the request acts
-- at commit, even in a database marked as needing none).
\set own_db es_worker_request_test
\i test/sql/include/own_db.sql
-- this database's entry of projection_workers(): its state and since when
CREATE FUNCTION pg_temp.worker(OUT state text, OUT since timestamptz) LANGUAGE sql AS $$
    SELECT w.state, w.state_since FROM event_store.projection_workers() w
     WHERE w.datid = (SELECT oid FROM pg_database WHERE datname = current_database());
$$;
-- wait (at most 30 s) until the entry is in state want after since
CREATE FUNCTION pg_temp.wait_for(want text, after timestamptz) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    FOR i IN 1..600 LOOP
        IF EXISTS (SELECT FROM pg_temp.worker() w WHERE w.state = want AND w.since > after) THEN
            RETURN true;
        END IF;
        PERFORM pg_sleep(0.05);
    END LOOP;
    RETURN false;
END
$$;
-- the first append brings a worker, which finds no async projection and
-- marks the database as needing none (appends ask again only a minute
-- later)
SELECT event_store.append_event('w-1', 'Tick', '{}') > 0 AS appended;
SELECT pg_temp.wait_for('none', '-infinity') AS marked_none;
SELECT since AS none_since FROM pg_temp.worker() \gset
-- asked by name: at commit a worker comes, looks, and marks it again
SELECT event_store._request_projection_worker();
SELECT pg_temp.wait_for('none', :'none_since') AS looked_at_again;
-- internal: no role may call it but the owner and superusers
SELECT r AS role, has_function_privilege(r, 'event_store._request_projection_worker()', 'EXECUTE') AS can_call
  FROM unnest(ARRAY['public', 'event_store_reader', 'event_store_writer', 'event_store_admin']) r;
SET ROLE event_store_admin;
SELECT event_store._request_projection_worker();
RESET ROLE;
\c :orig_db
DROP DATABASE es_worker_request_test;
