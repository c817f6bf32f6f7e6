SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
SELECT current_database() AS orig_db \gset
CREATE DATABASE es_projections_test;
ALTER DATABASE es_projections_test SET event_store.live_projections = off;  -- no live projection worker (issue 29)
\c es_projections_test
SET timezone = 'UTC';
SET client_min_messages = warning;
-- Upgrade chain: 1.3 -> 1.4 adds the projection and subscription API.
CREATE EXTENSION event_store VERSION '1.3';
SELECT event_store.append_event('account-0', 'Deposited', '{"amount": 1}');
ALTER EXTENSION event_store UPDATE TO '1.4';
RESET client_min_messages;
SELECT extversion FROM pg_extension WHERE extname = 'event_store';
SELECT tgname, tgtype, tgnewtable FROM pg_trigger
 WHERE tgrelid = 'event_store.events'::regclass AND tgname = 'events_dispatch_projections';

------------------------------------------------------------------------------
-- Inline projections
------------------------------------------------------------------------------
CREATE TABLE balances (account text PRIMARY KEY, balance numeric NOT NULL, events int NOT NULL);
CREATE TABLE handled (seq serial, projection text, global_position bigint, event_type text);

CREATE FUNCTION on_money(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO handled (projection, global_position, event_type) VALUES ('balances', e.global_position, e.event_type);
    INSERT INTO balances VALUES (event_store.cardinal_id(e.stream_id),
                                 (e.data->>'amount')::numeric * CASE e.event_type WHEN 'Deposited' THEN 1 ELSE -1 END, 1)
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance,
                                        events = balances.events + 1
$$;
CREATE FUNCTION reset_balances() RETURNS void LANGUAGE sql AS $$ TRUNCATE balances $$;

-- A second projection on every event: handlers run event by event, in
-- global_position order, projections in name order for each event.
CREATE FUNCTION audit_all(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO handled (projection, global_position, event_type) VALUES ('audit', e.global_position, e.event_type);
END
$$;

SELECT event_store.create_projection('balances', 'on_money(event_store.events)',
                                     event_types => ARRAY['Deposited', 'Withdrawn'],
                                     categories => ARRAY['account'],
                                     reset => 'reset_balances()');
SELECT event_store.create_projection('audit', 'audit_all(event_store.events)');

SELECT event_store.append('account-1', ARRAY[
    event_store.event('Deposited', '{"amount": 100}'),
    event_store.event('Noted', '{"text": "not a money event"}'),
    event_store.event('Withdrawn', '{"amount": 30}')]);
SELECT event_store.append_event('customer-1', 'Deposited', '{"amount": 5}');   -- other category
SELECT event_store.append_event('account-2+eur', 'Deposited', '{"amount": 7}');

-- The read model is current in the appending transaction.
SELECT * FROM balances ORDER BY account;
SELECT projection, event_type, global_position - (SELECT min(global_position) FROM handled) AS pos
  FROM handled ORDER BY seq;
SELECT bool_and(ordered) AS handled_in_position_order
  FROM (SELECT global_position >= lag(global_position, 1, 0::bigint) OVER (ORDER BY seq) AS ordered FROM handled) s;

-- Older events are not replayed by create_projection (account-0 is missing).
SELECT count(*) FROM balances WHERE account = '0';

-- A batch append of 1,000 events calls the dispatcher once (and the handler
-- 1,000 times, through the cached FmgrInfo).
BEGIN;
SET LOCAL track_functions = 'all';
SELECT event_store.append('account-3', (SELECT array_agg(event_store.event('Deposited', '{"amount": 1}')) FROM generate_series(1, 1000)));
SELECT funcname, calls FROM pg_stat_xact_user_functions
 WHERE funcname IN ('_dispatch_projections', 'on_money', 'audit_all') ORDER BY funcname;
COMMIT;
SELECT * FROM balances WHERE account = '3';

-- A handler error rolls the append back: nothing written.
CREATE FUNCTION refuse_overdraft(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT balance FROM balances WHERE account = event_store.cardinal_id(e.stream_id)) < 0 THEN
        RAISE EXCEPTION 'account % overdrawn', e.stream_id USING ERRCODE = 'check_violation';
    END IF;
END
$$;
SELECT event_store.create_projection('zz_overdraft', 'refuse_overdraft(event_store.events)',
                                     event_types => ARRAY['Withdrawn']);
SELECT count(*) AS events_before FROM event_store.events \gset
\set VERBOSITY default
SELECT event_store.append('account-1', ARRAY[event_store.event('Withdrawn', '{"amount": 50}'),
                                             event_store.event('Withdrawn', '{"amount": 500}')]);
\set VERBOSITY terse
SELECT count(*) - :events_before AS events_written, event_store.stream_version('account-1') AS version
  FROM event_store.events;
SELECT * FROM balances WHERE account = '1';

-- The registry is cached per backend and invalidated when it changes.
SELECT event_store.drop_projection('zz_overdraft');
SELECT event_store.append('account-1', ARRAY[event_store.event('Withdrawn', '{"amount": 500}')]);
SELECT * FROM balances WHERE account = '1';
SELECT event_store.drop_projection('audit');
SELECT count(*) AS audited_before FROM handled WHERE projection = 'audit' \gset
SELECT event_store.append_event('account-1', 'Deposited', '{"amount": 400}');
SELECT count(*) - :audited_before AS audited_after_drop FROM handled WHERE projection = 'audit';
-- ... and when a handler is replaced.
CREATE OR REPLACE FUNCTION on_money(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO balances VALUES (event_store.cardinal_id(e.stream_id), 0, 1)
    ON CONFLICT (account) DO UPDATE SET events = balances.events + 1
$$;
SELECT event_store.append_event('account-1', 'Deposited', '{"amount": 1000}');
SELECT * FROM balances WHERE account = '1';
CREATE OR REPLACE FUNCTION on_money(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO balances VALUES (event_store.cardinal_id(e.stream_id),
                                 (e.data->>'amount')::numeric * CASE e.event_type WHEN 'Deposited' THEN 1 ELSE -1 END, 1)
    ON CONFLICT (account) DO UPDATE SET balance = balances.balance + excluded.balance,
                                        events = balances.events + 1
$$;

-- Rebuilding an inline projection: reset function, then every event again.
SET client_min_messages = notice;
SELECT event_store.rebuild_projection('balances', notice_every => 400);
RESET client_min_messages;
SELECT * FROM balances ORDER BY account;
SELECT name, mode, checkpoint, lag, events_processed, rebuild_progress,
       rebuild_started_at IS NOT NULL AS rebuilt
  FROM event_store.projections ORDER BY name;

-- Plain user triggers on event_store.events keep working beside it.
CREATE TABLE appended_rows (stream_id text, stream_version bigint);
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO appended_rows VALUES (NEW.stream_id, NEW.stream_version);
    RETURN NULL;
END
$$;
CREATE TRIGGER my_row_trigger AFTER INSERT ON event_store.events
    FOR EACH ROW EXECUTE FUNCTION log_row();
CREATE TABLE appended_statements (n bigint);
CREATE FUNCTION log_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO appended_statements SELECT count(*) FROM new_rows;
    RETURN NULL;
END
$$;
CREATE TRIGGER my_statement_trigger AFTER INSERT ON event_store.events
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION log_statement();
SELECT event_store.append('account-4', ARRAY[event_store.event('Deposited', '{"amount": 1}'),
                                             event_store.event('Deposited', '{"amount": 2}')]);
SELECT * FROM appended_rows;
SELECT * FROM appended_statements;
SELECT * FROM balances WHERE account = '4';
DROP TRIGGER my_row_trigger ON event_store.events;
DROP TRIGGER my_statement_trigger ON event_store.events;

-- A handler that no longer exists stops appends with a clear error until
-- the projection is dropped.
CREATE FUNCTION doomed(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT event_store.create_projection('doomed', 'doomed(event_store.events)');
DROP FUNCTION doomed(event_store.events);
\set VERBOSITY default
SELECT event_store.append_event('account-5', 'Deposited', '{"amount": 1}');
\set VERBOSITY terse
SELECT event_store.drop_projection('doomed');
SELECT event_store.append_event('account-5', 'Deposited', '{"amount": 1}');

-- Since 1.11 handlers run as the role that registered them, not with the
-- appender's privileges (1.10): a writer with no right on the read model's
-- tables still appends, and the handler updates them.  (More in
-- handler_privileges.sql.)
CREATE ROLE es_proj_writer;
GRANT USAGE ON SCHEMA event_store TO es_proj_writer;
GRANT INSERT, SELECT ON event_store.events TO es_proj_writer;
GRANT SELECT, INSERT, UPDATE ON event_store.streams TO es_proj_writer;
GRANT USAGE ON SEQUENCE event_store.global_position_seq TO es_proj_writer;
SET ROLE es_proj_writer;
SELECT event_store.append_event('account-6', 'Deposited', '{"amount": 1}');   -- no right on balances
SELECT * FROM balances WHERE account = '6';   -- the writer may not read them
RESET ROLE;
SELECT * FROM balances WHERE account = '6';

------------------------------------------------------------------------------
-- Async projections
------------------------------------------------------------------------------
CREATE TABLE type_counts (event_type text PRIMARY KEY, n int NOT NULL);
CREATE FUNCTION count_type(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1;
END
$$;
CREATE FUNCTION reset_type_counts() RETURNS void LANGUAGE sql AS $$ TRUNCATE type_counts $$;
SELECT event_store.create_projection('type_counts', 'count_type(event_store.events)',
                                     categories => ARRAY['account'], mode => 'async',
                                     reset => 'reset_type_counts()');
SELECT name, mode, checkpoint, lag > 0 AS behind FROM event_store.projections WHERE name = 'type_counts';
SELECT event_store.run_projection('type_counts', 2);
SELECT * FROM type_counts ORDER BY 1;
SELECT checkpoint = (SELECT min(global_position) + 1 FROM event_store.events WHERE stream_id LIKE 'account-%') AS at_second_event
  FROM event_store.projections WHERE name = 'type_counts';
SELECT event_store.run_projection('type_counts');
SELECT * FROM type_counts ORDER BY 1;
SELECT event_store.run_projection('type_counts');   -- caught up
SELECT checkpoint = event_store._last_drawn_position() AS at_end, lag FROM event_store.projections WHERE name = 'type_counts';
SELECT event_store.append_event('account-7', 'Withdrawn', '{"amount": 1}');
SELECT lag FROM event_store.projections WHERE name = 'type_counts';
SELECT event_store.run_projection('type_counts');
SELECT * FROM type_counts ORDER BY 1;

-- A failing handler leaves the checkpoint where it was.
CREATE OR REPLACE FUNCTION count_type(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF e.data ? 'poison' THEN
        RAISE EXCEPTION 'poison event %', e.stream_id;
    END IF;
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1;
END
$$;
SELECT event_store.append_event('account-7', 'Deposited', '{"amount": 1}');
SELECT event_store.append_event('account-7', 'Deposited', '{"amount": 1, "poison": true}');
SELECT checkpoint AS checkpoint_before FROM event_store.projections WHERE name = 'type_counts' \gset
SELECT event_store.run_projection('type_counts');
SELECT checkpoint = :checkpoint_before AS unchanged FROM event_store.projections WHERE name = 'type_counts';
SELECT * FROM type_counts ORDER BY 1;
CREATE OR REPLACE FUNCTION count_type(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO type_counts VALUES (e.event_type, 1)
    ON CONFLICT (event_type) DO UPDATE SET n = type_counts.n + 1;
END
$$;

-- Rebuild, in one transaction, with a NOTICE every 500 events.
SET client_min_messages = notice;
SELECT event_store.rebuild_projection('type_counts', 500);
RESET client_min_messages;
SELECT * FROM type_counts ORDER BY 1;
SELECT name, events_processed, rebuild_progress, rebuild_finished_at IS NOT NULL AS finished, lag
  FROM event_store.projections WHERE name = 'type_counts';

-- ... and in batches, committing between them (progress in the view).
CALL event_store.rebuild_projection_in_batches('type_counts', 400);
SELECT * FROM type_counts ORDER BY 1;
SELECT name, events_processed, rebuild_progress, rebuild_finished_at IS NOT NULL AS finished
  FROM event_store.projections WHERE name = 'type_counts';

-- run_projection needs READ COMMITTED (the horizon must precede the snapshot).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT event_store.run_projection('type_counts');
ROLLBACK;

------------------------------------------------------------------------------
-- Bad input: clear errors, nothing changed.
------------------------------------------------------------------------------
SELECT count(*) AS projections_before FROM event_store.projection_registry;
CREATE FUNCTION wrong_args(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
CREATE FUNCTION wrong_result(e event_store.events) RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;
\set VERBOSITY default
SELECT event_store.create_projection('x', 'wrong_args(jsonb)');
SELECT event_store.create_projection('x', 'wrong_result(event_store.events)');
SELECT event_store.create_projection('x', 'no_such_function(event_store.events)');
SELECT event_store.create_projection('balances', 'audit_all(event_store.events)');
SELECT event_store.create_projection('x', 'audit_all(event_store.events)', mode => 'sometimes');
SELECT event_store.create_projection('x', 'audit_all(event_store.events)', mode => NULL);
SELECT event_store.create_projection('x', 'audit_all(event_store.events)', reset => 'audit_all(event_store.events)');
SELECT event_store.create_projection(NULL, 'audit_all(event_store.events)');
SELECT event_store.create_projection('', 'audit_all(event_store.events)');
SELECT event_store.create_projection('x', NULL);
SELECT event_store.create_projection('x', 'audit_all(event_store.events)', event_types => '{}');
SELECT event_store.create_projection('x', 'audit_all(event_store.events)', categories => ARRAY['a', NULL]);
SELECT event_store.drop_projection('no_such');
SELECT event_store.run_projection('no_such');
SELECT event_store.run_projection('balances');
SELECT event_store.run_projection('type_counts', 0);
SELECT event_store.run_projection(NULL);
SELECT event_store.rebuild_projection('no_such');
SELECT event_store.rebuild_projection('type_counts', 0);
CALL event_store.rebuild_projection_in_batches('balances');
\set VERBOSITY terse
SELECT count(*) AS projections_after FROM event_store.projection_registry;

-- Dump-safe: the registry tables' rows are dumped with the extension.
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS t(oid) JOIN pg_class c ON c.oid = t.oid
 WHERE e.extname = 'event_store' ORDER BY 1;

\c :orig_db
DROP DATABASE es_projections_test;
DROP ROLE es_proj_writer;
