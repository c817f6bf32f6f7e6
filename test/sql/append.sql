-- Appending: expected_version semantics, batches, idempotent retries,
-- recorded_at / occurred_at, and the streams table.

-- A new stream: append_event returns the new version.
SELECT event_store.append_event('booking-1', 'BookingCreated',
       '{"passenger": "Ada", "flight": "LH400", "seat": "12A"}');
SELECT event_store.append_event('booking-1', 'SeatChanged', '{"seat": "14C"}',
       metadata => '{"user": "agent-7"}', expected_version => 1);

-- A batch is appended atomically; the result is the version after it.
SELECT event_store.append('booking-2', ARRAY[
    event_store.event('BookingCreated', '{"passenger": "Grace", "flight": "BA117"}'),
    event_store.event('SeatAssigned', '{"seat": "3F"}'),
    event_store.event('BookingPaid', '{"amount": 420.50}', '{"currency": "EUR"}')
], 0);

-- expected_version: NULL = any, 0 = no stream yet, -1 = stream exists, N = exactly N.
SELECT event_store.append_event('booking-2', 'MealChosen', '{"meal": "veg"}');          -- any
SELECT event_store.append_event('booking-3', 'BookingCreated', '{}', expected_version => 0);
SELECT event_store.append_event('booking-3', 'BookingPaid', '{}', expected_version => -1);
SELECT event_store.append_event('booking-3', 'Checked', '{}', expected_version => 2);

-- Conflicts raise SQLSTATE ES001, say what was expected and what is, write nothing.
\set VERBOSITY default
SELECT count(*) AS events_before FROM event_store.events \gset
SELECT event_store.append_event('booking-1', 'SeatChanged', '{"seat": "1A"}', expected_version => 1);
SELECT event_store.append_event('booking-1', 'BookingCreated', '{}', expected_version => 0);
SELECT event_store.append_event('booking-404', 'SeatChanged', '{}', expected_version => -1);
SELECT event_store.append_event('booking-404', 'SeatChanged', '{}', expected_version => 5);
SELECT event_store.append('booking-2', ARRAY[event_store.event('X', '{}'), event_store.event('Y', '{}')], 3);
\set VERBOSITY sqlstate
SELECT event_store.append_event('booking-1', 'SeatChanged', '{"seat": "1A"}', expected_version => 7);
\set VERBOSITY default
SELECT count(*) = :events_before AS nothing_written FROM event_store.events;
SELECT event_store.stream_version('booking-404') AS missing_stream_version,
       (SELECT count(*) FROM event_store.streams WHERE stream_id = 'booking-404') AS stream_rows;

-- Versions are 1-based and contiguous; positions increase with versions.
SELECT stream_id, stream_version, event_type, data, metadata
  FROM event_store.events WHERE stream_id LIKE 'booking-%'
 ORDER BY stream_id, stream_version;

SELECT stream_id,
       bool_and(global_position > prev_position) AS positions_increase,
       bool_and(recorded_at >= prev_recorded) AS recorded_at_never_decreases
  FROM (SELECT stream_id, global_position, recorded_at,
               lag(global_position, 1, 0::bigint) OVER w AS prev_position,
               lag(recorded_at, 1, '-infinity') OVER w AS prev_recorded
          FROM event_store.events WHERE stream_id LIKE 'booking-%'
        WINDOW w AS (PARTITION BY stream_id ORDER BY stream_version)) s
 GROUP BY stream_id ORDER BY stream_id;

-- occurred_at defaults to recorded_at; a caller-given one is kept.
SELECT event_store.append_event('booking-4', 'BookingCreated', '{}',
       occurred_at => '2026-01-15 09:00:00+00');
SELECT event_store.append_event('booking-4', 'Noted', '{}');
SELECT stream_version, occurred_at = recorded_at AS occurred_is_recorded,
       occurred_at = '2026-01-15 09:00:00+00' AS occurred_as_given
  FROM event_store.events WHERE stream_id = 'booking-4' ORDER BY stream_version;

-- Missing event ids are generated: version 7 (RFC 9562), whose first 48
-- bits are the Unix time in milliseconds, within a second of the append's
-- recorded_at; one session's ids increase with the global position.
SELECT count(DISTINCT event_id) = count(*) AS ids_unique,
       bool_and(substr(event_id::text, 15, 1) = '7') AS ids_are_v7,
       bool_and(substr(event_id::text, 20, 1) IN ('8', '9', 'a', 'b')) AS ids_rfc_variant,
       bool_and(abs(('x' || lpad(replace(substr(event_id::text, 1, 13), '-', ''), 16, '0'))::bit(64)::bigint
                    - (extract(epoch FROM recorded_at) * 1000)::bigint) < 1000) AS ids_carry_time
  FROM event_store.events;
SELECT bool_and(event_id > prev) AS ids_increase
  FROM (SELECT event_id, lag(event_id) OVER (ORDER BY global_position) AS prev
          FROM event_store.events) e
 WHERE prev IS NOT NULL;

-- The streams table agrees with the events.
SELECT s.stream_id, s.category, s.version,
       s.first_position = min(e.global_position) AS first_ok,
       s.last_position = max(e.global_position) AS last_ok,
       s.created_at = min(e.recorded_at) AS created_ok,
       s.updated_at = max(e.recorded_at) AS updated_ok,
       s.version = count(*) AND s.version = max(e.stream_version) AS version_ok
  FROM event_store.streams s JOIN event_store.events e USING (stream_id)
 GROUP BY s.stream_id, s.category, s.version, s.first_position, s.last_position,
          s.created_at, s.updated_at
 ORDER BY s.stream_id;

-- The category is the text before the first '-'.
SELECT event_store.append_event('nodash', 'E', '{}');
SELECT event_store.append_event('cart-7-line-2', 'E', '{}');
SELECT stream_id, category FROM event_store.streams
 WHERE stream_id IN ('nodash', 'cart-7-line-2') ORDER BY 1;

------------------------------------------------------------------------------
-- Idempotent retries
------------------------------------------------------------------------------
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001'),
    event_store.event('OrderPaid',   '{"n": 2}', NULL, 'a0000000-0000-4000-8000-000000000002')
], 0);
-- The stream moves on ...
SELECT event_store.append_event('order-1', 'OrderShipped', '{}');
SELECT count(*) AS events_before FROM event_store.events \gset
-- ... and the client, which lost the reply, retries with the same expected version:
-- success, the version after its events, nothing written.
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001'),
    event_store.event('OrderPaid',   '{"n": 2}', NULL, 'a0000000-0000-4000-8000-000000000002')
], 0) AS retried_version;
-- the same with expected_version NULL (any)
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001'),
    event_store.event('OrderPaid',   '{"n": 2}', NULL, 'a0000000-0000-4000-8000-000000000002')
]) AS retried_version;
-- append_event with an event id is retried the same way
SELECT event_store.append_event('order-2', 'OrderPlaced', '{}', NULL, 0, 'b0000000-0000-4000-8000-000000000001');
SELECT event_store.append_event('order-2', 'OrderPlaced', '{}', NULL, 0, 'b0000000-0000-4000-8000-000000000001') AS retried_version;
SELECT count(*) = :events_before + 1 AS only_order2_written FROM event_store.events;

-- Event ids that are in the stream elsewhere: SQLSTATE ES004, nothing written.
SELECT count(*) AS events_before FROM event_store.events \gset
-- at other positions than this append would give them
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001'),
    event_store.event('OrderPaid',   '{"n": 2}', NULL, 'a0000000-0000-4000-8000-000000000002')
], 3);
-- in another order
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPaid',   '{"n": 2}', NULL, 'a0000000-0000-4000-8000-000000000002'),
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001')
], 0);
-- part of the batch is new
SELECT event_store.append('order-1', ARRAY[
    event_store.event('OrderPlaced', '{"n": 1}', NULL, 'a0000000-0000-4000-8000-000000000001'),
    event_store.event('OrderNew',    '{}',       NULL, 'a0000000-0000-4000-8000-000000000099')
]);
\set VERBOSITY sqlstate
-- the same id with other content is not a retry
SELECT event_store.append_event('order-1', 'Again', '{}', NULL, NULL, 'a0000000-0000-4000-8000-000000000002');
\set VERBOSITY default
SELECT count(*) = :events_before AS nothing_written FROM event_store.events;
SELECT event_store.stream_version('order-1');

-- The same event id may appear in another stream (ids are unique per stream).
SELECT event_store.append_event('order-3', 'OrderPlaced', '{}', NULL, 0, 'a0000000-0000-4000-8000-000000000001');

-- Several appends in one transaction, to one stream and to several.
BEGIN;
SELECT event_store.append_event('txn-a', 'One', '{}', expected_version => 0);
SELECT event_store.append_event('txn-a', 'Two', '{}', expected_version => 1);
SELECT event_store.append_event('txn-b', 'One', '{}', expected_version => 0);
COMMIT;
SELECT stream_id, version FROM event_store.streams WHERE stream_id LIKE 'txn-%' ORDER BY 1;

-- A failed append inside a transaction can be caught with a savepoint.
BEGIN;
SELECT event_store.append_event('txn-c', 'One', '{}');
SAVEPOINT s;
SELECT event_store.append_event('txn-c', 'Two', '{}', expected_version => 5);
ROLLBACK TO SAVEPOINT s;
SELECT event_store.append_event('txn-c', 'Two', '{}', expected_version => 1);
COMMIT;
SELECT stream_version, event_type FROM event_store.events WHERE stream_id = 'txn-c' ORDER BY 1;

-- A batch at the documented maximum size is accepted.
SET event_store.max_batch_size = 500;
SELECT event_store.append('bulk-1',
       (SELECT array_agg(event_store.event('Tick', jsonb_build_object('i', i))) FROM generate_series(1, 500) i));
SELECT count(*), min(stream_version), max(stream_version),
       bool_and((data->>'i')::int = stream_version) AS in_order
  FROM event_store.events WHERE stream_id = 'bulk-1';
RESET event_store.max_batch_size;
