-- issue 28: poll() never delivers a retried or held event that stream
-- lifecycle hides.  An event nacked before its stream was deleted or
-- truncated past it (or before max_count or max_age hid it) is dropped from
-- the retry queue at the next poll, and it no longer holds back the
-- stream's visible events.  No test sleeps: "time passing" is an UPDATE of
-- next_attempt_at (as in consumer_failures).
SET timezone = 'UTC';
\set own_db es_hidden_retries_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

SELECT event_store.append_event('cart-1', 'Added', '{}');     -- 1
SELECT event_store.append_event('cart-2', 'Added', '{}');     -- 2
SELECT event_store.append_event('cart-1', 'Added', '{}');     -- 3
SELECT event_store.append_event('cart-3', 'Added', '{}');     -- 4
SELECT event_store.append_event('cart-4', 'Added', '{}');     -- 5
SELECT event_store.append_event('cart-4', 'Added', '{}');     -- 6
SELECT event_store.append_event('cart-4', 'Added', '{}');     -- 7
SELECT event_store.subscribe('carts', categories => ARRAY['cart']);

-- The consumer fails on the first event of cart-1, cart-2, cart-3 and
-- cart-4 and acknowledges the batch; the failed ones wait for their retry,
-- and the later events of cart-1 and cart-4 are held behind them (held
-- rows: attempts 0).
SELECT global_position, stream_id, stream_version FROM event_store.poll('carts');
SELECT event_store.nack('carts', 1, 'boom');
SELECT event_store.nack('carts', 2, 'boom');
SELECT event_store.nack('carts', 4, 'boom');
SELECT event_store.nack('carts', 5, 'boom');
SELECT event_store.ack('carts', 7);
SELECT global_position, stream_id, attempts, state FROM event_store.subscription_retries ORDER BY global_position;

-- Between the nack and the retry: cart-1 is soft-deleted, cart-2
-- tombstoned, cart-3 truncated past its event; cart-4 keeps only its
-- newest 2 events (max_count), which hides event 5 but not 6 and 7.
SELECT event_store.delete_stream('cart-1');
SELECT event_store.delete_stream('cart-2', hard => true);
SELECT event_store.append_event('cart-3', 'Added', '{}');
SELECT event_store.truncate_stream('cart-3', 2);
SELECT event_store.set_stream_metadata('cart-4', '{"max_count": 2}');
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second';

-- The retries are due, but none of 1 to 5 is delivered: their events are
-- hidden.  They are dropped from the queue.  cart-4's 6 and 7, held behind
-- 5 when ack() passed them, are not held by it any more: 6 comes now, 7
-- after 6 (one stream's events in order); cart-3's new event comes too.
SELECT global_position, stream_id, stream_version FROM event_store.poll('carts');
SELECT global_position, stream_id, attempts, state FROM event_store.subscription_retries ORDER BY global_position;

-- The same for a consumer group member: member 0 of 2 drops only the rows
-- of its own streams; member 1's row waits until member 1 polls.
SELECT event_store.subscribe('carts_group', categories => ARRAY['cart']);
SELECT min(s) FILTER (WHERE event_store.consumer_group_member(s, 2) = 0) AS s0,
       min(s) FILTER (WHERE event_store.consumer_group_member(s, 2) = 1) AS s1
  FROM (SELECT 'cart-g' || i AS s FROM generate_series(1, 20) i) x \gset
SELECT event_store.append_event(:'s0', 'Added', '{}') AS v \gset
SELECT event_store.append_event(:'s1', 'Added', '{}') AS v \gset
SELECT global_position AS p0 FROM event_store.events WHERE stream_id = :'s0' \gset
SELECT global_position AS p1 FROM event_store.events WHERE stream_id = :'s1' \gset
SELECT count(*) AS member0_got FROM event_store.poll('carts_group', 100, 0, 2) WHERE stream_id = :'s0';
SELECT count(*) AS member1_got FROM event_store.poll('carts_group', 100, 1, 2) WHERE stream_id = :'s1';
SELECT event_store.nack('carts_group', :p0, 'boom', 0, 2);
SELECT event_store.nack('carts_group', :p1, 'boom', 1, 2);
SELECT event_store.delete_stream(:'s0');
SELECT event_store.delete_stream(:'s1');
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second';
SELECT count(*) AS delivered FROM event_store.poll('carts_group', 100, 0, 2) WHERE stream_id IN (:'s0', :'s1');
SELECT stream_id = :'s1' AS only_member1_row_left FROM event_store.subscription_retries WHERE name = 'carts_group';
SELECT count(*) AS delivered FROM event_store.poll('carts_group', 100, 1, 2) WHERE stream_id IN (:'s0', :'s1');
SELECT count(*) AS rows_left FROM event_store.subscription_retries WHERE name = 'carts_group';

-- A parked event is not dropped (parked_events is the operator's record);
-- replayed, it is dropped at the next poll instead of being delivered.
SELECT event_store.subscribe('carts_park', categories => ARRAY['cart'], max_attempts => 1);
SELECT event_store.append_event('cart-7', 'Added', '{}') AS v \gset
SELECT global_position AS pos7 FROM event_store.events WHERE stream_id = 'cart-7' \gset
SELECT count(*) > 0 AS got_it FROM event_store.poll('carts_park') WHERE stream_id = 'cart-7';
SELECT event_store.nack('carts_park', :pos7, 'boom');
SELECT event_store.delete_stream('cart-7');
SELECT count(*) AS delivered FROM event_store.poll('carts_park') WHERE stream_id = 'cart-7';
SELECT stream_id, state FROM event_store.subscription_retries WHERE name = 'carts_park';
SELECT event_store.replay_parked('carts_park', :pos7);
SELECT count(*) AS delivered FROM event_store.poll('carts_park') WHERE stream_id = 'cart-7';
SELECT count(*) AS rows_left FROM event_store.subscription_retries WHERE name = 'carts_park';

-- A retry whose event stays visible is still delivered (the filter drops
-- only hidden events): cart-8's first event, with its stream truncated
-- before a later version only.
SELECT event_store.subscribe('carts_visible', categories => ARRAY['cart']);
SELECT event_store.append_event('cart-8', 'Added', '{}');
SELECT event_store.append_event('cart-8', 'Added', '{}');
SELECT global_position AS pos8 FROM event_store.events WHERE stream_id = 'cart-8' AND stream_version = 2 \gset
SELECT count(*) AS got FROM event_store.poll('carts_visible') WHERE stream_id = 'cart-8';
SELECT event_store.nack('carts_visible', :pos8, 'boom');
SELECT event_store.truncate_stream('cart-8', 2);
UPDATE event_store.subscription_retries SET next_attempt_at = now() - interval '1 second';
SELECT stream_id, stream_version FROM event_store.poll('carts_visible') WHERE stream_id = 'cart-8';

\c :orig_db
DROP DATABASE es_hidden_retries_test;
