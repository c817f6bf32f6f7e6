SET timezone = 'UTC';
-- Upgrade 1.0 -> 1.1 in a database of its own: events appended under 1.0
-- are folded by the 1.1 functions.
\set own_db es_upgrade_test
\set own_db_extension 'event_store VERSION ''1.0'''
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
SELECT extversion FROM pg_extension WHERE extname = 'event_store';
SELECT to_regprocedure('event_store.state_as_of(text,timestamptz)') IS NULL AS no_fold_in_1_0;

SELECT event_store.append_event('order-1', 'Placed', '{"items": {"tea": 2}, "status": "placed"}');
SELECT event_store.append_event('order-1', 'Changed', '{"items": {"tea": null, "coffee": 1}}');
SELECT event_store.append_event('order-1', 'Shipped', '{"status": "shipped"}', occurred_at => '2020-01-01');
SELECT md5(string_agg(e::text, ',' ORDER BY global_position)) AS before_digest FROM event_store.events e \gset

ALTER EXTENSION event_store UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'event_store';

-- The log is intact.
SELECT md5(string_agg(e::text, ',' ORDER BY global_position)) = :'before_digest' AS events_intact FROM event_store.events e;
SELECT stream_id, version FROM event_store.streams;

-- The new functions work on the old events.
SELECT event_store.state_as_of('order-1');
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'order-1', 2);
SELECT event_store.fold('event_store.count_by_type(jsonb,event_store.events)', NULL::jsonb, 'order-1');
SELECT event_store.state_bitemporal('order-1', '2021-01-01', NULL);
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'order-1');
SELECT event_store.state_as_of('order-1') = event_store.jsonb_merge_patch('{"status": "placed", "items": {"coffee": 1}}', '{"status": "shipped"}') AS same;
-- And appends still work after the upgrade.
SELECT event_store.append_event('order-1', 'Delivered', '{"status": "delivered"}');
SELECT event_store.state_as_of('order-1');

\c :orig_db
DROP DATABASE es_upgrade_test;
