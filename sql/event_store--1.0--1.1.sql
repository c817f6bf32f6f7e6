-- event_store 1.0 -> 1.1: temporal reducers (fold, state as of, snapshots,
-- bitemporal queries).  See README "Temporal reducers" and docs/temporal.md.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.1'" to load this file. \quit

------------------------------------------------------------------------------
-- Reducers' settings and snapshots.  Reducers are keyed by their
-- schema-qualified signature as text (event_store._reducer_key), not by a
-- regprocedure column: pg_upgrade refuses reg* columns other than regclass,
-- regrole and regtype, and text survives dump/restore.
------------------------------------------------------------------------------
CREATE FUNCTION event_store._reducer_key(reducer regprocedure) RETURNS text
AS 'MODULE_PATHNAME', 'es_reducer_key' LANGUAGE C STABLE STRICT PARALLEL SAFE;

CREATE TABLE event_store.reducers (
    reducer        text PRIMARY KEY,
    snapshot_every int CHECK (snapshot_every > 0),
    revision_tag   text
);
SELECT pg_catalog.pg_extension_config_dump('event_store.reducers', '');
COMMENT ON TABLE event_store.reducers IS 'Per reducer: automatic snapshot interval and revision tag. Set with set_snapshot_policy() and set_reducer_revision().';

CREATE TABLE event_store.snapshots (
    stream_id      text        NOT NULL,
    reducer        text        NOT NULL,
    revision       text        NOT NULL,
    initial_digest text        NOT NULL,
    version        bigint      NOT NULL CHECK (version >= 1),
    recorded_at    timestamptz NOT NULL,
    state          text,
    taken_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    PRIMARY KEY (stream_id, reducer, revision, initial_digest, version)
);
SELECT pg_catalog.pg_extension_config_dump('event_store.snapshots', '');
REVOKE ALL ON event_store.snapshots FROM PUBLIC;
COMMENT ON TABLE event_store.snapshots IS 'State of a reducer over a stream after a version (text form of the state type). A fold starts from the newest valid one at or before its cut.';

------------------------------------------------------------------------------
-- Folds (src/fold.c).  VOLATILE: a fold may write automatic snapshots, and
-- reducers are the caller's arbitrary functions.  Not STRICT: a NULL
-- initial state is a valid state.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.fold(reducer regprocedure, initial anyelement, stream_id text,
                                 as_of timestamptz DEFAULT NULL)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'es_fold' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.fold(regprocedure, anyelement, text, timestamptz) IS
  'Fold the stream''s events recorded at or before as_of (all when NULL), in version order, with reducer (state S, event event_store.events) RETURNS S.';

CREATE FUNCTION event_store.fold_to_version(reducer regprocedure, initial anyelement, stream_id text,
                                            version bigint)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'es_fold_to_version' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.fold_to_version(regprocedure, anyelement, text, bigint) IS
  'Fold the stream''s events up to and including version (all when NULL).';

CREATE FUNCTION event_store.fold_bitemporal(reducer regprocedure, initial anyelement, stream_id text,
                                            valid_at timestamptz, known_at timestamptz)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'es_fold_bitemporal' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.fold_bitemporal(regprocedure, anyelement, text, timestamptz, timestamptz) IS
  'Fold the events recorded at or before known_at that occurred at or before valid_at, in (occurred_at, stream_version) order. NULL: no limit.';

CREATE FUNCTION event_store.take_snapshot(reducer regprocedure, initial anyelement, stream_id text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'es_take_snapshot' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.take_snapshot(regprocedure, anyelement, text) IS
  'Fold the whole stream and store a snapshot at its last version; returns that version (0: no events).';

CREATE FUNCTION event_store.stream_partitions(stream_id text, as_of timestamptz DEFAULT NULL)
RETURNS SETOF regclass
AS 'MODULE_PATHNAME', 'es_stream_partitions' LANGUAGE C STABLE;
COMMENT ON FUNCTION event_store.stream_partitions(text, timestamptz) IS
  'The partitions a fold of the stream up to as_of reads, in the order it reads them.';

------------------------------------------------------------------------------
-- Built-in reducers (src/reducers.c).  Pure functions of their arguments.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.merge_patch(state jsonb, event event_store.events) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_merge_patch' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store.merge_patch(jsonb, event_store.events) IS
  'Built-in reducer: the state JSON merge-patched (RFC 7386) with the event''s data. NULL state: {}.';

CREATE FUNCTION event_store.jsonb_merge_patch(target jsonb, patch jsonb) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_jsonb_merge_patch' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store.jsonb_merge_patch(jsonb, jsonb) IS
  'RFC 7386 JSON merge patch of target with patch. NULL patch: target unchanged.';

CREATE FUNCTION event_store.last_by_type(state jsonb, event event_store.events) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_last_by_type' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store.last_by_type(jsonb, event_store.events) IS
  'Built-in reducer: {event_type: data of the last event of that type}.';

CREATE FUNCTION event_store.count_by_type(state jsonb, event event_store.events) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_count_by_type' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store.count_by_type(jsonb, event_store.events) IS
  'Built-in reducer: {event_type: number of events of that type}.';

CREATE FUNCTION event_store.event_count(state bigint, event event_store.events) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_event_count' LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store.event_count(bigint, event_store.events) IS
  'Built-in reducer: the number of events (NULL state counts from 0).';

CREATE AGGREGATE event_store.merge_patch_agg(jsonb) (
    SFUNC = event_store.jsonb_merge_patch,
    STYPE = jsonb,
    PARALLEL = SAFE
);
COMMENT ON AGGREGATE event_store.merge_patch_agg(jsonb) IS
  'JSON merge patch (RFC 7386) of the values in order: use with ORDER BY, e.g. merge_patch_agg(data ORDER BY stream_version).';

------------------------------------------------------------------------------
-- The JSON merge-patch state of a stream (state_as_of, state_bitemporal).
------------------------------------------------------------------------------
CREATE FUNCTION event_store.state_as_of(stream_id text, as_of timestamptz DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_state_as_of' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.state_as_of(text, timestamptz) IS
  'The stream''s data merge-patched (RFC 7386) in version order over the events recorded at or before as_of; NULL when there are none.';

CREATE FUNCTION event_store.state_bitemporal(stream_id text, valid_at timestamptz, known_at timestamptz)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_state_bitemporal' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.state_bitemporal(text, timestamptz, timestamptz) IS
  'The merge-patch state as of valid time valid_at (occurred_at), as known at transaction time known_at (recorded_at).';

------------------------------------------------------------------------------
-- Revisions and snapshot policy
------------------------------------------------------------------------------
CREATE FUNCTION event_store._definition_revision(reducer regprocedure, tag text) RETURNS text
AS 'MODULE_PATHNAME', 'es_reducer_revision' LANGUAGE C STABLE PARALLEL SAFE;

CREATE FUNCTION event_store.reducer_revision(reducer regprocedure) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE STRICT
RETURN event_store._definition_revision(reducer_revision.reducer,
         (SELECT r.revision_tag FROM event_store.reducers r
           WHERE r.reducer = event_store._reducer_key(reducer_revision.reducer)));
COMMENT ON FUNCTION event_store.reducer_revision(regprocedure) IS
  'The reducer''s current revision: MD5 of its definition (pg_get_functiondef) and its revision tag. Snapshots of other revisions are ignored.';

CREATE FUNCTION event_store.set_reducer_revision(reducer regprocedure, tag text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF reducer IS NULL THEN
        RAISE EXCEPTION 'reducer must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    INSERT INTO event_store.reducers (reducer, revision_tag)
    VALUES (event_store._reducer_key(reducer), tag)
    ON CONFLICT ON CONSTRAINT reducers_pkey DO UPDATE SET revision_tag = excluded.revision_tag;
    RETURN event_store.reducer_revision(reducer);
END
$$;
COMMENT ON FUNCTION event_store.set_reducer_revision(regprocedure, text) IS
  'Set a tag that is part of the reducer''s revision (e.g. when a function it calls changed); returns the new revision. Old snapshots stop being used.';

CREATE FUNCTION event_store.set_snapshot_policy(reducer regprocedure, every int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF reducer IS NULL THEN
        RAISE EXCEPTION 'reducer must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF every IS NOT NULL AND every < 1 THEN
        RAISE EXCEPTION 'snapshot interval must be positive, got %', every
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass NULL to turn automatic snapshots off.';
    END IF;
    INSERT INTO event_store.reducers (reducer, snapshot_every)
    VALUES (event_store._reducer_key(reducer), every)
    ON CONFLICT ON CONSTRAINT reducers_pkey DO UPDATE SET snapshot_every = excluded.snapshot_every;
END
$$;
COMMENT ON FUNCTION event_store.set_snapshot_policy(regprocedure, int) IS
  'Automatic snapshots: a fold with this reducer stores the state at every version divisible by every (NULL: off).';

CREATE FUNCTION event_store.drop_snapshots(stream_id text DEFAULT NULL, reducer regprocedure DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
AS $$
    WITH gone AS (
        DELETE FROM event_store.snapshots s
         WHERE ($1 IS NULL OR s.stream_id = $1)
           AND ($2 IS NULL OR s.reducer = event_store._reducer_key($2))
        RETURNING 1)
    SELECT count(*) FROM gone
$$;
COMMENT ON FUNCTION event_store.drop_snapshots(text, regprocedure) IS
  'Delete snapshots of a stream and/or a reducer (all when both NULL); returns how many.';

CREATE FUNCTION event_store.drop_stale_snapshots() RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint := 0;
    k text;
    rev text;
    m bigint;
BEGIN
    FOR k IN SELECT DISTINCT s.reducer FROM event_store.snapshots s LOOP
        rev := NULL;
        BEGIN
            rev := event_store.reducer_revision(k::regprocedure);
        EXCEPTION WHEN undefined_function OR invalid_text_representation OR undefined_object THEN
            rev := NULL;        -- the reducer is gone
        END;
        DELETE FROM event_store.snapshots s
         WHERE s.reducer = k AND s.revision IS DISTINCT FROM rev;
        GET DIAGNOSTICS m = ROW_COUNT;
        n := n + m;
    END LOOP;
    RETURN n;
END
$$;
COMMENT ON FUNCTION event_store.drop_stale_snapshots() IS
  'Delete snapshots whose reducer no longer exists or has another revision now; returns how many.';
