SET timezone = 'UTC';
-- In a database of its own: the log is append-only, so the events of this
-- test would otherwise stay in the shared one for the tests that follow.
\set own_db es_snapshots_test
\i test/sql/include/own_db.sql
SET timezone = 'UTC';
-- Snapshots: take_snapshot, the automatic policy, revisions, and the
-- property that a snapshot never changes an answer.

-- Event i sets k(i%7) and n, removes k((i+3)%7) every 4th time, and
-- patches a nested object.
CREATE FUNCTION pg_temp.fill(stream text, i int) RETURNS bigint LANGUAGE sql AS $$
    SELECT event_store.append_event(stream, 'Set' || (i % 3),
               jsonb_build_object('k' || (i % 7), i, 'n', i,
                                  'k' || ((i + 3) % 7), CASE WHEN i % 4 = 0 THEN NULL ELSE 0 END,
                                  'nested', jsonb_build_object('a' || (i % 4), CASE WHEN i % 5 = 0 THEN NULL ELSE i END)))
$$;
SELECT pg_temp.fill('snap-1', i) FROM generate_series(1, 60) i;
SELECT count(DISTINCT data) AS distinct_events FROM event_store.events WHERE stream_id = 'snap-1';

CREATE TYPE tally AS (events int, total bigint, last_type text);
CREATE FUNCTION tally_reducer(s tally, e event_store.events) RETURNS tally
LANGUAGE sql IMMUTABLE
RETURN ROW(s.events + 1, s.total + (e.data->>'n')::bigint, e.event_type)::tally;

-- Reference answers without any snapshot, at every version and every
-- recorded_at (and just before each).
CREATE TEMP TABLE cuts AS
SELECT stream_version AS v, recorded_at AS t FROM event_store.events WHERE stream_id = 'snap-1';
SELECT count(*) AS snapshots FROM event_store.snapshots;
CREATE TEMP TABLE reference AS
SELECT v, t,
       event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', v) AS mp_v,
       event_store.state_as_of('snap-1', t) AS mp_t,
       event_store.state_as_of('snap-1', t - interval '1 microsecond') AS mp_t_before,
       event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', v)::text AS ta_v,
       event_store.fold('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', t)::text AS ta_t
  FROM cuts;

-- take_snapshot stores the state at the last version.
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1');
SELECT event_store.take_snapshot('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1');
SELECT reducer, version, state FROM event_store.snapshots ORDER BY reducer, version;
-- Nothing to store for a stream without events.
SELECT event_store.take_snapshot('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'no-such-stream');

-- The automatic policy: every 7 versions, per reducer.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 7);
SELECT event_store.set_snapshot_policy('tally_reducer(tally,event_store.events)', 11);
SELECT reducer, snapshot_every FROM event_store.reducers ORDER BY 1;
SELECT event_store.state_as_of('snap-1') = (SELECT mp_v FROM reference WHERE v = 60) AS same;
SELECT event_store.fold('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1')::text
       = (SELECT ta_v FROM reference WHERE v = 60) AS same;
-- The folds above started from the snapshot at 60, so they took none; a
-- fold to version 50 starts from scratch and takes them on its way.
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', 50)
       = (SELECT mp_v FROM reference WHERE v = 50) AS same;
SELECT event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', 50)::text
       = (SELECT ta_v FROM reference WHERE v = 50) AS same;
SELECT split_part(reducer, '(', 1) AS reducer, array_agg(version ORDER BY version) AS versions
  FROM event_store.snapshots GROUP BY 1 ORDER BY 1;
-- Snapshots depend on the initial state: another initial state has none.
SELECT event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(1000, 0, 'x')::tally, 'snap-1', 30)
       = ROW(1030, (SELECT (ta_v::tally).total FROM reference WHERE v = 30), 'Set0')::tally AS other_initial;
SELECT count(DISTINCT initial_digest) AS initial_states FROM event_store.snapshots
 WHERE reducer LIKE 'public.tally_reducer%';

-- The property: with snapshots, every cut gives the reference answer.
SELECT count(*) AS cuts,
       bool_and(event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', v) = mp_v) AS mp_by_version,
       bool_and(event_store.state_as_of('snap-1', t) = mp_t) AS mp_by_time,
       bool_and(event_store.state_as_of('snap-1', t - interval '1 microsecond') IS NOT DISTINCT FROM mp_t_before) AS mp_just_before,
       bool_and(event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', v)::text = ta_v) AS tally_by_version,
       bool_and(event_store.fold('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', t)::text = ta_t) AS tally_by_time
  FROM reference;
-- More events after the snapshots: still the same as the SQL fold.
SELECT pg_temp.fill('snap-1', i) FROM generate_series(61, 69) i;
SELECT event_store.state_as_of('snap-1') =
       (SELECT event_store.merge_patch_agg(data ORDER BY stream_version) FROM event_store.events WHERE stream_id = 'snap-1') AS same_after_appends;

-- A snapshot is used: a forged one (current revision) changes the answer ...
UPDATE event_store.snapshots SET state = '{"forged": true}'
 WHERE stream_id = 'snap-1' AND reducer LIKE 'event_store.merge_patch%' AND version = 63;
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', 63) AS from_forged;
-- ... until the reducer's revision changes: a new tag ...
SELECT event_store.reducer_revision('event_store.merge_patch(jsonb,event_store.events)') =
       event_store.set_reducer_revision('event_store.merge_patch(jsonb,event_store.events)', 'v2') AS revision_unchanged;
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', 63)
       = (SELECT event_store.merge_patch_agg(data ORDER BY stream_version) FROM event_store.events
           WHERE stream_id = 'snap-1' AND stream_version <= 63) AS forged_ignored;
-- ... or a new definition (CREATE OR REPLACE FUNCTION; the same text keeps the revision).
UPDATE event_store.snapshots SET state = '(1,1,forged)'
 WHERE stream_id = 'snap-1' AND reducer LIKE 'public.tally_reducer%' AND version = 44;
SELECT event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', 44) AS from_forged;
SELECT event_store.reducer_revision('tally_reducer(tally,event_store.events)') AS old_revision \gset
CREATE OR REPLACE FUNCTION tally_reducer(s tally, e event_store.events) RETURNS tally
LANGUAGE sql IMMUTABLE
RETURN ROW(s.events + 1, s.total + (e.data->>'n')::bigint, e.event_type)::tally;
SELECT event_store.reducer_revision('tally_reducer(tally,event_store.events)') = :'old_revision' AS same_definition_same_revision;
CREATE OR REPLACE FUNCTION tally_reducer(s tally, e event_store.events) RETURNS tally
LANGUAGE sql IMMUTABLE
RETURN ROW(s.events + 1, s.total + (e.data->>'n')::bigint, upper(e.event_type))::tally;
SELECT event_store.reducer_revision('tally_reducer(tally,event_store.events)') = :'old_revision' AS same_revision;
SELECT event_store.fold_to_version('tally_reducer(tally,event_store.events)', ROW(0, 0, NULL)::tally, 'snap-1', 44) AS new_definition;

-- Stale snapshots (old revisions) can be dropped; then by stream/reducer.
SELECT count(*) > 0 AS some_stale FROM event_store.snapshots s
 WHERE s.revision <> event_store.reducer_revision(s.reducer::regprocedure);
SELECT event_store.drop_stale_snapshots() > 0 AS dropped_stale;
SELECT count(*) AS stale_left FROM event_store.snapshots s
 WHERE s.revision <> event_store.reducer_revision(s.reducer::regprocedure);
SELECT event_store.drop_snapshots('snap-1', 'event_store.merge_patch(jsonb,event_store.events)') >= 0 AS dropped;
SELECT count(*) AS merge_patch_left FROM event_store.snapshots WHERE reducer LIKE 'event_store.merge_patch%';

-- Turning the policy off.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', NULL);
SELECT event_store.fold_to_version('event_store.merge_patch(jsonb,event_store.events)', NULL::jsonb, 'snap-1', 40) IS NOT NULL AS folded;
SELECT count(*) AS merge_patch_left FROM event_store.snapshots WHERE reducer LIKE 'event_store.merge_patch%';

-- No snapshots are written in a read-only transaction; the answer is the same.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 5);
BEGIN READ ONLY;
SELECT event_store.state_as_of('snap-1', (SELECT t FROM cuts WHERE v = 30)) = (SELECT mp_t FROM reference WHERE v = 30) AS same;
COMMIT;
SELECT count(*) AS merge_patch_left FROM event_store.snapshots WHERE reducer LIKE 'event_store.merge_patch%';
-- ... nor by a role that may not insert into event_store.snapshots.
SELECT t AS t30, mp_t AS mp30 FROM reference WHERE v = 30 \gset
CREATE ROLE snap_reader;
GRANT USAGE ON SCHEMA event_store TO snap_reader;
-- Since 1.5 PUBLIC may execute nothing of the extension: grant it all.
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA event_store TO snap_reader;
GRANT SELECT ON event_store.events, event_store.streams, event_store.reducers, event_store.snapshots TO snap_reader;
SET ROLE snap_reader;
SELECT event_store.state_as_of('snap-1', :'t30') = :'mp30'::jsonb AS same;
RESET ROLE;
SELECT count(*) AS merge_patch_left FROM event_store.snapshots WHERE reducer LIKE 'event_store.merge_patch%';
DROP OWNED BY snap_reader;
DROP ROLE snap_reader;
-- The owner's fold writes them (5, 10, ..., 30).
SELECT event_store.state_as_of('snap-1', (SELECT t FROM cuts WHERE v = 30)) = (SELECT mp_t FROM reference WHERE v = 30) AS same;
SELECT array_agg(version ORDER BY version) AS versions FROM event_store.snapshots WHERE reducer LIKE 'event_store.merge_patch%';
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', NULL);

-- Bad policy values.
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', 0);
SELECT event_store.set_snapshot_policy('event_store.merge_patch(jsonb,event_store.events)', -3);
SELECT event_store.set_snapshot_policy(NULL, 5);

-- The snapshot tables are dumped with the data (pg_extension_config_dump).
SELECT c.relname FROM pg_extension e, unnest(e.extconfig) AS cfg(oid) JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'event_store' AND c.relname IN ('snapshots', 'reducers') ORDER BY 1;

\c :orig_db
DROP DATABASE es_snapshots_test;
