-- The event id scope (1.9): 'stream' (the default: ids unique within a
-- stream) or 'store' (unique across the log, Message DB's rule, with a
-- unique event_id index on every partition).  In a database of its own, as
-- the scope is the whole store's.
SET timezone = 'UTC';
\set own_db es_id_scope_test
\set own_db_extension 'event_store_messagedb CASCADE'
\i test/sql/include/own_db.sql

-- How many of the partitions' plain event_id indexes are unique, and of how many.
CREATE FUNCTION event_id_indexes(OUT partitions bigint, OUT event_id_indexes bigint, OUT unique_ones bigint,
                                 OUT named_as_before bigint)
LANGUAGE sql AS $$
  SELECT (SELECT count(*) FROM event_store.partition_ranges()),
         count(*), count(*) FILTER (WHERE i.indisunique),
         count(*) FILTER (WHERE ic.relname = pc.relname || '_event_id_idx')
    FROM event_store.partition_ranges() r
    JOIN pg_index i ON i.indrelid = r.partition
    JOIN pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_class pc ON pc.oid = r.partition
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
   WHERE i.indnatts = 1 AND a.attname = 'event_id'
$$;

SELECT event_store.event_id_scope();
SELECT * FROM event_id_indexes();

-- Bad scopes: a clear error, nothing changed.
SELECT event_store.set_event_id_scope('global');
SELECT event_store.set_event_id_scope(NULL);
SELECT event_store.event_id_scope(), (SELECT count(*) FROM event_store.settings WHERE name = 'event_id_scope') AS setting_rows;

-- 1-second partitions, none made ahead, so that writes a second apart go
-- to partitions of their own.
SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('DROP TABLE %s', part);
    END LOOP;
END
$$;
SELECT event_store.append_event('scope-1', 'Opened', '{"n": 1}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
SELECT * FROM event_id_indexes();
SELECT event_store.set_event_id_scope('store');
SELECT event_store.event_id_scope();
SELECT * FROM event_id_indexes();
-- again: nothing to rebuild
SELECT event_store.set_event_id_scope('store');
SELECT * FROM event_id_indexes();

-- event_store.append: an id of another stream is refused (ES004), nothing written.
SELECT count(*) AS events_before FROM event_store.events \gset
SELECT event_store.append_event('scope-2', 'Opened', '{}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
SELECT event_store.append('scope-2', ARRAY[event_store.event('Opened', '{}', NULL, 'a0000000-0000-4000-8000-000000000002'),
                                           event_store.event('Opened', '{}', NULL, 'a0000000-0000-4000-8000-000000000001')]);
SELECT count(*) = :events_before AS nothing_written, (SELECT count(*) FROM event_store.streams WHERE stream_id = 'scope-2') AS scope_2_rows
  FROM event_store.events;
-- An exact retry in its own stream still succeeds without writing; other content is still ES004.
SELECT event_store.append_event('scope-1', 'Opened', '{"n": 1}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
SELECT event_store.append_event('scope-1', 'Opened', '{"n": 2}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
SELECT count(*) = :events_before AS nothing_written FROM event_store.events;
-- New ids go in as before.
SELECT event_store.append_event('scope-2', 'Opened', '{}', NULL, NULL, 'a0000000-0000-4000-8000-000000000002');
SELECT event_store.append_event('scope-2', 'Noted', '{}');

-- message_store.write_message: Message DB's error for an id already in the
-- partition it writes to (now found by that partition's unique index), in
-- another stream and in its own; nothing written, and one global position
-- spent, as Message DB's failed insert spends one.
SET search_path = message_store, public;
SELECT write_message('b0000000-0000-4000-8000-000000000001', 'scopeAccount-1', 'Opened', '{}');
SELECT last_value AS seq_before FROM event_store.global_position_seq \gset
SELECT count(*) AS events_before FROM event_store.events \gset
SELECT write_message('b0000000-0000-4000-8000-000000000001', 'scopeAccount-2', 'Opened', '{}');
SELECT write_message('b0000000-0000-4000-8000-000000000001', 'scopeAccount-1', 'Opened', '{}');
SELECT write_message('a0000000-0000-4000-8000-000000000002', 'scopeAccount-1', 'Opened', '{}');
SELECT count(*) = :events_before AS nothing_written,
       (SELECT last_value FROM event_store.global_position_seq) - :seq_before AS positions_spent,
       (SELECT count(*) FROM event_store.streams WHERE stream_id = 'scopeAccount-2') AS scope_account_2_rows
  FROM event_store.events;
-- A wrong expected version is still reported first, as Message DB does.
SELECT write_message('b0000000-0000-4000-8000-000000000001', 'scopeAccount-1', 'Opened', '{}', NULL, 5);
SELECT stream_version('scopeAccount-1');
RESET search_path;

-- An id in an earlier partition is still found: an event recorded an hour
-- ago (restored) sits in a partition of its own (made with a unique index),
-- the next write goes to the current one, and the earlier ones are probed.
\i test/sql/include/restored.sql
SELECT pg_temp.restore_event('scopeAccount-0', 'Opened', '{}', now() - interval '1 hour',
                             'b0000000-0000-4000-8000-000000000004') AS restored_version;
SELECT message_store.write_message('b0000000-0000-4000-8000-000000000002', 'scopeAccount-3', 'Opened', '{}');
SELECT count(DISTINCT tableoid) >= 2 AS several_partitions FROM event_store.events WHERE stream_id LIKE 'scopeAccount-%';
SELECT message_store.write_message('b0000000-0000-4000-8000-000000000004', 'scopeAccount-3', 'Opened', '{}');
SELECT message_store.write_message('b0000000-0000-4000-8000-000000000001', 'scopeAccount-3', 'Opened', '{}');
SELECT event_store.append_event('scope-3', 'Opened', '{}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
-- ... and so are partitions made ahead that hold rows (restored, recorded
-- an hour from now): nothing written.
-- (one transaction: both statements see the same now(), whatever second
-- boundary falls between them on a loaded machine)
BEGIN;
SELECT event_store._create_partition_for(now() + interval '1 hour') IS NOT NULL AS made_ahead;
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                event_id, recorded_at, occurred_at, transaction_id)
VALUES (1000000, 'restoredAhead-1', 1, 'Restored', '{}', 'b0000000-0000-4000-8000-000000000003',
        now() + interval '1 hour', now(), pg_current_xact_id());
COMMIT;
SELECT message_store.write_message('b0000000-0000-4000-8000-000000000003', 'scopeAccount-4', 'Opened', '{}');
SELECT count(*) AS written FROM event_store.events WHERE stream_id = 'scopeAccount-4';
SELECT partitions >= 2 AS several_partitions, partitions = event_id_indexes AS one_each,
       partitions = unique_ones AS all_unique, partitions = named_as_before AS names_kept
  FROM event_id_indexes();

-- Back to 'stream': indexes not unique again, and an id may be reused in another stream.
SELECT event_store.set_event_id_scope('stream');
SELECT event_store.event_id_scope(), (SELECT count(*) FROM event_store.settings WHERE name = 'event_id_scope') AS setting_rows;
SELECT partitions = event_id_indexes AS one_each, unique_ones, partitions = named_as_before AS names_kept FROM event_id_indexes();
SELECT event_store.set_partition_interval('1 month');
-- Under 'stream' one id may be in two streams ...
SELECT event_store.append_event('scope-4', 'Opened', '{}', NULL, NULL, 'a0000000-0000-4000-8000-000000000001');
-- ... and then 'store' is refused (the log is append-only), nothing changed.
SELECT event_store.set_event_id_scope('store');
SELECT event_store.event_id_scope(), (SELECT count(*) FROM event_store.settings WHERE name = 'event_id_scope') AS setting_rows;
SELECT partitions = event_id_indexes AS one_each, unique_ones FROM event_id_indexes();

-- Only admins change the scope.
CREATE ROLE es_scope_reader;
GRANT event_store_reader TO es_scope_reader;
SET ROLE es_scope_reader;
SELECT event_store.event_id_scope();
SELECT event_store.set_event_id_scope('store');
RESET ROLE;
DROP ROLE es_scope_reader;

\c :orig_db
DROP DATABASE es_id_scope_test;
