-- Upgrade 1.0 -> the latest version in a database of its own: events
-- appended under 1.0 survive, and the operations of 1.6 work on them.
SET timezone = 'UTC';
\set own_db es_upgrade_latest_test
\set own_db_extension 'event_store VERSION ''1.0'''
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
SELECT event_store.append_event('order-1', 'Placed', '{"items": {"tea": 2}, "email": "c@example.com"}');
SELECT event_store.append_event('order-1', 'Shipped', '{"status": "shipped"}');
SELECT event_store.append_event('order-2', 'Placed', '{"items": {"coffee": 1}}');
SELECT md5(string_agg((e.global_position, e.stream_id, e.stream_version, e.event_type, e.data, e.event_id, e.recorded_at)::text,
                      ',' ORDER BY global_position)) AS before_digest FROM event_store.events e \gset

SET client_min_messages = warning;
ALTER EXTENSION event_store UPDATE;
RESET client_min_messages;
SELECT e.extversion = a.default_version AS at_latest, string_to_array(e.extversion, '.')::int[] >= '{1,6}' AS has_operations
  FROM pg_extension e JOIN pg_available_extensions a ON a.name = e.extname WHERE e.extname = 'event_store';

-- The log is intact (columns of 1.0; later versions added tags).
SELECT md5(string_agg((e.global_position, e.stream_id, e.stream_version, e.event_type, e.data, e.event_id, e.recorded_at)::text,
                      ',' ORDER BY global_position)) = :'before_digest' AS events_intact FROM event_store.events e;
SELECT stream_id, version FROM event_store.streams ORDER BY stream_id;
SELECT event_store.state_as_of('order-1');

-- Behaviour: appends continue at the right version, the log stays append-only,
-- the 1.6 guard and views work on partitions made by 1.0.
SELECT event_store.append_event('order-1', 'Delivered', '{"status": "delivered"}', expected_version => 2);
SELECT event_store.append_event('order-1', 'Late', '{}', expected_version => 2);
DO $$
BEGIN
    UPDATE event_store.events SET data = '{}';
EXCEPTION WHEN SQLSTATE 'ES003' THEN
    RAISE NOTICE 'update refused: %', SQLSTATE;
END
$$;
DO $$
BEGIN
    EXECUTE format('DROP TABLE %s', (SELECT partition FROM event_store.partition_info WHERE rows IS NULL OR true ORDER BY range_start LIMIT 1));
EXCEPTION WHEN SQLSTATE 'ES003' THEN
    RAISE NOTICE 'drop refused: %', SQLSTATE;
END
$$;
SELECT category, streams, events FROM event_store.stream_stats;
SELECT count(*) AS partitions, bool_and(NOT archived) AS none_archived FROM event_store.partition_info;
-- 1.11 (issue 31): data is nullable in the log and in the partitions 1.0 made
SELECT count(*) > 1 AS tables, count(*) FILTER (WHERE a.attnotnull) AS not_null_data
  FROM pg_attribute a
 WHERE a.attname = 'data'
   AND a.attrelid IN (SELECT 'event_store.events'::regclass UNION ALL
                      SELECT i.inhrelid FROM pg_inherits i WHERE i.inhparent = 'event_store.events'::regclass);
SELECT event_store.redact('order-1', 'upgrade test', ARRAY['email']);
SELECT stream_version, data FROM event_store.read_stream('order-1');
SELECT stream_id, event_type FROM event_store.read_stream('$audit-redactions');
SET client_min_messages = warning;
CALL event_store.run_maintenance();
RESET client_min_messages;
SELECT step, error FROM event_store.maintenance_status ORDER BY ran_at;

\c :orig_db
DROP DATABASE es_upgrade_latest_test;
