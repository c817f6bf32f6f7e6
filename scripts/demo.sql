-- The flight-booking demo: bookings are event streams.
\set ON_ERROR_STOP on
\pset footer off
\echo
\echo '== Two bookings are made: each is a stream of events'
SELECT event_store.append('booking-1001', ARRAY[
    event_store.event('BookingCreated', '{"passenger": "Ada Lovelace", "flight": "LH400", "date": "2026-12-01"}'),
    event_store.event('SeatAssigned',   '{"seat": "12A"}'),
    event_store.event('BookingPaid',    '{"amount": 420.50, "currency": "EUR"}', '{"payment_ref": "pay-77"}')
], expected_version => 0) AS "booking-1001 is at version";

SELECT event_store.append_event('booking-1002', 'BookingCreated',
       '{"passenger": "Grace Hopper", "flight": "LH400", "date": "2026-12-01"}',
       expected_version => 0) AS "booking-1002 is at version";

\echo
\echo '== The passenger changes seat: append with the version we read (3)'
SELECT event_store.append_event('booking-1001', 'SeatChanged', '{"seat": "14C"}',
       expected_version => 3) AS "booking-1001 is at version";

\echo
\echo '== Read booking-1001 back, in version order'
SELECT stream_version AS v, event_type, data, occurred_at::timestamp(0) AS occurred_at
  FROM event_store.read_stream('booking-1001');

\echo
\echo '== Two agents edit booking-1001 at once; both read version 4'
SELECT event_store.append_event('booking-1001', 'MealChosen', '{"meal": "vegetarian"}',
       expected_version => 4) AS "agent A wins, version";
\echo '   agent B appends with the stale version 4:'
\set ON_ERROR_STOP off
SELECT event_store.append_event('booking-1001', 'SeatChanged', '{"seat": "1A"}',
       expected_version => 4);
\set ON_ERROR_STOP on
\echo '   (SQLSTATE ES001 "wrong expected version": agent B re-reads and decides again; nothing was written)'

\echo
\echo '== Every event of category "booking", by global position'
SELECT global_position AS pos, stream_id, stream_version AS v, event_type
  FROM event_store.read_category('booking');

\echo
\echo '== Streams'
SELECT stream_id, category, version, first_position, last_position FROM event_store.streams ORDER BY stream_id;

\echo
\echo '== History cannot be rewritten'
\set ON_ERROR_STOP off
UPDATE event_store.events SET data = '{"seat": "99Z"}' WHERE stream_id = 'booking-1001';
\set ON_ERROR_STOP on

\echo
\echo '== Partitions'
SELECT partition, range_start::date, range_end::date, access_method FROM event_store.partition_info;
