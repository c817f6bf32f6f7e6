-- Logical decoding sees appends as plain inserts into the partitions (and
-- the stream row's insert/update), so logical replication and CDC tools
-- work on the log.  Needs wal_level = logical (scripts/run-tests.sh sets it).
SELECT 'init' FROM pg_create_logical_replication_slot('event_store_slot', 'test_decoding');

SELECT event_store.append('decoded-1', ARRAY[
    event_store.event('First', '{"n": 1}'),
    event_store.event('Second', '{"n": 2}')]);
SELECT event_store.append_event('decoded-1', 'Third', '{"n": 3}');

-- One transaction per append; the event inserts name the partition, whose
-- name depends on today's date and is masked.
SELECT regexp_replace(
         regexp_replace(data, 'events_p[0-9_]+', 'events_pNNN'),
         '(global_position\[bigint\]:)\d+|(transaction_id\[xid8\]:)''\d+''|(event_id\[uuid\]:)''[^'']+''|(recorded_at\[timestamp with time zone\]:)''[^'']+''|(occurred_at\[timestamp with time zone\]:)''[^'']+''|((created|updated)_at\[timestamp with time zone\]:)''[^'']+''|((first|last)_position\[bigint\]:)\d+|BEGIN \d+|COMMIT \d+',
         '\1\2\3\4\5\6\8...', 'g') AS change
  FROM pg_logical_slot_get_changes('event_store_slot', NULL, NULL, 'include-xids', '0');

SELECT pg_drop_replication_slot('event_store_slot');
