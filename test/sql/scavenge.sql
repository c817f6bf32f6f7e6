-- Issue 28 part 4: event_store.scavenge().  Closed partitions are
-- rewritten without the events deletions, truncations, max_age and
-- max_count hide; survivors keep every column; the partition keeps its
-- name, bound, access method, indexes, guard triggers and privileges; one
-- audit event per partition rewritten.  Bad input is refused with its
-- SQLSTATE and writes nothing.  In a database of its own.
SELECT current_database() AS orig_db \gset
CREATE DATABASE es_scavenge_test;
\c es_scavenge_test
SET client_min_messages = warning;
CREATE EXTENSION event_store;
RESET client_min_messages;
\set VERBOSITY terse

CREATE FUNCTION public.try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || regexp_replace(msg, 'events_p[0-9_]+', 'events_pN', 'g');
END
$$;

-- Everything a refused call must leave alone: every stored event (attached
-- and archived, every column), the partitions' storage, the audit streams.
CREATE FUNCTION public.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM event_store.events) || ' events, ' ||
           (SELECT md5(string_agg(e::text, ',' ORDER BY e.global_position)) FROM event_store.events e) || ', archive ' ||
           (SELECT md5(coalesce(string_agg(e::text, ',' ORDER BY e.global_position), '')) FROM event_store_archive.events e) || ', storage ' ||
           (SELECT md5(string_agg(c.relname || ':' || c.relfilenode, ',' ORDER BY c.relname))
              FROM pg_class c JOIN pg_am am ON am.oid = c.relam WHERE am.amname = 'event_store_log') || ', ' ||
           (SELECT count(*) FROM event_store.events WHERE stream_id LIKE '$audit%') || ' audit events'
$$;

-- An event is hidden from reads: the check the feeds make.
CREATE FUNCTION public.hidden(e event_store.events) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                     AND h.truncate_before IS NOT NULL
                     AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                          OR e.recorded_at < now() - h.max_age))
$$;

CREATE ROLE es_sc_reader IN ROLE event_store_reader;
CREATE ROLE es_sc_writer IN ROLE event_store_writer;
CREATE ROLE es_sc_admin IN ROLE event_store_admin;

-- Partitions for December 2019 to February 2020 (closed), then events
-- restored into them as pg_restore would (the owner inserts rows): ten
-- streams of ten events in January, 'feb-*' streams in February, one
-- stream in December.
SELECT event_store.ensure_partitions('2019-12-01', '2020-03-01') >= 3 AS made;
SELECT partition AS dec FROM event_store.partition_ranges() WHERE '2019-12-15' >= range_start AND '2019-12-15' < range_end \gset
SELECT partition AS jan FROM event_store.partition_ranges() WHERE '2020-01-15' >= range_start AND '2020-01-15' < range_end \gset
SELECT partition AS feb FROM event_store.partition_ranges() WHERE '2020-02-15' >= range_start AND '2020-02-15' < range_end \gset
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data, metadata,
                                event_id, recorded_at, occurred_at, transaction_id, tags)
SELECT nextval('event_store.global_position_seq'), s, v, 'Tick', jsonb_build_object('s', s, 'v', v),
       jsonb_build_object('by', 'restore'), gen_random_uuid(),
       t + v * interval '1 minute', t - interval '1 day', pg_current_xact_id(),
       CASE WHEN v % 3 = 0 THEN ARRAY['tag-' || v] END
  FROM (VALUES ('old-1', '2019-12-10'::timestamptz)) o(s, t), generate_series(1, 3) v
UNION ALL
SELECT nextval('event_store.global_position_seq'), 'acct-' || s, v, 'Tick', jsonb_build_object('s', s, 'v', v),
       NULL, gen_random_uuid(),
       '2020-01-10'::timestamptz + (s * 10 + v) * interval '1 minute', '2020-01-09', pg_current_xact_id(),
       CASE WHEN v % 3 = 0 THEN ARRAY['tag-' || v] END
  FROM generate_series(1, 10) s, generate_series(1, 10) v
UNION ALL
SELECT nextval('event_store.global_position_seq'), 'feb-' || s, v, 'Tock', jsonb_build_object('s', s, 'v', v),
       NULL, gen_random_uuid(),
       '2020-02-10'::timestamptz + (s * 10 + v) * interval '1 minute', '2020-02-09', pg_current_xact_id(), NULL
  FROM generate_series(1, 3) s, generate_series(1, 4) v;
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, split_part(stream_id, '-', 1), max(stream_version), min(recorded_at), max(recorded_at),
       min(global_position), max(global_position)
  FROM event_store.events GROUP BY stream_id;
-- and events appended now, into the current partition
SELECT event_store.append_event('acct-1', 'Tick', '{"now": 1}') IS NOT NULL AS appended;

-- December goes to the archive; January and February stay in the log.
SELECT event_store.set_retention('1 year', 'archive');
SELECT count(*) AS archived FROM event_store.apply_retention();
SELECT event_store.set_retention(NULL, 'none');
SELECT event_store.restore_partition(split_part(:'jan', '.', 2)) IS NOT NULL AS jan_restored;
SELECT event_store.restore_partition(split_part(:'feb', '.', 2)) IS NOT NULL AS feb_restored;
SELECT partition AS cur FROM event_store.partition_ranges() WHERE now() >= range_start AND now() < range_end \gset
SELECT partition AS next FROM event_store.partition_ranges() WHERE range_start >= now() ORDER BY range_start LIMIT 1 \gset
SELECT p.partition AS archived_part FROM event_store.partition_info p WHERE p.archived \gset

-- 1. No stream hides any event: nothing to do, nothing rewritten.
SELECT public.fingerprint() AS fp0 \gset
SELECT event_store.scavenge() AS removed_nothing_hidden;
SELECT event_store.scavenge(:'jan') AS removed_jan_nothing_hidden;
SELECT public.fingerprint() = :'fp0' AS nothing_written;

-- 2. The lifecycle: soft delete, hard delete, truncate, max_count, max_age,
-- and a stream recreated after a soft delete.
SELECT event_store.delete_stream('acct-1');          -- its event appended now is hidden too (same stream)
SELECT event_store.append_event('acct-1', 'Recreated', '{}') IS NOT NULL AS recreated;
SELECT event_store.delete_stream('acct-2', hard => true, reason => 'erasure request');
SELECT event_store.truncate_stream('acct-3', 5);
SELECT event_store.set_stream_metadata('acct-4', '{"max_count": 3}');
SELECT event_store.set_stream_metadata('acct-5', '{"max_age": "1 year"}');
SELECT event_store.delete_stream('old-1');            -- archived: stays in the archive
SELECT count(*) AS hidden_in_jan FROM ONLY :jan e WHERE public.hidden(e);

-- What readers see, and what January must hold afterwards.
CREATE TABLE public.seen_before AS
SELECT 'all' AS path, e::text AS row FROM event_store.read_all(0, 100000) e WHERE e.stream_id NOT LIKE '$audit%'
UNION ALL SELECT 'category', e::text FROM event_store.read_category('acct', 0, 100000) e
UNION ALL SELECT 'stream ' || s, e::text FROM generate_series(1, 10) s, event_store.read_stream('acct-' || s) e
UNION ALL SELECT 'tags', e::text FROM event_store.read_by_tags(ARRAY['tag-6']) e;
CREATE TABLE public.jan_survivors AS SELECT e.* FROM ONLY :jan e WHERE NOT public.hidden(e);
CREATE TABLE public.jan_shape AS
SELECT c.relname, c.relam, c.relpersistence, c.relacl::text AS acl, pg_get_expr(c.relpartbound, c.oid) AS bound,
       (SELECT string_agg(ic.relname || ' ' || regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', ''), '; ' ORDER BY ic.relname)
          FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid) AS indexes,
       (SELECT string_agg(t.tgname || ' ' || t.tgenabled::text || ' ' || t.tgtype, '; ' ORDER BY t.tgname)
          FROM pg_trigger t WHERE t.tgrelid = c.oid) AS triggers,
       c.relfilenode
  FROM pg_class c WHERE c.oid = :'jan'::regclass;

-- 3. Bad input: each refused with its SQLSTATE, nothing written.
CREATE TABLE public.plain_table (LIKE event_store.events);
CREATE TABLE event_store.loose_log_table (LIKE event_store.events) USING event_store_log;
SELECT public.fingerprint() AS fp1 \gset
SELECT try($$SELECT event_store.scavenge('$$ || :'cur' || $$')$$) AS current_partition;
SELECT try($$SELECT event_store.scavenge('$$ || :'next' || $$')$$) AS future_partition;
SELECT try($$SELECT event_store.scavenge('$$ || :'archived_part' || $$')$$) AS archived_partition;
SELECT try($$SELECT event_store.scavenge('event_store.events')$$) AS the_parent;
SELECT try($$SELECT event_store.scavenge('event_store_archive.events')$$) AS the_archive_parent;
SELECT try($$SELECT event_store.scavenge('event_store.streams')$$) AS streams_table;
SELECT try($$SELECT event_store.scavenge('public.plain_table')$$) AS plain_table;
SELECT try($$SELECT event_store.scavenge('event_store.loose_log_table')$$) AS detached_log_table;
SELECT try($$SELECT event_store.scavenge('event_store.events_position_seq_nope')$$) AS no_such_relation;
SELECT try($$SELECT event_store.scavenge(0)$$) AS oid_zero;
SET ROLE es_sc_writer;
SELECT try($$SELECT event_store.scavenge()$$) AS writer;
SELECT try($$SELECT event_store.scavenge('$$ || :'jan' || $$')$$) AS writer_jan;
SET ROLE es_sc_reader;
SELECT try($$SELECT event_store.scavenge()$$) AS reader;
RESET ROLE;
-- the internal swap statements are still refused outside scavenge()
SELECT try($$ALTER TABLE event_store.events DETACH PARTITION $$ || :'jan') AS detach_by_hand;
SELECT try($$DROP TABLE $$ || :'jan') AS drop_by_hand;
SELECT public.fingerprint() = :'fp1' AS nothing_written;

-- 4. scavenge(January), as an admin.
SET ROLE es_sc_admin;
SELECT event_store.scavenge(:'jan') AS removed_jan;
RESET ROLE;

-- The survivors, every column as it was (positions, ids, times, xid, tags) ...
SELECT count(*) AS jan_rows, (SELECT count(*) FROM public.jan_survivors) AS expected FROM ONLY :jan;
SELECT count(*) AS missing FROM (SELECT * FROM public.jan_survivors EXCEPT ALL SELECT * FROM ONLY :jan) d;
SELECT count(*) AS extra FROM (SELECT * FROM ONLY :jan EXCEPT ALL SELECT * FROM public.jan_survivors) d;
SELECT bool_and(s.global_position = j.global_position AND s.event_id = j.event_id
                AND s.data::text = j.data::text AND s.recorded_at = j.recorded_at
                AND s.transaction_id = j.transaction_id AND s.tags IS NOT DISTINCT FROM j.tags) AS identical_by_position
  FROM public.jan_survivors s JOIN ONLY :jan j USING (global_position);
SELECT count(*) AS hidden_left FROM ONLY :jan e WHERE public.hidden(e);
-- ... the hard-deleted stream's events are gone from the log ...
SELECT count(*) AS acct_2_left FROM event_store.events WHERE stream_id = 'acct-2';
-- ... and the partition is the same partition: name, access method,
-- persistence, bound, indexes, triggers (ENABLE ALWAYS), privileges;
-- only its storage is new.
SELECT s.relname = c.relname AS same_name, s.relam = c.relam AS same_am,
       (SELECT amname FROM pg_am WHERE oid = c.relam) AS am, c.relpersistence,
       s.bound = pg_get_expr(c.relpartbound, c.oid) AS same_bound,
       s.acl = c.relacl::text AS same_acl,
       s.indexes = (SELECT string_agg(ic.relname || ' ' || regexp_replace(pg_get_indexdef(i.indexrelid), '^.* USING ', ''), '; ' ORDER BY ic.relname)
                      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = c.oid) AS same_indexes,
       s.triggers = (SELECT string_agg(t.tgname || ' ' || t.tgenabled::text || ' ' || t.tgtype, '; ' ORDER BY t.tgname)
                       FROM pg_trigger t WHERE t.tgrelid = c.oid) AS same_triggers,
       s.relfilenode <> c.relfilenode AS new_storage
  FROM public.jan_shape s, pg_class c WHERE c.oid = :'jan'::regclass;
SELECT count(*) AS leftover_tables FROM pg_class WHERE relname LIKE 'es_scav_%';
SELECT count(*) AS leftover_checks FROM pg_constraint WHERE conname = 'es_scavenge_bound';

-- Readers see exactly what they saw before.
CREATE TABLE public.seen_after AS
SELECT 'all' AS path, e::text AS row FROM event_store.read_all(0, 100000) e WHERE e.stream_id NOT LIKE '$audit%'
UNION ALL SELECT 'category', e::text FROM event_store.read_category('acct', 0, 100000) e
UNION ALL SELECT 'stream ' || s, e::text FROM generate_series(1, 10) s, event_store.read_stream('acct-' || s) e
UNION ALL SELECT 'tags', e::text FROM event_store.read_by_tags(ARRAY['tag-6']) e;
SELECT path, count(*) AS rows FROM public.seen_after GROUP BY path ORDER BY path;
SELECT count(*) AS differences
  FROM ((SELECT * FROM public.seen_before EXCEPT ALL SELECT * FROM public.seen_after)
        UNION ALL (SELECT * FROM public.seen_after EXCEPT ALL SELECT * FROM public.seen_before)) d;
SELECT event_store.stream_version('acct-3') AS acct_3_version, event_store.state_as_of('acct-3') ->> 'v' AS acct_3_state;

-- One audit event: the partition, the counts per stream, who.
SELECT event_type, data->>'partition' = :'jan' AS partition_named, data->'events_removed' AS removed,
       data->'events_kept' AS kept, data->'streams' AS per_stream, data->>'by' AS by
  FROM event_store.read_stream('$audit-scavenge');

-- The rewritten partition is as guarded as before.
SELECT try($$DELETE FROM $$ || :'jan') AS delete_rows;
SELECT try($$UPDATE $$ || :'jan' || $$ SET data = '{}'$$) AS update_rows;
SELECT try($$TRUNCATE $$ || :'jan') AS truncate_partition;
SELECT try($$DROP TABLE $$ || :'jan') AS drop_partition;
SELECT try($$ALTER TABLE event_store.events DETACH PARTITION $$ || :'jan') AS detach_partition;

-- Again: nothing left to remove, nothing written.
SELECT public.fingerprint() AS fp2 \gset
SELECT event_store.scavenge(:'jan') AS removed_again;
SELECT public.fingerprint() = :'fp2' AS nothing_written;

-- 5. scavenge() with no argument: every closed partition.  January and
-- February both have a newly deleted stream: both are copied first, then
-- both swapped (one audit event each); the archive, the current and
-- future partitions are not touched.
SELECT event_store.delete_stream('acct-6');
SELECT event_store.delete_stream('feb-2');
SELECT relfilenode AS jan_node FROM pg_class WHERE oid = :'jan'::regclass \gset
SELECT md5(string_agg(e::text, ',' ORDER BY global_position)) AS archive_md5 FROM event_store_archive.events e \gset
SELECT count(*) AS cur_rows FROM ONLY :cur \gset
SELECT count(*) AS next_rows FROM ONLY :next \gset
SELECT event_store.scavenge() AS removed_all;
SELECT stream_id, count(*) FROM ONLY :feb GROUP BY 1 ORDER BY 1;
SELECT count(*) AS acct_6_left FROM event_store.events WHERE stream_id = 'acct-6';
SELECT relfilenode <> :jan_node AS jan_rewritten FROM pg_class WHERE oid = :'jan'::regclass;
SELECT md5(string_agg(e::text, ',' ORDER BY global_position)) = :'archive_md5' AS archive_untouched FROM event_store_archive.events e;
SELECT count(*) - :cur_rows AS current_partition_grew_by FROM ONLY :cur;  -- the two audit events only
SELECT count(*) - :next_rows AS next_partition_grew_by FROM ONLY :next;
SELECT count(*) AS audit_events, count(DISTINCT data->>'partition') AS partitions
  FROM event_store.read_stream('$audit-scavenge');
SELECT data->'streams' AS per_stream FROM event_store.read_stream_backward('$audit-scavenge', max_count => 2)
 ORDER BY data->>'partition';

-- 6. run_maintenance() (what pg_cron's schedule calls) scavenges when a
-- stream hides events.
SELECT event_store.truncate_stream('feb-3', 3);
SET client_min_messages = warning;
CALL event_store.run_maintenance();
RESET client_min_messages;
SELECT step, result, error FROM event_store.maintenance_status WHERE step = 'scavenge';
SELECT stream_id, count(*) FROM ONLY :feb GROUP BY 1 ORDER BY 1;

-- 7. No index of streams covers the columns an append bumps (version,
-- updated_at, last_position), so those updates can be HOT (1.12: the
-- lifecycle index no longer INCLUDEs version).
SELECT count(*) AS indexes_on_bumped_columns
  FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
 WHERE i.indrelid = 'event_store.streams'::regclass AND a.attname IN ('version', 'updated_at', 'last_position');

-- 8. event_store.scavenge_maintenance_work_mem: the index builds run with
-- the larger of it and maintenance_work_mem, for those statements only
-- (maintenance_work_mem is as it was afterwards); 0 leaves
-- maintenance_work_mem alone; a negative value is refused.  A survivor
-- whose data is stored out of line (TOAST) is copied with the same value.
SHOW event_store.scavenge_maintenance_work_mem;
\set VERBOSITY sqlstate
SET event_store.scavenge_maintenance_work_mem = -1;  -- 22023 (the message's units differ by major)
\set VERBOSITY terse
SET maintenance_work_mem = '1MB';
SET event_store.scavenge_maintenance_work_mem = '32MB';
INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                event_id, recorded_at, occurred_at, transaction_id)
SELECT nextval('event_store.global_position_seq'), 'feb-big', 1, 'Big',
       jsonb_build_object('blob', (SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000) g)),
       gen_random_uuid(), '2020-02-20', '2020-02-20', pg_current_xact_id();
INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at, first_position, last_position)
SELECT stream_id, 'feb', 1, recorded_at, recorded_at, global_position, global_position
  FROM event_store.events WHERE stream_id = 'feb-big';
SELECT md5(data::text) AS big_md5 FROM ONLY :feb WHERE stream_id = 'feb-big' \gset
SELECT reltoastrelid::regclass AS feb_toast FROM pg_class WHERE oid = :'feb'::regclass \gset
SELECT count(*) > 0 AS big_stored_out_of_line FROM :feb_toast;
SELECT event_store.truncate_stream('feb-1', 2);
SELECT event_store.scavenge(:'feb') AS removed_with_more_memory;
SHOW maintenance_work_mem;
SET event_store.scavenge_maintenance_work_mem = 0;
SELECT event_store.truncate_stream('feb-1', 3);
SELECT event_store.scavenge(:'feb') AS removed_with_maintenance_work_mem;
SHOW maintenance_work_mem;
SELECT stream_id, min(stream_version), count(*) FROM ONLY :feb GROUP BY 1 ORDER BY 1;
SELECT md5(data::text) = :'big_md5' AS big_data_kept FROM ONLY :feb WHERE stream_id = 'feb-big';
SELECT reltoastrelid::regclass AS feb_toast FROM pg_class WHERE oid = :'feb'::regclass \gset
SELECT count(*) > 0 AS big_out_of_line_in_the_new_storage FROM :feb_toast;
RESET maintenance_work_mem;
RESET event_store.scavenge_maintenance_work_mem;

\c :orig_db
DROP DATABASE es_scavenge_test;
DROP ROLE es_sc_reader;
DROP ROLE es_sc_writer;
DROP ROLE es_sc_admin;
