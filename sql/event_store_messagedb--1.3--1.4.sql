-- event_store_messagedb 1.3 -> 1.4.
\echo Use "ALTER EXTENSION event_store_messagedb UPDATE TO '1.4'" to load this file. \quit

------------------------------------------------------------------------------
-- issue 28 item 1: the messages view hides what the reads hide
--
-- message_store.messages (and the six summary views built on it) showed
-- every stored message, also those of soft-deleted, hard-deleted and
-- truncated streams and those outside a stream's max_count or max_age,
-- while get_stream_messages, get_category_messages and
-- get_last_stream_message (1.3) hide them.  In Message DB the messages
-- table is the store itself and nothing is ever deleted, so a Message DB
-- client or tool that reads the table (mdb-print-messages, the summaries)
-- expects it to hold exactly the messages the functions can return.  The
-- view now applies the same check against the stream's row in
-- event_store.streams as the reads; the raw log stays readable in
-- event_store.events.  CREATE OR REPLACE keeps the view's columns,
-- privileges and dependent views.
------------------------------------------------------------------------------
CREATE OR REPLACE VIEW message_store.messages AS
SELECT e.global_position,
       e.stream_version - 1 AS position,
       (e.recorded_at AT TIME ZONE 'UTC') AS time,
       e.stream_id AS stream_name,
       e.event_type AS type,
       e.data,
       e.metadata,
       e.event_id AS id
  FROM event_store.events e
 WHERE NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
         AND h.truncate_before IS NOT NULL
         AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
              OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
              OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)));
COMMENT ON VIEW message_store.messages IS 'The event log in the shape of Message DB''s messages table, without the messages that stream deletion, truncation, max_count and max_age hide (read-only; write with write_message).';

------------------------------------------------------------------------------
-- event_store issue 27: get_last_stream_message(stream, type) matches the
-- type a message reads as
--
-- Up to 1.3 the type argument was compared with the STORED type, while the
-- message came back upcast: after a renaming upcaster OldT -> NewT, asking
-- for NewT found none of the old messages and asking for OldT returned a
-- message of type NewT.  While upcasting is on (event_store._upcasting()),
-- the type is now compared with the upcast row's type, as event_store's
-- read_by_tags, append_if, poll and projections do since event_store 1.12.
-- Only that branch changes; event_store._upcast() exists since
-- event_store 1.11, so this needs no newer event_store.
------------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION message_store.get_last_stream_message(stream_name varchar, "type" varchar DEFAULT NULL)
RETURNS SETOF message_store.message
LANGUAGE sql STABLE
AS $$
    -- (event_store issue 27) upcast only while event_store._upcasting(),
    -- a one-time filter of each branch
    (SELECT * FROM (
        SELECT e.event_id::varchar, e.stream_id::varchar, e.event_type::varchar,
               e.stream_version OPERATOR(pg_catalog.-) 1, e.global_position,
               e.data::varchar, e.metadata::varchar, (e.recorded_at AT TIME ZONE 'UTC')
          FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
           AND ($2 IS NULL OR e.event_type OPERATOR(pg_catalog.=) $2::text)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version DESC
         LIMIT 1) p WHERE NOT event_store._upcasting())
    UNION ALL
    (SELECT * FROM (
        SELECT (u.e).event_id::varchar, (u.e).stream_id::varchar, (u.e).event_type::varchar,
               (u.e).stream_version OPERATOR(pg_catalog.-) 1, (u.e).global_position,
               (u.e).data::varchar, (u.e).metadata::varchar, ((u.e).recorded_at AT TIME ZONE 'UTC')
          FROM (SELECT event_store._upcast(e) AS e FROM event_store.events e
         WHERE e.stream_id OPERATOR(pg_catalog.=) $1::text
           AND ($2 IS NULL OR (event_store._upcast(e)).event_type OPERATOR(pg_catalog.=) $2::text)
           AND e.recorded_at OPERATOR(pg_catalog.>=) (SELECT s.created_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND e.recorded_at OPERATOR(pg_catalog.<=) (SELECT s.updated_at FROM event_store.streams s WHERE s.stream_id OPERATOR(pg_catalog.=) $1::text)
           AND NOT EXISTS (SELECT FROM event_store.streams h WHERE h.stream_id OPERATOR(pg_catalog.=) e.stream_id
                 AND h.truncate_before IS NOT NULL
                 AND (e.stream_version OPERATOR(pg_catalog.<) h.truncate_before
                      OR e.stream_version OPERATOR(pg_catalog.<=) (h.version OPERATOR(pg_catalog.-) h.max_count)
                      OR e.recorded_at OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) h.max_age)))
         ORDER BY e.stream_version DESC
         LIMIT 1) u) q WHERE event_store._upcasting())
$$;
