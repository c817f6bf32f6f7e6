-- restored: events recorded in the past (test/sql/include/README.md)
CREATE FUNCTION pg_temp.restore_stream(stream text, at timestamptz, events event_store.new_event[])
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n     int := cardinality(events);
    first bigint;
BEGIN
    PERFORM event_store._create_partition_for(at);
    SELECT min(p) INTO first
      FROM (SELECT nextval('event_store.global_position_seq') AS p FROM generate_series(1, n)) s;
    INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at,
                                     first_position, last_position)
    VALUES (stream, split_part(stream, '-', 1), n, at, at, first, first + n - 1);
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    metadata, event_id, recorded_at, occurred_at, transaction_id, tags)
    SELECT first + u.ordinality - 1, stream, u.ordinality, u.event_type, u.data, u.metadata,
           coalesce(u.event_id, gen_random_uuid()), at, coalesce(u.occurred_at, at), pg_current_xact_id(), u.tags
      FROM unnest(events) WITH ORDINALITY AS u;
    RETURN n;
END
$$;
CREATE FUNCTION pg_temp.restore_event(stream text, type text, body jsonb, at timestamptz,
                                      id uuid DEFAULT NULL) RETURNS bigint
LANGUAGE sql RETURN pg_temp.restore_stream(stream, at, ARRAY[event_store.event(type, body, NULL, id)]);
