-- Hostile and bad input (1.5): malformed, oversized, NULL, negative,
-- wrong-type and injection-shaped arguments to every public function.
-- Each case gives a documented SQLSTATE or a documented correct result;
-- the counts at the end prove that nothing was written that should not be.
\set own_db es_hostile_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';

-- 'ok: <first column>' or '<SQLSTATE>: <message>'.
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    r text;
    st text;
    msg text;
BEGIN
    EXECUTE q INTO r;
    RETURN 'ok: ' || coalesce(r, 'NULL');
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT;
    RETURN st || ': ' || regexp_replace(left(msg, 150), 'events_p\d+_\d+', 'events_p...');
END
$$;
CREATE TABLE cases (n serial, name text, result text);
CREATE FUNCTION t(name text, q text) RETURNS void LANGUAGE sql AS
$$ INSERT INTO cases (name, result) VALUES (name, try(q)) $$;

-- A known state to compare against.
SELECT event_store.append_event('acct-1', 'Opened', '{"owner": "ada"}', tags => '{acct:1}');
CREATE TABLE before AS
SELECT (SELECT count(*) FROM event_store.events) AS events,
       (SELECT count(*) FROM event_store.streams) AS streams,
       (SELECT count(*) FROM event_store.snapshots) AS snapshots,
       (SELECT count(*) FROM event_store.settings) AS settings,
       (SELECT count(*) FROM event_store.reducers) AS reducers,
       (SELECT count(*) FROM event_store.projection_registry) AS projections,
       (SELECT count(*) FROM event_store.subscriptions) AS subscriptions,
       (SELECT count(*) FROM event_store.partition_ranges()) AS partitions;

-- Refused: nothing may be written by any of these.
-- stream ids
SELECT t('null stream_id', $$SELECT event_store.append_event(NULL, 'T', '{}')$$);
SELECT t('empty stream_id', $$SELECT event_store.append_event('', 'T', '{}')$$);
SELECT t('stream_id of 1025 bytes', $$SELECT event_store.append_event(repeat('x', 1025), 'T', '{}')$$);
SELECT t('stream_id of 1025 bytes in 342 3-byte characters', $$SELECT event_store.append_event(repeat('€', 342), 'T', '{}')$$);
SELECT t('stream_id with a NUL byte (text cannot hold one)', $$SELECT event_store.append_event(E'a\u0000b', 'T', '{}')$$);
SELECT t('stream_id not valid UTF-8', $$SELECT event_store.append_event(convert_from('\xc328'::bytea, 'UTF8'), 'T', '{}')$$);
-- event types and data
SELECT t('null event_type', $$SELECT event_store.append_event('acct-1', NULL, '{}')$$);
SELECT t('empty event_type', $$SELECT event_store.append_event('acct-1', '', '{}')$$);
SELECT t('event_type of 256 bytes', $$SELECT event_store.append_event('acct-1', repeat('T', 256), '{}')$$);
SELECT t('null data', $$SELECT event_store.append_event('acct-1', 'T', NULL)$$);
SELECT t('data a JSON array', $$SELECT event_store.append_event('acct-1', 'T', '[1, 2]')$$);
SELECT t('data a JSON scalar', $$SELECT event_store.append_event('acct-1', 'T', '"x"')$$);
SELECT t('data the JSON null', $$SELECT event_store.append_event('acct-1', 'T', 'null')$$);
SELECT t('data malformed JSON', $$SELECT event_store.append_event('acct-1', 'T', '{"a": }')$$);
SELECT t('data JSON with a \u0000 escape', $$SELECT event_store.append_event('acct-1', 'T', '{"a": "\u0000"}')$$);
SELECT t('metadata a JSON array', $$SELECT event_store.append_event('acct-1', 'T', '{}', '[]')$$);
SELECT t('occurred_at infinity', $$SELECT event_store.append_event('acct-1', 'T', '{}', occurred_at => 'infinity')$$);
SELECT t('occurred_at -infinity', $$SELECT event_store.append_event('acct-1', 'T', '{}', occurred_at => '-infinity')$$);
SELECT t('event_id not a uuid', $$SELECT event_store.append_event('acct-1', 'T', '{}', event_id => 'not-a-uuid')$$);
-- expected versions
SELECT t('expected_version -2', $$SELECT event_store.append_event('acct-1', 'T', '{}', expected_version => -2)$$);
SELECT t('expected_version minimum bigint', $$SELECT event_store.append_event('acct-1', 'T', '{}', expected_version => -9223372036854775808)$$);
SELECT t('expected_version maximum bigint', $$SELECT event_store.append_event('acct-1', 'T', '{}', expected_version => 9223372036854775807)$$);
SELECT t('expected_version 0 on an existing stream', $$SELECT event_store.append_event('acct-1', 'T', '{}', expected_version => 0)$$);
SELECT t('expected_version -1 on a missing stream', $$SELECT event_store.append_event('acct-404', 'T', '{}', expected_version => -1)$$);
SELECT t('expected_version as text', $$SELECT event_store.append_event('acct-1', 'T', '{}', expected_version => 'one')$$);
-- batches
SELECT t('null events array', $$SELECT event_store.append('acct-1', NULL)$$);
SELECT t('empty events array', $$SELECT event_store.append('acct-1', '{}')$$);
SELECT t('a NULL element', $$SELECT event_store.append('acct-1', ARRAY[event_store.event('T', '{}'), NULL])$$);
SELECT t('two-dimensional events', $$SELECT event_store.append('acct-1', ARRAY[[event_store.event('T', '{}')], [event_store.event('T', '{}')]])$$);
SELECT t('one bad event among good ones', $$SELECT event_store.append('acct-1', ARRAY[event_store.event('T', '{}'), event_store.event('T', '{}'), event_store.event('T', '[]')])$$);
SELECT t('duplicate event ids in one batch', $$SELECT event_store.append('acct-1', ARRAY[event_store.event('T', '{}', event_id => '00000000-0000-4000-8000-0000000000aa'), event_store.event('U', '{}', event_id => '00000000-0000-4000-8000-0000000000aa')])$$);
SELECT t('batch over max_batch_size', $$SELECT event_store.append('acct-1', array_fill(event_store.event('T', '{}'), ARRAY[10001]))$$);
SELECT t('max_batch_size above its limit', $$SET event_store.max_batch_size = 1000001$$);
SELECT t('max_batch_size 0', $$SET event_store.max_batch_size = 0$$);
SELECT t('events of a wrong type', $$SELECT event_store.append('acct-1', ARRAY['{"type": "T"}'::jsonb])$$);
-- tags
SELECT t('a NULL tag', $$SELECT event_store.append_event('acct-1', 'T', '{}', tags => ARRAY['a', NULL])$$);
SELECT t('an empty tag', $$SELECT event_store.append_event('acct-1', 'T', '{}', tags => ARRAY[''])$$);
SELECT t('two-dimensional tags', $$SELECT event_store.append_event('acct-1', 'T', '{}', tags => '{{a},{b}}')$$);
-- append_all / append_if
SELECT t('append_all NULL', $$SELECT count(*) FROM event_store.append_all(NULL)$$);
SELECT t('append_all empty', $$SELECT count(*) FROM event_store.append_all('{}')$$);
SELECT t('append_all one stream twice', $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('acct-9', NULL, ARRAY[event_store.event('T', '{}')])::event_store.stream_append, ROW('acct-9', NULL, ARRAY[event_store.event('T', '{}')])::event_store.stream_append])$$);
SELECT t('append_all second stream conflicts', $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW('acct-9', NULL, ARRAY[event_store.event('T', '{}')])::event_store.stream_append, ROW('acct-1', 7, ARRAY[event_store.event('T', '{}')])::event_store.stream_append])$$);
SELECT t('append_all NULL stream_id', $$SELECT count(*) FROM event_store.append_all(ARRAY[ROW(NULL, NULL, ARRAY[event_store.event('T', '{}')])::event_store.stream_append])$$);
SELECT t('append_if negative position', $$SELECT event_store.append_if(ARRAY[event_store.event('T', '{}')], 'acct-1', NULL, '{acct:1}', -1)$$);
SELECT t('append_if NULL condition tags', $$SELECT event_store.append_if(ARRAY[event_store.event('T', '{}')], 'acct-1', NULL, NULL, 0)$$);
SELECT t('append_if condition already met', $$SELECT event_store.append_if(ARRAY[event_store.event('T', '{}')], 'acct-1', NULL, '{acct:1}', 0)$$);
-- maintenance and settings
SELECT t('partition interval NULL', $$SELECT event_store.set_partition_interval(NULL)$$);
SELECT t('partition interval negative', $$SELECT event_store.set_partition_interval('-1 day')$$);
SELECT t('partition interval 0.5 s', $$SELECT event_store.set_partition_interval('0.5 seconds')$$);
SELECT t('partition interval 1 month 1 day', $$SELECT event_store.set_partition_interval('1 month 1 day')$$);
SELECT t('partition interval as SQL', $$SELECT event_store.set_partition_interval('1 day''); DROP TABLE event_store.events; --')$$);
SELECT t('premake -1', $$SELECT event_store.set_premake_partitions(-1)$$);
SELECT t('premake 1001', $$SELECT event_store.set_premake_partitions(1001)$$);
SELECT t('premake_partitions(-5)', $$SELECT event_store.premake_partitions(-5)$$);
SELECT t('partition for infinity', $$SELECT event_store._create_partition_for('infinity')$$);
-- folds, snapshots, reducers
SELECT t('fold with a reducer of the wrong shape', $$SELECT event_store.fold('pg_catalog.jsonb_concat(jsonb,jsonb)', NULL::jsonb, 'acct-1')$$);
SELECT t('fold with an unknown reducer', $$SELECT event_store.fold('public.nope(jsonb,event_store.events)', NULL::jsonb, 'acct-1')$$);
SELECT t('fold with a reducer name that is SQL', $$SELECT event_store.fold('x(jsonb); DROP TABLE event_store.events; --', NULL::jsonb, 'acct-1')$$);
SELECT t('fold with an untyped NULL initial', $$SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', NULL, 'acct-1')$$);
SELECT t('fold with a state of another type', $$SELECT event_store.fold('event_store.merge_patch(jsonb,event_store.events)', 0::bigint, 'acct-1')$$);
SELECT t('fold_to_version -1', $$SELECT event_store.fold_to_version('event_store.event_count(bigint,event_store.events)', 0::bigint, 'acct-1', -1)$$);
SELECT t('snapshot policy 0', $$SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 0)$$);
SELECT t('snapshot policy NULL reducer', $$SELECT event_store.set_snapshot_policy(NULL, 5)$$);
SELECT t('reducer revision NULL reducer', $$SELECT event_store.set_reducer_revision(NULL, 'x')$$);
-- reads
SELECT t('read_all NULL position', $$SELECT count(*) FROM event_store.read_all(NULL)$$);
SELECT t('read_all negative max_count', $$SELECT count(*) FROM event_store.read_all(0, -1)$$);
SELECT t('read_stream max_count above int', $$SELECT count(*) FROM event_store.read_stream('acct-1', 1, 3000000000)$$);
-- projections and subscriptions
SELECT t('projection named as SQL, bad handler', $$SELECT event_store.create_projection('x''; DROP TABLE event_store.events; --', 'pg_catalog.now()')$$);
SELECT t('projection with a non-handler', $$SELECT event_store.create_projection('p', 'pg_catalog.now()')$$);
SELECT t('projection mode bogus', $$SELECT event_store.create_projection('p', 'event_store.feed_mode()', mode => 'sometimes')$$);
SELECT t('projection empty name', $$SELECT event_store.create_projection('', 'event_store.feed_mode()')$$);
SELECT t('drop a missing projection', $$SELECT event_store.drop_projection('"; DROP TABLE x; --')$$);
SELECT t('run a missing projection', $$SELECT event_store.run_projection('nope')$$);
SELECT t('subscribe with empty filters', $$SELECT event_store.subscribe('s', '{}')$$);
SELECT t('subscribe with a NULL filter element', $$SELECT event_store.subscribe('s', ARRAY[NULL::text])$$);
SELECT t('poll a missing subscription', $$SELECT count(*) FROM event_store.poll('nope')$$);
SELECT t('ack a missing subscription', $$SELECT event_store.ack('nope', 1)$$);
SELECT t('consumer group of size 0', $$SELECT event_store.consumer_group_member('acct-1', 0)$$);
SELECT t('consumer group of size -3', $$SELECT event_store.consumer_group_member('acct-1', -3)$$);
SELECT t('UPDATE the log as superuser', $$UPDATE event_store.events SET data = '{}'$$);
SELECT t('DELETE from the log', $$DELETE FROM event_store.events$$);
SELECT t('TRUNCATE the log', $$TRUNCATE event_store.events$$);
SELECT n, name, result FROM cases ORDER BY n;

SELECT (SELECT count(*) FROM event_store.events) - events AS events_written,
       (SELECT count(*) FROM event_store.streams) - streams AS streams_written,
       (SELECT count(*) FROM event_store.snapshots) - snapshots AS snapshots_written,
       (SELECT count(*) FROM event_store.settings) - settings AS settings_written,
       (SELECT count(*) FROM event_store.reducers) - reducers AS reducers_written,
       (SELECT count(*) FROM event_store.projection_registry) - projections AS projections_written,
       (SELECT count(*) FROM event_store.subscriptions) - subscriptions AS subscriptions_written,
       (SELECT count(*) FROM event_store.partition_ranges()) - partitions AS partitions_made
  FROM before;
TRUNCATE cases;

-- Accepted: injection-shaped ids are data, stored and read back verbatim;
-- categories match exactly (no LIKE: % and _ are plain characters).
CREATE TABLE ids (id text);
INSERT INTO ids VALUES
    ('o''brien-1'), ('semi;colon-1'), ('drop-1''); DROP TABLE event_store.events; --'),
    ('per%cent-1'), ('under_score-1'), ('back\slash-1'), (E'tab\there-1'), (E'new\nline-1'),
    ('ünïcødé-1'), ('日本-1'), ('emoji😀-1'), ('$1-1'), ('"quoted"-1'), ('nodash'),
    ('-leading'), ('trailing-'), ('a--b'), (repeat('x', 1024)), (E'\x01ctrl-1');
SELECT count(*) AS appended FROM ids, LATERAL (SELECT event_store.append_event(id, 'T', jsonb_build_object('id', id), expected_version => 0)) a;
SELECT count(*) FILTER (WHERE s.stream_id IS NOT NULL AND s.version = 1
                        AND s.category = split_part(i.id, '-', 1)
                        AND (SELECT count(*) FROM event_store.read_stream(i.id)) = 1
                        AND (SELECT data->>'id' FROM event_store.read_stream(i.id)) = i.id) AS round_trips,
       count(*) AS ids
  FROM ids i LEFT JOIN event_store.streams s ON s.stream_id = i.id;
SELECT count(*) AS per_percent FROM event_store.read_category('per%cent');
SELECT count(*) AS percent_alone FROM event_store.read_category('%');
SELECT count(*) AS under_underscore FROM event_store.read_category('under_score');
SELECT count(*) AS underscore_alone FROM event_store.read_category('under_scor_');
SELECT count(*) AS empty_category FROM event_store.read_category('');
SELECT count(*) AS null_category FROM event_store.read_category(NULL);
SELECT count(*) AS injected_category FROM event_store.read_category('x'' OR ''1''=''1');
SELECT to_regclass('event_store.events') IS NOT NULL AS log_still_there;
-- Odd but valid values: documented results.
SELECT event_store.stream_version(NULL) AS version_of_null, event_store.stream_version('') AS version_of_empty;
SELECT count(*) AS read_from_version_minus_5 FROM event_store.read_stream('acct-1', -5);
SELECT count(*) AS read_zero FROM event_store.read_stream('acct-1', 1, 0);
SELECT count(*) AS read_null_count FROM event_store.read_stream('acct-1', 1, NULL);
SELECT event_store.state_as_of('acct-1', '-infinity') AS state_before_time, event_store.state_as_of('acct-1', 'infinity') AS state_at_infinity;
SELECT event_store.fold_to_version('event_store.event_count(bigint,event_store.events)', 0::bigint, 'acct-1', 0) AS fold_to_0;
SELECT count(*) AS tags_empty_array FROM event_store.read_by_tags('{}');
SELECT event_store.category(E'a\\b-c') AS category_backslash, event_store.category('-x') AS category_leading_dash;
SELECT event_store.jsonb_merge_patch(NULL, '{"a": 1}') AS patch_null_target, event_store.jsonb_merge_patch('{"a": 1}', NULL) AS null_patch;
-- A 1 MB value in one event and a 255-byte event type are accepted.
SELECT event_store.append_event('big-1', repeat('T', 255), jsonb_build_object('blob', repeat('x', 1024 * 1024))) AS big_version;
SELECT length(data->>'blob') AS blob_length FROM event_store.read_stream('big-1');

\c :orig_db
DROP DATABASE es_hostile_test;
