-- The Message DB compatible API (extension event_store_messagedb, schema
-- message_store): every function, every error, the role, and messages
-- written through either API read through both.
CREATE EXTENSION event_store_messagedb CASCADE;

SELECT e.extname, e.extversion, n.nspname, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'event_store_messagedb';
SELECT requires FROM pg_available_extension_versions WHERE name = 'event_store_messagedb';

-- The role Message DB clients log in as, with a search_path that finds the
-- functions unqualified.
SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'message_store';
SELECT s.setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole
 WHERE r.rolname = 'message_store';

-- The message type: Message DB's columns and types.
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'message_store.message'::regclass AND attnum > 0
 ORDER BY attnum;

-- Positions below are shown relative to the last global position before this
-- test (other tests appended before).
SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END AS base FROM event_store.global_position_seq \gset

SET search_path = message_store, public;
\pset null '<null>'

------------------------------------------------------------------------------
-- Helpers
------------------------------------------------------------------------------
SELECT message_store_version();
-- hash_64: the first 64 bits of md5, signed; same numbers as Message DB.
SELECT hash_64('abc') AS abc, hash_64('') AS empty, hash_64('123') AS "123", hash_64(NULL) AS "null";
SELECT hash_64(v) = left('x' || md5(v), 17)::bit(64)::bigint AS same_as_sql
  FROM (VALUES ('abc'), ('account'), ('0a1b2c3d-0000'), ('zz'), ('é')) t(v);
SELECT category('account-1-2') AS c1, category('account') AS c2, category('') AS c3, category(NULL) AS c4;
SELECT id('account-1+2') AS i1, id('account') AS i2, id('account-') AS i3,
       cardinal_id('account-1+2-3') AS k1, cardinal_id('account') AS k2, cardinal_id('account-') AS k3;
SELECT is_category('account') AS a, is_category('account-1') AS b, is_category('') AS c,
       is_category(NULL) AS "null is a category";
BEGIN;
SELECT acquire_lock('account-1') = hash_64('account') AS locks_the_category;
SELECT count(*) AS advisory_locks FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid();
SELECT acquire_lock(NULL) AS no_lock_for_null;
COMMIT;

------------------------------------------------------------------------------
-- write_message: 0-based positions, expected versions (-1 = no stream)
------------------------------------------------------------------------------
SELECT write_message('10000000-0000-4000-8000-000000000001', 'mdbAccount-1', 'Opened', '{"a": 1}');
SELECT write_message('10000000-0000-4000-8000-000000000002', 'mdbAccount-1', 'Deposited', '{"amount": 10}',
                     '{"correlationStreamName": "mdbOrder-9"}', 0);
SELECT write_message('10000000-0000-4000-8000-000000000003', 'mdbAccount-2', 'Opened', '{}', NULL, -1);
SELECT write_message('10000000-0000-4000-8000-000000000004', 'mdbAccount-3+x', 'Opened', '{"k": "v"}',
                     '{"correlationStreamName": "mdbOrder-1"}');
SELECT write_message('10000000-0000-4000-8000-000000000005', 'mdbAccount', 'CategoryOnly', '{}');
SELECT write_message(id::text, 'mdbAccount-' || (n % 7), 'Deposited', jsonb_build_object('n', n), NULL)
  FROM (SELECT n, ('20000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid AS id
          FROM generate_series(1, 20) n) t
 ORDER BY n;

-- errors, with Message DB's texts and SQLSTATEs (err() shows "SQLSTATE: message")
CREATE FUNCTION pg_temp.err(q text) RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE q;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$f$;
SELECT pg_temp.err(q) FROM (VALUES
  (1, $$SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-1', 'Deposited', '{}', NULL, 0)$$),
  (2, $$SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-2', 'Opened', '{}', NULL, -1)$$),
  (3, $$SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-9', 'Opened', '{}', NULL, 0)$$),
  (4, $$SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-9', 'Opened', '{}', NULL, -2)$$),
  (5, $$SELECT write_message('10000000-0000-4000-8000-000000000009', NULL, 'Opened', '{}', NULL, 3)$$),
  (6, $$SELECT write_message('10000000-0000-4000-8000-000000000001', 'mdbAccount-9', 'Opened', '{}')$$),
  (7, $$SELECT write_message('not-a-uuid', 'mdbAccount-9', 'Opened', '{}')$$),
  (8, $$SELECT write_message(NULL, 'mdbAccount-9', 'Opened', '{}')$$),
  (9, $$SELECT write_message('10000000-0000-4000-8000-000000000009', NULL, 'Opened', '{}')$$),
  (10, $$SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-9', NULL, '{}')$$),
  -- a difference from Message DB, refused by the event log (docs/messagedb.md);
  -- data of any JSON type is accepted: test/sql/messagedb_any_json.sql
  (13, $$SELECT write_message('10000000-0000-4000-8000-000000000009', '', 'Opened', '{}')$$)
) t(n, q) ORDER BY n;
-- the full error, as a client sees it
SELECT write_message('10000000-0000-4000-8000-000000000009', 'mdbAccount-1', 'Deposited', '{}', NULL, 0);
SELECT write_message('10000000-0000-4000-8000-000000000001', 'mdbAccount-9', 'Opened', '{}');
-- nothing was written by the failed calls
SELECT stream_version('mdbAccount-9') AS "mdbAccount-9";

------------------------------------------------------------------------------
-- stream_version, get_stream_messages
------------------------------------------------------------------------------
SELECT stream_version('mdbAccount-1') AS a1, stream_version('mdbAccount-2') AS a2,
       stream_version('mdbAccount') AS a, stream_version('mdbNone-1') AS none, stream_version(NULL) AS "null";

SELECT id, stream_name, type, position, global_position - :base AS gp, data, metadata,
       time = (SELECT e.recorded_at AT TIME ZONE 'UTC' FROM event_store.events e WHERE e.event_id = m.id::uuid) AS time_utc
  FROM get_stream_messages('mdbAccount-1') m;
SELECT position, type FROM get_stream_messages('mdbAccount-1', 2);
SELECT position, type FROM get_stream_messages('mdbAccount-1', 2, 1);
SELECT position, type FROM get_stream_messages('mdbAccount-1', NULL, NULL);
SELECT count(*) FROM get_stream_messages('mdbAccount-1', -5, -1);
SELECT count(*) FROM get_stream_messages('mdbAccount-1', 0, 0);
SELECT count(*) FROM get_stream_messages('mdbAccount-1', 100);
SELECT count(*) FROM get_stream_messages('mdbNone-1');
SELECT * FROM get_stream_messages('mdbAccount-1', 0, -2);
SELECT * FROM get_stream_messages('mdbAccount');
SELECT * FROM get_stream_messages(NULL);
SELECT * FROM get_stream_messages('mdbAccount-1', 0, 10, 'type = ''Opened''');

------------------------------------------------------------------------------
-- get_category_messages: positions, batches, correlation, consumer groups
------------------------------------------------------------------------------
SELECT stream_name, position, global_position - :base AS gp, type FROM get_category_messages('mdbAccount');
SELECT stream_name, position, global_position - :base AS gp
  FROM get_category_messages('mdbAccount', :base + 4, 3);
SELECT count(*) FROM get_category_messages('mdbAccount', NULL, NULL);
SELECT count(*) FROM get_category_messages('mdbAccount', 1, -1);
SELECT count(*) FROM get_category_messages('mdbAccount', 1, 0);
SELECT count(*) FROM get_category_messages('mdbNone');
SELECT count(*) FROM get_category_messages(NULL);
SELECT stream_name, global_position - :base AS gp FROM get_category_messages('mdbAccount', 1, 1000, 'mdbOrder');
SELECT count(*) FROM get_category_messages('mdbAccount', 1, 1000, 'mdbNone');
-- Each stream with an id goes to exactly one member; the category-only
-- stream "mdbAccount" (no id) to none, as in Message DB.
SELECT size, member, string_agg(DISTINCT stream_name, ' ' ORDER BY stream_name) AS streams
  FROM generate_series(1, 3) size, generate_series(0, size - 1) member,
       get_category_messages('mdbAccount', 1, 1000, NULL, member, size)
 GROUP BY size, member ORDER BY size, member;
SELECT stream_name, mod(abs(hash_64(cardinal_id(stream_name))), 3) AS member_of_3
  FROM (SELECT DISTINCT stream_name FROM messages WHERE category(stream_name) = 'mdbAccount') s
 ORDER BY 1;
SELECT count(*) FROM get_category_messages('mdbAccount', 1, 2, NULL, 0, 1);

-- The consumer group filter (1.1): the member _consumer_group_member gives,
-- none for a name without an id, and 1/size of the rows for the planner
-- (it guessed 1 in 200 of "member function = member").
SELECT name, size, member, message_store._in_consumer_group(name, member, size) AS in_group,
       message_store._in_consumer_group(name, member, size) =
       coalesce(message_store._consumer_group_member(name, size) = member, false) AS agrees
  FROM (VALUES ('mdbAccount-1'), ('mdbAccount-2+x'), ('mdbAccount'), ('a-b-c')) n(name),
       generate_series(1, 2) size, generate_series(0, size - 1) member
 ORDER BY 1, 2, 3;
CREATE FUNCTION pg_temp.estimated_rows(q text) RETURNS int LANGUAGE plpgsql AS $f$
DECLARE
    plan json;
BEGIN
    EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan;
    RETURN (plan->0->'Plan'->>'Plan Rows')::int;
END
$f$;
SELECT pg_temp.estimated_rows($$SELECT 1 FROM generate_series(1, 1000) g
                                WHERE message_store._in_consumer_group('s-' || g, 0, 4)$$) AS of_1000_in_4,
       pg_temp.estimated_rows($$SELECT 1 FROM generate_series(1, 1000) g
                                WHERE message_store._in_consumer_group('s-' || g, 1, 10)$$) AS of_1000_in_10;

-- A read at the end of a quiet category, after many messages of another
-- one, reads the category's index only: never the global_position index
-- (which, filtering on the category, would walk every later message).
SELECT count(write_message(('2a000000-0000-4000-8000-' || lpad(i::text, 12, '0')), 'mdbQuiet-' || (i % 7), 'Q', '{}'))
  FROM generate_series(1, 60) i;
SELECT count(write_message(('3a000000-0000-4000-8000-' || lpad(i::text, 12, '0')), 'mdbBusy-' || (i % 50), 'B', '{}'))
  FROM generate_series(1, 2000) i;
ANALYZE event_store.events;
SELECT max(global_position) - 5 AS quiet_tail FROM messages WHERE stream_name LIKE 'mdbQuiet-%' \gset
-- (index entries read by this backend since its last statistics report;
-- the planner may probe an index end or two for its estimates)
CREATE FUNCTION pg_temp.index_entries_read(kind text) RETURNS bigint LANGUAGE sql AS $f$
    SELECT coalesce(sum(pg_stat_get_xact_tuples_returned(i.indexrelid)), 0)
      FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE i.indrelid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = 'event_store.events'::regclass)
       AND c.relname LIKE '%\_' || kind || '\_idx'
$f$;
BEGIN;
SELECT pg_temp.index_entries_read('category') AS category_before,
       pg_temp.index_entries_read('position') AS position_before \gset
SELECT count(*) AS member_0_of_2, sum((stream_name LIKE 'mdbQuiet-%')::int) AS all_quiet
  FROM get_category_messages('mdbQuiet', :quiet_tail, 10, NULL, 0, 2);
SELECT count(*) AS whole_tail FROM get_category_messages('mdbQuiet', :quiet_tail, 10);
SELECT count(*) AS unlimited FROM get_category_messages('mdbQuiet', 1, -1);
SELECT pg_temp.index_entries_read('category') - :category_before >= 60 AS category_index_read,
       pg_temp.index_entries_read('position') - :position_before < 20 AS position_index_not_walked;
COMMIT;
-- the same rows as the log holds, in position order
SELECT array_agg(global_position ORDER BY global_position) =
       (SELECT array_agg(global_position) FROM get_category_messages('mdbQuiet', :quiet_tail - 20, 1000, NULL, 1, 2)) AS same_rows
  FROM messages
 WHERE stream_name LIKE 'mdbQuiet-%' AND global_position >= :quiet_tail - 20
   AND mod(abs(hash_64(cardinal_id(stream_name))), 2) = 1;

SELECT * FROM get_category_messages('mdbAccount-1');
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, 'mdbOrder-1');
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, 0);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, NULL, 2);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, 0, 0);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, -1, 2);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, 2, 2);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, 0, 40000);
SELECT * FROM get_category_messages('mdbAccount', 1, -3);
SELECT * FROM get_category_messages('mdbAccount', 1, 1000, NULL, NULL, NULL, 'true');

------------------------------------------------------------------------------
-- SQL conditions: refused unless message_store.sql_condition is on
------------------------------------------------------------------------------
SET message_store.sql_condition = on;
SELECT position, type FROM get_stream_messages('mdbAccount-1', 0, 10, 'type = ''Opened''');
SELECT stream_name, position FROM get_category_messages('mdbAccount', 1, 1000, NULL, NULL, NULL,
                                                      'data->>''k'' = ''v'' OR position > 2');
SELECT stream_name, position FROM get_category_messages('mdbAccount', 1, 1000, 'mdbOrder', 0, 1, 'true');
SET message_store.sql_condition = off;
SELECT * FROM get_stream_messages('mdbAccount-1', 0, 10, 'true');
RESET message_store.sql_condition;

------------------------------------------------------------------------------
-- get_last_stream_message
------------------------------------------------------------------------------
SELECT stream_name, position, type, data FROM get_last_stream_message('mdbAccount-1');
SELECT stream_name, position, type FROM get_last_stream_message('mdbAccount-1', 'Opened');
SELECT count(*) FROM get_last_stream_message('mdbAccount-1', 'Nope');
SELECT stream_name, position, type FROM get_last_stream_message('mdbAccount');
SELECT count(*) FROM get_last_stream_message('mdbNone-1');
SELECT count(*) FROM get_last_stream_message(NULL);

------------------------------------------------------------------------------
-- One log, two APIs: a Message DB stream is an event_store stream
------------------------------------------------------------------------------
SELECT event_store.append_event('mdbAccount-1', 'Withdrawn', '{"amount": 5}', '{"by": "event_store"}');
SELECT position, type, data, metadata FROM get_last_stream_message('mdbAccount-1');
SELECT write_message('10000000-0000-4000-8000-000000000010', 'mdbAccount-1', 'Closed', '{}', NULL,
                     stream_version('mdbAccount-1'));
SELECT stream_version, event_type, event_id::text LIKE '10000000-%' AS written_by_write_message
  FROM event_store.read_stream('mdbAccount-1') ORDER BY 1 DESC LIMIT 2;
SELECT event_store.stream_version('mdbAccount-1') - 1 = stream_version('mdbAccount-1') AS versions_translate;
SELECT (SELECT count(*) FROM messages WHERE category(stream_name) = 'mdbAccount')
     = (SELECT count(*) FROM event_store.read_category('mdbAccount', 0, 100000)) AS same_category;

------------------------------------------------------------------------------
-- Views
------------------------------------------------------------------------------
SELECT global_position - :base AS gp, position, stream_name, type, data, metadata, id
  FROM messages WHERE stream_name = 'mdbAccount-2' ORDER BY global_position;
SELECT type, message_count, percent > 0 AS has_percent FROM type_summary WHERE type = 'CategoryOnly';
SELECT stream_name, message_count FROM stream_summary WHERE stream_name LIKE 'mdbAccount-1%';
SELECT stream_name, type, message_count FROM stream_type_summary WHERE stream_name = 'mdbAccount-1';
SELECT type, stream_name, message_count FROM type_stream_summary WHERE stream_name = 'mdbAccount-1';
SELECT category, type, message_count FROM category_type_summary WHERE category = 'mdbAccount';
SELECT type, category, message_count FROM type_category_summary WHERE category = 'mdbAccount';
SELECT sum(percent) BETWEEN 99.9 AND 100.1 AS percents_add_up FROM type_summary;
-- the log is append-only through the view too
SELECT pg_temp.err($$UPDATE message_store.messages SET type = 'x' WHERE stream_name = 'mdbAccount-2'$$) ~ '^ES003: event log is append-only' AS refused;

------------------------------------------------------------------------------
-- The message_store role can write and read (invoker's rights)
------------------------------------------------------------------------------
RESET search_path;
SET ROLE message_store;
SET search_path = message_store, public;
SELECT write_message('10000000-0000-4000-8000-000000000011', 'mdbRole-1', 'Written', '{}', NULL, -1);
SELECT stream_name, position, type FROM get_stream_messages('mdbRole-1');
SELECT count(*) FROM get_category_messages('mdbRole', 1, 10, NULL, 0, 2);
SELECT count(*) > 0 AS reads_views FROM type_summary;
RESET ROLE;
RESET search_path;

-- An existing message_store role is reused, not an error.
DROP EXTENSION event_store_messagedb;
SELECT count(*) AS role_kept FROM pg_roles WHERE rolname = 'message_store';
CREATE EXTENSION event_store_messagedb;
SELECT count(*) FROM message_store.get_stream_messages('mdbRole-1');

-- The upgrade from 1.0: the same reads, now with the 1.1 plans.
DROP EXTENSION event_store_messagedb;
CREATE EXTENSION event_store_messagedb VERSION '1.0';
SELECT extversion FROM pg_extension WHERE extname = 'event_store_messagedb';
SELECT count(*) AS before_update FROM message_store.get_category_messages('mdbQuiet', 1, -1, NULL, 0, 2);
ALTER EXTENSION event_store_messagedb UPDATE;
SELECT extversion FROM pg_extension WHERE extname = 'event_store_messagedb';
SELECT count(*) AS after_update FROM message_store.get_category_messages('mdbQuiet', 1, -1, NULL, 0, 2);
SELECT count(*) AS other_member FROM message_store.get_category_messages('mdbQuiet', 1, -1, NULL, 1, 2);
