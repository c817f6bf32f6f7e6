SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_subscriptions_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

-- Streams of two categories; several ids, one with a '+' suffix.
SELECT event_store.append_event('order-1', 'Placed', '{}');
SELECT event_store.append_event('order-2', 'Placed', '{}');
SELECT event_store.append_event('invoice-1', 'Issued', '{}');
SELECT event_store.append_event('order-1', 'Shipped', '{}');
SELECT event_store.append_event('order-3', 'Placed', '{}');
SELECT event_store.append_event('order-1+returns', 'Returned', '{}');
SELECT event_store.append_event('order-2', 'Cancelled', '{}');
SELECT event_store.append_event('order', 'Noted', '{}');

-- subscribe: true when created, false when it exists with the same filters.
SELECT event_store.subscribe('shipping', categories => ARRAY['order']);
SELECT event_store.subscribe('shipping', categories => ARRAY['order']);
SELECT event_store.subscribe('everything');
SELECT event_store.subscribe('placements', event_types => ARRAY['Placed']);

-- poll: the next events after the checkpoint, by position; it does not move
-- the checkpoint, ack does.
SELECT global_position, stream_id, event_type FROM event_store.poll('shipping', 3);
SELECT global_position, stream_id, event_type FROM event_store.poll('shipping', 3);
SELECT event_store.ack('shipping', 4);
SELECT global_position, stream_id, event_type FROM event_store.poll('shipping');
SELECT event_store.ack('shipping', 2);      -- never moves back
SELECT name, consumer_group_member, consumer_group_size, checkpoint, lag
  FROM event_store.subscription_status ORDER BY name, consumer_group_member;
SELECT global_position, stream_id, event_type FROM event_store.poll('placements');
SELECT count(*) FROM event_store.poll('everything', 1000);

-- Consumer groups: each stream goes to one member, chosen by Message DB's
-- hash_64 of its cardinal id (the id up to '+'), so order-1 and
-- order-1+returns share a member.
SELECT event_store.cardinal_id('order-1+returns') AS cardinal,
       event_store.cardinal_id('order-1') AS plain,
       event_store.cardinal_id('order') AS no_id;
SELECT s AS stream_id, event_store.consumer_group_member(s, 3) AS member,
       event_store.consumer_group_member(s, 3) =
         (abs(left('x' || md5(event_store.cardinal_id(s)), 17)::bit(64)::bigint) % 3)::int AS same_as_message_db
  FROM unnest(ARRAY['order-1', 'order-1+returns', 'order-2', 'order-3', 'order']) s;
SELECT m AS member, array_agg(stream_id || ':' || event_type ORDER BY global_position) AS events
  FROM generate_series(0, 2) m, event_store.poll('shipping', 100, m, 3)
 GROUP BY m ORDER BY m;
-- Every event of the subscription reaches exactly one member.
SELECT count(*) AS delivered, count(DISTINCT global_position) AS distinct_positions
  FROM generate_series(0, 2) m, event_store.poll('shipping', 100, m, 3);
-- Members keep checkpoints of their own; a member new to a group size
-- starts where every member of another size had acknowledged up to (here
-- the ungrouped consumer, size 1, at 4), never from the checkpoint of a
-- member of its own size (redelivers, never skips; consumer_group_start).
SELECT event_store.ack('shipping', 7, 1, 3);
SELECT name, consumer_group_member, consumer_group_size, checkpoint
  FROM event_store.subscription_status WHERE name = 'shipping' ORDER BY consumer_group_size, consumer_group_member;
SELECT global_position, stream_id FROM event_store.poll('shipping', 100, 1, 3);
SELECT global_position, stream_id FROM event_store.poll('shipping', 100, 0, 3);

-- New events reach the subscription.
SELECT event_store.append_event('order-4', 'Placed', '{}');
SELECT global_position, stream_id, event_type FROM event_store.poll('placements', 10);

-- Dropping a subscription drops its checkpoints.
SELECT event_store.unsubscribe('everything');
SELECT name FROM event_store.subscriptions ORDER BY name;

-- poll needs READ COMMITTED (the horizon must precede the snapshot).
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM event_store.poll('shipping');
ROLLBACK;

------------------------------------------------------------------------------
-- Push: NOTIFY on event_store_events, coalesced by a background worker
-- when preloaded (payload: the feed horizon), else one per appending
-- transaction; psql prints the sender's pid, so this only shows the
-- setting (test/t/007_wait_for_feed.pl shows the notifications).
------------------------------------------------------------------------------
SHOW event_store.notify;
SET event_store.notify = off;
SHOW event_store.notify;
RESET event_store.notify;

------------------------------------------------------------------------------
-- Bad input: clear errors, nothing changed.
------------------------------------------------------------------------------
SELECT count(*) AS subscriptions_before FROM event_store.subscriptions;
SELECT count(*) AS checkpoints_before FROM event_store.subscription_checkpoints;
\set VERBOSITY default
SELECT event_store.subscribe('shipping', categories => ARRAY['invoice']);
SELECT event_store.subscribe(NULL);
SELECT event_store.subscribe('');
SELECT event_store.subscribe('x', categories => '{}');
SELECT event_store.subscribe('x', event_types => ARRAY[NULL]::text[]);
SELECT * FROM event_store.poll('no_such');
SELECT * FROM event_store.poll('shipping', 0);
SELECT * FROM event_store.poll('shipping', -1);
SELECT * FROM event_store.poll('shipping', NULL);
SELECT * FROM event_store.poll('shipping', 10, 3, 3);
SELECT * FROM event_store.poll('shipping', 10, -1, 3);
SELECT * FROM event_store.poll('shipping', 10, 0, 0);
SELECT * FROM event_store.poll('shipping', 10, 0, -2);
SELECT * FROM event_store.poll('shipping', 10, 0, NULL);
SELECT * FROM event_store.poll('shipping', 10, NULL, 2);
SELECT event_store.ack('no_such', 1);
SELECT event_store.ack('shipping', NULL);
SELECT event_store.ack('shipping', -1);
SELECT event_store.ack('shipping', 1000000);
SELECT event_store.ack('shipping', 1, 2, 2);
SELECT event_store.unsubscribe('no_such');
\set VERBOSITY terse
SELECT count(*) AS subscriptions_after FROM event_store.subscriptions;
SELECT count(*) AS checkpoints_after FROM event_store.subscription_checkpoints;

\c :orig_db
DROP DATABASE es_subscriptions_test;
