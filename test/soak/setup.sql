-- Soak workload schema (test/soak/soak.sh, test/t/009_soak_short.pl).
-- Run once in a database with the extension, as a superuser.
SET client_min_messages = warning;

-- conflicts (ES001) the workload expected and caught: a sequence, so that
-- counting them neither rolls back nor contends
CREATE SEQUENCE soak_conflicts;

-- Read models: per stream of category "acct" the number of events and the
-- sum of "amount".  soak_inline is kept by an inline projection, soak_async
-- by an async one (run_projection), both with reset functions.
CREATE TABLE soak_inline (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
CREATE TABLE soak_async  (stream_id text PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL);
CREATE FUNCTION soak_on_inline(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO soak_inline VALUES (e.stream_id, 1, coalesce((e.data->>'amount')::bigint, 0))
    ON CONFLICT (stream_id) DO UPDATE SET n = soak_inline.n + 1, total = soak_inline.total + excluded.total
$$;
CREATE FUNCTION soak_on_async(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO soak_async VALUES (e.stream_id, 1, coalesce((e.data->>'amount')::bigint, 0))
    ON CONFLICT (stream_id) DO UPDATE SET n = soak_async.n + 1, total = soak_async.total + excluded.total
$$;
CREATE FUNCTION soak_reset_inline() RETURNS void LANGUAGE sql AS 'TRUNCATE soak_inline';
CREATE FUNCTION soak_reset_async() RETURNS void LANGUAGE sql AS 'TRUNCATE soak_async';
SELECT event_store.create_projection('soak_inline', 'soak_on_inline(event_store.events)', categories => '{acct}',
                                     mode => 'inline', reset => 'soak_reset_inline()');
SELECT event_store.create_projection('soak_async', 'soak_on_async(event_store.events)', categories => '{acct}',
                                     mode => 'async', reset => 'soak_reset_async()');

-- Two feed readers that page through everything: "all" with read_all()
-- and its own checkpoint, "poll" with a subscription (poll/ack).  Each
-- event seen is recorded once: a second sighting violates the key.
CREATE TABLE soak_feed_checkpoint (reader text PRIMARY KEY, position bigint NOT NULL);
INSERT INTO soak_feed_checkpoint VALUES ('all', 0);
CREATE TABLE soak_seen (reader text, global_position bigint, PRIMARY KEY (reader, global_position));
SELECT event_store.subscribe('soak_poll');

-- One page of a feed reader; returns how many events it read.  One reader
-- of each kind at a time (an advisory lock), as a real consumer would be.
CREATE FUNCTION soak_feed_step(reader text, page int DEFAULT 500) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    pos bigint;
    n   int;
    top bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('soak_feed_' || reader));
    IF reader = 'all' THEN
        SELECT c.position INTO pos FROM soak_feed_checkpoint c WHERE c.reader = 'all';
        WITH ins AS (INSERT INTO soak_seen SELECT 'all', e.global_position FROM event_store.read_all(pos, page) e
                     RETURNING global_position)
        SELECT count(*), max(global_position) INTO n, top FROM ins;
        IF top IS NOT NULL THEN
            UPDATE soak_feed_checkpoint c SET position = top WHERE c.reader = 'all';
        END IF;
    ELSE
        WITH ins AS (INSERT INTO soak_seen SELECT 'poll', e.global_position FROM event_store.poll('soak_poll', page) e
                     RETURNING global_position)
        SELECT count(*), max(global_position) INTO n, top FROM ins;
        IF top IS NOT NULL THEN
            PERFORM event_store.ack('soak_poll', top);
        END IF;
    END IF;
    RETURN n;
END $$;

-- An append with an expected version read a moment before (a client's
-- think time): conflicts with the other clients are expected, caught and
-- counted; any other error propagates.
CREATE FUNCTION soak_append_expected(stream text, amount int) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v bigint := event_store.stream_version(stream);
BEGIN
    PERFORM pg_sleep(0.002);
    RETURN event_store.append_event(stream, 'Deposited', jsonb_build_object('amount', amount),
                                    expected_version => v);
EXCEPTION WHEN SQLSTATE 'ES001' THEN
    PERFORM nextval('soak_conflicts');
    RETURN -1;
END $$;

-- The same for a batch to a stream that must be new (expected version 0).
CREATE FUNCTION soak_append_new(stream text, n int) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN event_store.append(stream, (SELECT array_agg(event_store.event('Opened', jsonb_build_object('amount', i)) ORDER BY i)
                                         FROM generate_series(1, n) i), 0);
EXCEPTION WHEN SQLSTATE 'ES001' THEN
    PERFORM nextval('soak_conflicts');
    RETURN -1;
END $$;

CREATE FUNCTION soak_count(state bigint, e event_store.events) RETURNS bigint
LANGUAGE sql IMMUTABLE RETURN coalesce(state, 0) + 1;
