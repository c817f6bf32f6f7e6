-- issue 29: subscriptions that survive failures (nack, retries with
-- backoff, parking, parked_events, replay_parked, skip_parked).  No test
-- sleeps: a retry's time is read from subscription_retries.next_attempt_at,
-- and "time passing" is an UPDATE moving it to the past.
SET timezone = 'UTC';
\set own_db es_consumer_failures_test
\i test/sql/include/own_db.sql
ALTER DATABASE :"own_db" SET event_store.live_projections = off;  -- no live projection worker (issue 29)
SET timezone = 'UTC';

SELECT event_store.append_event('order-1', 'Placed', '{}');      -- 1
SELECT event_store.append_event('order-2', 'Placed', '{}');      -- 2
SELECT event_store.append_event('order-1', 'Shipped', '{}');     -- 3
SELECT event_store.append_event('order-3', 'Placed', '{}');      -- 4
SELECT event_store.append_event('order-2', 'Shipped', '{}');     -- 5
SELECT event_store.append_event('order-1', 'Delivered', '{}');   -- 6

-- Options: defaults 5 attempts and 1 second; stored on the subscription.
SELECT event_store.subscribe('mail');
SELECT event_store.subscribe('billing', max_attempts => 3, retry_delay => '1 hour');
SELECT name, max_attempts, retry_delay FROM event_store.subscriptions ORDER BY name;
-- The documented backoff: retry n comes retry_delay * 2^(n-1) after the n-th nack.
SELECT n, event_store.retry_backoff('1 second', n) AS after_1s, event_store.retry_backoff('1 hour', n) AS after_1h
  FROM generate_series(1, 4) n;
SELECT event_store.retry_backoff('1 second', 1000) AS capped_at_2_to_16;

-- Bad options: a clear error and no subscription written.
SELECT event_store.subscribe('bad', max_attempts => 0);
SELECT event_store.subscribe('bad', max_attempts => NULL);
SELECT event_store.subscribe('bad', max_attempts => 1001);
SELECT event_store.subscribe('bad', retry_delay => '0');
SELECT event_store.subscribe('bad', retry_delay => '-1 second');
SELECT event_store.subscribe('bad', retry_delay => '2 days');
SELECT count(*) AS bad_subscriptions FROM event_store.subscriptions WHERE name = 'bad';

-- A first nack: the event waits retry_delay; later events of its stream
-- wait behind it, other streams continue.
SELECT global_position, stream_id, event_type FROM event_store.poll('billing', 3);
SELECT event_store.nack('billing', 1, 'smtp down');
SELECT event_store.ack('billing', 3);   -- 2 handled; 3 (order-1) was not handled, it waits behind 1
SELECT global_position, stream_id, attempts, last_error, next_attempt_at - last_failed_at AS delay,
       next_attempt_at > now() AS waiting, state
  FROM event_store.subscription_retries WHERE name = 'billing' ORDER BY global_position;
-- Not due: poll goes on with the other streams only.
SELECT global_position, stream_id, event_type FROM event_store.poll('billing');
SELECT event_store.ack('billing', 5);
-- Time passes: the retry is due and comes back, alone of its stream.
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second'
 WHERE name = 'billing' AND global_position = 1;
SELECT global_position, stream_id, event_type FROM event_store.poll('billing');
-- Second failure: twice the delay.
SELECT event_store.nack('billing', 1, 'smtp still down');
SELECT global_position, attempts, last_error, next_attempt_at - last_failed_at AS delay
  FROM event_store.subscription_retries WHERE name = 'billing' AND global_position = 1;
SELECT count(*) AS delivered_while_waiting FROM event_store.poll('billing');
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second'
 WHERE name = 'billing' AND global_position = 1;
SELECT global_position FROM event_store.poll('billing');
-- The third (max_attempts) nack parks it; poll goes past it: the held
-- events of its stream come, in order.
SELECT event_store.nack('billing', 1, 'smtp gone');
SELECT consumer, kind, global_position, stream_id, event_type, attempts, last_error,
       first_failed_at <= last_failed_at AS times_in_order
  FROM event_store.parked_events;
SELECT global_position, stream_id, event_type FROM event_store.poll('billing');
-- A success: ack resolves the delivered retry; 6 comes next.
SELECT event_store.ack('billing', 3);
SELECT global_position, stream_id, event_type FROM event_store.poll('billing');
SELECT event_store.ack('billing', 6);
SELECT count(*) AS more FROM event_store.poll('billing');
SELECT global_position, state FROM event_store.subscription_retries WHERE name = 'billing';

-- replay_parked puts it back into delivery (with new attempts).
SELECT event_store.replay_parked('billing', 1);
SELECT count(*) AS parked FROM event_store.parked_events;
SELECT global_position, stream_id FROM event_store.poll('billing');
SELECT event_store.ack('billing', 1);
SELECT count(*) AS retries_left FROM event_store.subscription_retries WHERE name = 'billing';

-- max_attempts 1 parks at the first nack; skip_parked drops it.
SELECT event_store.subscribe('once', max_attempts => 1);
SELECT global_position FROM event_store.poll('once', 1);
SELECT event_store.nack('once', 1, 'bad data');
SELECT consumer, global_position, attempts FROM event_store.parked_events;
SELECT global_position, stream_id FROM event_store.poll('once', 3);
SELECT event_store.skip_parked('once', 1);
SELECT count(*) AS parked FROM event_store.parked_events;
-- Skipped: not delivered again, though still after the checkpoint; the
-- row goes once the checkpoint passes it.
SELECT global_position FROM event_store.poll('once', 3);
SELECT global_position, state FROM event_store.subscription_retries WHERE name = 'once';
SELECT event_store.ack('once', 1);
SELECT count(*) AS once_rows FROM event_store.subscription_retries WHERE name = 'once';
SELECT event_store.nack('once', 1, 'x');                           -- acknowledged now
-- all at once: position NULL
SELECT event_store.nack('once', 2, 'a');
SELECT event_store.nack('once', 3, 'b');
SELECT event_store.skip_parked('once');
SELECT event_store.replay_parked('once');
SELECT count(*) AS parked FROM event_store.parked_events;
SELECT global_position FROM event_store.poll('once', 3);

-- Consumer groups: a retry follows its stream to the member that receives
-- it; two members fail independently.
SELECT event_store.subscribe('group', max_attempts => 2);
SELECT m, array_agg(global_position || ':' || stream_id ORDER BY global_position) AS delivered
  FROM generate_series(0, 1) m, event_store.poll('group', 100, m, 2) GROUP BY m ORDER BY m;
SELECT event_store.nack('group', 1, 'm0 failed', 0, 2);
SELECT event_store.nack('group', 2, 'm1 failed', 1, 2);
SELECT event_store.ack('group', 6, 0, 2);
SELECT event_store.ack('group', 6, 1, 2);
-- Each member keeps its own stream's later events held: 3 and 6 behind 1,
-- 5 behind 2 (before 1.12 member 1 started from member 0's checkpoint and
-- lost 5).
SELECT global_position, stream_id, attempts, event_store.consumer_group_member(stream_id, 2) AS member
  FROM event_store.subscription_retries WHERE name = 'group' ORDER BY global_position;
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second' WHERE name = 'group';
SELECT m, array_agg(global_position || ':' || stream_id ORDER BY global_position) AS delivered
  FROM generate_series(0, 1) m, event_store.poll('group', 100, m, 2) GROUP BY m ORDER BY m;
-- The group shrinks to one member: it receives every stream's retries.
SELECT global_position, stream_id FROM event_store.poll('group', 100);

-- Bad input: a clear error and nothing written.
SELECT event_store.subscribe('placed', event_types => ARRAY['Placed']);
SELECT global_position FROM event_store.poll('placed', 100);
SELECT event_store.nack('placed', 4, 'a real failure');            -- waits for its retry
SELECT event_store.ack('placed', 2);
SELECT event_store.subscribe('parking', max_attempts => 1);
SELECT event_store.nack('parking', 1, 'parked');
CREATE TEMP TABLE before_retries AS SELECT * FROM event_store.subscription_retries;
CREATE TEMP TABLE before_checkpoints AS SELECT * FROM event_store.subscription_checkpoints;
CREATE TEMP TABLE before_subscriptions AS SELECT * FROM event_store.subscriptions;
SELECT event_store.nack('mail', 1, NULL);                          -- reason NULL
SELECT event_store.nack('mail', 1, repeat('x', 10001));            -- reason too long
SELECT event_store.nack('mail', NULL, 'x');                        -- position NULL
SELECT event_store.nack(NULL, 1, 'x');                             -- subscription NULL
SELECT event_store.nack('nobody', 1, 'x');                         -- unknown subscription
SELECT event_store.nack('mail', 999, 'x');                         -- not in the log
SELECT event_store.nack('placed', 1, 'x');                         -- at or before the checkpoint
SELECT event_store.nack('placed', 3, 'x');                         -- not of the subscription (Shipped)
SELECT event_store.nack('placed', 4, 'again');                     -- not redelivered since its nack
SELECT event_store.nack('parking', 1, 'x');                        -- parked
SELECT event_store.nack('mail', 1, 'x', 1, 2);                     -- another member's stream
SELECT event_store.nack('mail', 1, 'x', 2, 2);                     -- member out of range
SELECT event_store.nack('mail', 1, 'x', 0, NULL);                  -- member without size
SELECT event_store.subscribe('parking', max_attempts => 0);        -- bad options on an existing one
SELECT event_store.replay_parked('nobody');                        -- unknown consumer
SELECT event_store.replay_parked(NULL);
SELECT event_store.replay_parked('parking', 2);                    -- no parked event there
SELECT event_store.replay_parked('placed', 4);                     -- waiting, not parked
SELECT event_store.skip_parked('nobody', 1);
SELECT event_store.skip_parked('parking', 999);
SELECT (SELECT count(*) FROM (SELECT * FROM event_store.subscription_retries EXCEPT SELECT * FROM before_retries) x)
     + (SELECT count(*) FROM (SELECT * FROM before_retries EXCEPT SELECT * FROM event_store.subscription_retries) x) AS retries_changed,
       (SELECT count(*) FROM (SELECT * FROM event_store.subscription_checkpoints EXCEPT SELECT * FROM before_checkpoints) x)
     + (SELECT count(*) FROM (SELECT * FROM before_checkpoints EXCEPT SELECT * FROM event_store.subscription_checkpoints) x) AS checkpoints_changed,
       (SELECT count(*) FROM (SELECT * FROM event_store.subscriptions EXCEPT SELECT * FROM before_subscriptions) x) AS subscriptions_changed;

-- Roles: a reader nacks, replays and skips (like ack); nothing else may.
SELECT has_function_privilege('event_store_reader', 'event_store.nack(text,bigint,text,int,int)', 'EXECUTE') AS reader_nacks,
       has_function_privilege('event_store_reader', 'event_store.replay_parked(text,bigint)', 'EXECUTE') AS reader_replays,
       has_function_privilege('public', 'event_store.nack(text,bigint,text,int,int)', 'EXECUTE') AS public_nacks,
       has_table_privilege('event_store_reader', 'event_store.parked_events', 'SELECT') AS reader_sees_parked,
       has_table_privilege('event_store_reader', 'event_store.subscription_retries', 'TRUNCATE') AS reader_truncates;

-- A consumer with only event_store_reader polls, nacks, acks, replays and
-- skips: the grants cover every write these make.
CREATE ROLE es_cf_reader IN ROLE event_store_reader;
SELECT event_store.subscribe('as_reader', max_attempts => 2);
SET ROLE es_cf_reader;
SELECT global_position FROM event_store.poll('as_reader', 2);
SELECT event_store.nack('as_reader', 1, 'reader failed');
SELECT event_store.ack('as_reader', 2);
UPDATE event_store.subscription_retries SET next_attempt_at = now() WHERE name = 'as_reader';  -- a reader may delay or hurry its retries
SELECT global_position FROM event_store.poll('as_reader', 2);
SELECT event_store.nack('as_reader', 1, 'reader failed again');
SELECT event_store.replay_parked('as_reader');
SELECT global_position FROM event_store.poll('as_reader', 1);
SELECT event_store.nack('as_reader', 1, 'and again');
UPDATE event_store.subscription_retries SET next_attempt_at = now() WHERE name = 'as_reader';
SELECT global_position FROM event_store.poll('as_reader', 1);
SELECT event_store.nack('as_reader', 1, 'parked');
SELECT event_store.skip_parked('as_reader');
TRUNCATE event_store.subscription_retries;                       -- not the reader's
UPDATE event_store.subscription_retries SET stream_id = 'x';     -- nor is rewriting which event a row is
RESET ROLE;
SELECT global_position, stream_id, attempts, last_error, state
  FROM event_store.subscription_retries WHERE name = 'as_reader';
SELECT event_store.unsubscribe('as_reader');

-- unsubscribe drops a subscription's retries and parked events.
SELECT event_store.unsubscribe('parking');
SELECT count(*) AS parking_rows FROM event_store.subscription_retries WHERE name = 'parking';

------------------------------------------------------------------------------
-- Async projections: on_error 'park', 'retry' (backoff, then park), 'stop'.
------------------------------------------------------------------------------
CREATE TABLE pseen (n serial, projection text, pos bigint, stream text);
CREATE TABLE pfix (broken boolean);
INSERT INTO pfix VALUES (true);
-- Writes a row, then fails on poisoned events while pfix.broken: the
-- failed call's row must be rolled back with it.
CREATE FUNCTION ph_park(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pseen (projection, pos, stream) VALUES ('park', e.global_position, e.stream_id);
    IF e.data->>'poison' = 'yes' AND (SELECT broken FROM pfix) THEN
        RAISE EXCEPTION 'poisoned event in %', e.stream_id USING ERRCODE = 'data_exception';
    END IF;
END $$;
CREATE FUNCTION ph_retry(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pseen (projection, pos, stream) VALUES ('retry', e.global_position, e.stream_id);
    IF e.data->>'poison' = 'yes' AND (SELECT broken FROM pfix) THEN
        RAISE EXCEPTION 'poisoned event in %', e.stream_id USING ERRCODE = 'data_exception';
    END IF;
END $$;
CREATE FUNCTION ph_stop(e event_store.events) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pseen (projection, pos, stream) VALUES ('stop', e.global_position, e.stream_id);
    IF e.data->>'poison' = 'yes' AND (SELECT broken FROM pfix) THEN
        RAISE EXCEPTION 'poisoned event in %', e.stream_id USING ERRCODE = 'data_exception';
    END IF;
END $$;
SELECT event_store.create_projection('p_park', 'ph_park(event_store.events)', categories => ARRAY['acct'],
                                     mode => 'async', on_error => 'park');
SELECT event_store.create_projection('p_retry', 'ph_retry(event_store.events)', categories => ARRAY['acct'],
                                     mode => 'async', max_attempts => 2, retry_delay => '1 hour');
SELECT event_store.create_projection('p_stop', 'ph_stop(event_store.events)', categories => ARRAY['acct'],
                                     mode => 'async', on_error => 'stop');
SELECT name, on_error, max_attempts, retry_delay FROM event_store.projection_registry
 WHERE name LIKE 'p\_%' ORDER BY name;
SELECT event_store.append_event('acct-1', 'Opened', '{}') AS v;                    -- 7
SELECT event_store.append_event('acct-1', 'Deposited', '{"poison": "yes"}') AS v; -- 8
SELECT event_store.append_event('acct-2', 'Opened', '{}') AS v;                    -- 9
SELECT event_store.append_event('acct-1', 'Deposited', '{}') AS v;                 -- 10
SELECT event_store.append_event('acct-2', 'Deposited', '{}') AS v;                 -- 11

-- park: the run goes on past the poisoned event, its stream's later event included.
SELECT event_store.run_projection('p_park');
SELECT pos, stream FROM pseen WHERE projection = 'park' ORDER BY n;
SELECT consumer, kind, global_position, stream_id, event_type, attempts, last_error
  FROM event_store.parked_events WHERE kind = 'projection';

-- retry: the failing event waits (1 hour), acct-1's later event is held
-- behind it, acct-2 goes on; the checkpoint passes both.
SELECT event_store.run_projection('p_retry');
SELECT pos, stream FROM pseen WHERE projection = 'retry' ORDER BY n;
SELECT global_position, stream_id, attempts, last_error, next_attempt_at - last_failed_at AS delay, state
  FROM event_store.projection_retries WHERE name = 'p_retry' ORDER BY global_position;
SELECT name, checkpoint, lag_events, parked, waiting, last_error
  FROM event_store.projection_status WHERE name LIKE 'p\_%' ORDER BY name;
-- Not due: nothing to do.
SELECT event_store.run_projection('p_retry');
-- Due and still failing: the second (max_attempts) failure parks it, and
-- the held event goes through in the same run.
UPDATE event_store.projection_retries SET next_attempt_at = now() - interval '1 second'
 WHERE name = 'p_retry' AND global_position = 8;
SELECT event_store.run_projection('p_retry');
SELECT pos, stream FROM pseen WHERE projection = 'retry' ORDER BY n;
SELECT global_position, attempts, state FROM event_store.projection_retries WHERE name = 'p_retry';

-- stop: the error aborts the run; nothing is applied, the checkpoint stays.
SELECT event_store.run_projection('p_stop');
SELECT count(*) AS stop_rows FROM pseen WHERE projection = 'stop';
SELECT checkpoint FROM event_store.projection_status WHERE name = 'p_stop';

-- The fix: replay_parked puts the parked events back; the next run handles
-- them first.  A retry that succeeds after failing: a new poisoned event,
-- fixed before its retry.
UPDATE pfix SET broken = false;
SELECT event_store.replay_parked('p_retry', 8);
SELECT event_store.run_projection('p_retry');
SELECT pos, stream FROM pseen WHERE projection = 'retry' ORDER BY n DESC LIMIT 1;
SELECT count(*) AS p_retry_rows FROM event_store.projection_retries WHERE name = 'p_retry';
SELECT event_store.run_projection('p_stop');
SELECT pos FROM pseen WHERE projection = 'stop' ORDER BY n;
UPDATE pfix SET broken = true;
SELECT event_store.append_event('acct-3', 'Opened', '{"poison": "yes"}') AS v;     -- 12
SELECT event_store.append_event('acct-3', 'Deposited', '{}') AS v;                 -- 13
SELECT event_store.run_projection('p_retry');
SELECT global_position, attempts, state FROM event_store.projection_retries WHERE name = 'p_retry' ORDER BY 1;
UPDATE pfix SET broken = false;
UPDATE event_store.projection_retries SET next_attempt_at = now() - interval '1 second'
 WHERE name = 'p_retry' AND global_position = 12;
SELECT event_store.run_projection('p_retry');
SELECT pos, stream FROM pseen WHERE projection = 'retry' AND pos >= 12 ORDER BY n;
SELECT count(*) AS p_retry_rows FROM event_store.projection_retries WHERE name = 'p_retry';

-- An admin (not superuser) registers and runs a 'retry' projection; its
-- failure bookkeeping needs nothing more than event_store_admin.
CREATE ROLE es_cf_admin IN ROLE event_store_admin;
GRANT INSERT, SELECT ON pseen TO es_cf_admin;
GRANT USAGE ON SEQUENCE pseen_n_seq TO es_cf_admin;
GRANT SELECT ON pfix TO es_cf_admin;
UPDATE pfix SET broken = true;
SET ROLE es_cf_admin;
SELECT event_store.create_projection('p_admin', 'ph_retry(event_store.events)', categories => ARRAY['acct'],
                                     mode => 'async', max_attempts => 1);
SELECT event_store.run_projection('p_admin');
SELECT consumer, global_position, attempts, last_error FROM event_store.parked_events WHERE consumer = 'p_admin' ORDER BY 2;
SELECT event_store.skip_parked('p_admin');
SELECT event_store.drop_projection('p_admin');
RESET ROLE;
UPDATE pfix SET broken = false;

-- A projection's retries are the admins': a reader cannot replay them.
SET ROLE es_cf_reader;
SELECT event_store.replay_parked('p_retry');
RESET ROLE;

-- skip_parked drops a projection's parked event for good.
SELECT event_store.skip_parked('p_park', 8);
SELECT count(*) AS parked FROM event_store.parked_events WHERE consumer = 'p_park';
-- A rebuild starts over: its retries and parked events go.
UPDATE pfix SET broken = true;
SELECT event_store.run_projection('p_park');
SELECT global_position, state FROM event_store.projection_retries WHERE name = 'p_park';
UPDATE pfix SET broken = false;
SELECT event_store.rebuild_projection('p_park');
SELECT count(*) AS p_park_rows FROM event_store.projection_retries WHERE name = 'p_park';

-- A cancel is not caught: statement_timeout limits a run whose handler
-- hangs, and nothing is parked.
CREATE FUNCTION ph_hang(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep(600) $$;
SELECT event_store.create_projection('p_hang', 'ph_hang(event_store.events)', categories => ARRAY['acct'],
                                     mode => 'async', on_error => 'park');
SET statement_timeout = '200ms';
SELECT event_store.run_projection('p_hang');
RESET statement_timeout;
SELECT count(*) AS p_hang_rows FROM event_store.projection_retries WHERE name = 'p_hang';
SELECT checkpoint FROM event_store.projection_status WHERE name = 'p_hang';
SELECT event_store.drop_projection('p_hang');

-- Bad input: a clear error and nothing written.
CREATE TEMP TABLE before_registry AS SELECT * FROM event_store.projection_registry;
CREATE TEMP TABLE before_pretries AS SELECT * FROM event_store.projection_retries;
SELECT event_store.create_projection('p_bad', 'ph_park(event_store.events)', mode => 'async', on_error => 'ignore');
SELECT event_store.create_projection('p_bad', 'ph_park(event_store.events)', mode => 'async', on_error => NULL);
SELECT event_store.create_projection('p_bad', 'ph_park(event_store.events)', mode => 'async', max_attempts => 0);
SELECT event_store.create_projection('p_bad', 'ph_park(event_store.events)', mode => 'async', retry_delay => '0');
SELECT event_store.replay_parked('p_park', 999);
SELECT event_store.skip_parked('p_stop', 8);
SELECT (SELECT count(*) FROM (SELECT * FROM event_store.projection_registry EXCEPT SELECT * FROM before_registry) x) AS registry_changed,
       (SELECT count(*) FROM (SELECT * FROM event_store.projection_retries EXCEPT SELECT * FROM before_pretries) x)
     + (SELECT count(*) FROM (SELECT * FROM before_pretries EXCEPT SELECT * FROM event_store.projection_retries) x) AS retries_changed;

-- Dropping a projection drops its retries.
SELECT event_store.drop_projection('p_park');
SELECT count(*) AS p_park_rows FROM event_store.projection_retries WHERE name = 'p_park';

-- Updating from 1.10: projections registered before keep on_error 'stop'
-- (today's behaviour); subscriptions get the default retry policy.
CREATE DATABASE es_consumer_failures_upgrade;
ALTER DATABASE es_consumer_failures_upgrade SET event_store.live_projections = off;  -- no live projection worker (issue 29)
\c es_consumer_failures_upgrade
SET client_min_messages = warning;
CREATE EXTENSION event_store VERSION '1.10';
RESET client_min_messages;
CREATE FUNCTION old_handler(e event_store.events) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT event_store.create_projection('old_async', 'old_handler(event_store.events)', mode => 'async');
SELECT event_store.subscribe('old_sub');
SET client_min_messages = warning;
ALTER EXTENSION event_store UPDATE TO '1.11';
RESET client_min_messages;
SELECT name, on_error, max_attempts, retry_delay FROM event_store.projection_registry;
SELECT name, max_attempts, retry_delay FROM event_store.subscriptions;
SELECT event_store.create_projection('new_async', 'old_handler(event_store.events)', mode => 'async');
SELECT name, on_error FROM event_store.projection_registry ORDER BY name;

\c :orig_db
DROP DATABASE es_consumer_failures_test;
DROP DATABASE es_consumer_failures_upgrade;
DROP ROLE es_cf_reader;
DROP ROLE es_cf_admin;
