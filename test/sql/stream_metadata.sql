-- Issue 28 (1.11): stream metadata.  set_stream_metadata / stream_metadata,
-- versioned with optimistic concurrency; max_count, max_age and
-- truncate_before hide events from every read path.  In a database of its own.
\set own_db es_metadata_test
\i test/sql/include/own_db.sql
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
    RETURN st || ': ' || msg;
END
$$;
CREATE FUNCTION public.fingerprint() RETURNS text LANGUAGE sql AS $$
    SELECT (SELECT count(*) FROM event_store.events) || ' events, ' ||
           (SELECT md5(string_agg(s::text, ',' ORDER BY s.stream_id)) FROM event_store.streams s) || ', ' ||
           (SELECT count(*) FROM event_store.snapshots) || ' snapshots'
$$;
CREATE ROLE es_md_writer IN ROLE event_store_writer;
CREATE ROLE es_md_reader IN ROLE event_store_reader;

SELECT event_store.append('m-1', ARRAY[event_store.event('E', '{"a": 1}'), event_store.event('E', '{"b": 2}'),
                                      event_store.event('E', '{"c": 3}'), event_store.event('E', '{"d": 4}'),
                                      event_store.event('E', '{"e": 5}')]);
SELECT event_store.append_event('other-1', 'Noted', '{}');
SELECT event_store.subscribe('m', categories => ARRAY['m']);
SELECT public.fingerprint() AS before \gset

-- Bad input: each refused with its SQLSTATE, nothing written.
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '[1]')$$) AS array_metadata;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '"x"')$$) AS string_metadata;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', NULL)$$) AS null_metadata;
SELECT try($$SELECT event_store.set_stream_metadata(NULL, '{}')$$) AS null_stream;
SELECT try($$SELECT event_store.set_stream_metadata('m-404', '{}')$$) AS missing_stream;
SELECT try($$SELECT event_store.set_stream_metadata('$audit-deletions', '{}')$$) AS audit_stream;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_age": "-1 day"}')$$) AS negative_max_age;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_age": 5}')$$) AS number_max_age;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_age": "soon"}')$$) AS bad_max_age;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_count": -1}')$$) AS negative_max_count;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_count": 1.5}')$$) AS fractional_max_count;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_count": "3"}')$$) AS string_max_count;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"max_count": 99999999999999999999}')$$) AS huge_max_count;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"truncate_before": 0}')$$) AS zero_truncate_before;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{"truncate_before": 7}')$$) AS truncate_before_past_end;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{}', expected_metadata_version => 1)$$) AS wrong_expected;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{}', expected_metadata_version => -1)$$) AS negative_expected;
SET ROLE es_md_writer;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{}')$$) AS writer_set;
RESET ROLE;
SELECT public.fingerprint() = :'before' AS nothing_written;

-- Versioned metadata: each change bumps the version; user keys are kept.
SELECT event_store.set_stream_metadata('m-1', '{"owner": "billing"}', expected_metadata_version => 0) AS v1;
SELECT event_store.set_stream_metadata('m-1', '{"owner": "billing", "max_count": 2}', expected_metadata_version => 1) AS v2;
SELECT try($$SELECT event_store.set_stream_metadata('m-1', '{}', expected_metadata_version => 1)$$) AS stale_expected;
SET ROLE es_md_reader;
SELECT event_store.stream_metadata('m-1') AS metadata, event_store.stream_metadata('other-1') AS none,
       event_store.stream_metadata('m-404') AS missing;
-- max_count 2: only the newest two events are visible, on every read path
SELECT stream_version FROM event_store.read_stream('m-1');
SELECT stream_version FROM event_store.read_stream('m-1', 1, 1);
SELECT stream_version FROM event_store.read_stream_backward('m-1');
SELECT stream_version FROM event_store.read_category('m');
SELECT stream_id, stream_version FROM event_store.read_all() ORDER BY global_position;
SELECT event_store.state_as_of('m-1') AS state, event_store.stream_version('m-1') AS version;
SELECT state, first_visible_version, max_count, metadata_version FROM event_store.stream_lifecycle WHERE stream_id = 'm-1';
RESET ROLE;
SELECT stream_version FROM event_store.poll('m');
-- the window slides with appends
SELECT event_store.append_event('m-1', 'E', '{"f": 6}');
SELECT stream_version FROM event_store.read_stream('m-1');
SELECT event_store.state_as_of('m-1') AS state;
-- no snapshot is taken or used under a sliding window
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'm-1');
SELECT count(*) AS snapshots FROM event_store.snapshots WHERE stream_id = 'm-1';
-- removing max_count shows the events again (nothing was removed)
SELECT event_store.set_stream_metadata('m-1', '{"owner": "billing"}') AS v3;
SELECT count(*) AS visible FROM event_store.read_stream('m-1');
SELECT state, first_visible_version FROM event_store.stream_lifecycle WHERE stream_id = 'm-1';

-- max_age: events recorded longer ago than it are hidden.  '0 seconds'
-- hides every event of earlier transactions; one appended in this
-- transaction (recorded at or after now()) stays visible.
SELECT event_store.set_stream_metadata('m-1', '{"max_age": "1000 years"}') AS v4;
SELECT count(*) AS visible_1000_years FROM event_store.read_stream('m-1');
SELECT count(*) AS category_1000_years FROM event_store.read_category('m');
SELECT event_store.set_stream_metadata('m-1', '{"max_age": "0 seconds"}') AS v5;
BEGIN;
SELECT count(*) AS visible_now FROM event_store.read_stream('m-1');
SELECT event_store.append_event('m-1', 'E', '{"g": 7}');
SELECT stream_version FROM event_store.read_stream('m-1');
SELECT stream_version FROM event_store.read_stream('m-1', 1, 1);
SELECT stream_version FROM event_store.read_stream_backward('m-1');
SELECT event_store.state_as_of('m-1') AS state;
COMMIT;
-- the feeds (which never show uncommitted events) hide them all now
SELECT count(*) AS category_now FROM event_store.read_category('m');
SELECT count(*) AS all_now FROM event_store.read_all() WHERE stream_id = 'm-1';

-- truncate_before in metadata acts as truncate_stream: it only rises and
-- is recorded in '$audit-deletions'.
SELECT event_store.set_stream_metadata('m-1', '{"truncate_before": 3}') AS v6;
SELECT count(*) AS visible FROM event_store.read_stream('m-1');
SELECT event_store.set_stream_metadata('m-1', '{}') AS v7;
SELECT stream_version FROM event_store.read_stream('m-1');
SELECT event_type, data->>'stream_id' AS stream, data->>'reason' AS reason, data->'truncate_before' AS truncate_before
  FROM event_store.read_stream('$audit-deletions');
SELECT stream_id, count(*) AS stored FROM event_store.events WHERE stream_id = 'm-1' GROUP BY 1;

\c :orig_db
DROP DATABASE es_metadata_test;
DROP ROLE es_md_writer;
DROP ROLE es_md_reader;
