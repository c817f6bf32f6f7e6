-- restored: a new stream's first event, recorded in the past (test/sql/include/README.md)
CREATE FUNCTION pg_temp.restore_event(stream text, type text, body jsonb, at timestamptz,
                                      id uuid DEFAULT gen_random_uuid()) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    pos bigint := nextval('event_store.global_position_seq');
BEGIN
    PERFORM event_store._create_partition_for(at);
    INSERT INTO event_store.streams (stream_id, category, version, created_at, updated_at,
                                     first_position, last_position)
    VALUES (stream, split_part(stream, '-', 1), 1, at, at, pos, pos);
    INSERT INTO event_store.events (global_position, stream_id, stream_version, event_type, data,
                                    event_id, recorded_at, occurred_at, transaction_id)
    VALUES (pos, stream, 1, type, body, id, at, at, pg_current_xact_id());
    RETURN 1;
END
$$;
