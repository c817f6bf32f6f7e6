-- event_store 1.3 -> 1.4: projections and subscriptions.
--   * projections: handlers run inline (in the appending transaction, by one
--     C statement-level AFTER INSERT trigger with a transition table) or
--     async (run_projection() from the gap-free feed, checkpointed);
--     rebuild_projection() and the procedure rebuild_projection_in_batches();
--   * subscriptions for external consumers: subscribe(), poll(), ack(),
--     consumer groups by a hash of the stream's cardinal id;
--   * push: one NOTIFY per appending transaction on channel
--     event_store_events (payload: the transaction's highest
--     global_position), off with SET event_store.notify = off.
-- See docs/projections.md.
\echo Use "ALTER EXTENSION event_store UPDATE TO '1.4'" to load this file. \quit

------------------------------------------------------------------------------
-- Registry.  Handlers are stored as their regprocedure text (e.g.
-- 'public.on_deposit(event_store.events)'): dump/restore and pg_upgrade
-- safe (a regprocedure column is neither).  Checkpoints live in a table of
-- their own so that advancing one does not invalidate every backend's
-- cached registry.
------------------------------------------------------------------------------
CREATE TABLE event_store.projection_registry (
    name          text PRIMARY KEY CHECK (name <> ''),
    handler       text NOT NULL,
    event_types   text[],
    categories    text[],
    mode          text NOT NULL CHECK (mode IN ('inline', 'async')),
    reset_handler text,
    created_at    timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('event_store.projection_registry', '');
COMMENT ON TABLE event_store.projection_registry IS
  'Projections: handler, filters, mode. Write it with create_projection()/drop_projection().';
-- Every appender's dispatcher reads it (with the appender's privileges).
GRANT SELECT ON event_store.projection_registry TO PUBLIC;

CREATE TABLE event_store.projection_checkpoints (
    name                text PRIMARY KEY,
    position            bigint NOT NULL DEFAULT 0,
    events_processed    bigint NOT NULL DEFAULT 0,
    updated_at          timestamptz,
    rebuild_started_at  timestamptz,
    rebuild_target      bigint,
    rebuild_finished_at timestamptz
);
SELECT pg_catalog.pg_extension_config_dump('event_store.projection_checkpoints', '');
COMMENT ON TABLE event_store.projection_checkpoints IS
  'Async projections: the position processed up to (same transaction as the handlers'' writes), rebuild progress.';

-- Any change to the registry (also a restore's COPY) invalidates the
-- per-backend caches of inline projections and waits for in-flight appends
-- (SHARE lock on event_store.events until commit), so every append is
-- dispatched either entirely before or entirely after the change.
CREATE FUNCTION event_store._projection_registry_changed() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_projection_registry_changed' LANGUAGE C;
CREATE TRIGGER projection_registry_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON event_store.projection_registry
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._projection_registry_changed();

-- The inline dispatcher: once per INSERT statement into the log (an append
-- of 1,000 events is one statement), with its rows as a transition table.
CREATE FUNCTION event_store._dispatch_projections() RETURNS trigger
AS 'MODULE_PATHNAME', 'es_dispatch_projections' LANGUAGE C;
CREATE TRIGGER events_dispatch_projections
    AFTER INSERT ON event_store.events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION event_store._dispatch_projections();

-- Validate a handler: (event event_store.events) RETURNS void, a plain
-- function.  SQLSTATE 42P13 otherwise.
CREATE FUNCTION event_store._check_handler(handler regprocedure, what text) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p pg_catalog.pg_proc;
BEGIN
    SELECT * INTO p FROM pg_catalog.pg_proc WHERE oid = handler;
    IF what = 'handler' AND (p.prokind <> 'f' OR p.pronargs <> 1
        OR p.proargtypes[0] <> 'event_store.events'::regtype OR p.proretset
        OR p.prorettype <> 'void'::regtype) THEN
        RAISE EXCEPTION 'projection handler % has the wrong signature', handler
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = 'A handler is a function (event event_store.events) RETURNS void.',
                  HINT = 'CREATE FUNCTION my_handler(e event_store.events) RETURNS void ...';
    END IF;
    IF what = 'reset' AND (p.prokind <> 'f' OR p.pronargs <> 0 OR p.proretset
        OR p.prorettype <> 'void'::regtype) THEN
        RAISE EXCEPTION 'projection reset function % has the wrong signature', handler
            USING ERRCODE = 'invalid_function_definition',
                  DETAIL = 'A reset function is a function () RETURNS void, e.g. one that truncates the projection''s tables.';
    END IF;
    IF NOT pg_catalog.has_function_privilege(handler, 'EXECUTE') THEN
        RAISE EXCEPTION 'permission denied for function %', handler
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END
$$;

CREATE FUNCTION event_store._check_filter(filter text[], what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF filter IS NOT NULL AND (pg_catalog.cardinality(filter) = 0 OR pg_catalog.array_ndims(filter) > 1
                               OR pg_catalog.array_position(filter, NULL) IS NOT NULL) THEN
        RAISE EXCEPTION '% must be NULL (all) or a non-empty one-dimensional array without NULLs', what
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

CREATE FUNCTION event_store._check_name(name text, what text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF name IS NULL THEN
        RAISE EXCEPTION '% name must not be null', what USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF name = '' THEN
        RAISE EXCEPTION '% name must not be empty', what USING ERRCODE = 'invalid_parameter_value';
    END IF;
END
$$;

------------------------------------------------------------------------------
-- Projections
------------------------------------------------------------------------------
CREATE FUNCTION event_store.create_projection(
    name text, handler regprocedure, event_types text[] DEFAULT NULL,
    categories text[] DEFAULT NULL, mode text DEFAULT 'inline',
    reset regprocedure DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(create_projection.name, 'projection');
    IF handler IS NULL THEN
        RAISE EXCEPTION 'projection handler must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF mode IS NULL OR mode NOT IN ('inline', 'async') THEN
        RAISE EXCEPTION 'invalid projection mode "%"', coalesce(mode, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use ''inline'' (in the appending transaction) or ''async'' (run_projection()).';
    END IF;
    PERFORM event_store._check_handler(handler, 'handler');
    IF reset IS NOT NULL THEN
        PERFORM event_store._check_handler(reset, 'reset');
    END IF;
    PERFORM event_store._check_filter(event_types, 'event_types');
    PERFORM event_store._check_filter(categories, 'categories');
    IF EXISTS (SELECT 1 FROM event_store.projection_registry r WHERE r.name = create_projection.name) THEN
        RAISE EXCEPTION 'projection "%" already exists', create_projection.name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Drop it first with event_store.drop_projection().';
    END IF;
    INSERT INTO event_store.projection_registry (name, handler, event_types, categories, mode, reset_handler)
    VALUES (create_projection.name, handler::text, event_types, categories, mode, reset::text);
    INSERT INTO event_store.projection_checkpoints (name) VALUES (create_projection.name);
END
$$;
COMMENT ON FUNCTION event_store.create_projection(text, regprocedure, text[], text[], text, regprocedure) IS
  'Register a projection: handler (event event_store.events) RETURNS void, optional filters, mode inline|async, optional reset function () RETURNS void for rebuilds. Past events are not replayed: call rebuild_projection().';

CREATE FUNCTION event_store._projection_not_found(name text) RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'projection "%" does not exist', name
        USING ERRCODE = 'undefined_object',
              HINT = 'See event_store.projections.';
END
$$;

CREATE FUNCTION event_store.drop_projection(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(drop_projection.name, 'projection');
    DELETE FROM event_store.projection_registry r WHERE r.name = drop_projection.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(drop_projection.name);
    END IF;
    DELETE FROM event_store.projection_checkpoints c WHERE c.name = drop_projection.name;
END
$$;
COMMENT ON FUNCTION event_store.drop_projection(text) IS 'Unregister a projection (its tables are the caller''s to drop).';

-- Positions drawn so far (0 when none).
CREATE FUNCTION event_store._last_drawn_position() RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
RETURN (SELECT CASE WHEN s.is_called THEN s.last_value ELSE s.last_value - 1 END
          FROM event_store.global_position_seq s);

CREATE FUNCTION event_store.run_projection(name text, max_events int DEFAULT 10000) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_run_projection' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION event_store.run_projection(text, int) IS
  'Async projection: handle the next max_events matching events from the gap-free feed and advance the checkpoint, in this transaction. Returns how many were handled.';

-- Inline projections: replay every visible event through the handler, one
-- snapshot, NOTICE every notice_every events.
CREATE FUNCTION event_store._replay_inline(name text, notice_every int) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_replay_inline' LANGUAGE C VOLATILE STRICT;

-- Start a rebuild: lock the checkpoint, reset it, call the reset function.
CREATE FUNCTION event_store._rebuild_start(name text, OUT mode text, OUT target bigint)
LANGUAGE plpgsql
AS $$
DECLARE
    reg event_store.projection_registry;
BEGIN
    PERFORM event_store._check_name(_rebuild_start.name, 'projection');
    SELECT r.* INTO reg FROM event_store.projection_registry r WHERE r.name = _rebuild_start.name;
    IF NOT FOUND THEN
        PERFORM event_store._projection_not_found(_rebuild_start.name);
    END IF;
    PERFORM 1 FROM event_store.projection_checkpoints c WHERE c.name = _rebuild_start.name FOR UPDATE;
    target := event_store._last_drawn_position();
    UPDATE event_store.projection_checkpoints c
       SET position = 0, events_processed = 0, updated_at = now(),
           rebuild_started_at = clock_timestamp(), rebuild_target = target, rebuild_finished_at = NULL
     WHERE c.name = _rebuild_start.name;
    IF reg.reset_handler IS NOT NULL THEN
        EXECUTE format('SELECT %s()', reg.reset_handler::regprocedure::regproc);
    END IF;
    mode := reg.mode;
END
$$;

CREATE FUNCTION event_store._rebuild_finish(name text, processed bigint) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    UPDATE event_store.projection_checkpoints c
       SET rebuild_finished_at = clock_timestamp(),
           events_processed = CASE WHEN (SELECT r.mode FROM event_store.projection_registry r WHERE r.name = c.name) = 'inline'
                                   THEN processed ELSE c.events_processed END
     WHERE c.name = _rebuild_finish.name;
END;

CREATE FUNCTION event_store.rebuild_projection(name text, notice_every int DEFAULT 10000) RETURNS bigint
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
BEGIN
    IF notice_every IS NULL OR notice_every < 1 THEN
        RAISE EXCEPTION 'notice_every must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection.name) s;
    IF m = 'inline' THEN
        total := event_store._replay_inline(rebuild_projection.name, notice_every);
    ELSE
        LOOP
            n := event_store.run_projection(rebuild_projection.name, notice_every);
            total := total + n;
            EXIT WHEN n < notice_every;
            RAISE NOTICE 'rebuilding projection "%": % events', rebuild_projection.name, total;
        END LOOP;
    END IF;
    PERFORM event_store._rebuild_finish(rebuild_projection.name, total);
    RAISE NOTICE 'rebuilt projection "%": % events', rebuild_projection.name, total;
    RETURN total;
END
$$;
COMMENT ON FUNCTION event_store.rebuild_projection(text, int) IS
  'Reset the projection (checkpoint and reset function) and replay every event in this transaction, with a NOTICE every notice_every events. Returns the number of events handled.';

CREATE PROCEDURE event_store.rebuild_projection_in_batches(name text, batch_size int DEFAULT 10000)
LANGUAGE plpgsql
AS $$
DECLARE
    m      text;
    target bigint;
    n      bigint;
    total  bigint := 0;
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF (SELECT r.mode FROM event_store.projection_registry r WHERE r.name = rebuild_projection_in_batches.name) = 'inline' THEN
        RAISE EXCEPTION 'projection "%" is inline: rebuild it in one transaction', name
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Between batches its appenders would update a half-rebuilt read model.',
                  HINT = 'Use SELECT event_store.rebuild_projection(...).';
    END IF;
    SELECT s.mode, s.target INTO m, target FROM event_store._rebuild_start(rebuild_projection_in_batches.name) s;
    COMMIT;
    LOOP
        n := event_store.run_projection(rebuild_projection_in_batches.name, batch_size);
        total := total + n;
        COMMIT;
        EXIT WHEN n < batch_size;
        RAISE NOTICE 'rebuilding projection "%": % events', name, total;
    END LOOP;
    PERFORM event_store._rebuild_finish(rebuild_projection_in_batches.name, total);
    COMMIT;
    RAISE NOTICE 'rebuilt projection "%": % events', name, total;
END
$$;
COMMENT ON PROCEDURE event_store.rebuild_projection_in_batches(text, int) IS
  'Async projections: rebuild committing after each batch (CALL outside a transaction block); progress in event_store.projections.';

CREATE VIEW event_store.projections AS
SELECT r.name,
       r.mode,
       pg_catalog.to_regprocedure(r.handler) AS handler,
       pg_catalog.to_regprocedure(r.reset_handler) AS reset,
       r.event_types,
       r.categories,
       CASE WHEN r.mode = 'async' THEN c.position END AS checkpoint,
       CASE WHEN r.mode = 'async'
            THEN greatest(event_store._last_drawn_position() - c.position, 0)
            ELSE 0 END AS lag,
       c.events_processed,
       c.updated_at AS last_run_at,
       c.rebuild_started_at,
       c.rebuild_finished_at,
       CASE WHEN c.rebuild_started_at IS NULL THEN NULL
            WHEN c.rebuild_finished_at IS NOT NULL OR c.rebuild_target <= 0 THEN 100.0
            ELSE round(100.0 * least(c.position, c.rebuild_target) / c.rebuild_target, 1) END AS rebuild_progress,
       r.created_at
  FROM event_store.projection_registry r
  LEFT JOIN event_store.projection_checkpoints c ON c.name = r.name;
COMMENT ON VIEW event_store.projections IS
  'Projections: mode, filters, checkpoint (async), lag in positions behind the last drawn one (0 for inline), rebuild progress in percent.';

------------------------------------------------------------------------------
-- Subscriptions
------------------------------------------------------------------------------
CREATE TABLE event_store.subscriptions (
    name        text PRIMARY KEY CHECK (name <> ''),
    categories  text[],
    event_types text[],
    created_at  timestamptz NOT NULL DEFAULT now()
);
SELECT pg_catalog.pg_extension_config_dump('event_store.subscriptions', '');

-- One checkpoint per consumer group member; no group is member 0 of 1.
CREATE TABLE event_store.subscription_checkpoints (
    name                  text NOT NULL,
    consumer_group_member int NOT NULL,
    consumer_group_size   int NOT NULL,
    position              bigint NOT NULL,
    updated_at            timestamptz NOT NULL,
    PRIMARY KEY (name, consumer_group_size, consumer_group_member)
);
SELECT pg_catalog.pg_extension_config_dump('event_store.subscription_checkpoints', '');

-- Message DB's hash_64 (md5-based, stable across versions and platforms),
-- the C function of src/messagedb.c.
CREATE FUNCTION event_store._hash_64(value text) RETURNS bigint
AS 'MODULE_PATHNAME', 'es_mdb_hash_64'
LANGUAGE C IMMUTABLE STRICT PARALLEL SAFE;

CREATE FUNCTION event_store.cardinal_id(stream_id text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN CASE WHEN pg_catalog.strpos(stream_id, '-') = 0 THEN stream_id
            ELSE pg_catalog.split_part(pg_catalog.substr(stream_id, pg_catalog.strpos(stream_id, '-') + 1), '+', 1) END;
COMMENT ON FUNCTION event_store.cardinal_id(text) IS
  'The part of a stream id after the category up to the first ''+'' (Message DB''s cardinal id); the whole id when it has no ''-''.';

CREATE FUNCTION event_store.consumer_group_member(stream_id text, consumer_group_size int) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN (abs(event_store._hash_64(event_store.cardinal_id(stream_id))) % consumer_group_size)::int;
COMMENT ON FUNCTION event_store.consumer_group_member(text, int) IS
  'The member of a consumer group of the given size that receives the stream: abs(hash_64(cardinal_id)) % size, as Message DB.';

CREATE FUNCTION event_store.subscribe(name text, categories text[] DEFAULT NULL, event_types text[] DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s event_store.subscriptions;
BEGIN
    PERFORM event_store._check_name(subscribe.name, 'subscription');
    PERFORM event_store._check_filter(categories, 'categories');
    PERFORM event_store._check_filter(event_types, 'event_types');
    INSERT INTO event_store.subscriptions (name, categories, event_types)
    VALUES (subscribe.name, subscribe.categories, subscribe.event_types)
    ON CONFLICT ON CONSTRAINT subscriptions_pkey DO NOTHING;
    IF FOUND THEN
        RETURN true;
    END IF;
    SELECT * INTO s FROM event_store.subscriptions x WHERE x.name = subscribe.name;
    IF s.categories IS DISTINCT FROM subscribe.categories OR s.event_types IS DISTINCT FROM subscribe.event_types THEN
        RAISE EXCEPTION 'subscription "%" already exists with other filters', subscribe.name
            USING ERRCODE = 'duplicate_object',
                  DETAIL = format('It has categories %s and event_types %s.',
                                  coalesce(s.categories::text, 'NULL'), coalesce(s.event_types::text, 'NULL')),
                  HINT = 'Unsubscribe first, or use another name.';
    END IF;
    RETURN false;
END
$$;
COMMENT ON FUNCTION event_store.subscribe(text, text[], text[]) IS
  'Create a subscription (true), or nothing when it exists with the same filters (false). It starts at the beginning of the log.';

CREATE FUNCTION event_store.unsubscribe(name text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM event_store._check_name(unsubscribe.name, 'subscription');
    DELETE FROM event_store.subscriptions s WHERE s.name = unsubscribe.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', unsubscribe.name USING ERRCODE = 'undefined_object';
    END IF;
    DELETE FROM event_store.subscription_checkpoints c WHERE c.name = unsubscribe.name;
END
$$;

-- Check a subscription call's arguments; returns the subscription.
CREATE FUNCTION event_store._subscription_args(
    name text, consumer_group_member int, consumer_group_size int)
RETURNS event_store.subscriptions
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s event_store.subscriptions;
BEGIN
    PERFORM event_store._check_name(name, 'subscription');
    IF (consumer_group_member IS NULL) <> (consumer_group_size IS NULL) THEN
        RAISE EXCEPTION 'consumer_group_member and consumer_group_size must be given together'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF consumer_group_size < 1 THEN
        RAISE EXCEPTION 'consumer_group_size must be at least 1, got %', consumer_group_size
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF consumer_group_member < 0 OR consumer_group_member >= consumer_group_size THEN
        RAISE EXCEPTION 'consumer_group_member must be between 0 and %, got %',
                        consumer_group_size - 1, consumer_group_member
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT * INTO s FROM event_store.subscriptions x WHERE x.name = _subscription_args.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'subscription "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it with event_store.subscribe().';
    END IF;
    RETURN s;
END
$$;

-- Where a member continues: its own checkpoint; for a member new to this
-- group size, the lowest checkpoint of the subscription (a changed group
-- size redelivers rather than skips); else the beginning.
CREATE FUNCTION event_store._subscription_position(name text, member int, size int) RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
RETURN coalesce(
    (SELECT c.position FROM event_store.subscription_checkpoints c
      WHERE c.name = $1 AND c.consumer_group_member = $2 AND c.consumer_group_size = $3),
    (SELECT min(c.position) FROM event_store.subscription_checkpoints c WHERE c.name = $1),
    0);

CREATE FUNCTION event_store.poll(
    name text, max_count int DEFAULT 100,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS SETOF event_store.events
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s       event_store.subscriptions;
    member  int := coalesce(consumer_group_member, 0);
    size    int := coalesce(consumer_group_size, 1);
    after_position bigint;
    horizon        bigint;
BEGIN
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
    RETURN QUERY
        SELECT e.*
          FROM event_store.events e
         WHERE e.global_position > after_position
           AND e.global_position <= horizon
           AND (s.categories IS NULL OR pg_catalog.split_part(e.stream_id, '-', 1) = ANY (s.categories))
           AND (s.event_types IS NULL OR e.event_type = ANY (s.event_types))
           AND (size = 1 OR event_store.consumer_group_member(e.stream_id, size) = member)
         ORDER BY e.global_position
         LIMIT max_count;
END
$$;
COMMENT ON FUNCTION event_store.poll(text, int, int, int) IS
  'The next events of a subscription after its (member''s) checkpoint, from the gap-free feed, by global_position. Does not move the checkpoint: ack() does.';

CREATE FUNCTION event_store.ack(
    name text, "position" bigint,
    consumer_group_member int DEFAULT NULL, consumer_group_size int DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    s event_store.subscriptions;
BEGIN
    s := event_store._subscription_args(name, consumer_group_member, consumer_group_size);
    IF ack.position IS NULL THEN
        RAISE EXCEPTION 'position must not be null' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF ack.position < 0 OR ack.position > event_store._last_drawn_position() THEN
        RAISE EXCEPTION 'position % is not a position of the log', ack.position
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('Positions drawn so far: 1 to %s.', event_store._last_drawn_position()),
                  HINT = 'Acknowledge the global_position of the last event poll() returned and you handled.';
    END IF;
    INSERT INTO event_store.subscription_checkpoints AS c
           (name, consumer_group_member, consumer_group_size, position, updated_at)
    VALUES (ack.name, coalesce(consumer_group_member, 0), coalesce(consumer_group_size, 1), ack.position, now())
    ON CONFLICT ON CONSTRAINT subscription_checkpoints_pkey
    DO UPDATE SET position = greatest(c.position, excluded.position), updated_at = excluded.updated_at;
END
$$;
COMMENT ON FUNCTION event_store.ack(text, bigint, int, int) IS
  'Acknowledge everything up to position for a subscription (member); never moves back.';

CREATE VIEW event_store.subscription_status AS
SELECT s.name,
       s.categories,
       s.event_types,
       c.consumer_group_member,
       c.consumer_group_size,
       coalesce(c.position, 0) AS checkpoint,
       greatest(event_store._last_drawn_position() - coalesce(c.position, 0), 0) AS lag,
       c.updated_at AS acked_at
  FROM event_store.subscriptions s
  LEFT JOIN event_store.subscription_checkpoints c ON c.name = s.name;
COMMENT ON VIEW event_store.subscription_status IS
  'Subscriptions and each consumer group member''s checkpoint; lag in positions behind the last drawn one.';
