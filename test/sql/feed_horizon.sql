-- feed_horizon() reads each open partition's highest position with a
-- statement kept per partition and session: rows written around append
-- (pg_restore, logical replication apply; here a superuser's INSERT) move
-- the horizon on the next call, also after the partition is renamed, and
-- for a reader that holds no privilege on the partitions.  In a database
-- of its own.
\set own_db es_feed_horizon_test
\i test/sql/include/own_db.sql
SELECT event_store.feed_mode();

SELECT count(event_store.append_event('horizon-' || i, 'Tick', '{}')) FROM generate_series(1, 5) i;
SELECT event_store.feed_horizon() AS base \gset
SELECT :base = (SELECT max(global_position) FROM event_store.events) AS horizon_is_last_position;
-- repeated calls, the statement kept after the first
SELECT count(DISTINCT event_store.feed_horizon()) = 1 AS stable FROM generate_series(1, 3);

CREATE FUNCTION pg_temp.insert_around_append(pos bigint) RETURNS void LANGUAGE sql AS $$
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    event_id, recorded_at, occurred_at, transaction_id)
    VALUES (pos, 'restored-' || pos, 1, 'Restored', '{}', gen_random_uuid(), now(), now(), pg_current_xact_id())
$$;

-- A row written around append moves the horizon on the next call.
SELECT pg_temp.insert_around_append(:base + 100);
SELECT event_store.feed_horizon() - :base AS moved_by;

-- A rolled-back one does not.
BEGIN;
SELECT pg_temp.insert_around_append(:base + 150);
ROLLBACK;
SELECT event_store.feed_horizon() - :base AS moved_by;

-- The open partition renamed: the horizon still reads it.
SELECT partition AS open_partition FROM event_store.partition_info
 WHERE NOT archived AND range_start <= now() AND now() < range_end \gset
ALTER TABLE :open_partition RENAME TO events_renamed_for_test;
SELECT event_store.feed_horizon() - :base AS after_rename;
SELECT pg_temp.insert_around_append(:base + 200);
SELECT event_store.feed_horizon() - :base AS moved_by;

-- A reader without privileges on the partitions gets the same horizon.
CREATE ROLE es_horizon_reader_test;
GRANT event_store_reader TO es_horizon_reader_test;
SET ROLE es_horizon_reader_test;
SELECT event_store.feed_horizon() - :base AS reader_sees;
SELECT count(*) FROM event_store.events_renamed_for_test;
RESET ROLE;
DROP ROLE es_horizon_reader_test;

\c :orig_db
DROP DATABASE es_feed_horizon_test;
