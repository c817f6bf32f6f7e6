-- event_store 1.11 -> 1.12.  Each section names the issue and item it
-- belongs to; sections are independent of one another.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.12'" to load this file. \quit


------------------------------------------------------------------------------
-- issue 30: align upgraded installs with fresh ones
------------------------------------------------------------------------------
-- events_with_archive was created in 1.6 from e.* and a.*, which PostgreSQL
-- expands once, when the view is made: installs updated past 1.11 lack
-- the schema_version column that 1.11 added to both tables, while a fresh
-- install (sql/event_store--1.12.sql) has it.  Remade with today's columns;
-- its privileges are as before (none but the owner's).
DROP VIEW event_store.events_with_archive;
CREATE VIEW event_store.events_with_archive AS
SELECT e.*, false AS archived FROM event_store.events e
UNION ALL
SELECT a.*, true AS archived FROM event_store_archive.events a;
COMMENT ON VIEW event_store.events_with_archive IS 'Every event, attached or archived; the last column says which.';
REVOKE ALL ON event_store.events_with_archive FROM PUBLIC;

-- The partitions that CREATE EXTENSION event_store VERSION '1.0' premade
-- were extension members when _create_partition_for revoked UPDATE, DELETE
-- and TRUNCATE on them, so PostgreSQL recorded that ACL as their initial
-- privileges (pg_init_privs); 1.0 then removed them from the extension but
-- the record stayed.  pg_dump dumps a partition's ACL as the difference
-- from that record, i.e. nothing, and a restore gave the owner UPDATE,
-- DELETE and TRUNCATE on those partitions again.  Partitions are not
-- members: they have no initial privileges, as in a fresh install.
DELETE FROM pg_catalog.pg_init_privs ip
 WHERE ip.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
   AND ip.privtype OPERATOR(pg_catalog.=) 'e'
   AND ip.objoid IN (SELECT i.inhrelid FROM pg_catalog.pg_inherits i
                      WHERE i.inhparent IN ('event_store.events'::pg_catalog.regclass,
                                            'event_store_archive.events'::pg_catalog.regclass))
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid OPERATOR(pg_catalog.=) ip.objoid
                      AND d.deptype OPERATOR(pg_catalog.=) 'e');


------------------------------------------------------------------------------
-- issue 29: a new group member starts where its own group left off
------------------------------------------------------------------------------
-- Where a member continues when it polls, acks or nacks: its own
-- checkpoint.  A member without one (new, or new to this group size) must
-- not skip an event of its streams that no one acknowledged.  Until 1.12 it
-- started at the lowest checkpoint of the whole subscription, which counted
-- the other members of its own size: they handle other streams, so member
-- 1 of 2 started past its own events once member 0 had acknowledged them.
-- Now only a group size other than its own counts, and only one whose
-- members 0 .. size-1 all have checkpoints: every event up to the lowest
-- of them was handled by the member that had its stream.  Of several such
-- sizes the highest such position wins; without one, the beginning of the
-- log.  A resize thus redelivers (at least once), never skips.
CREATE OR REPLACE FUNCTION event_store._subscription_position(name text, member int, size int) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(
    (SELECT c.position FROM event_store.subscription_checkpoints c
      WHERE c.name = $1 AND c.consumer_group_member = $2 AND c.consumer_group_size = $3),
    (SELECT max(g.handled) FROM (
        SELECT min(c.position) AS handled
          FROM event_store.subscription_checkpoints c
         WHERE c.name = $1 AND c.consumer_group_size <> $3
           AND c.consumer_group_member >= 0 AND c.consumer_group_member < c.consumer_group_size
         GROUP BY c.consumer_group_size
        HAVING count(*) = c.consumer_group_size) g),
    0);

-- issue 27: upcasting per column, not per composite (speed)
-- The readers passed every row through event_store._upcast() as a
-- composite (built from the scanned row, converted from the partition's row
-- type, split back into its columns): about 0.4 us a row even for types
-- without a chain.  They now compute only the three columns a chain can
-- change, from (event_type, schema_version), answered from the backend's
-- cache of the registry (src/upcast.c, "Per-column upcasting"); each call
-- site remembers its last (type, version), so a row of a type without a
-- chain costs a compare per column.  Only a chain with a step that takes
-- the whole event still builds the composite, for that row only.
CREATE FUNCTION event_store._upcast_kind(event_type text, schema_version int) RETURNS int
AS 'MODULE_PATHNAME', 'es_upcast_kind' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_kind(text, int) IS
  'What upcasting an event of this type and schema version does: 0 nothing, 1 changes the data only (event_store._upcast_data), 2 a step takes the whole event (event_store._upcast).';
CREATE FUNCTION event_store._upcast_type(event_type text, schema_version int) RETURNS text
AS 'MODULE_PATHNAME', 'es_upcast_type' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_type(text, int) IS
  'The event type an event of this type and schema version has once upcast (renames of its chain).';
CREATE FUNCTION event_store._upcast_version(event_type text, schema_version int) RETURNS int
AS 'MODULE_PATHNAME', 'es_upcast_version' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_version(text, int) IS
  'The schema version an event of this type and schema version has once upcast.';
CREATE FUNCTION event_store._upcast_data(event_type text, schema_version int, data jsonb,
                                         stream_id text, stream_version bigint) RETURNS jsonb
AS 'MODULE_PATHNAME', 'es_upcast_data' LANGUAGE C STABLE PARALLEL SAFE;
COMMENT ON FUNCTION event_store._upcast_data(text, int, jsonb, text, bigint) IS
  'The data of an event upcast through a chain whose steps need only the data (event_store._upcast_kind 1); stream_id and stream_version name the event in errors.';
REVOKE ALL ON FUNCTION event_store._upcast_kind(text, int), event_store._upcast_type(text, int),
                       event_store._upcast_version(text, int),
                       event_store._upcast_data(text, int, jsonb, text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._upcast_kind(text, int), event_store._upcast_type(text, int),
                          event_store._upcast_version(text, int),
                          event_store._upcast_data(text, int, jsonb, text, bigint) TO event_store_reader;

-- (_read_stream_upcast: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter at no cost for live streams" below.)

-- (_read_stream_backward_upcast: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter at no cost for live streams" below.)

-- issue 27: read_all, read_category and poll upcast per column too (as
-- read_stream above): each upcasting branch is now the 1.10 statement of
-- the other branch as a subquery, with the three columns a chain can change
-- computed over its rows.  poll's event_types filter (a subscription's
-- types) matches the type an event reads as, after upcasting: a type
-- renamed by an upcaster is subscribed to by its new name.
-- (read_all: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- (read_category: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- (poll: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- issue 27 item 2: read_by_tags returns its events upcast, and its types
-- filter matches the type an event reads as (after the renames of its
-- chain), like append_if's condition_types (src/consistency.c): a decision
-- that reads by a type's new name sees the events stored under the old
-- one, and its append condition with the same names sees them too.  While
-- nothing is to be upcast the planner keeps only the 1.11 statement
-- (_upcasting_planned() folded to a constant, as read_stream's body).
CREATE OR REPLACE FUNCTION event_store.read_by_tags(
    tags text[], types text[] DEFAULT NULL, after_position bigint DEFAULT 0)
RETURNS SETOF event_store.tagged_event
LANGUAGE sql STABLE
AS $$
    (SELECT * FROM (
        SELECT e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
               e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
               pg_catalog.max(e.global_position) OVER ()
          FROM event_store.events e
         WHERE e.tags OPERATOR(pg_catalog.@>) $1
           AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) ANY ($2))
           AND e.global_position OPERATOR(pg_catalog.>) $3
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                            AND h.truncate_before IS NOT NULL
                            AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                 OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                 OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.global_position USING OPERATOR(pg_catalog.<)) p
      WHERE NOT event_store._upcasting_planned())
    UNION ALL
    (SELECT * FROM (
        SELECT e.global_position, e.stream_id, e.stream_version,
               event_store._upcast_type(e.event_type, e.schema_version),
               CASE event_store._upcast_kind(e.event_type, e.schema_version)
                    WHEN 0 THEN e.data
                    WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                    ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                  e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                  e.tags, e.schema_version)::event_store.events)).data END,
               e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.tags,
               pg_catalog.max(e.global_position) OVER ()
          FROM event_store.events e
         WHERE e.tags OPERATOR(pg_catalog.@>) $1
           AND ($2 IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) OPERATOR(pg_catalog.=) ANY ($2))
           AND e.global_position OPERATOR(pg_catalog.>) $3
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                            AND h.truncate_before IS NOT NULL
                            AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                                 OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                                 OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.global_position USING OPERATOR(pg_catalog.<)) u
      WHERE event_store._upcasting_planned())
$$;

-- issue 28: scavenge.  Rewrites closed partitions of the log without the
-- events that delete_stream(), truncate_stream() and stream metadata
-- (max_age, max_count) hide (src/scavenge.c): surviving rows are copied
-- frozen into a new event_store_log table, which replaces the partition by
-- a sanctioned DETACH/DROP and an ATTACH in the same transaction; one
-- 'PartitionScavenged' event per partition rewritten goes to
-- '$audit-scavenge'.  Admin only.  run_maintenance() calls it (step
-- 'scavenge') when any stream hides events.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.scavenge(partition regclass DEFAULT NULL) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_scavenge' LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION event_store.scavenge(regclass) IS
  'Rewrite a closed partition of the log (NULL: every closed partition) without the events deletions, truncations, max_age and max_count hide; returns the events removed; audited in ''$audit-scavenge''.';
REVOKE ALL ON FUNCTION event_store.scavenge(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.scavenge(regclass) TO event_store_admin;

-- issue 28: scavenge -- the maintenance step.
CREATE OR REPLACE FUNCTION event_store._maintenance_step(step text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t0     timestamptz := clock_timestamp();
    result text;
    err    text;
BEGIN
    BEGIN
        CASE step
        WHEN 'premake_partitions' THEN
            result := event_store.premake_partitions() || ' partitions created';
        WHEN 'snapshots' THEN
            result := event_store.take_due_snapshots() || ' snapshots taken';
        WHEN 'projections' THEN
            IF to_regprocedure('event_store.run_projection(text,integer)') IS NULL THEN
                result := 'skipped: no async projections in this version';
            ELSE
                result := event_store.run_due_projections() || ' events handled';
            END IF;
        WHEN 'retention' THEN
            result := (SELECT count(*) FROM event_store.apply_retention()) || ' partitions archived';
        WHEN 'scavenge' THEN
            -- a lifecycle policy: some stream hides events (deleted,
            -- truncated, max_age or max_count)
            IF EXISTS (SELECT FROM event_store.streams h WHERE h.truncate_before IS NOT NULL) THEN
                result := event_store.scavenge() || ' events removed';
            ELSE
                result := 'skipped: no stream hides events';
            END IF;
        END CASE;
    EXCEPTION WHEN OTHERS THEN
        err := SQLERRM;
        RAISE WARNING 'event_store maintenance step % failed: %', step, err;
    END;
    INSERT INTO event_store.maintenance_status AS m (step, ran_at, duration, result, error)
    VALUES (step, t0, clock_timestamp() - t0, result, err)
    ON CONFLICT ON CONSTRAINT maintenance_status_pkey DO UPDATE
       SET ran_at = excluded.ran_at, duration = excluded.duration,
           result = excluded.result, error = excluded.error;
    RETURN coalesce(result, 'failed: ' || err);
END
$$;
REVOKE ALL ON FUNCTION event_store._maintenance_step(text) FROM PUBLIC;

CREATE OR REPLACE PROCEDURE event_store.run_maintenance()
LANGUAGE plpgsql
AS $$
DECLARE
    lock_key constant bigint := 7236178623481234561;   -- 'event_store.run_maintenance'
    step text;
BEGIN
    -- Fails here, before the session lock is taken, when called inside a
    -- transaction block (a lock taken first would outlive the error).
    COMMIT;
    IF NOT pg_catalog.pg_try_advisory_lock(lock_key) THEN
        RAISE NOTICE 'event_store maintenance is already running in another session: skipped';
        RETURN;
    END IF;
    FOREACH step IN ARRAY ARRAY['premake_partitions', 'snapshots', 'projections', 'retention', 'scavenge'] LOOP
        RAISE NOTICE 'event_store maintenance: %: %', step, event_store._maintenance_step(step);
        COMMIT;
    END LOOP;
    PERFORM pg_catalog.pg_advisory_unlock(lock_key);
END
$$;
COMMENT ON PROCEDURE event_store.run_maintenance() IS
  'Premake partitions, take due snapshots, run async projections, apply retention, scavenge hidden events (when any stream hides some); commits after each step; a concurrent second run skips. Results in event_store.maintenance_status.';
REVOKE ALL ON PROCEDURE event_store.run_maintenance() FROM PUBLIC;

------------------------------------------------------------------------------
-- issue 28: scavenge -- appends get HOT updates of streams back.  1.11's
-- partial index for the readers' lifecycle check INCLUDEd version (and
-- truncate_before, max_count, max_age) for index-only probes; an indexed
-- column blocks HOT updates of every row, hidden or not, so each append's
-- version bump wrote new entries into every index of streams (measured:
-- 0 of 2000 appends HOT, 1793 of 2000 with this index).  The probe of a
-- stream that hides nothing is the same index miss; only streams that do
-- hide events pay a heap fetch.
------------------------------------------------------------------------------
DROP INDEX event_store.streams_truncated_idx;
CREATE INDEX streams_truncated_idx ON event_store.streams (stream_id)
    WHERE truncate_before IS NOT NULL;

-- --------------------------------------------------------------------------
-- issue 28: lifecycle filter at no cost for live streams
-- --------------------------------------------------------------------------

-- read_stream and read_stream_backward (the four statements the planner
-- support puts in their place): the stream's row is read once, in a
-- MATERIALIZED CTE that computes the bounds of the read from it, instead
-- of four scalar subqueries on event_store.streams and up to three calls
-- of _first_visible_version() (a SQL function with a subquery, which the
-- planner does not inline: each call planned its body again, every read;
-- 1.11 read 100 events at 2.5x the time of 1.10's read_stream).  The same
-- conditions on the same columns: created_at/updated_at bound recorded_at
-- as in 1.10, max_age raises the first (GREATEST ignores NULLs);
-- truncate_before and max_count raise the first version; backward, the two
-- lower bounds are one (v > a AND v >= b is v > GREATEST(a, b - 1)).  A
-- stream without a row has NULL bounds: no events, as before.  The bounds
-- are InitPlan parameters (the CTE is scanned, the table is not): index
-- conditions on (stream_id, stream_version) and run-time partition pruning
-- by recorded_at, generic plan or custom, as in 1.10.  Still one inlinable
-- statement each.

CREATE OR REPLACE FUNCTION event_store._read_stream_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    WITH s AS MATERIALIZED (
        SELECT CASE WHEN $2 IS NOT NULL
                    THEN GREATEST($2, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1) END AS first_version,
               CASE WHEN $3 IS NULL
                      OR s.max_age IS NOT NULL
                      OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-)
                             GREATEST($2, 1, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1))
                    THEN 9223372036854775807
                    ELSE GREATEST($2, 1, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1)
                         OPERATOR(pg_catalog.+) $3 END AS past_version,
               GREATEST(s.created_at, pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age) AS from_time,
               s.updated_at AS to_time
          FROM event_store.streams s
         WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.>=) (SELECT s.first_version FROM s)
       AND e.stream_version OPERATOR(pg_catalog.<) (SELECT s.past_version FROM s)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.from_time FROM s)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.to_time FROM s)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    WITH s AS MATERIALIZED (
        SELECT CASE WHEN $2 IS NOT NULL
                    THEN GREATEST($2, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1) END AS first_version,
               CASE WHEN $3 IS NULL
                      OR s.max_age IS NOT NULL
                      OR $3 OPERATOR(pg_catalog.>=) (9223372036854775807 OPERATOR(pg_catalog.-)
                             GREATEST($2, 1, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1))
                    THEN 9223372036854775807
                    ELSE GREATEST($2, 1, s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1)
                         OPERATOR(pg_catalog.+) $3 END AS past_version,
               GREATEST(s.created_at, pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age) AS from_time,
               s.updated_at AS to_time
          FROM event_store.streams s
         WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
    SELECT e.global_position, e.stream_id, e.stream_version,
           event_store._upcast_type(e.event_type, e.schema_version),
           CASE event_store._upcast_kind(e.event_type, e.schema_version)
                WHEN 0 THEN e.data
                WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                              e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                              e.tags, e.schema_version)::event_store.events)).data END,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
           event_store._upcast_version(e.event_type, e.schema_version)
      FROM (
        SELECT e.*
          FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1
           AND e.stream_version OPERATOR(pg_catalog.>=) (SELECT s.first_version FROM s)
           AND e.stream_version OPERATOR(pg_catalog.<) (SELECT s.past_version FROM s)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.from_time FROM s)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.to_time FROM s)
         ORDER BY e.stream_version USING OPERATOR(pg_catalog.<)
         LIMIT $3) e
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_backward_plain(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    WITH s AS MATERIALIZED (
        SELECT GREATEST(CASE WHEN $3 IS NULL THEN 0
                             ELSE GREATEST(coalesce($2, s.version), 0) OPERATOR(pg_catalog.-) GREATEST($3, 0) END,
                        coalesce(GREATEST(s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1), 1)
                        OPERATOR(pg_catalog.-) 1) AS before_version,
               GREATEST(s.created_at, pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age) AS from_time,
               s.updated_at AS to_time
          FROM event_store.streams s
         WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
    SELECT e.*
      FROM event_store.events e
     WHERE e.stream_id OPERATOR(pg_catalog.=) $1
       AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
       AND e.stream_version OPERATOR(pg_catalog.>) (SELECT s.before_version FROM s)
       AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.from_time FROM s)
       AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.to_time FROM s)
     ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
     LIMIT $3
$$;

CREATE OR REPLACE FUNCTION event_store._read_stream_backward_upcast(stream_id text, from_version bigint, max_count int)
RETURNS SETOF event_store.events
LANGUAGE sql STABLE
AS $$
    WITH s AS MATERIALIZED (
        SELECT GREATEST(CASE WHEN $3 IS NULL THEN 0
                             ELSE GREATEST(coalesce($2, s.version), 0) OPERATOR(pg_catalog.-) GREATEST($3, 0) END,
                        coalesce(GREATEST(s.truncate_before, s.version OPERATOR(pg_catalog.-) s.max_count OPERATOR(pg_catalog.+) 1), 1)
                        OPERATOR(pg_catalog.-) 1) AS before_version,
               GREATEST(s.created_at, pg_catalog.now() OPERATOR(pg_catalog.-) s.max_age) AS from_time,
               s.updated_at AS to_time
          FROM event_store.streams s
         WHERE s.stream_id OPERATOR(pg_catalog.=) $1)
    SELECT e.global_position, e.stream_id, e.stream_version,
           event_store._upcast_type(e.event_type, e.schema_version),
           CASE event_store._upcast_kind(e.event_type, e.schema_version)
                WHEN 0 THEN e.data
                WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                              e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                              e.tags, e.schema_version)::event_store.events)).data END,
           e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
           event_store._upcast_version(e.event_type, e.schema_version)
      FROM (
        SELECT e.*
          FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1
           AND e.stream_version OPERATOR(pg_catalog.<=) coalesce($2, 9223372036854775807)
           AND e.stream_version OPERATOR(pg_catalog.>) (SELECT s.before_version FROM s)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.from_time FROM s)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.to_time FROM s)
         ORDER BY e.stream_version USING OPERATOR(pg_catalog.>)
         LIMIT $3) e
$$;

-- read_category and read_all: with a stream hiding events among those
-- read, 1.11 probed the streams index for every event it scanned (1.8x
-- the read of a category without).  Now, while at most 1,000 of the
-- streams read hide events (counted once per call), they are read once
-- into a hashed subplan (NOT IN: stream_id is never NULL): an event of any
-- other stream is visible at a hash probe.  The events of the wholly
-- hidden ones among them (deleted, or truncated past their end: version <
-- truncate_before) are refused at a second hash probe; only the remaining
-- streams' events (truncated, max_age, max_count) take the per-event
-- check.  Over 1,000 (building the hash would cost more than it saves),
-- the per-event check as in 1.11.  The LIMIT 1001 keeps the planner's
-- estimate of the set small enough to hash; the count and the read are
-- separate statements, as the 1.11 test for none was: a deletion between
-- the two is seen or not, as one committing during the read.

-- How many streams of these categories (NULL: any stream) hide events,
-- counted up to up_to + 1.  The partial indexes answer it; seq scans are
-- off because the planner expects a scan of a large streams table to stop
-- early, which it never does when the answer is none (the common case).
CREATE FUNCTION event_store._streams_hiding(categories text[], up_to int) RETURNS int
LANGUAGE sql STABLE
SET enable_seqscan = off
RETURN CASE WHEN categories IS NULL
            THEN (SELECT pg_catalog.count(*) FROM (SELECT FROM event_store.streams h
                                                    WHERE h.truncate_before IS NOT NULL
                                                    LIMIT up_to OPERATOR(pg_catalog.+) 1) x)
            ELSE (SELECT pg_catalog.count(*) FROM (SELECT FROM event_store.streams h
                                                    WHERE h.truncate_before IS NOT NULL
                                                      AND h.category OPERATOR(pg_catalog.=) ANY (categories)
                                                    LIMIT up_to OPERATOR(pg_catalog.+) 1) x) END;
REVOKE ALL ON FUNCTION event_store._streams_hiding(text[], int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._streams_hiding(text[], int) TO event_store_reader;

-- (read_category: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- (read_all: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- poll: the same hash probes as read_category and read_all (above), over
-- the subscription's categories (all streams when it has none); each
-- changed condition keeps its lines, so that error context line numbers
-- of poll stay as they were.
-- (poll: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

-- issue 29: live projection workers.  Preloaded, a launcher and up to
-- event_store.projection_workers background workers run the async
-- projections of each database as events arrive (src/projection_worker.c,
-- docs/projections.md "Live async projections").  Here: the workers'
-- status, the trigger that asks for a worker when the registry changes,
-- and projection_status's worker_pid / worker_last_run_at.
------------------------------------------------------------------------------
CREATE FUNCTION event_store.projection_workers(
    OUT datid oid, OUT state text, OUT pid int, OUT state_since timestamptz,
    OUT started_at timestamptz, OUT last_run_at timestamptz,
    OUT events_applied bigint, OUT last_error text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'es_projection_workers' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.projection_workers() IS
  'Live projection workers, one row per database the launcher knows (empty when event_store is not preloaded): state none|idle|wanted|starting|running|failed, the running worker''s pid, its start, last round, events applied since the server started, and the last failed batch.';
REVOKE ALL ON FUNCTION event_store.projection_workers() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.projection_workers() TO event_store_reader;

-- A change of the registry (a new async projection) asks for a worker at
-- commit, even in a database last seen without async projections.
CREATE FUNCTION event_store._projection_worker_kick() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_projection_worker_kick' LANGUAGE C;
REVOKE ALL ON FUNCTION event_store._projection_worker_kick() FROM PUBLIC;
CREATE TRIGGER projection_registry_worker
    AFTER INSERT OR UPDATE ON event_store.projection_registry
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._projection_worker_kick();

CREATE OR REPLACE VIEW event_store.projection_status AS
SELECT p.name,
       p.mode,
       p.checkpoint,
       p.lag AS lag_events,
       CASE WHEN p.mode = 'async' THEN
            coalesce(pg_catalog.now() - (SELECT e.recorded_at FROM event_store.events e
                                           WHERE e.global_position > p.checkpoint
                                           ORDER BY e.global_position LIMIT 1),
                     interval '0')
       END AS lag_time,
       p.last_run_at,
       p.events_processed,
       (SELECT count(*) FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.state = 'parked') AS parked,
       (SELECT count(*) FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.state = 'waiting') AS waiting,
       (SELECT r.last_error FROM event_store.projection_retries r
         WHERE r.name = p.name AND r.last_failed_at IS NOT NULL
         ORDER BY r.last_failed_at DESC, r.global_position DESC LIMIT 1) AS last_error,
       w.pid AS worker_pid,
       w.last_run_at AS worker_last_run_at
  FROM event_store.projections p
  LEFT JOIN (SELECT x.pid, x.last_run_at FROM event_store.projection_workers() x
              WHERE x.datid OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                AND x.state OPERATOR(pg_catalog.=) 'running') w
         ON p.mode = 'async'
 ORDER BY p.name;
COMMENT ON VIEW event_store.projection_status IS
  'Projections: checkpoint, lag in events and in time (age of the oldest unprocessed event; async only), last run; events parked and waiting for a retry, and the last handler error; for async projections, the pid and last round of the live worker serving the database (NULL: none runs now).';

------------------------------------------------------------------------------
-- issue 28: hidden retries
--
-- poll() delivered a retried (nacked) or held event even when its stream
-- had been soft- or hard-deleted or truncated past it after the nack, or
-- when max_count or max_age now hide it: the retries were read by position
-- without the lifecycle check that new events get.  poll() now drops such
-- rows (state 'waiting', of the polling member's streams) from
-- subscription_retries before it picks the retries, when _streams_hiding()
-- says a stream of the subscription hides events.  Dropped, not kept: a
-- hidden row would otherwise hold back every later, visible event of its
-- stream forever.  Parked rows stay (parked_events is the operator's
-- record; replay_parked() makes them waiting, and the next poll drops
-- them).  Only this block differs from poll's definition above.
------------------------------------------------------------------------------
-- (poll: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)

------------------------------------------------------------------------------
-- issue 29: zero-downtime rebuilds
------------------------------------------------------------------------------
-- A blue/green rebuild builds a new version of a projection's read model in
-- another table while the live one keeps being updated (inline by appends,
-- async by run_projection()).  The new version has its own checkpoint here
-- and is filled from the gap-free feed by catch_up_projection() (C), with
-- event_store.projection_target() naming its table to the handler;
-- swap_projection() finishes the catch-up while appends wait and swaps the
-- two tables' names in one transaction, so readers see the old model or
-- the new one, never a partial one.  One row while a rebuild is under way.
CREATE TABLE event_store.projection_versions (
    name             text PRIMARY KEY REFERENCES event_store.projection_registry (name) ON DELETE CASCADE,
    live_table       text NOT NULL,
    new_table        text NOT NULL,
    position         bigint NOT NULL DEFAULT 0,
    events_processed bigint NOT NULL DEFAULT 0,
    started_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at       timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('event_store.projection_versions', '');
COMMENT ON TABLE event_store.projection_versions IS
  'Blue/green rebuilds under way: the live table readers use, the new version''s table and the position it is built up to. Written by rebuild_projection(into_table => ...), catch_up_projection(), swap_projection().';
REVOKE ALL ON TABLE event_store.projection_versions FROM PUBLIC;
GRANT SELECT ON event_store.projection_versions TO event_store_reader;
GRANT INSERT, UPDATE, DELETE ON event_store.projection_versions TO event_store_admin;

-- Is this event hidden from reads by its stream's lifecycle (deleted,
-- truncated, max_count, max_age)?  The predicate of the feeds' and tag
-- reads' anti-join, as one function that rebuilds use (issue 28 leftover:
-- rebuilds replayed hidden events).  Inlined by the planner.
CREATE FUNCTION event_store._event_hidden(stream_id text, stream_version bigint, recorded_at timestamptz)
RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
RETURN EXISTS (SELECT FROM event_store.streams h
                WHERE h.stream_id OPERATOR(pg_catalog.=) $1
                  AND h.truncate_before IS NOT NULL
                  AND ($2 OPERATOR(pg_catalog.<) h.truncate_before
                       OR $2 OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                       OR $3 OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)));
REVOKE ALL ON FUNCTION event_store._event_hidden(text, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._event_hidden(text, bigint, timestamptz) TO event_store_reader, event_store_admin;

-- The table a handler or reset function writes into: the new version's
-- during the calls of a blue/green rebuild, else the argument (the live
-- table as the handler names it).
CREATE FUNCTION event_store.projection_target(live text DEFAULT NULL) RETURNS text
AS 'MODULE_PATHNAME', 'es_projection_target' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.projection_target(text) IS
  'In a projection handler or reset function: the table to write into (the new version''s during a blue/green rebuild, else live).';
GRANT EXECUTE ON FUNCTION event_store.projection_target(text) TO PUBLIC;

CREATE FUNCTION event_store.catch_up_projection(name text, max_events int DEFAULT 10000) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_catch_up_projection' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.catch_up_projection(text, int) IS
  'Blue/green rebuild: handle the next max_events events into the new version of the projection, in this transaction. Returns how many (fewer than max_events: caught up).';
REVOKE ALL ON FUNCTION event_store.catch_up_projection(text, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.catch_up_projection(text, int) TO event_store_admin;

-- SHARE lock on the log until commit: appends in flight end, new ones wait.
CREATE FUNCTION event_store._hold_appends() RETURNS void
AS 'MODULE_PATHNAME', 'es_hold_appends' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION event_store._hold_appends() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._hold_appends() TO event_store_admin;

-- An in-place rebuild while a blue/green one is under way would reset the
-- live version under the new one's feet: refused (55006).
CREATE OR REPLACE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name FOR UPDATE;
    PERFORM event_store._check_no_version(_rebuild_start.name);
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = pg_catalog.now(),
           rebuild_started_at = pg_catalog.clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    DELETE FROM event_store.projection_retries r WHERE r.name OPERATOR(pg_catalog.=) _rebuild_start.name;
    -- as the registrar (issue 25 item 2; 1.10 ran it as the caller)
    PERFORM event_store._call_projection_reset(_rebuild_start.name);
    mode := reg.mode;
END
$$;

-- 55006 when a blue/green rebuild of the projection is under way.
CREATE FUNCTION event_store._check_no_version(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v event_store.projection_versions;
BEGIN
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name OPERATOR(pg_catalog.=) _check_no_version.name;
    IF FOUND THEN
        RAISE EXCEPTION 'a rebuild of projection "%" into % is already in progress', name, v.new_table
            USING ERRCODE = 'object_in_use',
                  DETAIL = pg_catalog.format('Its new version is built up to position %s.', v.position),
                  HINT = 'Finish it with event_store.swap_projection(), or abandon it with event_store.abandon_projection_rebuild().';
    END IF;
END
$$;
REVOKE ALL ON FUNCTION event_store._check_no_version(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._check_no_version(text) TO event_store_admin;

-- Start a blue/green rebuild (the names resolved by rebuild_projection()
-- with the caller's search_path) and catch the new version up to the feed.
CREATE FUNCTION event_store._rebuild_into(name text, notice_every int, live regclass, into_oid regclass,
                                          into_schema text, into_name text) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    live_c   pg_catalog.pg_class;
    into_c   pg_catalog.pg_class;
    live_q   text;
    into_q   text;
    nonempty boolean;
    g        record;
    n        bigint;
    total    bigint := 0;
BEGIN
    PERFORM event_store._check_name(_rebuild_into.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = _rebuild_into.name) THEN
        PERFORM event_store._projection_not_found(_rebuild_into.name);
    END IF;
    -- one rebuild at a time: concurrent starts take turns here
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = _rebuild_into.name FOR UPDATE;
    PERFORM event_store._check_no_version(_rebuild_into.name);
    SELECT * INTO live_c FROM pg_class c WHERE c.oid = live;
    IF live_c.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', live USING ERRCODE = 'wrong_object_type';
    END IF;
    live_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace), live_c.relname);
    -- the handler writes the new table as its registrar, and the swap
    -- renames both: only who could do that directly may ask for it
    IF NOT pg_has_role(current_user, live_c.relowner, 'USAGE') THEN
        RAISE EXCEPTION 'must be owner of table %', live_q
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = 'A blue/green rebuild has the projection''s handler write the new table as its registrar, and the swap renames both tables: it needs the rights of their owner.';
    END IF;
    IF into_schema IS NOT NULL AND into_schema <> (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace) THEN
        RAISE EXCEPTION 'the new version must be in the schema of %', live_q
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'The swap renames the two tables; a rename does not move a table to another schema.';
    END IF;
    IF into_oid IS NOT NULL THEN
        SELECT * INTO into_c FROM pg_class c WHERE c.oid = into_oid;
        IF into_oid = live THEN
            RAISE EXCEPTION 'into_table and live_table are the same table %', live_q
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Name a new table for the new version, e.g. ' || live_c.relname || '_next.';
        END IF;
        IF into_c.relkind NOT IN ('r', 'p') THEN
            RAISE EXCEPTION '% is not a table', into_oid USING ERRCODE = 'wrong_object_type';
        END IF;
        IF into_c.relnamespace <> live_c.relnamespace THEN
            RAISE EXCEPTION 'the new version must be in the schema of %', live_q
                USING ERRCODE = 'invalid_parameter_value',
                      DETAIL = 'The swap renames the two tables; a rename does not move a table to another schema.';
        END IF;
        into_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = into_c.relnamespace), into_c.relname);
        IF NOT pg_has_role(current_user, into_c.relowner, 'USAGE') THEN
            RAISE EXCEPTION 'must be owner of table %', into_q
                USING ERRCODE = 'insufficient_privilege',
                      DETAIL = 'A blue/green rebuild has the projection''s handler write the new table as its registrar, and the swap renames both tables: it needs the rights of their owner.';
        END IF;
        EXECUTE format('SELECT EXISTS (SELECT FROM %s)', into_q) INTO nonempty;
        IF nonempty THEN
            RAISE EXCEPTION 'table % exists and is not empty', into_q
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      DETAIL = 'A new version is built from the log into an empty table.',
                      HINT = 'Name a new table (it is created like the live one) or an empty one.';
        END IF;
    ELSE
        -- created like the live table, with its table privileges and owner
        into_q := format('%I.%I', (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace), into_name);
        EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING ALL)', into_q, live_q);
        FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable
                   FROM pg_class c, aclexplode(c.relacl) a
                  WHERE c.oid = live AND a.grantee <> c.relowner LOOP
            EXECUTE format('GRANT %s ON %s TO %s%s', g.privilege_type, into_q,
                           CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END,
                           CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
        IF (SELECT c.relowner FROM pg_class c WHERE c.oid = into_q::regclass) <> live_c.relowner THEN
            EXECUTE format('ALTER TABLE %s OWNER TO %I', into_q, pg_get_userbyid(live_c.relowner));
        END IF;
    END IF;
    INSERT INTO event_store.projection_versions (name, live_table, new_table)
    VALUES (_rebuild_into.name, live_q, into_q);
    LOOP
        n := event_store.catch_up_projection(_rebuild_into.name, notice_every);
        total := total + n;
        EXIT WHEN n < notice_every;
        RAISE NOTICE 'rebuilding projection "%" into %: % events', _rebuild_into.name, into_q, total;
    END LOOP;
    RAISE NOTICE 'built projection "%" into %: % events; readers still use %', _rebuild_into.name, into_q, total, live_q
        USING HINT = 'Swap it in with event_store.swap_projection(''' || _rebuild_into.name || ''').';
    RETURN total;
END
$$;
REVOKE ALL ON FUNCTION event_store._rebuild_into(text, int, regclass, regclass, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._rebuild_into(text, int, regclass, regclass, text, text) TO event_store_admin;

-- rebuild_projection(name, notice_every) gains into_table and live_table
-- (into is a reserved word: it cannot name a parameter).  Without them it
-- rebuilds in place, as before.
DROP FUNCTION event_store.rebuild_projection(text, int);
CREATE FUNCTION event_store.rebuild_projection(name text, notice_every int DEFAULT 10000,
                                               into_table text DEFAULT NULL, live_table text DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
    parts  text[];
    live   regclass;
BEGIN
    IF notice_every IS NULL OR notice_every OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'notice_every must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF into_table IS NOT NULL OR live_table IS NOT NULL THEN
        -- blue/green: names resolved with the caller's search_path
        IF into_table IS NULL OR live_table IS NULL THEN
            RAISE EXCEPTION 'into_table and live_table go together'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'live_table is the table readers use, into_table the new version''s.';
        END IF;
        live := pg_catalog.to_regclass(live_table);
        IF live IS NULL THEN
            RAISE EXCEPTION 'table "%" does not exist', live_table USING ERRCODE = 'undefined_table';
        END IF;
        parts := pg_catalog.parse_ident(into_table);
        IF pg_catalog.cardinality(parts) OPERATOR(pg_catalog.>) 2 THEN
            RAISE EXCEPTION 'invalid table name "%"', into_table USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN event_store._rebuild_into(rebuild_projection.name, notice_every, live,
                                         pg_catalog.to_regclass(into_table),
                                         CASE WHEN pg_catalog.cardinality(parts) OPERATOR(pg_catalog.=) 2 THEN parts[1] END,
                                         parts[pg_catalog.cardinality(parts)]);
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection.name) s;
    IF m OPERATOR(pg_catalog.=) 'inline' THEN
        total := event_store._replay_inline(rebuild_projection.name, notice_every);
    ELSE
        LOOP
            n := event_store.run_projection(rebuild_projection.name, notice_every);
            total := total OPERATOR(pg_catalog.+) n;
            EXIT WHEN n OPERATOR(pg_catalog.<) notice_every;
            RAISE NOTICE 'rebuilding projection "%": % events', rebuild_projection.name, total;
        END LOOP;
    END IF;
    PERFORM event_store._rebuild_finish(rebuild_projection.name, total);
    RAISE NOTICE 'rebuilt projection "%": % events', rebuild_projection.name, total;
    RETURN total;
END
$$;
COMMENT ON FUNCTION event_store.rebuild_projection(text, int, text, text) IS
  'Reset the projection and replay every visible event in this transaction (NOTICE every notice_every events); with into_table and live_table, build a new version beside the live one instead (swap it in with swap_projection()). Returns the number of events handled.';
REVOKE ALL ON FUNCTION event_store.rebuild_projection(text, int, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.rebuild_projection(text, int, text, text) TO event_store_admin;

-- Switch readers to the new version: refuse when it is more than max_lag
-- positions behind the log (55000); otherwise hold appends (SHARE lock on
-- the log, as registry changes do), catch it up to the end, lock both
-- tables and swap their names, all in this transaction.  The old version
-- keeps the new one's former name until the caller drops it (returned).
CREATE FUNCTION event_store.swap_projection(name text, max_lag bigint DEFAULT 10000) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v        event_store.projection_versions;
    behind   bigint;
    n        bigint;
    live_c   pg_catalog.pg_class;
    new_c    pg_catalog.pg_class;
    nsp      text;
    tmp      text;
BEGIN
    PERFORM event_store._check_name(swap_projection.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = swap_projection.name) THEN
        PERFORM event_store._projection_not_found(swap_projection.name);
    END IF;
    IF max_lag IS NULL OR max_lag < 0 THEN
        RAISE EXCEPTION 'max_lag must be 0 or more' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name = swap_projection.name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" has no new version being built', swap_projection.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Start one with event_store.rebuild_projection(name, into_table => ..., live_table => ...).';
    END IF;
    behind := event_store._last_drawn_position() - v.position;
    IF behind > max_lag THEN
        RAISE EXCEPTION 'the new version of projection "%" has not caught up', swap_projection.name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = format('%s is built up to position %s, %s positions behind the log (max_lag %s).',
                                  v.new_table, v.position, behind, max_lag),
                  HINT = format('Run event_store.catch_up_projection(%L) until it returns less than its max_events, then swap.',
                                swap_projection.name);
    END IF;
    -- appends in flight finish, new ones wait: the end of the log stays put
    PERFORM event_store._hold_appends();
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = swap_projection.name FOR UPDATE;
    LOOP
        n := event_store.catch_up_projection(swap_projection.name, 10000);
        EXIT WHEN n < 10000;
    END LOOP;
    SELECT * INTO v FROM event_store.projection_versions x WHERE x.name = swap_projection.name;
    EXECUTE format('LOCK TABLE %s, %s IN ACCESS EXCLUSIVE MODE', v.live_table, v.new_table);
    SELECT * INTO live_c FROM pg_class c WHERE c.oid = v.live_table::regclass;
    SELECT * INTO new_c FROM pg_class c WHERE c.oid = v.new_table::regclass;
    nsp := (SELECT nspname FROM pg_namespace WHERE oid = live_c.relnamespace);
    tmp := 'es_swap_' || live_c.oid;
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v.live_table, tmp);
    EXECUTE format('ALTER TABLE %s RENAME TO %I', v.new_table, live_c.relname);
    EXECUTE format('ALTER TABLE %I.%I RENAME TO %I', nsp, tmp, new_c.relname);
    -- the projection continues from the new version's checkpoint; the old
    -- version's retries and parked events concern the old table
    UPDATE event_store.projection_checkpoints c
       SET position = v.position, events_processed = v.events_processed, updated_at = now(),
           rebuild_started_at = v.started_at, rebuild_target = v.position, rebuild_finished_at = clock_timestamp()
     WHERE c.name = swap_projection.name;
    DELETE FROM event_store.projection_retries r WHERE r.name = swap_projection.name;
    DELETE FROM event_store.projection_versions x WHERE x.name = swap_projection.name;
    RETURN v.new_table;
END
$$;
COMMENT ON FUNCTION event_store.swap_projection(text, bigint) IS
  'Blue/green rebuild: catch the new version up (appends wait) and swap the names of the live and new tables in this transaction. Refused (55000) when it is more than max_lag positions behind. Returns the name the old version now has.';
REVOKE ALL ON FUNCTION event_store.swap_projection(text, bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.swap_projection(text, bigint) TO event_store_admin;

-- Give up a blue/green rebuild: the live version is untouched; the new
-- table is left to the caller (returned).
CREATE FUNCTION event_store.abandon_projection_rebuild(name text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t text;
BEGIN
    PERFORM event_store._check_name(abandon_projection_rebuild.name, 'projection');
    IF NOT EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = abandon_projection_rebuild.name) THEN
        PERFORM event_store._projection_not_found(abandon_projection_rebuild.name);
    END IF;
    DELETE FROM event_store.projection_versions x WHERE x.name = abandon_projection_rebuild.name
    RETURNING x.new_table INTO t;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'projection "%" has no new version being built', abandon_projection_rebuild.name
            USING ERRCODE = 'undefined_object';
    END IF;
    RETURN t;
END
$$;
COMMENT ON FUNCTION event_store.abandon_projection_rebuild(text) IS
  'Blue/green rebuild: give it up; the live version is untouched. Returns the new version''s table, left for the caller to drop.';
REVOKE ALL ON FUNCTION event_store.abandon_projection_rebuild(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store.abandon_projection_rebuild(text) TO event_store_admin;

-- --------------------------------------------------------------------------
-- issue 26/29: poll prunes partitions again
-- --------------------------------------------------------------------------
-- poll() plans its statements for their actual values when the log has
-- many partitions (_feed_choose_plan_mode), and the feed read prunes to
-- the partitions between _feed_scan_from(checkpoint) and _feed_scan_to.
-- The read of the retries that are due (e.global_position = ANY (retries))
-- had no bound on recorded_at, the partition key: every call with a retry
-- due planned it over every partition of the log, opening each one and its
-- indexes (11 ms a call with 119 partitions, against 0.03 ms with 2), and
-- probed each partition's position index.  (Up to 1.11 that read ran on
-- every call, with or without retries: the (7b) row of test/bench/run.sh,
-- poll with 119 partitions at 0.14-0.36x the speed with 2; 1.12's issue 27
-- already skips it when no retry is due.)  Now it is bounded like the feed
-- read: from _feed_scan_from(lowest retry - 1) (the first partition that
-- can hold a position at or above the lowest retry) to scan_to (retries
-- are at or below the horizon).  Rows read are the same; only partitions
-- that cannot hold them are left out.  The new lines share existing ones,
-- so that error context line numbers of poll stay as they were.  (This
-- definition also keeps issue 28's hidden-retries block, above.)

-- poll: the same hash probes as read_category and read_all (above), over
-- the subscription's categories (all streams when it has none); each
-- changed condition keeps its lines, so that error context line numbers
-- of poll stay as they were.  The retries read only the partitions that
-- can hold them (recorded_at from _feed_scan_from(lowest retry - 1) to
-- scan_to), so that a call with many partitions plans and probes few.
-- (poll: its final 1.12 definition, with this change, is in the section
-- "issue 28: lifecycle filter, one hash probe per event" below.)
COMMENT ON FUNCTION event_store.poll(text, int, int, int) IS
  'The next events of a subscription (member): retries that are due, then events after its checkpoint from the gap-free feed, by global_position; never an event whose stream has an earlier one waiting. Does not move the checkpoint: ack() does.';

-- --------------------------------------------------------------------------
-- issue 30: drop internal functions nothing calls
-- --------------------------------------------------------------------------

-- The reads of 1.12 above no longer call them: _streams_hiding() replaced
-- _streams_hide(), and the reads compute the first visible version inline.
DROP FUNCTION event_store._first_visible_version(text);
DROP FUNCTION event_store._streams_hide(text[]);

------------------------------------------------------------------------------
-- issue 29: live blue/green rebuilds
------------------------------------------------------------------------------
-- Preloaded, the projection worker also calls catch_up_projection() for
-- every rebuild under way (never swap_projection()).  Starting one asks
-- for the database's worker at commit, as a registry change does: a
-- database with inline projections only was marked as needing none.
CREATE TRIGGER projection_versions_worker
    AFTER INSERT ON event_store.projection_versions
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._projection_worker_kick();


-- --------------------------------------------------------------------------
-- issue 28: lifecycle filter, one hash probe per event (read_category,
-- read_all, poll)
-- --------------------------------------------------------------------------

-- Is this event visible by its stream's lifecycle?  The rule of the NOT
-- EXISTS anti-join below (truncate_before, max_count, max_age), answered
-- from a hash of the streams of these categories (NULL: all) that hide
-- events, filled once per statement with its snapshot (src/lifecycle.c).
-- Replaces two hashed NOT IN / IN subplans (a scan of those streams each,
-- and about 0.1 us a row); pass categories as a constant or a variable.
CREATE FUNCTION event_store._stream_visible(categories text[], stream_id text,
                                            stream_version bigint, recorded_at timestamptz)
RETURNS boolean
AS 'MODULE_PATHNAME', 'es_stream_visible' LANGUAGE C STABLE PARALLEL RESTRICTED;
COMMENT ON FUNCTION event_store._stream_visible(text[], text, bigint, timestamptz) IS
  'Is this event visible by its stream''s lifecycle (truncate_before, max_count, max_age)?  categories (NULL: all) must be the same on every row of a statement.';
REVOKE ALL ON FUNCTION event_store._stream_visible(text[], text, bigint, timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION event_store._stream_visible(text[], text, bigint, timestamptz) TO event_store_reader;

CREATE OR REPLACE FUNCTION event_store.read_category(
    category text, after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
    scan_to   timestamptz := event_store._feed_scan_to(horizon);
    -- streams of the category with hidden events (up to 1,001): none, no
    -- per-event check; up to 1,000, one probe of a hash of them per event
    _hiding   int := event_store._streams_hiding(ARRAY[category], 1000);
    _hides    boolean := _hiding > 0;
    _few      boolean := _hiding <= 1000;
    _cats     text[] := ARRAY[category];  -- a variable: _stream_visible() fills its set once
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(_cats, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (category, after_position)
               AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (category, horizon)
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(_cats, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
             LIMIT max_count;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.read_all(after_position bigint DEFAULT 0, max_count int DEFAULT 1000)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = auto
AS $$
DECLARE
    horizon bigint := event_store.feed_horizon();
    scan_from timestamptz := event_store._feed_scan_from(after_position);
    scan_to   timestamptz := event_store._feed_scan_to(horizon);
    -- streams with hidden events (up to 1,001): none, no per-event check;
    -- up to 1,000, one probe of a hash of them per event
    _hiding   int := event_store._streams_hiding(NULL, 1000);
    _hides    boolean := _hiding > 0;
    _few      boolean := _hiding <= 1000;
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(NULL, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT max_count) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT e.*
              FROM event_store.events e
             WHERE e.global_position > after_position
               AND e.global_position <= horizon
               AND e.recorded_at >= scan_from
               AND e.recorded_at < scan_to
               AND (NOT _hides
                    OR (_few AND event_store._stream_visible(NULL, e.stream_id, e.stream_version, e.recorded_at))
                    OR NOT _few
                   AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id
                                         AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
             ORDER BY e.global_position
             LIMIT max_count;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION event_store.poll(
    name text, max_count int DEFAULT 100,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    after_position bigint;
    horizon        bigint;
    scan_from      timestamptz;
    scan_to        timestamptz;
    categories     text[];
    pending        boolean;
    retries        bigint[];
    fresh          int; _hides boolean; _hiding int; _few boolean; retry_from timestamptz;  -- (one line: error line numbers stay)
BEGIN
    PERFORM event_store._feed_choose_plan_mode();
    s := event_store._subscription_args(name, consumer_group_member, consumer_group_size);
    IF max_count IS NULL OR max_count <= 0 THEN
        RAISE EXCEPTION 'max_count must be positive, got %', coalesce(max_count::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'poll() needs READ COMMITTED'
            USING ERRCODE = 'invalid_transaction_state',
                  DETAIL = 'The feed horizon must be read before the snapshot that reads the events.';
    END IF;
    after_position := event_store._subscription_position(name, member, size);
    -- The horizon first; the next statement reads with a newer snapshot.
    horizon := event_store.feed_horizon();
    scan_from := event_store._feed_scan_from(after_position);
    scan_to := event_store._feed_scan_to(horizon); _hiding := event_store._streams_hiding(s.categories, 1000); _hides := _hiding > 0; _few := _hiding <= 1000;  -- issue 28: hidden events? how many streams?
    -- Retries (and held events) of this member's streams that are due and
    -- first of their stream; they are marked delivered, for ack() and nack().
    -- (pending: any row, parked or not; a row's event is never new.)
    pending := EXISTS (SELECT 1 FROM event_store.subscription_retries r WHERE r.name = poll.name);
    IF pending AND _hides THEN
        -- issue 28: a retry or held event whose stream has since been
        -- deleted or truncated, or which max_count or max_age now hide, is
        -- dropped from the queue, not delivered (nor left to hold back the
        -- stream's visible events).
        DELETE FROM event_store.subscription_retries r
         USING event_store.events e, event_store.streams h
         WHERE r.name = poll.name AND r.state = 'waiting'
           AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size))
           AND e.global_position = r.global_position
           AND h.stream_id = r.stream_id AND h.truncate_before IS NOT NULL
           AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                OR e.recorded_at < pg_catalog.now() - h.max_age);
    END IF;
    IF pending THEN
        retries := ARRAY(
            SELECT r.global_position
              FROM event_store.subscription_retries r
             WHERE r.name = poll.name AND r.state = 'waiting'
               AND r.global_position <= horizon
               AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= pg_catalog.now())
               AND (size = 1 OR event_store._in_consumer_group(r.stream_id, member, size))
               AND NOT event_store._subscription_held(poll.name, r.stream_id, r.global_position)
             ORDER BY r.global_position
             LIMIT max_count);
        UPDATE event_store.subscription_retries r SET delivered_at = pg_catalog.now()
         WHERE r.name = poll.name AND r.global_position = ANY (retries);
    ELSE
        retries := '{}';
    END IF;
    -- Retries first, then new events: max_count in all.  A retry is upcast
    -- like a new event (issue 27).
    fresh := max_count - pg_catalog.cardinality(retries);
    IF pg_catalog.cardinality(retries) > 0 THEN retry_from := event_store._feed_scan_from((SELECT pg_catalog.min(x) FROM pg_catalog.unnest(retries) AS x) - 1);  -- issue 26/29: prunes
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries) AND e.recorded_at >= retry_from AND e.recorded_at < scan_to
                 ORDER BY e.global_position) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.* FROM event_store.events e
                 WHERE e.global_position = ANY (retries) AND e.recorded_at >= retry_from AND e.recorded_at < scan_to
                 ORDER BY e.global_position;
        END IF;
    END IF;
    IF fresh = 0 THEN
        RETURN;
    END IF;
    IF s.categories IS NULL THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.*
                  FROM event_store.events e
                 WHERE e.global_position > after_position
                   AND e.global_position <= horizon
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY e.global_position
                 LIMIT fresh) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE e.global_position > after_position
                   AND e.global_position <= horizon
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY e.global_position
                 LIMIT fresh;
        END IF;
        RETURN;
    END IF;
    -- each category once, subscripts from 1 (whatever the stored array's bounds)
    categories := ARRAY(SELECT DISTINCT c FROM pg_catalog.unnest(s.categories) AS c);
    IF pg_catalog.cardinality(categories) = 1 THEN
        IF event_store._upcasting() THEN
            RETURN QUERY
                SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
                SELECT e.*
                  FROM event_store.events e
                 WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                   AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                 LIMIT fresh) e;
        ELSE  -- nothing to upcast: no _upcast() call per row
            RETURN QUERY
                SELECT e.*
                  FROM event_store.events e
                 WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (categories[1], after_position)
                   AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (categories[1], horizon)
                   AND e.recorded_at >= scan_from
                   AND e.recorded_at < scan_to
                   AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                   AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                   AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                    WHERE r.name = poll.name AND r.global_position = e.global_position)
                                        OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                   AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                             OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                             AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                                  OR e.recorded_at < pg_catalog.now() - h.max_age)))
                 ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                 LIMIT fresh;
        END IF;
        RETURN;
    END IF;
    -- Each category's index read in position order, up to max_count rows
    -- each, then merged: a read stops after the rows it returns instead of
    -- collecting and sorting the category's whole rest of the log.
    IF event_store._upcasting() THEN
        RETURN QUERY
            SELECT e.global_position, e.stream_id, e.stream_version,
                   event_store._upcast_type(e.event_type, e.schema_version),
                   CASE event_store._upcast_kind(e.event_type, e.schema_version)
                        WHEN 0 THEN e.data
                        WHEN 1 THEN event_store._upcast_data(e.event_type, e.schema_version, e.data, e.stream_id, e.stream_version)
                        ELSE (event_store._upcast(ROW(e.global_position, e.stream_id, e.stream_version, e.event_type, e.data,
                                                      e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id,
                                                      e.tags, e.schema_version)::event_store.events)).data END,
                   e.metadata, e.event_id, e.recorded_at, e.occurred_at, e.transaction_id, e.tags,
                   event_store._upcast_version(e.event_type, e.schema_version)
              FROM (
            SELECT x.*
              FROM pg_catalog.unnest(categories) AS c(category)
             CROSS JOIN LATERAL (
                   SELECT e.*
                     FROM event_store.events e
                    WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (c.category, after_position)
                      AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (c.category, horizon)
                      AND e.recorded_at >= scan_from
                      AND e.recorded_at < scan_to
                      AND (s.event_types IS NULL OR event_store._upcast_type(e.event_type, e.schema_version) = ANY (s.event_types))
                      AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                      AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                WHERE r.name = poll.name AND r.global_position = e.global_position)
                                    OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                      AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                         OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh) e;
    ELSE  -- nothing to upcast: no _upcast() call per row
        RETURN QUERY
            SELECT x.*
              FROM pg_catalog.unnest(categories) AS c(category)
             CROSS JOIN LATERAL (
                   SELECT e.*
                     FROM event_store.events e
                    WHERE (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) > (c.category, after_position)
                      AND (pg_catalog.split_part(e.stream_id, '-', 1), e.global_position) <= (c.category, horizon)
                      AND e.recorded_at >= scan_from
                      AND e.recorded_at < scan_to
                      AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
                      AND (size = 1 OR event_store._in_consumer_group(e.stream_id, member, size))
                      AND NOT (pending AND (EXISTS (SELECT 1 FROM event_store.subscription_retries r
                                                WHERE r.name = poll.name AND r.global_position = e.global_position)
                                    OR event_store._subscription_held(poll.name, e.stream_id, e.global_position)))
                      AND (NOT _hides OR (_few AND event_store._stream_visible(s.categories, e.stream_id, e.stream_version, e.recorded_at))
                                         OR NOT _few AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id = e.stream_id AND h.truncate_before IS NOT NULL
                                         AND (e.stream_version < h.truncate_before OR e.stream_version <= h.version - h.max_count
                                              OR e.recorded_at < pg_catalog.now() - h.max_age)))
                    ORDER BY pg_catalog.split_part(e.stream_id, '-', 1), e.global_position
                    LIMIT fresh) x
             ORDER BY x.global_position
             LIMIT fresh;
    END IF;
END
$$;

------------------------------------------------------------------------------
-- issue 29 (wtap): the update itself asks for a projection worker
------------------------------------------------------------------------------
-- Before the update a worker found this database at 1.11 and marked it as
-- needing none; appends ask again only after a minute.  A statement on the
-- registry (no row changes) fires projection_registry_worker, which asks
-- for a worker at the commit of ALTER EXTENSION ... UPDATE: the async
-- projections are served at once (test/t/028_projection_worker_settings.pl).
UPDATE event_store.projection_registry SET name = name WHERE false;
