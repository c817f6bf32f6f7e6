-- restored: events recorded in the past (test/sql/include/README.md)
CREATE FUNCTION pg_temp.restore_stream(stream text, at timestamptz, events jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n     int := jsonb_array_length(events);
    first bigint;
BEGIN
    PERFORM event_store._create_partition_for(at);
    SELECT min(p) INTO first
      FROM (SELECT nextval('event_store.global_position_seq') AS p FROM generate_series(1, n)) s;
    INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at,
                                     first_position, last_position)
    VALUES (stream, split_part(stream, '-', 1), n, at, at, first, first + n - 1);
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    event_id, recorded_at, occurred_at, transaction_id)
    SELECT first + e.i - 1, stream, e.i, e.ev->>'type', e.ev->'data',
           coalesce((e.ev->>'id')::uuid, gen_random_uuid()), at, at, pg_current_xact_id()
      FROM jsonb_array_elements(events) WITH ORDINALITY AS e(ev, i);
    RETURN n;
END
$$;
CREATE FUNCTION pg_temp.restore_event(stream text, type text, body jsonb, at timestamptz,
                                      id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    RETURN pg_temp.restore_stream(stream, at, jsonb_build_array(
               jsonb_strip_nulls(jsonb_build_object('type', type, 'data', body, 'id', id))));
END
$$;
