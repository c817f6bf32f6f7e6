-- The README's 5-minute tour, statement for statement as scripts/demo.sql
-- runs it (keep the three in step), so that every step the README shows is
-- checked on each tested major: the inline projection, the subscription
-- polled by a consumer group of two, state_as_of before and after the seat
-- change, the conflict (ES001, nothing written), a Message DB write seen by
-- the projection, the refused UPDATE.  In a database of its own, so that
-- positions start at 1.  The demo's partition listing is left out (it
-- names the current month).
\set own_db es_tour_test
\set own_db_extension 'event_store_messagedb CASCADE'
\i test/sql/include/own_db.sql
\pset footer off

\echo
\echo '== A read model first: seats, kept current by an inline projection'
\echo '   (its handler runs inside every append that carries a matching event)'
CREATE TABLE seats (booking text PRIMARY KEY, flight text, passenger text, seat text);
CREATE FUNCTION seats_on_event(e event_store.events) RETURNS void LANGUAGE sql AS $$
    INSERT INTO seats VALUES (e.stream_id, e.data->>'flight', e.data->>'passenger', e.data->>'seat')
    ON CONFLICT (booking) DO UPDATE
        SET flight    = coalesce(excluded.flight, seats.flight),
            passenger = coalesce(excluded.passenger, seats.passenger),
            seat      = coalesce(excluded.seat, seats.seat)
$$;
SELECT event_store.create_projection('seats', 'seats_on_event(event_store.events)',
       event_types => ARRAY['BookingCreated', 'SeatAssigned', 'SeatChanged'],
       categories  => ARRAY['booking'], mode => 'inline') AS "projection";

\echo
\echo '== A subscription for an external consumer: the boarding-pass printer'
SELECT event_store.subscribe('boarding', categories => ARRAY['booking']) AS "subscription";

\echo
\echo '== Two bookings are made yesterday: each is a stream of events'
SELECT event_store.append('booking-1001', ARRAY[
    event_store.event('BookingCreated', '{"passenger": "Ada Lovelace", "flight": "LH400", "date": "2026-12-01"}',
                      occurred_at => now() - interval '1 day'),
    event_store.event('SeatAssigned',   '{"seat": "12A"}', occurred_at => now() - interval '1 day'),
    event_store.event('BookingPaid',    '{"amount": 420.50, "currency": "EUR"}', '{"payment_ref": "pay-77"}',
                      occurred_at => now() - interval '1 day')
], expected_version => 0) AS "booking-1001 is at version";

SELECT event_store.append_event('booking-1002', 'BookingCreated',
       '{"passenger": "Grace Hopper", "flight": "LH400", "date": "2026-12-01"}',
       expected_version => 0, occurred_at => now() - interval '1 day') AS "booking-1002 is at version";

SELECT now() AS before_change \gset

\echo
\echo '== The passenger changes seat today: append with the version we read (3)'
SELECT event_store.append_event('booking-1001', 'SeatChanged', '{"seat": "14C"}',
       expected_version => 3) AS "booking-1001 is at version";

\echo
\echo '== Read booking-1001 back, in version order'
SELECT stream_version AS v, event_type, data
  FROM event_store.read_stream('booking-1001');

\echo
\echo '== The booking as it was before the seat change, and as it is now'
\echo '   (state_as_of folds the events recorded up to a time, in C)'
SELECT event_store.state_as_of('booking-1001', :'before_change') ->> 'seat' AS "seat before the change",
       event_store.state_as_of('booking-1001') ->> 'seat'                    AS "seat now";
\echo '   as of yesterday in business time (occurred_at), as known today:'
SELECT event_store.state_bitemporal('booking-1001', valid_at => now() - interval '12 hours',
                                    known_at => NULL) AS "booking-1001 yesterday";

\echo
\echo '== Two agents edit booking-1001 at once; both read version 4'
SELECT event_store.append_event('booking-1001', 'MealChosen', '{"meal": "vegetarian"}',
       expected_version => 4) AS "agent A wins, version";
\echo '   agent B appends with the stale version 4:'
SELECT event_store.append_event('booking-1001', 'SeatChanged', '{"seat": "1A"}',
       expected_version => 4);
\echo '   (SQLSTATE ES001 "wrong expected version": agent B re-reads and decides again; nothing was written)'

\echo
\echo '== The seats read model, current without any extra step'
SELECT * FROM seats ORDER BY booking;

\echo
\echo '== The boarding-pass printer runs two workers (a consumer group of 2);'
\echo '   each polls its share of the streams, in order within a stream'
SELECT 0 AS member, global_position AS pos, stream_id, event_type
  FROM event_store.poll('boarding', 100, 0, 2)
UNION ALL
SELECT 1, global_position, stream_id, event_type
  FROM event_store.poll('boarding', 100, 1, 2)
ORDER BY member, pos;
\echo '   each worker acknowledges the last position it handled; a new poll is empty:'
SELECT (SELECT max(global_position) FROM event_store.poll('boarding', 100, 0, 2)) AS last0,
       (SELECT max(global_position) FROM event_store.poll('boarding', 100, 1, 2)) AS last1 \gset
SELECT format('member 0 acked %s, member 1 acked %s', :last0, :last1) AS ack
  FROM (SELECT event_store.ack('boarding', :last0, 0, 2), event_store.ack('boarding', :last1, 1, 2)) AS a;
SELECT count(*) AS "events left for the printer"
  FROM (SELECT * FROM event_store.poll('boarding', 100, 0, 2)
        UNION ALL SELECT * FROM event_store.poll('boarding', 100, 1, 2)) AS p;

\echo
\echo '== A Message DB client writes to the same log (event_store_messagedb)'
SELECT message_store.write_message(gen_random_uuid()::text, 'booking-1002', 'SeatAssigned',
       '{"seat": "3F"}', NULL, 0) AS "Message DB position (0-based)";
SELECT booking, seat FROM seats ORDER BY booking;

\echo
\echo '== Every event of category "booking", by global position'
SELECT global_position AS pos, stream_id, stream_version AS v, event_type
  FROM event_store.read_category('booking');

\echo
\echo '== History cannot be rewritten'
DO $$
BEGIN
    UPDATE event_store.events SET data = '{"seat": "99Z"}' WHERE stream_id = 'booking-1001';
    RAISE NOTICE 'the update went through';
EXCEPTION WHEN SQLSTATE 'ES003' THEN
    RAISE NOTICE 'refused: ES003';
END $$;
SELECT count(*) AS "events of booking-1001 with seat 99Z"
  FROM event_store.events WHERE stream_id = 'booking-1001' AND data->>'seat' = '99Z';

-- agent B's failed append wrote nothing
SELECT stream_version AS v, event_type FROM event_store.read_stream('booking-1001');

\c :orig_db
DROP DATABASE es_tour_test WITH (FORCE);
