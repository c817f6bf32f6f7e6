-- Category reads (read_category, poll with categories) follow the
-- category's index whatever the rest of the log holds (1.10): a read at the
-- end of a quiet category, after many events of a busy one, never walks the
-- global_position index.  The rows are those 1.9 returned.  In a database
-- of its own, so that its statistics are this test's.
SET timezone = 'UTC';
\set own_db es_category_reads_test
\set own_db_extension 'event_store VERSION ''1.9'''
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

-- 4,000 events of four quiet categories, their streams interleaved, then
-- 12,000 of a busy one: the quiet categories' index entries look spread
-- over the heap, and with 1.9 the planner read the tail of 'account'
-- through the global_position index, filtering out every busy event.
SELECT count(event_store.append((ARRAY['account', 'aaa', 'zzz', 'mmm'])[1 + (hashint4(s) & 3)] || '-' || s,
                                ARRAY(SELECT event_store.event('Quiet', jsonb_build_object('n', g))
                                        FROM generate_series(1, 5) g))) AS quiet_streams
  FROM generate_series(1, 800) s;
SELECT count(event_store.append('writeBench-' || s,
                                ARRAY(SELECT event_store.event('Busy', '{}') FROM generate_series(1, 10)))) AS busy_streams
  FROM generate_series(1, 1200) s;
ANALYZE event_store.events;
SELECT max(global_position) - 5 AS tail FROM event_store.events WHERE stream_id LIKE 'account-%' \gset
SELECT event_store.subscribe('account_reader', ARRAY['account']) AS one_category,
       event_store.subscribe('two_reader', ARRAY['account', 'zzz']) AS two_categories;
-- (member 1 of 2 polls from further back: the last few events of the
-- category may all be of streams of member 0)
SELECT event_store.ack('account_reader', :tail), event_store.ack('two_reader', :tail),
       event_store.ack('account_reader', :tail - 200, 1, 2);

-- What 1.9 returns, to compare with after the update.
CREATE TEMP TABLE read_at_1_9 AS
SELECT (SELECT array_agg(global_position) FROM event_store.read_category('account', :tail, 100)) AS tail_read,
       (SELECT array_agg(global_position) FROM event_store.read_category('account', 1000, 50)) AS middle_read,
       (SELECT array_agg(global_position) FROM event_store.poll('account_reader', 100)) AS poll_one,
       (SELECT array_agg(global_position) FROM event_store.poll('account_reader', 100, 1, 2)) AS poll_member,
       (SELECT array_agg(global_position) FROM event_store.poll('two_reader', 100)) AS poll_two;

SET client_min_messages = warning;
ALTER EXTENSION event_store UPDATE TO '1.10';
RESET client_min_messages;

-- (index entries read by this backend in this transaction; planning may
-- probe an index end or two for its estimates)
CREATE FUNCTION pg_temp.index_entries_read(kind text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass)
       AND c.relname LIKE '%\_' || kind || '\_idx'
$f$;

-- The same rows as 1.9, and as the log holds, in position order.
SELECT (SELECT array_agg(global_position) FROM event_store.read_category('account', :tail, 100)) = tail_read AS tail_read_same,
       (SELECT array_agg(global_position) FROM event_store.read_category('account', 1000, 50)) = middle_read AS middle_read_same,
       (SELECT array_agg(global_position) FROM event_store.poll('account_reader', 100)) = poll_one AS poll_one_same,
       (SELECT array_agg(global_position) FROM event_store.poll('account_reader', 100, 1, 2)) = poll_member AS poll_member_same,
       (SELECT array_agg(global_position) FROM event_store.poll('two_reader', 100)) = poll_two AS poll_two_same
  FROM read_at_1_9;
SELECT cardinality(tail_read) AS tail_events,
       tail_read = (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.events
                     WHERE stream_id LIKE 'account-%' AND global_position > :tail) AS tail_as_logged,
       poll_two = (SELECT array_agg(global_position ORDER BY global_position) FROM event_store.events
                    WHERE (stream_id LIKE 'account-%' OR stream_id LIKE 'zzz-%') AND global_position > :tail) AS two_as_logged,
       middle_read = (SELECT array_agg(global_position ORDER BY global_position)
                        FROM (SELECT global_position FROM event_store.events
                               WHERE stream_id LIKE 'account-%' AND global_position > 1000
                               ORDER BY global_position LIMIT 50) m) AS middle_as_logged
  FROM read_at_1_9;

-- Each read at the tail reads the category's index, not the position index.
BEGIN;
SELECT pg_temp.index_entries_read('category') AS category_before,
       pg_temp.index_entries_read('position') AS position_before \gset
SELECT count(*) AS tail_read FROM event_store.read_category('account', :tail, 100);
SELECT pg_temp.index_entries_read('category') - :category_before >= 5 AS category_index_read,
       pg_temp.index_entries_read('position') - :position_before < 20 AS position_index_not_walked;
COMMIT;
BEGIN;
SELECT pg_temp.index_entries_read('category') AS category_before,
       pg_temp.index_entries_read('position') AS position_before \gset
SELECT count(*) AS poll_one FROM event_store.poll('account_reader', 100);
SELECT pg_temp.index_entries_read('category') - :category_before >= 5 AS category_index_read,
       pg_temp.index_entries_read('position') - :position_before < 20 AS position_index_not_walked;
COMMIT;
BEGIN;
SELECT pg_temp.index_entries_read('category') AS category_before,
       pg_temp.index_entries_read('position') AS position_before \gset
SELECT count(*) AS poll_member FROM event_store.poll('account_reader', 100, 1, 2);
SELECT count(*) AS poll_two FROM event_store.poll('two_reader', 100);
SELECT pg_temp.index_entries_read('category') - :category_before >= 5 AS category_index_read,
       pg_temp.index_entries_read('position') - :position_before < 20 AS position_index_not_walked;
COMMIT;

-- Also on repeated calls, where the functions run their generic plan
-- (planned without the category or the positions: force_generic_plan):
-- twelve reads at the tail, where walking the position index would read
-- 12,000 entries each.
BEGIN;
SELECT pg_temp.index_entries_read('position') AS position_before \gset
SELECT sum((SELECT count(*) FROM event_store.read_category('account', :tail + g - g, 100))) AS twelve_tail_reads,
       sum((SELECT count(*) FROM event_store.poll('two_reader', 100 + g - g))) AS twelve_polls
  FROM generate_series(1, 12) g;
SELECT pg_temp.index_entries_read('position') - :position_before < 200 AS position_index_not_walked;
COMMIT;

-- Unchanged edges: no category, no position, an unknown category.
SELECT count(*) AS null_category FROM event_store.read_category(NULL, 0, 10);
SELECT count(*) AS null_position FROM event_store.read_category('account', NULL, 10);
SELECT count(*) AS unknown_category FROM event_store.read_category('nosuch', 0, 10);
SELECT count(*) AS category_prefix_only FROM event_store.read_category('acc', 0, 10);

\c :orig_db
DROP DATABASE es_category_reads_test;
