-- Routes around append-only (issue 25, items 4-7 and 9), each refused with
-- ES003 and nothing changed: column surgery, UNLOGGED, removal by DROP
-- EXTENSION / DROP OWNED / DROP ACCESS METHOD, partitions that are not
-- plain logged event_store_log tables, and the internal retention entry
-- points called directly.  In a database of its own (DROP EXTENSION is
-- tried).  Partition names carry the date: outputs mask them.
\set own_db es_routes_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

-- try(): run a command, report ok or SQLSTATE and message (names masked).
CREATE FUNCTION pg_temp.try(cmd text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE cmd;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || regexp_replace(SQLERRM, 'events_p[0-9_]+', 'events_pN', 'g');
END
$$;

-- The state that must not change: events, their columns, defaults,
-- constraints, persistence and access method of every event table.
CREATE FUNCTION pg_temp.log_state() RETURNS text LANGUAGE sql AS $$
SELECT md5(concat_ws('|',
    (SELECT count(*) FROM event_store.events),
    (SELECT string_agg(to_jsonb(e)::text, ',' ORDER BY global_position) FROM event_store.events e),
    (SELECT string_agg(format('%s.%s:%s:%s:%s:%s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                              a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attgenerated::text || a.attidentity::text), ','
                       ORDER BY c.relname, a.attnum)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
      WHERE n.nspname IN ('event_store', 'event_store_archive') AND c.relname LIKE 'events%' AND c.relkind IN ('r', 'p')),
    (SELECT string_agg(format('%s:%s:%s:%s', c.relname, c.relpersistence, c.relkind, am.amname), ',' ORDER BY c.relname)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace LEFT JOIN pg_am am ON am.oid = c.relam
      WHERE n.nspname IN ('event_store', 'event_store_archive') AND c.relkind IN ('r', 'p', 'f')),
    (SELECT string_agg(format('%s:%s', t.tgname, t.tgenabled), ',' ORDER BY t.tgrelid::regclass::text, t.tgname)
       FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname IN ('event_store', 'event_store_archive') AND NOT t.tgisinternal),
    (SELECT string_agg(conname || ':' || pg_get_constraintdef(oid), ',' ORDER BY conrelid::regclass::text, conname)
       FROM pg_constraint WHERE connamespace = 'event_store'::regnamespace AND conrelid <> 0)))
$$;

-- First an event recorded three hours ago (restored) in a one-second
-- partition, archived and dropped under item 9 below; then the log's
-- ordinary monthly partitions.
SELECT event_store.set_partition_interval('1 second');
SELECT event_store.set_premake_partitions(0);
DO $$
DECLARE
    p regclass;
BEGIN
    FOR p IN SELECT partition FROM event_store.partition_info LOOP
        EXECUTE format('ALTER TABLE event_store.events DETACH PARTITION %s', p);
        EXECUTE format('DROP TABLE %s', p);
    END LOOP;
END
$$;
\i test/sql/include/restored.sql
SELECT pg_temp.restore_event('routes-old', 'Old', '{}', now() - interval '3 hours') AS restored_old;
SELECT relname AS old_name
  FROM pg_class WHERE oid = (SELECT tableoid FROM event_store.events WHERE stream_id = 'routes-old') \gset
SELECT event_store.set_partition_interval('1 month');

SELECT event_store.append('routes-1', ARRAY[event_store.event('A', '{"v": 1}'), event_store.event('B', '{"v": 2}')]);
SELECT format('event_store.%I', relname) AS part
  FROM pg_class WHERE oid = (SELECT tableoid FROM event_store.events WHERE stream_id = 'routes-1' LIMIT 1) \gset
SELECT pg_temp.log_state() AS before \gset
SELECT md5(string_agg(to_jsonb(e)::text, ',' ORDER BY global_position)) AS events_digest
  FROM event_store.events e \gset

------------------------------------------------------------------------------
-- Item 4: column surgery on the parent, a partition and the archive parent.
------------------------------------------------------------------------------
SELECT t.cmd, pg_temp.try(format(t.cmd, r.rel)) AS result
  FROM (VALUES ('event_store.events'), (:'part'), ('event_store_archive.events')) r(rel),
       (VALUES ('ALTER TABLE %s DROP COLUMN data'),
               ('ALTER TABLE %s DROP COLUMN metadata CASCADE'),
               ('ALTER TABLE %s RENAME COLUMN data TO original_data'),
               ('ALTER TABLE %s ADD COLUMN forged jsonb DEFAULT ''{"forged": true}'''),
               ('ALTER TABLE %s ADD COLUMN forged2 int'),
               ('ALTER TABLE %s ADD COLUMN forged3 int GENERATED ALWAYS AS (1) STORED'),
               ('ALTER TABLE %s ALTER COLUMN data DROP NOT NULL'),
               ('ALTER TABLE %s ALTER COLUMN data DROP EXPRESSION IF EXISTS'),
               ('ALTER TABLE %s ALTER COLUMN data TYPE text'),
               ('ALTER TABLE %s DROP CONSTRAINT events_stream_version_check'),
               ('ALTER TABLE %s SET ACCESS METHOD heap'),
               ('ALTER TABLE %s INHERIT event_store.streams'),
               ('ALTER TABLE %s DISABLE TRIGGER ALL'),
               ('ALTER TABLE %s DISABLE TRIGGER USER'),
               ('ALTER TABLE %s ENABLE TRIGGER ALL'),
               ('ALTER TABLE %s DISABLE TRIGGER events_no_truncate'),
               ('ALTER TABLE %s ENABLE TRIGGER events_no_truncate'),
               ('ALTER TABLE %s ENABLE REPLICA TRIGGER events_no_truncate')) t(cmd)
 ORDER BY r.rel <> 'event_store.events', r.rel, t.cmd;
-- The same as ONLY, and several subcommands in one statement.
SELECT pg_temp.try('ALTER TABLE ONLY event_store.events DROP COLUMN data');
SELECT pg_temp.try('ALTER TABLE event_store.events ALTER COLUMN data SET STATISTICS 200, DROP COLUMN metadata');
SELECT pg_temp.log_state() = :'before' AS unchanged_after_column_surgery;

-- A non-superuser owner of the log fares no better (RENAME then ADD).
CREATE ROLE es_routes_owner;
ALTER TABLE event_store.events OWNER TO es_routes_owner;
GRANT USAGE, CREATE ON SCHEMA event_store TO es_routes_owner;
SET ROLE es_routes_owner;
SELECT pg_temp.try('ALTER TABLE event_store.events RENAME COLUMN data TO old_data');
SELECT pg_temp.try('ALTER TABLE event_store.events ADD COLUMN data jsonb DEFAULT ''{}''');
SELECT pg_temp.try('ALTER TABLE event_store.events DROP COLUMN data');
RESET ROLE;
ALTER TABLE event_store.events OWNER TO CURRENT_USER;
SELECT pg_temp.log_state() = :'before' AS unchanged_after_owner_surgery;

-- Renaming the log's parent is refused, and so (since the issue 25
-- re-probe, test/sql/attack_regressions.sql) is renaming its schema: the
-- guards find streams and the position sequence by schema and name.
SELECT pg_temp.try('ALTER TABLE event_store.events RENAME TO events_old');
SELECT pg_temp.try('ALTER SCHEMA event_store RENAME TO es_renamed') AS rename_schema;

-- What leaves stored events as they are still works.
SELECT t.cmd, pg_temp.try(format(t.cmd, r.rel)) AS result
  FROM (VALUES ('event_store.events'), (:'part')) r(rel),
       (VALUES ('ALTER TABLE %s ALTER COLUMN data SET STATISTICS 200'),
               ('ALTER TABLE %s ALTER COLUMN data SET STORAGE EXTENDED'),
               ('ALTER TABLE %s ADD CONSTRAINT routes_check CHECK (stream_version < 1000000000) NOT VALID'),
               ('ALTER TABLE %s VALIDATE CONSTRAINT routes_check'),
               ('ALTER TABLE %s ALTER COLUMN data SET NOT NULL'),
               ('ALTER TABLE %s ALTER COLUMN metadata SET DEFAULT ''{"new": "rows only"}'''),
               ('ALTER TABLE %s ENABLE ALWAYS TRIGGER events_no_truncate')) t(cmd)
 WHERE r.rel = 'event_store.events' OR t.cmd NOT LIKE '%routes_check%'
 ORDER BY r.rel <> 'event_store.events', t.cmd;
SELECT pg_temp.try(format('ALTER TABLE %s SET (fillfactor = 90)', :'part')) AS set_fillfactor;
SELECT pg_temp.try(format('ALTER TABLE %s RESET (fillfactor)', :'part')) AS reset_fillfactor;
SELECT pg_temp.try(format('ALTER TABLE %s SET LOGGED', :'part')) AS set_logged;
-- (a default reaches only rows inserted later: stored events are as they were)
SELECT md5(string_agg(to_jsonb(e)::text, ',' ORDER BY global_position)) = :'events_digest' AS events_unchanged_by_defaults
  FROM event_store.events e;
ALTER TABLE event_store.events ALTER COLUMN metadata DROP DEFAULT;
-- (the constraint added above is a new baseline)
SELECT pg_temp.log_state() AS before \gset

------------------------------------------------------------------------------
-- Item 5: UNLOGGED, on a partition, the parent or a new partition.
------------------------------------------------------------------------------
SELECT pg_temp.try(format('ALTER TABLE %s SET UNLOGGED', :'part')) AS partition_unlogged;
SELECT pg_temp.try('ALTER TABLE event_store.events SET UNLOGGED') AS parent_unlogged;
SELECT pg_temp.try('ALTER TABLE event_store_archive.events SET UNLOGGED') AS archive_unlogged;
SELECT pg_temp.try($$CREATE UNLOGGED TABLE event_store.routes_u PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') USING event_store_log$$) AS create_unlogged_partition;
-- The access method itself refuses unlogged storage: no unlogged table of
-- it exists to be attached.
SELECT pg_temp.try($$CREATE UNLOGGED TABLE event_store.routes_u2 (LIKE event_store.events) USING event_store_log$$) AS create_unlogged_table;
SET default_table_access_method = event_store_log;
SELECT pg_temp.try($$CREATE UNLOGGED TABLE event_store.routes_u3 AS SELECT * FROM event_store.events$$) AS create_unlogged_as;
RESET default_table_access_method;
-- An unlogged heap table is no partition either.
CREATE UNLOGGED TABLE event_store.routes_u4 (LIKE event_store.events);
SELECT pg_temp.try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.routes_u4
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')$$) AS attach_unlogged;
DROP TABLE event_store.routes_u4;
SELECT pg_temp.log_state() = :'before' AS unchanged_after_unlogged;

------------------------------------------------------------------------------
-- Item 7: partitions that are not plain, logged event_store_log tables.
------------------------------------------------------------------------------
CREATE TABLE event_store.routes_heap (LIKE event_store.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
SELECT pg_temp.try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.routes_heap
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')$$) AS attach_heap;
SELECT pg_temp.try($$ALTER TABLE event_store_archive.events ATTACH PARTITION event_store.routes_heap
                     FOR VALUES FROM ('1990-01-01') TO ('1990-02-01')$$) AS attach_heap_to_archive;
SELECT pg_temp.try($$CREATE TABLE event_store.routes_p1 PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')$$) AS create_partition_default_am;
SELECT pg_temp.try($$CREATE TABLE event_store.routes_p2 PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') USING heap$$) AS create_partition_heap;
SET default_table_access_method = event_store_log;
SELECT pg_temp.try($$CREATE TABLE event_store.routes_p3 PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') USING heap$$) AS create_partition_heap_default_log;
SELECT pg_temp.try($$CREATE TABLE event_store.routes_p4 PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') PARTITION BY RANGE (recorded_at)$$) AS create_subpartitioned;
RESET default_table_access_method;
CREATE TABLE event_store.routes_sub (LIKE event_store.events) PARTITION BY RANGE (recorded_at);
SELECT pg_temp.try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.routes_sub
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')$$) AS attach_partitioned;
CREATE FOREIGN DATA WRAPPER routes_fdw;
CREATE SERVER routes_server FOREIGN DATA WRAPPER routes_fdw;
SELECT pg_temp.try($$CREATE FOREIGN TABLE event_store.routes_f1 PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') SERVER routes_server$$) AS create_foreign_partition;
CREATE FOREIGN TABLE event_store.routes_f2 (
    global_position bigint NOT NULL, stream_id text NOT NULL, stream_version bigint NOT NULL,
    event_type text NOT NULL, data jsonb NOT NULL, metadata jsonb, event_id uuid NOT NULL,
    recorded_at timestamptz NOT NULL, occurred_at timestamptz NOT NULL, transaction_id xid8 NOT NULL,
    tags text[]) SERVER routes_server;
SELECT pg_temp.try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.routes_f2
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01')$$) AS attach_foreign;
DROP TABLE event_store.routes_heap, event_store.routes_sub;
DROP FOREIGN TABLE event_store.routes_f2;
DROP SERVER routes_server;
DROP FOREIGN DATA WRAPPER routes_fdw;
SELECT pg_temp.log_state() = :'before' AS unchanged_after_unfit_partitions;
-- A proper partition may still be created (and, empty, dropped again).
SELECT pg_temp.try($$CREATE TABLE event_store.routes_ok PARTITION OF event_store.events
                     FOR VALUES FROM ('2300-01-01') TO ('2300-02-01') USING event_store_log$$) AS create_log_partition;
SELECT pg_temp.try('DROP TABLE event_store.routes_ok') AS drop_empty_partition;
-- The issue's example: the empty current partition dropped, a heap table
-- attached in its place.  Here with an empty partition of a later month.
SELECT event_store._create_partition_for('2299-06-15') AS later_part \gset
SELECT pg_temp.try(format('DROP TABLE %s', :'later_part')) AS drop_empty_later;
CREATE TABLE event_store.routes_heap (LIKE event_store.events INCLUDING DEFAULTS INCLUDING CONSTRAINTS) USING heap;
SELECT pg_temp.try($$ALTER TABLE event_store.events ATTACH PARTITION event_store.routes_heap
                     FOR VALUES FROM ('2299-06-01') TO ('2299-07-01')$$) AS attach_heap_in_its_place;
DROP TABLE event_store.routes_heap;
SELECT pg_temp.log_state() = :'before' AS unchanged_after_replacement;

------------------------------------------------------------------------------
-- Item 6: removal routes other than DROP TABLE / DETACH.
------------------------------------------------------------------------------
SELECT pg_temp.try('DROP EXTENSION event_store') AS drop_extension;
SELECT pg_temp.try('DROP EXTENSION event_store CASCADE') AS drop_extension_cascade;
SELECT pg_temp.try('DROP EXTENSION IF EXISTS event_store, plpgsql CASCADE') AS drop_extension_list;
SELECT pg_temp.try('ALTER EXTENSION event_store DROP ACCESS METHOD event_store_log') AS alter_extension_drop_am;
SELECT pg_temp.try('ALTER EXTENSION event_store DROP TABLE event_store.events') AS alter_extension_drop_table;
SELECT pg_temp.try('ALTER EXTENSION event_store DROP FUNCTION event_store._guard_ddl()') AS alter_extension_drop_guard;
SELECT pg_temp.try('DROP ACCESS METHOD event_store_log CASCADE') AS drop_access_method;
SELECT pg_temp.try('DROP SCHEMA event_store CASCADE') AS drop_schema;
-- DROP OWNED BY the partition's owner
CREATE ROLE es_routes_partowner;
SELECT pg_temp.try(format('ALTER TABLE %s OWNER TO es_routes_partowner', :'part')) AS give_partition;
SELECT pg_temp.try('DROP OWNED BY es_routes_partowner') AS drop_owned;
SELECT pg_temp.try('DROP OWNED BY es_routes_partowner CASCADE') AS drop_owned_cascade;
SELECT pg_temp.try(format('ALTER TABLE %s OWNER TO CURRENT_USER', :'part')) AS take_back;
DROP ROLE es_routes_partowner;
-- a detached partition (once sanctioned) stays undroppable too: see item 9
SELECT pg_temp.log_state() = :'before' AS unchanged_after_removal_routes;

------------------------------------------------------------------------------
-- Item 9: the internal retention entry points, called directly.
------------------------------------------------------------------------------
SELECT pg_temp.try(format('SELECT event_store._detach_partition(''event_store.events'', %L)', :'part')) AS detach_current;
SELECT event_store.set_retention('100 years', 'archive');
SELECT pg_temp.try(format('SELECT event_store._detach_partition(''event_store.events'', %L)', :'part')) AS detach_not_due;
SELECT pg_temp.try(format('SELECT event_store._archive_partition(%L)', :'part')) AS archive_not_due;
SELECT event_store.set_retention(NULL, 'none');
SELECT pg_temp.try(format('SELECT event_store._drop_archived_partition(%L)', :'part')) AS drop_attached;
SELECT pg_temp.log_state() = :'before' AS unchanged_after_internal_calls;
SELECT count(*) AS audit_records FROM event_store.events WHERE stream_id = '$audit-retention';

-- An archived partition dropped through the internal function directly is
-- audited exactly like drop_archived_partition() (the one-second partition
-- of 'routes-old', made at the start, due under a retention of two hours).
SELECT event_store.set_retention('2 hours', 'archive');
SELECT count(*) >= 1 AS archived FROM event_store.apply_retention();
SELECT event_store.set_retention(NULL, 'none');
SELECT event_store._drop_archived_partition(format('event_store_archive.%I', :'old_name')::regclass) AS dropped_events;
SELECT event_type, data->'events' AS events, data->>'partition' = :'old_name' AS names_partition,
       (data->>'range_end')::timestamptz > (data->>'range_start')::timestamptz AS has_range
  FROM event_store.read_stream('$audit-retention');
SELECT pg_temp.try(format('SELECT event_store._drop_archived_partition(%L)', :'part')) AS drop_current_again;

------------------------------------------------------------------------------
-- Dropping the extension deliberately: SET event_store.allow_drop_with_events.
------------------------------------------------------------------------------
BEGIN;
SET LOCAL event_store.allow_drop_with_events = on;
DROP EXTENSION event_store CASCADE;
SELECT count(*) AS log_tables_left FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'event_store_log';
ROLLBACK;
SELECT count(*) > 0 AS events_back_after_rollback FROM event_store.events;
-- the confirmation is a superuser's
CREATE ROLE es_routes_plain;
SET ROLE es_routes_plain;
SELECT pg_temp.try('SET event_store.allow_drop_with_events = on') AS plain_role_sets_confirmation;
RESET ROLE;
DROP ROLE es_routes_plain;

\c :orig_db
SET client_min_messages = warning;
DROP DATABASE es_routes_test;
DROP ROLE es_routes_owner;
RESET client_min_messages;
